"""Pipeline assembly, the seeded split, fitting, metrics and quality gates."""

from __future__ import annotations

import dataclasses
import math
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from sklearn import metrics as skm
from sklearn.compose import ColumnTransformer
from sklearn.exceptions import ConvergenceWarning
from sklearn.impute import SimpleImputer
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, RobustScaler, StandardScaler

from mlpack import filters
from mlpack.config import Config, Task
from mlpack.errors import ConfigError, DataError, ExternalError, QualityGateError
from mlpack.estimators import EstimatorSpec, fit_errors, has_probabilities, make_estimator
from mlpack.features.categories import RareCategories
from mlpack.features.dates import DateParts
from mlpack.features.derived import DerivedFeatures
from mlpack.features.graph import GraphConversionError, GraphFeatures
from mlpack.features.labels import class_names as class_names  # the class helpers, re-exported
from mlpack.features.labels import class_value as class_value
from mlpack.features.labels import with_class_weight_labels as with_class_weight_labels
from mlpack.features.ordinal import OrdinalCategories
from mlpack.features.target import TransformedTarget
from mlpack.features.text import NoWordsError, TextWords
from mlpack.training import splits
from mlpack.validate import Dataset


@dataclass(frozen=True)
class Metric:
    task: Task
    higher_is_better: bool
    # (true values, predicted labels or values, class probabilities or None, classes) -> score
    score: Callable[[np.ndarray, np.ndarray, np.ndarray | None, list[Any]], float]
    uses_probabilities: bool = False  # only these need predict_proba (the model card skips it otherwise)


def _roc_auc(y: np.ndarray, _pred: np.ndarray, proba: np.ndarray | None, classes: list[Any]) -> float:
    assert proba is not None
    if len(classes) == 2:
        return float(skm.roc_auc_score(y == classes[1], proba[:, 1]))
    return float(skm.roc_auc_score(y, proba, multi_class="ovr", average="macro", labels=classes))


METRICS: dict[str, Metric] = {
    "accuracy": Metric("classification", True, lambda y, p, _, __: float(skm.accuracy_score(y, p))),
    "balanced_accuracy": Metric("classification", True, lambda y, p, _, __: float(skm.balanced_accuracy_score(y, p))),
    "f1_macro": Metric("classification", True, lambda y, p, _, __: float(skm.f1_score(y, p, average="macro"))),
    "precision_macro": Metric(
        "classification", True, lambda y, p, _, __: float(skm.precision_score(y, p, average="macro", zero_division=0))
    ),
    "recall_macro": Metric("classification", True, lambda y, p, _, __: float(skm.recall_score(y, p, average="macro"))),
    "roc_auc": Metric("classification", True, _roc_auc, uses_probabilities=True),
    "log_loss": Metric(
        "classification", False, lambda y, _, pr, c: float(skm.log_loss(y, pr, labels=c)), uses_probabilities=True
    ),
    "r2": Metric("regression", True, lambda y, p, _, __: float(skm.r2_score(y, p))),
    "rmse": Metric("regression", False, lambda y, p, _, __: float(skm.root_mean_squared_error(y, p))),
    "mae": Metric("regression", False, lambda y, p, _, __: float(skm.mean_absolute_error(y, p))),
}

DEFAULT_METRICS: dict[Task, list[str]] = {
    "classification": ["accuracy", "f1_macro", "roc_auc"],
    "regression": ["r2", "rmse", "mae"],
}


@dataclass
class TrainedModel:
    pipeline: Pipeline
    spec: EstimatorSpec
    metrics: dict[str, float]
    classes: list[Any] | None
    train_rows: int
    train_columns: dict[str, np.ndarray]  # the training split keyed by feature path (metadata: categories, missing)
    train_target: np.ndarray
    train_frame: pd.DataFrame  # the training split as the pipeline sees it (columns = ONNX input names)
    test_frame: pd.DataFrame  # the test split as the pipeline sees it (columns = ONNX input names)
    test_columns: dict[str, np.ndarray]  # the same rows keyed by feature path, as the runtime sees them
    test_target: np.ndarray
    params: dict[str, Any] = field(default_factory=dict)  # the estimator's params as fitted


