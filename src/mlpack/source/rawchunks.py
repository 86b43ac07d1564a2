"""The chunks of one field's values in a raw BSON batch (source.rawbson): made from the bytes as
`columns.typed_chunk` makes them from pymongo's decoded values.

`rawbson` has walked the batch and knows, for each document, the BSON type of the field's value (0 where
it is absent) and where its value starts. The chunk's kind is decided from the types found as
`typed_chunk` decides it from the Python types; one type (nulls allowed) is an array read straight from
the bytes, strings a list in which each distinct string is decoded once, ObjectIds (none null) their
bytes; mixed types are decoded here into the values pymongo gives and handed to `typed_chunk` itself.
"""

from __future__ import annotations

import datetime
from typing import Any

import numpy as np
from bson.int64 import Int64

from mlpack.source.columns import Chunk, Column, typed_chunk
from mlpack.source.oids import object_ids

DOUBLE, STRING, DOCUMENT, OBJECT_ID, BOOLEAN, DATE, NULL, INT32, INT64 = 1, 2, 3, 7, 8, 9, 10, 16, 18
AT_A_PATH = (DOUBLE, STRING, OBJECT_ID, BOOLEAN, DATE, NULL, INT32, INT64)  # the types read at a path
LOW_BITS = np.array([(1 << (8 * n)) - 1 for n in range(8)] + [2**64 - 1], dtype=np.uint64)  # the first n bytes


class Views:
    """The batch's bytes read as little-endian numbers starting at any byte (strided views, no copies)."""

    def __init__(self, buffer: np.ndarray) -> None:
        self.u8 = buffer
        size = len(buffer)
        self.i32 = np.ndarray((size - 3,), dtype="<i4", buffer=buffer, strides=(1,))
        self.i64 = np.ndarray((size - 7,), dtype="<i8", buffer=buffer, strides=(1,))
        self.u64 = np.ndarray((size - 7,), dtype="<u8", buffer=buffer, strides=(1,))
        self.f64 = np.ndarray((size - 7,), dtype="<f8", buffer=buffer, strides=(1,))


def chunk(found: np.ndarray, offsets: np.ndarray, views: Views, batch: bytes, shared: dict[str, str]) -> Any:
    """The chunk `typed_chunk` makes of one path's decoded values, made from the bytes; None if a string is
    no valid UTF-8. The kinds are decided as there, from the types found (absent is 0, null NULL)."""
    size = len(found)
    counts = np.bincount(found, minlength=256)
    kinds = [code for code in AT_A_PATH if code != NULL and counts[code]]
    nulls = (found == 0) | (found == NULL) if counts[0] or counts[NULL] else None
    if not kinds:
        return Chunk("none", None, None, size)
    if kinds == [OBJECT_ID] and nulls is None:  # each value's 12 bytes, gathered by numpy
        return Chunk("oid", views.u8[offsets[:, None] + np.arange(12)].tobytes(), None, size)
    if kinds == [STRING]:
        texts = _strings(found, offsets, views, batch, shared)
        return None if texts is None else Chunk("str", texts, None, size)
    if len(kinds) == 1 and kinds[0] in _KINDS:
        where, numbers = _numbers(kinds[0], found, offsets, views)
        if nulls is None:
            return Chunk(_KINDS[kinds[0]], numbers, None, size)
        data = np.full(size, np.nan) if kinds[0] == DOUBLE else np.zeros(size, dtype=numbers.dtype)
        data[where] = numbers  # None: NaN for floats, as fromiter reads it; 0, False, 1970 for the rest
        return Chunk(_KINDS[kinds[0]], data, nulls, size)
    if set(kinds) <= {DOUBLE, INT32, INT64}:  # ints beside floats: floats as to_number reads them, exact ints
        data = np.full(size, np.nan)
        exact = np.zeros(size, dtype=np.int64)
        for code in kinds:
            where, numbers = _numbers(code, found, offsets, views)
            data[where] = numbers
            if code != DOUBLE:
                exact[where] = numbers
        positions = np.flatnonzero((found == INT32) | (found == INT64))
        return Chunk("number", data, nulls, size, (positions, exact[positions], found[positions] == INT64))
    values: list[Any] = [None] * size
    for code in kinds:  # mixed types, or ObjectIds: the values themselves, as pymongo decodes them
        where = np.flatnonzero(found == code)
        if code == STRING:
            texts = _strings(found, offsets, views, batch, shared)
            if texts is None:
                return None
            decoded = [texts[index] for index in where.tolist()]
        elif code == OBJECT_ID:
            decoded = object_ids(batch, offsets[where].tolist())
        else:
            decoded = _python(code, _numbers(code, found, offsets, views)[1])
        for index, value in zip(where.tolist(), decoded, strict=True):
            values[index] = value
    return typed_chunk(values, shared)


