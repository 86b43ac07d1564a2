"""A fitted pipeline's labels (or values) and class probabilities, its features computed once.

`pipeline.predict(X)` and `pipeline.predict_proba(X)` each run the graph's features and the
estimator: a metric that needs both, and the parity check on a million rows, paid twice for one
answer. Here the features are computed once, and a HistGradientBoostingClassifier (whose predict and
predict_proba both start from the same raw predictions) walks its trees once, then finishes each
answer as its own two methods do. The results are those of the two calls, value for value
(tests/test_predictions.py holds them to it).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.pipeline import Pipeline


def predictions(model: Any, x: Any, *, probabilities: bool) -> tuple[np.ndarray, np.ndarray | None]:
    """(model.predict(x), model.predict_proba(x) when `probabilities`, else None), for a fitted
    Pipeline or a fitted estimator alone (cross-validation's folds score the final step on features)."""
    if isinstance(model, Pipeline):
        features, estimator = model[:-1].transform(x), model.steps[-1][1]
    else:
        features, estimator = x, model
    if probabilities and type(estimator) is HistGradientBoostingClassifier:
        return _hist_gradient_boosting(estimator, features)
    labels = estimator.predict(features)
    return labels, estimator.predict_proba(features) if probabilities else None


def _hist_gradient_boosting(estimator: HistGradientBoostingClassifier, x: Any) -> tuple[np.ndarray, np.ndarray]:
    """HistGradientBoostingClassifier.predict and predict_proba (scikit-learn 1.9) from one walk of the trees."""
    raw = estimator._raw_predict(x)
    # Two classes: its predict reads "raw > 0", not argmax of the probabilities (which gives a tie to class 0).
    encoded = (raw.ravel() > 0).astype(int) if raw.shape[1] == 1 else np.argmax(raw, axis=1)
    return estimator.classes_[encoded], estimator._loss.predict_proba(raw)


__all__ = ["predictions"]
