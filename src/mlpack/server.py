"""The model's HTTP server (SPEC §5), on the standard library alone.

Copied verbatim into every model wheel (as `_server.py`), like the runtime: it imports nothing
from mlpack and takes the model as an argument. Why the standard library rather than an ASGI
stack: the wheel stays onnxruntime + numpy, the image stays slim, and on the measured workload
(`benchmarks/serve.py`, one-record POSTs) this asyncio server answered 1.7-2.0x the requests/s of
Starlette + uvicorn with a lower p99, since a prediction is ~30 µs and the rest is HTTP parsing,
which here is a few string splits. A thread-per-connection `http.server` was tried first: fine
at 1 connection, but p99 345 ms at 64.

Every client mistake becomes a 4xx JSON answer naming the problem; the server never dies of a
request. SIGTERM stops accepting, lets in-flight requests finish, then exits 0.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import json
import logging
import math
import mmap
import os
import queue
import signal
import socket
import sys
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields
from datetime import datetime, timezone
from http import HTTPStatus
from typing import Any

from .drift import DriftWindow

log = logging.getLogger("mlpack.server")

DEFAULT_MAX_BODY_BYTES = 10 * 1024 * 1024
LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
# Methods that get a label of their own in /metrics; any other text a client sends is "other", so
# no client can grow the label set (issue 13: 200k distinct methods grew RSS by 42 MB).
KNOWN_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "CONNECT", "TRACE"})
# A JSON value costs Python ~25-80 bytes however short its text ("{}," is 3 bytes, a dict 64): a body
# may hold at most this many values per allowed record, counted (by its commas) before it is parsed.
VALUES_PER_RECORD = 100


@dataclass(frozen=True)
class Limits:
    """What one server process allows; each from the CLI, else the environment, else [serve], else here."""

    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
    max_records: int = 10_000  # records (or v2 rows) in one request
    large_bodies: int = 2  # bodies over 64 KiB read and parsed at once: bounds memory, not requests
    max_connections: int = 4096  # open connections; more wait in the listen backlog
    idle_timeout: float = 60.0  # s: for a request's head or body, or the next request on keep-alive
    write_timeout: float = 30.0  # s: for a client to take an answer (one that never reads is cut off)
    drain_timeout: float = 8.0  # s: SIGTERM waits this long for requests in flight; docker stop waits 10

    @classmethod
    def resolve(cls, settings: Mapping[str, Any], overrides: Mapping[str, Any]) -> Limits:
        values: dict[str, Any] = {}
        for spec in fields(cls):
            kind = int if spec.type in ("int", int) else float
            env = f"MLPACK_{spec.name.upper()}"
            for source, raw in (
                (f"--{spec.name.replace('_', '-')}", overrides.get(spec.name)),
                (env, os.environ.get(env) or None),
                (f"[serve].{spec.name}", settings.get(spec.name)),
            ):
                if raw is None:
                    continue
                try:
                    value = kind(raw)
                except (TypeError, ValueError):
                    value = 0
                if not value > 0:  # also NaN
                    print(f"error: {source} must be a positive {kind.__name__}, got {raw!r}", file=sys.stderr)
                    raise SystemExit(2)
                values[spec.name] = value
                break
        return cls(**values)


DEFAULT_DRIFT_WINDOW = 1000  # records per worker whose inputs and predictions /metrics compares to training


class ClientError(Exception):
    """A request the client must change: answered with `status` and a JSON error body."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


# -- metrics ------------------------------------------------------------------------------------
def _label(value: str) -> str:
    """A label value escaped as the Prometheus text format asks: backslash, quote, newline."""
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


