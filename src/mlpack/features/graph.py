"""The preprocessing as the ONNX graph computes it: what the estimator is trained on.

scikit-learn and onnxruntime do not compute the same features from the same documents, bit for
bit: `np.log` and onnxruntime's `Log` differ by one float32 ulp on about a third of values, a
median imputed in float64 is not the float32 the graph fills in, and a tokenizer written with
Python's `re` and one written with re2 split some strings differently. A tree whose threshold
lies between two such roundings sends the document down another branch. So mlpack never trains
an estimator on scikit-learn's features: `GraphFeatures` fits the preprocessing in scikit-learn
(vocabularies, medians, categories, scales), converts it to ONNX, and its `transform` runs that
graph in onnxruntime. The estimator learns from exactly the float32 values that the shipped
graph will feed it, and the exported model is this graph with the estimator's nodes after it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np
from skl2onnx import convert_sklearn
from skl2onnx.common.data_types import FloatTensorType, Int64TensorType, StringTensorType
from sklearn.base import BaseEstimator, TransformerMixin, clone
from sklearn.compose import ColumnTransformer
from sklearn.pipeline import Pipeline

from mlpack.features.converters import register as register_converters
from mlpack.features.encodings import cross_fitted_columns, give_groups, has_cross_fitted
from mlpack.runtime import heap

# How each kind of input enters the graph: (the metadata's "type", the tensor type, the numpy dtype).
# Dates are int64 milliseconds since 1970 UTC, BSON's own representation, so any client can feed them.
INPUT_TYPES: dict[str, tuple[str, Any, Any]] = {
    "numeric": ("float32", FloatTensorType, np.float32),
    "categorical": ("string", StringTensorType, object),
    "datetime": ("int64-ms", Int64TensorType, np.int64),
    "text": ("string", StringTensorType, object),
}


# Rows the preprocessing graph runs at a time in `transform` (a multiple of any SIMD width). What a run
# of this many rows allocates stays resident after it (at 65,536 rows, about half the projected columns
# of a million documents, beside the features); 8,192 rows cost about 6 % more CPU a row.
TRANSFORM_CHUNK = 8_192


Crossed = list[tuple[Any, np.ndarray]]  # a cross-fitted transformer's feature columns and their out-of-fold values


def spans(rows: int) -> list[tuple[int, int]]:
    """The (start, end) row spans `transform` runs the graph on: TRANSFORM_CHUNK rows each, the last
    one longer rather than small (onnxruntime runs a lone row by other kernels)."""
    bounds = [*range(0, rows, TRANSFORM_CHUNK), rows]
    if len(bounds) > 2 and bounds[-1] - bounds[-2] < 1_024:
        del bounds[-2]
    return list(zip(bounds, bounds[1:]))


class GraphConversionError(RuntimeError):
    """skl2onnx could not convert the preprocessing (the message is one line)."""


def initial_types(inputs: Sequence[tuple[str, str]]) -> list[tuple[str, Any]]:
    """skl2onnx's initial types for (ONNX input name, kind) pairs, one [N, 1] tensor each."""
    return [(name, INPUT_TYPES[kind][1]([None, 1])) for name, kind in inputs]