def metric_names(config: Config) -> list[str]:
    """The metrics to compute, checked against the task and the estimator; gates must name one of them."""
    task = config.model.task
    estimator, _ = make_estimator(config.estimator, task)
    probabilities = task == "classification" and has_probabilities(estimator)
    names = config.evaluation.metrics or [
        name for name in DEFAULT_METRICS[task] if probabilities or not METRICS[name].uses_probabilities
    ]
    for name in [*names, *config.evaluation.gates]:
        metric = METRICS.get(name)
        if metric is None:
            known = ", ".join(n for n, m in METRICS.items() if m.task == task)
            raise ConfigError(f"[evaluation] unknown metric '{name}' (known for {task}: {known})")
        if metric.task != task:
            raise ConfigError(f"[evaluation] metric '{name}' is for {metric.task}, but [model].task is {task}")
        if metric.uses_probabilities and not probabilities:
            raise ConfigError(
                f"[evaluation] metric '{name}' needs class probabilities, which "
                f"{config.estimator.class_path.rsplit('.', 1)[-1]} with these params does not give"
            )
    return list(dict.fromkeys([*names, *config.evaluation.gates]))


_SCALERS: dict[str, Callable[[], Any]] = {"standard": StandardScaler, "robust": RobustScaler}


def _numeric_steps(config: Config, spec: EstimatorSpec) -> list[tuple[str, Any]]:
    """Impute, then scale: [preprocessing].scale, where "auto" scales only scale-sensitive estimators."""
    prep = config.preprocessing
    imputer = SimpleImputer(strategy=prep.numeric_impute, fill_value=prep.numeric_fill_value)
    steps: list[tuple[str, Any]] = [("impute", imputer)]
    scale = ("standard" if spec.scaled else "none") if prep.scale == "auto" else prep.scale
    if scale != "none":
        steps.append(("scale", _SCALERS[scale]()))
    return steps


def derived_columns(config: Config, input_names: dict[str, str]) -> dict[str, str]:
    """Derived feature name → the pipeline column holding it (never an input's name)."""
    taken = set(input_names.values())
    columns = {}
    for name in config.features.derived:
        column = name if name not in taken else f"{name}_derived"
        taken.add(column)
        columns[name] = column
    return columns


def target_opset(config: Config, spec: EstimatorSpec) -> int | dict[str, int]:
    """The opsets the export writes: [export].target_opset, and ai.onnx.ml when the estimator's converter needs one."""
    if spec.ml_opset is not None:
        return {"": config.export.target_opset, "ai.onnx.ml": spec.ml_opset}
    return config.export.target_opset


def graph_inputs(config: Config, input_names: dict[str, str]) -> list[tuple[str, str]]:
    """The graph's inputs in order: (ONNX input name, kind), one per field a feature reads."""
    kinds = {"number": "numeric", "category": "categorical", "date": "datetime", "text": "text"}
    return [(input_names[path], kinds[config.features.input_kind(path)]) for path in config.features.inputs]


def build_pipeline(config: Config, input_names: dict[str, str], estimator: Any, spec: EstimatorSpec) -> Pipeline:
    """The estimator behind `GraphFeatures`: the preprocessing of the README and the feature
    engineering of mlpack.features, fitted in scikit-learn and computed by its ONNX graph, so the
    estimator trains on the values the shipped model feeds it (features/graph.py says why)."""
    return Pipeline([("features", graph_features(config, input_names, spec)), ("estimator", final(config, estimator))])


def graph_features(config: Config, input_names: dict[str, str], spec: EstimatorSpec) -> GraphFeatures:
    """The pipeline's first step, unfitted: the same for every params of one estimator class."""
    preprocessing = preprocessing_pipeline(config, input_names, spec)
    return GraphFeatures(preprocessing, graph_inputs(config, input_names), target_opset(config, spec))


def final(config: Config, estimator: Any) -> Any:
    """The pipeline's last step: the estimator, inside the target transform when there is one."""
    if config.features.target_transform:
        return TransformedTarget(estimator, config.features.target_transform)
    return estimator