class Metrics:
    """Prometheus counters and a latency histogram, guarded by one lock (updates are tiny)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.requests: dict[tuple[str, str, int], int] = {}
        self.latency_counts: dict[str, list[int]] = {}
        self.latency_sum: dict[str, float] = {}
        self.predictions = 0
        self.errors: dict[str, int] = {}
        self.log_dropped = 0
        self.log_written = 0

    def observe(self, route: str, method: str, status: int, seconds: float, predictions: int) -> None:
        if method not in KNOWN_METHODS:
            method = "other"  # client text never becomes a label: the label set stays bounded
        with self._lock:
            key = (route, method, status)
            self.requests[key] = self.requests.get(key, 0) + 1
            counts = self.latency_counts.setdefault(route, [0] * (len(LATENCY_BUCKETS) + 1))
            for index, bound in enumerate(LATENCY_BUCKETS):
                if seconds <= bound:
                    counts[index] += 1
                    break
            else:
                counts[-1] += 1
            self.latency_sum[route] = self.latency_sum.get(route, 0.0) + seconds
            self.predictions += predictions
            if status >= 400:
                kind = "client" if status < 500 else "server"
                self.errors[kind] = self.errors.get(kind, 0) + 1

    def count_log(self, written: int = 0, dropped: int = 0) -> None:
        with self._lock:
            self.log_written += written
            self.log_dropped += dropped

    def render(self, model: Any, extra: list[str] | None = None) -> str:
        with self._lock:
            lines = [
                "# HELP mlpack_model_info The model being served.",
                "# TYPE mlpack_model_info gauge",
                f'mlpack_model_info{{name="{_label(model.name)}",version="{_label(model.version)}"}} 1',
                "# HELP mlpack_requests_total HTTP requests by route, method and status.",
                "# TYPE mlpack_requests_total counter",
            ]
            for (route, method, status), count in sorted(self.requests.items()):
                labels = f'route="{_label(route)}",method="{_label(method)}",status="{status}"'
                lines.append(f"mlpack_requests_total{{{labels}}} {count}")
            lines += [
                "# HELP mlpack_request_duration_seconds Request latency by route.",
                "# TYPE mlpack_request_duration_seconds histogram",
            ]
            for raw_route, counts in sorted(self.latency_counts.items()):
                route = _label(raw_route)
                cumulative = 0
                for bound, count in zip((*LATENCY_BUCKETS, math.inf), counts):
                    cumulative += count
                    label = "+Inf" if bound == math.inf else repr(bound)
                    lines.append(f'mlpack_request_duration_seconds_bucket{{route="{route}",le="{label}"}} {cumulative}')
                lines.append(
                    f'mlpack_request_duration_seconds_sum{{route="{route}"}} {self.latency_sum[raw_route]:.6f}'
                )
                lines.append(f'mlpack_request_duration_seconds_count{{route="{route}"}} {cumulative}')
            lines += [
                "# HELP mlpack_predictions_total Records predicted.",
                "# TYPE mlpack_predictions_total counter",
                f"mlpack_predictions_total {self.predictions}",
                "# HELP mlpack_errors_total Error answers, by who caused them.",
                "# TYPE mlpack_errors_total counter",
            ]
            for kind in ("client", "server"):
                lines.append(f'mlpack_errors_total{{kind="{kind}"}} {self.errors.get(kind, 0)}')
            lines += [
                "# HELP mlpack_inference_log_records_total Inference log records written to or dropped before MongoDB.",
                "# TYPE mlpack_inference_log_records_total counter",
                f'mlpack_inference_log_records_total{{outcome="written"}} {self.log_written}',
                f'mlpack_inference_log_records_total{{outcome="dropped"}} {self.log_dropped}',
            ]
        return "\n".join([*lines, *(extra or [])]) + "\n"


class DriftTracking:
    """Per-feature data quality and drift for /metrics (SPEC §5, §10), totalled across worker processes.

    Each process counts into its own slot of one anonymous shared memory block, mapped before the
    workers fork, so every process can read every other's counts and a scrape of any of them
    reports the server's totals; a slot has one writer, so no lock between processes is needed.
    """

    def __init__(self, metadata: Mapping[str, Any], size: int, slots: int = 1) -> None:
        probe = DriftWindow.for_model(metadata, size=size)
        if probe is None:
            raise ValueError("the model has no training baseline")
        self.metadata = metadata
        self.size = size
        self.length = probe.length
        self._block = mmap.mmap(-1, max(1, self.length * slots) * 8)  # MAP_SHARED: forks see each other
        view = memoryview(self._block).cast("q")
        self.slots = [view[index * self.length : (index + 1) * self.length] for index in range(slots)]
        self.window: DriftWindow | None = None
        self._lock = threading.Lock()
        self._failed = False

    @classmethod
    def from_settings(cls, model: Any, workers: int) -> DriftTracking | None:
        settings = model.metadata.get("serve", {})
        size = int(os.environ.get("MLPACK_DRIFT_WINDOW", settings.get("drift_window", DEFAULT_DRIFT_WINDOW)))
        if size <= 0 or not model.metadata.get("baseline"):
            return None  # switched off, or a model built before baselines existed
        return cls(model.metadata, size, max(1, workers))

    def attach(self, slot: int) -> None:
        """Count this process's requests into `slot` (called in each process after the fork)."""
        self.window = DriftWindow.for_model(self.metadata, size=self.size, counts=self.slots[slot])

    def observe(self, feeds: Mapping[str, Any], labels: list[Any]) -> None:
        if self.window is None:
            return
        try:
            with self._lock:  # large bodies are answered on executor threads
                self.window.observe(feeds, labels)
        except Exception:  # counting must never cost a prediction
            if not self._failed:
                self._failed = True
                log.exception("drift tracking failed; predictions carry on")

    def render(self) -> list[str]:
        if self.window is None:
            return []
        return self.window.prometheus(self.window.add(self.slots))


