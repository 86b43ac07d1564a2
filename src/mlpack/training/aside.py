"""The dataset's columns set aside while the model trains: the split holds every value of them.

`split` copies each column into its training and test rows, so while a model trains, every loaded
value is held twice (at a million documents, the projected columns once more at the build's peak).
Between the split and the drift baseline, the one later reader of the dataset's columns, they are
dropped, then put back from the split's two parts, value for value and in their order. Only where
the two parts hold every row once, as a random, time or group split does; otherwise (a filter
split that leaves documents out of both) the dataset keeps its columns.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any, NoReturn

import numpy as np

from mlpack import heap
from mlpack.training.train import Split
from mlpack.validate import Dataset

_KINDS = ("numeric", "categorical", "dates", "texts")


class _SetAside(dict[str, np.ndarray]):
    """Where a kind of the dataset's columns was: reading it while they are set aside is a bug, said loudly."""

    def _refuse(self, *_: Any, **__: Any) -> NoReturn:
        raise RuntimeError("the dataset's columns are set aside while the model trains (training/aside.py)")

    __getitem__ = __iter__ = __len__ = __contains__ = keys = values = items = get = _refuse


@contextlib.contextmanager
def columns_set_aside(dataset: Dataset, rows: Split) -> Iterator[None]:
    """Within the block the dataset's columns are not held (the split's are); they are back afterwards."""
    if rows.rows is None or not _every_row_once(dataset.rows, *rows.rows):
        yield
        return
    kept = {kind: list(getattr(dataset, kind)) for kind in _KINDS}  # the paths, in their order
    for kind in _KINDS:
        setattr(dataset, kind, _SetAside())
    heap.release()
    try:
        yield
    finally:
        train_rows, test_rows = rows.rows
        for kind, paths in kept.items():
            setattr(dataset, kind, {path: _joined(rows, path, train_rows, test_rows) for path in paths})


def _every_row_once(total: int, train_rows: np.ndarray, test_rows: np.ndarray) -> bool:
    if len(train_rows) + len(test_rows) != total:
        return False
    seen = np.zeros(total, dtype=bool)
    seen[train_rows] = True
    seen[test_rows] = True
    return bool(seen.all())


def _joined(rows: Split, path: str, train_rows: np.ndarray, test_rows: np.ndarray) -> np.ndarray:
    train, test = rows.train_columns[path], rows.test_columns[path]
    column = np.empty(len(train) + len(test), dtype=train.dtype)
    column[train_rows] = train
    column[test_rows] = test
    return column


__all__ = ["columns_set_aside"]