def preprocessing_pipeline(config: Config, input_names: dict[str, str], spec: EstimatorSpec) -> Pipeline:
    """Derived features, then per kind: impute and scale, date parts, rare categories and one-hot (or the
    position in a declared order), text TF-IDF; each piece has a registered skl2onnx converter."""
    features = config.features
    steps: list[tuple[str, Any]] = []
    derived = derived_columns(config, input_names)
    if features.derived:
        kinds = {path: features.input_kind(path) for path in features.inputs}
        steps.append(("derive", DerivedFeatures(dict(features.derived), kinds, {**input_names, **derived})))
    transformers: list[tuple[str, Any, Any]] = []
    numeric = [input_names[p] for p in features.numeric] + list(derived.values())
    if numeric:
        transformers.append(("numeric", Pipeline(_numeric_steps(config, spec)), numeric))
    if features.datetime:
        date_steps = [("parts", DateParts()), *_numeric_steps(config, spec)]
        transformers.append(("datetime", Pipeline(date_steps), [input_names[p] for p in features.datetime]))
    one_hot = [input_names[p] for p in features.categorical if p not in features.ordinal]
    if one_hot:
        # Missing categories arrive as their own value (MISSING_CATEGORY), so no imputer is needed.
        encoder = Pipeline(
            [
                ("rare", RareCategories(config.preprocessing.max_categories)),
                ("onehot", OneHotEncoder(handle_unknown="ignore", sparse_output=False)),
            ]
        )
        transformers.append(("categorical", encoder, one_hot))
    if features.ordinal:  # a position in the declared order: a number, imputed and scaled as numbers are
        order = [("order", OrdinalCategories(list(features.ordinal.values()))), *_numeric_steps(config, spec)]
        transformers.append(("ordinal", Pipeline(order), [input_names[p] for p in features.ordinal]))
    for path in features.text:
        # A single column name (not a list): the vectorizer wants one string per document.
        words = TextWords(config.preprocessing.text_max_words, field=path)
        transformers.append((f"text_{input_names[path]}", words, input_names[path]))
    steps.append(("preprocess", ColumnTransformer(transformers, remainder="drop", sparse_threshold=0.0)))
    return Pipeline(steps)


def _check_derived(config: Config, train_frame: pd.DataFrame, input_names: dict[str, str]) -> None:
    """A derived feature missing in every training document cannot be learned from: name it (exit 1)."""
    if not config.features.derived:
        return
    features = config.features
    derive = DerivedFeatures(
        dict(features.derived),
        {path: features.input_kind(path) for path in features.inputs},
        {**input_names, **derived_columns(config, input_names)},
    )
    values = derive.fit_transform(train_frame)
    for name, column in derived_columns(config, input_names).items():
        if values[column].isna().all():
            raise DataError(
                f"derived feature '{name}' = {config.features.derived[name]!r} is missing (not a finite number) "
                f"in all {len(values)} training documents: check the fields it reads and the operations "
                "(division by zero, log of 0 or of negative numbers)"
            )


def frame(columns: dict[str, np.ndarray], input_names: dict[str, str]) -> pd.DataFrame:
    return pd.DataFrame({input_names[path]: values for path, values in columns.items()})


@dataclass
class Split:
    """The seeded train/test split; cross-validation and search only ever see the training part."""

    train_columns: dict[str, np.ndarray]
    train_target: np.ndarray
    train_weight: np.ndarray | None
    test_columns: dict[str, np.ndarray]
    test_target: np.ndarray
    train_keys: np.ndarray | None = None  # "time": ms since 1970, "group": the group, per training row


def split(config: Config, dataset: Dataset) -> Split:
    """[evaluation].split: random (stratified for classification), time, group or filter (training/splits.py)."""
    evaluation, keys = config.evaluation, None
    try:
        if evaluation.split in ("time", "group"):
            keys = splits.split_keys(evaluation.split, evaluation.split_field, dataset.split_values, dataset.ids)
            train_rows, test_rows = splits.holdout(evaluation.split, keys, evaluation.test_size, evaluation.seed)
        elif evaluation.split == "filter":
            test = filters.matching(evaluation.test_filter, dataset.split_values, dataset.rows)
            train_rows, test_rows = np.flatnonzero(~test), np.flatnonzero(test)
        else:
            stratify = dataset.target if config.model.task == "classification" else None
            train_rows, test_rows = splits.at_random(dataset.rows, evaluation.test_size, evaluation.seed, stratify)
    except ValueError as exc:
        raise DataError(f"cannot split {dataset.rows} documents into train and test: {exc}") from None
    if not len(train_rows) or not len(test_rows):
        empty = "training" if not len(train_rows) else "test"
        raise DataError(f'[evaluation].split = "{evaluation.split}" leaves the {empty} split empty')
    columns = dataset.columns()
    return Split(
        train_columns={path: values[train_rows] for path, values in columns.items()},
        train_target=dataset.target[train_rows],
        train_weight=dataset.weight[train_rows] if dataset.weight is not None else None,
        test_columns={path: values[test_rows] for path, values in columns.items()},
        test_target=dataset.target[test_rows],
        train_keys=keys[train_rows] if keys is not None else None,
    )