# -- inference log ------------------------------------------------------------------------------
class InferenceLog:
    """Requests and predictions written to MongoDB in batches, by a thread off the request path.

    The request thread only does a non-blocking `put`; when the queue is full (the database is
    slow or gone) the record is dropped and counted, so logging never slows or fails a prediction.
    Needs pymongo, which the wheel's `[serve]` extra brings.
    """

    def __init__(
        self,
        uri: str,
        database: str,
        collection: str,
        metrics: Metrics,
        *,
        batch: int = 200,
        capacity: int = 10_000,
        flush_seconds: float = 1.0,
    ) -> None:
        from pymongo import MongoClient  # only when logging is on: the plain wheel has no pymongo

        self._client: Any = MongoClient(
            uri,
            serverSelectionTimeoutMS=2000,
            connectTimeoutMS=2000,
            socketTimeoutMS=5000,
            appname="mlpack-inference-log",
        )
        self._collection = self._client[database][collection]
        self._metrics = metrics
        self._queue: queue.Queue[dict[str, Any]] = queue.Queue(maxsize=capacity)
        self._batch = batch
        self._flush_seconds = flush_seconds
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name="inference-log", daemon=True)
        self._thread.start()

    @classmethod
    def from_settings(cls, model: Any, metrics: Metrics) -> InferenceLog | None:
        """On when the model's [serve] config asks for it or MLPACK_INFERENCE_LOG_URI is set.

        The connection string always comes from the environment: credentials never sit in a wheel.
        """
        settings = model.metadata.get("serve", {})
        uri_env = settings.get("inference_log_uri_env", "MLPACK_INFERENCE_LOG_URI")
        uri = os.environ.get(uri_env, "").strip() or os.environ.get("MLPACK_INFERENCE_LOG_URI", "").strip()
        if not uri:
            if settings.get("inference_log"):
                log.warning("inference log is on in the config but %s is not set: not logging", uri_env)
            return None
        database = os.environ.get("MLPACK_INFERENCE_LOG_DB") or settings.get("inference_log_database", "mlpack")
        collection = os.environ.get("MLPACK_INFERENCE_LOG_COLLECTION") or settings.get(
            "inference_log_collection", "inference_log"
        )
        try:
            return cls(uri, database, collection, metrics)
        except ImportError:
            raise SystemExit(f"inference logging needs pymongo: pip install '{model.name}[serve]'") from None

    def record(self, model: Any, route: str, inputs: Any, predictions: list[Any]) -> None:
        entry = {
            "model": model.name,
            "version": model.version,
            "route": route,
            "at": datetime.now(tz=timezone.utc),
            "inputs": inputs,
            "predictions": predictions,
        }
        try:
            self._queue.put_nowait(entry)
        except queue.Full:
            self._metrics.count_log(dropped=1)

    def _run(self) -> None:
        while not (self._stopping.is_set() and self._queue.empty()):
            batch: list[dict[str, Any]] = []
            deadline = time.monotonic() + self._flush_seconds
            while len(batch) < self._batch:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                try:
                    batch.append(self._queue.get(timeout=remaining))
                except queue.Empty:
                    break
            if batch:
                self._write(batch)

    def _write(self, batch: list[dict[str, Any]]) -> None:
        from pymongo.errors import BulkWriteError

        try:
            self._collection.insert_many(batch, ordered=False)
            self._metrics.count_log(written=len(batch))
        except BulkWriteError as exc:  # the server refused some documents; the others are in
            written = int(exc.details.get("nInserted", 0))
            self._metrics.count_log(written=written, dropped=len(batch) - written)
        except (OverflowError, ValueError, TypeError):
            # A document the driver cannot encode (an integer past 64 bits in an unused field, say):
            # write the batch one by one so that one odd request does not cost the others.
            for entry in batch:
                self._write_one(entry)
        except Exception as exc:  # the database is slow or gone: count the loss, keep serving
            self._metrics.count_log(dropped=len(batch))
            log.warning("inference log: dropped %d records: %s", len(batch), str(exc).split("\n", 1)[0][:200])

    def _write_one(self, entry: dict[str, Any]) -> None:
        try:
            self._collection.insert_one(entry)
            self._metrics.count_log(written=1)
        except Exception:
            self._metrics.count_log(dropped=1)

    def close(self, timeout: float = 5.0) -> None:
        self._stopping.set()
        self._thread.join(timeout)
        self._client.close()


# -- request handling ---------------------------------------------------------------------------
def _json_safe(value: Any) -> Any:
    """Floats that JSON cannot carry (NaN, inf) as null, so every answer is valid JSON."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, list):
        return [_json_safe(v) for v in value]
    if isinstance(value, dict):
        return {key: _json_safe(item) for key, item in value.items()}
    return value


def _records_from_body(body: Any, max_records: int) -> Any:
    if isinstance(body, Mapping) and "instances" in body:
        body = body["instances"]
        if not isinstance(body, list):
            raise ClientError(422, "'instances' must be a list of records")
    if not isinstance(body, (Mapping, list)):
        raise ClientError(422, 'expected a record (object), a list of records, or {"instances": [...]}')
    if isinstance(body, list) and len(body) > max_records:
        raise ClientError(413, f"{len(body)} records is over the limit of {max_records} per request")
    return body


class _LongInteger:
    """An integer past Python's digit limit: no feature can take it, and the runtime names the field."""

    def __init__(self, text: str) -> None:
        self.digits = len(text.lstrip("-"))

    def __repr__(self) -> str:
        return f"an integer of {self.digits} digits"

    __str__ = __repr__


def _parse_int(text: str) -> Any:
    try:
        return int(text)
    except ValueError:  # more digits than int_max_str_digits (4,300 by default)
        return _LongInteger(text)


def _parse_json(body: bytes | None, max_values: int) -> Any:
    if body is None:
        raise ClientError(411, "a Content-Length header is required")
    # Counted before parsing: commas bound the number of values, and each costs Python far more
    # memory than its text (12 bodies of 9.9 MB of "[{},{},...]" once took RSS to 1.8 GB).
    if body.count(b",") >= max_values:
        raise ClientError(413, f"the body holds more than {max_values} JSON values (limit: max_records x 100)")
    try:
        try:
            return json.loads(body)
        except ValueError as exc:
            if type(exc) is not ValueError:  # JSONDecodeError, UnicodeDecodeError: the body is bad
                raise
            # An integer too long to convert: parse again, keeping it for the runtime to name the field.
            return json.loads(body, parse_int=_parse_int)
    except ValueError as exc:  # JSONDecodeError or bad UTF-8
        raise ClientError(400, f"the body is not valid JSON: {exc}") from None
    except RecursionError:
        raise ClientError(400, "the body is nested too deeply") from None


def _dump_json(document: Any) -> bytes:
    try:
        return json.dumps(document, allow_nan=False).encode()
    except ValueError:
        return json.dumps(_json_safe(document), allow_nan=False).encode()


# How a record gives each kind of input in JSON (dates: ISO 8601 or Extended JSON {"$date": ...}).
_OPENAPI_TYPES: dict[str, Any] = {
    "numeric": {"type": ["number", "null"]},
    "datetime": {"type": ["string", "object", "null"]},
    "text": {"type": ["string", "null"]},
}
_V2_TYPES = {"numeric": "FP32", "categorical": "BYTES", "datetime": "INT64", "text": "BYTES"}


