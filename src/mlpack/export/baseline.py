"""The drift baseline: what the data a model was built from looked like, to the model and to its inputs.

The server's /metrics and `mlpack monitor` compare live traffic with it (runtime/drift.py computes
and compares); it goes into the metadata (`metadata.with_baseline`) after the parity check, because
the predictions it profiles are the exported graph's own.
"""

from __future__ import annotations

from collections.abc import Collection, Iterator, Mapping, Sequence
from typing import Any

from mlpack.runtime import Metadata, Model
from mlpack.runtime.drift import baseline_of
from mlpack.validate import Dataset


def training_baseline(
    dataset: Dataset,
    model: Model,
    metadata: Metadata,
    max_categories: int,
    unlisted: Collection[str] = (),
    *,
    columns: Mapping[str, Any] | None = None,
    predictions: Sequence[Any] | None = None,
) -> dict[str, Any]:
    """The drift baseline: the distribution of each input and of the ONNX model's own predictions
    over the data the model was built from, which the server and `mlpack monitor` compare live traffic to.
    `unlisted`: fields whose values the model tells none apart (read by string functions): no value listed.
    `columns`: the dataset's columns by path, when it does not hold them itself (training/aside.py: each
    joined from the split's parts as it is read); `predictions`: the ONNX model's answers on every row, in
    the dataset's order, when they were made already (the parity check's): the model is not run again."""
    columns = dataset.columns() if columns is None else columns
    if predictions is None:
        made: list[Any] = []
        for start in range(0, dataset.rows, 50_000):  # bounded memory on large collections
            chunk = {name: values[start : start + 50_000] for name, values in columns.items()}
            made += model.run(chunk)[0]
        predictions = made
    # Every graph input (fields read only by derived expressions too), by the document path it reads,
    # each column read as it is profiled (not all of them at once).
    profiled = _Profiled({entry["path"]: entry["kind"] for entry in metadata["inputs"]}, columns)
    known = {f["name"]: set(f["categories"]) for f in metadata["features"] if "categories" in f}
    known.update({path: set() for path in unlisted if path not in known})
    return baseline_of(
        profiled, predictions, metadata["task"], rows=dataset.rows, max_categories=max_categories, known=known
    )


class _Profiled(Mapping[str, tuple[str, Any]]):
    """path -> (kind, the column), the column read from `columns` when asked for."""

    def __init__(self, kinds: dict[str, str], columns: Mapping[str, Any]) -> None:
        self._kinds, self._columns = kinds, columns

    def __getitem__(self, path: str) -> tuple[str, Any]:
        return self._kinds[path], self._columns[path]

    def __iter__(self) -> Iterator[str]:
        return iter(self._kinds)

    def __len__(self) -> int:
        return len(self._kinds)
