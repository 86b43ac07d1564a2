"""`[features].encoding`: a high-cardinality categorical as one number (or one per class), in the graph.

One-hot gives a field of 3,257 tail numbers 49 columns and `__other__`. `"frequency"` replaces each
category by the share of training documents that have it; `"target"` by the mean of the target among
them (per class for a classifier), smoothed towards the overall mean by scikit-learn's
`TargetEncoder` (an empirical-Bayes weight: few documents, little trust).

Both are a lookup table per field, so the graph computes them with one `LabelEncoder` per output
column (features/converters.py), and a table value is the float32 the graph holds. A category seen
in fewer than `min_count` training documents gets no entry of its own — it is what an unseen
category is — so no single document's value (or label) is written into the model.

A target encoding must not see the row it encodes while the estimator learns: the mean of a rare
category is then its own label. So the training rows are encoded out of fold (cross fitting, as
`TargetEncoder.fit_transform` does): each fold by the table of the other folds, which is a table the
graph could hold. `cross_fitted` tells `GraphFeatures` to train the estimator on those values; the
exported graph holds the table of all training rows, which is what prediction uses.
"""

from __future__ import annotations

from collections import Counter
from typing import Any, Literal

import numpy as np
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.model_selection import GroupKFold, KFold, StratifiedKFold
from sklearn.preprocessing import TargetEncoder

from mlpack.features.categories import OTHER

Encoding = Literal["onehot", "frequency", "target"]


class CategoryTable(TransformerMixin, BaseEstimator):  # type: ignore[misc]
    """String columns [N, k] → float32 columns by lookup in `tables_`, one (keys, values, default) per
    column: values [len(keys), width], default [width] for a category the keys do not list."""

    cross_fitted = False  # True: fit_transform's values differ from transform's by design (out of fold)

    def _widths(self) -> list[int]:
        return [int(default.shape[0]) for _, _, default in self.tables_]

    def transform(self, X: Any) -> np.ndarray:
        columns = np.asarray(X, dtype=object)
        return _lookup(self.tables_, columns)

    def _standardize(self, tables: list[Any], trained: np.ndarray) -> tuple[list[Any], np.ndarray]:
        """Scaled like numbers, for a scale-sensitive estimator: the scale is baked into the table, so
        the graph still does one lookup (and the training values are what a graph with them holds)."""
        mean = trained.mean(axis=0)
        std = trained.std(axis=0)
        std[std == 0] = 1.0
        out: list[Any] = []
        start = 0
        for keys, values, default in tables:
            width = default.shape[0]
            part = slice(start, start + width)
            out.append((keys, (values - mean[part]) / std[part], (default - mean[part]) / std[part]))
            start += width
        return out, (trained - mean) / std

    def _output_names(self, input_features: Any) -> list[str]:
        names = list(input_features) if input_features is not None else [f"x{i}" for i in range(len(self.tables_))]
        classes = getattr(self, "classes_", None)
        out: list[str] = []
        for name, width in zip(names, self._widths()):
            out += [name] if width == 1 or classes is None else [f"{name}_{c}" for c in classes]
        return out

    def get_feature_names_out(self, input_features: Any = None) -> np.ndarray:
        return np.asarray(self._output_names(input_features), dtype=object)


def _lookup(tables: list[Any], columns: np.ndarray) -> np.ndarray:
    blocks = []
    for index, (keys, values, default) in enumerate(tables):
        row = {key: position for position, key in enumerate(keys)}
        rows = np.array([row.get(value, len(keys)) for value in columns[:, index].tolist()], dtype=np.int64)
        blocks.append(np.vstack([values, default[None, :]]).astype(np.float32)[rows])
    return np.hstack(blocks) if blocks else np.zeros((len(columns), 0), dtype=np.float32)


def _table(keys: list[str], values: np.ndarray, default: np.ndarray) -> tuple[list[str], np.ndarray, np.ndarray]:
    return keys, np.asarray(values, dtype=np.float64).reshape(len(keys), -1), np.asarray(default, dtype=np.float64)


def _frequent(column: list[Any], min_count: int) -> Counter[Any]:
    counts = Counter(column)
    return Counter({value: count for value, count in counts.items() if count >= min_count})


class FrequencyEncoding(CategoryTable):
    """Each category → the share of training documents that have it (a missing value is a category
    too); a category seen in fewer than `min_count` documents, or never, → 0."""

    def __init__(self, min_count: int = 1, scale: bool = False) -> None:
        self.min_count = min_count
        self.scale = scale

    def fit(self, X: Any, y: Any = None) -> FrequencyEncoding:
        columns = np.asarray(X, dtype=object)
        rows = max(len(columns), 1)
        tables = []
        for index in range(columns.shape[1]):
            counts = _frequent(columns[:, index].tolist(), self.min_count)
            keys = sorted(str(key) for key in counts)
            tables.append(_table(keys, np.array([counts[key] / rows for key in keys]), np.zeros(1)))
        self.tables_ = tables
        if self.scale:
            self.tables_, _ = self._standardize(tables, _lookup(tables, columns).astype(np.float64))
        self.n_features_in_ = columns.shape[1]
        return self


