"""Raw BSON batches read straight into typed columns: one columnar pass with numpy, no dict per document.

pymongo's C decoder turns every document into a dict (a key string, a hash and an entry per field, a
dict per sub-document), which was half of what loading cost, and the columns were then read out of
those dicts. Here a batch is walked element by element for all its documents at once: numpy arrays
hold each document's position, the keys are matched by their bytes, and each projected field's
values are taken from the bytes where they lie, into the very chunks (kind, array, null mask) that
`columns.typed_chunk` makes of the decoded values; mixed types and ObjectIds are decoded here into the
values pymongo gives and handed to `typed_chunk` itself.

It reads only what it reads exactly as pymongo decodes it and `lookup` reads it (the default codec
options: naive UTC datetimes, strict UTF-8, no type registry): keys that name a path or a parent of
one, each once per document; values that are doubles, strings, ObjectIds, booleans, dates in
datetime's range, nulls, int32 and int64 at a path; sub-documents or nulls at a parent. A batch
holding anything else (another type, a key no path names, a duplicate key, bytes that are no valid
BSON) is left to pymongo and the per-batch reader (`add` returns False, having changed nothing), so
the columns are today's on every input, and malformed BSON raises pymongo's own error.
"""

from __future__ import annotations

import datetime
import struct
from typing import Any

import numpy as np
from bson.codec_options import DEFAULT_CODEC_OPTIONS, CodecOptions
from bson.int64 import Int64
from bson.objectid import ObjectId

from mlpack.source.columns import Chunk, Column, typed_chunk

DOUBLE, STRING, DOCUMENT, OBJECT_ID, BOOLEAN, DATE, NULL, INT32, INT64 = 1, 2, 3, 7, 8, 9, 10, 16, 18
_AT_A_PATH = (DOUBLE, STRING, OBJECT_ID, BOOLEAN, DATE, NULL, INT32, INT64)
_FIXED = np.full(256, -1, dtype=np.int64)  # the size of a value of each type, where it is fixed
_FIXED[[DOUBLE, OBJECT_ID, BOOLEAN, DATE, NULL, INT32, INT64]] = [8, 12, 1, 8, 0, 4, 8]
# datetime's range in ms since 1970: pymongo refuses a date outside it (InvalidBSON)
_FIRST_MS = (datetime.datetime(1, 1, 1) - datetime.datetime(1970, 1, 1)) // datetime.timedelta(milliseconds=1)
_LAST_MS = (datetime.datetime(9999, 12, 31, 23, 59, 59, 999000) - datetime.datetime(1970, 1, 1)) // datetime.timedelta(
    milliseconds=1
)
_LOW_BITS = np.array([(1 << (8 * n)) - 1 for n in range(8)] + [2**64 - 1], dtype=np.uint64)  # the first n bytes
_ONES = np.uint64(0x0101010101010101)
_HIGHS = np.uint64(0x8080808080808080)
_ZERO_BYTE_BITS = np.array([1 << (8 * n + 7) for n in range(8)], dtype=np.uint64)
_SIZE = struct.Struct("<i").unpack_from


def fits(options: CodecOptions[Any]) -> bool:
    """Whether pymongo decodes with these options as this module reads (the default options)."""
    return options == DEFAULT_CODEC_OPTIONS


