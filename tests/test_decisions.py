"""How a model decides (issue 19, items 6 and 7): a binary decision threshold, fixed or chosen on held-out
folds for a metric, calibrated probabilities (sigmoid, isotonic) and early stopping for the boosting
estimators — each computed in the ONNX graph, checked against scikit-learn on every row."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import onnx
import pytest
from pymongo import MongoClient

from mlpack.config import parse_config
from mlpack.errors import ConfigError, DataError
from mlpack.runtime import Model
from tests.helpers.cli import assert_clean_error
from tests.helpers.documents import CATEGORICAL, NUMERIC, subscribers
from tests.helpers.projects import Project
from tests.helpers.training import export


def configured(estimator: str, task: str, params: dict[str, Any], decision: dict[str, Any], **sections: Any) -> Any:
    target = "label" if task == "classification" else "lifetime_value"
    raw: dict[str, Any] = {
        "model": {"name": "decider", "version": "1.0.0", "task": task},
        "source": {"database": "db", "collection": "customers"},
        "features": {"numeric": NUMERIC, "categorical": CATEGORICAL, "target": target},
        "estimator": {"class": estimator, "params": params, **decision},
        **sections,
    }
    return parse_config(raw)


def every_row(exported: Any) -> tuple[list[Any], np.ndarray]:
    """The shipped graph's labels and probabilities on every training and test row, through the runtime."""
    model = Model(exported.onnx_bytes, exported.metadata)
    columns = {
        path: np.concatenate([exported.rows.train_columns[path], exported.rows.test_columns[path]])
        for path in exported.rows.train_columns
    }
    labels, probabilities, _ = model.run(columns)
    return list(labels), np.asarray(probabilities, dtype=np.float64)


def test_a_fixed_threshold_decides_in_the_graph_on_every_row() -> None:
    documents = subscribers(400)
    plain = export(configured("sklearn.linear_model.LogisticRegression", "classification", {}, {}), documents)
    config = configured(
        "sklearn.linear_model.LogisticRegression", "classification", {}, {"threshold": 0.3, "positive_class": "churned"}
    )
    exported = export(config, documents)
    assert exported.metadata["decision"] == {"threshold": 0.3, "positive_class": "churned"}
    labels, probabilities = every_row(exported)
    churned = exported.metadata["classes"].index("churned")
    # The graph's own decision: churned exactly where its P(churned) is at least 0.3.
    assert labels == ["churned" if p >= 0.3 else "stayed" for p in probabilities[:, churned]]
    parity = exported.metadata["parity"]
    assert parity["train_failures"] == 0 and parity["test_failures"] == 0 and parity["label_agreement"] == 1.0
    said_churned = sum(label == "churned" for label in labels) / len(labels)
    before, _ = every_row(plain)
    assert said_churned > sum(label == "churned" for label in before) / len(before)  # a lower bar says it more


@pytest.mark.parametrize("method", ["sigmoid", "isotonic"])
def test_calibrated_probabilities_are_the_graphs_on_every_row(method: str) -> None:
    documents = subscribers(400)
    config = configured(
        "sklearn.ensemble.RandomForestClassifier", "classification", {"n_estimators": 30}, {"calibration": method}
    )
    exported = export(config, documents)
    assert exported.metadata["decision"] == {"calibration": method}
    labels, probabilities = every_row(exported)
    pipeline = exported.trained.pipeline
    expected = np.vstack(
        [pipeline.predict_proba(exported.trained.train_frame), pipeline.predict_proba(exported.trained.test_frame)]
    )
    assert np.abs(probabilities - expected).max() <= 1e-5
    forest = pipeline.steps[-1][1].calibrated_classifiers_[0].estimator  # the forest, before calibration
    uncalibrated = np.vstack(
        [
            forest.predict_proba(pipeline[:-1].transform(f))
            for f in (exported.trained.train_frame, exported.trained.test_frame)
        ]
    )
    assert np.abs(uncalibrated - expected).max() > 0.05  # calibration changed them
    assert exported.metadata["parity"]["label_agreement"] == 1.0
    graph = onnx.load_from_string(exported.onnx_bytes)
    ops = {node.op_type for node in graph.graph.node}
    # Isotonic: the segment between two knots that the score falls in, found in the graph (exact_converters).
    assert ("Sigmoid" in ops or "Exp" in ops) if method == "sigmoid" else {"Less", "Gather"} <= ops


