"""The seeded train/test split and the fit: a recipe and validated documents in, a scored model out."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from sklearn.pipeline import Pipeline

from mlpack.errors import ConfigError, DataError, ExternalError
from mlpack.estimators import EstimatorSpec, fit_errors, has_probabilities
from mlpack.estimators.predictions import predictions
from mlpack.features.graph import GraphConversionError, GraphFeatures, spans
from mlpack.features.labels import class_keys
from mlpack.features.labels import class_names as class_names  # the class helpers, re-exported
from mlpack.features.labels import class_value as class_value
from mlpack.features.pipeline import check_derived, frame
from mlpack.features.text import NoWordsError
from mlpack.training import splits
from mlpack.training.metrics import answers, scores_of
from mlpack.training.pipeline import build_pipeline
from mlpack.training.recipe import Recipe
from mlpack.training.spill import kept_in_a_file, kept_in_parts
from mlpack.validate import Dataset


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
    # scikit-learn's answers on test_frame, made once in training (pipeline.predict and, for a classifier
    # that has it, predict_proba): the metrics, the parity check and the card all read these.
    test_predicted: np.ndarray
    test_probabilities: np.ndarray | None
    params: dict[str, Any] = field(default_factory=dict)  # the estimator's params as fitted
    test_weight: np.ndarray | None = None  # [features].weight of the test rows: the metrics are weighted by it
    # scikit-learn's answers on train_frame, made in training from the features the estimator fitted on
    # when those are the graph's own (no cross-fitted columns): the parity check reads them. Else None.
    train_answers: tuple[np.ndarray, np.ndarray | None] | None = None


@dataclass
class Split:
    """The seeded train/test split; cross-validation and search only ever see the training part."""

    train_columns: dict[str, np.ndarray]
    train_target: np.ndarray
    train_weight: np.ndarray | None
    test_columns: dict[str, np.ndarray]
    test_target: np.ndarray
    train_keys: np.ndarray | None = None  # "time": ms since 1970, "group": the group, per training row
    test_ids: Sequence[Any] = field(default_factory=list)  # the test documents' _ids (the predictions artifact)
    test_weight: np.ndarray | None = None  # [features].weight of the test documents: the metrics weigh by it
    rows: tuple[np.ndarray, np.ndarray] | None = None  # the dataset's row numbers of the train and test parts


# Fewer test documents than this give no score to trust (one document: r² is undefined, accuracy is 0 or 1).
MIN_TEST_ROWS = 5


def split(recipe: Recipe, dataset: Dataset) -> Split:
    """[evaluation].split: random (stratified for classification), time, group or filter (training/splits.py)."""
    evaluation = recipe.evaluation
    try:
        chosen = splits.holdout(evaluation, dataset, stratify=dataset.target if recipe.classification else None)
    except ValueError as exc:
        raise DataError(f"cannot split {dataset.rows} documents into train and test: {exc}") from None
    train_rows, test_rows, keys = chosen.train, chosen.test, chosen.keys
    if not len(train_rows) or not len(test_rows):
        empty = "training" if not len(train_rows) else "test"
        raise DataError(f'[evaluation].split = "{evaluation.split}" leaves the {empty} split empty')
    if len(test_rows) < MIN_TEST_ROWS:
        raise DataError(
            f"the test split holds {len(test_rows)} of {dataset.rows} documents, fewer than {MIN_TEST_ROWS}: no metric "
            f'on it would mean anything; add documents, or raise [evaluation].test_size (split "{evaluation.split}")'
        )
    columns = dataset.columns()
    return Split(
        train_columns={path: values[train_rows] for path, values in columns.items()},
        train_target=dataset.target[train_rows],
        train_weight=dataset.weight[train_rows] if dataset.weight is not None else None,
        test_columns={path: values[test_rows] for path, values in columns.items()},
        test_target=dataset.target[test_rows],
        train_keys=keys[train_rows] if keys is not None else None,
        test_ids=_taken(dataset.ids, test_rows),
        test_weight=dataset.weight[test_rows] if dataset.weight is not None else None,
        rows=(train_rows, test_rows),
    )


def _taken(ids: Sequence[Any], rows: np.ndarray) -> Sequence[Any]:
    """The ids at `rows`: a loaded Column's own `take` (ObjectIds stay 12 bytes each), or a list's items."""
    take = getattr(ids, "take", None)
    return take(rows) if take is not None else [ids[row] for row in rows.tolist()]


def with_classes(recipe: Recipe, dataset: Dataset) -> Recipe:
    """A classifier's recipe with the data's classes settled: how mlpack.toml may name each (the
    recipe's class_keys, which class_weight keys are read by), and a threshold's class:
    [estimator].positive_class (a class's text, "true" or "1", or its [features].labels name), else the
    second class (scikit-learn's)."""
    if not recipe.classification:
        return recipe
    codes = np.unique(dataset.target).tolist()
    section, positive = recipe.estimator, recipe.positive
    if section.decides and len(codes) != 2:
        raise DataError(f"[estimator].threshold is for two classes; target '{recipe.features.target}' has {len(codes)}")
    keys = class_keys(codes, dataset.target_kind, recipe.features.labels)
    if section.decides and not section.positive_class:
        positive = codes[1]
    elif section.decides:
        if section.positive_class not in keys:
            known = ", ".join(keys)
            raise ConfigError(
                f"[estimator].positive_class {section.positive_class!r} is not a class of the target ({known})"
            )
        positive = keys[section.positive_class]
    return dataclasses.replace(recipe, class_keys=keys, positive=positive)


with_positive = with_classes  # its name before class_weight keys were settled with the positive class


def train(
    recipe: Recipe,
    dataset: Dataset,
    *,
    rows: Split | None = None,
    params: dict[str, Any] | None = None,
) -> TrainedModel:
    """Fit on the training split (with `params` over the configured ones, e.g. a search's best) and score on test."""
    parts = rows if rows is not None else split(recipe, dataset)
    configured = recipe.estimator.params if params is None else params
    if recipe.classification and recipe.class_keys is None:
        recipe = with_classes(recipe, dataset)  # class_weight keys are read by the data's classes
    estimator, spec = recipe.make(configured)
    pipeline = build_pipeline(recipe, estimator)
    fit_args: dict[str, Any] = (
        {"estimator__sample_weight": parts.train_weight} if parts.train_weight is not None else {}
    )
    feature_args: dict[str, Any] = {}
    if recipe.evaluation.split == "group" and parts.train_keys is not None:
        feature_args["groups"] = parts.train_keys  # a target encoding's folds keep each group whole
    check_derived(recipe.feature_spec, frame(parts.train_columns, recipe.input_names))
    try:
        # A ConvergenceWarning is the build's to say.
        trained_answers = _fit(pipeline, parts, recipe.input_names, fit_args, feature_args, recipe.classification)
    except NoWordsError as exc:
        raise DataError(str(exc)) from None
    except GraphConversionError as exc:
        raise ExternalError(f"skl2onnx could not convert the preprocessing: {exc}") from None
    except fit_errors(spec) as exc:
        # scikit-learn validates params at fit time (InvalidParameterError is a ValueError).
        raise ConfigError(f"[estimator] {recipe.estimator.class_path} could not be trained: {exc}") from None
    train_frame = frame(parts.train_columns, recipe.input_names)
    test_frame = frame(parts.test_columns, recipe.input_names)
    # The test rows' answers, once: the metrics, the parity check and the card all read these.
    predicted, probabilities = answers(pipeline, test_frame, classification=recipe.classification)
    pipeline.steps[0][1].unload()  # made again when the pipeline next runs (the card's few thousand rows)
    scores = scores_of(pipeline, parts.test_target, predicted, probabilities, list(recipe.metrics), parts.test_weight)
    undefined = [name for name, value in scores.items() if math.isnan(value)]
    if undefined:  # a model whose score cannot be computed has not been evaluated: never ship it as "nan"
        raise DataError(
            f"{', '.join(undefined)} cannot be computed on the test split of {len(parts.test_target)} documents "
            "(a class absent from it, or every true value the same): add documents, raise [evaluation].test_size, "
            "or choose other [evaluation].metrics"
        )
    return TrainedModel(
        pipeline=pipeline,
        spec=spec,
        metrics=scores,
        classes=pipeline.classes_.tolist() if recipe.classification else None,
        train_rows=len(parts.train_target),
        train_columns=parts.train_columns,
        train_target=parts.train_target,
        train_frame=train_frame,
        test_frame=test_frame,
        test_columns=parts.test_columns,
        test_target=parts.test_target,
        params=dict(configured),
        test_weight=parts.test_weight,
        test_predicted=predicted,
        test_probabilities=probabilities,
        train_answers=trained_answers,
    )


def _fit(
    pipeline: Pipeline,
    parts: Split,
    input_names: dict[str, str],
    fit_args: dict[str, Any],
    feature_args: dict[str, Any],
    classification: bool = False,
) -> tuple[np.ndarray, np.ndarray | None] | None:
    """`pipeline.fit` on the training rows, in two steps: the graph's features (the pipeline's first step,
    fitted and applied as Pipeline.fit would), then the estimator on them (Pipeline.fit with that step as
    passthrough). The split's columns are read by neither while they wait (training/spill.py): the test
    rows' during both; the training rows', once the preprocessing is fitted, from their file a chunk
    at a time as the graph makes their features (never whole beside the features).

    Returns the fitted pipeline's answers on the training rows (`answers`), made from those features
    while they exist, where they are what the pipeline's `transform` gives the rows (no cross-fitted
    columns): the parity check needs them, and would otherwise run the graph over every row again."""
    features: GraphFeatures = pipeline.steps[0][1]
    rows = len(parts.train_target)
    with kept_in_a_file(parts.test_columns):
        crossed = features.fit_crossed(frame(parts.train_columns, input_names), parts.train_target, **feature_args)
        with kept_in_parts(parts.train_columns, spans(rows)) as read:
            made = features.transform_parts(rows, (frame(part, input_names) for part in read()))
            features.unload()  # the session's arena, as large as its largest run: not held while the estimator fits
            trained_on = features.with_crossed(made, crossed)
            del made
            pipeline.set_params(features="passthrough")
            try:
                pipeline.fit(trained_on, parts.train_target, **fit_args)
            finally:
                pipeline.set_params(features=features)
            known = None
            if not crossed:
                wanted = classification and has_probabilities(pipeline)
                known = _answers(pipeline.steps[-1][1], trained_on, wanted)
            del trained_on  # before the columns come back: the estimator keeps no reference to its features
    return known


ANSWER_CHUNK = 65_536  # training rows answered at a time: the estimator's own arrays stay this many rows


def _answers(estimator: Any, features: np.ndarray, probabilities: bool) -> tuple[np.ndarray, np.ndarray | None]:
    """`predictions(estimator, features)` a chunk of rows at a time (each row's answer is its own), so
    the estimator's temporary arrays of every row are not made beside the features."""
    rows = len(features)
    labels: np.ndarray | None = None
    given: np.ndarray | None = None
    for start in range(0, rows, ANSWER_CHUNK):
        # Each chunk's answers written into the whole arrays at once: the chunks and their join are
        # never both held (a million rows' labels and probabilities, beside the features).
        chunk, chunk_probabilities = predictions(
            estimator, features[start : start + ANSWER_CHUNK], probabilities=probabilities
        )
        if labels is None:
            labels = np.empty((rows, *chunk.shape[1:]), dtype=chunk.dtype)
            if chunk_probabilities is not None:
                given = np.empty((rows, *chunk_probabilities.shape[1:]), dtype=chunk_probabilities.dtype)
        labels[start : start + len(chunk)] = chunk
        if given is not None and chunk_probabilities is not None:
            given[start : start + len(chunk)] = chunk_probabilities
    assert labels is not None
    return labels, given
