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
import json
import logging
import math
import os
import queue
import signal
import socket
import sys
import threading
import time
from collections.abc import Callable, Mapping
from datetime import datetime, timezone
from http import HTTPStatus
from typing import Any

log = logging.getLogger("mlpack.server")

DEFAULT_MAX_BODY_BYTES = 10 * 1024 * 1024
LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
DRAIN_TIMEOUT_S = 30.0


class ClientError(Exception):
    """A request the client must change: answered with `status` and a JSON error body."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


# -- metrics ------------------------------------------------------------------------------------
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

    def render(self, model: Any) -> str:
        with self._lock:
            lines = [
                "# HELP mlpack_model_info The model being served.",
                "# TYPE mlpack_model_info gauge",
                f'mlpack_model_info{{name="{model.name}",version="{model.version}"}} 1',
                "# HELP mlpack_requests_total HTTP requests by route, method and status.",
                "# TYPE mlpack_requests_total counter",
            ]
            for (route, method, status), count in sorted(self.requests.items()):
                lines.append(f'mlpack_requests_total{{route="{route}",method="{method}",status="{status}"}} {count}')
            lines += [
                "# HELP mlpack_request_duration_seconds Request latency by route.",
                "# TYPE mlpack_request_duration_seconds histogram",
            ]
            for route, counts in sorted(self.latency_counts.items()):
                cumulative = 0
                for bound, count in zip((*LATENCY_BUCKETS, math.inf), counts):
                    cumulative += count
                    label = "+Inf" if bound == math.inf else repr(bound)
                    lines.append(f'mlpack_request_duration_seconds_bucket{{route="{route}",le="{label}"}} {cumulative}')
                lines.append(f'mlpack_request_duration_seconds_sum{{route="{route}"}} {self.latency_sum[route]:.6f}')
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
        return "\n".join(lines) + "\n"


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


def _records_from_body(body: Any) -> Any:
    if isinstance(body, Mapping) and "instances" in body:
        body = body["instances"]
        if not isinstance(body, list):
            raise ClientError(422, "'instances' must be a list of records")
    if not isinstance(body, (Mapping, list)):
        raise ClientError(422, 'expected a record (object), a list of records, or {"instances": [...]}')
    return body


def _parse_json(body: bytes | None) -> Any:
    if body is None:
        raise ClientError(411, "a Content-Length header is required")
    try:
        return json.loads(body)
    except ValueError as exc:  # JSONDecodeError, bad UTF-8, or an integer past Python's digit limit
        raise ClientError(400, f"the body is not valid JSON: {exc}") from None
    except RecursionError:
        raise ClientError(400, "the body is nested too deeply") from None


def _dump_json(document: Any) -> bytes:
    try:
        return json.dumps(document, allow_nan=False).encode()
    except ValueError:
        return json.dumps(_json_safe(document), allow_nan=False).encode()


_V2_TYPES = {"numeric": "FP32", "categorical": "BYTES"}


class App:
    """Routes → handlers; everything the HTTP layer needs to know about the model."""

    def __init__(
        self,
        model: Any,
        *,
        max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
        inference_log: InferenceLog | None = None,
        metrics: Metrics | None = None,
    ) -> None:
        self.model = model
        self.max_body_bytes = max_body_bytes
        self.metrics = metrics or Metrics()
        self.inference_log = inference_log
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
        records = _records_from_body(body)
        try:
            labels, probabilities, _ = self.model.run(records)
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
                return 200, "text/plain; version=0.0.4", self.metrics.render(self.model).encode()
            handler = self.routes.get((method, path))
            if handler is None:
                if path in self.paths:
                    raise ClientError(405, f"{method} is not allowed on {path}")
                raise ClientError(404, f"no route {path}")
            status, answer = handler(_parse_json(body) if method == "POST" else None)
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
            columns[feature.name] = data
        missing = [f.name for f in self.model.features if f.name not in columns]
        if missing:
            raise ClientError(400, f"missing input '{missing[0]}'")
        try:
            labels, probabilities, _ = self.model.run(columns)
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
            kind = {"type": ["number", "null"]} if feature.kind == "numeric" else {"type": ["string", "number", "null"]}
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
    one-record prediction (~30 µs) runs inline; large bodies go to a thread so /healthz stays quick.
    """

    INLINE_BODY_BYTES = 64 * 1024
    IDLE_TIMEOUT_S = 60.0
    MAX_HEAD_BYTES = 64 * 1024

    def __init__(self, app: App) -> None:
        self.app = app
        self.in_flight = 0
        self.idle = asyncio.Event()
        self.idle.set()
        self.connections: set[asyncio.StreamWriter] = set()

    async def handle_connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        sock = writer.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # no 40 ms delayed-ACK stalls
        self.connections.add(writer)
        try:
            while not self.app.draining.is_set():
                try:
                    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), self.IDLE_TIMEOUT_S)
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
            self.connections.discard(writer)
            writer.close()

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
            if not text.isdigit():
                await self._write(writer, *self.app.framing_error(400, f"bad Content-Length {text!r}"), close=True)
                return False
            length = int(text)
            if length > self.app.max_body_bytes:
                # The body is left unread, so the connection cannot carry another request.
                await self._write(
                    writer,
                    *self.app.framing_error(
                        413, f"body of {length} bytes is over the limit of {self.app.max_body_bytes}"
                    ),
                    close=True,
                )
                return False
            if headers.get("expect", "").lower() == "100-continue":
                # curl asks before sending bodies over 1 KiB and would otherwise wait a second.
                writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
                await writer.drain()
            try:
                body = await asyncio.wait_for(reader.readexactly(length), self.IDLE_TIMEOUT_S)
            except (asyncio.IncompleteReadError, asyncio.TimeoutError):
                await self._write(
                    writer, *self.app.framing_error(400, "the body ended before Content-Length bytes"), close=True
                )
                return False
        if body is not None and len(body) > self.INLINE_BODY_BYTES:
            answer = await asyncio.get_running_loop().run_in_executor(None, self.app.respond, method, target, body)
        else:
            answer = self.app.respond(method, target, body)
        keep_alive = keep_alive and not self.app.draining.is_set()
        await self._write(writer, *answer, close=not keep_alive)
        return keep_alive

    @staticmethod
    async def _write(
        writer: asyncio.StreamWriter, status: int, content_type: str, payload: bytes, *, close: bool
    ) -> None:
        phrase = HTTPStatus(status).phrase
        head = (
            f"HTTP/1.1 {status} {phrase}\r\nServer: mlpack\r\nContent-Type: {content_type}\r\n"
            f"Content-Length: {len(payload)}\r\n{'Connection: close' if close else 'Connection: keep-alive'}\r\n\r\n"
        )
        writer.write(head.encode("latin-1") + payload)
        await writer.drain()

    def _enter(self) -> None:
        self.in_flight += 1
        self.idle.clear()

    def _leave(self) -> None:
        self.in_flight -= 1
        if self.in_flight == 0:
            self.idle.set()

    async def run(self, sock: socket.socket, banner: str, on_stop: Callable[[], object] | None = None) -> None:
        loop = asyncio.get_running_loop()
        stop = asyncio.Event()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, stop.set)
        # Load before accepting: the socket already listens, so early clients wait in its backlog
        # instead of meeting a 503, and with --workers no process takes requests it cannot answer.
        await loop.run_in_executor(None, self.app.load)
        server = await asyncio.start_server(self.handle_connection, sock=sock, limit=self.MAX_HEAD_BYTES, backlog=1024)
        log.info("%s", banner)
        await stop.wait()
        self.app.draining.set()
        if on_stop is not None:
            on_stop()
        server.close()  # no new connections; requests in flight carry on
        try:
            await asyncio.wait_for(self.idle.wait(), DRAIN_TIMEOUT_S)
            drained = True
        except asyncio.TimeoutError:
            drained = False
        for writer in list(self.connections):  # idle keep-alive connections
            writer.close()
        log.info("stopped%s", "" if drained else " (in-flight requests did not finish in time)")


