"""Training baselines and the population stability index (PSI), with the standard library and numpy only.

One module holds both sides of the comparison so that the build, the server's `/metrics` and
`mlpack monitor` put a value into the same bin in the same way:

- `baseline_of(...)` (build time) profiles the data a model was built from: per numeric feature the
  edges of 10 quantile bins and the share of values in each, per categorical feature the share of
  each category, the missing rate of every feature, and the distribution of the model's predictions
  (class shares, or quantile bins of the regression value). It is stored in the metadata as `baseline`.
- `Profile` reads one baseline entry back and puts live values into its bins.
- `psi(expected, actual)` compares two distributions over the same bins.
- `DriftWindow` keeps the bins of the most recent records a server answered, for `/metrics`.

PSI is computed over the values that are present: missing values are reported as their own rate
rather than as a bin, so a feature that goes missing more often shows as a missing-rate change, not
as drift of its values. Categories never seen in training share one "unknown" bin (training share
0), so new categories do count as drift. Shares of zero are clipped to `EPSILON` before the
logarithm, the same convention as Evidently's PSI.

Copied into the model wheel with the server: no imports beyond the standard library and numpy, and
Python 3.9 syntax.
"""

from __future__ import annotations

import bisect
import math
import threading
import time
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

NUMERIC_BINS = 10
MAX_CATEGORIES = 1000  # more categories than this: the rarest share one "other" bin
EPSILON = 1e-4  # shares of zero are clipped to this before the logarithm
MISSING_CATEGORY = "__missing__"  # how the runtime spells a missing categorical (runtime.MISSING_CATEGORY)
OTHER = "__other__"
UNKNOWN = "__unknown__"
DEFAULT_THRESHOLD = 0.2  # PSI above 0.2 is the usual "significant shift"


# -- baselines (build time) -----------------------------------------------------------------------
def _shares(counts: np.ndarray) -> list[float]:
    total = counts.sum()
    if total == 0:
        return [0.0] * len(counts)
    return [round(float(c) / float(total), 6) for c in counts]


