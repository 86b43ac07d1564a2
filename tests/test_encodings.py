"""[features].encoding: "frequency" and "target" encodings of high-cardinality categoricals, in the graph.

Each transformer is checked against its reference (scikit-learn's TargetEncoder, pandas' value
counts) on messy values, its graph under onnxruntime against the transformer, the estimator's
training features against the out-of-fold values, and real builds for parity on every row.
"""

from __future__ import annotations

import json
import random
import re
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime
import pandas as pd
import pytest
from pymongo import MongoClient
from skl2onnx import convert_sklearn
from skl2onnx.common.data_types import StringTensorType
from sklearn.base import clone
from sklearn.model_selection import KFold, StratifiedKFold
from sklearn.preprocessing import TargetEncoder

from mlpack.config import parse_config
from mlpack.errors import ConfigError
from mlpack.features.converters import register
from mlpack.features.encodings import FrequencyEncoding, TargetEncoding
from mlpack.runtime import MISSING_CATEGORY
from tests.helpers.cli import assert_clean_error
from tests.helpers.projects import Project
from tests.helpers.training import export, runtime_model

# Accents, one letter, a missing value, digits: what a tail-number or city field holds.
MESSY = ["Zürich", "São Paulo", "a", "b", MISSING_CATEGORY, "N123AA", "Ωmega", "ß", "1"]
UNSEEN = np.array([["Zürich", "b"], ["never seen", "Ωmega"], [MISSING_CATEGORY, "a"], ["", "x"]], dtype=object)


def _columns(rows: int = 300, seed: int = 0) -> np.ndarray:
    rng = random.Random(seed)
    tail = MESSY + [f"T{i}" for i in range(60)]
    return np.array([[rng.choice(tail), rng.choice(MESSY[:5])] for _ in range(rows)], dtype=object)


def _graph(model: Any, columns: np.ndarray) -> np.ndarray:
    register()
    onnx = convert_sklearn(model, initial_types=[("x", StringTensorType([None, 2]))], target_opset=17)
    session = onnxruntime.InferenceSession(onnx.SerializeToString(), providers=["CPUExecutionProvider"])
    (out,) = session.run(None, {"x": columns})
    assert out.dtype == np.float32
    return np.asarray(out)


@pytest.mark.parametrize("kind", ["continuous", "binary", "multiclass"])
def test_target_encoding_is_scikit_learns_out_of_fold_and_in_the_graph(kind: str) -> None:
    columns = _columns()
    rng = np.random.default_rng(0)
    lengths = np.array([len(value) for value in columns[:, 0]], dtype=np.float64)
    target: np.ndarray = {
        "continuous": lengths + rng.normal(0, 1, len(lengths)),
        "binary": np.where(lengths > 4, "yes", "no"),
        "multiclass": np.array(["p", "q", "r"], dtype=object)[np.arange(len(lengths)) % 3],
    }[kind]
    task = "regression" if kind == "continuous" else "classification"
    model = TargetEncoding(task, min_count=1, folds=5, seed=3)
    trained = model.fit_transform(columns, target)
    splitter = KFold if kind == "continuous" else StratifiedKFold
    reference = TargetEncoder(target_type=kind, cv=splitter(5, shuffle=True, random_state=3))
    expected = reference.fit_transform(columns, target)
    np.testing.assert_array_equal(trained, expected.astype(np.float32))  # out of fold, as scikit-learn's
    assert not np.array_equal(trained, model.transform(columns))  # which is not the full table's value
    np.testing.assert_array_equal(model.transform(UNSEEN), reference.transform(UNSEEN).astype(np.float32))
    both = np.vstack([columns, UNSEEN])
    np.testing.assert_array_equal(_graph(model, both), model.transform(both))
    width = 3 if kind == "multiclass" else 1
    assert trained.shape == (len(columns), 2 * width)


def test_frequency_encoding_is_the_share_of_documents_and_in_the_graph() -> None:
    columns = _columns()
    model = FrequencyEncoding(min_count=1).fit(columns)
    shares = pd.Series(columns[:, 0]).value_counts(normalize=True)
    got = model.transform(columns)
    np.testing.assert_array_equal(got[:, 0], shares[columns[:, 0]].to_numpy().astype(np.float32))
    assert model.transform(UNSEEN)[1, 0] == 0.0 and model.transform(UNSEEN)[3, 0] == 0.0  # unseen: 0
    both = np.vstack([columns, UNSEEN])
    np.testing.assert_array_equal(_graph(model, both), model.transform(both))


