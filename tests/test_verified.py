"""What ships is what was verified: the estimator trains on the graph's own features, parity covers
every training and test row, and the cases that used to ship skewed models or be refused now build.

Each case is a real-data shape that broke before: one-letter words between the words of a bigram,
a ratio of nested fields imputed by its median in front of LightGBM, a log in front of a forest,
job titles with accents in front of XGBoost, a weight that an expression also reads.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mlpack.config import parse_config
from mlpack.errors import ConfigError, DataError
from mlpack.estimators import make_estimator
from mlpack.source import collect
from mlpack.validate import validate
from tests.helpers.training import export, runtime_model


def _config(features: dict[str, Any], estimator: str, params: dict[str, Any] | None = None, **sections: Any) -> Any:
    task = sections.pop("task", "classification")
    raw = {
        "model": {"name": "case", "version": "1.0.0", "task": task},
        "source": {"database": "db", "collection": "c"},
        "features": features,
        "estimator": {"class": estimator, "params": params or {}},
        **sections,
    }
    return parse_config(raw)


def _assert_parity_on_every_row(exported: Any, rows: int) -> dict[str, Any]:
    parity = exported.metadata["parity"]
    assert parity["rows"] == parity["train_rows"] + parity["test_rows"] == rows, parity
    assert parity["train_failures"] == parity["test_failures"] == 0, parity
    assert parity["within_tolerance"] and parity["label_disagreements"] == 0, parity
    return dict(parity)


def test_one_letter_words_between_bigram_words_agree_on_every_row() -> None:
    # scikit-learn's default tokenizer dropped "x" and formed "alpha beta"/"beta alpha", the graph did
    # not: 50% label agreement. Both orders must now be told apart, in the graph as in training.
    documents = [
        {"text": "alpha x beta", "label": "A"} if i % 2 else {"text": "beta x alpha", "label": "B"} for i in range(200)
    ]
    exported = export(
        _config({"text": ["text"], "target": "label"}, "sklearn.linear_model.LogisticRegression"), documents
    )
    parity = _assert_parity_on_every_row(exported, 200)
    assert parity["label_agreement"] == 1.0
    assert exported.metadata["metrics"]["accuracy"] == 1.0
    model = runtime_model(exported)
    assert model.predict([{"text": "alpha x beta"}, {"text": "beta x alpha"}]) == ["A", "B"]


def _diamonds(n: int = 1500) -> list[dict[str, Any]]:
    rng = np.random.default_rng(0)
    documents = []
    for i in range(n):
        x, y, z = rng.uniform(3, 9, 3)
        carat = float(x * y * z * 0.0061 * rng.uniform(0.95, 1.05))
        document: dict[str, Any] = {
            "carat": round(carat, 2),
            "dims": {"x": round(float(x), 2), "y": round(float(y), 2), "z": round(float(z), 2)},
            "price": float(round(carat * 4000 + rng.normal(0, 300))),
        }
        if i % 17 == 0:
            del document["dims"]["z"]  # the ratio is missing: imputed by its median
        documents.append(document)
    return documents


@pytest.mark.parametrize("impute", ["median", "constant"])
def test_lightgbm_on_a_density_ratio_with_imputation_agrees_on_every_row(impute: str) -> None:
    features = {"numeric": ["carat"], "derived": {"density": "carat / (dims.x * dims.y * dims.z)"}, "target": "price"}
    config = _config(
        features,
        "lightgbm.LGBMRegressor",
        {"n_estimators": 100, "verbose": -1},
        task="regression",
        preprocessing={"numeric_impute": impute},
    )
    exported = export(config, _diamonds())
    _assert_parity_on_every_row(exported, 1500)
    # The metadata says what the graph fills in: the float32 the graph holds, not a float64 median.
    density = next(f for f in exported.metadata["features"] if f["name"] == "carat")
    assert density["imputed"] is not None and np.float32(density["imputed"]) == density["imputed"]


def test_random_forest_on_a_log_agrees_on_every_row() -> None:
    rng = np.random.default_rng(1)
    documents = []
    for i in range(800):
        budget = float(rng.lognormal(15, 2)) if i % 11 else None
        gross = float(np.log(budget or 1e6) * 2 + rng.normal())
        documents.append({"budget": budget, "genre": ["drama", "comedy", "war"][i % 3], "gross": gross})
    config = _config(
        {"categorical": ["genre"], "derived": {"log_budget": "log(budget)"}, "target": "gross"},
        "sklearn.ensemble.RandomForestRegressor",
        {"n_estimators": 50},
        task="regression",
    )
    _assert_parity_on_every_row(export(config, documents), 800)


def test_xgboost_on_job_titles_with_accents_and_one_letter_words_agrees_on_every_row() -> None:
    rng = np.random.default_rng(2)
    words = [
        "senior",
        "data",
        "engineer",
        "analyst",
        "manager",
        "x",
        "düsseldorf",
        "sales",
        "i",
        "ops",
        "forêts",
        "日本",
    ]
    documents = []
    for _ in range(1200):
        title = " ".join(rng.choice(words, rng.integers(1, 5)))
        salary = float(50 + 10 * title.count("senior") + 5 * len(title.split()) + rng.normal())
        documents.append({"title": title, "salary": salary})
    config = _config(
        {"text": ["title"], "target": "salary"}, "xgboost.XGBRegressor", {"n_estimators": 100}, task="regression"
    )
    exported = export(config, documents)
    _assert_parity_on_every_row(exported, 1200)
    vocabulary = exported.trained.pipeline.named_steps["features"].preprocessing_.named_steps["preprocess"]
    terms = set(vocabulary.named_transformers_["text_title"].vectorizer_.vocabulary_)
    assert {"düsseldorf", "forêts", "日本", "x"} <= terms  # whole words, one letter and non-ASCII included


# -- any Unicode text: the .onnx and the scikit-learn pipeline answer alike -----------------------
_TEXTS = [
    "Braund, Mr. Owen Harris",
    "Cumings, Mrs. John Bradley (Florence Briggs Thayer)",
    "datsun b-210",
    "forêts düsseldorf",
    "macunaíma",
    "日本語 テキスト",
    "naïve café 😀",
    "i x y z",
    "İstanbul ǅemal",
    "ß straße",
    "e\u0301cole",
    "a-b_c--d",
    "!!! ???",
    "",
]


@pytest.fixture(scope="module")
def text_model() -> Any:
    rng = np.random.default_rng(5)
    documents = []
    for i in range(400):
        text = " ".join(rng.choice(_TEXTS, 2))
        documents.append(
            {"text": text, "n": float(i % 9), "label": "yes" if ("ö" in text or "x" in text) ^ (i % 7 == 0) else "no"}
        )
    config = _config({"text": ["text"], "numeric": ["n"], "target": "label"}, "sklearn.linear_model.LogisticRegression")
    exported = export(config, documents)
    _assert_parity_on_every_row(exported, 400)
    return exported, runtime_model(exported)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    st.lists(
        st.one_of(st.text(), st.sampled_from(_TEXTS), st.text(alphabet="xyzäö日 -!_\t\u0301")), min_size=1, max_size=8
    )
)
def test_any_unicode_text_gets_the_same_probabilities_from_the_onnx_file_and_scikit_learn(
    text_model: Any, texts: list[str]
) -> None:
    exported, model = text_model
    records = [{"text": text, "n": 3.0} for text in texts]
    _, probabilities, _ = model.run(records)
    frame = pd.DataFrame({"text": np.array(texts, dtype=object), "n": np.full(len(texts), 3.0)})
    expected = exported.trained.pipeline.predict_proba(frame)
    np.testing.assert_allclose(np.asarray(probabilities), expected, atol=1e-5)


# -- the weight an expression reads, uneven columns ---------------------------------------------
def test_a_weight_that_an_expression_reads_is_loaded_once_and_rows_stay_aligned() -> None:
    documents = [{"x": float(i % 13), "w": float(1 + i % 3), "y": float((i % 13) * 2 + (i % 3))} for i in range(300)]
    config = _config(
        {"numeric": ["x"], "derived": {"xw": "x * w"}, "weight": "w", "target": "y"},
        "sklearn.linear_model.Ridge",
        task="regression",
    )
    assert config.features.loaded.count("w") == 1
    exported = export(config, documents)
    _assert_parity_on_every_row(exported, 300)
    assert exported.metadata["metrics"]["r2"] > 0.99  # y is a function of x and w: shifted rows would not fit


def test_a_column_out_of_step_with_the_documents_is_a_clean_error_not_shifted_training() -> None:
    config = _config({"numeric": ["x"], "target": "y"}, "sklearn.linear_model.Ridge", task="regression")
    raw = collect([{"x": 1.0, "y": 2.0}, {"x": 2.0, "y": 4.0}], config.features.loaded)
    raw.values["x"].append(3.0)  # one value more than there are documents
    with pytest.raises(DataError, match="field 'x' was read 3 times from 2 documents"):
        validate(raw, config.features, "regression")


# -- the libraries' own parameters ----------------------------------------------------------------
@pytest.mark.parametrize(
    ("class_path", "params"),
    [
        ("lightgbm.LGBMClassifier", {"verbose": -1, "min_data_in_leaf": 5, "feature_fraction": 0.9}),
        ("lightgbm.LGBMRegressor", {"verbosity": -1, "bagging_seed": 3}),
        ("xgboost.XGBRegressor", {"eta": 0.2, "lambda": 2.0}),
        ("xgboost.XGBClassifier", {"min_split_loss": 0.1}),
    ],
)
def test_boosting_libraries_take_their_own_parameter_names(class_path: str, params: dict[str, Any]) -> None:
    task = "classification" if "Classifier" in class_path else "regression"
    section = _config({"numeric": ["x"], "target": "y"}, class_path, params, task=task).estimator
    estimator, _ = make_estimator(section, task)
    assert {k: estimator.get_params()[k] for k in params} == params


@pytest.mark.parametrize(
    ("class_path", "typo", "meant"),
    [("lightgbm.LGBMClassifier", "verbse", "verbose"), ("xgboost.XGBRegressor", "etta", "eta")],
)
def test_a_misspelt_boosting_parameter_is_still_refused_with_a_suggestion(
    class_path: str, typo: str, meant: str
) -> None:
    task = "classification" if "Classifier" in class_path else "regression"
    section = _config({"numeric": ["x"], "target": "y"}, class_path, {typo: 1}, task=task).estimator
    with pytest.raises(ConfigError, match=f"params.{typo} is not a parameter of .* \\(did you mean '{meant}'\\?\\)"):
        make_estimator(section, task)


def test_imputed_values_are_known_with_derived_features() -> None:
    # The derived step comes first in the pipeline; the imputer is found by its type, not its place.
    documents = [
        {"a": float(i) if i % 5 else None, "b": float(i % 7 + 1), "label": "p" if i % 3 else "q"} for i in range(120)
    ]
    config = _config(
        {"numeric": ["a", "b"], "derived": {"ratio": "a / b"}, "target": "label"},
        "sklearn.linear_model.LogisticRegression",
    )
    exported = export(config, documents)
    imputed = {f["name"]: f["imputed"] for f in exported.metadata["features"]}
    train_a = exported.trained.train_columns["a"]
    assert np.float32(imputed["a"]) == np.float32(np.nanmedian(train_a))
    assert np.float32(imputed["b"]) == np.float32(np.nanmedian(exported.trained.train_columns["b"]))


# -- the diagnosis names the feature and the cause ------------------------------------------------
def test_a_value_on_a_tree_threshold_is_diagnosed_with_the_feature_it_is_in() -> None:
    import onnx
    from onnx import helper

    from mlpack.export.parity import parity_report
    from mlpack.runtime import Model

    documents = [{"x": round(0.1 * (i % 10), 1), "y": float(i % 10 >= 5) * 10.0} for i in range(200)]
    config = _config(
        {"numeric": ["x"], "target": "y"}, "sklearn.tree.DecisionTreeRegressor", {"max_depth": 1}, task="regression"
    )
    exported = export(config, documents)
    graph = onnx.load_from_string(exported.onnx_bytes)
    tree = next(node for node in graph.graph.node if node.op_type == "TreeEnsembleRegressor")
    attribute = next(a for a in tree.attribute if a.name in ("nodes_values", "nodes_values_as_tensor"))
    values = list(helper.get_attribute_value(attribute))
    assert 0.4 < values[0] < 0.5  # scikit-learn splits between 0.4 and 0.5
    # A threshold ON a value the data holds, as a float64 threshold rounded to float32 can be: the rows
    # with x = 0.5 go left in the graph and right in scikit-learn.
    tree.attribute.remove(attribute)
    tree.attribute.append(helper.make_attribute("nodes_values", [0.5, *values[1:]]))
    report = parity_report(exported.trained, Model(graph.SerializeToString(), exported.metadata), 1e-4)
    assert not report.within_tolerance
    assert report.train_failures + report.test_failures == 20  # every document with x = 0.5
    assert "a tree threshold: in 20 of the 20 rows off, feature 'numeric__x'" in report.diagnosis
