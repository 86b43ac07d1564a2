"""The server's sliding window of recent records per feature, for `/metrics` (SPEC §5, §10).

Standard library and numpy only, like the rest of `_serving`: the bins come from `drift.Profile`,
so a value lands in the bin the build's baseline and `mlpack monitor` use.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from .drift import Profile, label_text, model_inputs

PREDICTIONS = "__predictions__"  # the window's name for the model's own predictions

log = logging.getLogger("mlpack.server")


class DriftWindow:
    """The bins of the last `size` records per feature and of their predictions, plus running totals.

    `observe` runs on the request path and only queues the request (a list append): binning one
    record at a time in Python cost ~10% of a one-record request, so queued requests are binned in
    batches with numpy by `flush` — when 256 records are queued, at least once a second from a
    background thread, and before every reading. Counts live in one flat int64 buffer (`counts`)
    laid out by `layout`, so that a server with several worker processes can put each worker's
    buffer in shared memory and add them up at scrape time (`add`): counts add, PSI is computed from
    the sums; another worker's latest requests show within a second. Per feature the buffer holds
    the window's slot counts, then three running totals: values seen, missing, and categories never
    seen in training.
    """

    TOTALS = ("values", "missing", "unknown")
    BATCH = 256  # queued records that make the request path flush (the thread usually does it first)
    FLUSH_SECONDS = 1.0

    def __init__(
        self,
        baseline: Mapping[str, Any],
        inputs: Mapping[str, str],
        *,
        size: int = 1000,
        counts: Any = None,
        background: bool = True,
    ) -> None:
        """`inputs`: feature name → the key its values have in the observed columns (the ONNX input).

        `counts`: a writable buffer of `length` int64 (e.g. a slot of shared memory), else private.
        `background`: flush from a daemon thread once a second (started with the first request, so
        in each process after a fork).
        """
        self.size = max(1, int(size))
        features = baseline.get("features", {})
        self.profiles = {name: Profile(entry) for name, entry in features.items() if name in inputs}
        self.inputs = {name: inputs[name] for name in self.profiles}
        self.prediction = Profile(baseline["predictions"]) if baseline.get("predictions") else None
        self.layout: dict[str, int] = {}  # name → offset of its slots in `counts`
        offset = 0
        for name, profile in self.profiles.items():
            self.layout[name] = offset
            offset += profile.slots + len(self.TOTALS)
        if self.prediction is not None:
            self.layout[PREDICTIONS] = offset
            offset += self.prediction.slots + len(self.TOTALS)
        self.length = offset
        self.counts: np.ndarray = (
            np.frombuffer(counts, dtype=np.int64, count=offset) if counts is not None else np.zeros(offset, np.int64)
        )
        # Private to this process: which slot each of the last `size` records fell in, per feature.
        self._rings = {name: np.full(self.size, -1, dtype=np.int64) for name in self.layout}
        self._position = 0
        self._queue: list[tuple[Mapping[str, Any], Sequence[Any]]] = []
        self._queued = 0
        self._flushing = threading.Lock()
        self._background = background
        self._thread: threading.Thread | None = None

    @classmethod
    def for_model(cls, metadata: Mapping[str, Any], *, size: int = 1000, counts: Any = None) -> DriftWindow | None:
        baseline = metadata.get("baseline")
        if not baseline or size <= 0:
            return None
        return cls(baseline, model_inputs(metadata), size=size, counts=counts)

    def observe(self, columns: Mapping[str, Any], predictions: Sequence[Any]) -> None:
        """Queue one request: its model inputs (ONNX feeds by input name, arrays) and its predictions."""
        self._queue.append((columns, predictions))
        self._queued += len(predictions)
        if self._queued >= self.BATCH:
            self.flush()
        elif self._thread is None and self._background:
            self._thread = threading.Thread(target=self._flush_forever, name="drift-window", daemon=True)
            self._thread.start()

    def _flush_forever(self) -> None:
        failed = False
        while True:
            time.sleep(self.FLUSH_SECONDS)
            try:
                self.flush()
            except Exception:  # a batch that cannot be counted is dropped; counting carries on
                if not failed:
                    failed = True
                    log.exception("drift window: a batch of requests could not be counted")

    def flush(self) -> None:
        """Bin every queued request into the counts."""
        with self._flushing:
            # Swap, then read: a request queued meanwhile lands in the new list, for the next flush.
            queue, self._queue = self._queue, []
            self._queued = 0
            if queue:
                self._count(queue)

    def _count(self, queue: list[tuple[Mapping[str, Any], Sequence[Any]]]) -> None:
        predictions = [label for _, labels in queue for label in labels]
        count = len(predictions)
        if count == 0:
            return
        first = max(0, count - self.size)  # only the newest `size` records can stay in the window
        positions = (self._position + np.arange(count - first)) % self.size
        for name, profile in self.profiles.items():
            key = self.inputs[name]
            values = np.concatenate([np.asarray(columns[key]).ravel() for columns, _ in queue])
            self._add(name, profile, profile.bins_of(values), first, positions)
        if self.prediction is not None:
            values = self._prediction_values(predictions)
            self._add(PREDICTIONS, self.prediction, self.prediction.bins_of(values), first, positions)
        self._position = int((self._position + count - first) % self.size)

    def _add(self, name: str, profile: Profile, bins: np.ndarray, first: int, positions: np.ndarray) -> None:
        offset, counts, ring = self.layout[name], self.counts, self._rings[name]
        totals = offset + profile.slots
        counts[totals] += len(bins)
        counts[totals + 1] += int(np.count_nonzero(bins == profile.missing_bin))
        if profile.unknown_bin >= 0:
            counts[totals + 2] += int(np.count_nonzero(bins == profile.unknown_bin))
        leaving = ring[positions]
        leaving = leaving[leaving >= 0]
        window = counts[offset:totals]
        window -= np.bincount(leaving, minlength=profile.slots)[: profile.slots]
        window += np.bincount(bins[first:], minlength=profile.slots)[: profile.slots]
        ring[positions] = bins[first:]

    def _prediction_values(self, predictions: Sequence[Any]) -> Any:
        assert self.prediction is not None
        if self.prediction.kind == "categorical":
            return [label_text(p) for p in predictions]
        return np.asarray(predictions, dtype=np.float64)

    # -- reading ------------------------------------------------------------------------------------
    def add(self, buffers: Sequence[Any]) -> np.ndarray:
        """The element-wise sum of several workers' count buffers (each laid out like this one's),
        this process's queue counted first."""
        self.flush()
        total = np.zeros(self.length, dtype=np.int64)
        for buffer in buffers:
            total += np.frombuffer(buffer, dtype=np.int64, count=self.length)
        return total

    def summary(self, counts: Sequence[int] | np.ndarray | None = None) -> dict[str, dict[str, Any]]:
        """Per feature (and `PREDICTIONS`): records in the window (and missing among them), PSI, running totals."""
        if counts is None:
            self.flush()
            counts = self.counts
        report: dict[str, dict[str, Any]] = {}
        named: list[tuple[str, Profile]] = list(self.profiles.items())
        if self.prediction is not None:
            named.append((PREDICTIONS, self.prediction))
        for name, profile in named:
            offset = self.layout[name]
            slots = [int(c) for c in counts[offset : offset + profile.slots]]
            totals = [int(c) for c in counts[offset + profile.slots : offset + profile.slots + len(self.TOTALS)]]
            report[name] = {
                "window": sum(slots),
                "window_missing": slots[profile.missing_bin],
                "psi": profile.psi(slots),
                **dict(zip(self.TOTALS, totals)),
            }
        return report

    def prometheus(self, counts: Sequence[int] | np.ndarray | None = None) -> list[str]:
        """The exposition lines for `/metrics`."""
        summary = self.summary(counts)
        features = [(name, row) for name, row in summary.items() if name != PREDICTIONS]
        lines = [
            "# HELP mlpack_feature_values_total Values received per feature.",
            "# TYPE mlpack_feature_values_total counter",
            *(f'mlpack_feature_values_total{{feature="{_label(n)}"}} {row["values"]}' for n, row in features),
            "# HELP mlpack_feature_missing_total Missing values (absent, null or NaN) received per feature.",
            "# TYPE mlpack_feature_missing_total counter",
            *(f'mlpack_feature_missing_total{{feature="{_label(n)}"}} {row["missing"]}' for n, row in features),
            "# HELP mlpack_feature_unknown_category_total Categories never seen in training, per feature.",
            "# TYPE mlpack_feature_unknown_category_total counter",
            *(
                f'mlpack_feature_unknown_category_total{{feature="{_label(n)}"}} {row["unknown"]}'
                for n, row in features
                if self.profiles[n].kind == "categorical"
            ),
            "# HELP mlpack_feature_drift_psi PSI of the recent window of values against the training baseline.",
            "# TYPE mlpack_feature_drift_psi gauge",
            *(
                f'mlpack_feature_drift_psi{{feature="{_label(n)}"}} {_number(row["psi"])}'
                for n, row in features
                if row["psi"] is not None
            ),
            "# HELP mlpack_drift_window_values Present values in the drift window, per feature.",
            "# TYPE mlpack_drift_window_values gauge",
            *(
                f'mlpack_drift_window_values{{feature="{_label(n)}"}} {row["window"] - row["window_missing"]}'
                for n, row in features
            ),
        ]
        prediction = summary.get(PREDICTIONS)
        if prediction is not None and prediction["psi"] is not None:
            lines += [
                "# HELP mlpack_prediction_drift_psi PSI of the recent window of predictions against the training.",
                "# TYPE mlpack_prediction_drift_psi gauge",
                f"mlpack_prediction_drift_psi {_number(prediction['psi'])}",
            ]
        return lines


def _label(text: str) -> str:
    """A Prometheus label value: backslash, quote and newline escaped."""
    return text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _number(value: float | None) -> str:
    if value is None or math.isnan(value):
        return "NaN"
    return f"{value:.6g}"


__all__ = ["PREDICTIONS", "DriftWindow"]
