"""`[features].ordinal`: categories with a declared order become their position in it, in the graph.

`ordinal = { cut = ["Fair", "Good", "Very Good", "Premium", "Ideal"] }` makes "Fair" 0 and "Ideal"
4: one numeric column instead of five one-hot ones, which keeps the order a tree or a linear model
can use. A missing value, and at prediction a category the order does not list, is NaN and is
imputed like any missing number; in training, a value the order does not list is a data error
(a typo in the data or in the order). The graph computes the same with one LabelEncoder per column
(features/converters.py).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from sklearn.base import BaseEstimator, TransformerMixin

from mlpack.runtime import MISSING_CATEGORY


class OrdinalCategories(TransformerMixin, BaseEstimator):  # type: ignore[misc]
    """String columns [N, k] → float columns [N, k]: each value's position in its column's order, else NaN."""

    def __init__(self, orders: Sequence[Sequence[str]] = ()) -> None:
        self.orders = orders

    def fit(self, X: Any, y: Any = None) -> OrdinalCategories:
        columns = np.asarray(X, dtype=object)
        if columns.ndim != 2 or columns.shape[1] != len(self.orders):
            raise ValueError(f"expected {len(self.orders)} columns, got shape {columns.shape}")
        self.orders_ = [list(order) for order in self.orders]
        self.n_features_in_ = columns.shape[1]
        return self

    def transform(self, X: Any) -> np.ndarray:
        columns = np.asarray(X, dtype=object)
        out = np.full(columns.shape, np.nan, dtype=np.float32)
        for index, order in enumerate(self.orders_):
            position = {text: float(rank) for rank, text in enumerate(order)}
            out[:, index] = [position.get(value, np.nan) for value in columns[:, index].tolist()]
        return out

    def get_feature_names_out(self, input_features: Any = None) -> np.ndarray:
        return np.asarray(input_features if input_features is not None else [], dtype=object)


def unlisted(path: str, column: np.ndarray | None, order: Sequence[str], ids: Sequence[Any]) -> str | None:
    """The training values of ordinal feature `path` its order does not list, as a problem for the report."""
    if column is None:
        return None
    known = set(order) | {MISSING_CATEGORY}
    bad = [index for index, value in enumerate(column.tolist()) if value not in known]
    if not bad:
        return None
    values = sorted({str(column[i]) for i in bad})
    shown = ", ".join(repr(v) for v in values[:5]) + (", ..." if len(values) > 5 else "")
    return (
        f"ordinal feature '{path}': {len(bad)} value(s) not in its order ({shown}), e.g. _id {ids[bad[0]]!s}; "
        f"the order is {', '.join(repr(o) for o in order)}"
    )
