"""Which documents a build trained on, compactly: a Bloom filter of the training rows' `_id`s.

The build records it in the registry (never in an artifact); a later build comparing itself with this
one as its champion (training/champion.py) leaves out of the comparison the test rows the champion
trained on, so that the champion is not scored in-sample. A Bloom filter has no false negatives: a
trained-on row is always left out; a false positive (about 1 % of rows, the rate recorded) only leaves
out a row the champion never saw.

Each id is hashed from a canonical byte form (a type tag, then an ObjectId's 12 bytes, an int's decimal
digits, a string's UTF-8, anything else its BSON) with blake2b, never Python's hash() (seeded per
process): the filter's bytes are the same in every process. Its HASHES positions come from the 128-bit
digest by double hashing (h1 + i·h2 mod bits).
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import bson
import numpy as np
from bson import Binary, ObjectId

TARGET_RATE = 0.01  # the false-positive rate a filter is sized for
MAX_BYTES = 4 * 1024 * 1024  # the cap: a registry document is at most 16 MB
MIN_BITS = 64
SCHEME = "blake2b-128 double hashing v1"  # what a reader checks before trusting the bits
_CHUNK = 16_384  # ids hashed at a time: their Python objects and positions are never all made at once


def canonical(value: Any) -> bytes:
    """The bytes an id is hashed from: a type tag, so that the int 1 and the string "1" differ."""
    if isinstance(value, ObjectId):
        return b"o" + value.binary
    if isinstance(value, int) and not isinstance(value, bool):
        return b"i" + str(int(value)).encode()
    if isinstance(value, str):
        return b"s" + value.encode("utf-8", "surrogatepass")
    return b"b" + bson.encode({"": value})


@dataclass(frozen=True)
class Seen:
    """A Bloom filter of ids: `bits` bits (little-endian in each byte), `hashes` positions per id."""

    data: bytes
    bits: int
    hashes: int
    ids: int  # how many ids went in
    rate: float  # its false-positive rate at that many ids

    def contains(self, ids: Iterable[Any]) -> np.ndarray:
        """For each id, whether it may have gone in (False: it certainly did not)."""
        array = np.frombuffer(self.data, dtype=np.uint8)
        found = [_all_set(array, self._positions(keys)) for keys in _chunks(ids)]
        return np.concatenate(found) if found else np.zeros(0, dtype=bool)

    def _positions(self, keys: list[bytes]) -> np.ndarray:
        digests = b"".join(hashlib.blake2b(key, digest_size=16).digest() for key in keys)
        halves = np.frombuffer(digests, dtype="<u8").reshape(-1, 2)
        first, step = halves[:, :1], halves[:, 1:] | np.uint64(1)
        rounds = np.arange(self.hashes, dtype=np.uint64)[None, :]
        with np.errstate(over="ignore"):  # uint64 arithmetic wraps, as the scheme means it to
            return (first + rounds * step) % np.uint64(self.bits)

    def document(self) -> dict[str, Any]:
        """The registry's form: BSON binary and the parameters to read it."""
        return {
            "scheme": SCHEME,
            "bloom": Binary(self.data),
            "bits": self.bits,
            "hashes": self.hashes,
            "ids": self.ids,
            "false_positive_rate": round(self.rate, 6),
        }


def sized(count: int) -> tuple[int, int]:
    """(bits, hashes) for `count` ids at TARGET_RATE, the bits capped at MAX_BYTES."""
    wanted = math.ceil(-max(count, 1) * math.log(TARGET_RATE) / math.log(2) ** 2)
    bits = min(max(MIN_BITS, -(-wanted // 8) * 8), MAX_BYTES * 8)
    hashes = max(1, round(bits / max(count, 1) * math.log(2)))
    return bits, hashes


def of(ids: Sequence[Any], rows: np.ndarray) -> Seen:
    """The filter of the ids at `rows` (a loaded Column's own `take` keeps ObjectIds as 12 bytes each)."""
    bits, hashes = sized(len(rows))
    empty = Seen(b"", bits, hashes, 0, 0.0)
    array = np.zeros(bits // 8, dtype=np.uint8)
    for keys in _chunks(_keys(ids, rows), made=True):
        positions = empty._positions(keys).ravel()
        at, bit = positions >> np.uint64(3), (positions & np.uint64(7)).astype(np.uint8)
        del positions  # a chunk's temporaries are a few MB each: not all held at once
        np.bitwise_or.at(array, at, np.left_shift(np.uint8(1), bit))
    count = len(rows)
    rate = (1 - math.exp(-hashes * count / bits)) ** hashes if count else 0.0
    return Seen(array.tobytes(), bits, hashes, count, rate)


def read(document: Mapping[str, Any] | None) -> Seen | None:
    """A registry record's filter, or None when it has none (or one of a scheme this code cannot read)."""
    if not isinstance(document, Mapping) or document.get("scheme") != SCHEME:
        return None
    data, bits, hashes = bytes(document.get("bloom") or b""), document.get("bits"), document.get("hashes")
    if not isinstance(bits, int) or not isinstance(hashes, int) or bits <= 0 or hashes <= 0 or len(data) * 8 != bits:
        return None
    return Seen(data, bits, hashes, int(document.get("ids") or 0), float(document.get("false_positive_rate") or 0.0))


def _keys(ids: Sequence[Any], rows: np.ndarray) -> Iterator[bytes]:
    """The canonical bytes of the ids at `rows`. A loaded Column of ObjectIds gives its 12 bytes a value
    (no ObjectId made), one of integers its int64 array; anything else is read value by value. The rows
    are taken _CHUNK at a time: at a million documents a Python int for every training row at once
    (`tolist()`, 29 MiB) was the build's peak, beside the dataset and its split."""
    parts = [rows[start : start + _CHUNK] for start in range(0, len(rows), _CHUNK)]
    oids = ids.object_id_bytes() if hasattr(ids, "object_id_bytes") else None
    if oids is not None:
        for part in parts:
            yield from (b"o" + row.tobytes() for row in oids[part])
        return
    integers = ids.integers() if hasattr(ids, "integers") else None
    if integers is not None and not integers[1].any():
        for part in parts:
            yield from (b"i" + str(value).encode() for value in integers[0][part].tolist())
        return
    values = ids.tolist() if hasattr(ids, "tolist") else ids
    for part in parts:
        yield from (canonical(values[row]) for row in part.tolist())


def _chunks(ids: Iterable[Any], *, made: bool = False) -> Iterator[list[bytes]]:
    """The ids' canonical bytes, _CHUNK at a time (`made`: they are bytes already)."""
    keys: list[bytes] = []
    for value in ids:
        keys.append(value if made else canonical(value))
        if len(keys) == _CHUNK:
            yield keys
            keys = []
    if keys:
        yield keys


def _all_set(array: np.ndarray, positions: np.ndarray) -> np.ndarray:
    bytes_at = array[(positions >> np.uint64(3)).astype(np.int64)]
    set_bits = (bytes_at >> (positions & np.uint64(7)).astype(np.uint8)) & 1
    return np.asarray(set_bits.all(axis=1), dtype=bool)


__all__ = ["MAX_BYTES", "TARGET_RATE", "Seen", "canonical", "of", "read", "sized"]