def test_a_threshold_chosen_for_f1_on_held_out_folds_is_in_the_graph() -> None:
    documents = subscribers(400)
    config = configured(
        "sklearn.linear_model.LogisticRegression",
        "classification",
        {},
        {"calibration": "sigmoid", "threshold_metric": "f1", "positive_class": "churned"},
    )
    exported = export(config, documents)
    decided = exported.metadata["decision"]
    assert decided["calibration"] == "sigmoid" and decided["threshold_metric"] == "f1"
    assert 0.05 < decided["threshold"] < 0.95 and decided["threshold"] != 0.5 and decided["threshold_cv_score"] > 0.5
    labels, probabilities = every_row(exported)
    churned = exported.metadata["classes"].index("churned")
    assert labels == ["churned" if p >= decided["threshold"] else "stayed" for p in probabilities[:, churned]]
    assert exported.metadata["parity"]["label_agreement"] == 1.0


@pytest.mark.parametrize(
    ("estimator", "task", "params"),
    [
        ("lightgbm.LGBMClassifier", "classification", {"n_estimators": 400, "learning_rate": 0.3}),
        ("xgboost.XGBClassifier", "classification", {"n_estimators": 400, "learning_rate": 0.3}),
        ("sklearn.ensemble.HistGradientBoostingClassifier", "classification", {"max_iter": 400}),
        ("lightgbm.LGBMRegressor", "regression", {"n_estimators": 400}),
        ("xgboost.XGBRegressor", "regression", {"n_estimators": 400}),
        ("sklearn.ensemble.GradientBoostingRegressor", "regression", {"n_estimators": 400}),
    ],
)
def test_early_stopping_keeps_the_best_iterations_and_the_graph_has_them(
    estimator: str, task: str, params: dict[str, Any]
) -> None:
    documents = subscribers(400)
    config = configured(
        estimator,
        task,
        params,
        {"early_stopping": {"rounds": 5, "validation_fraction": 0.2}},
        export={"parity_tolerance": 5e-4},
    )
    exported = export(config, documents)
    stopped = exported.metadata["decision"]["early_stopping"]
    assert stopped["rounds"] == 5 and stopped["validation_fraction"] == 0.2
    assert 1 <= stopped["iterations"] < 400  # it stopped before the configured 400
    parity = exported.metadata["parity"]
    assert parity["train_failures"] == 0 and parity["test_failures"] == 0


@pytest.mark.parametrize(
    ("estimator", "task", "decision", "needle"),
    [
        ("sklearn.ensemble.RandomForestClassifier", "classification", {"early_stopping": {}}, "does not boost"),
        ("sklearn.linear_model.Ridge", "regression", {"threshold": 0.3}, "[estimator].threshold is for a classifier"),
        ("sklearn.svm.LinearSVC", "classification", {"calibration": "sigmoid"}, "needs class probabilities"),
        ("sklearn.linear_model.LogisticRegression", "classification", {"threshold": 1.5}, "between 0 and 1"),
        (
            "sklearn.linear_model.LogisticRegression",
            "classification",
            {"threshold": 0.4, "threshold_metric": "f1"},
            "has threshold and threshold_metric",
        ),
        ("sklearn.linear_model.LogisticRegression", "classification", {"threshold_metric": "auc"}, "is not one of f1"),
        ("sklearn.linear_model.LogisticRegression", "classification", {"calibration": "platt"}, "calibration must be"),
        ("lightgbm.LGBMClassifier", "classification", {"early_stopping": {"rounds": 0}}, "rounds must be at least 1"),
    ],
)
def test_decision_mistakes_are_config_errors(estimator: str, task: str, decision: dict[str, Any], needle: str) -> None:
    with pytest.raises(ConfigError) as caught:
        export(configured(estimator, task, {}, decision), subscribers(200))
    assert needle in caught.value.message, caught.value.message


