"""One walk of a model gives both of scikit-learn's answers, and what training made is what parity and the card read.

`estimators.predictions` stands for `predict` and `predict_proba` together (features computed once,
a HistGradientBoostingClassifier's trees walked once): its answers must be those two calls', value
for value, including where they differ from each other's rule (a raw score just above 0 is class 1
for predict, while its probabilities round to a tie that argmax would give to class 0). The card's
predictions artifact writes ids and float32 probabilities as it wrote them one by one.
"""

from __future__ import annotations

import datetime
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from bson import Int64, ObjectId, json_util
from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

from mlpack.card.predictions import _shortest, _shortest_all, plain_id, write_predictions
from mlpack.estimators.predictions import predictions
from mlpack.runtime import Metadata, Model
from mlpack.training.train import Split
from tests.helpers.documents import subscribers
from tests.helpers.training import config_for, export


def _data(classes: int, rows: int = 600) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(5)
    x = rng.normal(size=(rows, 4))
    y = (x[:, 0] * 2 + x[:, 1] + rng.normal(scale=0.5, size=rows)).round().astype(int) % classes
    return x, y


@pytest.mark.parametrize("classes", [2, 3])
def test_one_walk_of_the_trees_answers_as_predict_and_predict_proba(classes: int) -> None:
    x, y = _data(classes)
    pipeline = Pipeline([("scale", StandardScaler()), ("hgb", HistGradientBoostingClassifier(max_iter=20))]).fit(x, y)
    estimator = pipeline.steps[-1][1]
    walks = []
    walk = estimator._raw_predict
    estimator._raw_predict = lambda features: walks.append(1) or walk(features)
    labels, probabilities = predictions(pipeline, x, probabilities=True)
    assert len(walks) == 1  # predict and predict_proba would walk the trees once each
    del estimator._raw_predict
    np.testing.assert_array_equal(labels, pipeline.predict(x))
    np.testing.assert_array_equal(probabilities, pipeline.predict_proba(x))
    assert predictions(pipeline, x, probabilities=False)[1] is None


def test_a_raw_score_just_above_zero_is_the_second_class_as_predict_says() -> None:
    x, y = _data(2)
    estimator = HistGradientBoostingClassifier(max_iter=5).fit(x, y)
    tiny = np.full((len(x), 1), 1e-20)  # expit(1e-20) is exactly 0.5: the probabilities tie
    estimator._raw_predict = lambda features: tiny
    labels, probabilities = predictions(estimator, x, probabilities=True)
    assert probabilities is not None and (probabilities == 0.5).all()
    np.testing.assert_array_equal(labels, estimator.predict(x))
    assert (labels == estimator.classes_[1]).all()


@pytest.mark.parametrize(
    "model",
    [LogisticRegression(), HistGradientBoostingRegressor(max_iter=10)],
    ids=["another classifier", "a regressor"],
)
def test_other_estimators_answer_through_their_own_methods(model: Any) -> None:
    x, y = _data(2)
    model.fit(x, y)
    with_probabilities = hasattr(model, "predict_proba")
    labels, probabilities = predictions(model, x, probabilities=with_probabilities)
    np.testing.assert_array_equal(labels, model.predict(x))
    if with_probabilities:
        np.testing.assert_array_equal(probabilities, model.predict_proba(x))


def test_parity_and_the_card_read_the_test_answers_training_made() -> None:
    config = config_for("sklearn.ensemble.HistGradientBoostingClassifier", "classification", {"max_iter": 20})
    exported = export(config, subscribers(300))
    trained = exported.trained
    assert trained.test_predicted is not None and trained.test_probabilities is not None
    np.testing.assert_array_equal(trained.test_predicted, trained.pipeline.predict(trained.test_frame))
    np.testing.assert_array_equal(trained.test_probabilities, trained.pipeline.predict_proba(trained.test_frame))
    assert exported.metadata["parity"]["rows"] == trained.train_rows + len(trained.test_target)


@pytest.mark.parametrize(
    "value",
    [7, -3, 2**40, "a-key", True, Int64(9), 1.5, ObjectId("65a1b2c3d4e5f60718293a4b"), datetime.datetime(2026, 1, 2)],
)
def test_an_id_is_written_as_relaxed_extended_json(value: Any) -> None:
    options = json_util.JSONOptions(json_mode=json_util.JSONMode.RELAXED, tz_aware=True)
    expected = json.loads(json_util.dumps(value, json_options=options))
    assert json.dumps(plain_id(value)) == json.dumps(expected)


def test_probabilities_are_written_with_the_fewest_digits_that_read_back_as_the_float32() -> None:
    rng = np.random.default_rng(2)
    values = np.concatenate([rng.random(5_000), [0.0, 1.0, 1e-8, 0.82, 1 / 3, 3e-45]]).astype(np.float32)
    one_by_one = [_shortest(value) for value in values.tolist()]
    assert _shortest_all(values) == one_by_one
    assert _shortest_all(values.reshape(-1, 2)) == [one_by_one[i : i + 2] for i in range(0, len(values), 2)]


def _whole_split_one_value_at_a_time(model: Model, rows: Split, metadata: Metadata) -> bytes:
    """The artifact as it was written before it was written in chunks: the model run once on the whole
    test split, every value and every line converted on its own."""
    labels, probabilities, _ = model.run(rows.test_columns)
    names = dict(zip(metadata.get("class_codes", []), metadata.get("classes", [])))
    lines = []
    for index, document_id in enumerate(rows.test_ids):
        truth = rows.test_target[index]
        truth = truth.item() if isinstance(truth, np.generic) else truth
        record: dict[str, Any] = {"_id": json.loads(json_util.dumps(document_id, json_options=_RELAXED))}
        if metadata["task"] == "classification":
            record["truth"] = names.get(truth, truth)
            record["prediction"] = labels[index]
            if probabilities is not None:
                record["probabilities"] = {
                    name: _shortest(p) for name, p in zip(metadata["classes"], probabilities[index])
                }
        else:
            record["truth"] = float(truth)
            record["prediction"] = _shortest(labels[index])
        lines.append(json.dumps(record, ensure_ascii=False, allow_nan=False) + "\n")
    return "".join(lines).encode("utf-8")


_RELAXED = json_util.JSONOptions(json_mode=json_util.JSONMode.RELAXED, tz_aware=True)


@pytest.mark.parametrize(
    ("estimator", "task"),
    [
        ("sklearn.ensemble.HistGradientBoostingClassifier", "classification"),
        ("sklearn.linear_model.LogisticRegression", "classification"),  # a matrix product: its kernel sees the chunk
        ("sklearn.linear_model.Ridge", "regression"),
    ],
)
def test_the_predictions_written_a_chunk_at_a_time_are_the_bytes_of_the_whole_split(
    estimator: str, task: str, tmp_path: Path
) -> None:
    exported = export(config_for(estimator, task), subscribers(300))
    assert exported.rows is not None
    rows, metadata = exported.rows, exported.metadata
    model = Model(exported.onnx_bytes, metadata)
    expected = _whole_split_one_value_at_a_time(model, rows, metadata)
    total = len(rows.test_ids)
    assert expected.count(b"\n") == total > 8
    for chunk_rows in (1, 7, total - 1, total, 8192):  # total - 1: a last chunk of one row
        written = write_predictions(tmp_path / f"{chunk_rows}.jsonl", model, rows, metadata, chunk_rows)
        assert written.read_bytes() == expected, chunk_rows