class _Node:
    """A key at one level of the paths: the path it ends (if any), the keys below it."""

    __slots__ = ("key", "sinks", "children", "kids", "allowed", "words", "hashes", "order", "found", "offsets")

    def __init__(self, key: bytes) -> None:
        self.key = key
        self.sinks: list[str] = []  # the paths (or "" for the ids) whose value this key holds
        self.children: dict[bytes, _Node] = {}
        self.allowed = np.zeros(256, dtype=bool)
        self.found = np.zeros(0, dtype=np.uint8)
        self.offsets = np.zeros(0, dtype=np.int64)

    def settle(self) -> None:
        """The lookup tables of the keys below: their bytes as 8-byte words, zero after the key."""
        self.allowed[list(_AT_A_PATH) if self.sinks else [NULL]] = True
        if self.children and not self.sinks:
            self.allowed[DOCUMENT] = True  # a sub-document only where no path ends: its value would be a dict
        keys = self.kids = list(self.children.values())
        width = max((len(child.key) for child in keys), default=0) // 8 + 1
        self.words = np.zeros((width, len(keys)), dtype=np.uint64)
        for index, child in enumerate(keys):
            padded = child.key + bytes(8 * width - len(child.key))
            self.words[:, index] = np.frombuffer(padded, dtype="<u8")
        hashes = _hash(self.words)
        self.order = np.argsort(hashes)
        self.hashes = hashes[self.order]
        for child in keys:
            child.settle()


def _hash(words: np.ndarray) -> np.ndarray:
    mixed = words[0].copy()
    for row in words[1:]:
        mixed = mixed * np.uint64(0x9E3779B97F4A7C15) + row
    return mixed


class RawBatches:
    """The columns of `paths` from raw batches (a server's answer to a projection on those paths)."""

    def __init__(self, paths: list[str]) -> None:
        self.root = _Node(b"")
        self.leaves: list[_Node] = []
        for sink, path in [("", "_id"), *((path, path) for path in paths)]:
            node = self.root
            for part in path.split("."):
                node = node.children.setdefault(part.encode(), _Node(part.encode()))
            if not node.sinks:
                self.leaves.append(node)
            node.sinks.append(sink)
        self.root.settle()
        self.nodes = list(_all(self.root))[1:]
        # zero bytes after a batch, so that a key's words read at any element start stay in the buffer
        self.pad = 8 * max(node.words.shape[0] for node in _all(self.root)) + 72
        self.skip, self.backoff = 0, 1

    def add(self, batch: bytes, ids: Column, values: dict[str, Column], present: dict[str, int]) -> bool:
        """The batch's documents appended to the columns; False (nothing changed) if pymongo must read it.

        A collection whose batches all hold what is not read here would pay for a walk given up on top
        of pymongo's decoding: after a batch given up, the next 1, 2, 4 ... 64 are left to pymongo
        untried (back to every batch once one is read)."""
        if self.skip:
            self.skip -= 1
            return False
        if self._add(batch, ids, values, present):
            self.backoff = 1
            return True
        self.skip, self.backoff = self.backoff, min(2 * self.backoff, 64)
        return False

    def _add(self, batch: bytes, ids: Column, values: dict[str, Column], present: dict[str, int]) -> bool:
        starts = _starts(batch)
        if starts is None:
            return False
        buffer = np.zeros(len(batch) + self.pad, dtype=np.uint8)
        buffer[: len(batch)] = np.frombuffer(batch, dtype=np.uint8)
        views = _Views(buffer)
        count = len(starts)
        begin = np.array(starts, dtype=np.int64)
        sizes = views.i32[begin].astype(np.int64)
        end = begin + sizes - 1  # a document's last byte: the walk finds its terminating zero there, or gives up
        for node in self.nodes:
            node.found = np.zeros(count, dtype=np.uint8)
            node.offsets = np.zeros(count, dtype=np.int64)
        if count and not _walk(views, self.root, np.arange(count), begin + 4, end):
            return False
        chunks = []
        for node in self.leaves:
            for sink in node.sinks:
                column = ids if sink == "" else values[sink]
                chunk = _chunk(node.found, node.offsets, views, batch, column.shared)
                if chunk is None:
                    return False
                chunks.append((column, sink, chunk, int(count - np.count_nonzero(node.found == 0))))
        for column, sink, chunk, found in chunks:  # nothing is appended before every column is read
            column.add_chunk(chunk)
            if sink:
                present[sink] += found
        return True


def _all(node: _Node) -> Any:
    yield node
    for child in node.children.values():
        yield from _all(child)


