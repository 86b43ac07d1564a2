"""The server's sliding window of recent records per feature, for `/metrics`.

Standard library and numpy only, like the rest of `_serving`: the bins come from `drift.Profile`,
so a value lands in the bin the build's baseline and `mlpack monitor` use.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from ..drift import Profile, label_text, model_inputs

PREDICTIONS = "__predictions__"  # the window's name for the model's own predictions


class DriftWindow:
    """The bins of the last `size` records per feature and of their predictions, plus running totals.

    Counting happens on the request path, so it must cost little and the same for every request.
    (An earlier design queued requests and binned them with numpy from a thread once a second; that
    thread held the GIL for ~9 us per queued record, 17 ms a second at 2,000 req/s, and doubled the
    p99 of one connection.) So a request only writes each value's bin into a ring, `size` records
    long, and adds to a total when the value is missing or an unknown category; a request of a few
    records does it value by value (a `bisect` or a dict lookup and one item write per feature), a
    larger one with numpy. The window's counts are tallied from the rings when read: ~0.1 ms per
    scrape instead of work on every request.

    Everything lives in one flat int64 buffer (`buffer`, `length` items), so that a server with
    several worker processes can give each worker a slot of shared memory and a scrape can add up
    every worker's (`tally`); counts add, PSI is computed from the sums. The buffer holds the number
    of records seen, then per feature (and the predictions) the missing and unknown-category totals,
    then per feature a ring of bins (-1 where no record has been yet). Not thread-safe: the caller
    serialises `observe` (see `drift_tracking`).
    """

    TOTALS = ("values", "missing", "unknown")  # per feature in `tally`'s layout, after the window's slots
    SMALL = 16  # records up to which a request is counted value by value (numpy's set-up costs more)

    def __init__(
        self,
        baseline: Mapping[str, Any],
        inputs: Mapping[str, str],
        *,
        size: int = 1000,
        buffer: Any = None,
    ) -> None:
        """`inputs`: feature name → the key its values have in the observed columns (the ONNX input).

        `buffer`: writable memory for `length` int64 (e.g. a slot of shared memory), else private.
        """
        self.size = max(1, int(size))
        features = baseline.get("features", {})
        self.profiles = {name: Profile(entry) for name, entry in features.items() if name in inputs}
        self.inputs = {name: inputs[name] for name in self.profiles}
        self.prediction = Profile(baseline["predictions"]) if baseline.get("predictions") else None
        self.named: list[tuple[str, Profile]] = list(self.profiles.items())
        if self.prediction is not None:
            self.named.append((PREDICTIONS, self.prediction))
        rings = 1 + 2 * len(self.named)  # where the rings start: after records seen and the totals
        self.length = rings + self.size * len(self.named)
        self.buffer: np.ndarray = (
            np.frombuffer(buffer, dtype=np.int64, count=self.length)
            if buffer is not None
            else np.zeros(self.length, np.int64)
        )
        self.buffer[rings:] = -1
        self._cells = self.buffer.data  # item writes: several times numpy's speed
        # Per feature: (key in the observed columns, None for the predictions), binning function,
        # where its missing total sits (the unknown total follows), where its ring starts, and its
        # missing and unknown bins.
        self._plan: list[tuple[str | None, Callable[[Any], int], int, int, int, int]] = []
        self.layout: dict[str, tuple[int, int]] = {}  # name → (its totals, its ring) in `buffer`
        for index, (name, profile) in enumerate(self.named):
            totals, ring = 1 + 2 * index, rings + index * self.size
            self.layout[name] = (totals, ring)
            key = self.inputs.get(name)
            bin_of = profile.label_binner() if name == PREDICTIONS and not profile.binned else profile.binner()
            self._plan.append((key, bin_of, totals, ring, profile.missing_bin, profile.unknown_bin))
        self._position = 0

    @classmethod
    def for_model(cls, metadata: Mapping[str, Any], *, size: int = 1000, buffer: Any = None) -> DriftWindow | None:
        baseline = metadata.get("baseline")
        if not baseline or size <= 0:
            return None
        return cls(baseline, model_inputs(metadata), size=size, buffer=buffer)

    # -- counting (the request path) -----------------------------------------------------------------
    def observe(self, columns: Mapping[str, Any], predictions: Sequence[Any]) -> None:
        """Count one request: its model inputs (ONNX feeds by input name, arrays) and its predictions."""
        count = len(predictions)
        if count == 0:
            return
        if count > self.SMALL:
            self._observe_batch(columns, predictions)
            return
        cells, size, start = self._cells, self.size, self._position
        if count == 1:  # the common case, without the inner loop: ~3 us for six features
            for key, bin_of, totals, ring, missing, unknown in self._plan:
                slot = bin_of(predictions[0] if key is None else columns[key].item())
                cells[ring + start] = slot
                if slot == missing:
                    cells[totals] += 1
                elif slot == unknown:
                    cells[totals + 1] += 1
            cells[0] += 1
            self._position = start + 1 if start + 1 < size else 0
            return
        for key, bin_of, totals, ring, missing, unknown in self._plan:
            values = predictions if key is None else columns[key].ravel().tolist()
            position = start
            for value in values:
                slot = bin_of(value)
                cells[ring + position] = slot
                position = position + 1 if position + 1 < size else 0
                if slot == missing:
                    cells[totals] += 1
                elif slot == unknown:
                    cells[totals + 1] += 1
        cells[0] += count
        self._position = (start + count) % size

    def _observe_batch(self, columns: Mapping[str, Any], predictions: Sequence[Any]) -> None:
        count = len(predictions)
        kept = min(count, self.size)  # only the newest `size` records can stay in the window
        start = self._position
        # Where the kept records go in each ring: one slice, or two when they wrap around its end.
        pieces = [(start, 0, min(kept, self.size - start))]
        if pieces[0][2] < kept:
            pieces.append((0, pieces[0][2], kept))
        buffer = self.buffer
        for (key, _, totals, ring, missing, unknown), (_, profile) in zip(self._plan, self.named):
            if key is not None:
                bins = profile.bins_of(columns[key])
            elif profile.binned:
                bins = profile.bins_of(np.asarray(predictions, dtype=np.float64))
            else:  # class labels as their text (booleans as true/false)
                bins = profile.bins_of([p if p.__class__ is str else label_text(p) for p in predictions])
            slots = np.bincount(bins, minlength=profile.slots)
            buffer[totals] += int(slots[missing])
            if unknown >= 0:
                buffer[totals + 1] += int(slots[unknown])
            newest = bins[count - kept :]
            for at, low, high in pieces:
                buffer[ring + at : ring + at + high - low] = newest[low:high]
        buffer[0] += count
        self._position = (start + kept) % self.size

    # -- reading -----------------------------------------------------------------------------------
    def tally(self, buffers: Sequence[Any] | None = None) -> dict[str, tuple[np.ndarray, list[int]]]:
        """Per feature (and `PREDICTIONS`): the window's count in each slot, and the running totals
        (values, missing, unknown), added up over several workers' buffers (each laid out like this
        one's; by default this process's own)."""
        arrays = [self.buffer] if buffers is None else [np.frombuffer(b, np.int64, self.length) for b in buffers]
        records = sum(int(array[0]) for array in arrays)
        report: dict[str, tuple[np.ndarray, list[int]]] = {}
        for name, profile in self.named:
            totals, ring = self.layout[name]
            slots = np.zeros(profile.slots, dtype=np.int64)
            for array in arrays:
                bins = array[ring : ring + self.size]
                slots += np.bincount(bins[bins >= 0], minlength=profile.slots)[: profile.slots]
            missing = sum(int(array[totals]) for array in arrays)
            unknown = sum(int(array[totals + 1]) for array in arrays)
            report[name] = (slots, [records, missing, unknown])
        return report

    def summary(self, tally: Mapping[str, tuple[np.ndarray, list[int]]] | None = None) -> dict[str, dict[str, Any]]:
        """Per feature (and `PREDICTIONS`): records in the window (and missing among them), PSI, running totals."""
        if tally is None:
            tally = self.tally()
        report: dict[str, dict[str, Any]] = {}
        for name, profile in self.named:
            counts, totals = tally[name]
            report[name] = {
                "window": int(counts.sum()),
                "window_missing": int(counts[profile.missing_bin]),
                "psi": profile.psi(counts),
                **dict(zip(self.TOTALS, totals)),
            }
        return report

    def prometheus(self, tally: Mapping[str, tuple[np.ndarray, list[int]]] | None = None) -> list[str]:
        """The exposition lines for `/metrics`."""
        summary = self.summary(tally)
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
