"""While the estimator fits, the split's columns wait in a temporary file, not in memory (issue 23).

At a million documents the training rows' features are wider than their columns, and holding the
columns beside them while the estimator fits added their size to the build's peak. The columns
must come back value for value, and the model and its metadata must be those of scikit-learn's
Pipeline.fit with the columns held throughout.
"""

from __future__ import annotations

import tomllib
from typing import Any

import numpy as np
import pytest
from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor

import mlpack.features.graph as graph
import mlpack.training.spill as spill
import mlpack.training.train as train_module
from mlpack.config import Config, parse_config
from mlpack.features.pipeline import frame
from mlpack.source import collect
from mlpack.training.recipe import settle
from mlpack.training.spill import kept_in_a_file, kept_in_parts
from mlpack.validate import validate
from tests.helpers.documents import subscribers
from tests.helpers.shop import CONFIG, orders
from tests.helpers.training import config_for, export


def _columns() -> dict[str, np.ndarray]:
    payload = np.array([0x7FF8_0000_0000_0001], dtype=np.int64).view(np.float64)  # a NaN with a payload
    plan = "pro"
    return {
        "price": np.concatenate([[1.5, -0.0, np.inf, np.nan], payload]),
        "count": np.array([3, -(2**63), 2**63 - 1, 0, 7], dtype=np.int64),
        "paid": np.array([True, False, True, True, False]),
        "plan": np.array([plan, "basic", plan, "", None], dtype=object),
        "signup": np.array([0, -86_400_000, 1_700_000_000_000, -(2**63), 5], dtype=np.int64),
    }


def _state(columns: dict[str, np.ndarray]) -> list[tuple[str, str, tuple[int, ...], Any]]:
    return [
        (path, str(values.dtype), values.shape, values.tolist() if values.dtype == object else values.tobytes())
        for path, values in columns.items()
    ]


def test_the_columns_are_away_within_the_block_and_back_value_for_value() -> None:
    columns = _columns()
    expected = _state(_columns())
    with kept_in_a_file(columns):
        assert columns == {}
    assert _state(columns) == expected  # keys in order, dtypes, shapes, bits (NaN payload, -0.0), objects' values
    assert all(values.flags.writeable and values.flags.c_contiguous for values in columns.values())


