"""Per-feature data quality and drift on /metrics: a `metrics.Observer` around `drift.DriftWindow`.

Each process counts into its own slot of one anonymous shared memory block, mapped before the
workers fork, so every process can read every other's counts and a scrape of any of them reports
the server's totals; a slot has one writer, so no lock between processes is needed.
"""

from __future__ import annotations

import logging
import mmap
import os
import sys
import threading
from collections.abc import Mapping
from typing import Any, List, Optional

from .drift_window import DriftWindow

log = logging.getLogger("mlpack.server")

DEFAULT_DRIFT_WINDOW = 1000  # records per worker whose inputs and predictions /metrics compares to training


def drift_window_size(settings: Mapping[str, Any]) -> int:
    """MLPACK_DRIFT_WINDOW, else [serve].drift_window, else the default; 0 is off. A bad value ends the
    server at start with one line and exit code 2, as `Limits.resolve` does for the other settings."""
    for source, raw in (
        ("MLPACK_DRIFT_WINDOW", os.environ.get("MLPACK_DRIFT_WINDOW") or None),
        ("[serve].drift_window", settings.get("drift_window")),
    ):
        if raw is None:
            continue
        try:
            value = int(raw)
        except (TypeError, ValueError):
            value = -1
        if isinstance(raw, float) or value < 0:  # int(2.5) would quietly make a window of 2
            print(f"error: {source} must be 0 (off) or a positive int, got {raw!r}", file=sys.stderr)
            raise SystemExit(2)
        return value
    return DEFAULT_DRIFT_WINDOW


class DriftTracking:
    """Per-feature data quality and drift for /metrics (SPEC §5, §10), totalled across worker processes."""

    def __init__(self, metadata: Mapping[str, Any], size: int, slots: int = 1) -> None:
        probe = DriftWindow.for_model(metadata, size=size)
        if probe is None:
            raise ValueError("the model has no training baseline")
        self.length = probe.length
        self._block = mmap.mmap(-1, max(1, self.length * slots) * 8)  # MAP_SHARED: forks see each other
        view = memoryview(self._block).cast("q")
        self.slots = [view[index * self.length : (index + 1) * self.length] for index in range(slots)]
        # Every slot laid out (empty rings) before any worker forks: a scrape reads them all.
        self.windows = [DriftWindow.for_model(metadata, size=size, buffer=slot) for slot in self.slots]
        self.window: Optional[DriftWindow] = None
        self._lock = threading.Lock()
        self._failed = False

    @classmethod
    def from_settings(cls, model: Any, workers: int) -> Optional[DriftTracking]:
        size = drift_window_size(model.metadata.get("serve", {}))
        if size == 0 or not model.metadata.get("baseline"):
            return None  # switched off, or a model built before baselines existed
        return cls(model.metadata, size, max(1, workers))

    def attach(self, slot: int) -> None:
        """Count this process's requests into `slot` (called in each process after the fork)."""
        self.window = self.windows[slot]

    def observe(self, feeds: Mapping[str, Any], labels: List[Any]) -> None:
        if self.window is None:
            return
        try:
            with self._lock:  # large bodies are answered on executor threads
                self.window.observe(feeds, labels)
        except Exception:  # counting must never cost a prediction
            if not self._failed:
                self._failed = True
                log.exception("drift tracking failed; predictions carry on")

    def render(self) -> List[str]:
        if self.window is None:
            return []
        return self.window.prometheus(self.window.tally(self.slots))


__all__ = ["DriftTracking", "drift_window_size"]
