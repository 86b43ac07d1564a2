"""A linear model's coefficients, named after what each column of the graph's features is: a number
(per standard deviation when it is standardized), a category, a date part, a position in an order,
a word of a text field."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
from sklearn.compose import ColumnTransformer
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import RobustScaler, StandardScaler

from mlpack.runtime import MISSING_CATEGORY, Metadata
from mlpack.training.train import TrainedModel

TOP_COEFFICIENTS = 20


@dataclass
class Coefficients:
    columns: list[str]  # one per class for a multi-class model; else one ("coefficient")
    rows: list[tuple[str, list[float]]] = field(default_factory=list)  # feature, its coefficient(s); largest first
    intercept: list[float] = field(default_factory=list)
    total: int = 0  # columns of the graph's features (rows keeps the TOP_COEFFICIENTS largest)
    scaled: str = ""  # "standard" / "robust": numeric columns are scaled before the model sees them


def linear_part(estimator: Any) -> Any:
    """The fitted linear model inside mlpack's wrappers (target transform, calibration, threshold), or None."""
    seen = 0
    while estimator is not None and seen < 6:
        seen += 1
        try:
            if getattr(estimator, "coef_", None) is not None:
                return estimator
        except AttributeError:  # SVC with a non-linear kernel has coef_ only for kernel="linear"
            return None
        calibrated = getattr(estimator, "calibrated_classifiers_", None)
        if calibrated:
            estimator = calibrated[0].estimator
            continue
        estimator = getattr(estimator, "estimator_", None) or getattr(estimator, "regressor_", None)
    return None


def coefficients(trained: TrainedModel, metadata: Metadata) -> Coefficients | None:
    model = linear_part(trained.pipeline.steps[-1][1])
    if model is None:
        return None
    weights = np.atleast_2d(np.asarray(model.coef_, dtype=np.float64))
    names = readable_names(trained, metadata, weights.shape[1])
    classes = [str(c) for c in trained.classes or []]
    if len(classes) > 2 and weights.shape[0] == len(classes):
        columns = classes
    else:  # binary: the coefficients of the second class (scikit-learn's positive class); regression: one
        columns = [f"coefficient ({classes[1]})"] if len(classes) == 2 else ["coefficient"]
        weights = weights[:1]
    order = sorted(range(weights.shape[1]), key=lambda j: (-float(np.max(np.abs(weights[:, j]))), names[j]))
    intercept = np.atleast_1d(np.asarray(getattr(model, "intercept_", []), dtype=np.float64))
    return Coefficients(
        columns=columns,
        rows=[(names[j], [round(float(v), 6) for v in weights[:, j]]) for j in order[:TOP_COEFFICIENTS]],
        intercept=[round(float(v), 6) for v in intercept[: len(columns)]],
        total=weights.shape[1],
        scaled=_scaler(trained),
    )


def readable_names(trained: TrainedModel, metadata: Metadata, width: int) -> list[str]:
    """What each column of the graph's features is, in the words of the config: `tenure_months`,
    `contract = monthly`, `signup (month)`, `cut (position)`, `subject: "late payment"`."""
    preprocessing = getattr(trained.pipeline.named_steps.get("features"), "preprocessing_", None)
    transformer = preprocessing.steps[-1][1] if preprocessing is not None else None
    if not isinstance(transformer, ColumnTransformer):
        return [f"#{j}" for j in range(width)]
    paths = {entry["name"]: entry["path"] for entry in metadata["inputs"]}
    derive = preprocessing.named_steps.get("derive") if preprocessing is not None else None
    paths.update({column: name for name, column in getattr(derive, "outputs_", {}).items()})
    names = []
    for raw in transformer.get_feature_names_out():
        part, _, rest = str(raw).partition("__")
        names.append(_readable(part, rest, paths))
    return names if len(names) == width else [f"#{j}" for j in range(width)]


def _readable(part: str, rest: str, paths: dict[str, str]) -> str:
    if part in ("numeric", "ordinal") and rest in paths:
        return paths[rest] + (" (position)" if part == "ordinal" else "")
    if part == "datetime":
        column, _, unit = rest.rpartition(".")
        return f"{paths.get(column, column)} ({unit})"
    if part == "categorical":
        # OneHotEncoder names a column INPUT_VALUE; the longest input name that prefixes it is the field.
        field_name = max((name for name in paths if rest.startswith(f"{name}_")), key=len, default="")
        if field_name:
            value = rest[len(field_name) + 1 :]
            return f"{paths[field_name]} missing" if value == MISSING_CATEGORY else f"{paths[field_name]} = {value}"
    if part.startswith("text_") and part[5:] in paths:
        return f'{paths[part[5:]]}: "{rest}"'
    return rest or part


def _scaler(trained: TrainedModel) -> str:
    preprocessing = getattr(trained.pipeline.named_steps.get("features"), "preprocessing_", None)
    transformer = preprocessing.steps[-1][1] if preprocessing is not None else None
    if not isinstance(transformer, ColumnTransformer):
        return ""
    for name, fitted, _ in transformer.transformers_:
        if name == "numeric" and isinstance(fitted, Pipeline):
            for _, step in fitted.steps:
                if isinstance(step, StandardScaler):
                    return "standard"
                if isinstance(step, RobustScaler):
                    return "robust"
    return ""
