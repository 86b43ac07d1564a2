"""The scikit-learn pipeline a recipe describes: the graph's features (GraphFeatures) and the estimator.

Derived features, then per kind: impute and scale, date parts, rare categories and one-hot (or a
frequency or target encoding, or the position in a declared order), text words; each piece has a
registered skl2onnx converter, so the same fitted steps become the model's ONNX graph.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
from sklearn.calibration import CalibratedClassifierCV
from sklearn.compose import ColumnTransformer
from sklearn.impute import SimpleImputer
from sklearn.model_selection import StratifiedKFold
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, RobustScaler, StandardScaler

from mlpack.errors import DataError
from mlpack.estimators import EstimatorSpec, decision
from mlpack.features.categories import RareCategories
from mlpack.features.dates import DateParts
from mlpack.features.derived import DerivedFeatures
from mlpack.features.encodings import CategoryTable, FrequencyEncoding, TargetEncoding
from mlpack.features.graph import GraphFeatures
from mlpack.features.ordinal import OrdinalCategories
from mlpack.features.target import TransformedTarget
from mlpack.features.text import TextWords, stop_words

if TYPE_CHECKING:
    from mlpack.training.recipe import Recipe


CALIBRATION_FOLDS = 5  # calibration and a chosen threshold fit on 4/5, check on 1/5 (scikit-learn's default)

_SCALERS: dict[str, Callable[[], Any]] = {"standard": StandardScaler, "robust": RobustScaler}


def _numeric_steps(recipe: Recipe, spec: EstimatorSpec) -> list[tuple[str, Any]]:
    """Impute, then scale: [preprocessing].scale, where "auto" scales only scale-sensitive estimators."""
    prep = recipe.preprocessing
    imputer = SimpleImputer(strategy=prep.numeric_impute, fill_value=prep.numeric_fill_value)
    steps: list[tuple[str, Any]] = [("impute", imputer)]
    scale = _scale(recipe, spec)
    if scale != "none":
        steps.append(("scale", _SCALERS[scale]()))
    return steps


def _scale(recipe: Recipe, spec: EstimatorSpec) -> str:
    prep = recipe.preprocessing
    return ("standard" if spec.scaled else "none") if prep.scale == "auto" else prep.scale


def _encoder(recipe: Recipe, encoding: str, spec: EstimatorSpec) -> CategoryTable:
    """[features].encoding "frequency" or "target": a table per field, standardized where numbers are scaled."""
    prep, scale = recipe.preprocessing, _scale(recipe, spec) != "none"
    if encoding == "frequency":
        return FrequencyEncoding(prep.encoding_min_count, scale=scale)
    return TargetEncoding(recipe.task, prep.encoding_min_count, prep.target_folds, recipe.evaluation.seed, scale=scale)


def derived_columns(recipe: Recipe) -> dict[str, str]:
    """Derived feature name → the pipeline column holding it (never an input's name)."""
    taken = set(recipe.input_names.values())
    columns = {}
    for name in recipe.features.derived:
        column = name if name not in taken else f"{name}_derived"
        taken.add(column)
        columns[name] = column
    return columns


def target_opset(recipe: Recipe, spec: EstimatorSpec) -> int | dict[str, int]:
    """The opsets the export writes: [export].target_opset, and ai.onnx.ml when the estimator's converter needs one."""
    if spec.ml_opset is not None:
        return {"": recipe.target_opset, "ai.onnx.ml": spec.ml_opset}
    return recipe.target_opset


def graph_inputs(recipe: Recipe) -> list[tuple[str, str]]:
    """The graph's inputs in order: (ONNX input name, kind), one per field a feature reads."""
    kinds = {"number": "numeric", "category": "categorical", "date": "datetime", "text": "text"}
    features = recipe.features
    return [(recipe.input_names[path], kinds[features.input_kind(path)]) for path in features.inputs]


def build_pipeline(recipe: Recipe, estimator: Any, spec: EstimatorSpec) -> Pipeline:
    """The estimator behind `GraphFeatures`: the preprocessing of the README and the feature
    engineering of mlpack.features, fitted in scikit-learn and computed by its ONNX graph, so the
    estimator trains on the values the shipped model feeds it (features/graph.py says why)."""
    return Pipeline([("features", graph_features(recipe, spec)), ("estimator", final(recipe, estimator))])


def graph_features(recipe: Recipe, spec: EstimatorSpec) -> GraphFeatures:
    """The pipeline's first step, unfitted: the same for every params of one estimator class."""
    preprocessing = preprocessing_pipeline(recipe, spec)
    return GraphFeatures(preprocessing, graph_inputs(recipe), target_opset(recipe, spec))


def final(recipe: Recipe, estimator: Any) -> Any:
    """The pipeline's last step: the estimator, stopping early on a validation set, calibrated, deciding
    at its threshold ([estimator]), inside the target transform when there is one. The search's trials
    fit this same step, so what they score is what ships."""
    section, seed = recipe.estimator, recipe.evaluation.seed
    model = estimator
    stopping = section.early_stopping
    if stopping is not None and recipe.spec.early_stopping == "native":  # scikit-learn's own validation split
        native = {"n_iter_no_change": stopping.rounds, "validation_fraction": stopping.validation_fraction}
        model.set_params(**native, **({"early_stopping": True} if "early_stopping" in model.get_params() else {}))
    elif stopping is not None:
        wrapper = decision.StopsEarlyClassifier if recipe.classification else decision.StopsEarlyRegressor
        model = wrapper(model, stopping.rounds, stopping.validation_fraction, seed)
    if section.calibration:
        folds = StratifiedKFold(CALIBRATION_FOLDS, shuffle=True, random_state=seed)
        model = CalibratedClassifierCV(model, method=section.calibration, cv=folds, ensemble=False)
    if section.decides:
        threshold = 0.5 if math.isnan(section.threshold) else section.threshold
        model = decision.DecisionThreshold(
            model, threshold, section.threshold_metric, recipe.positive, CALIBRATION_FOLDS, seed
        )
    if recipe.features.target_transform:
        return TransformedTarget(model, recipe.features.target_transform)
    return model


def preprocessing_pipeline(recipe: Recipe, spec: EstimatorSpec) -> Pipeline:
    """Derived features, then per kind: impute and scale, date parts, rare categories and one-hot (or a
    frequency or target encoding, or the position in a declared order), text TF-IDF; each piece has a
    registered skl2onnx converter."""
    features, input_names, prep = recipe.features, recipe.input_names, recipe.preprocessing
    steps: list[tuple[str, Any]] = []
    derived = derived_columns(recipe)
    if features.derived:
        kinds = {path: features.input_kind(path) for path in features.inputs}
        steps.append(("derive", DerivedFeatures(dict(features.derived), kinds, {**input_names, **derived})))
    transformers: list[tuple[str, Any, Any]] = []
    numeric = [input_names[p] for p in features.numeric] + list(derived.values())
    if numeric:
        transformers.append(("numeric", Pipeline(_numeric_steps(recipe, spec)), numeric))
    if features.datetime:
        date_steps = [("parts", DateParts()), *_numeric_steps(recipe, spec)]
        transformers.append(("datetime", Pipeline(date_steps), [input_names[p] for p in features.datetime]))
    encodings = {p: features.encoding.get(p, "onehot") for p in features.categorical if p not in features.ordinal}
    one_hot = [input_names[p] for p, encoding in encodings.items() if encoding == "onehot"]
    if one_hot:
        # Missing categories arrive as their own value (MISSING_CATEGORY), so no imputer is needed.
        encoder = Pipeline(
            [
                ("rare", RareCategories(recipe.preprocessing.max_categories)),
                ("onehot", OneHotEncoder(handle_unknown="ignore", sparse_output=False)),
            ]
        )
        transformers.append(("categorical", encoder, one_hot))
    for kind in ("frequency", "target"):  # one number per field (per class for "target" of a multiclass target)
        encoded = [input_names[p] for p, encoding in encodings.items() if encoding == kind]
        if encoded:
            transformers.append((kind, _encoder(recipe, kind, spec), encoded))
    if features.ordinal:  # a position in the declared order: a number, imputed and scaled as numbers are
        order = [("order", OrdinalCategories(list(features.ordinal.values()))), *_numeric_steps(recipe, spec)]
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


def check_derived(recipe: Recipe, train_frame: pd.DataFrame) -> None:
    """A derived feature missing in every training document cannot be learned from: name it (exit 1)."""
    features = recipe.features
    if not features.derived:
        return
    derive = DerivedFeatures(
        dict(features.derived),
        {path: features.input_kind(path) for path in features.inputs},
        {**recipe.input_names, **derived_columns(recipe)},
    )
    values = derive.fit_transform(train_frame)
    for name, column in derived_columns(recipe).items():
        if values[column].isna().all():
            raise DataError(
                f"derived feature '{name}' = {features.derived[name]!r} is missing (not a finite number) "
                f"in all {len(values)} training documents: check the fields it reads and the operations "
                "(division by zero, log of 0 or of negative numbers)"
            )


def frame(columns: dict[str, np.ndarray], input_names: dict[str, str]) -> pd.DataFrame:
    return pd.DataFrame({input_names[path]: values for path, values in columns.items()})