def test_categories_rarer_than_min_count_have_no_entry_of_their_own() -> None:
    columns = np.array([["a", "x"]] * 5 + [["b", "x"]] * 3 + [["once", "x"]], dtype=object)
    target = np.array([1.0] * 5 + [0.0] * 3 + [100.0])
    frequency = FrequencyEncoding(min_count=2).fit(columns)
    assert frequency.tables_[0][0] == ["a", "b"]  # "once" is not in the model
    assert frequency.transform(np.array([["once", "x"]], dtype=object))[0, 0] == 0.0
    encoding = TargetEncoding("regression", min_count=2, folds=3)
    encoding.fit_transform(columns, target)
    keys, _, default = encoding.tables_[0]
    assert keys == ["a", "b"]
    # "once" and any unseen category share one value: that of the rare documents pooled.
    rare = encoding.transform(np.array([["once", "x"], ["new", "x"]], dtype=object))
    assert rare[0, 0] == rare[1, 0] == np.float32(default[0])
    np.testing.assert_array_equal(_graph(encoding, columns), encoding.transform(columns))


def flights(n: int = 600, seed: int = 2) -> list[dict[str, Any]]:
    """Delays by tail number (hundreds of them, most seen a few times), carrier and distance."""
    rng = random.Random(seed)
    tails = [f"N{rng.randrange(100, 999)}{rng.choice('ABCDÉ')}{rng.choice('AZ')}" for _ in range(300)]
    badness = {tail: rng.gauss(0, 12) for tail in tails}
    documents = []
    for index in range(n):
        tail = rng.choice(tails[: 20 + index % 280])
        carrier = rng.choice(["AA", "DL", "UA", "Ü"])
        distance = rng.uniform(100, 3000)
        delay = 10 + badness[tail] + distance / 300 + rng.gauss(0, 3)
        document: dict[str, Any] = {"_id": index + 1, "tail": tail, "carrier": carrier, "distance": distance}
        document["delay"], document["late"] = round(delay, 2), "late" if delay > 15 else "on time"
        if index % 37 == 5:
            document["tail"] = None  # a missing tail number is its own category
        documents.append(document)
    return documents


def _flights_config(estimator: str, task: str, encoding: dict[str, str], **preprocessing: Any) -> Any:
    return parse_config(
        {
            "model": {"name": "flights", "version": "1.0.0", "task": task},
            "source": {"database": "db", "collection": "flights"},
            "features": {
                "numeric": ["distance"],
                "categorical": ["tail", "carrier"],
                "encoding": encoding,
                "target": "delay" if task == "regression" else "late",
            },
            "preprocessing": preprocessing,
            "estimator": {"class": estimator, "params": {"random_state": 0} if "Forest" in estimator else {}},
        }
    )


@pytest.mark.parametrize(
    ("estimator", "task"),
    [
        ("sklearn.ensemble.RandomForestRegressor", "regression"),
        ("sklearn.linear_model.Ridge", "regression"),
        ("sklearn.linear_model.LogisticRegression", "classification"),
    ],
)
def test_encoded_builds_have_parity_on_every_row_and_train_out_of_fold(estimator: str, task: str) -> None:
    documents = flights()
    config = _flights_config(estimator, task, {"tail": "target", "carrier": "frequency"})
    exported = export(config, documents)
    parity = exported.metadata["parity"]
    assert parity["within_tolerance"] and parity["train_failures"] == parity["test_failures"] == 0, parity
    assert parity["rows"] == len(documents)
    features = exported.trained.pipeline.named_steps["features"]
    names = features.get_feature_names_out().tolist()
    assert names == ["numeric__distance", "frequency__carrier", "target__tail"]  # one column each
    # The estimator learnt from out-of-fold encodings of the training rows; prediction uses the full table.
    trained_on = features.fit_transform(exported.trained.train_frame, exported.trained.train_target)
    served = features.transform(exported.trained.train_frame)
    np.testing.assert_array_equal(trained_on[:, :2], served[:, :2])
    encoder = clone(features.preprocessing_.named_steps["preprocess"].named_transformers_["target"])
    out_of_fold = encoder.fit_transform(exported.trained.train_frame[["tail"]], exported.trained.train_target)
    np.testing.assert_array_equal(trained_on[:, 2], out_of_fold[:, 0])
    assert np.mean(trained_on[:, 2] != served[:, 2]) > 0.3
    model = runtime_model(exported)
    flight = {"distance": 900.0, "carrier": "DL"}
    assert model.predict({**flight, "tail": "never seen"}) == model.predict({**flight, "tail": "seen nowhere"})
    if task == "regression":
        assert exported.metadata["metrics"]["r2"] > 0.5