def numeric_profile(values: Any, bins: int = NUMERIC_BINS) -> dict[str, Any]:
    """Quantile bins of the present values: `edges` split the real line into len(edges) + 1 bins."""
    # In float32, as the model's inputs are: a training value and the same value sent to the server
    # must land in the same bin even when it sits exactly on an edge.
    array = np.asarray(values, dtype=np.float64).astype(np.float32).astype(np.float64).ravel()
    present = array[~np.isnan(array)]
    missing = 1.0 - len(present) / len(array) if len(array) else 0.0
    if len(present) == 0:
        return {"kind": "numeric", "edges": [], "shares": [], "missing": round(missing, 6)}
    # Edges are observed values (no interpolation), so counts and flags get no bins that training
    # could never fill; repeated values give repeated quantiles, kept once. An edge at the maximum
    # would leave the top bin empty in training, so the top bin starts below it.
    # The i-th edge is the smallest value with at least i/bins of the values at or below it, in
    # integer arithmetic (n * 0.3 is 30.000000000000004 in floats, which would skip a value).
    ordered = np.sort(present)
    n = len(ordered)
    top = float(ordered[-1])
    quantiles = (float(ordered[(i * n + bins - 1) // bins - 1]) for i in range(1, bins))
    edges = sorted({q for q in quantiles if q < top})
    counts = np.bincount(_numeric_bins(edges, present), minlength=len(edges) + 1)
    return {"kind": "numeric", "edges": edges, "shares": _shares(counts), "missing": round(missing, 6)}


def categorical_profile(values: Sequence[Any], max_categories: int = MAX_CATEGORIES) -> dict[str, Any]:
    """The share of each category among present values; the rarest beyond `max_categories` as one bin."""
    texts = [str(v) for v in values]
    present = [t for t in texts if t != MISSING_CATEGORY]
    missing = 1.0 - len(present) / len(texts) if texts else 0.0
    counted: dict[str, int] = {}
    for text in present:
        counted[text] = counted.get(text, 0) + 1
    ranked = sorted(counted.items(), key=lambda item: (-item[1], item[0]))  # frequent first, then by name
    kept, rest = ranked[:max_categories], ranked[max_categories:]
    categories = [name for name, _ in kept]
    counts = [count for _, count in kept]
    profile: dict[str, Any] = {"kind": "categorical", "categories": categories}
    if rest:
        profile["other"] = True
        counts.append(sum(count for _, count in rest))
    profile["shares"] = _shares(np.asarray(counts, dtype=np.int64))
    profile["missing"] = round(missing, 6)
    return profile


def baseline_of(
    columns: Mapping[str, tuple[str, Any]], predictions: Sequence[Any], task: str, *, rows: int
) -> dict[str, Any]:
    """The training baseline stored in the metadata.

    `columns`: feature name → (kind, values), numeric values as floats with NaN for missing and
    categorical values as the runtime's canonical strings. Kinds without a profile (text) are left out.
    """
    features = {}
    for name, (kind, values) in columns.items():
        maker = _PROFILERS.get(kind)
        if maker is not None:
            features[name] = maker(values)
    if task == "classification":
        prediction = categorical_profile([label_text(v) for v in predictions])
    else:
        prediction = numeric_profile(np.asarray(predictions, dtype=np.float64))
    return {"rows": rows, "bins": NUMERIC_BINS, "features": features, "predictions": prediction}


_PROFILERS = {"numeric": numeric_profile, "categorical": categorical_profile}


def label_text(label: Any) -> str:
    """A class label as a category: booleans as true/false, like the runtime's categories."""
    if isinstance(label, bool):
        return "true" if label else "false"
    return str(label)


# -- binning live values --------------------------------------------------------------------------
def _numeric_bins(edges: Sequence[float], present: np.ndarray) -> np.ndarray:
    # Bin i holds edges[i-1] < x <= edges[i]: the same rule as bisect_left for one value.
    return np.searchsorted(np.asarray(edges, dtype=np.float64), present, side="left")


class Profile:
    """One baseline entry, read back: expected shares and the bin of a live value.

    Bins: the value bins (numeric intervals, or categories then "other" when capped), then for a
    categorical the "unknown" bin (never seen in training); then one slot for missing values, which
    PSI leaves out.
    """

    def __init__(self, entry: Mapping[str, Any]) -> None:
        self.kind: str = entry["kind"]
        self.missing_rate = float(entry.get("missing", 0.0))
        shares = [float(s) for s in entry.get("shares", [])]
        if self.kind == "numeric":
            self.edges = [float(e) for e in entry.get("edges", [])]
            self.labels = _interval_labels(self.edges) if shares else []
            self.unknown_bin = -1
        else:
            categories = [str(c) for c in entry.get("categories", [])]
            self.index = {name: i for i, name in enumerate(categories)}
            self.other_bin = len(categories) if entry.get("other") else -1
            self.labels = [*categories, *([OTHER] if entry.get("other") else []), UNKNOWN]
            self.unknown_bin = len(self.labels) - 1
            shares = [*shares, 0.0]  # nothing was unknown in training
        self.expected = np.asarray(shares, dtype=np.float64)
        self.value_bins = len(shares)
        self.missing_bin = self.value_bins
        self.slots = self.value_bins + 1

    def bin_of(self, value: Any) -> int:
        """The bin of one value: a float32 model input as a float (NaN = missing), or a canonical category."""
        if self.kind == "numeric":
            if value != value or not self.value_bins:  # NaN
                return self.missing_bin
            return bisect.bisect_left(self.edges, value)
        if value == MISSING_CATEGORY or value is None:
            return self.missing_bin
        found = self.index.get(value)
        if found is not None:
            return found
        return self.other_bin if self.other_bin >= 0 else self.unknown_bin

    def bins_of(self, values: Any) -> np.ndarray:
        """Bins of many values at once (numpy for numbers; a dict lookup per category)."""
        if self.kind == "numeric":
            # As float32, like the model's inputs and the baseline's edges (see numeric_profile).
            array = np.asarray(values, dtype=np.float32).astype(np.float64).ravel()
            if not self.value_bins:
                return np.full(len(array), self.missing_bin, dtype=np.int64)
            bins = _numeric_bins(self.edges, array)
            bins[np.isnan(array)] = self.missing_bin
            return bins
        flat = values.ravel().tolist() if isinstance(values, np.ndarray) else list(values)
        return np.fromiter((self.bin_of(v) for v in flat), dtype=np.int64, count=len(flat))

    def counts_of(self, values: Any) -> np.ndarray:
        """How many values fall in each slot (value bins, then missing)."""
        return np.bincount(self.bins_of(values), minlength=self.slots)

    def psi(self, counts: Sequence[int] | np.ndarray) -> float | None:
        """PSI of live slot counts against this baseline; None when no value was present."""
        return psi(self.expected, np.asarray(counts, dtype=np.float64)[: self.value_bins])


def _interval_labels(edges: Sequence[float]) -> list[str]:
    bounds = ["-inf", *(f"{e:g}" for e in edges), "+inf"]
    return [f"({low}, {high}]" for low, high in zip(bounds, bounds[1:])]


def psi(expected: Sequence[float] | np.ndarray, actual: Sequence[float] | np.ndarray) -> float | None:
    """Population stability index: sum over bins of (a - e) * ln(a / e), shares clipped to EPSILON.

    Both arguments may be counts or shares; each is normalised to shares first. None when either
    side is empty (there is nothing to compare).
    """
    e = np.asarray(expected, dtype=np.float64)
    a = np.asarray(actual, dtype=np.float64)
    if e.shape != a.shape:
        raise ValueError(f"PSI needs the same bins on both sides, got {len(e)} and {len(a)}")
    e_total, a_total = e.sum(), a.sum()
    if e_total <= 0 or a_total <= 0:
        return None
    e = np.clip(e / e_total, EPSILON, None)
    a = np.clip(a / a_total, EPSILON, None)
    return float(np.sum((a - e) * np.log(a / e)))


# -- the server's sliding window -------------------------------------------------------------------
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
        while True:
            time.sleep(self.FLUSH_SECONDS)
            self.flush()

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


PREDICTIONS = "__predictions__"


def model_inputs(metadata: Mapping[str, Any]) -> dict[str, str]:
    """Document path → ONNX input name, from the metadata's `inputs` (or `features`, in older models)."""
    if metadata.get("inputs"):
        return {entry["path"]: entry["name"] for entry in metadata["inputs"]}
    return {entry["name"]: entry["input"] for entry in metadata.get("features", [])}


def _label(text: str) -> str:
    """A Prometheus label value: backslash, quote and newline escaped."""
    return text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _number(value: float | None) -> str:
    if value is None or math.isnan(value):
        return "NaN"
    return f"{value:.6g}"


__all__ = [
    "DEFAULT_THRESHOLD",
    "PREDICTIONS",
    "DriftWindow",
    "Profile",
    "baseline_of",
    "categorical_profile",
    "numeric_profile",
    "psi",
]
