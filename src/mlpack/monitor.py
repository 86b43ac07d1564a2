"""`mlpack monitor`: drift and live quality of a served model, from its inference log in MongoDB.

The server logs each answered request (`inputs` as sent, `predictions`, `at`, `model`, `version`;
see the server's InferenceLog). This module reads the log of one model version over a time window,
reads every logged record the way the model read it (the runtime's own `feeds`: the same canonical
categories and missing values), and compares the distribution of each feature and of the predictions
with the training baseline stored in the model's metadata, by PSI (mlpack._serving.drift, the same bins the
server's /metrics uses). Where clients sent the true outcome (`POST /feedback`), it also computes
the model's live metrics on those records.
"""

from __future__ import annotations

import html
import json
import math
import os
import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
from packaging.version import InvalidVersion, Version

from mlpack._serving.drift import DEFAULT_THRESHOLD, Profile, label_text
from mlpack.config import Config, load_config
from mlpack.errors import ConfigError, ExternalError
from mlpack.runtime import Model

CHUNK = 2000  # logged records read through the runtime at once
_RELATIVE = re.compile(r"^(\d+(?:\.\d+)?)\s*(s|m|min|h|d|w)$")
_UNITS = {"s": "seconds", "m": "minutes", "min": "minutes", "h": "hours", "d": "days", "w": "weeks"}
# Label metrics (the log holds labels, not probabilities), by task.
LIVE_METRICS = {
    "classification": ("accuracy", "balanced_accuracy", "f1_macro"),
    "regression": ("r2", "rmse", "mae"),
}


# -- options -------------------------------------------------------------------------------------
def parse_time(text: str, *, flag: str, now: datetime) -> datetime:
    """An ISO 8601 date or time (UTC unless it says otherwise), or a duration before now: 30m, 24h, 7d, 2w."""
    value = text.strip()
    relative = _RELATIVE.match(value.lower())
    if relative:
        amount, unit = float(relative.group(1)), relative.group(2)
        return now - timedelta(**{_UNITS[unit]: amount})
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        raise ConfigError(
            f"{flag} {text!r} is not a time: use ISO 8601 (2026-11-27, 2026-11-27T15:00Z) or a duration (30m, 24h, 7d)"
        ) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC)


@dataclass(frozen=True)
class Window:
    since: datetime | None
    until: datetime

    @classmethod
    def parse(cls, since: str | None, until: str | None, *, now: datetime | None = None) -> Window:
        now = now or datetime.now(tz=UTC)
        start = parse_time(since, flag="--since", now=now) if since else None
        end = parse_time(until, flag="--until", now=now) if until else now
        if start is not None and start >= end:
            raise ConfigError(f"--since ({start:%Y-%m-%dT%H:%M:%SZ}) must be before --until ({end:%Y-%m-%dT%H:%M:%SZ})")
        return cls(start, end)

    def query(self) -> dict[str, Any]:
        # MongoDB stores times to the millisecond without a zone: compare naive UTC.
        bounds: dict[str, Any] = {"$lt": self.until.replace(tzinfo=None)}
        if self.since is not None:
            bounds["$gte"] = self.since.replace(tzinfo=None)
        return {"at": bounds}


def check_threshold(value: float) -> float:
    if not (math.isfinite(value) and value > 0):
        raise ConfigError(f"--threshold must be a positive number, got {value:g}")
    return value