class GraphFeatures(TransformerMixin, BaseEstimator):  # type: ignore[misc]
    """`preprocessing` (a Pipeline of mlpack's transformers) fitted in scikit-learn, applied by onnxruntime.

    `inputs`: the graph's (ONNX input name, kind) pairs, in order; `opset`: the target opset(s) the
    export uses, so the estimator sees the very nodes that ship; `dtype`: the features' dtype (`transform`).
    """

    def __init__(
        self,
        preprocessing: Pipeline,
        inputs: Sequence[tuple[str, str]] = (),
        opset: int | Mapping[str, int] = 17,
        dtype: str = "float64",
    ) -> None:
        self.preprocessing = preprocessing
        self.inputs = inputs
        self.opset = opset
        self.dtype = dtype

    def fit(self, X: Any, y: Any = None, groups: Any = None) -> GraphFeatures:
        self._fit(X, y, groups, features=False)
        return self

    def fit_transform(self, X: Any, y: Any = None, groups: Any = None, **params: Any) -> np.ndarray:
        """The features the estimator trains on: the graph's, except the columns of a cross-fitted
        transformer (a target encoding), which are its out-of-fold values — each row encoded by a
        table the other folds made, as float32 as a graph holding that table would give them.
        `groups` (a group split's field, per row) keeps each group within one of those folds."""
        crossed = self.fit_crossed(X, y, groups)
        return self.with_crossed(self.transform(X), crossed)

    def fit_crossed(self, X: Any, y: Any = None, groups: Any = None) -> Crossed:
        """`fit`, keeping what `fit_transform`'s features take from scikit-learn: a cross-fitted
        transformer's out-of-fold columns (none without one). `with_crossed` puts them into the graph's
        features of the same rows, made by `transform` or, a chunk at a time, by `transform_parts`."""
        trained = self._fit(X, y, groups, features=has_cross_fitted(self.preprocessing))
        crossed = [(columns, np.array(trained[:, columns])) for columns in cross_fitted_columns(self.preprocessing_)]
        del trained  # scikit-learn's own features: only a cross-fitted transformer's columns are kept
        heap.release()  # what the fit's passes freed, before the largest array of training, the features
        return crossed

    @staticmethod
    def with_crossed(features: np.ndarray, crossed: Crossed) -> np.ndarray:
        for columns, values in crossed:
            features[:, columns] = np.asarray(values, dtype=np.float32)
        return features

    def _fit(self, X: Any, y: Any, groups: Any = None, *, features: bool = True) -> Any:
        """Fit the preprocessing; scikit-learn's features of `X` when `features` (else None: not computed)."""
        self.preprocessing_ = clone(self.preprocessing)
        if groups is not None:
            give_groups(self.preprocessing_, groups)
        trained = None
        if features:
            trained = np.asarray(self.preprocessing_.fit_transform(X, y))
        else:
            _fit_only(self.preprocessing_, X, y)
        self.onnx_ = self._convert()
        self._session: Any = None
        self.n_features_in_ = len(self.inputs)
        return trained

    def _convert(self) -> bytes:
        register_converters()
        opset = dict(self.opset) if isinstance(self.opset, Mapping) else self.opset
        try:
            model = convert_sklearn(self.preprocessing_, initial_types=initial_types(self.inputs), target_opset=opset)
        except Exception as exc:  # skl2onnx raises bare RuntimeError/TypeError/etc.
            first = (str(exc).strip().splitlines() or [""])[0][:300]
            raise GraphConversionError(f"{type(exc).__name__}: {first}") from None
        model.graph.name = "mlpack_features"  # skl2onnx's default is a random UUID
        return bytes(model.SerializeToString(deterministic=True))

    @property
    def session(self) -> Any:
        if getattr(self, "_session", None) is None:
            # The runtime's own session: the options every model in a wheel runs with.
            from mlpack.runtime.model import _new_session

            self._session = _new_session(self.onnx_)
        return self._session

    def unload(self) -> None:
        """Drop the onnxruntime session, and with it the memory its arena kept for the largest run (at
        TRANSFORM_CHUNK rows, about 7 MB); the next `transform` makes a new one, with the same values."""
        self._session = None

    def feeds(self, X: Any, rows: slice = slice(None)) -> dict[str, np.ndarray]:
        """The graph's input tensors from a frame whose columns are the ONNX input names (`rows` of it)."""
        out = {}
        for name, kind in self.inputs:
            # The rows first, then the array: a column pandas stores in pyarrow makes its Python objects on to_numpy.
            out[name] = np.asarray(X[name].iloc[rows].to_numpy(), dtype=INPUT_TYPES[kind][2]).reshape(-1, 1)
        return out

    def transform(self, X: Any) -> np.ndarray:
        """The graph's features in `dtype`, run TRANSFORM_CHUNK rows at a time into one array: a million
        rows never hold the graph's float32 output and a float64 copy at once. float64 (which holds
        every float32 exactly) unless the estimator's fit keeps float32 float32 (the catalogue's
        `float32`, SGD): given float32, an estimator that computes in float64 (an SVM, HistGradientBoosting)
        would make its own float64 copy beside them. Each
        feature is a function of its own row, and the session runs on one thread, so the values do not
        depend on the chunk (tests/test_chunks.py holds chunked and whole to the same model bytes)."""
        rows = len(X)
        if rows <= TRANSFORM_CHUNK:
            return np.asarray(self.session.run(None, self.feeds(X))[0], dtype=self.dtype)
        return self._run(rows, (self.feeds(X, slice(start, end)) for start, end in spans(rows)))

    def transform_parts(self, rows: int, parts: Iterable[Any]) -> np.ndarray:
        """`transform` of a frame of `rows` rows given as its parts, one frame per span of `spans(rows)`
        in order (read from a file a part at a time: the whole frame is never in memory)."""
        return self._run(rows, (self.feeds(part) for part in parts))

    def _run(self, rows: int, feeds: Iterable[dict[str, np.ndarray]]) -> np.ndarray:
        features: np.ndarray | None = None
        start = 0
        for feed in feeds:
            chunk = self.session.run(None, feed)[0]
            if features is None:
                features = np.empty((rows, chunk.shape[1]), dtype=self.dtype)
            features[start : start + len(chunk)] = chunk
            start += len(chunk)
        assert features is not None and start == rows
        return features

    def get_feature_names_out(self, input_features: Any = None) -> np.ndarray:
        return np.asarray(self.preprocessing_.get_feature_names_out(), dtype=object)

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_session"] = None  # an onnxruntime session does not pickle; it is made again on use
        return state


