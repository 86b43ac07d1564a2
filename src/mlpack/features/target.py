"""`[features].target_transform`: fit a regressor on f(target), predict inverse(f) of its output.

`TransformedTarget` wraps the estimator, so everything downstream — metrics, gates, the parity
check, the wheel — sees predictions in the target's own units; its converter (converters.py)
puts the inverse after the regressor in the graph.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
from sklearn.base import BaseEstimator, RegressorMixin, clone


@dataclass(frozen=True)
class Transform:
    forward: Callable[[np.ndarray], np.ndarray]
    inverse: Callable[[np.ndarray], np.ndarray]
    domain: str  # which targets it accepts, for the error message
    accepts: Callable[[np.ndarray], np.ndarray]  # elementwise: True where the value is in the domain
    onnx_inverse: tuple[str, ...]  # ONNX steps: "Exp", "Expm1" (Exp then -1) or "Square"


def _square(values: np.ndarray) -> np.ndarray:
    return np.asarray(values * values)


def _expm1(values: np.ndarray) -> np.ndarray:
    # exp(x) - 1 step by step, as the graph computes it (np.expm1 would disagree in float32).
    return np.asarray(np.exp(values) - 1.0)


TRANSFORMS: dict[str, Transform] = {
    "log1p": Transform(np.log1p, _expm1, "greater than -1", lambda y: y > -1, ("Exp", "Minus1")),
    "log": Transform(np.log, np.exp, "greater than 0", lambda y: y > 0, ("Exp",)),
    "sqrt": Transform(np.sqrt, _square, "0 or more", lambda y: y >= 0, ("Square",)),
}


class TransformedTarget(RegressorMixin, BaseEstimator):  # type: ignore[misc]
    """A regressor fitted on TRANSFORMS[func].forward(y); `predict` answers in y's own units."""

    def __init__(self, regressor: Any = None, func: str = "log1p") -> None:
        self.regressor = regressor
        self.func = func

    def fit(self, X: Any, y: Any, sample_weight: Any = None) -> TransformedTarget:
        transform = TRANSFORMS[self.func]
        target = np.asarray(y, dtype=np.float64)
        self.regressor_ = clone(self.regressor)
        if sample_weight is None:
            self.regressor_.fit(X, transform.forward(target))
        else:
            self.regressor_.fit(X, transform.forward(target), sample_weight=sample_weight)
        self.n_features_in_ = getattr(self.regressor_, "n_features_in_", None)
        return self

    def predict(self, X: Any) -> np.ndarray:
        # In float32 like the graph: the inverse (exp) magnifies any difference in its input.
        raw = np.asarray(self.regressor_.predict(X), dtype=np.float32)
        return np.asarray(TRANSFORMS[self.func].inverse(raw), dtype=np.float64)
