"""The numbers' imputer: scikit-learn's SimpleImputer, its median taken one column at a time.

SimpleImputer's median is `np.ma.median` over the whole matrix: a masked array sorted along the
rows, which holds an argsort (int64), a filled copy and the sorted copy of every column at once,
about three times the training matrix (at a million documents the peak of the build was there).
`MedianImputer` takes the same median of each column from that column's present values alone (a
copy of one column), as `np.ma.median` computes it: the middle value, or the two middle values
added and halved. Every other strategy, the transform and the ONNX graph (skl2onnx's Imputer node,
registered for this class in features/converters.py) are SimpleImputer's own.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from sklearn.impute import SimpleImputer
from sklearn.utils._mask import _get_mask
from sklearn.utils._missing import is_scalar_nan


class MedianImputer(SimpleImputer):
    """SimpleImputer whose "median" holds one column of the data at a time; its statistics are SimpleImputer's."""

    def _dense_fit(self, X: np.ndarray, strategy: Any, missing_values: Any, fill_value: Any) -> np.ndarray:
        if strategy != "median" or not is_scalar_nan(missing_values):  # (mlpack's missing value is NaN)
            return super()._dense_fit(X, strategy, missing_values, fill_value)
        missing = _get_mask(X, missing_values)
        self._fit_indicator(missing)
        medians = np.empty(X.shape[1], dtype=X.dtype)
        for index in range(X.shape[1]):
            medians[index] = _median(X[:, index][~missing[:, index]], 0 if self.keep_empty_features else np.nan)
        return medians


def _median(present: np.ndarray, empty: float) -> Any:
    """`np.ma.median`'s value for these values: the middle one (added to itself and halved, as it does),
    or the two in the middle added and halved; `empty` when there are none."""
    count = len(present)
    if not count:
        return empty
    high = count // 2
    low = high if count % 2 else high - 1
    middle = np.partition(present, [low, high]) if low != high else np.partition(present, high)
    return np.true_divide(middle[low] + middle[high], 2, dtype=present.dtype)


__all__ = ["MedianImputer"]
