"""Routes → the model: what each URL does, independent of how HTTP reaches it.

`App.respond(request)` turns one parsed request into one answer and counts it; every failure is an
answer too (4xx for the client's mistakes, 500 for a bug, logged). The HTTP layer (`http.py`) calls
it and knows nothing of the routes; the routes know nothing of sockets.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections.abc import Callable, Mapping
from functools import partial
from typing import TYPE_CHECKING, Any, Dict, List, Optional, Tuple

from ..settings import Limits
from .batching import ALONE, OWN
from .ids import new_id
from .inference_log import InferenceLog
from .metrics import KNOWN_METHODS, Metrics
from .openapi import openapi_document
from .served import ServedModel, feedback_label_problem
from .v2 import OpenInference
from .wire import JSON, Answer, ClientError, Request, Response, dump_json, dump_json_text, parse_json, require_json

if TYPE_CHECKING:
    from .batching import Batcher

log = logging.getLogger("mlpack.server")

Handler = Callable[[Request], Answer]
Answered = Callable[[List[Any], Optional[List[List[float]]]], Response]  # labels, probabilities → the answer
METRICS_TYPE = "text/plain; version=0.0.4"


def ok(document: Any) -> Response:
    return Response(200, dump_json(document))


def records_from_body(body: Any, max_records: int) -> Any:
    if type(body) is dict and "instances" not in body:
        return body  # one record, the usual body: no abstract-class checks (a third of this function's cost)
    if isinstance(body, Mapping) and "instances" in body:
        body = body["instances"]
        if not isinstance(body, list):
            raise ClientError(422, "'instances' must be a list of records")
    if not isinstance(body, (Mapping, list)):
        raise ClientError(422, 'expected a record (object), a list of records, or {"instances": [...]}')
    if isinstance(body, list) and len(body) > max_records:
        raise ClientError(413, f"{len(body)} records is over the limit of {max_records} per request")
    return body


class App:
    """Everything the HTTP layer needs to know about the model: `load`, `respond`, `refuse`."""

    def __init__(
        self,
        model: ServedModel,
        *,
        limits: Optional[Limits] = None,
        metrics: Optional[Metrics] = None,
        inference_log: Optional[InferenceLog] = None,
    ) -> None:
        self.model = model
        self.limits = limits or Limits()
        self.inference_log = inference_log
        self.batcher: Optional[Batcher] = None  # set by serve(): None, each prediction runs the model itself
        self.ready = threading.Event()
        self.draining = threading.Event()
        self.v2 = OpenInference(self)
        # The end of every /predict answer, as json.dumps writes it: the model's name and version.
        self._model_tail = f', "model": {dump_json_text({"name": model.name, "version": model.version})}}}'
        self.routes: Dict[Tuple[str, str], Handler] = {
            ("POST", "/predict"): self.predict,
            ("POST", "/feedback"): self.feedback,
            ("GET", "/healthz"): lambda _: ok({"status": "ok"}),
            ("GET", "/readyz"): self.readiness,
            ("GET", "/metadata"): lambda _: ok(self.model.metadata),
            ("GET", "/openapi.json"): lambda _: ok(openapi_document(self.model, self.limits)),
            ("GET", "/metrics"): lambda _: Response(200, self.metrics.render(self.model).encode(), METRICS_TYPE),
            **self.v2.routes(),
        }
        self.allowed: Dict[str, Tuple[str, ...]] = {}
        for method, path in self.routes:
            self.allowed[path] = (*self.allowed.get(path, ()), method)
        self.metrics = metrics or Metrics(list(self.allowed))

    # -- the HTTP layer's side ------------------------------------------------------------------
    def load(self) -> None:
        self.model.load()
        self.ready.set()

    def respond(self, request: Request) -> Answer:
        """One request → one answer; every failure becomes an answer, and every answer is counted.
        A prediction the batcher queues is answered by its future, counted when it is settled."""
        return self._settle(request, time.perf_counter(), self._route, request)

    def _settle(self, request: Request, started: float, step: Callable[[Any], Any], argument: Any) -> Answer:
        """`step(argument)` as the request's answer, failures mapped and counted (a future: later)."""
        route = request.path if request.path in self.allowed else "other"
        try:
            answer = step(argument)
            if not isinstance(answer, Response):  # queued: settled again by its batch's finish
                return answer  # type: ignore[no-any-return]
        except ClientError as error:
            answer = Response.error(error.status, error.message, error.headers)
        except Exception:  # a bug, never the client's doing: answer, log, keep serving
            log.exception("unexpected error on %s %s", request.method, request.path)
            answer = Response.error(500, "internal error")
        seconds = time.perf_counter() - started
        self.metrics.observe(route, request.method, answer.status, seconds, answer.predictions)
        return answer

    def batched(
        self, request: Request, data: Any, rows: Any, records: int, strict: bool, invalid: int, then: Answered
    ) -> Optional[Answer]:
        """The model on `data` in the next batch, `then(labels, probabilities)` its answer. None: not
        batched (off, more records than a batch, or off the event loop): the caller runs the model."""
        batcher = self.batcher
        if batcher is None:
            return None
        way = batcher.way(records)
        if way == OWN:
            return None
        if way == ALONE:  # nothing could join it: it runs now, exactly as unbatched, and is counted
            ran = 0
            try:
                labels, probabilities, _ = self.run(data, invalid, strict)
                ran = len(labels)
            finally:
                batcher.ran_alone(ran)
            return then(labels, probabilities)
        started = time.perf_counter()

        def step(outcome: Any) -> Response:
            if isinstance(outcome, ValueError):  # the runtime's word on a field: the client's mistake
                raise ClientError(invalid, str(outcome))
            if isinstance(outcome, BaseException):
                raise outcome
            return then(*outcome)

        return batcher.submit(
            data, rows, records, strict, lambda outcome: self._settle(request, started, step, outcome)
        )

    def refuse(self, status: int, message: str) -> Response:
        """A request the HTTP layer turned away before any route saw it (framing, size), counted."""
        self.metrics.observe("other", "-", status, 0.0, 0)
        return Response.error(status, message)

    def _route(self, request: Request) -> Answer:
        method = "GET" if request.method == "HEAD" else request.method  # the HTTP layer drops HEAD's body
        handler = self.routes.get((method, request.path))
        if handler is not None:
            return handler(request)
        if request.method not in KNOWN_METHODS:
            raise ClientError(501, "unknown method")  # client text, not echoed
        allowed = self.allowed.get(request.path)
        if allowed is None:
            raise ClientError(404, f"no route {request.path}")
        methods = sorted({*allowed, *(("HEAD",) if "GET" in allowed else ())})
        raise ClientError(405, f"{request.method} is not allowed on {request.path}", (("Allow", ", ".join(methods)),))

    # -- routes ---------------------------------------------------------------------------------
    def document(self, request: Request) -> Any:
        """The request's JSON body, within the limits; 415 for a body that says it is something else."""
        require_json(request.headers)
        return parse_json(request.body, self.limits.max_values)

    def require_ready(self) -> None:
        if not self.ready.is_set():
            raise ClientError(503, "the model is still loading", (("Retry-After", "1"),))

    def readiness(self, _request: Request) -> Response:
        if self.ready.is_set() and not self.draining.is_set():
            return ok({"ready": True})
        return Response(503, dump_json({"ready": False}), JSON, (("Retry-After", "1"),))

    def run(self, data: Any, invalid: int = 422, strict: bool = False) -> Tuple[Any, Any, bool]:
        """The model on records or columns, observers fed; a ValueError is the client's (`invalid`)."""
        observe = self.metrics.observe_feeds if self.metrics.observers else None
        try:
            return self.model.run(data, observe, strict=strict)
        except ValueError as exc:
            raise ClientError(invalid, str(exc)) from None

    def predict(self, request: Request) -> Answer:
        self.require_ready()
        # ?strict=true: absent fields and unknown categories are refused, as predict(..., strict=True)
        strict = strict_query(request.query)
        records = records_from_body(self.document(request), self.limits.max_records)
        # Records, one or many (columns are not batched); unbatched, nothing reads them.
        rows = self.model.rows(records) if self.batcher is not None else None
        if rows is not None:
            later = self.batched(request, records, rows, len(rows), strict, 422, partial(self.predicted, records))
            if later is not None:
                return later
        labels, probabilities, _ = self.run(records, strict=strict)
        return self.predicted(records, labels, probabilities)

    def predicted(self, records: Any, labels: List[Any], probabilities: Optional[List[List[float]]]) -> Response:
        """{"id", "predictions"[, "probabilities"], "model"} as json.dumps writes it, from pieces: the
        model's part is the same in every answer and the id needs no escaping (hex)."""
        prediction_id = new_id()
        parts = ['{"id": "', prediction_id, '", "predictions": ', dump_json_text(labels)]
        if probabilities is not None:
            parts += (', "probabilities": ', dump_json_text(probabilities))
        parts.append(self._model_tail)
        if self.inference_log is not None:
            self.inference_log.record(self.model, "/predict", records, labels, prediction_id)
        return Response(200, "".join(parts).encode(), predictions=len(labels))

    def feedback(self, request: Request) -> Answer:
        """The true outcome of an answered prediction: `{"id", "label"[, "index"]}`, stored beside it."""
        body = self.document(request)
        if not isinstance(body, Mapping):
            raise ClientError(422, 'expected {"id": <the id /predict answered>, "label": <the true outcome>}')
        prediction_id, label, index = body.get("id"), body.get("label"), body.get("index", 0)
        if not isinstance(prediction_id, str) or not 0 < len(prediction_id) <= 64:
            raise ClientError(422, "field 'id': expected the id string a /predict answer carried")
        if label is None or isinstance(label, (list, dict)) or (isinstance(label, str) and len(label) > 1000):
            raise ClientError(422, "field 'label': expected the true outcome (a class or a number)")
        if type(index) is float and index.is_integer():  # 3.0 is an integer to JSON Schema, as to JSON
            index = int(index)
        if type(index) is not int or not 0 <= index < self.limits.max_records:
            raise ClientError(422, "field 'index': expected the record's position in its request (default 0)")
        problem = feedback_label_problem(self.model, label)
        if problem is not None:
            raise ClientError(422, f"field 'label': {problem}")
        if self.inference_log is None:
            raise ClientError(
                501, "feedback is stored in the inference log, which is off: set MLPACK_INFERENCE_LOG_URI"
            )
        log, started = self.inference_log, time.perf_counter()
        answer = partial(_feedback_answer, prediction_id, index)
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # a large body, answered on a thread of its own: the store can wait there
            return answer(log.store_feedback(prediction_id, index, label))
        future: asyncio.Future[Response] = loop.create_future()

        def stored(outcome: str) -> None:  # on the log's thread: the answer is settled on the event loop
            def settle() -> None:
                settled = self._settle(request, started, answer, outcome)  # a Response: answer makes no future
                if isinstance(settled, Response) and not future.done():
                    future.set_result(settled)

            with contextlib.suppress(RuntimeError):  # the loop is closed: the server has stopped
                loop.call_soon_threadsafe(settle)

        if not log.feedback(prediction_id, index, label, stored):
            raise ClientError(503, "too many feedback requests at once: send it again", (("Retry-After", "1"),))
        return future


