"""The numbers' scaler: scikit-learn's StandardScaler, its statistics taken one column at a time.

StandardScaler's fit (`_incremental_mean_and_var`) holds, beside the matrix it is given, a NaN mask
of it, that mask as float64 (to count the values present) and the matrix minus its mean: about two
and a bit times the matrix again. At a million documents the numbers' block of the training rows
is 61 MiB and its fit was the build's peak with SGD (scikit-learn's temporaries 130 MiB of it).
`ColumnScaler` fits a StandardScaler on each column of a column-major matrix (a view, no copy) and
puts their statistics together: each column's temporaries are its own, one column at a time. The
sums are numpy's of one contiguous column either way (a column-major matrix reduced along its rows
sums each column as that column alone is summed), so `mean_`, `var_`, `scale_` and
`n_samples_seen_` are StandardScaler's to the bit (tests/test_build_memory.py holds them to it);
any other input (row-major, sample weights, sparse, one column) is StandardScaler's own fit. The
transform and the ONNX graph (skl2onnx's Scaler node, registered for this class in
features/converters.py under StandardScaler's own name) are StandardScaler's.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from sklearn.preprocessing import StandardScaler


class ColumnScaler(StandardScaler):
    """StandardScaler whose fit holds one column's temporaries at a time; its statistics are StandardScaler's."""

    def fit(self, X: Any, y: Any = None, sample_weight: Any = None) -> ColumnScaler:
        if not _by_column(X, sample_weight) or not (self.with_mean and self.with_std):
            return super().fit(X, y, sample_weight)  # type: ignore[no-any-return]
        self._reset()
        columns = [
            StandardScaler(copy=self.copy).fit(X[:, index : index + 1]) for index in range(X.shape[1])
        ]  # each an (n, 1) view: contiguous, as the column is in X
        self.mean_ = np.concatenate([column.mean_ for column in columns])
        self.var_ = np.concatenate([column.var_ for column in columns])
        self.scale_ = np.concatenate([column.scale_ for column in columns])
        seen = np.concatenate([np.atleast_1d(column.n_samples_seen_) for column in columns])
        # StandardScaler's own reduction: one integer when every column saw as many values (no NaN)
        self.n_samples_seen_ = seen[0] if seen.max() == seen.min() else seen
        self.n_features_in_ = X.shape[1]
        if hasattr(self, "feature_names_in_"):
            del self.feature_names_in_  # an array has no column names: StandardScaler's fit leaves none
        return self


def _by_column(X: Any, sample_weight: Any) -> bool:
    return (
        sample_weight is None
        and type(X) is np.ndarray
        and X.ndim == 2
        and X.shape[1] > 1
        and X.dtype == np.float64
        and X.flags.f_contiguous
        and not X.flags.c_contiguous
    )


__all__ = ["ColumnScaler"]
