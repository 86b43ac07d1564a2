"""What the card shows, computed once from the model and the split: importances, distributions, curves."""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from sklearn import metrics as skm
from sklearn.inspection import permutation_importance

from mlpack.card.classes import Calibration, ClassScores, ThresholdView, calibration, per_class, threshold_view
from mlpack.card.coefficients import Coefficients, coefficients
from mlpack.card.features import Distribution, distributions
from mlpack.runtime import Metadata
from mlpack.training.metrics import METRICS
from mlpack.training.train import Split, TrainedModel

IMPORTANCE_REPEATS = 5
MAX_POINTS = 2000  # scatter plots of larger test splits show an even sample of this many points
MAX_CURVE_POINTS = 500  # ROC/PR curves of large test splits keep an even sample of their vertices
MAX_IMPORTANCE_ROWS = 5000  # permutation importance on an even sample of larger test splits (time)


@dataclass
class Importance:
    feature: str
    mean: float  # the drop of the score when the feature's column is shuffled (higher = more important)
    std: float


@dataclass
class Curve:
    label: str
    xs: list[float]
    ys: list[float]
    area: float


@dataclass
class CardData:
    task: str
    scoring: str  # the metric permutation importance is measured with
    importances: list[Importance]
    distributions: list[Distribution]
    classes: list[str] = field(default_factory=list)
    confusion: list[list[int]] = field(default_factory=list)
    roc: list[Curve] = field(default_factory=list)
    pr: list[Curve] = field(default_factory=list)
    balance: dict[str, dict[str, int]] = field(default_factory=dict)  # split → class → documents
    actual: list[float] = field(default_factory=list)
    predicted: list[float] = field(default_factory=list)
    residuals: dict[str, float] = field(default_factory=dict)
    per_class: list[ClassScores] = field(default_factory=list)  # precision, recall, F1 and support of each class
    calibration: list[Calibration] = field(default_factory=list)
    threshold: ThresholdView | None = None  # binary classifiers with probabilities
    coefficients: Coefficients | None = None  # linear models
    champion: dict[str, Any] | None = None  # [evaluation].champion: the aliased version on the same test split


def champion_rows(data: CardData, metrics: dict[str, float]) -> list[tuple[str, str, str, str]]:
    """(metric, this model, champion, difference) for the card's challenger-vs-champion table."""
    if not data.champion:
        return []
    theirs = data.champion["metrics"]
    metrics = data.champion.get("challenger") or metrics  # this model's scores on the rows both were scored on
    return [
        (name, f"{value:.4f}", f"{theirs[name]:.4f}", f"{value - theirs[name]:+.4f}")
        for name, value in metrics.items()
        if name in theirs
    ]


def card_data(trained: TrainedModel, rows: Split, metadata: Metadata) -> CardData:
    """Everything the card shows, computed once (the HTML and the README render the same numbers)."""
    scoring = next(iter(metadata["metrics"]))
    seed = int(metadata.get("evaluation", {}).get("seed", 0))
    data = CardData(
        task=metadata["task"],
        scoring=scoring,
        importances=_importances(trained, metadata, scoring, seed),
        distributions=distributions(trained, metadata),
        coefficients=coefficients(trained, metadata),
    )
    if trained.classes is not None:
        _classification(data, trained, rows)
    else:
        _regression(data, trained)
    return data


def _importances(trained: TrainedModel, metadata: Metadata, scoring: str, seed: int) -> list[Importance]:
    metric = METRICS[scoring]
    classes = trained.classes or []
    sign = 1.0 if metric.higher_is_better else -1.0  # an error that grows is a score that drops

    def score(estimator: Any, x: Any, y: np.ndarray, sample_weight: np.ndarray | None = None) -> float:
        proba = estimator.predict_proba(x) if metric.uses_probabilities else None
        value = metric.score(y, estimator.predict(x), proba, classes, sample_weight)
        return sign * value if math.isfinite(value) else 0.0

    keep = _even_sample(len(trained.test_target), MAX_IMPORTANCE_ROWS)
    weight = trained.test_weight[keep] if trained.test_weight is not None else None
    result = permutation_importance(
        trained.pipeline,
        trained.test_frame.iloc[keep],
        trained.test_target[keep],
        scoring=score,
        sample_weight=weight,
        n_repeats=IMPORTANCE_REPEATS,
        random_state=seed,
    )
    by_input = {f["input"]: f["name"] for f in metadata["features"]}
    found = [
        Importance(by_input.get(str(column), str(column)), round(float(mean), 6), round(float(std), 6))
        for column, mean, std in zip(trained.test_frame.columns, result.importances_mean, result.importances_std)
    ]
    return sorted(found, key=lambda i: (-i.mean, i.feature))