def _feedback_answer(prediction_id: str, index: int, outcome: str) -> Response:
    """What the client hears of its feedback: stored (202), no logged request with that id or no record at
    that index in it (404), or not stored, the database unreachable or refusing (503): a client sends it again."""
    if outcome == "unknown":
        raise ClientError(
            404, f"no logged prediction has id {prediction_id!r}: send the id a /predict answer carried; nothing stored"
        )
    if outcome.startswith("records "):  # the request has the id, but no record at that position: none to find
        held = int(outcome.split()[1])
        raise ClientError(
            404,
            f"field 'index': the logged request with id {prediction_id!r} held {held} record(s), so index {index} "
            f"names none{f' (0 to {held - 1})' if held else ''}; nothing stored",
        )
    if outcome != "stored":
        raise ClientError(503, "the inference log did not take the feedback (unreachable or refused): send it again")
    return Response(202, dump_json({"id": prediction_id, "index": index, "status": "accepted"}))


def strict_query(query: str) -> bool:
    """The `strict` query parameter: absent or false → False; true, 1 or bare → True; else a 400."""
    for pair in query.split("&"):
        key, _, value = pair.partition("=")
        if key == "strict":
            if value.lower() in ("true", "1", ""):
                return True
            if value.lower() in ("false", "0"):
                return False
            raise ClientError(400, f"query parameter strict must be true or false, got {value[:20]!r}")
    return False


__all__ = ["App", "records_from_body", "strict_query"]
