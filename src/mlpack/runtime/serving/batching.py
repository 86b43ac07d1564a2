"""Adaptive batching: the model calls of requests that arrive together become one onnxruntime call.

A prediction asks `Batcher.way` how it runs. Most queue their records (`Batcher.submit`) and get
a future. The queue runs at the end of the event loop's turn, so every request whose bytes came in
the same pass over the sockets, i.e. everything that arrived while the previous call ran, shares
one call, up to `batch_max_records` records. A request that nothing could join (none queued, the
last call held one request, nothing else ready to run on the loop) is not queued at all: `way`
says ALONE and its caller runs the model at once, exactly as unbatched, with no job or future, so
one connection costs what it did unbatched. One submitted when nothing else is ready still runs
before `submit` returns.
Under steady load the next call is likely to hold as many requests as the last one did, so when
fewer have come the batch waits for them, up to `batch_wait_us`; a lull ends the wait at once.

Each answer is byte for byte what the request gets alone: the feeds of many records are each
record's own feeds one after another (the runtime reads a record the same way whatever comes
with it), and onnxruntime on one intra-op thread computes each row on its own (`Model.outputs`
runs a lone row as two where a one-row product would take another kernel). With several threads
it sums a forest's trees in an order that depends on the batch: then batching stays off. A record
the runtime refuses fails only its own request: the batch is read again request by request.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from bisect import bisect_left
from collections.abc import Callable
from typing import Any, Dict, List, Optional, Tuple

import numpy as np

from ..settings import ServeSettings
from .metrics import SharedCounters
from .served import Observe, ServedModel

log = logging.getLogger("mlpack.server")

Outcome = Any  # (labels, probabilities) of one request, or the exception its records raised
Finish = Callable[[Outcome], Any]  # an outcome → the request's answer; never raises
Part = Tuple[Dict[str, np.ndarray], List[Tuple[int, int]]]  # feeds, and (job, rows) for each job they hold


OWN, ALONE, QUEUED = 0, 1, 2  # how a request runs: `Batcher.way`


class Job:
    """One request's part of a batch: its data as the model takes it, and `rows`, the same records as
    a list when they may be read together with others' (None: columns, read on their own)."""

    __slots__ = ("data", "rows", "records", "strict", "finish", "future", "queued")

    def __init__(
        self, data: Any, rows: Optional[List[Any]], records: int, strict: bool, finish: Finish, future: Any
    ) -> None:
        self.data, self.rows, self.records, self.strict = data, rows, records, strict
        self.finish, self.future, self.queued = finish, future, time.perf_counter()