def _classification(data: CardData, trained: TrainedModel, rows: Split) -> None:
    classes = trained.classes or []
    data.classes = [str(c) for c in classes]
    # scikit-learn's answers on the test split, made once in training (train.py)
    predicted, proba = trained.test_predicted, trained.test_probabilities
    data.confusion = skm.confusion_matrix(trained.test_target, predicted, labels=classes).tolist()
    # Binary: the curves of the second class (scikit-learn's positive class); more: one vs rest each.
    # A classifier without probabilities (LinearSVC) has no curves to draw.
    positives = [1] if len(classes) == 2 else list(range(len(classes)))
    if proba is None:
        positives = []
    for index in positives:
        truth = np.asarray(trained.test_target == classes[index])
        if truth.all() or not truth.any():
            continue  # a class absent from the test split has no curve
        w = trained.test_weight  # weighted as the metrics are, so the area is the reported roc_auc
        assert proba is not None
        fpr, tpr, _ = skm.roc_curve(truth, proba[:, index], sample_weight=w)
        precision, recall, _ = skm.precision_recall_curve(truth, proba[:, index], sample_weight=w)
        label = str(classes[index])
        area = round(float(skm.auc(fpr, tpr)), 6)  # from the full curve, before thinning it for the picture
        roc_keep, pr_keep = _even_sample(len(fpr), MAX_CURVE_POINTS), _even_sample(len(recall), MAX_CURVE_POINTS)
        data.roc.append(Curve(label, _rounded(fpr[roc_keep]), _rounded(tpr[roc_keep]), area))
        average = float(skm.average_precision_score(truth, proba[:, index], sample_weight=w))
        data.pr.append(Curve(label, _rounded(recall[pr_keep]), _rounded(precision[pr_keep]), round(average, 6)))
    weight = trained.test_weight
    data.per_class = per_class(trained.test_target, predicted, classes, weight)
    if positives and proba is not None:
        data.calibration = calibration(trained.test_target, proba, classes, positives, weight)
        if len(classes) == 2:  # the model's own threshold ([estimator].threshold), else 0.5
            decider = trained.pipeline.steps[-1][1]
            positive, chosen = getattr(decider, "positive_index_", 1), getattr(decider, "threshold_", 0.5)
            data.threshold = threshold_view(trained.test_target, proba, classes, positive, chosen, weight)
    for name, target in (("train", rows.train_target), ("test", rows.test_target)):
        counted = Counter(target.tolist())
        data.balance[name] = {str(c): int(counted.get(c, 0)) for c in classes}


def _regression(data: CardData, trained: TrainedModel) -> None:
    actual = np.asarray(trained.test_target, dtype=np.float64)
    predicted = np.asarray(trained.test_predicted, dtype=np.float64)
    residuals = actual - predicted
    data.residuals = {
        "mean": round(float(residuals.mean()), 6),
        "std": round(float(residuals.std()), 6),
        "mae": round(float(np.abs(residuals).mean()), 6),
        "max_abs": round(float(np.abs(residuals).max()), 6),
    }
    keep = _even_sample(len(actual))
    data.actual = _rounded(actual[keep])
    data.predicted = _rounded(predicted[keep])


def _even_sample(n: int, most: int = MAX_POINTS) -> np.ndarray:
    """Row indexes: all of them, or `most` spread evenly (first and last included), deterministically."""
    if n <= most:
        return np.arange(n)
    return np.unique(np.linspace(0, n - 1, most).round().astype(int))


def _rounded(values: Any) -> list[float]:
    return [round(float(v), 6) for v in values]