def test_target_encoding_beats_one_hot_on_many_categories() -> None:
    documents = flights(900)
    scores = {}
    for encoding in ("onehot", "target"):
        exported = export(_flights_config("sklearn.linear_model.Ridge", "regression", {"tail": encoding}), documents)
        scores[encoding] = exported.metadata["metrics"]["r2"]
    assert scores["target"] > scores["onehot"] + 0.05, scores


def test_encoding_mistakes_are_config_errors() -> None:
    with pytest.raises(
        ConfigError, match=r"\[features\].encoding names 'city': list it under \[features\].categorical"
    ):
        _flights_config("sklearn.linear_model.Ridge", "regression", {"city": "target"})
    with pytest.raises(ConfigError, match=r"\[features\].encoding.tail must be one of 'onehot', 'frequency', 'target'"):
        _flights_config("sklearn.linear_model.Ridge", "regression", {"tail": "mean"})
    with pytest.raises(
        ConfigError, match=r'\[features\].encoding.aircraft is a table: quote a dotted field path, "aircraft.tail"'
    ):
        _flights_config("sklearn.linear_model.Ridge", "regression", {"aircraft": {"tail": "target"}})
    with pytest.raises(ConfigError, match=r"\[features\].encoding.tail = 'target', but \[features\].ordinal already"):
        parse_config(
            {
                "model": {"name": "m", "task": "regression"},
                "source": {"database": "db", "collection": "c"},
                "features": {
                    "categorical": ["tail"],
                    "target": "y",
                    "ordinal": {"tail": ["a"]},
                    "encoding": {"tail": "target"},
                },
                "estimator": {"class": "sklearn.linear_model.Ridge"},
            }
        )
    with pytest.raises(ConfigError, match=r"\[preprocessing\].target_folds must be at least 2"):
        _flights_config("sklearn.linear_model.Ridge", "regression", {"tail": "target"}, target_folds=1)


BASE_CONFIG = """
[model]
name = "delay-model"
version = "1.0.0"
task = "classification"

[source]
uri_env = "MLPACK_TEST_URI"
database = "{database}"
collection = "flights"

[estimator]
class = "sklearn.ensemble.RandomForestClassifier"
params = {{ n_estimators = 40, random_state = 0 }}

[evaluation]
cv = 3
"""


def readme_example() -> str:
    """The README's encoding example, as written."""
    readme = (Path(__file__).parent.parent / "README.md").read_text(encoding="utf-8")
    found = re.search(r"A categorical with many values.*?```toml\n(.*?)```", readme, re.S)
    assert found is not None
    return found.group(1)