# -- which model, which log ----------------------------------------------------------------------
def model_metadata(config: Config, *, version: str | None, dist: Path | None, artifact: str | None) -> dict[str, Any]:
    """The metadata (with its baseline) of the model version being monitored."""
    if artifact:
        from mlpack.artifacts import read_metadata

        metadata = read_metadata(artifact)
    else:
        folder = dist or config.project_dir / "dist"
        wanted = version or config.model.version
        if wanted == "auto":
            wanted = _newest_built(config.model.name, folder)
        report = folder / f"{config.model.name}-{wanted}.json"
        if not report.is_file():
            raise ConfigError(
                f"no build of {config.model.name} {wanted} in {folder} (no {report.name}): "
                "pass --version, --dist or --model ARTIFACT, or run `mlpack build`"
            )
        try:
            metadata = json.loads(report.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise ConfigError(f"{report} cannot be read: {exc}") from None
    if not metadata.get("baseline"):
        raise ConfigError(
            f"{metadata.get('name')} {metadata.get('version')} has no training baseline in its metadata "
            "(built by an older mlpack): rebuild it to monitor drift"
        )
    return dict(metadata)


def _newest_built(name: str, folder: Path) -> str:
    versions = []
    for report in folder.glob(f"{name}-*.json"):
        try:
            versions.append(Version(report.stem[len(name) + 1 :]))
        except InvalidVersion:
            continue
    if not versions:
        raise ConfigError(f'no build of {name} in {folder}: version "auto" needs one (or pass --version)')
    return str(max(versions))


@dataclass(frozen=True)
class LogLocation:
    uri: str
    database: str
    collection: str
    uri_env: str


def log_location(config: Config, metadata: Mapping[str, Any]) -> LogLocation:
    """Where the server writes its log: the same variables and [serve] keys the server reads."""
    settings = {**metadata.get("serve", {})}
    serve = config.serve
    uri_env = settings.get("inference_log_uri_env") or serve.inference_log_uri_env
    candidates = [uri_env, "MLPACK_INFERENCE_LOG_URI", config.source.uri_env]
    for name in candidates:
        uri = os.environ.get(name, "").strip()
        if uri:
            break
    else:
        raise ConfigError(
            f"no inference log to read: set {uri_env} (the server's log connection string) "
            f"or {config.source.uri_env} to the MongoDB that holds it"
        )
    database = os.environ.get("MLPACK_INFERENCE_LOG_DB") or settings.get(
        "inference_log_database", serve.inference_log_database
    )
    collection = os.environ.get("MLPACK_INFERENCE_LOG_COLLECTION") or settings.get(
        "inference_log_collection", serve.inference_log_collection
    )
    return LogLocation(uri, database, collection, name)


# -- the report ----------------------------------------------------------------------------------
@dataclass
class Bin:
    label: str
    expected: float  # share in training
    actual: float  # share in the log


@dataclass
class Distribution:
    """One feature (or the predictions): PSI and data quality over the window."""

    name: str
    kind: str
    values: int = 0  # records that carried the feature (present or missing)
    psi: float | None = None
    missing_rate: float = 0.0
    training_missing_rate: float = 0.0
    unknown_rate: float | None = None  # categoricals: share of values never seen in training
    drifted: bool = False
    bins: list[Bin] = field(default_factory=list)


@dataclass
class Feedback:
    labels: int = 0
    metrics: dict[str, float] = field(default_factory=dict)
    build_metrics: dict[str, float] = field(default_factory=dict)


@dataclass
class Report:
    model: str
    version: str
    since: str | None
    until: str
    threshold: float
    records: int = 0
    requests: int = 0
    unreadable: int = 0  # logged requests whose inputs the model could not read (logged by another version?)
    features: list[Distribution] = field(default_factory=list)
    predictions: Distribution | None = None
    feedback: Feedback = field(default_factory=Feedback)

    @property
    def drifted(self) -> list[Distribution]:
        rows = [*self.features, *([self.predictions] if self.predictions else [])]
        return [row for row in rows if row.drifted]

    def as_dict(self) -> dict[str, Any]:
        document = asdict(self)
        document["drifted"] = [row.name for row in self.drifted]
        return document


class _Tally:
    """Slot counts of one profile over the whole window."""

    def __init__(self, name: str, profile: Profile) -> None:
        self.name = name
        self.profile = profile
        self.counts = np.zeros(profile.slots, dtype=np.int64)

    def add(self, values: Any) -> None:
        self.counts += self.profile.counts_of(values)

    def result(self, threshold: float, training_missing: float) -> Distribution:
        profile, counts = self.profile, self.counts
        total = int(counts.sum())
        present = counts[: profile.value_bins]
        row = Distribution(self.name, profile.kind, values=total, training_missing_rate=training_missing)
        if total:
            row.missing_rate = round(float(counts[profile.missing_bin]) / total, 6)
            if profile.unknown_bin >= 0:
                row.unknown_rate = round(float(counts[profile.unknown_bin]) / total, 6)
        row.psi = profile.psi(counts)
        row.drifted = row.psi is not None and row.psi > threshold
        shown = present.sum()
        row.bins = [
            Bin(label, round(float(expected), 6), round(float(count) / shown, 6) if shown else 0.0)
            for label, expected, count in zip(profile.labels, profile.expected, present)
        ]
        return row


def _documents(collection: Any, model: str, version: str, window: Window) -> Iterator[Mapping[str, Any]]:
    query = {"model": model, "version": version, **window.query()}
    projection = {"inputs": 1, "predictions": 1, "route": 1, "feedback": 1}
    yield from collection.find(query, projection, batch_size=CHUNK).sort("at", 1)


def _records_of(document: Mapping[str, Any]) -> Any:
    """A logged request's inputs as the runtime takes them: one record, a list, or (v2) columns."""
    return document.get("inputs")


def analyse(documents: Iterable[Mapping[str, Any]], metadata: Mapping[str, Any], threshold: float) -> Report:
    """Fold the logged requests into per-feature and prediction distributions, and the feedback pairs."""
    baseline = metadata["baseline"]
    model = Model(b"", metadata)  # only `feeds` is used: no onnxruntime session is created
    inputs = {f.name: f.input for f in model.features}
    tallies = {name: _Tally(name, Profile(entry)) for name, entry in baseline["features"].items() if name in inputs}
    prediction = _Tally("predictions", Profile(baseline["predictions"]))
    classification = metadata["task"] == "classification"
    report = Report(
        model=metadata["name"],
        version=metadata["version"],
        since=None,
        until="",
        threshold=threshold,
    )
    truths: list[Any] = []
    guesses: list[Any] = []

    def count(feeds: Mapping[str, Any], predictions: list[Any]) -> None:
        for name, tally in tallies.items():
            tally.add(feeds[inputs[name]])
        prediction.add([label_text(p) for p in predictions] if classification else predictions)

    def one_by_one(batch: list[Mapping[str, Any]]) -> None:
        """Each document read on its own: the careful path, which can tell which one is unreadable."""
        for document in batch:
            try:
                feeds, _ = model.feeds(_records_of(document))
            except (ValueError, TypeError, KeyError, AttributeError):
                report.unreadable += 1
                continue
            predictions = list(document.get("predictions") or [])
            if len(next(iter(feeds.values()))) != len(predictions):
                report.unreadable += 1
                continue
            report.records += len(predictions)
            count(feeds, predictions)

    def together(batch: list[Mapping[str, Any]]) -> None:
        """Requests of records read in one `feeds` call (a per-document call cost ~0.5 ms on 10k logs)."""
        records: list[Any] = []
        predictions: list[Any] = []
        for document in batch:
            inputs_ = document.get("inputs")
            records += inputs_ if isinstance(inputs_, list) else [inputs_]
            predictions += list(document.get("predictions") or [])
        try:
            feeds, _ = model.feeds(records)
        except (ValueError, TypeError, KeyError, AttributeError):
            one_by_one(batch)
            return
        report.records += len(predictions)
        count(feeds, predictions)

    batch: list[Mapping[str, Any]] = []
    size = 0
    for document in documents:
        report.requests += 1
        inputs_ = document.get("inputs")
        predictions = document.get("predictions") or []
        records = len(inputs_) if isinstance(inputs_, list) else 1
        for index, label in _feedback_of(document, len(predictions)):
            truths.append(label)
            guesses.append(predictions[index])
        if isinstance(inputs_, (list, Mapping)) and records == len(predictions) and not _is_columns(inputs_):
            batch.append(document)
            size += records
            if size >= CHUNK:
                together(batch)
                batch, size = [], 0
        else:  # v2 columns, or something odd: on its own
            one_by_one([document])
    if batch:
        together(batch)
    for name, tally in tallies.items():
        report.features.append(tally.result(threshold, float(baseline["features"][name].get("missing", 0.0))))
    report.predictions = prediction.result(threshold, 0.0)
    report.feedback = _live_metrics(truths, guesses, metadata)
    return report


def _is_columns(inputs: Any) -> bool:
    """A v2 request is logged as columns ({feature: [values]}), not as records."""
    return isinstance(inputs, Mapping) and any(isinstance(v, list) for v in inputs.values())


def _feedback_of(document: Mapping[str, Any], count: int) -> Iterator[tuple[int, Any]]:
    """(record index, true label) pairs a client sent back for this logged request.

    `feedback` is the list the server's POST /feedback pushes {index, label, at} onto (or one entry).
    """
    feedback = document.get("feedback")
    entries = feedback if isinstance(feedback, list) else [feedback] if isinstance(feedback, Mapping) else []
    latest: dict[int, Any] = {}  # a record's outcome sent again (a retry, a correction): the last one counts
    for entry in entries:
        if not isinstance(entry, Mapping) or "label" not in entry:
            continue
        index = entry.get("index", 0)
        if isinstance(index, int) and 0 <= index < count:
            latest[index] = entry["label"]
    yield from latest.items()


def _live_metrics(truths: list[Any], guesses: list[Any], metadata: Mapping[str, Any]) -> Feedback:
    from mlpack.train import METRICS

    task = metadata["task"]
    result = Feedback(labels=len(truths), build_metrics=dict(metadata.get("metrics", {})))
    if not truths:
        return result
    if task == "classification":
        y = np.array([label_text(t) for t in truths], dtype=object)
        p = np.array([label_text(g) for g in guesses], dtype=object)
        classes = sorted(set(y) | set(p))
    else:
        try:
            y = np.array([float(t) for t in truths])
        except (TypeError, ValueError):
            return result  # feedback that is not a number cannot score a regression
        p = np.array(guesses, dtype=float)
        classes = []
    for name in LIVE_METRICS[task]:
        if task == "regression" and name == "r2" and len(y) < 2:
            continue
        value = METRICS[name].score(y, p, None, classes)
        if math.isfinite(value):
            result.metrics[name] = round(value, 6)
    return result


def monitor(
    project: str | Path = ".",
    *,
    since: str | None = None,
    until: str | None = None,
    threshold: float = DEFAULT_THRESHOLD,
    version: str | None = None,
    dist: str | Path | None = None,
    artifact: str | None = None,
) -> Report:
    """The report for one model version over a window of its inference log."""
    from mlpack.source import connect

    config = load_config(project)
    window = Window.parse(since, until)
    threshold = check_threshold(threshold)
    metadata = model_metadata(config, version=version, dist=Path(dist) if dist else None, artifact=artifact)
    where = log_location(config, metadata)
    client = connect(where.uri)
    try:
        collection = client[where.database][where.collection]
        try:
            report = analyse(_documents(collection, metadata["name"], metadata["version"], window), metadata, threshold)
        except Exception as exc:  # pymongo's errors while reading: the database went away or refused
            from pymongo.errors import PyMongoError

            if isinstance(exc, PyMongoError):
                raise ExternalError(
                    f"reading the inference log {where.database}.{where.collection} failed: {exc}"
                ) from None
            raise
    finally:
        client.close()
    report.since = window.since.strftime("%Y-%m-%dT%H:%M:%SZ") if window.since else None
    report.until = window.until.strftime("%Y-%m-%dT%H:%M:%SZ")
    return report


# -- output --------------------------------------------------------------------------------------
def _percent(value: float | None) -> str:
    return "-" if value is None else f"{value:.1%}"


def _psi_text(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


def render_text(report: Report) -> str:
    span = f"{report.since or 'the start'} to {report.until}"
    lines = [
        f"{report.model} {report.version}: {report.records} records in {report.requests} logged requests, {span}",
    ]
    if report.unreadable:
        lines.append(
            f"  ({report.unreadable} logged requests could not be read by this model version and were skipped)"
        )
    rows = [("", "PSI", "missing", "training missing", "unknown categories")]
    for row in [*report.features, *([report.predictions] if report.predictions else [])]:
        flag = " !" if row.drifted else ""
        rows.append(
            (
                row.name if row is not report.predictions else "(predictions)",
                _psi_text(row.psi) + flag,
                _percent(row.missing_rate) if row is not report.predictions else "-",
                _percent(row.training_missing_rate) if row is not report.predictions else "-",
                _percent(row.unknown_rate) if row.kind == "categorical" and row is not report.predictions else "-",
            )
        )
    widths = [max(len(cells[i]) for cells in rows) for i in range(len(rows[0]))]
    for cells in rows:
        lines.append("  " + "  ".join(cell.ljust(width) for cell, width in zip(cells, widths)).rstrip())
    feedback = report.feedback
    if feedback.labels:
        metrics = ", ".join(
            f"{name} {value:.4f}"
            + (f" (build {feedback.build_metrics[name]:.4f})" if name in feedback.build_metrics else "")
            for name, value in feedback.metrics.items()
        )
        lines.append(f"live metrics on {feedback.labels} feedback labels: {metrics or 'none computable'}")
    else:
        lines.append("live metrics: no feedback labels in this window (POST /feedback sends them)")
    if report.drifted:
        names = ", ".join(f"{row.name} ({row.psi:.3f})" for row in report.drifted if row.psi is not None)
        lines.append(f"drift above the threshold {report.threshold:g}: {names}")
    else:
        lines.append(f"no PSI above the threshold {report.threshold:g}")
    return "\n".join(lines)


def render_html(report: Report) -> str:
    """A self-contained page (no scripts, no network): the table, and per feature its bins as bars."""
    rows = []
    sections = []
    for row in [*report.features, *([report.predictions] if report.predictions else [])]:
        css = ' class="drift"' if row.drifted else ""
        rows.append(
            f"<tr{css}><td>{html.escape(row.name)}</td><td>{row.kind}</td><td>{_psi_text(row.psi)}</td>"
            f"<td>{_percent(row.missing_rate)}</td><td>{_percent(row.training_missing_rate)}</td>"
            f"<td>{_percent(row.unknown_rate)}</td></tr>"
        )
        sections.append(f"<h3>{html.escape(row.name)} — PSI {_psi_text(row.psi)}</h3>{_bars(row.bins)}")
    feedback = report.feedback
    live = (
        "".join(
            f"<tr><td>{name}</td><td>{value:.4f}</td><td>{feedback.build_metrics.get(name, float('nan')):.4f}</td></tr>"
            for name, value in feedback.metrics.items()
        )
        or '<tr><td colspan="3">no feedback labels in this window</td></tr>'
    )
    title = html.escape(f"{report.model} {report.version}: drift and live quality")
    drifted = ", ".join(html.escape(row.name) for row in report.drifted) or "none"
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{title}</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 2em; color: #222; }}
table {{ border-collapse: collapse; margin: 1em 0; }}
td, th {{ border: 1px solid #ccc; padding: 4px 10px; text-align: left; }}
tr.drift td {{ background: #fde2e1; }}
.legend span {{ display: inline-block; width: 12px; height: 12px; margin: 0 4px 0 12px; }}
</style></head><body>
<h1>{title}</h1>
<p>{report.records} records in {report.requests} logged requests, from {report.since or "the start"} to {report.until}.
PSI threshold {report.threshold:g}; above it: <strong>{drifted}</strong>.</p>
<table><tr><th>feature</th><th>kind</th><th>PSI</th><th>missing</th><th>training missing</th>
<th>unknown categories</th></tr>
{"".join(rows)}
</table>
<h2>Live metrics ({feedback.labels} feedback labels)</h2>
<table><tr><th>metric</th><th>live</th><th>build (test split)</th></tr>{live}</table>
<h2>Distributions</h2>
<p class="legend"><span style="background:#8da0cb"></span>training<span style="background:#fc8d62"></span>logged</p>
{"".join(sections)}
</body></html>
"""


def _bars(bins: list[Bin]) -> str:
    """Training and logged shares per bin as horizontal bars in inline SVG."""
    height, width = 18, 260
    parts = []
    for index, item in enumerate(bins):
        y = index * height * 2
        parts.append(
            f'<text x="0" y="{y + 13}" font-size="11">{html.escape(item.label[:28])}</text>'
            f'<rect x="190" y="{y}" width="{item.expected * width:.1f}" height="{height - 3}" fill="#8da0cb"/>'
            f'<rect x="190" y="{y + height - 3}" width="{item.actual * width:.1f}" height="{height - 3}"'
            ' fill="#fc8d62"/>'
            f'<text x="{195 + max(item.expected, item.actual) * width:.1f}" y="{y + 13}" font-size="11">'
            f"{item.expected:.1%} / {item.actual:.1%}</text>"
        )
    total = max(1, len(bins)) * height * 2
    return f'<svg xmlns="http://www.w3.org/2000/svg" width="560" height="{total}">{"".join(parts)}</svg>'


def write_html(report: Report, path: str | Path) -> Path:
    """Written next to its final name, then renamed: never a half-written page."""
    target = Path(path)
    if target.is_dir():
        raise ConfigError(f"--html {target} is a folder: name a file")
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        staged = target.with_name(f".{target.name}.tmp")
        staged.write_text(render_html(report), encoding="utf-8")
        os.replace(staged, target)
    except OSError as exc:
        raise ConfigError(f"cannot write --html {target}: {exc.strerror}") from None
    return target


__all__ = ["Report", "analyse", "monitor", "parse_time", "render_html", "render_text", "write_html"]
