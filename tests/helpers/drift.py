"""PSI as textbooks define it, with its own binning loop: the oracle mlpack's drift statistics are checked against."""

from __future__ import annotations

import math

import numpy as np


# -- an independent reference: PSI as textbooks define it, with its own binning loop ----------------
# (The baseline stores shares rounded to 6 decimals, hence a relative tolerance of 1e-5.)
def reference_numeric_psi(train: np.ndarray, live: np.ndarray, bins: int = 10) -> float:
    """Decile edges (observed values, below the maximum) of the training values; each side's share
    per bin; sum (a - e) ln(a / e), zero shares -> 1e-4. Values in float32, as the model takes them."""
    train = train[~np.isnan(train)].astype(np.float32).astype(np.float64)
    live = live[~np.isnan(live)].astype(np.float32).astype(np.float64)
    deciles = np.quantile(train, [i / bins for i in range(1, bins)], method="inverted_cdf")
    inner = np.unique(deciles[deciles < train.max()])
    # Right-closed intervals (low, high]: histogram a negated copy, whose bins are [-high, -low).
    edges = np.concatenate([[-np.inf], inner, [np.inf]])
    expected = _right_closed_histogram(train, edges)
    actual = _right_closed_histogram(live, edges)
    return _formula(expected / expected.sum(), actual / actual.sum())


def _right_closed_histogram(values: np.ndarray, edges: np.ndarray) -> np.ndarray:
    counts = np.zeros(len(edges) - 1)
    for value in values:
        for index in range(len(edges) - 1):
            if edges[index] < value <= edges[index + 1]:
                counts[index] += 1
                break
    return counts


def reference_categorical_psi(train: list[str], live: list[str]) -> float:
    """Shares over the union of categories (missing left out), zeros -> 1e-4."""
    train = [v for v in train if v != "__missing__"]
    live = [v for v in live if v != "__missing__"]
    categories = sorted(set(train) | set(live))
    expected = np.array([train.count(c) for c in categories], dtype=float) / len(train)
    actual = np.array([live.count(c) for c in categories], dtype=float) / len(live)
    return _formula(expected, actual)


def _formula(expected: np.ndarray, actual: np.ndarray) -> float:
    total = 0.0
    for e, a in zip(expected, actual):
        e, a = max(e, 1e-4), max(a, 1e-4)
        total += (a - e) * math.log(a / e)
    return total