class Batcher:
    """One model's queue of predictions waiting for their call, on one event loop."""

    def __init__(
        self,
        model: ServedModel,
        max_records: int,
        wait_us: int = 0,
        observe: Optional[Observe] = None,
        stats: Optional[BatchStats] = None,
    ) -> None:
        self.model, self.max_records, self.wait = model, max_records, wait_us / 1e6
        self.observe, self.stats = observe, stats
        self.expected = 1  # requests the last call held: under steady load, the next one's too
        self._jobs: List[Job] = []
        self._loop: Optional[asyncio.AbstractEventLoop] = None  # the loop `_running` found last
        self._records = 0
        self._timer: Optional[asyncio.Handle] = None
        self._holding = False  # the timer is a wait for more requests, not the end of this turn

    def way(self, records: int) -> int:
        """How a request of `records` records runs. OWN: not batched (a larger one, or one off the
        event loop: bodies over 64 KiB are answered on executor threads). ALONE: batched, but none
        waits for a call, the last call held one request and nothing else is ready on the loop, so
        nothing could join it: its caller runs the model at once, as unbatched (no job, no future,
        ~13 us less; its `ran_alone` counts it). QUEUED: `submit` it."""
        loop = self._running()
        if loop is None or not 0 < records <= self.max_records:
            return OWN
        # The loop's ready queue (CPython's asyncio keeps it in `_ready`): empty, nothing else can
        # join before the loop polls its sockets again, so waiting a turn would only cost a turn.
        if not self._jobs and self.expected == 1 and not getattr(loop, "_ready", True):
            return ALONE
        return QUEUED

    def _running(self) -> Optional[asyncio.AbstractEventLoop]:
        """This thread's running loop, or None. asyncio's lookup makes a getpid() system call every
        time (CPython before 3.12), which cost a one-record request ~3 us (the call, and the caches
        it cools for the model after it); so the loop found last is checked by its thread instead."""
        loop = self._loop
        if loop is not None and getattr(loop, "_thread_id", None) == threading.get_ident():
            return loop  # CPython's loops hold the thread running them (None once stopped)
        loop = self._loop = asyncio._get_running_loop()
        return loop

    def ran_alone(self, records: int) -> None:
        """A request that ran ALONE: counted as a call of its `records` (0: refused, no call made)."""
        if self.stats is not None:
            self.stats.count_alone(records)

    def submit(
        self, data: Any, rows: Optional[List[Any]], records: int, strict: bool, finish: Finish
    ) -> asyncio.Future[Any]:
        """Queue one request; its future's result is `finish(outcome)` once its call has run."""
        loop = self._running()
        if loop is None:
            raise RuntimeError("no running event loop")
        future = loop.create_future()
        if self._records + records > self.max_records:
            self._flush()  # full: run what waits, and start the next batch with this one
        jobs = self._jobs
        jobs.append(Job(data, rows, records, strict, finish, future))
        self._records += records
        gathered = len(jobs) >= self.expected
        # The loop's ready queue (CPython's asyncio keeps it in `_ready`): empty, nothing else can
        # join before the loop polls its sockets again, so waiting a turn would only cost a turn.
        if gathered and not getattr(loop, "_ready", True):
            self._flush()
        elif self._timer is None:
            if self.wait > 0 and not gathered:
                self._timer, self._holding = loop.call_later(self.wait, self._flush), True
            else:
                self._timer = loop.call_soon(self._flush)
        elif gathered and self._holding:  # everyone expected is here: no need to wait longer
            self._timer.cancel()
            self._timer, self._holding = loop.call_soon(self._flush), False
        return future

    def _flush(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
        jobs, self._jobs, self._records, self._timer, self._holding = self._jobs, [], 0, None, False
        if not jobs:
            return
        self.expected = len(jobs)
        started = time.perf_counter()
        try:
            outcomes, ran = self._outcomes(jobs)
        except Exception as exc:  # a bug: every request of the batch is answered (500), none hangs
            log.exception("unexpected error in a batch of %d requests", len(jobs))
            outcomes, ran = [exc] * len(jobs), 0
        if self.stats is not None:
            self.stats.count(ran, [started - job.queued for job in jobs])
        for job, outcome in zip(jobs, outcomes):
            if not job.future.done():  # cancelled: its connection is gone
                job.future.set_result(job.finish(outcome))

    # -- the model call -------------------------------------------------------------------------
    def _outcomes(self, jobs: List[Job]) -> Tuple[List[Outcome], int]:
        """Each job's (labels, probabilities), or the exception its own records raised; and how many
        records the one model call held (0: none was made)."""
        outcomes: List[Outcome] = [None] * len(jobs)
        parts: List[Part] = []
        if len(jobs) == 1:  # a request alone (one connection): read as it is, no groups to make
            job = jobs[0]
            try:
                feeds = self.model.feeds(job.data, job.strict)[0]
                parts.append((feeds, [(0, len(next(iter(feeds.values()))))]))
            except Exception as exc:
                outcomes[0] = exc
        else:
            for strict in (False, True):
                group = [index for index, job in enumerate(jobs) if job.strict is strict]
                if group:
                    parts += self._feeds(jobs, group, strict, outcomes)
        if not parts:
            return outcomes, 0
        members = [member for _, held in parts for member in held]
        if len(parts) == 1:
            feeds = parts[0][0]
        else:
            feeds = {name: np.concatenate([part[name] for part, _ in parts]) for name in parts[0][0]}
        try:
            labels, probabilities = self.model.outputs(feeds)
        except Exception:  # onnxruntime refused the batch: each request alone, so only the one at fault fails
            if self.stats is not None:
                self.stats.retried()
            for index, _ in members:
                outcomes[index] = self._alone(jobs[index])
            return outcomes, 0
        if self.observe is not None:
            self.observe(feeds, labels)
        start = 0
        for index, size in members:
            end = start + size
            outcomes[index] = (labels[start:end], None if probabilities is None else probabilities[start:end])
            start = end
        return outcomes, len(labels)

    def _feeds(self, jobs: List[Job], group: List[int], strict: bool, outcomes: List[Outcome]) -> List[Part]:
        """The group's feeds: records in one reading of them all (if one is refused, request by
        request, so that it fails its own request alone), columns request by request."""
        together = [index for index in group if jobs[index].rows is not None]
        parts: List[Part] = []
        if len(together) > 1:
            records: List[Any] = []
            held = []
            for index in together:
                rows = jobs[index].rows or []
                records += rows
                held.append((index, len(rows)))
            try:
                parts.append((self.model.feeds(records, strict)[0], held))
                together = []
            except ValueError:  # someone's record: each request is read alone below and finds its own
                if self.stats is not None:
                    self.stats.retried()
        for index in together + [index for index in group if jobs[index].rows is None]:
            try:
                feeds = self.model.feeds(jobs[index].data, strict)[0]
                parts.append((feeds, [(index, len(next(iter(feeds.values()))))]))
            except Exception as exc:
                outcomes[index] = exc
        return parts

    def _alone(self, job: Job) -> Outcome:
        try:
            feeds = self.model.feeds(job.data, job.strict)[0]
            labels, probabilities = self.model.outputs(feeds)
        except Exception as exc:
            return exc
        if self.observe is not None:
            self.observe(feeds, labels)
        return labels, probabilities


RECORD_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 4096)
WAIT_BUCKETS = (0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25)


