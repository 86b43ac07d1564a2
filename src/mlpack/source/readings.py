"""The runtime's readings of a whole loaded column at once, where its types make them arithmetic.

`to_number`, `category_text` and `date_milliseconds` (mlpack.runtime) are the one reading of a
value, in training and in every prediction path. A loaded `Column` whose values are all floats,
ints, strings, booleans or naive datetimes (nulls allowed) reads the same through numpy, without a
call per value. Each function here gives exactly what the per-value reading gives, or None when
some value needs that reading (text numbers, Extended JSON, mixed types, a value out of range):
`validate` then reads value by value, which also words the message of a bad one.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

import numpy as np

from mlpack.runtime import FLOAT32_MAX, MISSING_CATEGORY, MISSING_DATE
from mlpack.source.columns import Column


def numbers(values: Sequence[Any]) -> np.ndarray | None:
    """`[to_number(v) for v in values]` as float64, when every value is a float, an int or None."""
    floats = values.floats() if isinstance(values, Column) else None
    if floats is None:
        return None
    if np.any(np.abs(floats) > FLOAT32_MAX):  # inf too: to_number refuses it, and says so
        return None
    floats[np.isnan(floats)] = np.nan  # to_number's NaN, one bit pattern: the data fingerprint hashes the bytes
    return floats


def categories(values: Sequence[Any]) -> np.ndarray | None:
    """`[category_text(v) for v in values]` as an object array, when every value is a string or None
    (the string itself), or every value an int or None (its decimal text)."""
    if not isinstance(values, Column):
        return None
    column = np.empty(len(values), dtype=object)
    strings = values.strings()
    if strings is not None:
        column[:] = [MISSING_CATEGORY if text is None else text for text in strings]
        return column
    integers = values.integers()
    if integers is None:
        return None
    ints, nulls = integers
    if len(ints):
        distinct, inverse = np.unique(ints, return_inverse=True)
        column[:] = np.array([str(number) for number in distinct.tolist()], dtype=object)[inverse.reshape(-1)]
        column[nulls] = MISSING_CATEGORY
    return column


def milliseconds(values: Sequence[Any]) -> np.ndarray | None:
    """`[date_milliseconds(v) for v in values]` as int64, when every value is a naive datetime (UTC, as
    pymongo decodes BSON dates) or None."""
    micro = values.microseconds() if isinstance(values, Column) else None
    if micro is None:
        return None
    since, nulls = micro
    result = since // 1000  # floor, as date_milliseconds' timedelta division is, before 1970 too
    result[nulls] = MISSING_DATE
    return result


def labels(values: Sequence[Any]) -> tuple[np.ndarray, Literal["bool", "int", "str"]] | None:
    """Class labels and their kind ("bool", "int", "str") when every value is one type, none missing:
    what validate's per-value labelling gives (booleans as 0/1, ints as int64, strings as objects)."""
    if not isinstance(values, Column):
        return None
    booleans = values.booleans()
    if booleans is not None and not booleans[1].any():
        return booleans[0].astype(np.int64), "bool"
    integers = values.integers()
    if integers is not None and not integers[1].any():
        return integers[0], "int"
    strings = values.strings()
    if strings is not None and None not in strings:
        column = np.empty(len(strings), dtype=object)
        column[:] = strings
        return column, "str"
    return None


def missing(values: Sequence[Any], regression: bool) -> list[int] | None:
    """features.cleaning.missing_target (positions of None and NaN) when every value is a number or None,
    or, for a classification, every value a boolean or None, or a string or None."""
    if not isinstance(values, Column):
        return None
    floats = values.floats()
    if floats is not None:
        return np.flatnonzero(np.isnan(floats)).tolist()
    if regression:
        return None  # text may be a missing marker ("NA"): read value by value
    booleans = values.booleans()
    if booleans is not None:
        return np.flatnonzero(booleans[1]).tolist()
    strings = values.strings()
    return None if strings is None else [index for index, text in enumerate(strings) if text is None]
