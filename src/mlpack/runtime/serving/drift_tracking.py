"""Per-feature data quality and drift on /metrics: a `metrics.Observer` around `drift.DriftWindow`.

Each process counts into its own slot of one anonymous shared memory block, mapped before the
workers fork, so every process can read every other's counts and a scrape of any of them reports
the server's totals; a slot has one writer, so no lock between processes is needed.
"""

from __future__ import annotations

import logging
import mmap
import threading
from collections.abc import Mapping
from typing import Any, List, Optional

from .drift_window import DriftWindow
from .served import ServedModel

log = logging.getLogger("mlpack.server")


class DriftTracking:
    """Per-feature data quality and drift for /metrics, totalled across worker processes."""

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
    def for_model(cls, model: ServedModel, size: int, workers: int) -> Optional[DriftTracking]:
        """Tracking over windows of `size` records (ServeSettings.drift_window), or None: off."""
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


__all__ = ["DriftTracking"]
