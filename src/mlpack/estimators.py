"""The estimators mlpack supports, each registered with what its pipeline and converter need.

Adding an estimator is one entry here plus its row in tests/test_estimators.py, which trains it,
converts it and checks ONNX-vs-scikit-learn parity with the pinned skl2onnx/onnx/scikit-learn.
"""

from __future__ import annotations

import difflib
import importlib
from dataclasses import dataclass
from typing import Any

from sklearn.base import BaseEstimator

from mlpack.config import EstimatorSection, Task
from mlpack.errors import ConfigError


@dataclass(frozen=True)
class EstimatorSpec:
    task: Task
    # Scale-sensitive models get a StandardScaler; trees must not (it breaks float32 parity, FACTS.md).
    scaled: bool


_C: Task = "classification"
_R: Task = "regression"

SUPPORTED: dict[str, EstimatorSpec] = {
    "sklearn.linear_model.LogisticRegression": EstimatorSpec(_C, scaled=True),
    "sklearn.neighbors.KNeighborsClassifier": EstimatorSpec(_C, scaled=True),
    "sklearn.tree.DecisionTreeClassifier": EstimatorSpec(_C, scaled=False),
    "sklearn.ensemble.RandomForestClassifier": EstimatorSpec(_C, scaled=False),
    "sklearn.ensemble.ExtraTreesClassifier": EstimatorSpec(_C, scaled=False),
    "sklearn.ensemble.GradientBoostingClassifier": EstimatorSpec(_C, scaled=False),
    "sklearn.linear_model.LinearRegression": EstimatorSpec(_R, scaled=True),
    "sklearn.linear_model.Ridge": EstimatorSpec(_R, scaled=True),
    "sklearn.linear_model.Lasso": EstimatorSpec(_R, scaled=True),
    "sklearn.linear_model.ElasticNet": EstimatorSpec(_R, scaled=True),
    "sklearn.neighbors.KNeighborsRegressor": EstimatorSpec(_R, scaled=True),
    "sklearn.tree.DecisionTreeRegressor": EstimatorSpec(_R, scaled=False),
    "sklearn.ensemble.RandomForestRegressor": EstimatorSpec(_R, scaled=False),
    "sklearn.ensemble.ExtraTreesRegressor": EstimatorSpec(_R, scaled=False),
    "sklearn.ensemble.GradientBoostingRegressor": EstimatorSpec(_R, scaled=False),
}

# Known not to convert correctly with the pinned versions: refused up front with the reason.
KNOWN_BROKEN: dict[str, str] = {
    "sklearn.ensemble.HistGradientBoostingClassifier": (
        "skl2onnx 1.20.0 with scikit-learn 1.9.1 and onnx 1.23.2 fails to convert it "
        "('Expected an int, got a boolean'); use GradientBoostingClassifier"
    ),
    "sklearn.ensemble.HistGradientBoostingRegressor": (
        "skl2onnx 1.20.0 with scikit-learn 1.9.1 and onnx 1.23.2 fails to convert it; use GradientBoostingRegressor"
    ),
}


def spec_for(class_path: str, task: Task) -> EstimatorSpec:
    if class_path in KNOWN_BROKEN:
        raise ConfigError(f"[estimator].class {class_path} is not supported: {KNOWN_BROKEN[class_path]}")
    spec = SUPPORTED.get(class_path)
    if spec is None:
        by_short_name = {path.rsplit(".", 1)[1]: path for path in SUPPORTED}
        guess = by_short_name.get(class_path.rsplit(".", 1)[-1]) or next(
            iter(difflib.get_close_matches(class_path, list(SUPPORTED), n=1, cutoff=0.6)), None
        )
        hint = f" (did you mean {guess}?)" if guess else " (see `mlpack estimators` for the supported ones)"
        raise ConfigError(f"[estimator].class {class_path} is not a supported estimator{hint}")
    if spec.task != task:
        raise ConfigError(f"[estimator].class {class_path} is a {spec.task} estimator but [model].task is {task}")
    return spec


def make_estimator(section: EstimatorSection, task: Task) -> tuple[BaseEstimator, EstimatorSpec]:
    """The configured estimator, constructed with its params; bad params name themselves."""
    spec = spec_for(section.class_path, task)
    module_name, class_name = section.class_path.rsplit(".", 1)
    estimator_class: Any = getattr(importlib.import_module(module_name), class_name)
    valid = set(estimator_class().get_params())
    for param in section.params:
        if param not in valid:
            hint = difflib.get_close_matches(param, sorted(valid), n=1)
            suggestion = f" (did you mean '{hint[0]}'?)" if hint else ""
            raise ConfigError(f"[estimator].params.{param} is not a parameter of {class_name}{suggestion}")
    return estimator_class(**section.params), spec
