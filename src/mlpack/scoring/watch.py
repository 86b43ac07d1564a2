"""`mlpack score --watch`: score the source collection's inserts and updates as they arrive.

A MongoDB change stream on the source collection (inserts, updates and replaces, each with the
document as it now is; `--filter` applies to that document) feeds the same batches and the same
writes as `mlpack score` (score_worker: results replace by `_id`, so a document scored twice still
has one result). After each batch is written, the stream's resume token is saved in `INTO.resume`
(one document per source collection), so a scorer that is stopped or killed restarts after the last
batch it wrote: at most that batch is scored again, nothing is skipped. The first start (no saved
token) opens the stream, scores every document already there, and only then saves the stream's
token, so documents inserted meanwhile are scored too. SIGTERM or SIGINT stop it after the batch in
hand, token saved, exit 0. Deleted documents are left alone (their results stay); a document updated
to a value the model refuses loses its earlier result, which would otherwise pass for its prediction.
"""

from __future__ import annotations

import json
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pymongo.errors import OperationFailure

from mlpack.config import load_config
from mlpack.errors import ConfigError, DataError, ExternalError, MlpackError, outside
from mlpack.redaction import display_uri
from mlpack.scoring.command import (
    ScoreRequest,
    check_target,
    find_wheel,
    open_wheel,
    parse_query,
    score_spec,
)
from mlpack.scoring.worker import Progress, ScoreSpec, SliceResult, describe_errors
from mlpack.scoring.worker import score_documents as _score_documents
from mlpack.source import open_database

OPERATIONS = ["insert", "update", "replace"]
AWAIT_MS = 500  # how long one wait for events lasts: the latency of a stop
_LOGICAL = ("$and", "$or", "$nor")


@dataclass
class WatchResult:
    model: dict[str, str]
    source: str
    into: str
    state: str  # where the resume token is kept
    resumed: bool  # started from a saved token (else: a first start, with its pass over what was there)
    initial: int = 0  # documents scored by the first start's pass
    events: int = 0  # change events read
    written: int = 0  # results written (initial pass included)
    skipped: int = 0
    removed: int = 0  # earlier results of documents updated to values the model refuses, deleted
    batches: int = 0
    seconds: float = 0.0
    errors: list[tuple[Any, str]] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "source": self.source,
            "into": self.into,
            "state": self.state,
            "resumed": self.resumed,
            "initial": self.initial,
            "events": self.events,
            "written": self.written,
            "skipped": self.skipped,
            "removed": self.removed,
            "batches": self.batches,
            "seconds": round(self.seconds, 3),
            "errors": [{"_id": str(i), "message": m} for i, m in self.errors],
        }


def on_full_document(query: dict[str, Any]) -> dict[str, Any]:
    """A `--filter` query made to match a change event's `fullDocument`."""
    moved: dict[str, Any] = {}
    for key, value in query.items():
        if key in _LOGICAL and isinstance(value, list):
            moved[key] = [on_full_document(part) if isinstance(part, dict) else part for part in value]
        elif key.startswith("$"):
            raise ConfigError(f"--filter with --watch: {key} at the top level cannot apply to a change event")
        else:
            moved[f"fullDocument.{key}"] = value
    return moved


def _silent(_message: str) -> None:
    pass


class _Stop:
    """SIGTERM and SIGINT ask for a stop after the batch in hand (in the main thread; else only `event`)."""

    def __init__(self, event: threading.Event | None) -> None:
        self.event = event or threading.Event()
        self.previous: dict[int, Any] = {}

    def __enter__(self) -> threading.Event:
        if threading.current_thread() is threading.main_thread():
            for signum in (signal.SIGTERM, signal.SIGINT):
                self.previous[signum] = signal.signal(signum, lambda *_: self.event.set())
        return self.event

    def __exit__(self, *_: object) -> None:
        for signum, handler in self.previous.items():
            signal.signal(signum, handler)


def watch(
    request: ScoreRequest,
    progress: Progress | None = None,
    *,
    stop: threading.Event | None = None,
    warn: Progress | None = None,
) -> WatchResult:
    """`progress`: what it is doing (a terminal's, or -v); `warn`: each document it could not score, as it
    happens (the CLI's warnings, on stderr whether or not it is a terminal: a scorer runs as a service)."""
    say = progress or _silent
    if request.engine != "local":
        raise ConfigError("--watch scores with --engine local (a change stream is read by one process)")
    if request.batch_size < 1:
        raise ConfigError(f"--batch-size must be a positive integer, got {request.batch_size}")
    if request.on_error not in ("fail", "skip"):
        raise ConfigError(f"--on-error must be 'fail' or 'skip', got {request.on_error!r}")
    if request.master or request.partitions:
        raise ConfigError("--master and --partitions are for --engine spark, not --watch")
    config = load_config(request.project)
    check_target(request.into, config.source.collection)
    query = parse_query(request.filter)
    on_full_document(query)  # a filter a change event cannot be matched with is refused before anything runs
    wheel = find_wheel(config, Path(request.dist) if request.dist else config.project_dir / "dist", request.version)
    module, sha = open_wheel(wheel)
    needs = "--watch needs the database that receives the documents"
    with open_database(config.source, persistent_for=needs) as (database, uri):
        spec = score_spec(config, request, uri, query, module, sha)
        with outside("MongoDB", target=display_uri(uri), action=f"watching {spec.database}.{spec.source}"):
            return _run(database.client, spec, module, say, stop, warn or _silent)


