"""One reading of a document (issue 8): training and prediction read a document the same way.

Real documents in a real wire-protocol server, with absent fields, null fields, whole-number
categories stored as int, float and string, a boolean target and an integer-coded target with
[features].labels. Every training document predicts through the wheel, the CLI and the server;
strict mode refuses and names; bad inputs are caught with clear messages.
"""

from __future__ import annotations

import contextlib
import importlib
import io
import json
import os
import random
import sys
import zipfile
from collections.abc import Iterator
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from bson.decimal128 import Decimal128
from pymongo import MongoClient

from mlpack.cli import main as cli_main
from mlpack.runtime import MISSING_CATEGORY, category_text, to_number
from tests.helpers.cli import assert_clean_error
from tests.helpers.http_client import ServerProcess
from tests.helpers.projects import Project

PASSENGERS_CONFIG = """
[model]
name = "survival-model"
version = "1.0.0"
task = "classification"

[source]
uri_env = "MLPACK_TEST_URI"
database = "{database}"
collection = "passengers"

[features]
numeric = ["age", "fare", "family.siblings"]
categorical = ["pclass", "sex", "embarked", "ticket", "deck"]
target = "survived"

[preprocessing]
max_categories = 5

[estimator]
class = "sklearn.ensemble.RandomForestClassifier"
params = {{ n_estimators = 20, random_state = 0, class_weight = {{ true = 2.0, false = 1.0 }} }}

[evaluation]
test_size = 0.25
"""

WINE_CONFIG = """
[model]
name = "wine-model"
version = "1.0.0"
task = "classification"

[source]
uri_env = "MLPACK_TEST_URI"
database = "{database}"
collection = "wines"

[features]
numeric = ["alcohol", "chemistry.flavanoids", "chemistry.proline", "color_intensity"]
categorical = ["hue_band"]
target = "cultivar"
labels = {{ 0 = "barolo", 1 = "grignolino", 2 = "barbera" }}

[estimator]
class = "sklearn.linear_model.LogisticRegression"
params = {{ max_iter = 500, class_weight = {{ 0 = 1.0, grignolino = 1.5, 2 = 1.0 }} }}
"""


def passengers(n: int = 240, seed: int = 11) -> list[dict[str, Any]]:
    """Survival records shaped like the classic data set, stored the way real collections drift."""
    rng = random.Random(seed)
    documents = []
    for index in range(n):
        pclass = rng.choice([1, 2, 3])
        sex = rng.choice(["male", "female"])
        age = round(rng.uniform(1, 70), 1)
        fare = round(rng.uniform(5, 120) / pclass, 2)
        survived = (sex == "female") * 1.2 + (pclass == 1) * 0.8 - age * 0.01 + rng.gauss(0, 0.5) > 0.6
        document: dict[str, Any] = {
            "_id": index + 1,
            # whole-number categories as different writers stored them: 3, 3.0, "3"
            "pclass": [pclass, float(pclass), str(pclass)][index % 3],
            "sex": sex,
            "age": age,
            "fare": fare,
            "family": {"siblings": rng.randint(0, 3)},
            "embarked": rng.choice(["S", "C", "Q"]),
            "ticket": f"T-{index:05d}",  # one distinct value per document: looks like an id
            "deck": rng.choice(["A", "B", "C", "D", "E", "F", "G"]),
            "survived": bool(survived),
            "name": f"passenger {index}",  # a field the model does not use
        }
        if index % 7 == 0:
            del document["age"]  # absent
        if index % 11 == 0:
            document["embarked"] = None  # null
        if index % 13 == 0:
            document["family"] = None  # a null sub-document
        if index % 17 == 0:
            del document["deck"]
        documents.append(document)
    return documents