def test_the_readme_example_builds_against_mongodb(churn_project: Project, run, mongo_client: MongoClient[Any]) -> None:
    documents = flights(500, seed=5)
    mongo_client[churn_project.database]["flights"].insert_many(documents)
    churn_project.write_config(BASE_CONFIG + readme_example().replace("{", "{{").replace("}", "}}"))
    built = run("build", churn_project.path, "--json")
    assert built.code == 0, built.err
    report = json.loads(built.out)
    parity = report["parity"]
    assert parity["within_tolerance"] and parity["rows"] == 500 and parity["label_disagreements"] == 0, parity
    assert report["metrics"]["accuracy"] > 0.6
    metadata = json.loads(next(churn_project.path.glob("dist/*-1.0.0.json")).read_text(encoding="utf-8"))  # the report
    encodings = {feature["name"]: feature.get("encoding") for feature in metadata["features"]}
    assert encodings == {"distance": None, "tail": "target", "carrier": "frequency"}
    onnx = next(churn_project.path.glob("dist/*.onnx")).read_bytes()
    once = [tail for tail, count in pd.Series([d["tail"] for d in documents]).value_counts().items() if count == 1]
    twice = [tail for tail, count in pd.Series([d["tail"] for d in documents]).value_counts().items() if count >= 3]
    assert once and not any(tail.encode() in onnx for tail in once)  # seen once: not in the model
    assert twice and any(tail.encode() in onnx for tail in twice)  # the table is the model
    churn_project.edit("encoding_min_count = 2", "encoding_min_count = 0")
    refused = run("build", churn_project.path, "--version", "1.0.1")
    assert_clean_error(refused, 2, "[preprocessing].encoding_min_count must be at least 1")


def test_a_high_cardinality_warning_suggests_an_encoding_and_an_encoded_field_has_none() -> None:
    documents = flights()
    one_hot = export(_flights_config("sklearn.linear_model.Ridge", "regression", {}), documents)
    (warning,) = [w for w in one_hot.metadata["warnings"] if "'tail'" in w]
    assert "the 49 most frequent become columns and the rest share one" in warning
    assert '[features].encoding = { "tail" = "target" }' in warning
    encoded = export(_flights_config("sklearn.linear_model.Ridge", "regression", {"tail": "target"}), documents)
    assert not [w for w in encoded.metadata["warnings"] if "'tail'" in w]
    assert [f.get("encoding") for f in encoded.metadata["features"]] == [None, "target", None]


def test_strict_accepts_every_category_the_table_holds() -> None:
    documents = flights()
    exported = export(_flights_config("sklearn.linear_model.Ridge", "regression", {"tail": "target"}), documents)
    training = pd.Series(exported.trained.train_columns["tail"])
    counts = training[training != MISSING_CATEGORY].value_counts()
    (tail,) = [f for f in exported.metadata["features"] if f["name"] == "tail"]
    assert set(tail["categories"]) == set(counts[counts >= 2].index)  # the table's keys, not the top 49
    assert len(tail["categories"]) > 49
    model = runtime_model(exported)
    rare_but_kept = counts[counts >= 2].index[-1]
    flight = {"distance": 900.0, "carrier": "DL"}
    model.predict({**flight, "tail": rare_but_kept}, strict=True)
    with pytest.raises(ValueError, match="category 'N000ZZ' was not seen in training"):
        model.predict({**flight, "tail": "N000ZZ"}, strict=True)


def test_a_group_split_keeps_each_group_out_of_its_own_encoding() -> None:
    documents = flights()
    for document in documents:
        document["fleet"] = document["tail"] or "unknown"
    raw = {
        "model": {"name": "flights", "version": "1.0.0", "task": "regression"},
        "source": {"database": "db", "collection": "flights"},
        "features": {"numeric": ["distance"], "categorical": ["fleet"], "encoding": {"fleet": "target"}},
        "preprocessing": {"encoding_min_count": 1},
        "estimator": {"class": "sklearn.linear_model.Ridge"},
    }
    grouped = {**raw, "evaluation": {"split": "group", "split_field": "fleet", "cv": 3}}
    exported = export(parse_config({**grouped, "features": {**raw["features"], "target": "delay"}}), documents)
    assert exported.metadata["parity"]["within_tolerance"]
    features = exported.trained.pipeline.named_steps["features"]
    trained = exported.trained
    keys = trained.train_columns["fleet"]
    encoder = features.preprocessing_.named_steps["preprocess"].named_transformers_["target"]
    np.testing.assert_array_equal(encoder.groups, keys)  # the build's own fit kept the fleets whole
    with_groups = features.fit_transform(trained.train_frame, trained.train_target, groups=keys)[:, 1]
    # Every fleet is held out of the fold that encodes it: a row gets its fold's overall mean, never
    # a mean that its own fleet's other rows went into.
    assert len(np.unique(with_groups)) <= 5
    without = features.fit_transform(trained.train_frame, trained.train_target)[:, 1]
    assert len(np.unique(without)) > 50
