"""What a build holds while it trains and checks parity (issue 23, a million documents).

At a million documents each of these was megabytes to tens of megabytes of the build's peak: the
training rows' answers made in parts and then joined (both held beside the features), the graph's
onnxruntime session kept while the estimator fits (its arena), the exported model's session kept
through the drift baseline (its arena, sized by parity's largest run), the dataset's ids kept
though nothing reads them once split, StandardScaler's temporaries of the whole numbers' block
(the peak with SGD), the date parts' calendar arithmetic on every row at once and a derived
feature's intermediates kept by a reference cycle (the preprocessing's fit). The answers, the
statistics and the model stay what they were.
"""

from __future__ import annotations

import gc
import tracemalloc
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pytest
from skl2onnx import convert_sklearn
from skl2onnx.common.data_types import FloatTensorType
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

import mlpack.exported as exported_module
import mlpack.features.graph as graph
import mlpack.training.train as train_module
from mlpack.estimators.predictions import predictions
from mlpack.features.converters import register
from mlpack.features.date_parts import DateParts
from mlpack.features.dates import DATE_PARTS, date_parts
from mlpack.features.expressions import evaluate, parse_derived
from mlpack.features.impute import MedianImputer
from mlpack.features.ops import NumpyOps
from mlpack.features.pipeline import preprocessing_pipeline
from mlpack.features.scaling import ColumnScaler
from mlpack.runtime import MISSING_DATE, Model
from mlpack.source import collect
from mlpack.training.recipe import settle
from mlpack.validate import validate
from tests.helpers.documents import subscribers
from tests.helpers.training import config_for, export


def test_training_answers_are_written_into_one_array_each(monkeypatch: pytest.MonkeyPatch) -> None:
    rng = np.random.default_rng(0)
    features = rng.normal(size=(100_000, 4))
    estimator = LogisticRegression().fit(features, features[:, 0] > 0)
    monkeypatch.setattr(train_module, "ANSWER_CHUNK", 1_000)
    tracemalloc.start()
    try:
        labels, probabilities = train_module._answers(estimator, features, True)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert probabilities is not None
    answers = labels.nbytes + probabilities.nbytes
    # Joined from their parts, the answers were held twice (the parts, then the whole): here once, and a chunk.
    assert peak < 1.25 * answers, (peak, answers)
    expected_labels, expected_probabilities = predictions(estimator, features, probabilities=True)
    assert np.array_equal(labels, expected_labels) and labels.dtype == expected_labels.dtype
    assert probabilities.tobytes() == np.asarray(expected_probabilities).tobytes()


def test_an_unloaded_model_answers_the_same_from_a_new_session() -> None:
    documents = subscribers(200)
    exported = export(config_for("sklearn.linear_model.LogisticRegression", "classification"), documents)
    model = Model(exported.onnx_bytes, exported.metadata)
    before = model.predict_proba(documents[:50])
    first = model.session
    model.unload()
    assert model._session is None  # its arena goes with it
    assert model.predict_proba(documents[:50]) == before
    assert model.session is not first