def wines() -> list[dict[str, Any]]:
    """scikit-learn's wine measurements (bundled, no download) as nested documents, integer-coded cultivar."""
    from sklearn.datasets import load_wine

    data = load_wine()
    names = list(data.feature_names)
    documents = []
    for index, (row, cultivar) in enumerate(zip(data.data, data.target)):
        value = dict(zip(names, row.tolist()))
        document: dict[str, Any] = {
            "_id": index + 1,
            "alcohol": value["alcohol"],
            "chemistry": {"flavanoids": value["flavanoids"], "proline": Decimal128(str(value["proline"]))},
            "color_intensity": value["color_intensity"],
            "hue_band": int(value["hue"] * 2) if index % 2 else float(int(value["hue"] * 2)),
            "cultivar": int(cultivar),
        }
        if index % 9 == 0:
            document["color_intensity"] = None
        if index % 10 == 0:
            del document["chemistry"]["flavanoids"]
        documents.append(document)
    return documents


def _project(tmp_path: Path, name: str, config: str, database: str, uri: str) -> Project:
    project = Project(tmp_path / name, database, uri)
    project.path.mkdir()
    project.write_config(config)
    return project


def _wheel_package(wheel: Path, tmp_path: Path) -> Any:
    """The model package imported from the wheel's own files (its copy of the runtime included)."""
    target = tmp_path / f"site-{wheel.stem}"
    with zipfile.ZipFile(wheel) as archive:
        archive.extractall(target)
    sys.path.insert(0, str(target))
    import_name = wheel.name.split("-")[0]
    for module in [m for m in sys.modules if m == import_name or m.startswith(f"{import_name}.")]:
        del sys.modules[module]  # another test's copy of the same package
    try:
        return importlib.import_module(import_name)
    finally:
        sys.path.remove(str(target))


def _jsonable(document: dict[str, Any]) -> dict[str, Any]:
    """A MongoDB document as JSON: Decimal128 as a number, as mongoexport --jsonFormat=relaxed would not."""

    def convert(value: Any) -> Any:
        if isinstance(value, dict):
            return {k: convert(v) for k, v in value.items()}
        if isinstance(value, Decimal128):
            return float(value.to_decimal())
        return value

    return convert(document)


@pytest.fixture(scope="module")
def built_projects(
    tmp_path_factory: pytest.TempPathFactory, mongo_uri: str, mongo_client: MongoClient[dict[str, Any]]
) -> Iterator[dict[str, Any]]:
    """Both projects built once for the module, from their collections in the wire server."""
    tmp_path = tmp_path_factory.mktemp("reading")
    database_name = f"mlpack_reading_{os.getpid()}"
    database = mongo_client[database_name]
    database["passengers"].insert_many(passengers())
    database["wines"].insert_many(wines())
    os.environ["MLPACK_TEST_URI"] = mongo_uri
    built = {}
    try:
        for name, config in (("passengers", PASSENGERS_CONFIG), ("wines", WINE_CONFIG)):
            project = _project(tmp_path, name, config, database_name, mongo_uri)
            out, err = io.StringIO(), io.StringIO()
            with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
                code = cli_main(["build", str(project.path), "--json", "--no-image"])
            assert code == 0, err.getvalue()
            documents = list(database[name].find())
            built[name] = {"summary": json.loads(out.getvalue()), "documents": documents, "project": project}
        yield built
    finally:
        mongo_client.drop_database(database_name)


def test_every_training_document_predicts_through_the_wheel_the_cli_and_the_server(
    built_projects: dict[str, Any], tmp_path: Path, run: Any
) -> None:
    for name, expected_classes in (("passengers", [False, True]), ("wines", ["barolo", "grignolino", "barbera"])):
        built = built_projects[name]
        summary, documents = built["summary"], built["documents"]
        assert summary["classes"] == expected_classes
        wheel = Path(summary["paths"]["wheel"])
        package = _wheel_package(wheel, tmp_path)

        # The wheel: the documents exactly as find() returns them, _id, Decimal128, nulls and gaps included.
        labels = package.predict(documents)
        assert len(labels) == len(documents)
        assert all(type(label) is type(expected_classes[0]) for label in labels)
        assert set(labels) <= set(expected_classes)
        probabilities = package.predict_proba(documents)
        assert np.allclose(np.sum(probabilities, axis=1), 1.0, atol=1e-5)

        # The CLI: the same documents as a JSON Lines file.
        source = tmp_path / f"{name}.jsonl"
        source.write_text("".join(json.dumps(_jsonable(d)) + "\n" for d in documents), encoding="utf-8")
        result = run("predict", wheel, "--input", source)
        assert result.code == 0, result.err
        assert [json.loads(line)["prediction"] for line in result.out.splitlines()] == labels

        # The server: the same documents in one request.
        server = ServerProcess.mlpack(wheel)
        try:
            answer = server.request("POST", "/predict", [_jsonable(d) for d in documents])
            assert answer.status == 200, answer.body
            assert answer.json()["predictions"] == labels
        finally:
            server.stop()


