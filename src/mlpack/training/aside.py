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
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, NoReturn

import numpy as np

from mlpack.runtime import heap
from mlpack.training.train import Split
from mlpack.validate import Dataset

_KINDS = ("numeric", "categorical", "dates", "texts")


class _SetAside(dict[str, np.ndarray]):
    """Where a kind of the dataset's columns was: reading it while they are set aside is a bug, said loudly."""

    def _refuse(self, *_: Any, **__: Any) -> NoReturn:
        raise RuntimeError("the dataset's columns are set aside while the model trains (training/aside.py)")

    __getitem__ = __iter__ = __len__ = __contains__ = keys = values = items = get = _refuse


class _IdsSetAside(Sequence[Any]):
    """Where the dataset's ids were, once dropped: reading them is a bug, said loudly."""

    def _refuse(self, *_: Any, **__: Any) -> NoReturn:
        raise RuntimeError("the dataset's ids are dropped once split, for the build (training/aside.py)")

    __getitem__ = __len__ = __iter__ = _refuse  # type: ignore[assignment]


@contextlib.contextmanager
def columns_set_aside(dataset: Dataset, rows: Split, *, put_back: bool = True) -> Iterator[Aside]:
    """Within the block the dataset's columns are not held (the split's are); they are back afterwards,
    unless not `put_back` (the caller drops the dataset: then its ids are dropped too). The block gets
    an `Aside`: the dataset's columns as the block may read them, and the dataset's order of rows
    answered in the split's order."""
    if rows.rows is None or not _every_row_once(dataset.rows, *rows.rows):
        yield Aside(dataset.columns(), None)
        return
    kept = {kind: list(getattr(dataset, kind)) for kind in _KINDS}  # the paths, in their order
    for kind in _KINDS:
        setattr(dataset, kind, _SetAside())
    if not put_back:
        # Nothing reads the ids once split (the test rows' are in the split): not held while the model
        # trains (a million integer ids are 8 MB, ObjectIds 12 MB).
        dataset.ids = _IdsSetAside()
    heap.release()
    try:
        yield Aside(_Joined(rows, [path for paths in kept.values() for path in paths]), rows.rows)
    finally:
        if put_back:
            train_rows, test_rows = rows.rows
            for kind, paths in kept.items():
                setattr(dataset, kind, {path: _joined(rows, path, train_rows, test_rows) for path in paths})


@dataclass(frozen=True)
class Aside:
    columns: Mapping[str, np.ndarray]  # the dataset's columns by path (set aside: each joined as it is read)
    split_rows: tuple[np.ndarray, np.ndarray] | None  # the dataset's rows of the training and test parts

    def in_order(self, answers: Sequence[Any]) -> list[Any] | None:
        """Answers on the training rows then the test rows, in the dataset's order of rows (None when the
        split does not hold every row once)."""
        if self.split_rows is None:
            return None
        train_rows, test_rows = self.split_rows
        given = np.empty(len(answers), dtype=object)
        given[:] = answers  # the very objects, not numpy's conversion of them
        ordered = np.empty(len(answers), dtype=object)
        ordered[train_rows] = given[: len(train_rows)]
        ordered[test_rows] = given[len(train_rows) :]
        return ordered.tolist()  # the same objects, in a list


class _Joined(Mapping[str, np.ndarray]):
    """The dataset's columns put back from the split's two parts, one column when it is read."""

    def __init__(self, rows: Split, paths: list[str]) -> None:
        self._rows, self._paths = rows, paths

    def __getitem__(self, path: str) -> np.ndarray:
        if path not in self._paths:
            raise KeyError(path)
        assert self._rows.rows is not None
        return _joined(self._rows, path, *self._rows.rows)

    def __iter__(self) -> Iterator[str]:
        return iter(self._paths)

    def __len__(self) -> int:
        return len(self._paths)


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


__all__ = ["Aside", "columns_set_aside"]
