"""[source.feedback]: the logged requests that received feedback, as training documents.

The server logs each answered request (`_id` the prediction id, `model`, `version`, `route`, `at`,
`inputs`, `predictions`), and POST /feedback pushes `{index, label, at}` onto its `feedback` list.
Each record of such a request is a labelled document the collection never had: its inputs as the
client sent them, read by the runtime's own reading (`collect`, as the server read them), and the
feedback label as its target. Duplicates are resolved before a row exists, the latest feedback
winning: a record told twice (a retry, a correction); the same document (`_id`) sent in several
requests; a document the collection has as well, whose row the feedback row replaces.
"""

from __future__ import annotations

import dataclasses
import difflib
import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from pymongo.errors import OperationFailure

from mlpack.config import Config
from mlpack.errors import ConfigError, outside
from mlpack.source.columns import Column
from mlpack.source.mongo import BATCH_SIZE, UNAUTHORIZED, RawColumns, collect, connect
from mlpack.times import Window, stamp

PROJECTION = {"inputs": 1, "feedback": 1, "route": 1, "at": 1, "inputs_as_text": 1}
EARLIEST = datetime.min  # a feedback entry without a time (written by hand) loses to any timed one


@dataclass
class FeedbackSummary:
    """What the feedback gave a build: in the metadata (`data.feedback`) and on the terminal."""

    database: str
    collection: str
    since: str | None
    until: str | None
    requests: int = 0  # logged requests in the window that received feedback
    labels: int = 0  # feedback entries read
    rows: int = 0  # training rows they gave, after duplicates
    superseded: int = 0  # entries a later one about the same record (or the same _id) outranked
    replaced: int = 0  # collection documents whose row a feedback row replaced (the same _id)
    skipped: dict[str, int] = field(default_factory=dict)  # entries that gave no row, by reason
    sha256: str = ""  # the feedback rows' own fingerprint (validate.fingerprint over them)

    def skip(self, reason: str, count: int = 1) -> None:
        self.skipped[reason] = self.skipped.get(reason, 0) + count

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def none_found(self) -> str:
        """The data warning of a build whose window held no feedback."""
        window = f"from {self.since or 'the start'} to {self.until or 'now'}"
        return f"[source.feedback]: no logged request in {self.database}.{self.collection} {window} received feedback"


@dataclass
class _Row:
    key: str  # the record's document: its `_id` as text when the client sent one, else "prediction#index"
    at: datetime  # when the winning feedback arrived
    order: tuple[str, int]  # (prediction id, index): the rows' order, so the same log trains the same model
    record: Mapping[str, Any]
    label: Any


def _records(document: Mapping[str, Any]) -> list[Any] | None:
    """A logged request's records: one (a record), several (a list), or v2 columns ({field: [values]})."""
    inputs = document.get("inputs")
    if document.get("inputs_as_text") or isinstance(inputs, str):
        return None  # logged as text: BSON could not hold a value; the server could not read it either
    if document.get("route") == "v2/infer" and isinstance(inputs, Mapping):
        columns = {name: values for name, values in inputs.items() if isinstance(values, list)}
        count = min((len(values) for values in columns.values()), default=0)
        return [{name: values[i] for name, values in columns.items()} for i in range(count)]
    if isinstance(inputs, Mapping):
        return [inputs]
    if isinstance(inputs, list):
        return inputs
    return None


def _latest(entries: Any, count: int, summary: FeedbackSummary) -> dict[int, tuple[datetime, Any]]:
    """Per record index, the latest feedback (by its time; the later entry on a tie)."""
    found: dict[int, tuple[datetime, Any]] = {}
    for entry in entries if isinstance(entries, list) else [entries]:
        summary.labels += 1
        if not isinstance(entry, Mapping) or entry.get("label") is None:
            summary.skip("no label")
            continue
        index = entry.get("index", 0)
        if type(index) is not int or not 0 <= index < count:
            summary.skip("no such record in its request")
            continue
        when = entry.get("at")
        at = when if isinstance(when, datetime) else EARLIEST
        if index in found:
            summary.superseded += 1
            if at < found[index][0]:
                continue
        found[index] = (at, entry["label"])
    return found


def _key(record: Mapping[str, Any], prediction: str, index: int) -> str:
    """Which document a record is: the `_id` the client sent with it (compared as text: an ObjectId as its
    hex, Extended JSON's {"$oid": hex} too), else this one answer."""
    identifier = record.get("_id")
    if isinstance(identifier, Mapping) and isinstance(identifier.get("$oid"), str) and len(identifier) == 1:
        identifier = identifier["$oid"]
    if isinstance(identifier, (str, int)) and not isinstance(identifier, bool):
        return f"_id {identifier}"
    return f"{prediction}#{index}"


def _rows(documents: Iterator[Mapping[str, Any]], summary: FeedbackSummary) -> list[_Row]:
    by_key: dict[str, _Row] = {}
    for document in documents:
        summary.requests += 1
        records = _records(document)
        entries = document.get("feedback") or []
        if records is None:
            summary.skip("inputs logged as text", len(entries) if isinstance(entries, list) else 1)
            continue
        prediction = str(document.get("_id"))
        for index, (at, label) in sorted(_latest(entries, len(records), summary).items()):
            record = records[index]
            if not isinstance(record, Mapping):
                summary.skip("not a record")
                continue
            row = _Row(_key(record, prediction, index), at, (prediction, index), record, label)
            earlier = by_key.get(row.key)
            if earlier is not None:
                summary.superseded += 1
                if (row.at, row.order) < (earlier.at, earlier.order):
                    continue
            by_key[row.key] = row
    return sorted(by_key.values(), key=lambda row: row.order)