def test_one_category_whatever_the_number_type(built_projects: dict[str, Any], tmp_path: Path) -> None:
    built = built_projects["passengers"]
    package = _wheel_package(Path(built["summary"]["paths"]["wheel"]), tmp_path)
    pclass = next(f for f in package.metadata["features"] if f["name"] == "pclass")
    assert set(pclass["categories"]) == {"1", "2", "3"}  # 3, 3.0 and "3" trained as one category
    complete = next(d for d in built["documents"] if "age" in d and "deck" in d and d["family"])
    record = {k: v for k, v in complete.items() if k != "pclass"}
    answers = [
        package.predict_proba({**record, "pclass": value}, strict=True)
        for value in (3, 3.0, "3", np.int64(3), np.float32(3.0), Decimal128("3"), Decimal("3.00"))
    ]
    assert all(answer == answers[0] for answer in answers)


def test_strict_refuses_absent_fields_and_unknown_categories_naming_them(
    built_projects: dict[str, Any], tmp_path: Path
) -> None:
    built = built_projects["passengers"]
    package = _wheel_package(Path(built["summary"]["paths"]["wheel"]), tmp_path)
    complete = next(d for d in built["documents"] if "age" in d and "deck" in d and d["family"])
    assert package.predict(complete, strict=True) in (True, False)
    without_age = {k: v for k, v in complete.items() if k != "age"}
    assert package.predict(without_age) in (True, False)  # imputed, as in training
    with pytest.raises(ValueError, match="field 'age': absent"):
        package.predict(without_age, strict=True)
    with pytest.raises(ValueError, match="record 1: field 'family.siblings': absent"):
        package.predict([complete, {**complete, "family": None}], strict=True)
    with pytest.raises(ValueError, match="field 'embarked': category 'X' was not seen in training"):
        package.predict({**complete, "embarked": "X"}, strict=True)
    assert package.predict({**complete, "embarked": None}, strict=True) in (True, False)  # null is a value

    server = ServerProcess.mlpack(Path(built["summary"]["paths"]["wheel"]))
    try:
        refused = server.request("POST", "/predict?strict=true", _jsonable(without_age))
        assert refused.status == 422 and "field 'age': absent" in refused.json()["error"]
        lenient = server.request("POST", "/predict", _jsonable(without_age))
        assert lenient.status == 200
    finally:
        server.stop()


def test_metadata_and_model_card_carry_imputed_values_categories_and_class_shares(
    built_projects: dict[str, Any],
) -> None:
    summary = built_projects["passengers"]["summary"]
    features = {f["name"]: f for f in summary["features"]}
    ages = [d["age"] for d in built_projects["passengers"]["documents"] if d.get("age") is not None]
    assert min(ages) <= features["age"]["imputed"] <= max(ages)
    assert features["age"]["missing"] > 0 and "categories" not in features["age"]
    assert set(features["sex"]["categories"]) == {"male", "female"}
    assert features["embarked"]["missing"] > 0 and MISSING_CATEGORY not in features["embarked"]["categories"]
    balance = {entry["label"]: entry for entry in summary["class_balance"]}
    assert set(balance) == {False, True} and abs(sum(e["share"] for e in balance.values()) - 1) < 1e-6
    card = Path(summary["paths"]["wheel"])
    with zipfile.ZipFile(card) as archive:
        readme = next(archive.read(n).decode() for n in archive.namelist() if n.endswith("METADATA"))
    assert "| `age` | numeric |" in readme and "imputed" in readme
    assert "male (" in readme  # categories with their counts
    assert "| `True` |" in readme or "| True |" in readme  # per class its share


