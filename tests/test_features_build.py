"""Feature engineering end to end: `mlpack build` on MongoDB documents with derived expressions,
dates, text and a target transform; then the .onnx alone (plain onnxruntime, no mlpack code) and
the wheel, fed raw documents, agree with each other and with the formula the target was made by."""

from __future__ import annotations

import datetime as dt
import importlib
import json
import math
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import pytest

from mlpack.config import parse_config
from tests.helpers.cli import assert_clean_error
from tests.helpers.interpreters import python_interpreter
from tests.helpers.projects import Project
from tests.helpers.shop import CONFIG, EPOCH, orders


def _import_wheel(wheel: Path, into: Path) -> Any:
    with zipfile.ZipFile(wheel) as archive:
        archive.extractall(into)
    sys.path.insert(0, str(into))
    try:
        return importlib.import_module("shop_model")
    finally:
        sys.path.remove(str(into))


def _plain_onnx_feeds(metadata: dict[str, Any], doc: dict[str, Any]) -> dict[str, np.ndarray]:
    """What a client in any language does: read `inputs` from the metadata, feed raw fields."""
    feeds = {}
    for entry in metadata["inputs"]:
        value: Any = doc
        for part in entry["path"].split("."):
            value = value[part]
        if entry["type"] == "float32":
            feeds[entry["name"]] = np.array([[value]], dtype=np.float32)
        elif entry["type"] == "string":
            feeds[entry["name"]] = np.array([[value]], dtype=object)
        else:
            assert entry["type"] == "int64-ms"
            feeds[entry["name"]] = np.array([[(value - EPOCH) // dt.timedelta(milliseconds=1)]], dtype=np.int64)
    return feeds


def test_derived_features_dates_and_text_are_computed_in_the_graph(shop: Project, run, tmp_path: Path) -> None:
    result = run("build", shop.path, "--json")
    assert result.code == 0, result.err
    report = json.loads(result.out)
    assert report["metrics"]["r2"] >= 0.999  # a linear model fits an exact function of the graph's features
    assert {(i["path"], i["type"]) for i in report["inputs"]} == {
        ("contract", "string"),
        ("signup", "int64-ms"),
        ("subject", "string"),
        ("price", "float32"),
        ("carat", "float32"),
        ("tenure", "float32"),
        ("last.opened", "int64-ms"),
    }
    dist = shop.path / "dist"
    wheel = _import_wheel(dist / "shop_model-1.0.0-py3-none-any.whl", tmp_path / "wheel")
    session = ort.InferenceSession(str(dist / "shop-model-1.0.0.onnx"), providers=["CPUExecutionProvider"])
    metadata = json.loads(session.get_modelmeta().custom_metadata_map["mlpack.metadata"])
    assert metadata["inputs"] == report["inputs"]
    # Free text has a drift baseline too: quantile bins of its length in characters.
    subject = metadata["baseline"]["features"]["subject"]
    assert subject["kind"] == "text" and subject["edges"] and sum(subject["shares"]) == pytest.approx(1, abs=1e-4)

    unseen = orders(20, seed=99)  # documents the model never saw
    # The .onnx alone, fed by hand, gives the wheel's very bits. onnxruntime multiplies a one-row matrix
    # with another kernel (a float32 ulp apart for a linear model), so the wheel runs a lone record as
    # two rows, and the plain session here gets all 20 at once: one row each way would differ by an ulp.
    feeds = [_plain_onnx_feeds(metadata, doc) for doc in unseen]
    together = {name: np.concatenate([feed[name] for feed in feeds]) for name in feeds[0]}
    from_onnx_all = session.run(None, together)[0].ravel().tolist()
    for doc, from_onnx in zip(unseen, from_onnx_all):
        expected = doc["y"]
        from_wheel = wheel.predict({k: v for k, v in doc.items() if k not in ("_id", "y")})
        assert from_onnx == from_wheel, doc
        assert from_wheel == pytest.approx(expected, abs=1e-3), doc
        # The same date as a datetime, an ISO 8601 string and Extended JSON: the same prediction.
        iso = doc["signup"].isoformat(timespec="milliseconds") + "Z"
        for signup in (iso, {"$date": iso}, doc["signup"].replace(tzinfo=dt.UTC)):
            assert wheel.predict({**doc, "signup": signup}) == from_wheel


def test_target_transform_fits_in_log_space_and_answers_in_target_units(shop: Project, run, mongo_client) -> None:
    collection = mongo_client[shop.database]["orders"]
    for doc in collection.find():
        # log(y) is linear in the features: only a model fitted on log(y) can be exact.
        collection.update_one({"_id": doc["_id"]}, {"$set": {"y": math.exp(doc["y"] / 40)}})
    shop.edit('target = "y"', 'target = "y"\ntarget_transform = "log"')
    result = run("build", shop.path, "--json")
    assert result.code == 0, result.err
    report = json.loads(result.out)
    assert report["metrics"]["r2"] >= 0.999 and report["parity"]["within_tolerance"]
    session = ort.InferenceSession(str(shop.path / "dist/shop-model-1.0.0.onnx"), providers=["CPUExecutionProvider"])
    metadata = json.loads(session.get_modelmeta().custom_metadata_map["mlpack.metadata"])
    for doc in orders(5, seed=7):
        got = float(session.run(None, _plain_onnx_feeds(metadata, doc))[0].ravel()[0])
        assert got == pytest.approx(math.exp(doc["y"] / 40), rel=1e-4)  # target units, inverse in the graph


@pytest.mark.parametrize(
    ("edit", "code", "needles"),
    [
        (
            ('ratio = "price / carat"', 'ratio = "price / contract"'),
            2,
            ["[features.derived].ratio", "'contract' is a category", "price / contract", "^"],
        ),
        (
            ('ratio = "price / carat"', 'ratio = "price / karat"'),
            2,
            ["[features.derived].ratio", "unknown name 'karat'", "did you mean 'carat'?", "price / karat"],
        ),
        (('categorical = ["contract"]', 'categorical = ["contract"]\nnumeric = ["signup"]'), 2, ["'signup'"]),
    ],
)
def test_wrong_uses_name_the_feature(shop: Project, run, edit: tuple[str, str], code: int, needles: list[str]) -> None:
    shop.edit(*edit)
    assert_clean_error(run("build", shop.path), code, *needles)


def test_a_date_field_fed_to_numeric_is_named(shop: Project, run) -> None:
    shop.edit('datetime = ["signup"]', 'numeric = ["signup"]')
    shop.edit('days_open = "days_between(signup, last.opened)"', 'days_open = "tenure * 2"')
    assert_clean_error(run("build", shop.path), 1, "numeric feature 'signup'", "[features].datetime")


def test_a_datetime_field_holding_non_dates_reports_count_and_an_id(shop: Project, run, mongo_client) -> None:
    mongo_client[shop.database]["orders"].update_many({"_id": {"$in": [3, 4, 5]}}, {"$set": {"signup": "soon"}})
    assert_clean_error(run("build", shop.path), 1, "datetime feature 'signup'", "3 bad value(s)", "_id 3", "'soon'")


def test_a_text_field_without_words_is_named(shop: Project, run, mongo_client) -> None:
    mongo_client[shop.database]["orders"].update_many({}, {"$set": {"subject": "?"}})
    assert_clean_error(run("build", shop.path), 1, "text feature 'subject'", "no training document has a word")


def test_a_target_outside_the_transform_domain_is_refused(shop: Project, run, mongo_client) -> None:
    mongo_client[shop.database]["orders"].update_one({"_id": 7}, {"$set": {"y": 0.0}})
    shop.edit('target = "y"', 'target = "y"\ntarget_transform = "log"')
    assert_clean_error(run("build", shop.path), 1, "target 'y'", 'target_transform = "log"', "greater than 0", "_id 7")


def test_a_derived_feature_missing_everywhere_is_named(shop: Project, run) -> None:
    shop.edit('log_tenure = "log1p(tenure)"', 'log_tenure = "log(-1 - tenure)"')
    assert_clean_error(run("build", shop.path), 1, "derived feature 'log_tenure'", "missing", "all 120 training")


def test_the_server_takes_dates_as_iso_strings_and_as_v2_int64_tensors(shop: Project, run) -> None:
    from mlpack.runtime import Model, read_onnx_metadata
    from mlpack.runtime.serving import App, Request

    def post(path: str, document: Any) -> tuple[int, Any]:
        answer = app.respond(Request("POST", path, "", {}, json.dumps(document).encode()))
        return answer.status, json.loads(answer.body)

    assert run("build", shop.path).code == 0
    onnx_file = shop.path / "dist/shop-model-1.0.0.onnx"
    app = App(Model(onnx_file, read_onnx_metadata(onnx_file)).load())
    app.ready.set()
    doc = orders(1, seed=5)[0]
    record = {**doc, "signup": doc["signup"].isoformat() + "Z", "last": {"opened": doc["last"]["opened"].isoformat()}}
    status, answer = post("/predict", record)
    assert status == 200 and answer["predictions"][0] == pytest.approx(doc["y"], abs=1e-3)
    tensors = []
    for entry in app.model.metadata["inputs"]:
        value: Any = doc
        for part in entry["path"].split("."):
            value = value[part]
        datatype = {"float32": "FP32", "string": "BYTES", "int64-ms": "INT64"}[entry["type"]]
        if datatype == "INT64":
            value = (value - EPOCH) // dt.timedelta(milliseconds=1)
        tensors.append({"name": entry["name"], "shape": [1, 1], "datatype": datatype, "data": [value]})
    status, answer = post("/v2/models/shop-model/infer", {"inputs": tensors})
    assert status == 200 and answer["outputs"][0]["data"][0] == pytest.approx(doc["y"], abs=1e-3)
    signup = next(t for t in tensors if t["name"] == "signup")
    signup["data"] = ["not a date"]
    status, answer = post("/v2/models/shop-model/infer", {"inputs": tensors})
    assert status == 400 and "expected a date" in answer["error"]


@pytest.mark.parametrize("version", ["3.9", "3.13"])
def test_the_wheel_reads_dates_on_the_oldest_and_newest_python(
    shop: Project, run, version: str, tmp_path: Path
) -> None:
    """Python 3.9's datetime.fromisoformat knows neither 'Z' nor short fractions: the runtime's reading must."""
    interpreter = python_interpreter(version)
    if interpreter is None:
        pytest.skip(f"no Python {version} on this machine")
    assert run("build", shop.path).code == 0
    env = tmp_path / "venv"
    subprocess.run([interpreter, "-m", "venv", env], check=True)
    wheel = shop.path / "dist/shop_model-1.0.0-py3-none-any.whl"
    subprocess.run(
        [env / "bin/python", "-m", "pip", "install", "-q", "--disable-pip-version-check", wheel],
        check=True,
        timeout=600,
    )
    docs = orders(10, seed=21)
    records = []
    for index, doc in enumerate(docs):
        signup, opened = doc["signup"], doc["last"]["opened"]
        forms = [
            signup.isoformat() + "Z",
            {"$date": signup.isoformat(timespec="milliseconds") + "Z"},
            {"$date": {"$numberLong": str((signup - EPOCH) // dt.timedelta(milliseconds=1))}},
        ]
        records.append({**doc, "signup": forms[index % 3], "last": {"opened": opened.isoformat() + "+00:00"}, "y": 0})
    script = "import json, sys, shop_model; print(json.dumps(shop_model.predict(json.load(sys.stdin))))"
    answer = subprocess.run(
        [env / "bin/python", "-c", script], input=json.dumps(records), capture_output=True, text=True, check=True
    )
    assert json.loads(answer.stdout) == pytest.approx([doc["y"] for doc in docs], abs=1e-3)


def test_feature_engineering_builds_are_byte_identical() -> None:
    """Same data and config → the same .onnx bytes (the converters name every node deterministically)."""
    import tomllib

    from tests.helpers.training import export

    raw = tomllib.loads(CONFIG.format(database="db"))
    raw["preprocessing"] = {"text_max_words": 5}
    config = parse_config(raw)
    first, second = export(config, orders(80)), export(config, orders(80))
    assert first.onnx_bytes == second.onnx_bytes
    assert first.metadata["derived"][0] == {"name": "ratio", "expression": "price / carat", "reads": ["price", "carat"]}
