"""The MongoDB source against a real wire server: projection, nesting, filter, limit, seed, failures."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from bson import ObjectId
from pymongo import MongoClient

from mlpack.errors import ConfigError, ExternalError
from mlpack.filters import parse_query
from mlpack.source import connect, load_columns
from mlpack.source.embedded import embedded_server, free_port
from mlpack.source.mongo import redact
from mlpack.source.seed import seed_collection
from tests.helpers.cli import assert_clean_error
from tests.helpers.documents import subscribers


@pytest.fixture
def customers(mongo_client: MongoClient[dict[str, Any]], database_name: str) -> Any:
    collection = mongo_client[database_name]["customers"]
    collection.insert_many(subscribers(50))
    return collection


def test_nested_paths_filter_limit_and_id_order(customers: Any) -> None:
    columns = load_columns(customers, ["tenure_months", "billing.monthly_charges", "billing.method", "label"])
    assert columns.rows == 50
    assert columns.ids == list(range(1, 51))
    assert columns.values["billing.monthly_charges"][0] == subscribers(50)[0]["billing"]["monthly_charges"]
    assert columns.present["billing.method"] == 48  # two documents lack it
    assert columns.values["tenure_months"][5] is None

    monthly = load_columns(customers, ["contract"], query={"contract": "monthly"})
    assert set(monthly.values["contract"]) == {"monthly"}
    assert monthly.rows == sum(d["contract"] == "monthly" for d in subscribers(50))

    assert load_columns(customers, ["contract"], limit=7).ids == list(range(1, 8))


def test_only_needed_fields_are_projected(customers: Any) -> None:
    # A path that is not asked for never reaches the columns (the server projects it away).
    columns = load_columns(customers, ["contract"])
    assert set(columns.values) == {"contract"}
    assert columns.present["contract"] == 50


def test_extended_json_in_filter(mongo_client: MongoClient[dict[str, Any]], database_name: str) -> None:
    collection = mongo_client[database_name]["events"]
    oid = ObjectId()
    collection.insert_many([{"_id": oid, "x": 1}, {"_id": ObjectId(), "x": 2}])
    # [source].filter = { _id = { "$oid" = "..." } }, as the config hands it over
    columns = load_columns(collection, ["x"], query=parse_query({"_id": {"$oid": str(oid)}}))
    assert columns.values["x"] == [1]


def test_bad_query_operator_is_a_config_error(customers: Any) -> None:
    with pytest.raises(ConfigError, match="rejected the query"):
        load_columns(customers, ["contract"], query={"contract": {"$nosuchop": 1}})


def test_seed_loads_mongoexport_into_empty_collection_only(
    tmp_path: Path, mongo_client: MongoClient[dict[str, Any]], database_name: str
) -> None:
    seed = tmp_path / "seed.jsonl"
    seed.write_text(
        '{"_id": {"$oid": "000000000000000000000001"}, "n": {"$numberLong": "5"},'
        ' "when": {"$date": "2024-01-02T00:00:00Z"}}\n'
        "\n"
        '{"_id": {"$oid": "000000000000000000000002"}, "n": 6}\n',
        encoding="utf-8",
    )
    collection = mongo_client[database_name]["seeded"]
    assert seed_collection(collection, seed) == 2
    first = collection.find_one({"_id": ObjectId("000000000000000000000001")})
    assert first is not None and first["n"] == 5 and first["when"].year == 2024
    assert seed_collection(collection, seed) == 0  # not empty any more: left alone
    assert collection.count_documents({}) == 2


def test_bad_seed_line_leaves_the_collection_empty(
    tmp_path: Path, mongo_client: MongoClient[dict[str, Any]], database_name: str
) -> None:
    seed = tmp_path / "seed.jsonl"
    seed.write_text('{"a": 1}\n{"a": 2\n', encoding="utf-8")
    collection = mongo_client[database_name]["seeded"]
    with pytest.raises(ConfigError, match=r"seed.jsonl:2: not a JSON document"):
        seed_collection(collection, seed)
    assert collection.count_documents({}) == 0
    seed.write_text('{"a": 1}\n{"a": 100000000000000000000000000}\n', encoding="utf-8")
    with pytest.raises(ConfigError, match="cannot be stored in MongoDB"):
        seed_collection(collection, seed)
    with pytest.raises(ConfigError, match="seed file not found"):
        seed_collection(collection, tmp_path / "missing.jsonl")


def test_unreachable_server_is_external_error_within_bound() -> None:
    uri = f"mongodb://127.0.0.1:{free_port()}/"
    started = time.monotonic()
    with pytest.raises(ExternalError, match="is unreachable"):
        connect(uri, timeout_ms=1500)
    assert time.monotonic() - started < 10


def test_redact_hides_passwords() -> None:
    assert redact("mongodb://alice:s3cret@db.example:27017/x") == "mongodb://alice:***@db.example:27017/x"
    assert redact("mongodb+srv://bob:p%40ss@cluster/") == "mongodb+srv://bob:***@cluster/"
    assert redact("mongodb://127.0.0.1/") == "mongodb://127.0.0.1/"


@pytest.fixture(scope="module")
def auth_server(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """A server with SCRAM-SHA-256 logins on: the user is created first, then auth switched on."""
    storage = tmp_path_factory.mktemp("auth-db")
    with embedded_server(str(storage)) as uri:
        client: MongoClient[dict[str, Any]] = MongoClient(uri)
        client.admin.command("createUser", "alice", pwd="s3cret", roles=["root"])
        client["crm"]["customers"].insert_many(subscribers(40))
        client.close()
    with embedded_server(str(storage), extra_args=("--auth",)) as uri:
        yield uri.replace("mongodb://", "")


def test_wrong_password_exits_3_without_leaking_it(
    auth_server: str, run, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    project = _auth_project(tmp_path)
    monkeypatch.setenv("MLPACK_AUTH_URI", f"mongodb://alice:wrongpass@{auth_server}?authMechanism=SCRAM-SHA-256")
    result = run("build", project, "--out", tmp_path / "out")
    assert_clean_error(result, 3, "authentication failed", "alice:***@")
    assert "wrongpass" not in result.err + result.out
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


def test_right_password_builds(auth_server: str, run, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    project = _auth_project(tmp_path)
    monkeypatch.setenv("MLPACK_AUTH_URI", f"mongodb://alice:s3cret@{auth_server}?authMechanism=SCRAM-SHA-256")
    result = run("build", project, "--out", tmp_path / "out", "--json")
    assert result.code == 0, result.err
    report = json.loads(result.out)
    assert "s3cret" not in result.out
    assert report["data"]["rows"] == 40
    assert not any("s3cret" in p.read_bytes().decode("latin-1") for p in (tmp_path / "out").iterdir())


def _auth_project(tmp_path: Path) -> Path:
    project = tmp_path / "p"
    project.mkdir()
    (project / "mlpack.toml").write_text(
        """