def check_collection(database: Any, name: str, key: str, hint: str = "") -> None:
    """A collection that is not there (an inference log, a typo in [source].collection) is a mistake in
    the config: MongoDB reads a missing collection as an empty one, so nothing else would say so."""
    with outside("MongoDB", action=f"listing the collections of {database.name}"):
        try:
            present = database.list_collection_names()
        except OperationFailure as exc:
            if exc.code == UNAUTHORIZED:
                return  # a user who may only find(): the query alone decides, as before this check existed
            raise
    if name not in present:
        guess = difflib.get_close_matches(name, present, n=1, cutoff=0.6)
        known = f"did you mean '{guess[0]}'?" if guess else f"it has: {', '.join(sorted(present)[:8]) or 'none'}"
        tail = f"; {hint}" if hint else ""
        raise ConfigError(f"{key} {name!r} is not a collection of database {database.name!r} ({known}){tail}")


@dataclass
class Feedback:
    columns: RawColumns  # the feedback rows, as columns of the build's loaded fields
    keys: list[str]  # which document each row is (_Row.key)
    summary: FeedbackSummary


def load_feedback(config: Config, source_client: Any, *, now: datetime) -> Feedback | None:
    """The feedback rows and their summary; None when [source.feedback] is absent or off. `now`: the
    build's time (SOURCE_DATE_EPOCH when set), so a window like "30d" reads the same log the same way."""
    section = config.source.feedback
    if section is None or not section.enabled:
        return None
    key = "[source.feedback]"
    database_name = section.database or config.serve.inference_log_database
    collection_name = section.collection or config.serve.inference_log_collection
    window = Window.parse(
        section.since or None, section.until or None, now=now, flags=(f"{key}.since", f"{key}.until"), open_ended=True
    )
    client, own = source_client, False
    if section.uri_env:
        uri = os.environ.get(section.uri_env, "").strip()
        if not uri:
            raise ConfigError(f"{key}.uri_env names {section.uri_env}, which is not set: set it to the log's MongoDB")
        client, own = connect(uri, variable=section.uri_env), True
    try:
        database = client[database_name]
        check_collection(
            database,
            collection_name,
            f"{key}.collection",
            "the server writes its log to [serve].inference_log_collection",
        )
        summary = FeedbackSummary(
            database_name,
            collection_name,
            stamp(window.since) if window.since else None,
            stamp(window.until) if window.until else None,
        )
        # `feedback.label`: a list of {index, label, at} as the server pushes it, or one entry written by hand
        query = {"model": config.model.name, "feedback.label": {"$exists": True}, **window.query()}
        collection = database[collection_name]
        with outside("MongoDB", action=f"reading the inference log {collection.full_name}"):
            cursor = collection.find(query, PROJECTION, sort=[("_id", 1)], batch_size=BATCH_SIZE)
            rows = _rows(iter(cursor), summary)
    finally:
        if own:
            client.close()
    columns = collect([_document(row, config) for row in rows], config.features.loaded)
    columns.ids = Column([f"feedback {row.order[0]}#{row.order[1]}" for row in rows])
    summary.rows = len(rows)
    return Feedback(columns, [row.key for row in rows], summary)


def _document(row: _Row, config: Config) -> dict[str, Any]:
    """The record as a training document: the label as its target (a flat key: the runtime reads a dotted
    key before a nested path, so it wins over any target the client sent along)."""
    features, evaluation = config.features, config.evaluation
    document = {**row.record, features.target: row.label}
    if features.weight and features.weight not in row.record:
        document[features.weight] = 1.0  # a logged request has no weight: each counts once
    if evaluation.split == "time" and evaluation.split_field not in row.record and row.at is not EARLIEST:
        document[evaluation.split_field] = row.at  # the outcome's time, when the record carries none
    return document


def add_feedback(
    raw: RawColumns, config: Config, client: Any, *, now: datetime
) -> tuple[RawColumns, FeedbackSummary | None]:
    """The collection's columns with the feedback rows after them, and the summary (None when off)."""
    found = load_feedback(config, client, now=now)
    if found is None:
        return raw, None
    return with_feedback(raw, found), found.summary


def with_feedback(raw: RawColumns, found: Feedback) -> RawColumns:
    """The collection's columns, then the feedback rows (the last `feedback` rows); a collection document
    whose `_id` a feedback row carries is left out: that record's latest feedback is its label."""
    feedback, summary = found.columns, found.summary
    taken = {key for key in found.keys if key.startswith("_id ")}
    kept = [i for i, identifier in enumerate(raw.ids) if f"_id {identifier}" not in taken] if taken else None
    if kept is not None and len(kept) < raw.rows:
        summary.replaced = raw.rows - len(kept)
        raw = dataclasses.replace(
            raw,
            ids=raw.ids.take(kept),
            values={path: column.take(kept) for path, column in raw.values.items()},
        )
    return RawColumns(  # `present` still counts a replaced document: it only tells a misspelt path from a sparse one
        ids=raw.ids + feedback.ids,
        values={path: column + feedback.values[path] for path, column in raw.values.items()},
        present={path: raw.present[path] + feedback.present[path] for path in raw.present},
        feedback=feedback.rows,
    )