def serve(
    model: Any, host: str = "127.0.0.1", port: int = 8080, *, workers: int = 1, max_body_bytes: int | None = None
) -> int:
    """Serve until SIGTERM or SIGINT; drain in-flight requests; return the exit code (0).

    With workers > 1 the listening socket is bound once and shared by forked processes, each with
    its own onnxruntime session (created after the fork) and its own /metrics counters.
    """
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    settings = model.metadata.get("serve", {})
    limit = max_body_bytes or int(
        os.environ.get("MLPACK_MAX_BODY_BYTES", settings.get("max_body_bytes", DEFAULT_MAX_BODY_BYTES))
    )
    sock = socket.create_server((host, port), reuse_port=False, backlog=1024)
    children: list[int] = []
    for _ in range(max(1, workers) - 1):
        pid = os.fork()
        if pid == 0:
            code = _run_process(model, limit, sock, f"worker {os.getpid()} ready")
            os._exit(code)
        children.append(pid)

    def stop_children() -> None:
        for pid in children:
            with contextlib.suppress(ProcessLookupError):  # a worker that already exited
                os.kill(pid, signal.SIGTERM)

    where = f"http://{host}:{sock.getsockname()[1]}"
    banner = f"serving {model.name} {model.version} on {where}" + (f" with {workers} workers" if workers > 1 else "")
    code = _run_process(model, limit, sock, banner, stop_children)
    for pid in children:
        os.waitpid(pid, 0)
    return code


def _run_process(
    model: Any, limit: int, sock: socket.socket, banner: str, on_stop: Callable[[], object] | None = None
) -> int:
    metrics = Metrics()
    app = App(model, max_body_bytes=limit, metrics=metrics)
    app.inference_log = InferenceLog.from_settings(model, metrics)
    try:
        asyncio.run(HttpServer(app).run(sock, banner, on_stop))
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
    parser.add_argument(
        "--max-body-bytes",
        type=int,
        default=None,
        help=f"request body limit (default: MLPACK_MAX_BODY_BYTES or {DEFAULT_MAX_BODY_BYTES})",
    )


__all__ = ["App", "ClientError", "HttpServer", "InferenceLog", "Metrics", "add_serve_arguments", "serve"]

if __name__ == "__main__":  # pragma: no cover
    sys.exit("run the server with `python -m MODEL serve` or `mlpack serve ARTIFACT`")
