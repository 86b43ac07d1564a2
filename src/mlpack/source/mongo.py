"""MongoDB over pymongo: connect with bounded waits, stream projected documents into columns."""

from __future__ import annotations

import contextlib
import gc
import itertools
import os
import re
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, NamedTuple, cast
from urllib.parse import unquote_plus

from bson import decode_all
from pymongo import MongoClient
from pymongo.collection import Collection
from pymongo.cursor import RawBatchCursor
from pymongo.database import Database
from pymongo.errors import OperationFailure

from mlpack.config import SourceSection
from mlpack.errors import ConfigError, MlpackError, outside
from mlpack.redaction import remember_uri
from mlpack.runtime.settings import mongodb_uri_problem
from mlpack.source.batches import BatchReader, prefetched
from mlpack.source.columns import Column
from mlpack.source.embedded import embedded_server
from mlpack.source.order import NeedsServerSort, id_order
from mlpack.source.rawbson import RawBatches, fits

UNAUTHORIZED = 13  # MongoDB's error code for an action the user's roles do not allow
# Unreachable servers must fail well inside the 30 s the CLI promises.
SERVER_SELECTION_TIMEOUT_MS = 10_000
BATCH_SIZE = 2_000


def redact(uri: str) -> str:
    """The URI safe for messages and logs (kept for callers; see `mlpack.redaction`)."""
    return remember_uri(uri)


@contextlib.contextmanager
def mongo_server(source: SourceSection) -> Iterator[str]:
    """The connection string to use: the `uri_env` variable, else an embedded server if allowed."""
    uri = os.environ.get(source.uri_env, "").strip()
    if uri:
        # From here on no message, report or --json output can show its secrets (and no tool the build
        # runs inherits the variable: the config declared it when it was read, config/rules.py).
        remember_uri(uri)
        yield uri
    elif source.embedded:
        with embedded_server() as embedded_uri:
            yield embedded_uri
    else:
        raise ConfigError(
            f"environment variable {source.uri_env} is not set: set it to a MongoDB connection string "
            "([source].uri_env names the variable), or set [source].embedded = true for a throwaway local server"
        )


class Opened(NamedTuple):
    """A connected, pinged database and the connection string it came from (for messages and workers)."""

    database: Database[dict[str, Any]]
    uri: str


@contextlib.contextmanager
def open_database(source: SourceSection, *, persistent_for: str | None = None) -> Iterator[Opened]:
    """The configured database, connected, closed on the way out: the one "open, try, close".

    `persistent_for` names what needs a database that outlives one command (aliases, scoring, a
    registry to publish from); an embedded server is refused for it, since it holds nothing later.
    """
    if persistent_for and source.embedded and not os.environ.get(source.uri_env, "").strip():
        raise ConfigError(f"{persistent_for}: set {source.uri_env} (an embedded server lives for one build only)")
    with mongo_server(source) as uri:
        client = connect(uri, variable=source.uri_env)
        try:
            yield Opened(client[source.database], uri)
        finally:
            client.close()


def connect(
    uri: str, *, variable: str = "the connection string", timeout_ms: int = SERVER_SELECTION_TIMEOUT_MS
) -> MongoClient[dict[str, Any]]:
    """A client whose server answered a ping, so later failures are not connection problems.
    `variable`: where the string came from, for the message when it is no MongoDB URI at all."""
    shown = remember_uri(uri)
    problem = mongodb_uri_problem(uri, variable)
    if problem:  # before pymongo, which would take it for a host name and wait out its server selection
        raise ConfigError(problem)
    # Timeouts the connection string sets itself win: a user who wrote them meant them.
    options = {key.lower(): unquote_plus(value) for key, value in re.findall(r"[?&;]([^=&;]+)=([^&;]*)", uri)}
    written = set(options)
    _refuse_a_locked_key(options)
    timeouts: dict[str, Any] = {
        key: timeout_ms for key in ("serverSelectionTimeoutMS", "connectTimeoutMS") if key.lower() not in written
    }
    with outside("MongoDB", target=shown, action="connecting"):
        client: MongoClient[dict[str, Any]] = MongoClient(uri, appname="mlpack", **timeouts)
    try:
        with outside("MongoDB", target=shown, action="connecting"):
            client.admin.command("ping")
    except MlpackError:
        client.close()
        raise
    return client


def _refuse_a_locked_key(options: dict[str, str]) -> None:
    """An encrypted client key with no password in the connection string is a usage error said
    here: left to OpenSSL, it would ask the terminal for the passphrase (a cron job would hang)."""
    key_file = options.get("tlscertificatekeyfile")
    if not key_file or options.get("tlscertificatekeyfilepassword"):
        return
    try:
        with open(key_file, "rb") as handle:
            locked = b"ENCRYPTED" in handle.read(1 << 20)  # PKCS#8 "ENCRYPTED PRIVATE KEY" or PEM's "4,ENCRYPTED"
    except OSError:
        return  # unreadable: pymongo says so, in the words `outside` maps
    if locked:
        raise ConfigError(
            f"the client key in tlsCertificateKeyFile {key_file} is encrypted: add tlsCertificateKeyFilePassword "
            "to the connection string (percent-encoded)"
        )


