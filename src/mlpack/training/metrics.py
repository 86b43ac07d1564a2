"""The metrics mlpack computes, which ones a build reports, and the quality gates on them."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from sklearn import metrics as skm
from sklearn.pipeline import Pipeline

from mlpack.config import EvaluationSection, Task
from mlpack.errors import ConfigError, QualityGateError
from mlpack.estimators import has_probabilities
from mlpack.estimators.predictions import predictions

Weights = np.ndarray | None  # [features].weight of the rows scored: every metric is weighted by it


@dataclass(frozen=True)
class Metric:
    task: Task
    higher_is_better: bool
    # (true values, predicted labels or values, class probabilities or None, classes, weights or None) -> score
    function: Callable[[np.ndarray, np.ndarray, np.ndarray | None, list[Any], Weights], float]
    uses_probabilities: bool = False  # only these need predict_proba (the model card skips it otherwise)

    def score(
        self, y: np.ndarray, predicted: np.ndarray, proba: np.ndarray | None, classes: list[Any], weight: Weights = None
    ) -> float:
        return self.function(y, predicted, proba, classes, weight)


def _roc_auc(y: np.ndarray, _pred: np.ndarray, proba: np.ndarray | None, classes: list[Any], w: Weights) -> float:
    assert proba is not None
    if len(classes) == 2:
        return float(skm.roc_auc_score(y == classes[1], proba[:, 1], sample_weight=w))
    return float(skm.roc_auc_score(y, proba, multi_class="ovr", average="macro", labels=classes, sample_weight=w))


def _labels(function: Callable[..., Any], **options: Any) -> Callable[..., float]:
    """A metric of the predicted labels or values, weighted by the rows' weights when there are some."""
    return lambda y, p, _proba, _classes, w: float(function(y, p, sample_weight=w, **options))


METRICS: dict[str, Metric] = {
    "accuracy": Metric("classification", True, _labels(skm.accuracy_score)),
    "balanced_accuracy": Metric("classification", True, _labels(skm.balanced_accuracy_score)),
    "f1_macro": Metric("classification", True, _labels(skm.f1_score, average="macro")),
    "precision_macro": Metric("classification", True, _labels(skm.precision_score, average="macro", zero_division=0)),
    "recall_macro": Metric("classification", True, _labels(skm.recall_score, average="macro")),
    "roc_auc": Metric("classification", True, _roc_auc, uses_probabilities=True),
    "log_loss": Metric(
        "classification",
        False,
        lambda y, _, pr, c, w: float(skm.log_loss(y, pr, labels=c, sample_weight=w)),
        uses_probabilities=True,
    ),
    "r2": Metric("regression", True, _labels(skm.r2_score)),
    "rmse": Metric("regression", False, _labels(skm.root_mean_squared_error)),
    "mae": Metric("regression", False, _labels(skm.mean_absolute_error)),
}

DEFAULT_METRICS: dict[Task, list[str]] = {
    "classification": ["accuracy", "f1_macro", "roc_auc"],
    "regression": ["r2", "rmse", "mae"],
}


def metric_names(task: Task, evaluation: EvaluationSection, estimator: Any, class_path: str) -> list[str]:
    """The metrics to compute, checked against the task and the estimator; gates must name one of them."""
    probabilities = task == "classification" and has_probabilities(estimator)
    names = evaluation.metrics or [
        name for name in DEFAULT_METRICS[task] if probabilities or not METRICS[name].uses_probabilities
    ]
    for name in [*names, *evaluation.gates]:
        metric = METRICS.get(name)
        if metric is None:
            known = ", ".join(n for n, m in METRICS.items() if m.task == task)
            raise ConfigError(f"[evaluation] unknown metric '{name}' (known for {task}: {known})")
        if metric.task != task:
            raise ConfigError(f"[evaluation] metric '{name}' is for {metric.task}, but [model].task is {task}")
        if metric.uses_probabilities and not probabilities:
            raise ConfigError(
                f"[evaluation] metric '{name}' needs class probabilities, which "
                f"{class_path.rsplit('.', 1)[-1]} with these params does not give"
            )
    return list(dict.fromkeys([*names, *evaluation.gates]))


def score_all(
    pipeline: Pipeline, x: pd.DataFrame, y: np.ndarray, names: list[str], weight: Weights = None
) -> dict[str, float]:
    """Every named metric of a fitted pipeline on (x, y), weighted by `weight` if given; a metric
    undefined on these rows is NaN."""
    predicted, probabilities = answers(pipeline, x, classification=METRICS[names[0]].task == "classification")
    return scores_of(pipeline, y, predicted, probabilities, names, weight)


def answers(pipeline: Pipeline, x: pd.DataFrame, *, classification: bool) -> tuple[np.ndarray, np.ndarray | None]:
    """The pipeline's predictions on x, and a classifier's class probabilities when it gives them."""
    return predictions(pipeline, x, probabilities=classification and has_probabilities(pipeline))


def scores_of(
    pipeline: Pipeline,
    y: np.ndarray,
    predicted: np.ndarray,
    probabilities: np.ndarray | None,
    names: list[str],
    weight: Weights = None,
) -> dict[str, float]:
    """`score_all` of predictions already made (`answers`)."""
    classification = METRICS[names[0]].task == "classification"
    classes = pipeline.classes_.tolist() if classification else []
    scores = {}
    for name in names:
        try:
            scores[name] = round(METRICS[name].score(y, predicted, probabilities, classes, weight), 6)
        except ValueError:  # e.g. roc_auc on rows of a single class
            scores[name] = math.nan
    return scores


def check_gates(metrics: dict[str, float], gates: dict[str, float], *, metadata: dict[str, Any]) -> None:
    """Gates are minimums for scores (accuracy) and maximums for errors (rmse)."""
    failures = []
    for name, limit in gates.items():
        value = metrics[name]
        higher = METRICS[name].higher_is_better
        if math.isnan(value) or (value < limit if higher else value > limit):
            relation = "at least" if higher else "at most"
            failures.append(f"  - {name} = {value:.6g}, the gate requires {relation} {limit:g}")
    if failures:
        details = "\n".join(["quality gates:", *failures])
        raise QualityGateError("quality gate failed", details=details, metadata=metadata)


def champion_metric(evaluation: EvaluationSection, names: Sequence[str]) -> str:
    """[evaluation].champion's margin is measured on `champion_metric`, else the first metric computed."""
    chosen = evaluation.champion_metric or names[0]
    if chosen not in names:
        raise ConfigError(
            f"[evaluation].champion_metric {chosen!r} is not one of the metrics computed ({', '.join(names)}): "
            "add it to [evaluation].metrics"
        )
    return chosen
