"""XGBClassifier that takes any labels, as every scikit-learn classifier does.

XGBoost accepts only the labels 0..n-1 and its `classes_` is always `arange(n)`, but an mlpack model
answers with the data's own labels ("churned", True, 3). This subclass encodes the labels in `fit`
and answers with the originals in `predict` and `classes_`; onnxmltools' converter writes
`classes_` into the graph, so the ONNX label output carries the same labels.

Imported only when a config names xgboost.XGBClassifier (it needs the `boosting` extra).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from xgboost import XGBClassifier


class LabelledXGBClassifier(XGBClassifier):  # type: ignore[misc]
    def fit(self, X: Any, y: Any, **kwargs: Any) -> LabelledXGBClassifier:  # noqa: N803 - scikit-learn's spelling
        labels, encoded = np.unique(np.asarray(y), return_inverse=True)
        self.__dict__.pop("labels_", None)  # XGBoost's fit checks the codes against classes_ below
        super().fit(X, encoded, **kwargs)
        self.labels_ = labels
        return self

    @property
    def classes_(self) -> np.ndarray:
        labels = self.__dict__.get("labels_")
        return labels if labels is not None else super().classes_

    def predict(self, X: Any, **kwargs: Any) -> np.ndarray:  # noqa: N803
        return np.asarray(self.labels_[super().predict(X, **kwargs)])
