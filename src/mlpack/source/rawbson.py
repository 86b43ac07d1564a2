"""Raw BSON batches read straight into typed columns: one columnar pass with numpy, no dict per document.

pymongo's C decoder turns every document into a dict (a key string, a hash and an entry per field, a
dict per sub-document), which was half of what loading cost, and the columns were then read out of
those dicts. Here a batch is walked element by element for all its documents at once: numpy arrays
hold each document's position, the keys are matched by their bytes, and each projected field's
values are taken from the bytes where they lie, into the very chunks (kind, array, null mask) that
`columns.typed_chunk` makes of the decoded values (`source.rawchunks`).

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

from mlpack.source import rawchunks
from mlpack.source.columns import Column
from mlpack.source.rawchunks import (
    AT_A_PATH,
    BOOLEAN,
    DATE,
    DOCUMENT,
    DOUBLE,
    INT32,
    INT64,
    LOW_BITS,
    NULL,
    OBJECT_ID,
    STRING,
    Views,
)

_FIXED = np.full(256, -1, dtype=np.int64)  # the size of a value of each type, where it is fixed
_FIXED[[DOUBLE, OBJECT_ID, BOOLEAN, DATE, NULL, INT32, INT64]] = [8, 12, 1, 8, 0, 4, 8]
# datetime's range in ms since 1970: pymongo refuses a date outside it (InvalidBSON)
_FIRST_MS = (datetime.datetime(1, 1, 1) - datetime.datetime(1970, 1, 1)) // datetime.timedelta(milliseconds=1)
_LAST_MS = (datetime.datetime(9999, 12, 31, 23, 59, 59, 999000) - datetime.datetime(1970, 1, 1)) // datetime.timedelta(
    milliseconds=1
)
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
        self.allowed[list(AT_A_PATH) if self.sinks else [NULL]] = True
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
        views = Views(buffer)
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
                chunk = rawchunks.chunk(node.found, node.offsets, views, batch, column.shared)
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


def _walk(views: Views, root: _Node, rows: np.ndarray, pos: np.ndarray, end: np.ndarray) -> bool:
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
        words[row] = np.where(ended, np.uint64(0), word & LOW_BITS[length])
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
    views: Views,
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
