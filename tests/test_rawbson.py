"""Raw BSON read straight into columns (source.rawbson) against pymongo's decoding read by the batch reader.

The loader takes a server's raw batches through `RawBatches.add` and hands a batch to pymongo and the
per-batch reader when that returns False. Held here to the old path on every input: generated documents
(nested, gaps, nulls, numeric strings, booleans, dates, one-letter and accented words, mixed types,
arrays), crafted ones (duplicate keys, out-of-range dates, bad booleans) and corrupted bytes. The columns,
their chunks (kinds, arrays, null masks), `present`, and what validation makes of them or says of them
must be the same; malformed bytes must raise pymongo's own error.
"""

from __future__ import annotations

import datetime as dt
import math
import pickle
import random
import struct
from typing import Any

import bson
import numpy as np
import pytest
from bson import ObjectId
from bson.codec_options import CodecOptions
from bson.decimal128 import Decimal128
from bson.int64 import Int64
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mlpack.config import FeaturesSection
from mlpack.source import RawColumns
from mlpack.source.columns import Column
from mlpack.source.rawbson import RawBatches, fits
from tests.helpers.columns import PATHS, UTC, assert_same_columns, messy, same, validation_outcome

OPTIONS = CodecOptions()


def _old(batches: list[bytes], paths: list[str]) -> Any:
    raw = RawColumns.of(paths)
    try:
        for batch in batches:
            raw.add(bson.decode_all(batch, OPTIONS), projected=True)
    except Exception as exc:  # noqa: BLE001 - the error itself is what the new path must give
        return (type(exc), str(exc))
    return raw


def _new(batches: list[bytes], paths: list[str]) -> tuple[Any, list[bool]]:
    """The loader's loop (mongo._read): rawbson, else pymongo; and which batches rawbson read."""
    raw, fast, taken = RawColumns.of(paths), RawBatches(paths), []
    try:
        for batch in batches:
            taken.append(fast.add(batch, raw.ids, raw.values, raw.present))
            if not taken[-1]:
                raw.add(bson.decode_all(batch, OPTIONS), projected=True)
    except Exception as exc:  # noqa: BLE001
        return (type(exc), str(exc)), taken
    return raw, taken


def _same_chunks(new: Column, old: Column) -> None:
    assert len(new._chunks) == len(old._chunks)
    for a, b in zip(new._chunks, old._chunks, strict=True):
        assert (a.kind, a.size) == (b.kind, b.size)
        assert (a.nulls is None) == (b.nulls is None) and (a.nulls is None or (a.nulls == b.nulls).all())
        if isinstance(b.data, np.ndarray):
            assert a.data.dtype == b.data.dtype and a.data.tobytes() == b.data.tobytes()
        else:
            assert (a.data is None) == (b.data is None)
            assert b.data is None or all(same(x, y) for x, y in zip(a.data, b.data, strict=True))
        if b.ints is not None:
            assert all(x.dtype == y.dtype and (x == y).all() for x, y in zip(a.ints, b.ints, strict=True))


def assert_both_read(batches: list[bytes], paths: list[str] = PATHS) -> list[bool]:
    old = _old(batches, paths)
    new, taken = _new(batches, paths)
    if isinstance(old, tuple):
        assert new == old  # the same error, from pymongo
        return taken
    assert isinstance(new, RawColumns)
    assert_same_columns(new, old)
    for path in ["", *paths]:
        _same_chunks(new.values[path] if path else new.ids, old.values[path] if path else old.ids)
    return taken


def batches_of(documents: list[Any], sizes: list[int]) -> list[bytes]:
    encoded = [doc if isinstance(doc, bytes) else bson.encode(doc) for doc in documents]
    batches, at = [], 0
    for size in [*sizes, len(encoded)]:
        if at < len(encoded):
            batches.append(b"".join(encoded[at : at + max(1, size)]))
            at += max(1, size)
    return batches


def projected(document: dict[str, Any], paths: list[str]) -> dict[str, Any]:
    """What a projection on `paths` returns of the document (sub-documents cut down to the paths in them)."""
    parts = [path.split(".") for path in paths]

    def cut(node: dict[str, Any], depth: int, under: list[list[str]]) -> dict[str, Any]:
        kept = {}
        for key, value in node.items():
            below = [p for p in under if p[depth] == key]
            if (depth == 0 and key == "_id") or any(len(p) == depth + 1 for p in below):
                kept[key] = value
            elif below:
                kept[key] = cut(value, depth + 1, below) if isinstance(value, dict) else value
        return kept

    return cut(document, 0, parts)


