"""DateParts, the scikit-learn transformer of `[features].datetime`: each date → its DATE_PARTS.

Apart from `dates.py` (the calendar arithmetic, which the expression language uses too) so that
reading a configuration, which parses expressions, does not import scikit-learn.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from sklearn.base import BaseEstimator, TransformerMixin

from mlpack.features.dates import DATE_PARTS, date_parts
from mlpack.features.ops import NumpyOps


class DateParts(TransformerMixin, BaseEstimator):  # type: ignore[misc]
    """int64 milliseconds (one column per date field) → the DATE_PARTS of each, as float columns.

    Missing dates (MISSING_DATE) give NaN parts, imputed by the numeric imputer that follows.
    """

    def fit(self, X: Any, y: Any = None) -> DateParts:
        self.n_features_in_ = np.asarray(X).shape[1]
        self.feature_names_in_ = np.asarray(
            getattr(X, "columns", [f"date{i}" for i in range(self.n_features_in_)]), dtype=object
        )
        return self

    def transform(self, X: Any) -> np.ndarray:
        columns = np.asarray(X, dtype=np.int64)
        ops = NumpyOps()
        blocks: list[np.ndarray] = []
        for index in range(columns.shape[1]):
            parts = date_parts(ops, columns[:, index])
            blocks.extend(parts[part] for part in DATE_PARTS)
        return np.stack(blocks, axis=1).astype(np.float64) if blocks else np.empty((len(columns), 0))

    def get_feature_names_out(self, input_features: Any = None) -> np.ndarray:
        names = self.feature_names_in_ if input_features is None else input_features
        return np.asarray([f"{name}.{part}" for name in names for part in DATE_PARTS], dtype=object)
