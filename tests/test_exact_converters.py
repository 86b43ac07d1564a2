"""The converters mlpack registers where skl2onnx's own answer something else than scikit-learn
(estimators/exact_converters.py): a linear regressor summed in double, isotonic calibration
interpolated between its knots. Each is a real build, checked on every row through the runtime."""

from __future__ import annotations

from typing import Any

import numpy as np

from mlpack.config import parse_config
from mlpack.runtime import Model
from tests.helpers.documents import CATEGORICAL, NUMERIC, subscribers
from tests.helpers.training import export


def _config(class_path: str, task: str, seed: int, **estimator: Any) -> Any:
    return parse_config(
        {
            "model": {"name": "m", "version": "1.0.0", "task": task},
            "source": {"database": "db", "collection": "c"},
            "features": {
                "numeric": NUMERIC,
                "categorical": CATEGORICAL,
                "target": "label" if task == "classification" else "lifetime_value",
            },
            "estimator": {"class": class_path, **estimator},
            "evaluation": {"seed": seed},
        }
    )


def _every_row(exported: Any) -> tuple[np.ndarray, np.ndarray | None, np.ndarray]:
    """The graph's answers on every training and test row, and scikit-learn's (values or P(classes))."""
    model = Model(exported.onnx_bytes, exported.metadata)
    rows = exported.rows
    columns = {path: np.concatenate([rows.train_columns[path], rows.test_columns[path]]) for path in rows.train_columns}
    labels, probabilities, _ = model.run(columns)
    pipeline, trained = exported.trained.pipeline, exported.trained
    frames = (trained.train_frame, trained.test_frame)
    if probabilities is None:
        return np.asarray(labels, dtype=np.float64), None, np.concatenate([pipeline.predict(f) for f in frames])
    expected = np.vstack([pipeline.predict_proba(f) for f in frames])
    return np.asarray(labels), np.asarray(probabilities, dtype=np.float64), expected


def test_a_linear_regressor_s_prediction_near_zero_is_summed_in_double() -> None:
    # benchmarks/float32.py's subscribers regression, seed 1: a row predicted -0.88 from terms of
    # ±1,600 and an intercept of 1,412. Summed in float32 it was off by 1.3e-4 > the tolerance 1e-4,
    # and the build failed its parity check.
    exported = export(_config("sklearn.linear_model.SGDRegressor", "regression", 1), subscribers(3000, seed=11))
    actual, _, expected = _every_row(exported)
    parity = exported.metadata["parity"]
    assert parity["train_failures"] == 0 and parity["test_failures"] == 0
    assert np.min(np.abs(expected)) < 1.0 < 1000 < np.max(np.abs(expected))  # a prediction near 0 among thousands
    # float32 can be no closer than half a unit of the result's last place (6e-8 of it, or 6e-8 below 1).
    assert np.max(np.abs(actual - expected) / np.maximum(1.0, np.abs(expected))) < 1e-7


def test_isotonic_calibration_interpolates_between_its_knots_as_scikit_learn_does() -> None:
    # SGD's scores are continuous, so most rows fall between two knots: the nearest knot's
    # probability (skl2onnx's) was up to 0.05 off on these 1,000 subscribers.
    config = _config("sklearn.linear_model.SGDClassifier", "classification", 0, calibration="isotonic")
    exported = export(config, subscribers(1000))
    labels, probabilities, expected = _every_row(exported)
    assert probabilities is not None
    assert np.abs(probabilities - expected).max() < 1e-5
    assert exported.metadata["parity"]["label_agreement"] == 1.0
    # The rows do fall between knots, where the nearest knot's probability is another.
    calibrated = exported.trained.pipeline.steps[-1][1].calibrated_classifiers_[0]
    calibrator = calibrated.calibrators[0]
    trained = exported.trained
    frames = (trained.train_frame, trained.test_frame)
    scores = np.concatenate(
        [calibrated.estimator.decision_function(trained.pipeline[:-1].transform(f)) for f in frames]
    )
    knots = calibrator.X_thresholds_
    nearest = calibrator.y_thresholds_[np.argmin(np.abs(np.clip(scores, knots[0], knots[-1])[:, None] - knots), axis=1)]
    assert np.abs(nearest - expected[:, 1]).max() > 0.01
