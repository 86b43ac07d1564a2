"""Train and export in-process (no database): the build's own stages on given documents."""

from __future__ import annotations

import math
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pandas as pd

from mlpack.build import ExportedModel, make_model
from mlpack.config import Config, parse_config
from mlpack.runtime import Model
from mlpack.source import collect
from mlpack.training.recipe import settle
from mlpack.validate import validate
from tests.helpers.documents import CATEGORICAL, NUMERIC


def config_for(estimator: str, task: str, params: dict[str, Any] | None = None, **sections: Any) -> Config:
    target = "label" if task == "classification" else "lifetime_value"
    raw: dict[str, Any] = {
        "model": {"name": "test-model", "version": "1.0.0", "task": task},
        "source": {"database": "db", "collection": "customers"},
        "features": {"numeric": NUMERIC, "categorical": CATEGORICAL, "target": target},
        "estimator": {"class": estimator, "params": params or {}},
    }
    for name, values in sections.items():
        raw.setdefault(name, {}).update(values)
    return parse_config(raw)


def export(
    config: Config, documents: list[dict[str, Any]], *, warn: Callable[[str], None] | None = None
) -> ExportedModel:
    raw = collect(documents, config.features.loaded)
    dataset = validate(raw, config.features, config.model.task, max_categories=config.preprocessing.max_categories)
    created = datetime(2026, 1, 1, tzinfo=UTC)
    return make_model(
        config, dataset, recipe=settle(config), version="1.0.0", created=created, warn=warn or (lambda _message: None)
    )


def runtime_model(exported: ExportedModel) -> Model:
    return Model(exported.onnx_bytes, exported.metadata)


def sklearn_frame(exported: ExportedModel, records: list[dict[str, Any]]) -> pd.DataFrame:
    """What scikit-learn would see for these records, built independently of the runtime."""
    names = {f["name"]: f["input"] for f in exported.metadata["features"]}

    def get(record: dict[str, Any], path: str) -> Any:
        value: Any = record
        for part in path.split("."):
            value = value.get(part) if isinstance(value, dict) else None
        return value

    columns: dict[str, Any] = {}
    for path in NUMERIC:
        columns[names[path]] = [math.nan if get(r, path) is None else float(get(r, path)) for r in records]
    for path in CATEGORICAL:
        columns[names[path]] = np.array(
            ["__missing__" if get(r, path) is None else str(get(r, path)) for r in records], dtype=object
        )
    return pd.DataFrame(columns)