def test_the_build_holds_no_onnx_session_while_the_estimator_fits_nor_after_parity(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    graphs: list[graph.GraphFeatures] = []
    transform_parts = graph.GraphFeatures.transform_parts

    def remembered(self: graph.GraphFeatures, rows: int, parts: Any) -> Any:
        graphs.append(self)
        return transform_parts(self, rows, parts)

    sessions_at_fit: list[Any] = []
    fit = LogisticRegression.fit

    def fitted(self: LogisticRegression, *args: Any, **kwargs: Any) -> Any:
        sessions_at_fit.extend(getattr(features, "_session", None) for features in graphs)
        return fit(self, *args, **kwargs)

    models: list[Model] = []

    class Kept(Model):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            models.append(self)

    monkeypatch.setattr(graph.GraphFeatures, "transform_parts", remembered)
    monkeypatch.setattr(LogisticRegression, "fit", fitted)
    monkeypatch.setattr(exported_module, "Model", Kept)
    config = config_for("sklearn.linear_model.LogisticRegression", "classification")
    exported = export(config, subscribers(300))
    assert graphs and sessions_at_fit == [None]  # the training rows' features made, the session dropped
    assert len(models) == 1 and models[0]._session is None  # parity's model: no arena through the baseline
    assert exported.metadata["parity"]["within_tolerance"]


def test_a_build_that_drops_its_dataset_drops_its_ids_once_split() -> None:
    config = config_for("sklearn.linear_model.LogisticRegression", "classification")
    documents = subscribers(300)
    kept, dropped = (
        validate(collect(documents, config.features.loaded), config.features, config.model.task) for _ in range(2)
    )
    for dataset, keep in ((kept, True), (dropped, False)):
        created = datetime(2026, 1, 1, tzinfo=UTC)
        exported_module.make_model(
            config, dataset, recipe=settle(config), version="1.0.0", created=created, keep_columns=keep
        )
    assert len(kept.ids) == 300  # put back: the dataset is whole again
    with pytest.raises(RuntimeError, match="ids are dropped"):
        len(dropped.ids)


def _numbers(rows: int, columns: int) -> np.ndarray:
    """A column-major block as the imputer gives the scaler one: columns of unlike scales, one constant."""
    rng = np.random.default_rng(7)
    block = np.asfortranarray(rng.normal(size=(rows, columns)) * np.logspace(-3, 6, columns) + np.arange(columns))
    block[:, 1] = 3.0
    return block


STATISTICS = ("mean_", "var_", "scale_", "n_samples_seen_")


@pytest.mark.parametrize("layout", ["imputed", "column-major with gaps", "row-major", "weighted", "one column"])
def test_the_scaler_s_statistics_are_standard_scaler_s_to_the_bit(layout: str) -> None:
    block = _numbers(50_003, 7)
    weight = None
    if layout == "imputed":  # what the pipeline hands it: the median imputer's output
        with_gaps = block.copy(order="F")
        with_gaps[::5, 3] = np.nan
        block = MedianImputer(strategy="median").fit_transform(with_gaps)
        assert block.flags.f_contiguous
    elif layout == "column-major with gaps":
        block[::3, 0] = np.nan
        block[::11, 4] = np.nan
    elif layout == "row-major":
        block = np.ascontiguousarray(block)
    elif layout == "weighted":
        weight = np.random.default_rng(1).uniform(0.5, 2.0, len(block))
    else:
        block = block[:, 2:3]
    expected = StandardScaler().fit(block, sample_weight=weight)
    fitted = ColumnScaler().fit(block, sample_weight=weight)
    for name in STATISTICS:
        want, got = getattr(expected, name), getattr(fitted, name)
        assert type(got) is type(want) and np.asarray(got).dtype == np.asarray(want).dtype, name
        assert np.asarray(got).tobytes() == np.asarray(want).tobytes(), name
    assert fitted.n_features_in_ == expected.n_features_in_ and not hasattr(fitted, "feature_names_in_")
    assert fitted.transform(block).tobytes() == expected.transform(block).tobytes()


def test_the_scaler_s_graph_is_standard_scaler_s_node_for_node() -> None:
    register()
    block = _numbers(2_000, 5)
    graphs = [
        convert_sklearn(
            Pipeline([("scale", scaler.fit(block))]),
            initial_types=[("x", FloatTensorType([None, 5]))],
            target_opset=17,
            name="scaled",  # skl2onnx's default graph name is a random UUID
        ).SerializeToString(deterministic=True)
        for scaler in (StandardScaler(), ColumnScaler())
    ]
    assert graphs[0] == graphs[1]


def test_the_numbers_scaler_holds_one_column_s_temporaries_at_a_time() -> None:
    config = config_for("sklearn.linear_model.LogisticRegression", "classification")
    spec = settle(config).feature_spec
    assert spec.scale == "standard"
    parts = {name: part for name, part, _ in preprocessing_pipeline(spec).steps[-1][1].transformers}
    scaler = parts["numeric"].named_steps["scale"]
    block = _numbers(200_000, 10)  # 15 MiB: StandardScaler's fit holds about twice that beside it
    tracemalloc.start()
    try:
        scaler.fit(block)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 0.5 * block.nbytes, (peak, block.nbytes)
    assert scaler.mean_.tobytes() == StandardScaler().fit(block).mean_.tobytes()


def test_the_date_parts_are_made_a_chunk_of_rows_at_a_time() -> None:
    rng = np.random.default_rng(3)
    dates = rng.integers(-(2**40), 2**41, size=(200_000, 1), dtype=np.int64)
    dates[::13] = MISSING_DATE
    tracemalloc.start()
    try:
        made = DateParts().fit(dates).transform(dates)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    # The calendar arithmetic of every row at once held about twice its result beside it (the
    # preprocessing fit's peak at a million documents); here the result and a chunk's temporaries.
    assert peak < 1.35 * made.nbytes, (peak, made.nbytes)
    whole = date_parts(NumpyOps(), dates[:, 0])
    expected = np.stack([whole[part] for part in DATE_PARTS], axis=1).astype(np.float64)
    assert made.flags.c_contiguous and made.tobytes() == expected.tobytes()


def test_a_derived_feature_s_intermediates_are_freed_when_it_is_computed() -> None:
    expressions = parse_derived(
        {"per_visit": "income / (visits + 1)", "logged": "log1p(income) * 2 - visits"},
        {"income": "number", "visits": "number"},
    )
    rng = np.random.default_rng(5)
    columns = {"income": rng.uniform(1e4, 2e5, 200_000), "visits": rng.integers(0, 200, 200_000).astype(np.float64)}
    gc.disable()  # as between two of the collector's runs: nothing but reference counts frees them
    tracemalloc.start()
    try:
        values = evaluate(expressions, columns)
        held, _ = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
        gc.enable()
    results = sum(value.nbytes for value in values.values())
    # A reference cycle (the computing closure referring to itself) kept every intermediate array
    # until the garbage collector ran: several times the results, held through the preprocessing's fit.
    assert held < 1.1 * results, (held, results)
    assert (
        values["per_visit"].tobytes()
        == (columns["income"].astype(np.float32) / (columns["visits"].astype(np.float32) + np.float32(1))).tobytes()
    )