def test_a_positive_class_the_data_lacks_and_a_threshold_on_three_classes_are_refused() -> None:
    with pytest.raises(ConfigError, match="positive_class 'left' is not a class of the target"):
        export(
            configured(
                "sklearn.linear_model.LogisticRegression",
                "classification",
                {},
                {"threshold": 0.4, "positive_class": "left"},
            ),
            subscribers(200),
        )
    documents = [{**d, "label": d["contract"]} for d in subscribers(200)]
    with pytest.raises(DataError, match="is for two classes; target 'label' has 3"):
        export(
            configured("sklearn.linear_model.LogisticRegression", "classification", {}, {"threshold": 0.4}), documents
        )


DECIDING = """
[estimator]
class = "lightgbm.LGBMClassifier"
params = { n_estimators = 300, learning_rate = 0.2 }
calibration = "sigmoid"
threshold_metric = "balanced_accuracy"
positive_class = "churned"

[estimator.early_stopping]
rounds = 10
validation_fraction = 0.2
"""


def test_a_real_build_with_early_stopping_calibration_and_a_chosen_threshold(
    churn_project: Project, run: Any, mongo_client: MongoClient[dict[str, Any]]
) -> None:
    """Against the MongoDB wire server: parity on every row, the card's calibration curve and threshold
    view at the model's threshold, and the predictions file deciding as the graph does."""
    text = churn_project.config.read_text(encoding="utf-8")
    start, end = text.index("[estimator]"), text.index("[evaluation]")
    churn_project.config.write_text(text[:start] + DECIDING.lstrip() + "\n" + text[end:], encoding="utf-8")
    result = run("build", churn_project.path, "--json")
    assert result.code == 0, result.err
    report = json.loads(result.out)
    decided = report["decision"]
    assert decided["calibration"] == "sigmoid" and decided["threshold_metric"] == "balanced_accuracy"
    assert decided["positive_class"] == "churned" and decided["early_stopping"]["iterations"] < 300
    parity = report["parity"]
    assert parity["train_failures"] == parity["test_failures"] == 0 and parity["label_agreement"] == 1.0
    assert parity["train_rows"] + parity["test_rows"] == 240

    dist = churn_project.path / "dist"
    html = (dist / "churn-model-1.0.0.html").read_text(encoding="utf-8")
    assert 'aria-label="Calibration curve"' in html and 'aria-label="Threshold: churned"' in html
    assert f"at least {decided['threshold']:.4g}" in html and "the model&#x27;s" in html
    lines = [json.loads(line) for line in (dist / "churn-model-1.0.0.predictions.jsonl").read_text().splitlines()]
    for line in lines:  # the shipped model's decision, document by document
        said = "churned" if line["probabilities"]["churned"] >= decided["threshold"] else "stayed"
        assert line["prediction"] == said
    stored = {d["_id"]: d for d in mongo_client[churn_project.database]["customers"].find()}
    assert {line["_id"] for line in lines} <= set(stored)


def test_config_mistakes_of_the_decision_are_exit_2_before_any_data(churn_project: Project, run: Any) -> None:
    churn_project.edit(
        "params = { n_estimators = 30, random_state = 0 }",
        'params = { n_estimators = 30 }\nthreshold = 0.3\nthreshold_metric = "f1"',
    )
    assert_clean_error(run("build", churn_project.path), 2, "[estimator] has threshold and threshold_metric")
