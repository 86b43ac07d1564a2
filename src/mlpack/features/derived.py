"""`DerivedFeatures`: the scikit-learn step that adds the `[features.derived]` columns.

It is the pipeline's first step: it receives every raw input (numbers, categories, dates as
int64 milliseconds) and passes them on with one float column per derived feature added, so the
preprocessing after it selects derived and raw columns alike by name. Its converter
(converters.py) writes the same computation into the ONNX graph.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, TransformerMixin

from mlpack.features.expressions import Expression, Kind, evaluate, input_fields, parse_derived


class DerivedFeatures(TransformerMixin, BaseEstimator):  # type: ignore[misc]
    """Adds one float32-valued column per expression to a DataFrame of raw inputs.

    expressions: derived name → expression text; kinds: the declared kind of fields the
    [features] lists name; columns: document path → the column (ONNX input) holding it, and
    derived name → the column it is written to.
    """

    def __init__(
        self,
        expressions: dict[str, str] | None = None,
        kinds: dict[str, Kind] | None = None,
        columns: dict[str, str] | None = None,
    ) -> None:
        self.expressions = expressions
        self.kinds = kinds
        self.columns = columns

    def fit(self, X: pd.DataFrame, y: Any = None) -> DerivedFeatures:
        self.parsed_: list[Expression] = parse_derived(self.expressions or {}, self.kinds or {})
        self.inputs_ = {path: (self.columns or {}).get(path, path) for path in input_fields(self.parsed_)}
        self.outputs_ = {e.name: (self.columns or {}).get(e.name, e.name) for e in self.parsed_}
        missing = [column for column in self.inputs_.values() if column not in X.columns]
        if missing:
            raise ValueError(f"DerivedFeatures: no column {missing[0]!r} among the inputs")
        self.n_features_in_ = X.shape[1]
        return self

    def transform(self, X: pd.DataFrame) -> pd.DataFrame:
        raw = {path: X[column].to_numpy() for path, column in self.inputs_.items()}
        values = evaluate(self.parsed_, raw)
        added = pd.DataFrame(
            {self.outputs_[name]: value.astype(np.float64) for name, value in values.items()}, index=X.index
        )
        return pd.concat([X, added], axis=1)
