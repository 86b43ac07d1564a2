"""Documents read in natural order and sorted by `_id` on the client come out exactly as the server's sort.

The loader asked the server to sort by `_id`, which made the test server sort a million documents
for minutes before its first batch. Without a `limit` it now reads in natural order and sorts
itself (`mlpack.source.order`); these tests hold that to the server's own `sort=[("_id", 1)]`,
document for document, for ids of every type it sorts and for the ones it hands back to the
server, and hold a build from shuffled documents to the bytes of one from sorted documents.
"""

from __future__ import annotations

import datetime as dt
import gc
import hashlib
import json
import random
from typing import Any

import numpy as np
import pytest
from bson import Binary, Decimal128, Int64, ObjectId
from pymongo import MongoClient

from mlpack.source import load_columns
from mlpack.source.columns import Column
from mlpack.source.feedback import check_collection
from mlpack.source.order import NeedsServerSort, id_order, sort_key
from tests.helpers.columns import PATHS, assert_same_columns, messy, old_columns, same
from tests.helpers.projects import Project

# One of each type the client sorts, with the edges of MongoDB's order: NaN below every number, -inf,
# ints, longs, doubles and decimals compared by value, strings by code point ("Z" < "a" < "é"), dates
# before 1970, booleans after ObjectIds.
MIXED_IDS: list[Any] = [
    3,
    -1,
    2.5,
    Int64(7),
    Decimal128("4.5"),
    Decimal128("-2"),
    float("nan"),
    float("-inf"),
    10**18,
    "b",
    "a",
    "é",
    "Z",
    "",
    ObjectId(b"\x00" * 12),
    ObjectId(b"\xff" * 12),
    True,
    False,
    dt.datetime(2020, 1, 1),
    dt.datetime(1960, 1, 1),
    None,
]


def shuffled_into(collection: Any, documents: list[dict[str, Any]], seed: int = 5) -> None:
    documents = list(documents)
    random.Random(seed).shuffle(documents)
    collection.insert_many(documents)
    natural = [document["_id"] for document in collection.find({}, {"_id": 1})]
    assert natural != [document["_id"] for document in collection.find({}, {"_id": 1}, sort=[("_id", 1)])]


def server_sorted(collection: Any, paths: list[str]) -> Any:
    return old_columns(list(collection.find({}, projection=dict.fromkeys(paths, 1), sort=[("_id", 1)])), paths)


def test_messy_documents_inserted_shuffled_load_as_the_server_sorts_them(
    mongo_client: MongoClient[dict[str, Any]],
) -> None:
    collection = mongo_client["mlpack_order"]["messy"]
    collection.drop()
    shuffled_into(collection, messy(4_500, seed=3, storable=True))  # int and ObjectId ids, values of every kind
    try:
        assert_same_columns(load_columns(collection, PATHS), server_sorted(collection, PATHS))
    finally:
        collection.drop()


def test_ids_of_every_sorted_type_come_in_the_servers_order(mongo_client: MongoClient[dict[str, Any]]) -> None:
    collection = mongo_client["mlpack_order"]["mixed"]
    collection.drop()
    shuffled_into(collection, [{"_id": identifier, "v": index} for index, identifier in enumerate(MIXED_IDS)])
    try:
        loaded = load_columns(collection, ["v"])
        expected = server_sorted(collection, ["v"])
        assert all(same(a, b) for a, b in zip(loaded.ids, expected.ids, strict=True))
        assert loaded.values["v"] == expected.values["v"]
        assert [sort_key(i) for i in loaded.ids] == sorted(sort_key(i) for i in MIXED_IDS)
    finally:
        collection.drop()


@pytest.mark.parametrize("odd", [{"nested": 1}, Binary(b"\x01\x02", 0x80)], ids=["sub-document id", "binary id"])
def test_ids_the_client_does_not_sort_are_sorted_by_the_server(
    mongo_client: MongoClient[dict[str, Any]], odd: Any
) -> None:
    collection = mongo_client["mlpack_order"]["odd"]
    collection.drop()
    shuffled_into(collection, [{"_id": identifier, "v": index} for index, identifier in enumerate([*MIXED_IDS, odd])])
    try:
        with pytest.raises(NeedsServerSort):
            id_order(Column(document["_id"] for document in collection.find()), collated=lambda: False)
        loaded = load_columns(collection, ["v"])
        assert loaded.values["v"] == server_sorted(collection, ["v"]).values["v"]
    finally:
        collection.drop()


def test_string_ids_under_a_collation_are_left_to_the_server() -> None:
    asked = []

    def collated() -> bool:
        asked.append(True)
        return True

    assert id_order(Column([1, 2, 3]), collated=collated) is None and not asked  # no strings: never asked
    with pytest.raises(NeedsServerSort, match="collation"):
        id_order(Column(["b", "a"]), collated=collated)


def test_a_limit_still_takes_the_first_documents_by_id(mongo_client: MongoClient[dict[str, Any]]) -> None:
    collection = mongo_client["mlpack_order"]["limited"]
    collection.drop()
    shuffled_into(collection, [{"_id": index, "v": index * 2} for index in range(3_000)])
    try:
        limited = load_columns(collection, ["v"], limit=700)
        assert limited.ids == list(range(700)) and limited.values["v"] == [index * 2 for index in range(700)]
    finally:
        collection.drop()


