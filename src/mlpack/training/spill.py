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
from collections.abc import Iterator

import numpy as np

from mlpack import heap


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


__all__ = ["kept_in_a_file"]