@dataclass
class RawColumns:
    """Field values as found in the documents, one column per dotted path, in `_id` order.

    Absent fields and nulls both read as None; `present` counts documents that had the field at
    all, which is how a misspelt path is told apart from a sparse one. Each column is a `Column`:
    a sequence of the values as decoded, typed arrays underneath (see `mlpack.source.columns`).
    """

    ids: Column = field(default_factory=Column)
    values: dict[str, Column] = field(default_factory=dict)
    present: dict[str, int] = field(default_factory=dict)
    feedback: int = 0  # the last `feedback` rows came from the inference log ([source.feedback])

    @classmethod
    def of(cls, paths: list[str]) -> RawColumns:
        return cls(values={path: Column() for path in paths}, present=dict.fromkeys(paths, 0))

    @property
    def rows(self) -> int:
        return len(self.ids)

    def reorder(self, positions: Any) -> None:
        """The rows in the order of `positions` (one column at a time: one extra column at most in memory)."""
        self.ids = self.ids.take(positions)
        for path in self.values:
            self.values[path] = self.values[path].take(positions)

    def add(self, documents: list[Mapping[str, Any]], *, projected: bool = False) -> None:
        """One batch of documents more (the runtime's reading of each path: training reads as prediction does).
        `projected`: a server's answer to a projection on these paths (see BatchReader)."""
        BatchReader(list(self.values), projected=projected).add(documents, self.ids, self.values, self.present)


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
        with outside("MongoDB", action=f"reading {collection.full_name}"):
            document = collection.find_one(query or {})
    except MlpackError:
        return []
    return field_paths(document) if document else []


def collect(
    documents: Iterable[Mapping[str, Any]], paths: list[str], progress: Callable[[int], None] | None = None
) -> RawColumns:
    """Columns of the given dotted paths from documents, in the order they come (a path given twice is read once)."""
    columns = RawColumns.of(list(dict.fromkeys(paths)))
    iterator = iter(documents)
    while batch := list(itertools.islice(iterator, BATCH_SIZE)):
        columns.add(batch)
        if progress is not None and len(batch) == BATCH_SIZE:
            progress(columns.rows)
    if progress is not None:
        progress(columns.rows)
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

    In `_id` order, so that the same data always trains the same model. The server's batches
    arrive as raw BSON, fetched in a thread while the previous one is read into the columns:
    straight from its bytes (`source.rawbson`) where the batch holds only what that reads exactly
    as pymongo decodes it, else decoded by bson's C decoder (with the collection's codec options,
    as `find()` would) and read out of the documents. Without a
    `limit` the documents are read in natural order and put in `_id` order here (`source.order`):
    a server asked to sort may sort everything before it sends the first batch. A `limit` means
    the first documents by `_id`, which only the server can choose.
    """
    query = query or {}
    paths = list(dict.fromkeys(paths))
    if limit:
        return _read(collection, paths, query, limit, progress, sort=True)
    columns = _read(collection, paths, query, 0, progress, sort=False)
    try:
        positions = id_order(columns.ids, collated=lambda: _collated(collection))
    except NeedsServerSort:
        del columns  # the natural-order copy: not held while the whole collection is read again
        return _read(collection, paths, query, 0, None, sort=True)
    if positions is not None:
        columns.reorder(positions)
    return columns


@contextlib.contextmanager
def _without_cyclic_gc() -> Iterator[None]:
    """The cycle collector paused while batches are decoded: a batch's documents are trees (no
    cycles; reference counting frees them when the next batch comes), yet the dicts they allocate
    would set off a collection every few hundred documents, and now and then a full one: about a
    quarter of the loader's CPU (measured offline). The previous setting is restored on the way out."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def _collated(collection: Collection[dict[str, Any]]) -> bool:
    """Whether the collection (or view) may have a default collation, which a sort of strings follows.

    Its options come from listCollections, which a user allowed only to find() in the collection may not
    run: then it may have one, and the server sorts (the build needs no more rights than the query)."""
    with outside("MongoDB", action=f"reading the options of {collection.full_name}"):
        try:
            return "collation" in collection.options()
        except OperationFailure as exc:
            if exc.code != UNAUTHORIZED:
                raise
            return True


def outermost(paths: list[str]) -> list[str]:
    """The paths a projection names: MongoDB refuses a field and one inside it ("Path collision at
    billing": a test_filter on `billing` beside the feature `billing.method`); the parent brings both."""
    named = set(paths)
    return [path for path in paths if not any(path[:i] in named for i, c in enumerate(path) if c == ".")]


def _read(
    collection: Collection[dict[str, Any]],
    paths: list[str],
    query: dict[str, Any],
    limit: int,
    progress: Callable[[int], None] | None,
    *,
    sort: bool,
) -> RawColumns:
    columns = RawColumns.of(paths)
    options = collection.codec_options
    order = {"sort": [("_id", 1)]} if sort else {}

    projection = dict.fromkeys(outermost(paths), 1)
    fast = RawBatches(paths) if fits(options) else None

    def batches() -> RawBatchCursor[dict[str, Any]]:
        return collection.find_raw_batches(query, projection=projection, limit=limit, batch_size=BATCH_SIZE, **order)

    with outside("MongoDB", action=f"the query on {collection.full_name}"), _without_cyclic_gc():
        for batch in prefetched(batches):
            # raw: documents end to end, read straight into the columns where rawbson reads them as
            # pymongo would decode them; else decoded by pymongo and read as decoded
            if fast is None or not fast.add(cast(bytes, batch), columns.ids, columns.values, columns.present):
                columns.add(decode_all(cast(bytes, batch), options), projected=True)
            if progress is not None:
                progress(columns.rows)
    if progress is not None and not columns.rows:
        progress(0)
    return columns