def _no_space_left(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every write of the spill file fails as a full disk does."""

    def full(*_args: Any, **_kwargs: Any) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(spill.pickle, "dump", full)


def test_a_file_that_cannot_be_written_keeps_the_columns_in_memory(monkeypatch: pytest.MonkeyPatch) -> None:
    _no_space_left(monkeypatch)
    columns = _columns()
    held = dict(columns)
    with kept_in_a_file(columns):
        assert columns.keys() == held.keys() and all(columns[path] is held[path] for path in held)
    assert _state(columns) == _state(_columns())


def _shop() -> Config:
    raw: dict[str, Any] = tomllib.loads(CONFIG.format(database="db"))
    raw["estimator"] = {"class": "sklearn.ensemble.HistGradientBoostingRegressor", "params": {"max_iter": 20}}
    raw["evaluation"]["gates"] = {}
    return parse_config(raw)  # derived numbers, dates, a category, free text


def _weighted() -> Config:
    # sample weights for the estimator, groups for the target encoding's folds: each reaches its step
    return config_for(
        "sklearn.ensemble.HistGradientBoostingClassifier",
        "classification",
        {"max_iter": 20},
        features={
            "numeric": ["tenure_months", "billing.monthly_charges"],
            "weight": "support_calls",
            "encoding": {"billing.method": "target"},
        },
        evaluation={"split": "group", "split_field": "contract"},
    )


CASES = {"shop": (_shop, lambda: orders(600, seed=2)), "weighted": (_weighted, lambda: subscribers(400))}


def _pipeline_fit(pipeline: Any, parts: Any, input_names: Any, fit_args: Any, feature_args: Any, *_: Any) -> None:
    """scikit-learn's Pipeline.fit in one call, the split's columns held throughout (as before)."""
    routed = {**fit_args, **{f"features__{name}": value for name, value in feature_args.items()}}
    pipeline.fit(frame(parts.train_columns, input_names), parts.train_target, **routed)


@pytest.mark.parametrize("case", sorted(CASES))
def test_the_model_is_the_one_pipeline_fit_makes(case: str, monkeypatch: pytest.MonkeyPatch) -> None:
    config, documents = CASES[case]
    ours = export(config(), documents())
    monkeypatch.setattr(train_module, "_fit", _pipeline_fit)
    reference = export(config(), documents())
    assert ours.onnx_bytes == reference.onnx_bytes
    assert ours.metadata == reference.metadata
    assert _state(ours.trained.train_columns) == _state(reference.trained.train_columns)
    assert _state(ours.trained.test_columns) == _state(reference.trained.test_columns)


@pytest.mark.parametrize("case", sorted(CASES))
def test_the_estimator_fits_while_the_split_holds_no_column(case: str, monkeypatch: pytest.MonkeyPatch) -> None:
    config = settle(make := CASES[case][0]())
    raw = collect(CASES[case][1](), make.features.loaded)
    dataset = validate(raw, make.features, make.model.task, max_categories=make.preprocessing.max_categories)
    parts = train_module.split(config, dataset)
    held: list[tuple[int, int]] = []
    for estimator in (HistGradientBoostingRegressor, HistGradientBoostingClassifier):
        fit = estimator.fit

        def spied(self: Any, *args: Any, _fit: Any = fit, **kwargs: Any) -> Any:
            held.append((len(parts.train_columns), len(parts.test_columns)))
            return _fit(self, *args, **kwargs)

        monkeypatch.setattr(estimator, "fit", spied)
    before = _state(parts.train_columns), _state(parts.test_columns)
    train_module.train(config, dataset, rows=parts)
    assert held == [(0, 0)]
    assert (_state(parts.train_columns), _state(parts.test_columns)) == before  # and back as they were


SPANS = [(0, 2), (2, 3), (3, 5)]


def test_the_columns_come_from_their_file_a_part_at_a_time_and_back_value_for_value() -> None:
    columns = _columns()
    expected = _state(_columns())
    with kept_in_parts(columns, SPANS) as read:
        assert columns == {}
        parts = list(read())
        assert [_state(part) for part in parts] == [
            _state({path: values[start:end] for path, values in _columns().items()}) for start, end in SPANS
        ]
        assert [_state(part) for part in read()] == [_state(part) for part in parts]  # read again: the same
    assert _state(columns) == expected  # keys in order, dtypes, shapes, bits (NaN payload, -0.0), objects' values
    assert all(values.flags.writeable and values.flags.c_contiguous for values in columns.values())


def test_a_file_that_cannot_be_written_gives_the_parts_from_memory(monkeypatch: pytest.MonkeyPatch) -> None:
    _no_space_left(monkeypatch)
    columns = _columns()
    held = dict(columns)
    with kept_in_parts(columns, SPANS) as read:
        assert all(columns[path] is held[path] for path in held)
        assert [len(part["price"]) for part in read()] == [2, 1, 2]
    assert _state(columns) == _state(_columns())


@pytest.mark.parametrize("case", sorted(CASES))
def test_the_training_features_are_made_while_the_split_holds_no_column(
    case: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The graph reads the training rows a chunk at a time from their file: at a million documents
    the columns held whole beside the features they make were 0.74x the projected columns."""
    monkeypatch.setattr(graph, "TRANSFORM_CHUNK", 64)  # several chunks of the training rows
    config, documents = CASES[case]
    held: list[tuple[int, int]] = []
    spied: list[Any] = []
    made, fit = graph.GraphFeatures.transform_parts, train_module._fit

    def making(self: Any, rows: int, parts: Any) -> Any:
        def seen() -> Any:
            for part in parts:
                held.append((len(spied[0].train_columns), len(spied[0].test_columns)))
                yield part

        return made(self, rows, seen())

    def fitting(pipeline: Any, parts: Any, *args: Any) -> Any:
        spied.append(parts)
        return fit(pipeline, parts, *args)

    monkeypatch.setattr(graph.GraphFeatures, "transform_parts", making)
    monkeypatch.setattr(train_module, "_fit", fitting)
    ours = export(config(), documents())
    assert len(held) >= 3 and set(held) == {(0, 0)}  # each of the training rows' chunks
    monkeypatch.undo()
    monkeypatch.setattr(graph, "TRANSFORM_CHUNK", 64)
    monkeypatch.setattr(train_module, "_fit", _pipeline_fit)
    reference = export(config(), documents())
    assert ours.onnx_bytes == reference.onnx_bytes and ours.metadata == reference.metadata