def test_build_warnings_are_reported_not_fatal(built_projects: dict[str, Any]) -> None:
    built = built_projects["passengers"]
    warnings = built["summary"]["warnings"]
    assert any("'ticket' has a different value in every document" in w and "[features].text" in w for w in warnings)
    assert any("'deck' has 7 distinct values, more than [preprocessing].max_categories (5)" in w for w in warnings)
    assert built_projects["wines"]["summary"]["warnings"] == []


def test_bool_and_labelled_targets_come_back_as_the_data_or_the_config_named_them(
    built_projects: dict[str, Any], tmp_path: Path
) -> None:
    wines_built = built_projects["wines"]
    summary = wines_built["summary"]
    assert summary["class_codes"] == [0, 1, 2]
    assert summary["estimator"]["params"]["class_weight"] == {"0": 1.0, "grignolino": 1.5, "2": 1.0}
    package = _wheel_package(Path(summary["paths"]["wheel"]), tmp_path)
    assert package.classes == ["barolo", "grignolino", "barbera"]
    assert package.predict(wines_built["documents"][0]) == "barolo"


def test_reading_rules() -> None:
    for value in (4, 4.0, "4", np.int64(4), np.float64(4.0), Decimal128("4"), Decimal("4.0")):
        assert category_text(value) == "4", value
    assert category_text("04") == "04"  # strings are kept as written
    assert category_text(True) == "true" and category_text(np.bool_(False)) == "false"
    assert category_text(4.5) == "4.5" and category_text(np.float32(0.1)) == "0.1"
    for missing in (None, float("nan"), np.nan):
        assert category_text(missing) == MISSING_CATEGORY
    with pytest.raises(ValueError, match=r"a date is not a category .*\[features\]\.datetime"):
        category_text(datetime(2024, 5, 1, tzinfo=UTC))
    with pytest.raises(ValueError, match="expected a category"):
        category_text({"a": 1})
    assert to_number(None) != to_number(None)  # NaN: missing
    assert to_number(Decimal128("2.5")) == 2.5 and to_number(np.int32(3)) == 3.0
    for bad, message in ((True, "a boolean"), ("3 calls", "expected a number"), (1e39, "float32"), ([1], r"got \[1\]")):
        with pytest.raises(ValueError, match=message):
            to_number(bad)
    with pytest.raises(ValueError, match=r"a date: list the field under \[features\]\.datetime"):
        to_number(datetime(2024, 5, 1))


LABELS = 'labels = {{ 0 = "barolo", 1 = "grignolino", 2 = "barbera" }}'


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (
            ('labels = {{ 0 = "barolo", 1 = "grignolino", 2 = "barbera" }}', 'labels = {{ 0 = "barolo", 1 = "x" }}'),
            "[features].labels has no name for class '2'",
        ),
        (
            (
                'labels = {{ 0 = "barolo", 1 = "grignolino", 2 = "barbera" }}',
                'labels = {{ 0 = "a", 1 = "b", 2 = "c", 7 = "d" }}',
            ),
            "[features].labels names class '7', which is not in the data",
        ),
        (("grignolino = 1.5", "merlot = 1.5"), "class_weight names 'merlot', which is not a class of the target"),
    ],
)
def test_labels_and_class_weights_that_name_no_class_are_config_errors(
    tmp_path: Path,
    mongo_uri: str,
    mongo_client: MongoClient[dict[str, Any]],
    database_name: str,
    run: Any,
    monkeypatch: pytest.MonkeyPatch,
    edit: tuple[str, str],
    message: str,
) -> None:
    monkeypatch.setenv("MLPACK_TEST_URI", mongo_uri)
    mongo_client[database_name]["wines"].insert_many(wines())
    config = WINE_CONFIG.replace(edit[0], edit[1])
    project = _project(tmp_path, "wines", config, database_name, mongo_uri)
    assert_clean_error(run("build", project.path, "--no-image"), 2, message)
    assert not (project.path / "dist" / "wine-model-1.0.0-py3-none-any.whl").exists()
