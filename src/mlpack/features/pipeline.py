"""The graph's features a `FeatureSpec` describes: the preprocessing pipeline and its `GraphFeatures`.

Derived features, then per kind: impute and scale, date parts, rare categories and one-hot (or a
frequency or target encoding, or the position in a declared order), text words; each piece has a
registered skl2onnx converter, so the same fitted steps become the model's ONNX graph. The estimator
that goes after them is training's (training/pipeline.py).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import pandas as pd
from sklearn.compose import ColumnTransformer
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, RobustScaler

from mlpack.errors import DataError
from mlpack.features.categories import RareCategories
from mlpack.features.date_parts import DateParts
from mlpack.features.derived import DerivedFeatures
from mlpack.features.encodings import CategoryTable, FrequencyEncoding, TargetEncoding
from mlpack.features.graph import GraphFeatures
from mlpack.features.impute import MedianImputer
from mlpack.features.ordinal import OrdinalCategories
from mlpack.features.scaling import ColumnScaler
from mlpack.features.sections import FeaturesSection, PreprocessingSection
from mlpack.features.text import TextWords, stop_words

# "standard": StandardScaler's statistics, fitted a column at a time (features/scaling.py says why).
_SCALERS: dict[str, Callable[[], Any]] = {"standard": ColumnScaler, "robust": RobustScaler}
_GRAPH_KINDS = {"number": "numeric", "category": "categorical", "date": "datetime", "text": "text"}


@dataclass(frozen=True)
class FeatureSpec:
    """Everything the graph's features are made of, settled once before any data is read
    (training/recipe.py): the two tables, and the five facts of the rest of the recipe they depend on."""

    features: FeaturesSection
    preprocessing: PreprocessingSection
    input_names: dict[str, str]  # feature path → ONNX input name (names.onnx_input_names)
    scale: Literal["standard", "robust", "none"]  # [preprocessing].scale, "auto" resolved for the estimator
    task: str  # a target encoding encodes by the task's statistic (a mean, or one number per class)
    seed: int  # [evaluation].seed: a target encoding's folds
    opset: int | dict[str, int]  # the opsets the graph is written in (ai.onnx.ml too when the estimator needs it)
    # The dtype the estimator is given the graph's features in: "float32" for one whose fit keeps them
    # float32 (the catalogue's `float32`), else "float64" (features/graph.py says why).
    dtype: Literal["float32", "float64"] = "float64"


def _numeric_steps(spec: FeatureSpec) -> list[tuple[str, Any]]:
    """Impute, then scale ([preprocessing].scale)."""
    prep = spec.preprocessing
    steps: list[tuple[str, Any]] = [
        ("impute", MedianImputer(strategy=prep.numeric_impute, fill_value=prep.numeric_fill_value))
    ]
    if spec.scale != "none":
        steps.append(("scale", _SCALERS[spec.scale]()))
    return steps


def _encoder(spec: FeatureSpec, encoding: str) -> CategoryTable:
    """[features].encoding "frequency" or "target": a table per field, standardized where numbers are scaled."""
    prep, scale = spec.preprocessing, spec.scale != "none"
    if encoding == "frequency":
        return FrequencyEncoding(prep.encoding_min_count, scale=scale)
    return TargetEncoding(spec.task, prep.encoding_min_count, prep.target_folds, spec.seed, scale=scale)


def derived_columns(spec: FeatureSpec) -> dict[str, str]:
    """Derived feature name → the pipeline column holding it (never an input's name)."""
    taken = set(spec.input_names.values())
    columns = {}
    for name in spec.features.derived:
        column = name if name not in taken else f"{name}_derived"
        taken.add(column)
        columns[name] = column
    return columns


def graph_inputs(spec: FeatureSpec) -> list[tuple[str, str]]:
    """The graph's inputs in order: (ONNX input name, kind), one per field a feature reads."""
    features = spec.features
    return [(spec.input_names[path], _GRAPH_KINDS[features.input_kind(path)]) for path in features.inputs]


def graph_features(spec: FeatureSpec) -> GraphFeatures:
    """The pipeline's first step, unfitted: the same for every params of one estimator class."""
    return GraphFeatures(preprocessing_pipeline(spec), graph_inputs(spec), spec.opset, spec.dtype)


def _derive(spec: FeatureSpec) -> DerivedFeatures:
    features = spec.features
    kinds = {path: features.input_kind(path) for path in features.inputs}
    return DerivedFeatures(dict(features.derived), kinds, {**spec.input_names, **derived_columns(spec)})


def preprocessing_pipeline(spec: FeatureSpec) -> Pipeline:
    """Derived features, then per kind: impute and scale, date parts, rare categories and one-hot (or a
    frequency or target encoding, or the position in a declared order), text TF-IDF; each piece has a
    registered skl2onnx converter."""
    features, input_names, prep = spec.features, spec.input_names, spec.preprocessing
    steps: list[tuple[str, Any]] = []
    derived = derived_columns(spec)
    if features.derived:
        steps.append(("derive", _derive(spec)))
    transformers: list[tuple[str, Any, Any]] = []
    numeric = [input_names[p] for p in features.numeric] + list(derived.values())
    if numeric:
        transformers.append(("numeric", Pipeline(_numeric_steps(spec)), numeric))
    if features.datetime:
        date_steps = [("parts", DateParts()), *_numeric_steps(spec)]
        transformers.append(("datetime", Pipeline(date_steps), [input_names[p] for p in features.datetime]))
    encodings = {p: features.encoding.get(p, "onehot") for p in features.categorical if p not in features.ordinal}
    one_hot = [input_names[p] for p, encoding in encodings.items() if encoding == "onehot"]
    if one_hot:
        # Missing categories arrive as their own value (MISSING_CATEGORY), so no imputer is needed.
        encoder = Pipeline(
            [
                ("rare", RareCategories(prep.max_categories)),
                ("onehot", OneHotEncoder(handle_unknown="ignore", sparse_output=False)),
            ]
        )
        transformers.append(("categorical", encoder, one_hot))
    for kind in ("frequency", "target"):  # one number per field (per class for "target" of a multiclass target)
        encoded = [input_names[p] for p, encoding in encodings.items() if encoding == kind]
        if encoded:
            transformers.append((kind, _encoder(spec, kind), encoded))
    if features.ordinal:  # a position in the declared order: a number, imputed and scaled as numbers are
        order = [("order", OrdinalCategories(list(features.ordinal.values()))), *_numeric_steps(spec)]
        transformers.append(("ordinal", Pipeline(order), [input_names[p] for p in features.ordinal]))
    for path in features.text:
        # A single column name (not a list): the vectorizer wants one string per document.
        words = TextWords(
            prep.text_max_words,
            field=path,
            ngrams=prep.text_ngrams,
            stop_words=stop_words(prep.text_stop_words),
            min_df=prep.text_min_df,
            chars=tuple(prep.text_chars),
        )
        transformers.append((f"text_{input_names[path]}", words, input_names[path]))
    steps.append(("preprocess", ColumnTransformer(transformers, remainder="drop", sparse_threshold=0.0)))
    return Pipeline(steps)


def check_derived(spec: FeatureSpec, train_frame: pd.DataFrame) -> None:
    """A derived feature missing in every training document cannot be learned from: name it (exit 1)."""
    features = spec.features
    if not features.derived:
        return
    values = _derive(spec).fit_transform(train_frame)
    for name, column in derived_columns(spec).items():
        if values[column].isna().all():
            raise DataError(
                f"derived feature '{name}' = {features.derived[name]!r} is missing (not a finite number) "
                f"in all {len(values)} training documents: check the fields it reads and the operations "
                "(division by zero, log of 0 or of negative numbers)"
            )


def frame(columns: dict[str, np.ndarray], input_names: dict[str, str]) -> pd.DataFrame:
    """Columns keyed by feature path as the pipeline reads them: keyed by ONNX input name. Not copied:
    the frame shares the split's arrays (pandas would consolidate the floats into a new block, a copy).
    Strings stay the object arrays they are: pandas 3 would store them as its string dtype (a copy in
    pyarrow), and every read of such a column (the graph's feeds, a chunk at a time) would make a new
    Python string per row of the whole column."""
    return pd.DataFrame({input_names[path]: _shared(values) for path, values in columns.items()}, copy=False)


def _shared(values: np.ndarray) -> Any:
    return pd.Series(values, dtype=object, copy=False) if values.dtype == object else values
