"""The estimators mlpack supports: the catalogue (each with what its pipeline and converter need),
the skl2onnx converters mlpack registers for some of them, and the XGBoost label adapter."""

from __future__ import annotations

from mlpack.estimators.catalogue import (
    FLOAT32_ESTIMATORS,
    SUPPORTED,
    UNSUPPORTED,
    EstimatorSpec,
    catalogue,
    fit_errors,
    has_probabilities,
    make_estimator,
    spec_for,
)

__all__ = [
    "FLOAT32_ESTIMATORS",
    "SUPPORTED",
    "UNSUPPORTED",
    "EstimatorSpec",
    "catalogue",
    "fit_errors",
    "has_probabilities",
    "make_estimator",
    "spec_for",
]
