"""Dirty numbers at load ("NA", " 54 ", Extended JSON) and targets with missing values.

One reading (`mlpack.runtime.to_number`) for training, predict, score, the server and CSV: a
document read as missing or as a number in training is read the same way by every prediction path.
"""

from __future__ import annotations

import io
import json
import math
import random
from typing import Any

import pytest
from pymongo import MongoClient

from mlpack.errors import DataError
from mlpack.runtime import to_number
from mlpack.runtime.files import predict_file
from mlpack.runtime.values import MISSING_NUMBER_TEXTS
from tests.helpers.cli import assert_clean_error
from tests.helpers.documents import subscribers
from tests.helpers.http_client import ServerProcess
from tests.helpers.projects import Project
from tests.helpers.training import config_for, export, runtime_model

MISSING = ["NA", "", "n/a", "NaN", "null", " NA ", "N/A", "none", "<NA>", "#N/A", "-nan"]
NUMBERS = {" 54 ": 54.0, "131.0": 131.0, "-1e3": -1000.0, "+.5": 0.5, "7": 7.0, "\t12\n": 12.0}
EXTENDED = {
    '{"$numberDouble": "0.0"}': 0.0,
    '{"$numberDouble": "-2.5"}': -2.5,
    '{"$numberInt": "3"}': 3.0,
    '{"$numberLong": "123456789012"}': 123456789012.0,
    '{"$numberDecimal": "1.25"}': 1.25,
}


def test_missing_markers_spaced_numbers_and_extended_json_are_read() -> None:
    for text in MISSING:
        assert math.isnan(to_number(text)), text
    assert "na" in MISSING_NUMBER_TEXTS and "" in MISSING_NUMBER_TEXTS  # the documented list
    for text, number in NUMBERS.items():
        assert to_number(text) == number, text
    for text, number in EXTENDED.items():
        assert to_number(json.loads(text)) == number, text
    assert math.isnan(to_number({"$numberDouble": "NaN"}))


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("3 calls", "expected a number, got '3 calls'"),
        ("1,234", "thousands separators are not read"),
        ("1_000", "expected a number, got '1_000'"),  # float() would take these; mlpack does not
        ("inf", "expected a number, got 'inf'"),
        ("0x1F", "expected a number"),
        ("\u0661\u0662", "expected a number"),  # Arabic-Indic digits: not decimal ASCII
        ("1e39", "not a finite number within float32 range"),
        ({"$numberInt": "three"}, "not a valid Extended JSON $numberInt"),
        ({"$numberDouble": "Infinity"}, "not a finite number within float32 range"),
        ({"$numberLong": "9" * 5000}, "not a valid Extended JSON $numberLong"),
        ({"$numberInt": "1", "x": 2}, "expected a number"),
    ],
)
def test_anything_else_is_still_a_clean_error(value: Any, message: str) -> None:
    with pytest.raises(ValueError, match=message.replace("$", r"\$").replace("(", r"\(")):
        to_number(value)