# -- generated documents -------------------------------------------------------------------------
words = st.text(alphabet="abzéüßøçñ日 -", max_size=6)
clean = st.one_of(  # what rawbson reads itself
    st.none(),
    st.floats(allow_nan=True, allow_infinity=True),
    st.integers(-(2**31), 2**31 - 1),
    st.integers(-(2**63), 2**63 - 1).map(Int64),
    st.booleans(),
    words,
    st.sampled_from(["NA", " 54 ", "", "1e3", "04", "a", "é", "x" * 70, "a\x00", "\x00", "abcdefgh\x00"]),
    st.datetimes(min_value=dt.datetime(1, 1, 1), max_value=dt.datetime(9999, 12, 31, 23, 59, 59, 999000)),
    st.builds(ObjectId, st.binary(min_size=12, max_size=12)),
)
dirty = st.one_of(  # what it leaves to pymongo
    st.sampled_from([{"$numberInt": "3"}, [1, "a"], [], Decimal128("1.5"), b"\x00bin", {"b": 1}]),
    st.datetimes(timezones=st.just(UTC)),
)
one_type = st.sampled_from(
    [
        st.floats(),
        st.integers(-(2**31), 2**31 - 1),
        st.integers(-(2**63), 2**63 - 1).map(Int64),
        st.booleans(),
        words,
        st.sampled_from(["p", "q", "ré", "p\x00", "p" * 8, "p" * 8 + "\x00", "p" * 9, "p" * 7 + "q", "p" * 15 + "q"]),
        st.datetimes(min_value=dt.datetime(1900, 1, 1), max_value=dt.datetime(2100, 1, 1)),
    ]
)


@st.composite
def documents(draw: Any, value: Any, shaped: bool) -> dict[str, Any]:
    """`shaped`: only keys the paths name, a sub-document or null at a parent (what rawbson reads itself)."""
    document: dict[str, Any] = {}
    if draw(st.booleans()):
        document["_id"] = draw(st.one_of(st.integers(0, 10**6), clean))
    keys = ["n", "f", "c", "when", "label", "text", "a", "dotted"] + ([] if shaped else ["dotted.key", "other"])
    parent = st.none() if shaped else st.one_of(st.none(), value)
    for key in draw(st.permutations(keys)):
        if draw(st.integers(0, 4)) == 0:
            continue  # absent
        if key == "a":
            below = st.fixed_dictionaries({}, optional={"d": value})
            inner = st.fixed_dictionaries({}, optional={"b": value, "c": st.one_of(parent, below)})
            document["a"] = draw(st.one_of(parent, inner))
        elif key == "dotted":
            document["dotted"] = draw(st.one_of(parent, st.fixed_dictionaries({}, optional={"key": value})))
        else:
            document[key] = draw(value)
    return document


FEATURES = FeaturesSection(
    numeric=["n", "f", "a.b"],
    categorical=["c", "a.c.d", "dotted.key"],
    datetime=["when"],
    text=["text"],
    target="label",
)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_generated_documents_read_as_pymongo_and_the_batch_reader_read_them(data: Any) -> None:
    kind = data.draw(st.sampled_from(["clean", "one type", "dirty"]))
    value = {"clean": clean, "one type": data.draw(one_type), "dirty": st.one_of(clean, dirty)}[kind]
    docs = data.draw(st.lists(documents(value, kind != "dirty"), max_size=30))
    batches = batches_of(docs, data.draw(st.lists(st.integers(1, 12), max_size=4)))
    taken = assert_both_read(batches)
    if kind != "dirty":
        assert all(taken)  # the documents rawbson must read itself, it does
    for task in ("classification", "regression"):
        new, old = _new(batches, FEATURES.loaded)[0], _old(batches, FEATURES.loaded)
        assert validation_outcome(new, FEATURES, task) == validation_outcome(old, FEATURES, task)


def test_a_large_generated_collection_is_read_by_rawbson_and_gives_the_same_columns_and_dataset() -> None:
    """messy(): runs of one type per field broken by mixed stretches, ObjectIds and ints as ids."""
    documents = [d for d in messy(12_000, storable=True) if d.get("label") is not None]
    for index, document in enumerate(documents):
        document.pop("dotted.key", None)  # a literal dotted key: a projection never returns one
        if index < 6_000 and not isinstance(document.get("a"), dict):
            document["a"] = None  # a parent that is a number or a list: left to pymongo (the later batches)
    taken = assert_both_read(batches_of([projected(d, PATHS) for d in documents], [2_000] * 10))
    assert taken[0] and not all(taken)  # both paths, in one load
    features = FeaturesSection(numeric=["f", "a.b"], categorical=["c", "a.c.d"], datetime=["when"], target="label")
    clean = [
        projected(d, features.loaded)
        for d in documents
        if type(d.get("c")) is str
        and type(d.get("when")) is dt.datetime
        and isinstance(d.get("a", {}), (dict, type(None)))
    ]
    batches = batches_of(clean, [500] * 20)
    assert all(_new(batches, features.loaded)[1])
    for task in ("classification", "regression"):
        assert validation_outcome(_new(batches, features.loaded)[0], features, task) == validation_outcome(
            _old(batches, features.loaded), features, task
        )


# -- crafted and corrupted bytes ------------------------------------------------------------------
def _document(*elements: bytes) -> bytes:
    body = b"".join(elements) + b"\x00"
    return struct.pack("<i", len(body) + 4) + body