_KINDS = {DOUBLE: "float", INT32: "int", INT64: "int64", BOOLEAN: "bool", DATE: "date"}
_EPOCH = datetime.datetime(1970, 1, 1)


def _numbers(code: int, found: np.ndarray, offsets: np.ndarray, views: Views) -> tuple[np.ndarray, np.ndarray]:
    """Where the values of one type are, and those values (dates as µs since 1970)."""
    where = np.flatnonzero(found == code)
    at = offsets[where]
    if code == DOUBLE:
        return where, views.f64[at]
    if code == INT32:
        return where, views.i32[at].astype(np.int64)
    if code == INT64:
        return where, views.i64[at].astype(np.int64)
    if code == BOOLEAN:
        return where, views.u8[at].astype(bool)
    return where, views.i64[at].astype(np.int64) * 1000


def _python(code: int, numbers: np.ndarray) -> list[Any]:
    if code == INT64:
        return [Int64(number) for number in numbers.tolist()]
    if code == DATE:
        return [_EPOCH + datetime.timedelta(microseconds=us) for us in numbers.tolist()]
    return list(numbers.tolist())


def _strings(
    found: np.ndarray, offsets: np.ndarray, views: Views, batch: bytes, shared: dict[str, str]
) -> list[Any] | None:
    """Every value of the column, a string where it has one (each distinct one decoded once), else None."""
    where = np.flatnonzero(found == STRING)
    at = offsets[where] + 4
    lengths = views.i32[offsets[where]].astype(np.int64) - 1
    first, inverse = _distinct(views.u64, at, lengths)
    texts: list[Any] = []
    try:
        for start, length in zip(at[first].tolist(), lengths[first].tolist(), strict=True):
            text = batch[start : start + length].decode("utf-8")
            texts.append(shared.setdefault(text, text) if len(shared) < Column.SHARED_STRINGS else text)
    except UnicodeDecodeError:
        return None
    table = np.empty(len(texts) + 1, dtype=object)
    table[: len(texts)] = texts
    table[len(texts)] = None
    picks = np.full(len(found), len(texts), dtype=np.int64)
    picks[where] = inverse
    return list(table[picks].tolist())


def _distinct(u64: np.ndarray, at: np.ndarray, lengths: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each distinct byte string's first position, and which one each is: by their 8-byte words, compared
    whole (a length and every word), so equal codes mean equal bytes."""
    if not len(at):
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
    codes = lengths.astype(np.uint64)
    longest = int(lengths.max())
    if longest > 64:
        return np.arange(len(at)), np.arange(len(at))  # long texts are seldom repeated: each decoded
    for word in range((longest + 7) // 8):
        left = np.clip(lengths - 8 * word, 0, 8)
        value = np.where(left > 0, u64[at + 8 * word], np.uint64(0)) & LOW_BITS[left]
        codes = _rank(codes * np.uint64(len(at) + 1) + _rank(value))  # one code per (codes so far, this word)
    _, first, inverse = np.unique(codes, return_index=True, return_inverse=True)
    return first, inverse.reshape(-1)


def _rank(values: np.ndarray) -> np.ndarray:
    """Each value's rank among the distinct ones (as uint64): a small code standing for it exactly."""
    _, inverse = np.unique(values, return_inverse=True)
    return inverse.reshape(-1).astype(np.uint64)
