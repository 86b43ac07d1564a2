"""A classifier's card on the test split, class by class: precision and recall of each class, how
well its probabilities are calibrated, and what the decision threshold does (binary classifiers)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
from sklearn import metrics as skm
from sklearn.calibration import calibration_curve

CALIBRATION_BINS = 10
THRESHOLD_STEPS = 100  # the threshold view evaluates 0.00, 0.01, ... 1.00


@dataclass
class ClassScores:
    label: str
    precision: float
    recall: float
    f1: float
    support: float  # test documents of the class (their summed weight, with [features].weight)


@dataclass
class Calibration:
    """The reliability diagram of one class: in each probability bin, the mean predicted probability (x)
    against the share of documents that were of the class (y); Brier score over the test split."""

    label: str
    predicted: list[float]
    observed: list[float]
    counts: list[int]
    brier: float


@dataclass
class ThresholdPoint:
    threshold: float
    precision: float
    recall: float
    f1: float
    accuracy: float
    positives: float  # share of the test split predicted positive


@dataclass
class ThresholdView:
    """The positive class's precision, recall and F1 on the test split at every threshold, and the
    model's own threshold (0.5 unless [estimator].threshold set or chose another)."""

    positive: str
    chosen: float
    curve: list[ThresholdPoint] = field(default_factory=list)
    at_default: ThresholdPoint | None = None
    at_chosen: ThresholdPoint | None = None


def per_class(
    truth: np.ndarray, predicted: np.ndarray, classes: list[Any], weight: np.ndarray | None
) -> list[ClassScores]:
    precision, recall, f1, _ = skm.precision_recall_fscore_support(
        truth, predicted, labels=classes, zero_division=0, sample_weight=weight
    )
    support = [float(np.sum(weight[truth == c])) if weight is not None else float(np.sum(truth == c)) for c in classes]
    return [
        ClassScores(str(c), round(float(p), 6), round(float(r), 6), round(float(f), 6), round(s, 6))
        for c, p, r, f, s in zip(classes, precision, recall, f1, support)
    ]


def calibration(
    truth: np.ndarray, proba: np.ndarray, classes: list[Any], positives: list[int], weight: np.ndarray | None
) -> list[Calibration]:
    out = []
    edges = np.linspace(0.0, 1.0 + 1e-8, CALIBRATION_BINS + 1)  # calibration_curve's own bins
    for index in positives:
        hit = np.asarray(truth == classes[index])
        if hit.all() or not hit.any():
            continue
        scores = np.clip(proba[:, index], 0.0, 1.0)
        observed, predicted = calibration_curve(hit, scores, n_bins=CALIBRATION_BINS, strategy="uniform")
        counts = np.bincount(np.searchsorted(edges[1:-1], scores), minlength=CALIBRATION_BINS)
        brier = skm.brier_score_loss(hit, scores, sample_weight=weight)
        out.append(
            Calibration(
                str(classes[index]),
                _rounded(predicted),
                _rounded(observed),
                [int(n) for n in counts if n],
                round(float(brier), 6),
            )
        )
    return out


def threshold_view(
    truth: np.ndarray,
    proba: np.ndarray,
    classes: list[Any],
    positive: int,
    chosen: float,
    weight: np.ndarray | None,
) -> ThresholdView | None:
    """Binary classifiers with probabilities: what each threshold on P(positive) would give."""
    hit = np.asarray(truth == classes[positive])
    if hit.all() or not hit.any():
        return None
    scores = proba[:, positive]
    view = ThresholdView(str(classes[positive]), round(float(chosen), 6))
    for step in range(THRESHOLD_STEPS + 1):
        view.curve.append(_at(hit, scores, step / THRESHOLD_STEPS, weight))
    view.at_default = _at(hit, scores, 0.5, weight)
    view.at_chosen = _at(hit, scores, chosen, weight)
    return view


def _at(hit: np.ndarray, scores: np.ndarray, threshold: float, weight: np.ndarray | None) -> ThresholdPoint:
    # Predicted positive where P(positive) >= threshold: scikit-learn's rule, and the graph's.
    said = scores >= threshold
    w = np.ones(len(hit)) if weight is None else weight
    true_positive = float(np.sum(w[said & hit]))
    precision = true_positive / float(np.sum(w[said])) if said.any() else 0.0
    recall = true_positive / float(np.sum(w[hit]))
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    accuracy = float(np.sum(w[said == hit])) / float(np.sum(w))
    positives = float(np.sum(w[said])) / float(np.sum(w))
    return ThresholdPoint(
        round(threshold, 6),
        round(precision, 6),
        round(recall, 6),
        round(f1, 6),
        round(accuracy, 6),
        round(positives, 6),
    )


def _rounded(values: Any) -> list[float]:
    return [round(float(v), 6) for v in values]