def score_all(pipeline: Pipeline, x: pd.DataFrame, y: np.ndarray, names: list[str]) -> dict[str, float]:
    """Every named metric of a fitted pipeline on (x, y); a metric undefined on these rows is NaN."""
    predicted = pipeline.predict(x)
    classification = METRICS[names[0]].task == "classification"
    probabilities = pipeline.predict_proba(x) if classification and has_probabilities(pipeline) else None
    classes = pipeline.classes_.tolist() if classification else []
    scores = {}
    for name in names:
        try:
            scores[name] = round(METRICS[name].score(y, predicted, probabilities, classes), 6)
        except ValueError:  # e.g. roc_auc on rows of a single class
            scores[name] = math.nan
    return scores


def train(
    config: Config,
    dataset: Dataset,
    input_names: dict[str, str],
    *,
    rows: Split | None = None,
    params: dict[str, Any] | None = None,
) -> TrainedModel:
    """Fit on the training split (with `params` over the configured ones, e.g. a search's best) and score on test."""
    classification = config.model.task == "classification"
    parts = rows if rows is not None else split(config, dataset)
    chosen = config.estimator.params if params is None else params
    if classification:
        chosen = with_class_weight_labels(chosen, parts.train_target, dataset, config)
    section = dataclasses.replace(config.estimator, params=chosen)
    estimator, spec = make_estimator(section, config.model.task, seed=config.evaluation.seed)
    names = metric_names(config)
    pipeline = build_pipeline(config, input_names, estimator, spec)
    fit_args = {"estimator__sample_weight": parts.train_weight} if parts.train_weight is not None else {}
    train_frame = frame(parts.train_columns, input_names)
    _check_derived(config, train_frame, input_names)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            pipeline.fit(train_frame, parts.train_target, **fit_args)
    except NoWordsError as exc:
        raise DataError(str(exc)) from None
    except GraphConversionError as exc:
        raise ExternalError(f"skl2onnx could not convert the preprocessing: {exc}") from None
    except fit_errors(spec) as exc:
        # scikit-learn validates params at fit time (InvalidParameterError is a ValueError).
        raise ConfigError(f"[estimator] {config.estimator.class_path} could not be trained: {exc}") from None
    test_frame = frame(parts.test_columns, input_names)
    scores = score_all(pipeline, test_frame, parts.test_target, names)
    return TrainedModel(
        pipeline=pipeline,
        spec=spec,
        metrics=scores,
        classes=pipeline.classes_.tolist() if classification else None,
        train_rows=len(parts.train_target),
        train_columns=parts.train_columns,
        train_target=parts.train_target,
        train_frame=train_frame,
        test_frame=test_frame,
        test_columns=parts.test_columns,
        test_target=parts.test_target,
        params=dict(config.estimator.params if params is None else params),
    )


def check_gates(metrics: dict[str, float], gates: dict[str, float], metadata: dict[str, Any] | None = None) -> None:
    """Gates are minimums for scores (accuracy) and maximums for errors (rmse)."""
    failures = []
    for name, limit in gates.items():
        value = metrics[name]
        higher = METRICS[name].higher_is_better
        if math.isnan(value) or (value < limit if higher else value > limit):
            relation = "at least" if higher else "at most"
            failures.append(f"  - {name} = {value:.6g}, the gate requires {relation} {limit:g}")
    if failures:
        details = "\n".join(["quality gates:", *failures])
        raise QualityGateError("quality gate failed", details=details, metadata=metadata)