def _fit_only(preprocessing: Pipeline, X: Any, y: Any) -> None:
    """`preprocessing.fit(X, y)` without the features it would make of the training rows: ColumnTransformer's
    fit is its fit_transform, which computes each transformer's output, holds them all until the last is
    done, and stacks them into one matrix (at a million documents, the build's peak) that nothing reads.
    Here each transformer is fitted without transforming the training rows (`_FitOnly`); its fitted state
    and the ColumnTransformer's (the fitted transformers, the output's columns and sparsity) are those
    of the fit_transform, and the stacking alone is skipped."""
    last = preprocessing.steps[-1][1]
    if not isinstance(last, ColumnTransformer) or last.sparse_threshold != 0:
        # sparse_threshold 0: the output is dense whatever the parts give, so no part's sparsity is needed
        preprocessing.fit(X, y)
        return
    given = last.transformers
    last.transformers = [(name, _FitOnly(part) if _fitted(part) else part, columns) for name, part, columns in given]
    last._hstack = _no_stack  # type: ignore[method-assign]  # this instance, for this fit only
    try:
        preprocessing.fit(X, y)
        fitted = [(name, getattr(part, "part", part), columns) for name, part, columns in last.transformers_]
        last.transformers_ = fitted
    finally:
        last.transformers = given
        del last._hstack


def _fitted(part: Any) -> bool:
    return not isinstance(part, str)  # "drop" and "passthrough" are not fitted


class _FitOnly(BaseEstimator):  # type: ignore[misc]
    """A ColumnTransformer part whose fit_transform fits it (a Pipeline's last step is fitted, not also
    applied) and gives a stand-in of the output's shape that holds no memory: ColumnTransformer reads
    only its shape here, and nothing reads its values. `_fit_only` puts the fitted part back."""

    def __init__(self, part: Any) -> None:
        self.part = part

    def fit(self, X: Any, y: Any = None, **params: Any) -> _FitOnly:
        self.part.fit(X, y, **params)
        return self

    def transform(self, X: Any) -> Any:
        return self.part.transform(X)

    def fit_transform(self, X: Any, y: Any = None, **params: Any) -> np.ndarray:
        self.fit(X, y, **params)
        # The output's width from one row: every part's output columns are fixed by its fitted state.
        width = self.part.transform(X.iloc[:1] if hasattr(X, "iloc") else X[:1]).shape[1]
        return np.broadcast_to(np.float64(0.0), (len(X), width))


def _no_stack(Xs: Any, *, n_samples: int) -> None:
    return None


__all__ = ["INPUT_TYPES", "Crossed", "GraphConversionError", "GraphFeatures", "initial_types", "spans"]
