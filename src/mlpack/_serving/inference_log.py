"""The inference log: requests and predictions written to MongoDB, off the request path."""

from __future__ import annotations

import logging
import os
import queue
import threading
import time
from collections.abc import Callable
from datetime import datetime, timezone
from typing import Any, Dict, List, Optional, Tuple

log = logging.getLogger("mlpack.server")

Counter = Callable[..., None]  # count(written=n, dropped=n, feedback_stored=n, ...)


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
        count: Counter,
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
        self._count = count
        self._queue: queue.Queue[Tuple[str, Any]] = queue.Queue(maxsize=capacity)
        self._batch = batch
        self._flush_seconds = flush_seconds
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name="inference-log", daemon=True)
        self._thread.start()

    @classmethod
    def from_settings(cls, model: Any, count: Counter) -> Optional[InferenceLog]:
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
            return cls(uri, database, collection, count)
        except ImportError:
            raise SystemExit(f"inference logging needs pymongo: pip install '{model.name}[serve]'") from None

    def record(self, model: Any, route: str, inputs: Any, predictions: List[Any], prediction_id: str) -> None:
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
        self._put(("record", entry), dropped=1)

    def feedback(self, prediction_id: str, index: int, label: Any) -> None:
        """Queue a true outcome, to be stored next to the logged prediction (`feedback`, a list)."""
        entry = {"index": index, "label": label, "at": datetime.now(tz=timezone.utc)}
        self._put(("feedback", (prediction_id, entry)), feedback_dropped=1)

    def _put(self, item: Tuple[str, Any], **lost: int) -> None:
        try:
            self._queue.put_nowait(item)
        except queue.Full:
            self._count(**lost)

    def _run(self) -> None:
        while not (self._stopping.is_set() and self._queue.empty()):
            batch: List[Tuple[str, Any]] = []
            deadline = time.monotonic() + self._flush_seconds
            while len(batch) < self._batch:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                try:
                    batch.append(self._queue.get(timeout=remaining))
                except queue.Empty:
                    break
            records = [entry for kind, entry in batch if kind == "record"]
            if records:  # first: feedback in the same batch may be about them
                self._write(records)
            for kind, entry in batch:
                if kind == "feedback":
                    self._store_feedback(*entry)

    def _write(self, batch: List[Dict[str, Any]]) -> None:
        from pymongo.errors import BulkWriteError

        try:
            self._collection.insert_many(batch, ordered=False)
            self._count(written=len(batch))
        except BulkWriteError as exc:  # the server refused some documents; the others are in
            written = int(exc.details.get("nInserted", 0))
            self._count(written=written, dropped=len(batch) - written)
        except (OverflowError, ValueError, TypeError):
            # A document the driver cannot encode (an integer past 64 bits in an unused field, say):
            # write the batch one by one so that one odd request does not cost the others.
            for entry in batch:
                self._write_one(entry)
        except Exception as exc:  # the database is slow or gone: count the loss, keep serving
            self._count(dropped=len(batch))
            log.warning("inference log: dropped %d records: %s", len(batch), str(exc).split("\n", 1)[0][:200])

    def _write_one(self, entry: Dict[str, Any]) -> None:
        try:
            self._collection.insert_one(entry)
            self._count(written=1)
        except Exception:
            self._count(dropped=1)

    def _store_feedback(self, prediction_id: str, entry: Dict[str, Any]) -> None:
        try:
            result = self._collection.update_one({"_id": prediction_id}, {"$push": {"feedback": entry}})
        except Exception:  # gone, slow, or a label the driver cannot encode
            self._count(feedback_dropped=1)
            return
        if result.matched_count:
            self._count(feedback_stored=1)
        else:  # an id never given, or a prediction whose record was dropped
            self._count(feedback_unknown=1)

    def close(self, timeout: float = 5.0) -> None:
        self._stopping.set()
        self._thread.join(timeout)
        self._client.close()


__all__ = ["InferenceLog"]