[model]
name = "auth-model"
version = "1.0.0"
task = "classification"
[source]
uri_env = "MLPACK_AUTH_URI"
database = "crm"
collection = "customers"
[features]
numeric = ["tenure_months", "support_calls"]
categorical = ["contract"]
target = "label"
[estimator]
class = "sklearn.linear_model.LogisticRegression"
""",
        encoding="utf-8",
    )
    return project


def test_toml_dates_in_the_filter_query_as_mongodb_dates(
    mongo_client: MongoClient[dict[str, Any]], database_name: str
) -> None:
    import datetime as dt
    import tomllib

    collection = mongo_client[database_name]["events"]
    collection.insert_many(
        [
            {"_id": 1, "at": dt.datetime(2023, 12, 31, tzinfo=dt.UTC)},
            {"_id": 2, "at": dt.datetime(2024, 1, 2, 12, tzinfo=dt.UTC)},
        ]
    )
    query = parse_query(tomllib.loads('f = { at = { "$gte" = 2024-01-01 } }')["f"])  # a TOML local date
    assert load_columns(collection, ["at"], query=query).ids == [2]
    query = parse_query(tomllib.loads('f = { at = { "$lt" = 2024-01-01T00:00:00 } }')["f"])  # local: UTC
    assert load_columns(collection, ["at"], query=query).ids == [1]
    assert query == {"at": {"$lt": dt.datetime(2024, 1, 1, tzinfo=dt.UTC)}}
    with pytest.raises(ValueError, match="a time of day"):
        parse_query(tomllib.loads("f = { t = 07:00:00 }")["f"])


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the kernel's parent-death signal is Linux's")
def test_the_embedded_server_dies_with_the_process_that_started_it() -> None:
    """A build (or a test worker) killed outright, or crashing, leaves no server running: a crashed
    pytest worker left its server serving with nothing to stop it."""
    code = (
        "import os, signal, sys\n"
        "from mlpack.source.embedded import embedded_server\n"
        "with embedded_server() as uri:\n"
        "    print(uri, flush=True)\n"
        "    os.kill(os.getpid(), signal.SIGKILL)\n"
    )
    child = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False)
    assert child.returncode == -signal.SIGKILL
    port = int(child.stdout.strip().rsplit(":", 1)[1].strip("/"))
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
        except OSError:
            return  # nothing listens there any more: the server is gone
        time.sleep(0.1)
    pytest.fail(f"the embedded server on port {port} outlived the process that started it")