def test_reordering_typed_columns_equals_reordering_their_values() -> None:
    rng = np.random.default_rng(2)
    moment = dt.datetime(1969, 5, 1, 3, 4, 5, 6000)
    columns = {
        "floats with nulls and a null batch": [[1.5, None, -0.0], [None, None], [float("nan"), 2.0]],
        "ints": [[1, 2, 3], [None, 5]],
        "dates": [[moment, None], [None], [moment + dt.timedelta(days=3)]],
        "booleans": [[True, False], [None, True]],
        "mixed": [[1, "two", 3.0], [None, Int64(4)]],
        "strings": [["a", "b"], [None, "c"]],
    }
    for name, batches in columns.items():
        column = Column()
        for batch in batches:
            column.add_batch(batch)
        values = column.tolist()
        positions = rng.permutation(len(values))
        taken = column.take(positions)
        assert all(same(a, values[i]) for a, i in zip(taken, positions, strict=True)), name
        assert taken.floats() is None or np.array_equal(
            taken.floats(),
            column.floats()[positions],
            equal_nan=True,  # type: ignore[index]
        )


def test_a_build_from_shuffled_documents_is_byte_identical_to_one_from_sorted_documents(
    churn_project: Project, run, mongo_client: MongoClient[dict[str, Any]], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1767225600")
    out = churn_project.path / "dist"

    def built() -> dict[str, Any]:
        assert run("build", churn_project.path, "-q", "--force").code == 0
        files: dict[str, Any] = {path.name: hashlib.sha256(path.read_bytes()).hexdigest() for path in out.iterdir()}
        assert {"churn-model-1.0.0.onnx", "churn_model-1.0.0-py3-none-any.whl"} <= set(files)
        report = json.loads((out / "churn-model-1.0.0.json").read_text())
        report.pop("timings")
        files["churn-model-1.0.0.json"] = report
        return files

    in_order = built()
    customers = mongo_client[churn_project.database]["customers"]
    documents = list(customers.find())
    customers.drop()
    shuffled_into(customers, documents)
    assert built() == in_order


def test_the_cycle_collector_is_paused_while_loading_and_restored(mongo_client: MongoClient[dict[str, Any]]) -> None:
    collection = mongo_client["mlpack_order"]["gc"]
    collection.drop()
    collection.insert_many([{"_id": index, "v": index} for index in range(5_000)])
    seen: list[bool] = []
    try:
        assert gc.isenabled()
        load_columns(collection, ["v"], progress=lambda rows: seen.append(gc.isenabled()))
        assert seen and not any(seen) and gc.isenabled()
        gc.disable()  # a caller's own setting is kept
        load_columns(collection, ["v"])
        assert not gc.isenabled()
    finally:
        gc.enable()
        collection.drop()


@pytest.fixture(scope="module")
def find_only(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """A server with logins on, and a user whose one right is find() in shop.customers (no listCollections)."""
    from mlpack.source.embedded import embedded_server

    storage = str(tmp_path_factory.mktemp("find-only-db"))
    with embedded_server(storage) as uri:
        client: MongoClient[dict[str, Any]] = MongoClient(uri)
        client.admin.command("createUser", "admin", pwd="s3cret", roles=["root"])
        client.shop.customers.insert_many([{"_id": name, "x": index} for index, name in enumerate("dbeca")])
        finder = [{"resource": {"db": "shop", "collection": "customers"}, "actions": ["find"]}]
        client.shop.command("createRole", "finder", privileges=finder, roles=[])
        client.shop.command("createUser", "bob", pwd="s3cret", roles=["finder"])
        client.close()
    with embedded_server(storage, extra_args=("--auth",)) as uri:
        host = uri.removeprefix("mongodb://").rstrip("/")
        with MongoClient(f"mongodb://bob:s3cret@{host}/?authSource=shop&authMechanism=SCRAM-SHA-256") as bob:
            yield bob


def test_string_ids_load_in_order_for_a_user_who_may_only_find(find_only: MongoClient[dict[str, Any]]) -> None:
    # Whether strings sort under a collation is in listCollections, which this user may not run: the
    # server sorts then (was: "not authorized ... listCollections", a build the query alone allowed failed).
    columns = load_columns(find_only.shop.customers, ["x"])
    assert list(columns.ids) == ["a", "b", "c", "d", "e"]
    assert list(columns.values["x"]) == [4, 1, 3, 0, 2]


def test_a_user_who_may_only_find_builds_without_the_collection_check(find_only: MongoClient[dict[str, Any]]) -> None:
    # Whether [source].collection exists is asked with listCollections: for a user without that right the
    # check steps aside (the query alone decides, as before it existed) instead of failing the build.
    check_collection(find_only.shop, "customers", "[source].collection")
    check_collection(find_only.shop, "customer", "[source].collection")  # cannot tell a typo: the query will