class App:
    """Routes → handlers; everything the HTTP layer needs to know about the model."""

    def __init__(
        self,
        model: Any,
        *,
        limits: Limits | None = None,
        inference_log: InferenceLog | None = None,
        metrics: Metrics | None = None,
        drift: DriftTracking | None = None,
    ) -> None:
        self.model = model
        self.limits = limits or Limits()
        self.metrics = metrics or Metrics()
        self.inference_log = inference_log
        self.drift = drift
        self._observe = drift.observe if drift is not None else None
        self.ready = threading.Event()
        self.draining = threading.Event()
        v2 = f"/v2/models/{model.name}"
        self.routes: dict[tuple[str, str], Callable[[Any], tuple[int, Any]]] = {
            ("POST", "/predict"): self.predict,
            ("GET", "/healthz"): lambda _: (200, {"status": "ok"}),
            ("GET", "/readyz"): self.readiness,
            ("GET", "/metadata"): lambda _: (200, self.model.metadata),
            ("GET", "/openapi.json"): lambda _: (200, self.openapi()),
            ("GET", "/v2"): lambda _: (
                200,
                {
                    "name": "mlpack",
                    "version": self.model.metadata.get("versions", {}).get("mlpack", ""),
                    "extensions": [],
                },
            ),
            ("GET", "/v2/health/live"): lambda _: (200, {"live": True}),
            ("GET", "/v2/health/ready"): self.readiness,
            ("GET", v2): lambda _: (200, self.v2_metadata()),
            ("GET", f"{v2}/versions/{model.version}"): lambda _: (200, self.v2_metadata()),
            ("GET", f"{v2}/ready"): self.readiness,
            ("GET", f"{v2}/versions/{model.version}/ready"): self.readiness,
            ("POST", f"{v2}/infer"): self.v2_infer,
            ("POST", f"{v2}/versions/{model.version}/infer"): self.v2_infer,
        }
        self.paths = {path for _, path in self.routes}

    def load(self) -> None:
        self.model.load()
        self.ready.set()

    def readiness(self, _body: Any) -> tuple[int, Any]:
        if self.ready.is_set() and not self.draining.is_set():
            return 200, {"ready": True}
        return 503, {"ready": False}

    def _require_ready(self) -> None:
        if not self.ready.is_set():
            raise ClientError(503, "the model is still loading")

    def predict(self, body: Any) -> tuple[int, Any]:
        self._require_ready()
        records = _records_from_body(body, self.limits.max_records)
        try:
            labels, probabilities, _ = self.model.run(records, self._observe)
        except ValueError as exc:
            raise ClientError(422, str(exc)) from None
        answer: dict[str, Any] = {"predictions": labels}
        if probabilities is not None:
            answer["probabilities"] = probabilities
        answer["model"] = {"name": self.model.name, "version": self.model.version}
        if self.inference_log is not None:
            self.inference_log.record(self.model, "/predict", records, labels)
        return 200, answer

    def respond(self, method: str, target: str, body: bytes | None) -> tuple[int, str, bytes]:
        """One request → (status, content type, payload); every failure becomes an answer, counted."""
        started = time.perf_counter()
        path = target.split("?", 1)[0]
        route = path if path in self.paths or path == "/metrics" else "other"
        status, predictions = 500, 0
        try:
            if method == "GET" and path == "/metrics":
                status = 200
                extra = self.drift.render() if self.drift is not None else None
                return 200, "text/plain; version=0.0.4", self.metrics.render(self.model, extra).encode()
            handler = self.routes.get((method, path))
            if handler is None:
                if path in self.paths:
                    raise ClientError(405, f"{method} is not allowed on {path}")
                raise ClientError(404, f"no route {path}")
            document = _parse_json(body, self.limits.max_records * VALUES_PER_RECORD) if method == "POST" else None
            status, answer = handler(document)
            if status == 200 and isinstance(answer, dict):
                predictions = len(answer.get("predictions", ()))
            return status, "application/json", _dump_json(answer)
        except ClientError as error:
            status = error.status
            return status, "application/json", _dump_json({"error": error.message})
        except Exception:  # a bug, never the client's doing: answer, log, keep serving
            log.exception("unexpected error on %s %s", method, path)
            status = 500
            return 500, "application/json", _dump_json({"error": "internal error"})
        finally:
            self.metrics.observe(route, method, status, time.perf_counter() - started, predictions)

    def framing_error(self, status: int, message: str) -> tuple[int, str, bytes]:
        """Requests the HTTP layer refuses before any route sees them (size, framing)."""
        self.metrics.observe("other", "-", status, 0.0, 0)
        return status, "application/json", _dump_json({"error": message})

    def v2_metadata(self) -> dict[str, Any]:
        outputs = [{"name": "label", "datatype": "BYTES" if self._string_labels() else "INT64", "shape": [-1]}]
        if self.model.task == "classification":
            outputs.append({"name": "probabilities", "datatype": "FP32", "shape": [-1, len(self.model.classes or [])]})
        else:
            outputs = [{"name": "variable", "datatype": "FP32", "shape": [-1]}]
        return {
            "name": self.model.name,
            "versions": [self.model.version],
            "platform": "onnxruntime_onnx",
            "inputs": [{"name": f.name, "datatype": _V2_TYPES[f.kind], "shape": [-1, 1]} for f in self.model.features],
            "outputs": outputs,
        }

    def _string_labels(self) -> bool:
        return any(isinstance(c, str) for c in (self.model.classes or []))

    def v2_infer(self, body: Any) -> tuple[int, Any]:
        """Open Inference Protocol v2: one input tensor per feature (by path or ONNX input name)."""
        self._require_ready()
        if not isinstance(body, Mapping) or not isinstance(body.get("inputs"), list):
            raise ClientError(400, 'expected {"inputs": [{"name", "shape", "datatype", "data"}, ...]}')
        by_name = {f.name: f for f in self.model.features} | {f.input: f for f in self.model.features}
        columns: dict[str, Any] = {}
        for index, tensor in enumerate(body["inputs"]):
            if not isinstance(tensor, Mapping) or not isinstance(tensor.get("name"), str):
                raise ClientError(400, f"inputs[{index}] must be an object with a name")
            feature = by_name.get(tensor["name"])
            if feature is None:
                continue  # inputs the model does not use are ignored, as in /predict
            data = tensor.get("data")
            if not isinstance(data, list):
                raise ClientError(400, f"input '{tensor['name']}': data must be a list")
            if data and isinstance(data[0], list):  # [[v], [v]] for shape [n, 1]
                if not all(isinstance(row, list) and len(row) == 1 for row in data):
                    raise ClientError(400, f"input '{tensor['name']}': expected shape [n, 1]")
                data = [row[0] for row in data]
            if len(data) > self.limits.max_records:
                raise ClientError(
                    413, f"input '{tensor['name']}': {len(data)} rows is over the limit of {self.limits.max_records}"
                )
            if feature.kind == "datetime" and tensor.get("datatype") == "INT64":
                # An INT64 tensor holds milliseconds since 1970 UTC, as the graph does (JSON has no date):
                # Extended JSON's {"$date": <ms>} says so to the runtime, which checks each value.
                data = [{"$date": value} if type(value) is int else value for value in data]
            columns[feature.name] = data
        missing = [f.name for f in self.model.features if f.name not in columns]
        if missing:
            raise ClientError(400, f"missing input '{missing[0]}'")
        try:
            labels, probabilities, _ = self.model.run(columns, self._observe)
        except ValueError as exc:
            raise ClientError(400, str(exc)) from None
        count = len(labels)
        outputs = []
        if self.model.task == "classification":
            assert probabilities is not None
            outputs.append(
                {
                    "name": "label",
                    "datatype": "BYTES" if self._string_labels() else "INT64",
                    "shape": [count],
                    "data": labels,
                }
            )
            width = len(probabilities[0]) if probabilities else 0
            outputs.append(
                {
                    "name": "probabilities",
                    "datatype": "FP32",
                    "shape": [count, width],
                    "data": [p for row in probabilities for p in row],
                }
            )
        else:
            outputs.append({"name": "variable", "datatype": "FP32", "shape": [count], "data": labels})
        if self.inference_log is not None:
            self.inference_log.record(self.model, "v2/infer", columns, labels)
        answer: dict[str, Any] = {
            "model_name": self.model.name,
            "model_version": self.model.version,
            "outputs": outputs,
        }
        if isinstance(body.get("id"), str):
            answer["id"] = body["id"]
        return 200, answer

    def openapi(self) -> dict[str, Any]:
        record: dict[str, Any] = {"type": "object", "properties": {}, "required": [], "additionalProperties": True}
        for feature in self.model.features:
            node = record
            for part in feature.parts[:-1]:  # nested as in the source documents
                child = node["properties"].setdefault(part, {"type": "object", "properties": {}, "required": []})
                if part not in node["required"]:
                    node["required"].append(part)
                node = child
            kind = _OPENAPI_TYPES.get(feature.kind, {"type": ["string", "number", "null"]})
            node["properties"][feature.parts[-1]] = {**kind, "description": f"{feature.kind} feature {feature.name}"}
            node["required"].append(feature.parts[-1])
        label = {"type": "string"} if self._string_labels() else {"type": "number"}
        response: dict[str, Any] = {
            "type": "object",
            "required": ["predictions", "model"],
            "properties": {
                "predictions": {"type": "array", "items": label},
                "model": {"type": "object", "properties": {"name": {"type": "string"}, "version": {"type": "string"}}},
            },
        }
        if self.model.task == "classification":
            response["properties"]["probabilities"] = {
                "type": "array",
                "items": {"type": "array", "items": {"type": "number"}},
            }
        error = {"type": "object", "required": ["error"], "properties": {"error": {"type": "string"}}}
        json_error = {"content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}
        return {
            "openapi": "3.1.0",
            "info": {
                "title": self.model.name,
                "version": self.model.version,
                "description": self.model.metadata.get("description", ""),
            },
            "paths": {
                "/predict": {
                    "post": {
                        "summary": 'Predict for one record, a list of records, or {"instances": [...]}',
                        "requestBody": {
                            "required": True,
                            "content": {
                                "application/json": {
                                    "schema": {
                                        "oneOf": [
                                            {"$ref": "#/components/schemas/Record"},
                                            {
                                                "type": "array",
                                                "items": {"$ref": "#/components/schemas/Record"},
                                                "minItems": 1,
                                            },
                                            {
                                                "type": "object",
                                                "required": ["instances"],
                                                "properties": {
                                                    "instances": {
                                                        "type": "array",
                                                        "items": {"$ref": "#/components/schemas/Record"},
                                                        "minItems": 1,
                                                    }
                                                },
                                            },
                                        ]
                                    }
                                }
                            },
                        },
                        "responses": {
                            "200": {
                                "description": "predictions",
                                "content": {
                                    "application/json": {"schema": {"$ref": "#/components/schemas/Prediction"}}
                                },
                            },
                            "400": {"description": "malformed JSON", **json_error},
                            "413": {"description": "body too large", **json_error},
                            "422": {"description": "a field is missing or of the wrong type", **json_error},
                        },
                    }
                },
                "/healthz": {"get": {"summary": "liveness", "responses": {"200": {"description": "alive"}}}},
                "/readyz": {
                    "get": {
                        "summary": "readiness",
                        "responses": {"200": {"description": "ready"}, "503": {"description": "loading or draining"}},
                    }
                },
                "/metadata": {
                    "get": {"summary": "the model's metadata", "responses": {"200": {"description": "metadata"}}}
                },
                "/metrics": {
                    "get": {
                        "summary": "Prometheus metrics",
                        "responses": {"200": {"description": "text exposition format"}},
                    }
                },
            },
            "components": {"schemas": {"Record": record, "Prediction": response, "Error": error}},
        }


class HttpServer:
    """A compact HTTP/1.1 server on asyncio: keep-alive, Content-Length bodies, one event loop.

    One loop serves every connection in turn, so answers stay fair under many connections (a
    thread per connection let a few threads starve the rest: p99 345 ms at 64 connections). A
    one-record prediction (~30 µs) runs inline; large bodies go to a thread so /healthz stays quick,
    at most `Limits.large_bodies` at once: the others wait, unread, in their sockets' buffers.
    """

    INLINE_BODY_BYTES = 64 * 1024
    MAX_HEAD_BYTES = 64 * 1024
    LARGE_BODY_WAIT_S = 2.0  # then 503 with Retry-After: the client retries rather than queueing forever
    ACCEPT_LOG_INTERVAL_S = 10.0
    LINGER_S = 2.0  # reading and dropping the rest of a refused body, at most

    def __init__(self, app: App) -> None:
        self.app = app
        self.limits = app.limits
        self.in_flight = 0
        self.idle = asyncio.Event()
        self.idle.set()
        self.connections: dict[asyncio.StreamWriter, asyncio.Task[None]] = {}
        self._room = asyncio.Event()  # set while there is room for another connection
        self._room.set()
        self._large = asyncio.Semaphore(self.limits.large_bodies)

    # -- connections ----------------------------------------------------------------------------
    async def accept(self, sock: socket.socket) -> None:
        """Accept connections until cancelled; out of file descriptors, back off and say so rarely.

        asyncio's own accept loop logged a traceback for every refused accept (147 MB of log in 30 s
        once the process ran out of descriptors); clients wait in the backlog meanwhile.
        """
        loop = asyncio.get_running_loop()
        sock.setblocking(False)
        backoff, refused, last_logged = 0.0, 0, -math.inf
        while True:
            await self._room.wait()
            try:
                conn, _ = await loop.sock_accept(sock)
            except OSError as exc:
                if exc.errno not in (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM):
                    continue  # the client gave up before we took it (ECONNABORTED and kin)
                refused += 1
                now = time.monotonic()
                if now - last_logged >= self.ACCEPT_LOG_INTERVAL_S:
                    log.warning("cannot accept connections (%s): backing off; %d refused so far", exc.strerror, refused)
                    last_logged = now
                backoff = min(1.0, backoff * 2 or 0.01)
                await asyncio.sleep(backoff)
                continue
            backoff = 0.0
            task = loop.create_task(self._serve_socket(conn))
            del task  # kept in self.connections once it runs

    async def _serve_socket(self, conn: socket.socket) -> None:
        try:
            reader, writer = await asyncio.open_connection(sock=conn, limit=self.MAX_HEAD_BYTES)
        except OSError:
            conn.close()
            return
        await self.handle_connection(reader, writer)

    async def handle_connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        sock = writer.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # no 40 ms delayed-ACK stalls
        task = asyncio.current_task()
        assert task is not None
        self.connections[writer] = task
        if len(self.connections) >= self.limits.max_connections:
            self._room.clear()
        try:
            while not self.app.draining.is_set():
                try:
                    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), self.limits.idle_timeout)
                except (asyncio.IncompleteReadError, asyncio.TimeoutError, ConnectionError):
                    return
                except asyncio.LimitOverrunError:
                    await self._write(writer, *self.app.framing_error(431, "request headers are too large"), close=True)
                    return
                self._enter()
                try:
                    keep_open = await self._exchange(head, reader, writer)
                finally:
                    self._leave()
                if not keep_open:
                    return
        except ConnectionError:
            return
        finally:
            del self.connections[writer]
            self._room.set()
            writer.transport.abort()  # close now: nothing more will be written, and nothing waits for it

    async def _exchange(self, head: bytes, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bool:
        """Read one request's body, answer it; whether the connection may carry another."""
        try:
            request_line, *header_lines = head.decode("latin-1").split("\r\n")
            method, target, version = request_line.split(" ")
            if not version.startswith("HTTP/1."):
                raise ValueError(version)
            headers = {}
            for line in header_lines:
                if line:
                    name, _, value = line.partition(":")
                    headers[name.strip().lower()] = value.strip()
        except ValueError:
            await self._write(writer, *self.app.framing_error(400, "malformed request line or headers"), close=True)
            return False
        keep_alive = headers.get("connection", "").lower() != "close" and (
            version == "HTTP/1.1" or headers.get("connection", "").lower() == "keep-alive"
        )
        body: bytes | None = None
        if "chunked" in headers.get("transfer-encoding", "").lower():
            await self._write(
                writer, *self.app.framing_error(411, "send the body with a Content-Length, not chunked"), close=True
            )
            return False
        if "content-length" in headers:
            text = headers["content-length"]
            if not (text.isascii() and text.isdigit()):
                await self._write(writer, *self.app.framing_error(400, f"bad Content-Length {text[:40]!r}"), close=True)
                return False
            length = int(text)
            if length > self.limits.max_body_bytes:
                # The body is left unread, so the connection cannot carry another request.
                message = f"body of {length} bytes is over the limit of {self.limits.max_body_bytes}"
                await self._refuse(reader, writer, *self.app.framing_error(413, message))
                return False
            if length > self.INLINE_BODY_BYTES:
                return await self._large_exchange(method, target, headers, length, keep_alive, reader, writer)
            body = await self._read_body(headers, length, reader, writer)
            if body is None:
                return False
        answer = self.app.respond(method, target, body)
        return await self._answer(writer, answer, keep_alive)

    async def _large_exchange(
        self,
        method: str,
        target: str,
        headers: dict[str, str],
        length: int,
        keep_alive: bool,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
    ) -> bool:
        """A body over 64 KiB: read only with a slot free, so bodies in memory are few whatever clients do."""
        try:
            await asyncio.wait_for(self._large.acquire(), self.LARGE_BODY_WAIT_S)
        except asyncio.TimeoutError:
            busy = self.app.framing_error(503, "the server is busy with other large requests: retry shortly")
            await self._refuse(reader, writer, *busy)
            return False
        try:
            body = await self._read_body(headers, length, reader, writer)
            if body is None:
                return False
            loop = asyncio.get_running_loop()
            answer = await loop.run_in_executor(None, self.app.respond, method, target, body)
            del body
        finally:
            self._large.release()
        return await self._answer(writer, answer, keep_alive)

    async def _read_body(
        self, headers: dict[str, str], length: int, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> bytes | None:
        if headers.get("expect", "").lower() == "100-continue":
            # curl asks before sending bodies over 1 KiB and would otherwise wait a second.
            writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
            await self._drain(writer)
        try:
            return await asyncio.wait_for(reader.readexactly(length), self.limits.idle_timeout)
        except (asyncio.IncompleteReadError, asyncio.TimeoutError):
            await self._write(
                writer, *self.app.framing_error(400, "the body ended before Content-Length bytes"), close=True
            )
            return None

    async def _refuse(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, status: int, content_type: str, payload: bytes
    ) -> None:
        """Answer a request whose body stays unread, then read and drop what the client still sends.

        Closing at once would reset the connection while the client is still sending, and it would
        never see the answer; so linger a little, as nginx does, keeping nothing of what comes.
        """
        await self._write(writer, status, content_type, payload, close=True)
        with contextlib.suppress(Exception):
            writer.write_eof()
        deadline = time.monotonic() + self.LINGER_S
        with contextlib.suppress(asyncio.TimeoutError, ConnectionError):
            while (left := deadline - time.monotonic()) > 0:
                if not await asyncio.wait_for(reader.read(self.MAX_HEAD_BYTES), left):
                    break

    async def _answer(self, writer: asyncio.StreamWriter, answer: tuple[int, str, bytes], keep_alive: bool) -> bool:
        keep_alive = keep_alive and not self.app.draining.is_set()
        await self._write(writer, *answer, close=not keep_alive)
        return keep_alive

    async def _write(
        self, writer: asyncio.StreamWriter, status: int, content_type: str, payload: bytes, *, close: bool
    ) -> None:
        phrase = HTTPStatus(status).phrase
        retry = "Retry-After: 1\r\n" if status == 503 else ""
        head = (
            f"HTTP/1.1 {status} {phrase}\r\nServer: mlpack\r\nContent-Type: {content_type}\r\n"
            f"Content-Length: {len(payload)}\r\n{retry}"
            f"{'Connection: close' if close else 'Connection: keep-alive'}\r\n\r\n"
        )
        writer.write(head.encode("latin-1") + payload)
        await self._drain(writer)

    async def _drain(self, writer: asyncio.StreamWriter) -> None:
        """Wait for the client to take what was written, but not forever (a client that never reads)."""
        if writer.transport.get_write_buffer_size() == 0:
            return  # the usual case: the kernel took it all at once
        try:
            await asyncio.wait_for(writer.drain(), self.limits.write_timeout)
        except asyncio.TimeoutError:
            raise ConnectionResetError("the client did not read the answer in time") from None

    def _enter(self) -> None:
        self.in_flight += 1
        self.idle.clear()

    def _leave(self) -> None:
        self.in_flight -= 1
        if self.in_flight == 0:
            self.idle.set()

    # -- life cycle -----------------------------------------------------------------------------
    async def run(
        self,
        sock: socket.socket,
        banner: str,
        on_stop: Callable[[], object] | None = None,
        parent: int | None = None,
    ) -> None:
        """Serve until SIGTERM/SIGINT (or, for a worker, until its parent is gone), then drain."""
        loop = asyncio.get_running_loop()
        stop = asyncio.Event()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, stop.set)
        watchdog = loop.create_task(_watch_parent(parent, stop)) if parent is not None else None
        # Load before accepting: the socket already listens, so early clients wait in its backlog
        # instead of meeting a 503, and with --workers no process takes requests it cannot answer.
        await loop.run_in_executor(None, self.app.load)
        acceptor = loop.create_task(self.accept(sock))
        log.info("%s", banner)
        await stop.wait()
        self.app.draining.set()
        if on_stop is not None:
            on_stop()
        acceptor.cancel()  # no new connections; requests in flight carry on
        if watchdog is not None:
            watchdog.cancel()
        try:
            await asyncio.wait_for(self.idle.wait(), self.limits.drain_timeout)
            drained = True
        except asyncio.TimeoutError:
            drained = False
        tasks = list(self.connections.values())
        for writer in list(self.connections):  # idle keep-alive connections, and any still stuck
            writer.transport.abort()
        for task in tasks:
            task.cancel()
        await asyncio.gather(acceptor, *tasks, return_exceptions=True)  # their cancellation is expected
        log.info(
            "stopped%s",
            "" if drained else f" ({self.in_flight} requests cut off after {self.limits.drain_timeout:g} s)",
        )


async def _watch_parent(parent: int, stop: asyncio.Event) -> None:
    """A worker whose parent died (even by SIGKILL) stops too, instead of serving on unsupervised."""
    while os.getppid() == parent:
        await asyncio.sleep(1.0)
    log.warning("the parent process %d is gone: stopping", parent)
    stop.set()


def _die_with_parent() -> None:
    """On Linux the kernel sends SIGTERM when the parent dies: at once, not at the next watchdog tick."""
    with contextlib.suppress(Exception):  # elsewhere (or without libc) the watchdog alone does it
        import ctypes

        pr_set_pdeathsig = 1
        ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, signal.SIGTERM, 0, 0, 0)