def _run(
    client: Any, spec: ScoreSpec, module: Any, say: Progress, stop: threading.Event | None, warn: Progress
) -> WatchResult:
    database = client[spec.database]
    collection, target, state = database[spec.source], database[spec.into], database[f"{spec.into}.resume"]
    saved = state.find_one({"_id": spec.source})
    token = saved.get("token") if saved else None
    model = {"name": module.model.name, "version": module.model.version}
    result = WatchResult(model, collection.full_name, target.full_name, state.full_name, resumed=token is not None)
    started = time.monotonic()
    try:
        stream = collection.watch(
            _pipeline(spec), full_document="updateLookup", resume_after=token, max_await_time_ms=AWAIT_MS
        )
    except OperationFailure as exc:
        raise _refused(exc, state.full_name, spec.source, token) from None
    with stream, _Stop(stop) as stopping:
        if token is None:  # a first start: what is there already, then the stream from when it opened
            opened = stream.resume_token
            say(f"first start: scoring the documents of {collection.full_name} already there")
            cursor = collection.find(
                spec.query, projection=dict.fromkeys(spec.projection, 1), batch_size=spec.batch_size
            )
            _add(result, _score_documents(module, cursor, target, spec), spec)
            result.initial = result.written
            _save(state, spec.source, opened, model)
        say(f"watching {collection.full_name} with {model['name']} {model['version']} into {target.full_name}")
        saved_token = stream.resume_token
        while not stopping.is_set():
            events = _next_batch(
                stream, spec.batch_size, stopping, lambda e: _refused(e, state.full_name, spec.source, token)
            )
            if events:
                documents = list({doc["_id"]: doc for doc in events if doc is not None}.values())  # newest wins
                result.events += len(events)
                result.batches += 1
                done = _score_documents(module, documents, target, spec)
                _warn_skipped(done, warn)
                _add(result, done, spec)
                say(f"{result.events:,} events, {result.written:,} results written, {result.skipped} skipped")
            if stream.resume_token != saved_token:
                saved_token = stream.resume_token
                _save(state, spec.source, saved_token, model)
    result.seconds = time.monotonic() - started
    return result


def _warn_skipped(done: SliceResult, warn: Progress) -> None:
    """One line per document of the batch that was not scored, naming it: any earlier result of it is gone
    (it would pass for the current document's prediction), and nothing else would say which it was."""
    for _id, message in done.errors:
        warn(f"_id {json.dumps(_id, default=str)} not scored (any earlier result of it removed): {message}")
    if done.skipped > len(done.errors):
        warn(f"and {done.skipped - len(done.errors)} more document(s) of that batch not scored")


def _pipeline(spec: ScoreSpec) -> list[dict[str, Any]]:
    pipeline: list[dict[str, Any]] = [{"$match": {"operationType": {"$in": OPERATIONS}}}]
    if spec.query:
        pipeline.append({"$match": on_full_document(spec.query)})
    return pipeline


def _next_batch(
    stream: Any, size: int, stopping: threading.Event, refused: Callable[[OperationFailure], MlpackError]
) -> list[Any]:
    """Up to `size` events' documents: those ready now, else whatever one wait brings."""
    events: list[Any] = []
    while len(events) < size and not stopping.is_set():
        try:
            event = stream.try_next()
        except OperationFailure as exc:
            raise refused(exc) from None
        if event is None:
            break
        events.append(event.get("fullDocument"))  # None: updated, then deleted before the lookup
    return events


def _add(result: WatchResult, done: SliceResult, spec: ScoreSpec) -> None:
    result.written += done.written
    result.skipped += done.skipped
    result.removed += done.removed
    result.errors = (result.errors + done.errors)[:10]
    if done.failed:
        raise DataError(
            f"{done.skipped} document(s) could not be scored; the watch stops before that batch and resumes "
            "there (fix them, or run with --on-error skip)",
            details=describe_errors(done.errors),
        )


def _save(state: Any, source: str, token: Any, model: dict[str, str]) -> None:
    if token is not None:
        now = datetime.now(tz=UTC).replace(tzinfo=None)
        state.replace_one({"_id": source}, {"_id": source, "token": token, "model": model, "at": now}, upsert=True)


def _refused(exc: OperationFailure, state: str, source: str, token: Any) -> MlpackError:
    message = (exc.details or {}).get("errmsg") or str(exc)
    if token is None:
        return ExternalError(
            f"the database refused a change stream (it needs a replica set or sharded cluster): {message}"
        )
    return ExternalError(
        f"the change stream cannot resume from the token saved in {state} ({message}): delete its document "
        f"{{_id: {source!r}}} to start over (every document is scored again, each result replaced, never duplicated)"
    )


__all__ = ["WatchResult", "on_full_document", "watch"]
