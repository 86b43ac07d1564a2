"""Per-stage wall times of a build, for the report and `--json` (never for the metadata: times vary)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from mlpack.runtime import heap

STAGES = ("load", "validate", "train", "export", "parity", "card", "package", "image")


class StageClock:
    """Seconds per stage; a stage entered twice adds up. `trials` holds the search's per-trial fit times."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}
        self.trials: list[dict[str, Any]] = []

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        heap.release()  # what the steps before freed: a stage's arrays are not mapped beside it
        started = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[name] = self.seconds.get(name, 0.0) + time.perf_counter() - started

    def report(self) -> dict[str, Any]:
        ordered = {name: round(self.seconds[name], 4) for name in STAGES if name in self.seconds}
        ordered.update({name: round(s, 4) for name, s in self.seconds.items() if name not in ordered})
        out: dict[str, Any] = {"stages": ordered}
        if self.trials:
            out["trials"] = self.trials
        return out