def serve(
    model: Any,
    host: str = "127.0.0.1",
    port: int = 8080,
    *,
    workers: int = 1,
    max_body_bytes: int | None = None,
    **limits: Any,
) -> int:
    """Serve until SIGTERM or SIGINT; drain in-flight requests; return the exit code (0).

    With workers > 1 the listening socket is bound once and shared by forked processes, each with
    its own onnxruntime session (created after the fork) and its own /metrics counters.
    """
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    settings = Limits.resolve(model.metadata.get("serve", {}), {"max_body_bytes": max_body_bytes, **limits})
    sock = socket.create_server((host, port), reuse_port=False, backlog=1024)
    parent = os.getpid()
    drift = DriftTracking.from_settings(model, workers)  # before the fork: the workers share its memory
    children: list[int] = []
    for slot in range(1, max(1, workers)):
        pid = os.fork()
        if pid == 0:
            _die_with_parent()
            code = _run_process(
                model, settings, sock, f"worker {os.getpid()} ready", parent=parent, drift=drift, slot=slot
            )
            os._exit(code)
        children.append(pid)

    def stop_children() -> None:
        for pid in children:
            with contextlib.suppress(ProcessLookupError):  # a worker that already exited
                os.kill(pid, signal.SIGTERM)

    where = f"http://{host}:{sock.getsockname()[1]}"
    banner = f"serving {model.name} {model.version} on {where}" + (f" with {workers} workers" if workers > 1 else "")
    code = _run_process(model, settings, sock, banner, stop_children, drift=drift, slot=0)
    for pid in children:
        os.waitpid(pid, 0)
    return code