class TargetEncoding(CategoryTable):
    """Each category → its smoothed mean target (regression, binary: one column; multiclass: one per
    class, the share of each), via scikit-learn's TargetEncoder; unseen and rarer than `min_count`
    → the encoding of all such documents together (else the overall mean). `fit_transform` encodes
    the training rows out of fold (`folds`, shuffled with `seed`, stratified for a classifier)."""

    cross_fitted = True

    def __init__(
        self,
        task: str = "regression",
        min_count: int = 1,
        folds: int = 5,
        seed: int = 0,
        scale: bool = False,
        groups: Any = None,
    ) -> None:
        self.task = task
        self.min_count = min_count
        self.folds = folds
        self.seed = seed
        self.scale = scale
        # Per training row, a group no fold splits ([evaluation].split = "group"): a row is then encoded
        # without its group's other rows, as a document of a new group is at prediction.
        self.groups = groups

    def fit(self, X: Any, y: Any) -> TargetEncoding:
        self.fit_transform(X, y)
        return self

    def fit_transform(self, X: Any, y: Any = None, **params: Any) -> np.ndarray:
        columns = np.asarray(X, dtype=object)
        target = np.asarray(y)
        pooled = columns.copy()
        for index in range(columns.shape[1]):
            kept = _frequent(columns[:, index].tolist(), self.min_count)
            pooled[:, index] = [value if value in kept else OTHER for value in columns[:, index].tolist()]
        classes = np.unique(target) if self.task == "classification" else None
        kind = "continuous" if classes is None else "binary" if len(classes) == 2 else "multiclass"
        encoder = TargetEncoder(target_type=kind, smooth="auto", cv=self._splitter(target, classes))
        trained = np.asarray(encoder.fit_transform(pooled, target), dtype=np.float64)
        width = len(encoder.classes_) if kind == "multiclass" else 1
        prior = np.atleast_1d(np.asarray(encoder.target_mean_, dtype=np.float64))
        tables = []
        for index, categories in enumerate(encoder.categories_):
            values = np.stack(list(encoder.encodings_[index * width : (index + 1) * width]), axis=1)
            names = [str(c) for c in categories.tolist()]
            default = values[names.index(OTHER)] if OTHER in names else prior
            keep = [position for position, name in enumerate(names) if name != OTHER]
            tables.append(_table([names[p] for p in keep], values[keep], default))
        self.classes_ = list(encoder.classes_) if kind == "multiclass" else None
        if self.scale:
            tables, trained = self._standardize(tables, trained)
        self.tables_ = tables
        self.n_features_in_ = columns.shape[1]
        return trained.astype(np.float32)

    def _splitter(self, target: np.ndarray, classes: np.ndarray | None) -> Any:
        if self.groups is not None:
            codes = np.unique(np.asarray(self.groups).astype(str), return_inverse=True)[1]
            count = int(codes.max()) + 1 if len(codes) else 0
            if count >= 2:
                splitter = GroupKFold(n_splits=min(self.folds, count), shuffle=True, random_state=self.seed)
                return list(splitter.split(np.zeros(len(codes)), groups=codes))
        folds = max(2, min(self.folds, len(target)))
        if classes is not None:
            smallest = min(Counter(target.tolist()).values())
            if smallest >= folds:
                return StratifiedKFold(n_splits=folds, shuffle=True, random_state=self.seed)
        return KFold(n_splits=folds, shuffle=True, random_state=self.seed)


ENCODERS: dict[str, type[CategoryTable]] = {"frequency": FrequencyEncoding, "target": TargetEncoding}


def give_groups(preprocessing: Any, groups: Any) -> None:
    """Tell the unfitted cross-fitted transformers of a preprocessing Pipeline the rows' groups."""
    for _, step in getattr(preprocessing, "steps", []):
        for _, transformer, _ in getattr(step, "transformers", []):
            if getattr(transformer, "cross_fitted", False):
                transformer.set_params(groups=np.asarray(groups))


def has_cross_fitted(preprocessing: Any) -> bool:
    """Whether an unfitted preprocessing Pipeline holds a cross-fitted transformer (a target encoding)."""
    return any(
        getattr(transformer, "cross_fitted", False)
        for _, step in getattr(preprocessing, "steps", [])
        for _, transformer, _ in getattr(step, "transformers", [])
    )


def cross_fitted_columns(preprocessing: Any) -> list[slice]:
    """The output columns of a fitted preprocessing Pipeline whose training values are out of fold."""
    found: list[slice] = []
    for _, step in getattr(preprocessing, "steps", []):
        for name, transformer, _ in getattr(step, "transformers_", []):
            if getattr(transformer, "cross_fitted", False):
                found.append(step.output_indices_[name])
    return found
