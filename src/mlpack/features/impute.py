"""The numbers' imputer: scikit-learn's SimpleImputer, its median taken one column at a time.

SimpleImputer's median is `np.ma.median` over the whole matrix: a masked array sorted along the
rows, which holds an argsort (int64), a filled copy and the sorted copy of every column at once,
about three times the training matrix (at a million documents the peak of the build was there).
`MedianImputer` takes the same median of each column from that column's present values alone (a
copy of one column), as `np.ma.median` computes it: the middle value, or the two middle values
added and halved. Every other strategy, the transform and the ONNX graph (skl2onnx's Imputer node,
registered for this class in features/converters.py) are SimpleImputer's own.

Given a DataFrame (the numbers' columns, as the pipeline gives them), SimpleImputer's validation
holds two copies of the whole block at once: np.asarray of the frame, then, to learn whether that
array shares memory with the frame (copy=True), np.may_share_memory converts the frame again. At a
million documents that second copy (61 MiB) was the preprocessing's peak, in fit and in transform.
`MedianImputer` converts the frame once itself, into an array nothing else holds, and lets
SimpleImputer work on that array without copying it.
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
import pandas as pd
from sklearn.impute import SimpleImputer
from sklearn.utils._mask import _get_mask
from sklearn.utils._missing import is_scalar_nan
from sklearn.utils.validation import _check_feature_names


class MedianImputer(SimpleImputer):
    """SimpleImputer whose "median" holds one column of the data at a time; its statistics are SimpleImputer's."""

    def fit(self, X: Any, y: Any = None) -> MedianImputer:
        if not isinstance(X, pd.DataFrame):
            return super().fit(X, y)  # type: ignore[no-any-return]
        _check_feature_names(self, X, reset=True)  # the frame's column names, as SimpleImputer would keep them
        # SimpleImputer.fit reads X and never writes it, so the frame's own array is not copied again.
        return self._on_array(super().fit, X, y)  # type: ignore[no-any-return]

    def transform(self, X: Any) -> Any:
        if not isinstance(X, pd.DataFrame):
            return super().transform(X)
        _check_feature_names(self, X, reset=False)  # the same columns as in fit, or SimpleImputer's warning
        # Imputed in place: the array is a copy of the frame made here, which nothing else holds.
        return self._on_array(super().transform, X)

    def _on_array(self, method: Any, X: pd.DataFrame, *args: Any) -> Any:
        names = getattr(self, "feature_names_in_", None)
        array = X.to_numpy(copy=True)  # a new array (pandas copies a frame of many columns once, not twice)
        copy: bool = self.get_params()["copy"]
        self.copy = False
        try:
            with warnings.catch_warnings():  # the names were checked against the frame above
                warnings.filterwarnings("ignore", message="X does not have valid feature names")
                return method(array, *args)
        finally:
            self.copy = copy
            if names is not None:
                self.feature_names_in_ = names

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
