"""Loaded field values, stored compactly: one typed numpy array per batch where the batch's values share a type.

A million documents read into Python lists cost a Python object per value (a float is 32 bytes with
its pointer, a datetime 56). `Column` behaves as the list of a field's values (None for absent or
null) but keeps each batch whose values are all floats, all ints or all naive datetimes (nulls
allowed) as one array: 8 bytes a value, and `validate` turns it into training columns without a
Python loop. Reading a value back gives the very value decoded, of the same type and with the same
bits (`float64.tolist()` is exact), so everything that reads the list reads what it read before.
"""

from __future__ import annotations

import bisect
import datetime
import itertools
import operator
from collections.abc import Iterable, Iterator, Sequence
from typing import Any, overload

import numpy as np
from bson.int64 import Int64
from bson.objectid import ObjectId

from mlpack.source.oids import object_ids

# A batch's kind: float, int (Python int), int64 (bson's Int64), number (ints and floats: BSON int32
# and double side by side, as numbers often are), date (naive datetime, as µs since 1970), bool,
# str (a list), oid (ObjectIds, none null: their 12 bytes each, one after the other), none (all null)
# or list (anything else, values as decoded).
_ARRAY_KINDS = {float: "float", int: "int", Int64: "int64", datetime.datetime: "date", bool: "bool"}
_NONE = type(None)
_NUMBERS = {int, float, Int64}
_EPOCH = datetime.datetime(1970, 1, 1)  # naive: pymongo's datetimes are naive UTC unless tz_aware
_TZINFO = operator.attrgetter("tzinfo")
# What an array holds where a value is None (its null mask says so): 0, False, 1970-01-01.
_FILLERS: dict[str, Any] = {"int": 0, "int64": 0, "bool": False, "date": _EPOCH}
# Strings repeat (categories): the first copy is kept and shared, up to this many distinct ones
# per column, past which the field is free text and sharing saves nothing.
_SHARED_STRINGS = 10_000
# Kinds whose chunks `take` reorders as arrays (a "number" chunk keeps its ints apart: value by value).
_TAKEN_AS_ARRAYS = frozenset({"float", "int", "int64", "date", "bool"})
_TAKE_BATCH = 2_000


class Chunk:
    """One batch of a column's values: an array of one kind with its null mask, or a list."""

    __slots__ = ("kind", "data", "nulls", "size", "ints")

    def __init__(self, kind: str, data: Any, nulls: np.ndarray | None, size: int, ints: Any = None) -> None:
        self.kind = kind
        self.data = data  # ndarray (float64 / int64 / bool; date: int64 µs), list (str, list), bytes (oid), None
        self.nulls = nulls  # bool ndarray of the None positions in an array, or None for none at all
        self.size = size
        self.ints = ints  # number: (the ints' positions, their exact values, which are Int64); data has floats

    def tolist(self) -> list[Any]:
        if self.kind in ("str", "list"):
            return list(self.data)
        if self.kind == "none":
            return [None] * self.size
        if self.kind == "oid":
            return object_ids(self.data, range(0, 12 * self.size, 12))
        if self.kind == "date":
            values: list[Any] = [_EPOCH + datetime.timedelta(microseconds=us) for us in self.data.tolist()]
        elif self.kind == "int64":
            values = [Int64(number) for number in self.data.tolist()]
        else:
            values = self.data.tolist()
            if self.kind == "number":
                for index, number, int64 in zip(*(part.tolist() for part in self.ints)):
                    values[index] = Int64(number) if int64 else number
        if self.nulls is not None:
            for index in np.flatnonzero(self.nulls).tolist():
                values[index] = None
        return values


