"""The drift baseline: what the data a model was built from looked like, to the model and to its inputs.

The server's /metrics and `mlpack monitor` compare live traffic with it (runtime/drift.py computes
and compares); it goes into the metadata (`metadata.with_baseline`) after the parity check, because
the predictions it profiles are the exported graph's own.
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

from mlpack.runtime import Metadata, Model
from mlpack.runtime.drift import baseline_of
from mlpack.validate import Dataset


def training_baseline(
    dataset: Dataset, model: Model, metadata: Metadata, max_categories: int, unlisted: Collection[str] = ()
) -> dict[str, Any]:
    """The drift baseline: the distribution of each input and of the ONNX model's own predictions
    over the data the model was built from, which the server and `mlpack monitor` compare live traffic to.
    `unlisted`: fields whose values the model tells none apart (read by string functions): no value listed."""
    columns = dataset.columns()
    predictions: list[Any] = []
    for start in range(0, dataset.rows, 50_000):  # bounded memory on large collections
        chunk = {name: values[start : start + 50_000] for name, values in columns.items()}
        predictions += model.run(chunk)[0]
    # Every graph input (fields read only by derived expressions too), by the document path it reads.
    profiled = {entry["path"]: (entry["kind"], columns[entry["path"]]) for entry in metadata["inputs"]}
    known = {f["name"]: set(f["categories"]) for f in metadata["features"] if "categories" in f}
    known.update({path: set() for path in unlisted if path not in known})
    return baseline_of(
        profiled, predictions, metadata["task"], rows=dataset.rows, max_categories=max_categories, known=known
    )