def _starts(batch: bytes) -> list[int] | None:
    """Where each document of the batch starts; None if their lengths do not tile it."""
    starts, at, total = [], 0, len(batch)
    while at < total:
        if total - at < 5:
            return None
        size = _SIZE(batch, at)[0]
        if size < 5 or size > total - at:
            return None
        starts.append(at)
        at += size
    return starts


class _Views:
    """The batch's bytes read as little-endian numbers starting at any byte (strided views, no copies)."""

    def __init__(self, buffer: np.ndarray) -> None:
        self.u8 = buffer
        size = len(buffer)
        self.i32 = np.ndarray((size - 3,), dtype="<i4", buffer=buffer, strides=(1,))
        self.i64 = np.ndarray((size - 7,), dtype="<i8", buffer=buffer, strides=(1,))
        self.u64 = np.ndarray((size - 7,), dtype="<u8", buffer=buffer, strides=(1,))
        self.f64 = np.ndarray((size - 7,), dtype="<f8", buffer=buffer, strides=(1,))


def _walk(views: _Views, root: _Node, rows: np.ndarray, pos: np.ndarray, end: np.ndarray) -> bool:
    """Every element of the documents (or sub-documents) `rows`, from `pos` to their final byte `end`,
    recorded in the nodes their keys name; False at anything this module does not read."""
    u8 = views.u8
    frames = [(root, rows, pos, end)]
    while frames:
        node, rows, pos, end = frames.pop()
        while rows.size:
            types = u8[pos]
            done = types == 0
            if done.any():
                if not (pos[done] == end[done]).all():
                    return False  # a zero type byte before the document's end
                rows, pos, end, types = rows[~done], pos[~done], end[~done], types[~done]
                if not rows.size:
                    break
            which = _keys(views.u64, node, pos)
            if which is None:
                return False
            if (which == which[0]).all():  # the usual step: every document has the same key here
                moved = _element(views, node.kids[which[0]], rows, types, pos, end, frames)
                if moved is None:
                    return False
                pos = moved
                continue
            after = pos.copy()
            for index in np.unique(which).tolist():
                part = np.flatnonzero(which == index)
                moved = _element(views, node.kids[index], rows[part], types[part], pos[part], end[part], frames)
                if moved is None:
                    return False
                after[part] = moved
            pos = after
    return True


def _keys(u64: np.ndarray, node: _Node, pos: np.ndarray) -> np.ndarray | None:
    """The index (in node.children) of the key of each element at `pos`; None if one is no child's key."""
    width = node.words.shape[0]
    if not width or not node.children:
        return None
    words = np.empty((width, pos.size), dtype=np.uint64)
    ended = np.zeros(pos.size, dtype=bool)  # the key's terminating zero byte is in an earlier word
    for row in range(width):
        word = u64[pos + 1 + 8 * row]
        zeros = (word - _ONES) & ~word & _HIGHS  # the lowest flagged byte is the word's first zero byte
        first = zeros & (~zeros + np.uint64(1))
        length = np.where(first == 0, 8, np.searchsorted(_ZERO_BYTE_BITS, first))  # 8: no zero byte in it
        words[row] = np.where(ended, np.uint64(0), word & _LOW_BITS[length])
        ended |= first != 0
    if not ended.all():
        return None  # a key longer than any the paths name
    hashes = _hash(words)
    at = np.minimum(np.searchsorted(node.hashes, hashes), len(node.hashes) - 1)
    which = node.order[at]
    if not (node.words[:, which] == words).all():
        return None
    return which