def typed_chunk(values: list[Any], shared: dict[str, str]) -> Chunk:
    """One batch's values as a chunk: an array where they share a float, int or naive-datetime type.
    (`source.rawbson` builds the same chunks from raw BSON without the values; its test holds it to this.)"""
    size = len(values)
    types = set(map(type, values))
    nullable = _NONE in types
    types.discard(_NONE)
    if not types:
        return Chunk("none", None, None, size)
    if types == {ObjectId} and not nullable:
        return Chunk("oid", b"".join([value.binary for value in values]), None, size)
    if types == {str}:
        if len(shared) < _SHARED_STRINGS:
            values = list(map(shared.setdefault, values, values))  # None is kept as None too
        return Chunk("str", values, None, size)
    nulls = _nulls(values) if nullable else None
    if len(types) > 1 and types <= _NUMBERS:
        return _numbers(values, nulls, size) or Chunk("list", values, None, size)
    kind = _ARRAY_KINDS.get(next(iter(types))) if len(types) == 1 else None
    if kind == "float":
        # fromiter, not np.array: no discovery of each value's type and shape (7 % of the loader's instructions).
        filled = values if nulls is None else _filled(values, nulls, np.nan)
        return Chunk(kind, np.fromiter(filled, dtype=np.float64, count=size), nulls, size)  # None is NaN
    if kind is not None:
        chunk = _array(kind, values if nulls is None else _filled(values, nulls, _FILLERS[kind]), nulls, size)
        if chunk is not None:
            return chunk
    return Chunk("list", values, None, size)


def _nulls(values: list[Any]) -> np.ndarray:
    return np.fromiter(map(operator.is_, values, itertools.repeat(None)), dtype=bool, count=len(values))


def _numbers(values: list[Any], nulls: np.ndarray | None, size: int) -> Chunk | None:
    """ints and floats: float64 as to_number reads them, and each int's exact value, to give it back."""
    positions = [index for index, value in enumerate(values) if type(value) is not float and value is not None]
    try:
        exact = np.array([values[index] for index in positions], dtype=np.int64)
        data = np.array(values, dtype=np.float64)
    except OverflowError:
        return None
    int64 = np.array([type(values[index]) is Int64 for index in positions], dtype=bool)
    return Chunk("number", data, nulls, size, (np.array(positions, dtype=np.int64), exact, int64))


def _filled(values: list[Any], nulls: np.ndarray, filler: Any) -> list[Any]:
    """A copy of the values with `filler` where they are None (the array's value there; `nulls` says which)."""
    filled = list(values)
    for index in np.flatnonzero(nulls).tolist():
        filled[index] = filler
    return filled


def _array(kind: str, values: list[Any], nulls: np.ndarray | None, size: int) -> Chunk | None:
    """ints, booleans or naive datetimes (None already replaced by a filler) as an array; None if they
    do not fit in int64."""
    if kind == "date":
        if not all(map(operator.is_, map(_TZINFO, values), itertools.repeat(None))):
            return None  # aware datetimes (a tz_aware client) are kept as they are
        # The µs from the difference's parts: exact, without timedelta division's detour through Python ints.
        data = np.fromiter(
            [
                (since := moment - _EPOCH).days * 86_400_000_000 + since.seconds * 1_000_000 + since.microseconds
                for moment in values
            ],
            dtype=np.int64,
            count=size,
        )
    else:
        try:
            data = np.fromiter(values, dtype=bool if kind == "bool" else np.int64, count=size)
        except OverflowError:  # an int beyond int64: kept as decoded
            return None
    return Chunk(kind, data, nulls, size)


