"""Prometheus metrics that add up across worker processes.

Every counter lives in one anonymous shared memory block mapped before the workers fork: each
process writes only its own row, and a scrape of any process sums all rows, so every scrape reports
the server's totals (like prometheus_client's multiprocess mode, without its files). A row has one
writer process, so processes need no lock between them; threads of one process share a lock.

The layout is fixed when the block is made: routes, methods and statuses are known sets, so no
client text ever becomes a label and memory cannot grow with what clients send (issue 13: a forged
method once injected a series into the exposition, and 200k distinct methods grew RSS by 42 MB).

Observers (`Observer`) add their own series: the app hands each one the feeds and the predictions
of every request it predicts, and its lines are appended to the exposition. They get a row of their
own in shared memory the same way (`cells` at construction, `attach(slot)` after the fork).
"""

from __future__ import annotations

import math
import mmap
import threading
from bisect import bisect_left
from collections.abc import Mapping, Sequence
from http import HTTPStatus
from typing import Any, List

import numpy as np

from .served import ServedModel

try:
    from typing import Protocol
except ImportError:  # pragma: no cover - Python < 3.8
    Protocol = object  # type: ignore[assignment]

LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
# Methods that get a label of their own; any other text a client sends is counted as "other".
# QUERY: the safe method with a body (draft-ietf-httpbis-safe-method-w-body), a 405 here, not a 501.
KNOWN_METHODS = ("GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "CONNECT", "TRACE", "QUERY")
_METHODS = (*KNOWN_METHODS, "other", "-")  # "-": refused before the method was read
_STATUSES = tuple(sorted(int(status) for status in HTTPStatus))
_ERROR_KINDS = ("client", "server")
_LOG_OUTCOMES = ("written", "dropped")
# Why a record was dropped: queue over its bytes, database unreachable after the retries, refused by
# it, or a record neither BSON nor its text form could hold / over MongoDB's 16 MiB.
LOG_DROP_REASONS = ("queue_full", "unreachable", "refused", "unencodable", "too_large")
_FEEDBACK_OUTCOMES = ("stored", "unknown", "dropped")  # unknown: no logged prediction has that id


def label(value: str) -> str:
    """A label value escaped as the Prometheus text format asks: backslash, quote, newline."""
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


class Observer(Protocol):
    """Something that counts what the model was fed, e.g. per-feature data quality and drift."""

    def attach(self, slot: int) -> None:
        """Called in each process after the fork, with that process's row number."""

    def observe(self, feeds: Mapping[str, np.ndarray], predictions: List[Any]) -> None:
        """Called with each predicting request's ONNX feeds and its labels (or values)."""

    def render(self) -> List[str]:
        """Prometheus text lines (with their # HELP / # TYPE) for the server's totals."""
        return []


class Section(Protocol):
    """Series of its own in the exposition (the batcher's), counted in shared memory like these."""

    def attach(self, slot: int) -> None:
        """Called in each process after the fork, with that process's row number."""

    def render(self) -> List[str]:
        """Prometheus text lines (with their # HELP / # TYPE) for the server's totals."""
        return []


class SharedCounters:
    """`width` float64 counters per process, in memory shared by every process forked after this."""

    def __init__(self, width: int, slots: int) -> None:
        self.width, self.slots = width, max(1, slots)
        self._block = mmap.mmap(-1, max(1, width * self.slots) * 8)  # anonymous: MAP_SHARED across fork
        self.table = np.frombuffer(self._block, dtype=np.float64).reshape(self.slots, width)
        self._cells = memoryview(self._block).cast("d")  # item writes: several times numpy's speed
        self.row = self._cells[:width]

    def attach(self, slot: int) -> None:
        self.row = self._cells[slot * self.width : (slot + 1) * self.width]

    def totals(self) -> np.ndarray:
        return self.table.sum(axis=0)


class Metrics:
    """Request counts, latency histograms, predictions, errors and inference-log outcomes."""

    def __init__(
        self,
        routes: Sequence[str],
        slots: int = 1,
        observers: Sequence[Observer] = (),
        sections: Sequence[Section] = (),
    ) -> None:
        self.routes = tuple(sorted(set(routes) | {"/metrics", "other"}))
        self._route = {route: index for index, route in enumerate(self.routes)}
        self._method = {method: index for index, method in enumerate(_METHODS)}
        self._status = {status: index for index, status in enumerate(_STATUSES)}
        buckets = len(LATENCY_BUCKETS) + 1
        sizes = {
            "requests": len(self.routes) * len(_METHODS) * len(_STATUSES),
            "buckets": len(self.routes) * buckets,
            "seconds": len(self.routes),
            "predictions": 1,
            "errors": len(_ERROR_KINDS),
            "log": len(_LOG_OUTCOMES),
            "log_dropped": len(LOG_DROP_REASONS),
            "log_as_text": 1,
            "log_queue_bytes": 1,  # a gauge: each process sets its own cell, a scrape sums them
            "feedback": len(_FEEDBACK_OUTCOMES),
        }
        self._at: dict[str, int] = {}
        offset = 0
        for name, size in sizes.items():
            self._at[name] = offset
            offset += size
        self.counters = SharedCounters(offset, slots)
        self.observers = list(observers)
        self.sections = [*observers, *sections]  # everything with a row per process and lines of its own
        self._lock = threading.Lock()

    def attach(self, slot: int) -> None:
        """This process counts into row `slot` (0 for the first process, 1.. for forked workers)."""
        self.counters.attach(slot)
        for section in self.sections:
            section.attach(slot)

    # -- counting (hot path: a handful of array writes) ----------------------------------------
    def observe(self, route: str, method: str, status: int, seconds: float, predictions: int) -> None:
        r = self._route.get(route, self._route["other"])
        m = self._method.get(method, len(KNOWN_METHODS))  # client text is never a label: "other"
        s = self._status.get(status, self._status[500])
        bucket = bisect_left(LATENCY_BUCKETS, seconds)  # the first bound >= seconds; past them all: +Inf
        at, row = self._at, self.counters.row
        with self._lock:
            row[at["requests"] + (r * len(_METHODS) + m) * len(_STATUSES) + s] += 1
            row[at["buckets"] + r * (len(LATENCY_BUCKETS) + 1) + bucket] += 1
            row[at["seconds"] + r] += seconds
            if predictions:
                row[at["predictions"]] += predictions
            if status >= 400:
                row[at["errors"] + int(status >= 500)] += 1

    def count_log(
        self,
        written: int = 0,
        dropped: int = 0,
        reason: str = "",
        as_text: int = 0,
        feedback_stored: int = 0,
        feedback_unknown: int = 0,
        feedback_dropped: int = 0,
    ) -> None:
        """Inference log outcomes, counted by its writer thread (and by requests it cannot queue)."""
        log_at, feedback_at, row = self._at["log"], self._at["feedback"], self.counters.row
        with self._lock:
            for index, count in enumerate((written, dropped)):
                row[log_at + index] += count
            if dropped and reason in LOG_DROP_REASONS:
                row[self._at["log_dropped"] + LOG_DROP_REASONS.index(reason)] += dropped
            row[self._at["log_as_text"]] += as_text
            for index, count in enumerate((feedback_stored, feedback_unknown, feedback_dropped)):
                row[feedback_at + index] += count

    def log_queue_bytes(self, queued: int) -> None:
        """The bytes this process's inference log holds now (queued or being written)."""
        self.counters.row[self._at["log_queue_bytes"]] = queued

    def observe_feeds(self, feeds: Mapping[str, np.ndarray], predictions: List[Any]) -> None:
        for observer in self.observers:
            observer.observe(feeds, predictions)

    # -- the exposition -------------------------------------------------------------------------
    def render(self, model: ServedModel) -> str:
        totals = self.counters.totals()
        lines = [
            "# HELP mlpack_model_info The model being served.",
            "# TYPE mlpack_model_info gauge",
            f'mlpack_model_info{{name="{label(model.name)}",version="{label(model.version)}"}} 1',
            "# HELP mlpack_requests_total HTTP requests by route, method and status.",
            "# TYPE mlpack_requests_total counter",
        ]
        at = self._at["requests"]
        requests = totals[at : at + len(self.routes) * len(_METHODS) * len(_STATUSES)]
        for index in np.flatnonzero(requests):
            r, rest = divmod(int(index), len(_METHODS) * len(_STATUSES))
            m, s = divmod(rest, len(_STATUSES))
            labels = f'route="{label(self.routes[r])}",method="{_METHODS[m]}",status="{_STATUSES[s]}"'
            lines.append(f"mlpack_requests_total{{{labels}}} {int(requests[index])}")
        lines += [
            "# HELP mlpack_request_duration_seconds Request latency by route.",
            "# TYPE mlpack_request_duration_seconds histogram",
        ]
        width = len(LATENCY_BUCKETS) + 1
        for r, route in enumerate(self.routes):
            counts = totals[self._at["buckets"] + r * width : self._at["buckets"] + (r + 1) * width]
            if not counts.any():
                continue
            cumulative = 0
            for bound, count in zip((*LATENCY_BUCKETS, math.inf), counts):
                cumulative += int(count)
                le = "+Inf" if bound == math.inf else repr(bound)
                lines.append(f'mlpack_request_duration_seconds_bucket{{route="{label(route)}",le="{le}"}} {cumulative}')
            seconds = totals[self._at["seconds"] + r]
            lines.append(f'mlpack_request_duration_seconds_sum{{route="{label(route)}"}} {seconds:.6f}')
            lines.append(f'mlpack_request_duration_seconds_count{{route="{label(route)}"}} {cumulative}')
        errors, log_at = self._at["errors"], self._at["log"]
        lines += [
            "# HELP mlpack_predictions_total Records predicted.",
            "# TYPE mlpack_predictions_total counter",
            f"mlpack_predictions_total {int(totals[self._at['predictions']])}",
            "# HELP mlpack_errors_total Error answers, by who caused them.",
            "# TYPE mlpack_errors_total counter",
            *(f'mlpack_errors_total{{kind="{kind}"}} {int(totals[errors + i])}' for i, kind in enumerate(_ERROR_KINDS)),
            "# HELP mlpack_inference_log_records_total Inference log records written to or dropped before MongoDB.",
            "# TYPE mlpack_inference_log_records_total counter",
            *(
                f'mlpack_inference_log_records_total{{outcome="{outcome}"}} {int(totals[log_at + i])}'
                for i, outcome in enumerate(_LOG_OUTCOMES)
            ),
            "# HELP mlpack_inference_log_dropped_total Inference log records dropped, by why.",
            "# TYPE mlpack_inference_log_dropped_total counter",
            *(
                f'mlpack_inference_log_dropped_total{{reason="{reason}"}} {int(totals[self._at["log_dropped"] + i])}'
                for i, reason in enumerate(LOG_DROP_REASONS)
            ),
            "# HELP mlpack_inference_log_as_text_total Records logged with inputs as text, which BSON cannot hold.",
            "# TYPE mlpack_inference_log_as_text_total counter",
            f"mlpack_inference_log_as_text_total {int(totals[self._at['log_as_text']])}",
            "# HELP mlpack_inference_log_queue_bytes Bytes the inference log holds, queued or being written.",
            "# TYPE mlpack_inference_log_queue_bytes gauge",
            f"mlpack_inference_log_queue_bytes {int(totals[self._at['log_queue_bytes']])}",
            "# HELP mlpack_feedback_total True outcomes sent to POST /feedback: stored, unknown id or record, dropped.",
            "# TYPE mlpack_feedback_total counter",
            *(
                f'mlpack_feedback_total{{outcome="{outcome}"}} {int(totals[self._at["feedback"] + i])}'
                for i, outcome in enumerate(_FEEDBACK_OUTCOMES)
            ),
        ]
        for section in self.sections:
            lines += section.render()
        return "\n".join(lines) + "\n"


__all__ = [
    "KNOWN_METHODS",
    "LATENCY_BUCKETS",
    "LOG_DROP_REASONS",
    "Metrics",
    "Observer",
    "Section",
    "SharedCounters",
    "label",
]
