"""MongoDB over pymongo: connect with bounded waits, stream projected documents into columns."""

from __future__ import annotations

import contextlib
import datetime
import json
import os
import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from bson import json_util
from bson.errors import BSONError
from pymongo import MongoClient
from pymongo.collection import Collection
from pymongo.errors import ConfigurationError, InvalidURI, OperationFailure, PyMongoError

from mlpack.config import SourceSection
from mlpack.errors import ConfigError, ExternalError
from mlpack.source.embedded import embedded_server

# Unreachable servers must fail well inside the 30 s the CLI promises.
SERVER_SELECTION_TIMEOUT_MS = 10_000
BATCH_SIZE = 2_000
_AUTH_FAILED = 18


def redact(uri: str) -> str:
    """The URI with any password replaced, safe for messages and logs."""
    return re.sub(r"(://[^:/@]+:)[^@/]*@", r"\1***@", uri)


@contextlib.contextmanager
def mongo_server(source: SourceSection) -> Iterator[str]:
    """The connection string to use: the `uri_env` variable, else an embedded server if allowed."""
    uri = os.environ.get(source.uri_env, "").strip()
    if uri:
        yield uri
    elif source.embedded:
        with embedded_server() as embedded_uri:
            yield embedded_uri
    else:
        raise ConfigError(
            f"environment variable {source.uri_env} is not set: set it to a MongoDB connection string "
            "([source].uri_env names the variable), or set [source].embedded = true for a throwaway local server"
        )


def connect(uri: str, *, timeout_ms: int = SERVER_SELECTION_TIMEOUT_MS) -> MongoClient[dict[str, Any]]:
    """A client whose server answered a ping, so later failures are not connection problems."""
    try:
        client: MongoClient[dict[str, Any]] = MongoClient(
            uri, serverSelectionTimeoutMS=timeout_ms, connectTimeoutMS=timeout_ms, appname="mlpack"
        )
    except (InvalidURI, ConfigurationError, ValueError) as exc:
        raise ConfigError(f"the MongoDB connection string {redact(uri)!r} is invalid: {exc}") from None
    try:
        client.admin.command("ping")
    except OperationFailure as exc:
        client.close()
        if exc.code == _AUTH_FAILED:
            raise ExternalError(f"MongoDB refused the login for {redact(uri)}: authentication failed") from None
        raise ExternalError(f"MongoDB at {redact(uri)} refused the connection: {exc.details or exc}") from None
    except PyMongoError as exc:
        client.close()
        raise ExternalError(
            f"MongoDB at {redact(uri)} is unreachable (gave up after {timeout_ms / 1000:.0f} s): {_first_line(exc)}"
        ) from None
    return client


def _first_line(exc: Exception) -> str:
    return str(exc).split(",", 1)[0].split("\n", 1)[0]


@dataclass
class RawColumns:
    """Field values as found in the documents, one list per dotted path, in `_id` order.

    Absent fields and nulls both read as None; `present` counts documents that had the field at
    all, which is how a misspelt path is told apart from a sparse one.
    """

    ids: list[Any] = field(default_factory=list)
    values: dict[str, list[Any]] = field(default_factory=dict)
    present: dict[str, int] = field(default_factory=dict)

    @property
    def rows(self) -> int:
        return len(self.ids)


_ABSENT = object()


def _lookup(document: dict[str, Any], parts: tuple[str, ...]) -> Any:
    value: Any = document
    for part in parts:
        if not isinstance(value, dict):
            return _ABSENT
        value = value.get(part, _ABSENT)
        if value is _ABSENT:
            return _ABSENT
    return value


def field_paths(document: dict[str, Any], prefix: str = "") -> list[str]:
    """Every dotted path in a document, through sub-documents (not arrays)."""
    paths = []
    for key, value in document.items():
        path = f"{prefix}{key}"
        paths.append(path)
        if isinstance(value, dict):
            paths += field_paths(value, f"{path}.")
    return paths


def sample_paths(collection: Collection[dict[str, Any]], query: dict[str, Any] | None = None) -> list[str]:
    """The field paths of one matching document: what a misspelt feature path can be compared with."""
    try:
        document = collection.find_one(parse_filter(query or {}))
    except PyMongoError:
        return []
    return field_paths(document) if document else []


def _toml_to_bson(value: Any) -> Any:
    """TOML's own dates as MongoDB has them: a date is midnight UTC; a time of day has no BSON type."""
    if isinstance(value, dict):
        return {key: _toml_to_bson(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_toml_to_bson(item) for item in value]
    if isinstance(value, datetime.datetime):
        return value if value.tzinfo else value.replace(tzinfo=datetime.UTC)
    if isinstance(value, datetime.date):
        return datetime.datetime(value.year, value.month, value.day, tzinfo=datetime.UTC)
    if isinstance(value, datetime.time):
        raise ConfigError(f"[source].filter: a time of day ({value}) has no MongoDB type; use a full date-time")
    return value


def parse_filter(query: dict[str, Any]) -> dict[str, Any]:
    """The TOML filter as a MongoDB query; Extended JSON values ({"$oid": ...}, {"$date": ...}) work."""
    try:
        return json_util.loads(json_util.dumps(_toml_to_bson(query)))
    except (BSONError, ValueError, TypeError) as exc:
        raise ConfigError(f"[source].filter is not a valid query: {exc}") from None


def filter_as_json(query: dict[str, Any]) -> Any:
    """The filter for metadata: relaxed Extended JSON, so dates and ObjectIds survive as JSON."""
    return json.loads(json_util.dumps(parse_filter(query), json_options=json_util.RELAXED_JSON_OPTIONS))


def collect(
    documents: Iterable[dict[str, Any]], paths: list[str], progress: Callable[[int], None] | None = None
) -> RawColumns:
    """Columns of the given dotted paths from documents, in the order they come."""
    split = [(path, tuple(path.split("."))) for path in paths]
    columns = RawColumns(values={path: [] for path in paths}, present=dict.fromkeys(paths, 0))
    appenders = [(path, parts, columns.values[path].append) for path, parts in split]
    for document in documents:
        columns.ids.append(document.get("_id"))
        for path, parts, append in appenders:
            value = _lookup(document, parts)
            if value is _ABSENT:
                append(None)
            else:
                columns.present[path] += 1
                append(value)
        if progress is not None and len(columns.ids) % BATCH_SIZE == 0:
            progress(len(columns.ids))
    if progress is not None:
        progress(len(columns.ids))
    return columns


def load_columns(
    collection: Collection[dict[str, Any]],
    paths: list[str],
    *,
    query: dict[str, Any] | None = None,
    limit: int = 0,
    progress: Callable[[int], None] | None = None,
) -> RawColumns:
    """Stream the projected fields of matching documents into columns, without a per-row DataFrame.

    Sorted by `_id` so that the same data always trains the same model.
    """
    try:
        cursor = collection.find(
            parse_filter(query or {}),
            projection=dict.fromkeys(paths, 1),
            sort=[("_id", 1)],
            limit=limit,
            batch_size=BATCH_SIZE,
        )
        return collect(cursor, paths, progress)
    except OperationFailure as exc:
        raise ConfigError(f"MongoDB rejected the query on {collection.full_name}: {exc.details or exc}") from None
    except PyMongoError as exc:
        raise ExternalError(f"reading {collection.full_name} failed: {_first_line(exc)}") from None