class Column(Sequence[Any]):
    """The values of one field across the loaded documents, in order (None = absent or null).

    A sequence like the list it replaces (len, index, slice, iterate, ==, append); `floats()`,
    `strings()` and `microseconds()` give the typed arrays when every value has that type.
    """

    __slots__ = ("_chunks", "_ends", "_size", "_shared", "_tail")
    SHARED_STRINGS = _SHARED_STRINGS

    def __init__(self, values: Iterable[Any] = ()) -> None:
        self._chunks: list[Chunk] = []
        self._ends: list[int] = []  # where each chunk ends: an index is found by bisection
        self._size = 0
        self._shared: dict[str, str] = {}
        self._tail: list[Any] | None = None  # values appended one by one, typed when the next batch comes
        values = list(values)
        if values:
            self.add_batch(values)

    def add_batch(self, values: list[Any]) -> None:
        """The next batch of values (the list is kept, not copied, where it is not typed)."""
        self._seal()
        if values:
            self._chunks.append(typed_chunk(values, self._shared))
            self._size += len(values)
            self._ends.append(self._size)

    def add_chunk(self, chunk: Chunk) -> None:
        """The next batch, already a chunk (as `typed_chunk` makes it; its strings shared through `shared`)."""
        self._seal()
        if chunk.size:
            self._chunks.append(chunk)
            self._size += chunk.size
            self._ends.append(self._size)

    @property
    def shared(self) -> dict[str, str]:
        """The column's strings, each kept once (up to SHARED_STRINGS of them)."""
        return self._shared

    def append(self, value: Any) -> None:
        if self._tail is None:
            self._tail = []
        self._tail.append(value)
        self._size += 1

    def _seal(self) -> None:
        if self._tail:
            tail, self._tail = self._tail, None
            self._chunks.append(typed_chunk(tail, self._shared))
            self._ends.append(self._size)

    def __len__(self) -> int:
        return self._size

    def __iter__(self) -> Iterator[Any]:
        self._seal()
        for chunk in self._chunks:
            yield from chunk.tolist()

    def tolist(self) -> list[Any]:
        self._seal()
        return [value for chunk in self._chunks for value in chunk.tolist()]

    @overload
    def __getitem__(self, index: int) -> Any: ...
    @overload
    def __getitem__(self, index: slice) -> list[Any]: ...
    def __getitem__(self, index: int | slice) -> Any:
        if isinstance(index, slice):
            start, stop, step = index.indices(self._size)
            if step != 1 or stop <= start:
                return self.tolist()[index]
            self._seal()
            first = bisect.bisect_right(self._ends, start)  # only the chunks that hold the slice's values
            last = bisect.bisect_left(self._ends, stop)
            offset = self._ends[first - 1] if first else 0
            values = [value for chunk in self._chunks[first : last + 1] for value in chunk.tolist()]
            return values[start - offset : stop - offset]
        position = operator.index(index)
        if position < 0:
            position += self._size
        if not 0 <= position < self._size:
            raise IndexError("Column index out of range")
        self._seal()
        at = bisect.bisect_right(self._ends, position)
        return _one(self._chunks[at], position - (self._ends[at - 1] if at else 0))

    def __eq__(self, other: object) -> bool:
        if isinstance(other, (Column, list, tuple)):
            return len(self) == len(other) and self.tolist() == list(other)
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]  # mutable, as the list it stands for

    def __add__(self, other: object) -> Column:
        """This column's values, then `other`'s (a Column or a list), as list + list gives (the chunks are shared)."""
        if not isinstance(other, (Column, list, tuple)):
            return NotImplemented
        joined = Column()
        for part in (self, other if isinstance(other, Column) else Column(other)):
            part._seal()
            for chunk in part._chunks:
                joined._chunks.append(chunk)
                joined._size += chunk.size
                joined._ends.append(joined._size)
        return joined

    def __radd__(self, other: object) -> Column:
        if not isinstance(other, (list, tuple)):
            return NotImplemented
        return Column(other) + self

    def __repr__(self) -> str:
        shown = self[:5]
        return f"Column({shown!r}{' ...' if self._size > 5 else ''}, {self._size} values)"

    def take(self, positions: Sequence[int] | np.ndarray) -> Column:
        """A column of the values at `positions`, in that order."""
        oids = self.object_id_bytes()
        if oids is not None:  # 12 bytes a value, reordered by numpy
            rows = oids[np.asarray(positions, dtype=np.int64)]
            taken = Column()
            for start in range(0, len(rows), _TAKE_BATCH):
                part = rows[start : start + _TAKE_BATCH]
                taken.add_chunk(Chunk("oid", part.tobytes(), None, len(part)))
            return taken
        kinds = self._kinds() - {"none"}
        if len(kinds) == 1 and next(iter(kinds)) in _TAKEN_AS_ARRAYS:  # one array type: numpy, no value objects
            return self._take_arrays(next(iter(kinds)), np.asarray(positions, dtype=np.int64))
        values = self.tolist()
        taken = Column()
        taken._shared = self._shared
        for start in range(0, len(positions), _TAKE_BATCH):
            taken.add_batch([values[i] for i in positions[start : start + _TAKE_BATCH]])
        return taken

    def _take_arrays(self, kind: str, positions: np.ndarray) -> Column:
        """`take` for a column of one array kind (and all-null batches): the arrays reordered, cut in batches."""
        dtype, blank = {"float": (np.float64, np.nan), "bool": (bool, False)}.get(kind, (np.int64, 0))
        data = np.concatenate([np.full(c.size, blank, dtype) if c.kind == "none" else c.data for c in self._chunks])
        data = data[positions]
        nulls = None
        if any(chunk.nulls is not None or chunk.kind == "none" for chunk in self._chunks):
            nulls = np.concatenate([_null_mask(chunk) for chunk in self._chunks])[positions]
        taken = Column()
        for start in range(0, len(positions), _TAKE_BATCH):
            size = min(_TAKE_BATCH, len(positions) - start)
            part = None if nulls is None else nulls[start : start + size]
            if part is not None and part.all():
                chunk = Chunk("none", None, None, size)
            else:
                chunk = Chunk(kind, data[start : start + size], part if part is not None and part.any() else None, size)
            taken._chunks.append(chunk)
            taken._size += size
            taken._ends.append(taken._size)
        return taken

    def _kinds(self) -> set[str]:
        self._seal()
        return {chunk.kind for chunk in self._chunks}

    def floats(self) -> np.ndarray | None:
        """float64 of every value (None as NaN, an int as float() reads it; a float's bits kept),
        or None when some value is not a float or int (text, a boolean, a sub-document...)."""
        if not self._kinds() <= {"float", "int", "int64", "number", "none"}:
            return None
        parts = []
        for chunk in self._chunks:
            if chunk.kind == "none":
                parts.append(np.full(chunk.size, np.nan))
                continue
            part = chunk.data.astype(np.float64)  # a copy: the caller may write into it
            if chunk.nulls is not None:
                part[chunk.nulls] = np.nan
            parts.append(part)
        return np.concatenate(parts) if parts else np.empty(0)

    def strings(self) -> list[str | None] | None:
        """Every value, when each is a string or None; else None."""
        if not self._kinds() <= {"str", "none"}:
            return None
        return self.tolist()

    def object_id_bytes(self) -> np.ndarray | None:
        """The 12 bytes of every value, one row each (uint8), when every value is an ObjectId; else None."""
        if self._kinds() != {"oid"}:
            return None
        return np.frombuffer(b"".join(chunk.data for chunk in self._chunks), dtype=np.uint8).reshape(-1, 12)

    def integers(self) -> tuple[np.ndarray, np.ndarray] | None:
        """(int64 values, null mask) when every value is an int (or bson Int64) or None; else None."""
        if not self._kinds() <= {"int", "int64", "none"}:
            return None
        return self._with_nulls()

    def booleans(self) -> tuple[np.ndarray, np.ndarray] | None:
        """(bool values, null mask) when every value is a boolean or None; else None."""
        if not self._kinds() <= {"bool", "none"}:
            return None
        return self._with_nulls(bool)

    def microseconds(self) -> tuple[np.ndarray, np.ndarray] | None:
        """(µs since 1970 as int64, null mask) when every value is a naive datetime or None; else None."""
        if not self._kinds() <= {"date", "none"}:
            return None
        return self._with_nulls()

    def _with_nulls(self, dtype: Any = np.int64) -> tuple[np.ndarray, np.ndarray]:
        values = [np.zeros(c.size, dtype) if c.kind == "none" else c.data for c in self._chunks]
        nulls = [
            np.ones(c.size, bool) if c.kind == "none" else c.nulls if c.nulls is not None else np.zeros(c.size, bool)
            for c in self._chunks
        ]
        if not values:
            return np.empty(0, dtype), np.empty(0, bool)
        return np.concatenate(values), np.concatenate(nulls)


def _null_mask(chunk: Chunk) -> np.ndarray:
    if chunk.kind == "none":
        return np.ones(chunk.size, dtype=bool)
    return chunk.nulls if chunk.nulls is not None else np.zeros(chunk.size, dtype=bool)


def _one(chunk: Chunk, position: int) -> Any:
    if chunk.kind == "none" or (chunk.nulls is not None and chunk.nulls[position]):
        return None
    if chunk.kind in ("str", "list"):
        return chunk.data[position]
    if chunk.kind == "oid":
        return object_ids(chunk.data, (12 * position,))[0]
    if chunk.kind == "number":
        at = int(np.searchsorted(chunk.ints[0], position))
        if at < len(chunk.ints[0]) and chunk.ints[0][at] == position:
            return (Int64 if chunk.ints[2][at] else int)(chunk.ints[1][at])
    number = chunk.data[position].item()
    if chunk.kind == "date":
        return _EPOCH + datetime.timedelta(microseconds=number)
    return Int64(number) if chunk.kind == "int64" else number