class BatchStats:
    """The batcher's /metrics: records per model call and each request's wait for its call
    (histograms), and batches read again request by request; a row per worker, as metrics.py."""

    def __init__(self, slots: int = 1) -> None:
        self._records_at, self._wait_at = 0, len(RECORD_BUCKETS) + 2  # buckets and +Inf, then the sum
        self._retries_at = self._wait_at + len(WAIT_BUCKETS) + 2
        self.counters = SharedCounters(self._retries_at + 1, slots)

    @classmethod
    def for_settings(cls, settings: ServeSettings) -> Optional[BatchStats]:
        """Made before the workers fork; None when batching is off: --batch-max-records 1, or
        MLPACK_THREADS above 1 (sessions have one intra-op thread unless it says otherwise)."""
        if settings.batch_max_records <= 1:
            return None
        if settings.threads is not None and settings.threads > 1:
            log.warning(
                "batching off: with MLPACK_THREADS=%d onnxruntime sums a tree ensemble's trees in an order "
                "that depends on the batch, so a batched answer could differ from the same request alone",
                settings.threads,
            )
            return None
        return cls(settings.workers)

    def attach(self, slot: int) -> None:
        self.counters.attach(slot)

    def count(self, records: int, waits: List[float]) -> None:
        """One batch: the records its model call held (0: no call, every request was refused), and
        how long each of its requests waited for it."""
        row = self.counters.row
        if records:
            row[self._records_at + bisect_left(RECORD_BUCKETS, records)] += 1
            row[self._records_at + len(RECORD_BUCKETS) + 1] += records
        for wait in waits:
            row[self._wait_at + bisect_left(WAIT_BUCKETS, wait)] += 1
        row[self._wait_at + len(WAIT_BUCKETS) + 1] += sum(waits)

    def count_alone(self, records: int) -> None:
        """`count(records, [0.0])` for a request that ran alone, without the lists."""
        row = self.counters.row
        if records:
            row[self._records_at + bisect_left(RECORD_BUCKETS, records)] += 1
            row[self._records_at + len(RECORD_BUCKETS) + 1] += records
        row[self._wait_at] += 1  # no wait: the first bucket; the sum of waits is unchanged

    def retried(self) -> None:
        self.counters.row[self._retries_at] += 1

    def render(self) -> List[str]:
        totals = self.counters.totals()
        return [
            "# HELP mlpack_batch_records Records in each onnxruntime call of the batcher.",
            "# TYPE mlpack_batch_records histogram",
            *_histogram("mlpack_batch_records", RECORD_BUCKETS, totals[self._records_at :], "{:.0f}"),
            "# HELP mlpack_batch_queue_seconds How long each batched request waited for its call.",
            "# TYPE mlpack_batch_queue_seconds histogram",
            *_histogram("mlpack_batch_queue_seconds", WAIT_BUCKETS, totals[self._wait_at :], "{:.6f}"),
            "# HELP mlpack_batch_retries_total Batches read again request by request: a record was refused.",
            "# TYPE mlpack_batch_retries_total counter",
            f"mlpack_batch_retries_total {int(totals[self._retries_at])}",
        ]


def _histogram(name: str, bounds: Tuple[float, ...], cells: Any, total: str) -> List[str]:
    """Prometheus histogram lines from `cells`: a count per bucket (the last one +Inf), then the sum."""
    lines, cumulative = [], 0
    for index, bound in enumerate((*bounds, None)):
        cumulative += int(cells[index])
        lines.append(f'{name}_bucket{{le="{"+Inf" if bound is None else repr(bound)}"}} {cumulative}')
    lines += [f"{name}_sum {total.format(cells[len(bounds) + 1])}", f"{name}_count {cumulative}"]
    return lines


__all__ = ["ALONE", "OWN", "QUEUED", "RECORD_BUCKETS", "WAIT_BUCKETS", "BatchStats", "Batcher", "Job"]
