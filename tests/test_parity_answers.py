"""The parity check reads scikit-learn's answers on the training rows that training made (issue 23).

At a million documents the check ran the preprocessing graph over the 800,000 training rows again
to get scikit-learn's side, features the estimator had just been fitted on. Training now keeps the
answers it makes from them, where they are what the pipeline's `transform` gives those rows (no
cross-fitted columns): the report must be the one the check makes on its own, row for row.
"""

from __future__ import annotations

import dataclasses
import tomllib
from typing import Any

import numpy as np
import pytest

import mlpack.features.graph as graph
import mlpack.training.train as train_module
from mlpack.config import Config, parse_config
from mlpack.export.parity import parity_report
from mlpack.runtime import Model
from tests.helpers.documents import subscribers
from tests.helpers.shop import CONFIG, orders
from tests.helpers.training import config_for, export


def _shop() -> tuple[Config, list[dict[str, Any]]]:
    raw: dict[str, Any] = tomllib.loads(CONFIG.format(database="db"))
    raw["estimator"] = {"class": "sklearn.ensemble.HistGradientBoostingRegressor", "params": {"max_iter": 20}}
    raw["evaluation"]["gates"] = {}
    return parse_config(raw), orders(600, seed=2)


def _classifier() -> tuple[Config, list[dict[str, Any]]]:
    config = config_for("sklearn.ensemble.HistGradientBoostingClassifier", "classification", {"max_iter": 20})
    return config, subscribers(500)


def _linear() -> tuple[Config, list[dict[str, Any]]]:
    return config_for("sklearn.linear_model.LogisticRegression", "classification"), subscribers(300)


def _target_encoded() -> tuple[Config, list[dict[str, Any]]]:
    features = {"encoding": {"contract": "target"}}
    return config_for("sklearn.linear_model.LogisticRegression", "classification", features=features), subscribers(300)


CASES = {"shop": _shop, "classifier": _classifier, "linear": _linear, "target-encoded": _target_encoded}


@pytest.mark.parametrize("case", sorted(CASES))
def test_the_report_is_the_one_made_without_training_s_answers(case: str, monkeypatch: pytest.MonkeyPatch) -> None:
    config, documents = CASES[case]()
    monkeypatch.setattr(train_module, "ANSWER_CHUNK", 64)  # answered a chunk of training rows at a time
    exported = export(config, documents)
    trained = exported.trained
    assert (trained.train_answers is None) == (case == "target-encoded")  # out-of-fold columns: not the graph's
    model = Model(exported.onnx_model.SerializeToString(), exported.metadata)
    transformed: list[int] = []
    transform = graph.GraphFeatures.transform

    def counted(self: Any, x: Any) -> Any:
        transformed.append(len(x))
        return transform(self, x)

    monkeypatch.setattr(graph.GraphFeatures, "transform", counted)
    ours = parity_report(trained, model, 1e-4)
    assert sum(transformed) == (0 if trained.train_answers is not None else trained.train_rows)
    alone = parity_report(dataclasses.replace(trained, train_answers=None), model, 1e-4)
    assert ours == alone
    assert ours.as_dict() == dict(exported.metadata["parity"])  # the build's own check, too


def test_the_runtime_s_arrays_are_its_outputs() -> None:
    config, documents = _classifier()
    exported = export(config, documents)
    model = Model(exported.onnx_model.SerializeToString(), exported.metadata)
    for rows in (documents[:1], documents[:7]):
        feeds = model.feeds(rows)[0]
        labels, probabilities = model.outputs(feeds)
        array_labels, array = model.output_arrays(feeds)
        assert array is not None and array.dtype == np.float32
        assert array_labels == labels and array.tolist() == probabilities


def _shifted(model: Any, by: float) -> bytes:
    """The exported model with its linear classifier's first intercept moved: every probability changes."""
    tampered = type(model)()
    tampered.CopyFrom(model)
    (node,) = [node for node in tampered.graph.node if node.op_type == "LinearClassifier"]
    (intercepts,) = [attribute for attribute in node.attribute if attribute.name == "intercepts"]
    intercepts.floats[0] += by
    return bytes(tampered.SerializeToString())


def test_a_graph_that_answers_otherwise_fails_on_the_training_rows_with_training_s_answers() -> None:
    """Training's answers are scikit-learn's own: were they the ONNX model's, the check would compare
    the graph with itself and pass whatever the graph says."""
    config, documents = _linear()
    exported = export(config, documents)
    trained = exported.trained
    assert trained.train_answers is not None
    labels, probabilities = trained.train_answers
    assert probabilities is not None  # as scikit-learn itself answers the training frame:
    assert np.array_equal(probabilities, trained.pipeline.predict_proba(trained.train_frame))
    assert np.array_equal(labels, trained.pipeline.predict(trained.train_frame))
    honest = parity_report(trained, Model(exported.onnx_model.SerializeToString(), exported.metadata), 1e-4)
    assert honest.within_tolerance and honest.train_failures == 0
    wrong = Model(_shifted(exported.onnx_model, 0.5), exported.metadata)
    report = parity_report(trained, wrong, 1e-4)
    assert not report.within_tolerance and report.diagnosis
    # most rows (not those whose probabilities float32 holds at 0 or 1), in both splits
    assert report.train_failures > trained.train_rows * 0.9 and report.test_failures > len(trained.test_frame) * 0.9
    assert report == parity_report(dataclasses.replace(trained, train_answers=None), wrong, 1e-4)