def _int32(key: str, number: int) -> bytes:
    return b"\x10" + key.encode() + b"\x00" + struct.pack("<i", number)


@pytest.mark.parametrize(
    "elements",
    [
        [_int32("n", 1), _int32("n", 2)],  # a duplicate key: pymongo keeps the last
        [b"\x03a\x00" + _document(_int32("b", 1)), b"\x03a\x00" + _document(_int32("c", 2))],  # a duplicate parent
        [b"\x03a\x00" + _document(_int32("b", 1), _int32("b", 3))],
        [b"\x03a\x00" + _document(_int32("b", 1)), b"\x0aa\x00"],  # the last a is null: a.b is absent
        [b"\x03a\x00" + _document(_int32("b", 1)), b"\x03a\x00" + _document()],
        [b"\x08label\x00\x02"],  # not a boolean: InvalidBSON
        [b"\x09when\x00" + struct.pack("<q", 253402300800000)],  # past datetime's range: InvalidBSON
        [b"\x09when\x00" + struct.pack("<q", -62135596800001)],
        [b"\x09when\x00" + struct.pack("<q", 253402300799999)],  # the last date there is
        [b"\x02c\x00" + struct.pack("<i", 2) + b"\xff\x00"],  # not UTF-8
        [b"\x02c\x00" + struct.pack("<i", 4) + b"\xed\xa0\x80\x00"],  # a surrogate
        [b"\x02c\x00" + struct.pack("<i", 3) + b"a\x00\x00"],  # a zero byte inside a string
        [b"\x02c\x00" + struct.pack("<i", 0)],
        [b"\x99n\x00"],  # no BSON type
        [_int32("nn", 1)],  # a key no path names
        [_int32("ab", 1), b"\x03a\x00" + _document(b"\x01b\x00" + struct.pack("<d", math.nan))],
        [b"\x0aa\x00", _int32("n", 5)],  # a null parent
        [b"\x10" + b"k" * 40 + b"\x00" + struct.pack("<i", 1)],  # a long key
    ],
)
def test_crafted_documents_read_as_pymongo_reads_them(elements: list[bytes]) -> None:
    plain = _document(_int32("_id", 7), _int32("n", 3))
    assert_both_read([plain + _document(*elements) + plain])


def test_corrupted_batches_give_pymongos_error_or_the_same_columns() -> None:
    rng = random.Random(23)
    simple = (int, float, str, bool, dt.datetime, type(None))
    documents = [projected(d, PATHS) for d in messy(300, storable=True)]
    clean = [
        d
        for d in documents
        if isinstance(d.get("a", {}), dict) and all(type(v) in simple or k == "a" for k, v in d.items())
    ]
    good = b"".join(bson.encode(d) for d in clean[:40])
    assert assert_both_read([good]) == [True]
    for _ in range(600):
        batch = bytearray(good)
        for _ in range(rng.randint(1, 3)):
            where = rng.randrange(len(batch))
            if rng.random() < 0.2:
                batch = batch[:where]  # cut short
            elif batch:
                batch[where] = rng.choice([0, 1, 2, 3, 8, 9, 10, 16, 18, 0x7F, 0xFF, rng.randrange(256)])
        assert_both_read([bytes(batch)])


def test_after_a_batch_given_up_the_next_ones_are_left_to_pymongo_for_a_while() -> None:
    clean, dirty = bson.encode({"_id": 1, "n": 2}), bson.encode({"_id": 1, "n": Decimal128("2")})
    taken = assert_both_read([*[dirty] * 7, *[clean] * 6], ["n"])
    # tried at 0, 2 and 5 (given up each time), then 1, 2 and 4 batches untried: clean ones at 7 to 9
    assert taken == [False] * 10 + [True] * 3
    assert assert_both_read([dirty, clean, clean, dirty, clean, clean], ["n"]) == [False, False, True] * 2


def test_only_the_default_codec_options_are_read_here() -> None:
    assert fits(CodecOptions()) and not fits(CodecOptions(tz_aware=True))
    assert not fits(CodecOptions(unicode_decode_error_handler="replace"))


def test_object_ids_are_pymongos_objects() -> None:
    oids = [ObjectId(), ObjectId(b"\x00" * 12), ObjectId(b"\xff" * 12)]
    batch = b"".join(bson.encode({"_id": oid, "c": oid}) for oid in oids)
    raw = RawColumns.of(["c"])
    assert RawBatches(["c"]).add(batch, raw.ids, raw.values, raw.present)
    for read in (raw.ids.tolist(), raw.values["c"].tolist()):
        assert [type(o) for o in read] == [ObjectId] * 3 and read == oids
        assert [(hash(o), str(o), repr(o), o.binary, o.generation_time) for o in read] == [
            (hash(o), str(o), repr(o), o.binary, o.generation_time) for o in oids
        ]
        assert pickle.loads(pickle.dumps(read)) == oids and bson.decode(bson.encode({"x": read[0]}))["x"] == oids[0]
