"""The inference log: requests and predictions written to MongoDB, off the request path.

Bounded in bytes, not entries: each record is encoded to BSON when it is queued, and the queue holds
those bytes and nothing else (with the database down, 15,000 requests of 100 records once grew RSS
from 117 MB to 1.20 GB, and kept it: 10,000 queued entries of parsed Python objects). Encoding there
also finds the record BSON cannot hold (a 5,000-digit integer in a field the model ignores), which is
stored with its inputs as text, instead of failing its batch's insert_many and losing 200 records.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timezone
from typing import Any, Deque, Dict, List, Optional, Sequence, Tuple

from .. import heap
from ..settings import InferenceLogSettings, StartFailure
from .ids import minted_ms
from .log_connection import locked_key, why_unusable
from .served import ServedModel

log = logging.getLogger("mlpack.server")

Counter = Callable[..., None]  # count(written=n, dropped=n, reason=..., as_text=n, feedback_stored=n, ...)
MIB = 1024 * 1024
# The default queue: a sixteenth of the memory the process may use (the pod's limit), 4 to 64 MiB.
MEMORY_SHARE, MIN_QUEUE_BYTES, MAX_QUEUE_BYTES = 16, 4 * MIB, 64 * MIB
# Seconds between attempts at a batch the database did not take: with the 2 s server selection
# timeout, a batch is tried 5 times over ~14 s (a restart or failover) before it is dropped.
RETRY_DELAYS = (0.25, 0.5, 1.0, 2.0)
MAX_DOCUMENT_BYTES = 16 * MIB - 16 * 1024  # MongoDB's limit, less room for the insert command
# Feedback is stored while its request waits, on the log's own threads; more at once is a 503.
FEEDBACK_THREADS, MAX_FEEDBACK_IN_FLIGHT = 2, 256
# Beyond flush_seconds: how long an id not in the log yet is looked for again (its record may still be
# queued here or in another worker) before the answer is 404; only an id minted that recently (ids.py),
# give or take the clock difference of two workers' hosts.
FEEDBACK_GRACE_SECONDS, CLOCK_SKEW_SECONDS = 1.5, 30.0
UNREACHABLE = object()  # what an action tried until the retries ran out gives
# Once the queue has drained after holding this much, freed memory goes back to the system: records
# of ~30 KB sit in glibc's heap, which keeps them (an outage left RSS 105 MiB up after it ended).
# What one insert_many carries at most (BATCH_BYTES): pymongo encodes the batch into one more buffer of
# its size, beyond the queue's bytes (200 records of 30 KB took 16 MiB of queue to 30 MiB of RSS).
TRIM_AFTER_BYTES, BATCH_BYTES = 8 * MIB, 1 * MIB


def memory_limit() -> Optional[int]:
    """The memory this process may use: its cgroup's limit (v2, then v1), else the machine's memory."""
    for path in ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"):
        try:
            with open(path, encoding="ascii") as file:
                text = file.read().strip()
        except OSError:
            continue
        if text.isdigit() and int(text) < 1 << 60:  # v1 says "unlimited" with 2**63 rounded to pages
            return int(text)
    try:
        return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def default_queue_bytes() -> int:
    limit = memory_limit()
    share = limit // MEMORY_SHARE if limit else MAX_QUEUE_BYTES
    return max(MIN_QUEUE_BYTES, min(MAX_QUEUE_BYTES, share))


class InferenceLog:
    """Requests and predictions written to MongoDB in batches, by a thread off the request path.

    The request thread encodes and queues; a record that would take the queue past `max_bytes` (the
    database is slow or gone) is dropped and counted, so logging never slows or fails a prediction.
    A batch the database does not take is tried again, backing off, before it is dropped. Needs
    pymongo, which the wheel's `[serve]` extra brings.
    """

    def __init__(
        self,
        uri: str,
        database: str,
        collection: str,
        count: Counter,
        *,
        max_bytes: Optional[int] = None,
        gauge: Optional[Callable[[int], None]] = None,
        batch: int = 200,
        flush_seconds: float = 1.0,
        retry_delays: Sequence[float] = RETRY_DELAYS,
    ) -> None:
        import bson  # only when logging is on: the plain wheel has no pymongo
        from pymongo import MongoClient

        self._bson: Any = bson
        self._client: Any = MongoClient(
            uri,
            serverSelectionTimeoutMS=2000,
            connectTimeoutMS=2000,
            socketTimeoutMS=5000,
            appname="mlpack-inference-log",
        )
        self._collection = self._client[database][collection]
        self._count = count
        self._gauge = gauge or (lambda _bytes: None)
        self.max_bytes = max_bytes or default_queue_bytes()
        self._items: Deque[Tuple[str, Any, int]] = deque()
        self._bytes = 0  # queued and being written: released once written or dropped
        self._held = 0  # the most held since the queue was last empty
        self._ready = threading.Condition()
        self._batch = batch
        self._flush_seconds = flush_seconds
        self._retry_delays = tuple(retry_delays)
        self._stopping = threading.Event()
        self._feedback_in_flight = 0
        self._feedback_pool = ThreadPoolExecutor(FEEDBACK_THREADS, thread_name_prefix="inference-log-feedback")
        self._thread = threading.Thread(target=self._run, name="inference-log", daemon=True)
        self._thread.start()

    @classmethod
    def check(cls, model: ServedModel, where: InferenceLogSettings) -> None:
        """What would stop the log at start, found once in the serving process before any worker forks
        (each worker would print the same line): a locked key, no pymongo, a connection string or TLS
        file that cannot be used. Nothing connects here."""
        uri_env = where.uri_env
        if locked_key(where.uri):  # OpenSSL would ask the terminal for the passphrase, and a container has none
            raise StartFailure(
                f"inference log: the client key in {uri_env}'s tlsCertificateKeyFile is encrypted: "
                "add tlsCertificateKeyFilePassword to the connection string"
            )
        try:
            from pymongo import MongoClient
            from pymongo.errors import PyMongoError
        except ImportError:
            raise StartFailure(f"inference logging needs pymongo: pip install '{model.name}[serve]'") from None
        try:
            MongoClient(where.uri, connect=False).close()  # options and TLS files are read here, no socket opened
        except (PyMongoError, ValueError, TypeError, OSError) as exc:
            raise StartFailure(
                f"inference log: the connection string in {uri_env} cannot be used: {why_unusable(exc)}"
            ) from None

    @classmethod
    def connect(cls, model: ServedModel, where: InferenceLogSettings, count: Counter, **options: Any) -> InferenceLog:
        """The log ServeSettings found switched on (the connection string from the environment:
        credentials never sit in a wheel); a key or option that cannot work ends the server at start."""
        cls.check(model, where)
        from pymongo.errors import PyMongoError

        try:
            return cls(where.uri, where.database, where.collection, count, **options)
        except (PyMongoError, ValueError, TypeError, OSError) as exc:  # a TLS file, a key, an option
            raise StartFailure(
                f"inference log: the connection string in {where.uri_env} cannot be used: {why_unusable(exc)}"
            ) from None

    # -- the request thread's side --------------------------------------------------------------
    def record(self, model: ServedModel, route: str, inputs: Any, predictions: List[Any], prediction_id: str) -> None:
        """Queue one answered request; its `_id` is the id the client got, for feedback to find it."""
        entry = {
            "_id": prediction_id,
            "model": model.name,
            "version": model.version,
            "route": route,
            "at": datetime.now(tz=timezone.utc),
            "inputs": inputs,
            "predictions": predictions,
        }
        data = self._encode(entry)
        if data is not None:
            self._put(("record", data, len(data)), dropped=1)

    def feedback(self, prediction_id: str, index: int, label: Any, done: Callable[[str], None]) -> bool:
        """Store a true outcome beside its logged prediction on the log's own threads, then `done(outcome)`
        (see `store_feedback`). False: too many in flight, nothing will be stored."""
        with self._ready:
            full = self._feedback_in_flight >= MAX_FEEDBACK_IN_FLIGHT
            if not full:
                self._feedback_in_flight += 1
        if full:
            self._count(reason="queue_full", feedback_dropped=1)
            return False

        def run() -> None:
            try:
                outcome = self.store_feedback(prediction_id, index, label)
            finally:
                with self._ready:
                    self._feedback_in_flight -= 1
            done(outcome)

        self._feedback_pool.submit(run)
        return True

    def store_feedback(self, prediction_id: str, index: int, label: Any) -> str:
        """Push `{index, label, at}` onto the logged request's `feedback` list: "stored"; "unknown" when no
        logged request has that id (a record is written up to flush_seconds after its answer, by this worker
        or another, so a recent id is looked for again until then); "records N" when it has the id but only N
        records (an index past them was stored, then skipped by every build on it); "unreachable": not stored."""
        entry = {"index": index, "label": label, "at": datetime.now(tz=timezone.utc)}
        where = {"_id": prediction_id, "predictions.%d" % index: {"$exists": True}}  # one answer per record
        minted, window = minted_ms(prediction_id), self._flush_seconds + FEEDBACK_GRACE_SECONDS
        if minted is None or time.time() * 1000 - minted > (window + CLOCK_SKEW_SECONDS) * 1000:
            window = 0.0  # an id no /predict gave in the last seconds: its record is in the log or nowhere
        deadline, pause, raced = time.monotonic() + window, 0.05, False
        while True:
            held: Any = None  # the logged request, looked up when the update matched none
            try:
                result = self._attempts(
                    "feedback", lambda: self._collection.update_one(where, {"$push": {"feedback": entry}})
                )
                if result is not UNREACHABLE and not result.matched_count:
                    held = self._attempts(
                        "feedback", lambda: self._collection.find_one({"_id": prediction_id}, {"predictions": 1})
                    )
            except Exception:  # refused, or a label the driver cannot encode
                result = UNREACHABLE
            if result is UNREACHABLE or held is UNREACHABLE:
                self._count(feedback_dropped=1)
                return "unreachable"
            if result.matched_count:
                self._count(feedback_stored=1)
                return "stored"
            count = -1 if held is None else len(held.get("predictions") or [])
            if count > index and not raced:  # its record came between the two looks: the update finds it now
                raced = True
                continue
            if count >= 0 or time.monotonic() + pause > deadline or self._stopping.is_set():
                self._count(feedback_unknown=1)  # an id never given, a record dropped, or no such record in it
                return "records %d" % count if 0 <= count <= index else "unknown"
            self._stopping.wait(pause)
            pause = min(pause * 2, 0.4)

    def _encode(self, entry: Dict[str, Any]) -> Optional[bytes]:
        try:
            data: bytes = self._bson.encode(entry)
        except Exception as exc:  # a value BSON cannot hold: an integer past 64 bits or past 4,300 digits
            entry["inputs"] = json.dumps(entry["inputs"], default=str)[: MAX_DOCUMENT_BYTES // 2]
            entry["inputs_as_text"] = str(exc)[:200] or type(exc).__name__
            try:
                data = self._bson.encode(entry)
            except Exception:
                self._count(dropped=1, reason="unencodable")
                return None
            self._count(as_text=1)
        if len(data) > MAX_DOCUMENT_BYTES:
            self._count(dropped=1, reason="too_large")
            return None
        return data

    def _put(self, item: Tuple[str, Any, int], **lost: Any) -> None:
        with self._ready:
            if self._bytes + item[2] > self.max_bytes:
                full = True
            else:
                full = False
                self._items.append(item)
                self._bytes += item[2]
                self._ready.notify()
            queued = self._bytes
        if full:
            self._count(reason="queue_full", **lost)
        else:
            self._gauge(queued)

    # -- the writer thread ----------------------------------------------------------------------
    def _take(self) -> List[Tuple[str, Any, int]]:
        """Up to `batch` entries and BATCH_BYTES (one at least), after at most `flush_seconds` of waiting."""
        deadline = time.monotonic() + self._flush_seconds
        with self._ready:
            while len(self._items) < self._batch and not self._stopping.is_set():
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self._ready.wait(left)
            taken: List[Tuple[str, Any, int]] = []
            size = 0
            while self._items and len(taken) < self._batch and (not taken or size + self._items[0][2] <= BATCH_BYTES):
                taken.append(self._items.popleft())
                size += taken[-1][2]
            return taken

    def _release(self, size: int) -> None:
        with self._ready:
            self._held = max(self._held, self._bytes)
            self._bytes -= size
            queued = self._bytes
            trim = queued == 0 and self._held >= TRIM_AFTER_BYTES
            if queued == 0:
                self._held = 0
        self._gauge(queued)
        if trim:
            heap.release()

    def _run(self) -> None:
        from bson.raw_bson import RawBSONDocument

        while True:
            batch = self._take()
            if not batch:
                if self._stopping.is_set():
                    return
                continue
            try:
                self._write([RawBSONDocument(data) for _, data, _ in batch])
            except Exception:  # a bug: say so once a batch, keep the thread (and the log) alive
                log.exception("inference log: a batch failed")
            finally:
                self._release(sum(size for _, _, size in batch))

    def _attempts(self, what: str, action: Callable[[], Any]) -> Any:
        """`action`, tried again with back-off while the database is unreachable; UNREACHABLE if it stays so."""
        from pymongo.errors import ConnectionFailure

        for delay in (*self._retry_delays, None):
            try:
                return action()
            except ConnectionFailure as exc:
                if delay is None or self._stopping.is_set():
                    log.warning("inference log: dropped %s: %s", what, str(exc).split("\n", 1)[0][:200])
                    return UNREACHABLE
                self._stopping.wait(delay)
        return UNREACHABLE

    def _write(self, documents: List[Any]) -> None:
        from pymongo.errors import BulkWriteError, PyMongoError

        try:
            done = self._attempts(
                f"{len(documents)} records", lambda: self._collection.insert_many(documents, ordered=False)
            )
        except BulkWriteError as exc:  # the server refused some documents; the others are in
            self._refused(documents, exc.details)
            return
        except PyMongoError as exc:  # refused whole (not authorised, say): count, keep serving
            self._count(dropped=len(documents), reason="refused")
            log.warning("inference log: dropped %d records: %s", len(documents), str(exc).split("\n", 1)[0][:200])
            return
        if done is UNREACHABLE:
            self._count(dropped=len(documents), reason="unreachable")
        else:
            self._count(written=len(documents))

    def _refused(self, documents: List[Any], details: Any) -> None:
        """After an unordered insert_many that the server refused in part: the refused ones as text."""
        written = int(details.get("nInserted", 0))
        for error in details.get("writeErrors", []):
            if error.get("code") == 11000:  # already there: an earlier attempt wrote it before the connection broke
                written += 1
                continue
            entry = dict(documents[error["index"]])
            entry["inputs_as_text"] = str(error.get("errmsg", "refused"))[:200]
            entry["inputs"] = json.dumps(entry.get("inputs"), default=str)[: MAX_DOCUMENT_BYTES // 2]
            try:
                self._collection.insert_one(entry)
            except Exception:
                self._count(dropped=1, reason="refused")
            else:
                self._count(written=1, as_text=1)
        self._count(written=written)

    def close(self, timeout: float = 5.0) -> None:
        self._stopping.set()
        with self._ready:
            self._ready.notify()
        self._thread.join(timeout)
        self._feedback_pool.shutdown(wait=True, cancel_futures=True)  # a running one ends at its next look
        self._client.close()


__all__ = ["InferenceLog", "default_queue_bytes", "memory_limit"]
