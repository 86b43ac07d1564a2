"""While the model trains, the dataset does not hold a second copy of every column (issue 23).

The split copies each column into its training and test rows; the dataset's own columns are set
aside until the drift baseline reads them, then put back from the split's parts. The model, its
metadata and the dataset afterwards must be what they were with the columns kept throughout.
"""

from __future__ import annotations

import contextlib
import tomllib
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pytest

import mlpack.exported as exported_module
from mlpack.build import make_model
from mlpack.config import Config, parse_config
from mlpack.source import collect
from mlpack.training.aside import Aside
from mlpack.training.recipe import settle
from mlpack.validate import Dataset, validate
from tests.helpers.documents import subscribers
from tests.helpers.shop import CONFIG, orders
from tests.helpers.training import config_for


def _shop() -> tuple[Config, list[dict[str, Any]]]:
    raw: dict[str, Any] = tomllib.loads(CONFIG.format(database="db"))
    raw["estimator"] = {"class": "sklearn.ensemble.HistGradientBoostingRegressor", "params": {"max_iter": 20}}
    raw["evaluation"]["gates"] = {}
    return parse_config(raw), orders(600, seed=2)  # derived numbers, dates, a category, free text


def _subscribers() -> tuple[Config, list[dict[str, Any]]]:
    return config_for("sklearn.linear_model.LogisticRegression", "classification"), subscribers(300)


def _made(config: Config, documents: list[dict[str, Any]], **options: Any) -> tuple[Any, Dataset]:
    raw = collect(documents, config.features.loaded)
    dataset = validate(raw, config.features, config.model.task, max_categories=config.preprocessing.max_categories)
    created = datetime(2026, 1, 1, tzinfo=UTC)
    made = make_model(config, dataset, recipe=settle(config), version="1.0.0", created=created, **options)
    return made, dataset


def _kept_throughout(dataset: Dataset, _rows: Any, **_options: Any) -> Any:
    return contextlib.nullcontext(Aside(dataset.columns(), None))


def _columns(dataset: Dataset) -> dict[str, tuple[str, bytes | list[Any]]]:
    return {
        path: (str(values.dtype), values.tolist() if values.dtype == object else values.tobytes())
        for path, values in dataset.columns().items()
    }


@pytest.mark.parametrize("case", [_shop, _subscribers], ids=["shop", "subscribers"])
def test_the_model_and_the_dataset_are_those_made_with_the_columns_kept(
    case: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    config, documents = case()
    ours, dataset = _made(config, documents)
    # As before: the dataset's own columns throughout, and the baseline runs the model over every row again.
    monkeypatch.setattr(exported_module, "columns_set_aside", _kept_throughout)
    kept, kept_dataset = _made(config, documents)
    assert ours.onnx_bytes == kept.onnx_bytes
    # The drift baseline among them: each column joined from the split's parts, the predictions parity's.
    assert ours.metadata == kept.metadata
    assert list(dataset.columns()) == list(kept_dataset.columns())  # the same paths, in the same order
    assert _columns(dataset) == _columns(kept_dataset)


def test_the_dataset_holds_no_column_while_the_model_trains(monkeypatch: pytest.MonkeyPatch) -> None:
    config, documents = _subscribers()
    seen: list[str] = []
    train = exported_module.train

    def training(recipe: Any, dataset: Dataset, **kwargs: Any) -> Any:
        with pytest.raises(RuntimeError, match="set aside"):
            dataset.columns()
        seen.append("trained")
        return train(recipe, dataset, **kwargs)

    monkeypatch.setattr(exported_module, "train", training)
    _, dataset = _made(config, documents)
    assert seen == ["trained"]
    assert len(dataset.numeric["tenure_months"]) == dataset.rows  # back afterwards


def test_a_split_that_leaves_documents_out_keeps_the_columns(monkeypatch: pytest.MonkeyPatch) -> None:
    from mlpack.training import aside

    dataset = Dataset(numeric={"x": np.arange(6.0)}, categorical={}, target=np.zeros(6), ids=list(range(6)))
    split: Any = type("Rows", (), {"rows": (np.array([0, 1, 2]), np.array([3, 4]))})()  # row 5 in neither
    with aside.columns_set_aside(dataset, split):
        assert dataset.numeric["x"].tolist() == [0, 1, 2, 3, 4, 5]


@pytest.mark.parametrize("case", [_shop, _subscribers], ids=["shop", "subscribers"])
def test_the_baseline_reads_the_split_and_parity_s_answers(case: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """The build does not put the dataset's columns back (it drops the dataset next): the baseline joins
    each column from the split's parts as it profiles it, and profiles the answers parity had from the
    ONNX model on every row rather than running the model over every row again."""
    config, documents = case()
    kept, _ = _made(config, documents)
    baseline = exported_module.training_baseline

    def profiling(dataset: Dataset, model: Any, *args: Any, **kwargs: Any) -> Any:
        with pytest.raises(RuntimeError, match="set aside"):
            dataset.columns()
        unrun = type("Unrun", (), {"run": lambda *_: pytest.fail("the model ran again for the baseline")})()
        return baseline(dataset, unrun, *args, **kwargs)

    monkeypatch.setattr(exported_module, "training_baseline", profiling)
    ours, dataset = _made(config, documents, keep_columns=False)
    assert ours.onnx_bytes == kept.onnx_bytes and ours.metadata == kept.metadata
    with pytest.raises(RuntimeError, match="set aside"):
        dataset.columns()  # not put back