def _element(
    views: _Views,
    child: _Node,
    rows: np.ndarray,
    types: np.ndarray,
    pos: np.ndarray,
    end: np.ndarray,
    frames: list[Any],
) -> np.ndarray | None:
    """Records the elements of one key at `pos` (their types, where their values start) in its node, a
    sub-document as a frame to walk; where the elements end. None at a value pymongo would not decode so."""
    at = pos + (len(child.key) + 2)  # the type byte, the key and its terminating zero
    if not child.allowed[types].all() or (child.found[rows] != 0).any():  # another type, or the key twice
        return None
    size = _FIXED[types]
    variable = size < 0
    if variable.any():
        lengths = views.i32[np.where(variable, at, 0)].astype(np.int64)
        strings = types == STRING
        size = np.where(variable, lengths + 4 * strings, size)
        if ((lengths < 1) & strings).any() or ((lengths < 5) & (types == DOCUMENT)).any():
            return None
    moved = at + size
    if (moved > end).any() or (variable & (views.u8[np.where(variable, moved - 1, 0)] != 0)).any():
        return None
    booleans = types == BOOLEAN
    if booleans.any() and (views.u8[at[booleans]] > 1).any():
        return None  # pymongo: "invalid boolean value"
    dates = types == DATE
    if dates.any():
        milliseconds = views.i64[at[dates]]
        if ((milliseconds < _FIRST_MS) | (milliseconds > _LAST_MS)).any():
            return None
    child.found[rows] = types
    child.offsets[rows] = at
    documents = types == DOCUMENT
    if documents.any():
        frames.append((child, rows[documents], at[documents] + 4, moved[documents] - 1))
    return moved


def _chunk(found: np.ndarray, offsets: np.ndarray, views: _Views, batch: bytes, shared: dict[str, str]) -> Any:
    """The chunk `typed_chunk` makes of one path's decoded values, made from the bytes; None if a string is
    no valid UTF-8. The kinds are decided as there, from the types found (absent is 0, null NULL)."""
    size = len(found)
    counts = np.bincount(found, minlength=256)
    kinds = [code for code in _AT_A_PATH if code != NULL and counts[code]]
    nulls = (found == 0) | (found == NULL) if counts[0] or counts[NULL] else None
    if not kinds:
        return Chunk("none", None, None, size)
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
            decoded = _object_ids(batch, offsets[where].tolist())
        else:
            decoded = _python(code, _numbers(code, found, offsets, views)[1])
        for index, value in zip(where.tolist(), decoded, strict=True):
            values[index] = value
    return typed_chunk(values, shared)


def _object_ids(batch: bytes, starts: list[int]) -> list[ObjectId]:
    """The ObjectIds at `starts`. ObjectId(bytes) checks its argument's type and length (0.7 µs each here,
    the cost of a field); where ObjectId is still the class of one slot holding the 12 bytes, they are
    put there directly (0.3 µs): the same objects, equal, hashed and shown alike."""
    if ObjectId.__slots__ != ("__id",):
        return [ObjectId(batch[start : start + 12]) for start in starts]
    new, ids = object.__new__, []
    for start in starts:
        oid = new(ObjectId)
        oid._ObjectId__id = batch[start : start + 12]  # type: ignore[attr-defined]
        ids.append(oid)
    return ids


_KINDS = {DOUBLE: "float", INT32: "int", INT64: "int64", BOOLEAN: "bool", DATE: "date"}
_EPOCH = datetime.datetime(1970, 1, 1)


def _numbers(code: int, found: np.ndarray, offsets: np.ndarray, views: _Views) -> tuple[np.ndarray, np.ndarray]:
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
    found: np.ndarray, offsets: np.ndarray, views: _Views, batch: bytes, shared: dict[str, str]
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
        value = np.where(left > 0, u64[at + 8 * word], np.uint64(0)) & _LOW_BITS[left]
        codes = _rank(codes * np.uint64(len(at) + 1) + _rank(value))  # one code per (codes so far, this word)
    _, first, inverse = np.unique(codes, return_index=True, return_inverse=True)
    return first, inverse.reshape(-1)


def _rank(values: np.ndarray) -> np.ndarray:
    """Each value's rank among the distinct ones (as uint64): a small code standing for it exactly."""
    _, inverse = np.unique(values, return_inverse=True)
    return inverse.reshape(-1).astype(np.uint64)
