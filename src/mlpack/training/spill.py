"""The split's columns kept in a temporary file while nothing reads them (training/train.py).

At a million documents the training rows' features are wider than the columns they are made of
(29 float64 numbers a row against 12 fields: a one-hot category and a date's parts widen each row),
and the estimator fits on them while the columns wait to be read again (the test rows' answers, the
parity check on every row, the metadata, the drift baseline). Held in memory meanwhile, the columns
add about their own size to the build's peak. So they wait in an unnamed temporary file (it has no
name on disk, and it is gone when closed or when the process ends), and come back value for value:
pickled, every array has its dtype, shape and bits again, and an object array the same values.
"""

from __future__ import annotations

import contextlib
import pickle
import tempfile
from collections.abc import Callable, Iterator, Sequence

import numpy as np

from mlpack.runtime import heap

Parts = Callable[[], Iterator[dict[str, np.ndarray]]]


@contextlib.contextmanager
def kept_in_a_file(columns: dict[str, np.ndarray]) -> Iterator[None]:
    """Within the block `columns` is empty and its arrays are in the file; afterwards it holds them
    again, under the same keys in the same order. A file that cannot be written (a full disk) keeps
    them in memory: the build needs more memory, and gives the same model."""
    if not columns:
        yield
        return
    with tempfile.TemporaryFile(prefix="mlpack-columns-") as file:
        try:
            pickle.dump(columns, file, protocol=5)  # 5: an array's bytes go to the file as they are, not copied
        except OSError:
            kept = False
        else:
            kept = True
            columns.clear()
            heap.release()  # their pages: the next arrays are not mapped beside them
        try:
            yield
        finally:
            if kept:
                file.seek(0)
                columns.update(pickle.load(file))


@contextlib.contextmanager
def kept_in_parts(columns: dict[str, np.ndarray], spans: Sequence[tuple[int, int]]) -> Iterator[Parts]:
    """`kept_in_a_file`, the file holding the rows of each (start, end) span of `spans` apart: the block
    gets a function that gives those parts in order, each read from the file as it is asked for (a
    dict of the columns' rows of that span), so the columns are never in memory whole while it runs.
    Afterwards `columns` holds them again, each filled in part by part. A file that cannot be written
    keeps them in memory, and the parts are their slices."""
    if not columns:
        yield lambda: iter([{} for _ in spans])
        return
    with tempfile.TemporaryFile(prefix="mlpack-columns-") as file:
        shapes = {path: (values.shape, values.dtype) for path, values in columns.items()}
        try:
            for start, end in spans:
                pickle.dump({path: values[start:end] for path, values in columns.items()}, file, protocol=5)
        except OSError:
            kept = False
        else:
            kept = True
        if not kept:
            yield lambda: ({path: values[start:end] for path, values in columns.items()} for start, end in spans)
            return
        columns.clear()
        heap.release()  # their pages: the next arrays are not mapped beside them

        def parts() -> Iterator[dict[str, np.ndarray]]:
            file.seek(0)
            for _ in spans:
                yield pickle.load(file)

        try:
            yield parts
        finally:
            columns.update({path: np.empty(shape, dtype) for path, (shape, dtype) in shapes.items()})
            for (start, end), part in zip(spans, parts(), strict=True):
                for path, values in part.items():
                    columns[path][start:end] = values


__all__ = ["kept_in_a_file", "kept_in_parts"]
