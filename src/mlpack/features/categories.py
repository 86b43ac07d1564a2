"""`[preprocessing].max_categories`: rare categories share one "other" value before one-hot encoding.

scikit-learn's own `OneHotEncoder(max_categories=...)` does this, but skl2onnx 1.20 refuses to
convert it ("Infrequent categories are not implemented"), so mlpack keeps the frequent categories
itself and maps the rest — and categories never seen in training — to OTHER, in the graph too.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import numpy as np
from sklearn.base import BaseEstimator, TransformerMixin

OTHER = "__other__"


def kept_categories(values: list[Any], max_categories: int) -> list[str]:
    """The values the model tells apart, most frequent first: all of them when there are at most
    `max_categories`, else the `max_categories - 1` most frequent (the rest share OTHER's column).
    The metadata, the card and the drift baseline list these and no more: a rarer value is no part
    of the model, and listing it would copy training data (customer ids, names) into every artifact."""
    counts = Counter(values)
    ranked = sorted(counts, key=lambda value: (-counts[value], str(value)))
    keep = ranked if len(ranked) <= max_categories else ranked[: max_categories - 1]
    return [str(value) for value in keep]


class RareCategories(TransformerMixin, BaseEstimator):  # type: ignore[misc]
    """String columns → the same columns with all but the `max_categories - 1` most frequent values
    made OTHER, when a column has more than `max_categories` distinct values."""

    def __init__(self, max_categories: int = 50) -> None:
        self.max_categories = max_categories

    def fit(self, X: Any, y: Any = None) -> RareCategories:
        columns = np.asarray(X, dtype=object)
        self.kept_: list[list[str]] = []
        for index in range(columns.shape[1]):
            self.kept_.append(sorted(kept_categories(columns[:, index].tolist(), self.max_categories)))
        self.n_features_in_ = columns.shape[1]
        return self

    def transform(self, X: Any) -> np.ndarray:
        columns = np.asarray(X, dtype=object).copy()
        for index, kept in enumerate(self.kept_):
            known = set(kept)
            columns[:, index] = [value if value in known else OTHER for value in columns[:, index].tolist()]
        return columns

    def get_feature_names_out(self, input_features: Any = None) -> np.ndarray:
        return np.asarray(input_features if input_features is not None else [], dtype=object)