def dirty(documents: list[dict[str, Any]], seed: int = 5) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(dirty documents, their clean twins): numbers as text or Extended JSON, missing as "NA" and the like."""
    rng = random.Random(seed)
    messy, clean = [], []
    for document in documents:
        twin = json.loads(json.dumps(document))
        mess = json.loads(json.dumps(document))
        roll = rng.random()
        if roll < 0.1:
            mess["tenure_months"] = rng.choice(MISSING)
            twin["tenure_months"] = None
        elif roll < 0.2:
            mess["tenure_months"] = f" {document['tenure_months']} "
        elif roll < 0.25:
            mess["support_calls"] = {"$numberInt": str(document["support_calls"])}
        elif roll < 0.3 and isinstance(document["billing"].get("monthly_charges"), float):
            mess["billing"]["monthly_charges"] = repr(document["billing"]["monthly_charges"])
        messy.append(mess)
        clean.append(twin)
    return messy, clean


def test_dirty_documents_train_and_every_path_reads_them_as_their_clean_twins(tmp_path: Any) -> None:
    messy, clean = dirty(subscribers(300, seed=3, absent=False))
    recovered = sum(1 for m, c in zip(messy, clean) if m != c or json.dumps(m) != json.dumps(c))
    assert recovered > 60
    config = config_for("sklearn.ensemble.RandomForestClassifier", "classification", {"n_estimators": 20})
    exported = export(config, messy)  # parity on every training and test row, or this raises
    warnings = exported.metadata["warnings"]
    tenure = next(w for w in warnings if w.startswith("numeric feature 'tenure_months'"))
    assert tenure.startswith("numeric feature 'tenure_months': 56 of 300 values are text, not numbers: 28 read as ")
    assert "numbers (e.g. ' 72 '), 28 as missing ('" in tenure and "predictions read them the same way" in tenure
    assert any(w.startswith("numeric feature 'support_calls'") for w in warnings)
    # The same model from the clean twins: the reading made the data identical.
    assert exported.metadata["data"]["sha256"] == export(config, clean).metadata["data"]["sha256"]

    model = runtime_model(exported)
    assert model.predict_proba(messy) == model.predict_proba(clean)  # a batch
    for mess, twin in list(zip(messy, clean))[:40]:  # one record at a time (the server's fast path)
        assert model.predict_proba(mess) == model.predict_proba(twin)
    columns = {"tenure_months": [" 12 ", 12, "NA", None], "support_calls": ["3", 3.0, {"$numberLong": "3"}, 3]}
    spaced, plain, marker, null = model.predict_proba({**columns, "contract": ["monthly"] * 4})
    assert spaced == plain and marker == null  # columns read the same way; "NA" is missing, not 0
    assert model.predict({"tenure_months": "n/a", "contract": "yearly"}) == model.predict({"contract": "yearly"})

    # CSV: "NA" is R's and pandas' missing; " 54 " is 54.
    csv = "tenure_months,support_calls,contract\n NA ,3,monthly\n 12 ,n/a,yearly\n12,,yearly\n"
    out = io.StringIO()
    predict_file(model, io.StringIO(csv), "csv", out)
    lines = [json.loads(line) for line in out.getvalue().splitlines()]
    assert lines[0]["probabilities"] == dict(
        zip(model.classes or [], model.predict_proba({"support_calls": 3, "contract": "monthly"}))
    )
    assert lines[1] == lines[2]
    with pytest.raises(ValueError, match=r"line 2: field 'tenure_months': expected a number, got '1,200' \(thousands"):
        predict_file(model, io.StringIO('tenure_months\n"1,200"\n'), "csv", io.StringIO())


def test_a_value_that_is_no_number_still_names_field_and_record() -> None:
    config = config_for("sklearn.linear_model.LogisticRegression", "classification")
    messy, _ = dirty(subscribers(120, seed=2, absent=False))
    model = runtime_model(export(config, messy))
    with pytest.raises(ValueError, match=r"^record 1: field 'tenure_months': expected a number, got '12 months'$"):
        model.predict([messy[0], {**messy[1], "tenure_months": "12 months"}])
    bad = [{**messy[2], "tenure_months": "12 months"}]
    with pytest.raises(DataError) as error:
        export(config, messy + bad)
    assert "numeric feature 'tenure_months': 1 bad value(s)" in str(error.value.details)


def with_missing_labels(documents: list[dict[str, Any]]) -> int:
    dropped = 0
    for index, document in enumerate(documents):
        if index % 17 == 0:
            del document["label"]
            dropped += 1
        elif index % 29 == 0:
            document["label"] = None
            dropped += 1
    return dropped


def test_a_missing_target_is_refused_naming_the_option_or_dropped_and_counted() -> None:
    documents = subscribers(240, seed=4, absent=False)
    dropped = with_missing_labels(documents)
    config = config_for("sklearn.linear_model.LogisticRegression", "classification")
    with pytest.raises(DataError) as error:
        export(config, documents)
    details = str(error.value.details)
    assert f"target 'label': missing in {dropped} document(s), e.g. _id 1:" in details
    assert "[features].drop_missing_target = true" in details and '"$not" = { "$type" = "null" }' in details

    dropping = config_for(
        "sklearn.linear_model.LogisticRegression", "classification", features={"drop_missing_target": True}
    )
    exported = export(dropping, documents)
    assert exported.metadata["data"]["rows"] == 240 - dropped
    assert f"{dropped} of 240 documents left out: their target 'label' is missing (drop_missing_target)" in " ".join(
        exported.metadata["warnings"]
    )

    # A regression target read as missing ("NA") is dropped too; text that is no number is still refused.
    values = subscribers(200, seed=6, absent=False)
    for document in values[::10]:
        document["lifetime_value"] = "NA"
    regression = config_for(
        "sklearn.linear_model.LinearRegression", "regression", features={"drop_missing_target": True}
    )
    assert export(regression, values).metadata["data"]["rows"] == 180
    values[1]["lifetime_value"] = "lots"
    with pytest.raises(DataError) as error:
        export(regression, values)
    assert "1 value(s) are not numbers for a regression, e.g. _id 2: expected a number, got 'lots'" in str(
        error.value.details
    )
    everything = [{**d, "label": None} for d in subscribers(20)]
    with pytest.raises(DataError, match="the target 'label' is missing in all 20"):
        export(dropping, everything)


DIRTY_CONFIG_EXTRA = "drop_missing_target = true\n"


def test_dirty_collection_builds_predicts_scores_and_serves(
    churn_project: Project, run, mongo_client: MongoClient[Any]
) -> None:
    """Against the real wire server: dirty numbers are read, missing targets refused then dropped, the
    suggested null-excluding filter works, and score and the server read the documents as the build did."""
    collection = mongo_client[churn_project.database]["customers"]
    collection.delete_many({})
    messy, clean = dirty(subscribers(400, seed=9, absent=False), seed=9)
    dropped = with_missing_labels(messy)
    collection.insert_many(messy)
    texts = collection.count_documents(
        {"$or": [{f: {"$type": ["string", "object"]}} for f in ("tenure_months", "support_calls")]}
    )
    assert texts > 60  # the documents a `$not $type string` filter would have lost

    refused = run("build", churn_project.path)
    assert_clean_error(refused, 1, f"target 'label': missing in {dropped} document(s)", "drop_missing_target")

    # The filter the message suggests, as TOML can write it, on the real server.
    suggested = '"label" = { "$exists" = true, "$not" = { "$type" = "null" } }'
    churn_project.edit('collection = "customers"', f'collection = "customers"\nfilter = {{ {suggested} }}')
    filtered = run("build", churn_project.path, "--json", "--version", "1.0.0")
    assert filtered.code == 0, filtered.err
    assert json.loads(filtered.out)["data"]["rows"] == 400 - dropped

    churn_project.edit(f"filter = {{ {suggested} }}", "")
    churn_project.edit('target = "label"', 'target = "label"\n' + DIRTY_CONFIG_EXTRA)
    built = run("build", churn_project.path, "--json", "--version", "1.0.1")
    assert built.code == 0, built.err
    report = json.loads(built.out)
    assert report["data"]["rows"] == 400 - dropped and report["parity"]["within_tolerance"]
    assert any(f"{dropped} of 400 documents left out" in w for w in report["warnings"])
    assert any(w.startswith("numeric feature 'tenure_months'") for w in report["warnings"])

    scored = run("score", churn_project.path, "--into", "scores", "--version", "1.0.1", "--json")
    assert scored.code == 0, scored.err
    assert json.loads(scored.out)["skipped"] == 0
    wheel = churn_project.path / "dist" / "churn_model-1.0.1-py3-none-any.whl"
    from mlpack.artifacts.read import open_model

    model = open_model(wheel)
    by_id = {d["_id"]: d for d in clean}
    for row in mongo_client[churn_project.database]["scores"].find().limit(120):
        assert row["prediction"] == model.predict(by_id[row["_id"]]), row["_id"]

    server = ServerProcess.mlpack(wheel)
    try:
        sample = [d for d in messy if d != by_id[d["_id"]]][:25]
        for document in sample:
            answer = server.request("POST", "/predict", document).json()
            assert answer["predictions"] == [model.predict(by_id[document["_id"]])], document
        many = server.request("POST", "/predict", sample).json()["predictions"]
        assert many == model.predict([by_id[d["_id"]] for d in sample])
        bad = server.request("POST", "/predict", {**sample[0], "support_calls": "a few"})
        assert bad.status == 422 and "field 'support_calls': expected a number, got 'a few'" in bad.json()["error"]
    finally:
        assert server.stop() == 0