def serve_args(model: Any, args: Any) -> int:
    """`serve` with the options `add_serve_arguments` put on the command line."""
    options = {spec.name: getattr(args, spec.name, None) for spec in fields(Limits)}
    return serve(model, args.host, args.port, workers=args.workers, **options)


def _run_process(
    model: Any,
    limits: Limits,
    sock: socket.socket,
    banner: str,
    on_stop: Callable[[], object] | None = None,
    parent: int | None = None,
    *,
    drift: DriftTracking | None = None,
    slot: int = 0,
) -> int:
    metrics = Metrics()
    if drift is not None:
        drift.attach(slot)
    app = App(model, limits=limits, metrics=metrics, drift=drift)
    app.inference_log = InferenceLog.from_settings(model, metrics)
    try:
        asyncio.run(HttpServer(app).run(sock, banner, on_stop, parent))
    finally:
        sock.close()
        if app.inference_log is not None:
            app.inference_log.close()
    return 0


def add_serve_arguments(parser: Any) -> None:
    parser.add_argument("--host", default=os.environ.get("MLPACK_HOST", "127.0.0.1"))
    parser.add_argument("--port", type=int, default=int(os.environ.get("MLPACK_PORT", "8080")))
    parser.add_argument(
        "--workers",
        type=int,
        default=int(os.environ.get("MLPACK_WORKERS", "1")),
        help="processes sharing the port (default: MLPACK_WORKERS or 1)",
    )
    defaults = Limits()
    helps = {
        "max_body_bytes": "request body limit in bytes",
        "max_records": "records (or v2 rows) per request",
        "large_bodies": "bodies over 64 KiB read and parsed at once (bounds memory)",
        "max_connections": "open connections (more wait in the backlog)",
        "idle_timeout": "seconds to wait for a request's head or body, or the next request",
        "write_timeout": "seconds a client may take to read an answer",
        "drain_timeout": "seconds SIGTERM waits for requests in flight",
    }
    for spec in fields(Limits):
        parser.add_argument(
            f"--{spec.name.replace('_', '-')}",
            type=int if spec.type in ("int", int) else float,
            default=None,
            help=f"{helps[spec.name]} (default: MLPACK_{spec.name.upper()} or {getattr(defaults, spec.name)})",
        )


__all__ = [
    "App",
    "ClientError",
    "HttpServer",
    "InferenceLog",
    "Limits",
    "Metrics",
    "add_serve_arguments",
    "serve",
    "serve_args",
]

if __name__ == "__main__":  # pragma: no cover
    sys.exit("run the server with `python -m MODEL serve` or `mlpack serve ARTIFACT`")
