"""The loader's columnar path reads exactly what the per-document reading did (issue 23).

The old path read each document with the runtime's `lookup` and kept Python lists; validation
then read each value with `to_number` / `category_text` / `date_milliseconds`. The new path reads
a batch at a time into typed `Column`s and validates them with numpy. These tests hold the two
to the same result, value for value and bit for bit, on messy documents: nested, gaps, nulls,
NaN and -0.0, ints past int64, Extended JSON numbers, dirty strings, naive and aware dates,
literal dotted keys, parents that are no sub-document; through the real server too.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import random
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
from bson.decimal128 import Decimal128
from bson.int64 import Int64
from hypothesis import given, settings
from hypothesis import strategies as st
from pymongo import MongoClient

from mlpack.config import FeaturesSection
from mlpack.runtime import category_text, date_milliseconds, to_number
from mlpack.source import collect, load_columns, readings
from mlpack.source.batches import prefetched
from mlpack.source.columns import Column
from mlpack.validate.dataset import _json_list
from tests.helpers.columns import PATHS, UTC, assert_same_columns, messy, old_columns, same, validation_outcome


def test_collect_reads_messy_documents_exactly_as_the_per_document_lookup() -> None:
    documents = messy(5_000)
    assert_same_columns(collect(documents, PATHS), old_columns(documents, PATHS))


def test_the_columns_are_typed_arrays_where_a_batch_shares_a_type() -> None:
    raw = collect([{"_id": i, "x": float(i), "d": dt.datetime(2020, 1, 1), "s": "abc"[i % 3]} for i in range(5000)],
                  ["x", "d", "s"])  # fmt: skip
    floats = raw.values["x"].floats()
    assert floats is not None and floats.dtype == np.float64 and floats[4999] == 4999.0
    assert raw.values["d"].microseconds() is not None
    assert raw.values["s"].strings() is not None and raw.values["x"].strings() is None
    # shared strings: one object per distinct category, not one per document
    assert len({id(text) for text in raw.values["s"]}) == 3


FEATURES = {
    "numeric": ["n", "f", "a.b"],
    "categorical": ["c", "a.c.d", "dotted.key"],
    "datetime": ["when"],
    "text": ["text"],
    "target": "label",
}


@pytest.mark.parametrize("start", [0, 700, 1400, 2100, 2800, 3500])
@pytest.mark.parametrize("task", ["classification", "regression"])
def test_validation_of_the_columns_equals_the_per_value_reading(start: int, task: str) -> None:
    """Each 700-document run is one type per field (the fast path) or mixed/dirty (the per-value path):
    either way the dataset, its fingerprint, its warnings and its errors are what the lists gave."""
    documents = [d for d in messy(4_200) if d.get("label") is not None][start : start + 1_400]
    features = FeaturesSection(**FEATURES)  # type: ignore[arg-type]
    new, old = collect(documents, features.loaded), old_columns(documents, features.loaded)
    assert validation_outcome(new, features, task) == validation_outcome(old, features, task)


def test_a_clean_typed_dataset_takes_the_fast_path_and_equals_the_lists() -> None:
    rng = random.Random(5)
    documents = [
        {
            "_id": i,
            "n": rng.choice([rng.randint(0, 99), None]) if i < 3000 else rng.random(),
            "f": rng.choice([rng.gauss(0, 1), math.nan, None]),
            "c": rng.choice(["x", "y", None]) if i < 2500 else rng.choice([None, "z"]),
            "when": rng.choice(
                [dt.datetime(1960, 1, 1, 0, 0, 0, 1000) + dt.timedelta(hours=rng.randint(0, 10**6)), None]
            ),
            "label": rng.choice([True, False]),
            "a": {"b": rng.random(), "c": {"d": rng.randint(0, 3)}},
            "dotted": {"key": "k"},
            "text": rng.choice(["words here", None]),
        }
        for i in range(6_000)
    ]
    features = FeaturesSection(**FEATURES)  # type: ignore[arg-type]
    new = collect(documents, features.loaded)
    for path in ("n", "f", "a.b"):
        assert readings.numbers(new.values[path]) is not None, path
    assert readings.categories(new.values["c"]) is not None and readings.categories(new.values["a.c.d"]) is not None
    assert readings.milliseconds(new.values["when"]) is not None and readings.labels(new.values["label"]) is not None
    old = old_columns(documents, features.loaded)
    assert validation_outcome(new, features, "classification") == validation_outcome(old, features, "classification")


values = st.one_of(
    st.none(),
    st.floats(allow_nan=True, allow_infinity=True),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.integers(min_value=-(2**63), max_value=2**63 - 1).map(Int64),
    st.booleans(),
    st.text(max_size=4),
    st.sampled_from(["NA", " 54 ", "", "1e3", "04"]),
    st.datetimes(min_value=dt.datetime(1, 1, 2), max_value=dt.datetime(9999, 12, 30)),
    st.datetimes(timezones=st.just(UTC)),
    st.sampled_from([{"$numberInt": "3"}, {"$numberDouble": "-0.0"}, [1], Decimal128("1.5")]),
)
naive_dates = st.datetimes(min_value=dt.datetime(1, 1, 2), max_value=dt.datetime(9999, 12, 30))
one_type = st.sampled_from(
    [st.floats(), st.integers(-(2**63), 2**63 - 1), st.booleans(), st.text(max_size=3), naive_dates]
)


def _read(read: Any, value: Any) -> Any:
    try:
        return ("ok", read(value))
    except ValueError:
        return ("error",)


def _chunked(items: list[Any], cuts: list[int]) -> Column:
    column = Column()
    for start, end in zip([0, *cuts], [*cuts, len(items)]):
        column.add_batch(items[start:end])
    return column


@settings(max_examples=300, deadline=None)
@given(st.lists(st.one_of(values, one_type.flatmap(lambda s: s)), max_size=40), st.data())
def test_a_column_gives_back_every_value_and_reads_as_each_value_does(items: list[Any], data: Any) -> None:
    homogeneous = data.draw(st.one_of(st.none(), one_type))
    if homogeneous is not None:  # a batch of one type (with nulls): the typed arrays are exercised
        items = data.draw(st.lists(st.one_of(st.none(), homogeneous), max_size=40))
    cuts = sorted(data.draw(st.lists(st.integers(0, len(items)), max_size=3)))
    column = _chunked(items, cuts)
    assert len(column) == len(items) and all(same(a, b) for a, b in zip(column, items, strict=True))
    assert all(same(column[i], item) for i, item in enumerate(items))
    numbers = readings.numbers(column)
    if numbers is not None:
        expected = [to_number(v) for v in items]
        assert numbers.tobytes() == np.array(expected, dtype=np.float64).tobytes()
    categories = readings.categories(column)
    if categories is not None:
        assert categories.tolist() == [category_text(v) for v in items]
    dates = readings.milliseconds(column)
    if dates is not None:
        assert dates.tolist() == [date_milliseconds(v) for v in items]
    labels = readings.labels(column)
    if labels is not None:
        assert labels[0].tolist() == [v if isinstance(v, str) else int(v) for v in items]
    for regression in (False, True):
        missing = readings.missing(column, regression)
        if missing is not None:
            assert missing == [i for i, v in enumerate(items) if v is None or (isinstance(v, float) and v != v)]
    everything_numeric = all(
        type(v) in (int, float, Int64, type(None)) and _read(to_number, v)[0] == "ok" for v in items
    )
    if everything_numeric and all(not isinstance(v, int) or -(2**63) <= v < 2**63 for v in items):
        assert numbers is not None  # the fast path is taken whenever it can be


def test_appending_after_a_batch_and_taking_rows() -> None:
    column = Column([1.0, 2.0])
    column.append("three")
    column.add_batch([4, None])
    assert column == [1.0, 2.0, "three", 4, None] and column[-1] is None and column[1:3] == [2.0, "three"]
    assert column.take([4, 0]) == [None, 1.0]
    assert column + [7] == [1.0, 2.0, "three", 4, None, 7] and [0] + column == [0, 1.0, 2.0, "three", 4, None]
    assert (column + column).floats() is None and len(column + Column()) == 5
    assert column.floats() is None  # "three" is text: the per-value reading decides
    with pytest.raises(IndexError):
        column[5]


# -- through the server -----------------------------------------------------------------------
def test_load_columns_over_the_server_equals_find_and_lookup(mongo_client: MongoClient[dict[str, Any]]) -> None:
    collection = mongo_client["mlpack_columns"]["messy"]
    collection.drop()
    collection.insert_many(messy(4_500, storable=True))
    try:
        old = old_columns(list(collection.find({}, projection=dict.fromkeys(PATHS, 1), sort=[("_id", 1)])), PATHS)
        assert old.rows == 4_500
        assert_same_columns(load_columns(collection, PATHS), old)
        limited = load_columns(collection, PATHS, query={"c": {"$in": ["p", "q"]}}, limit=600)
        assert limited.rows == 600 and set(limited.values["c"]) == {"p", "q"}
    finally:
        collection.drop()


def test_an_error_in_the_fetching_thread_is_raised_to_the_reader_and_the_cursor_closed() -> None:
    closed = []

    class Batches:
        def __enter__(self) -> Iterator[bytes]:
            def batches() -> Iterator[bytes]:
                yield b"one"
                raise ConnectionError("the server went away")

            return batches()

        def __exit__(self, *exc: object) -> None:
            closed.append(True)

    read = []
    with pytest.raises(ConnectionError, match="the server went away"):
        for batch in prefetched(Batches):  # type: ignore[arg-type]
            read.append(batch)
    assert read == [b"one"] and closed == [True]


@settings(max_examples=200, deadline=None)
@given(
    st.one_of(
        st.lists(st.text(max_size=4)),
        st.lists(st.integers()),
        st.lists(st.booleans()),
        st.lists(st.one_of(st.integers(), st.booleans(), st.floats(), st.text(max_size=2), st.none())),
    )
)
def test_the_fingerprints_json_of_a_column_is_json_dumps(values: list[Any]) -> None:
    """The data fingerprint encodes each distinct category once; its bytes stay json.dumps' (0.0 and
    -0.0, 1 and True are equal keys that json writes differently: those lists take json.dumps itself)."""
    assert _json_list(values) == json.dumps(values).encode()
