"""The `_id` order of loaded documents, worked out on the client.

A build reads its documents in `_id` order, so that the same data trains the same model. Asking the
server for that order (`sort=[("_id", 1)]`) can make it sort the whole result before its first
batch: minutes for a million documents on a server without a streaming index walk. So the loader
reads in natural order and sorts here, by MongoDB's own comparison of BSON values (types in its
order: null, numbers, strings, ..., ObjectId, booleans, dates; numbers by value across int, long,
double and decimal, NaN first; strings by their UTF-8 bytes, which is code-point order). A
collection read in insertion order of increasing ids (ObjectIds, counters) is found sorted in one
pass and left as it is.

Ids of other types (sub-documents, binary, timestamps, MinKey/MaxKey, out-of-range dates) are rare:
for them, and for strings under a collation (a collection or view with a default collation sorts
strings by it), `id_order` says so and the loader asks the server to sort after all.
"""

from __future__ import annotations

import datetime
from collections.abc import Callable
from decimal import Decimal
from typing import Any

import numpy as np
from bson.decimal128 import Decimal128
from bson.int64 import Int64
from bson.objectid import ObjectId

from mlpack.source.columns import Column


class NeedsServerSort(Exception):
    """The ids hold a type whose BSON order is not reproduced here: the server must sort."""


def _number(value: Any) -> tuple[int, int, Any]:
    return (2, 0, 0) if value != value else (2, 1, value)  # NaN below every number, as MongoDB sorts it


def _decimal(value: Decimal128) -> tuple[int, int, Any]:
    number: Decimal = value.to_decimal()
    return (2, 0, 0) if number.is_nan() else (2, 1, number)  # Decimal compares exactly with int and float


def _date(value: datetime.datetime) -> tuple[int, datetime.datetime]:
    return (9, value)


# MongoDB's ranks of the types it sorts by (null 1, numbers 2, strings 3, ObjectId 7, bool 8, date 9).
_KEYS: dict[type, Callable[[Any], tuple[Any, ...]]] = {
    type(None): lambda value: (1,),
    int: _number,
    Int64: _number,
    float: _number,
    Decimal128: _decimal,
    str: lambda value: (3, value),
    ObjectId: lambda value: (7, value.binary),
    bool: lambda value: (8, value),
    datetime.datetime: _date,
}


def sort_key(value: Any) -> tuple[Any, ...]:
    """A Python key that orders values as MongoDB orders them in a sort by `_id`."""
    key = _KEYS.get(type(value))
    if key is None:
        raise NeedsServerSort(type(value).__name__)
    return key(value)


def id_order(ids: Column, *, collated: Callable[[], bool]) -> np.ndarray | None:
    """The positions of the rows in `_id` order, or None when they are in it already.

    `collated()` is asked only when some id is a string: whether the collection sorts strings by a
    collation. NeedsServerSort when the order cannot be worked out here.
    """
    if len(ids) < 2:
        return None
    integers = ids.integers()
    if integers is not None and not integers[1].any():  # ints (the usual counter ids): numpy alone
        values = integers[0]
        if bool(np.all(values[1:] > values[:-1])):
            return None
        return np.argsort(values, kind="stable")
    oids = ids.object_id_bytes()
    if oids is not None:  # ObjectIds (the usual ids) sort by their 12 bytes: as two big-endian numbers
        high, low = oids[:, :8].copy().view(">u8").ravel(), oids[:, 8:].copy().view(">u4").ravel()
        ahead = (high[1:] > high[:-1]) | ((high[1:] == high[:-1]) & (low[1:] >= low[:-1]))
        return None if bool(ahead.all()) else np.lexsort((low, high))  # stable, as sorted() below
    keys = [sort_key(value) for value in ids]
    if any(key[0] == 3 for key in keys) and collated():
        raise NeedsServerSort("strings under a collation")
    if all(a <= b for a, b in zip(keys, keys[1:])):
        return None
    return np.array(sorted(range(len(keys)), key=keys.__getitem__), dtype=np.int64)
