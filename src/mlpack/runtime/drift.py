"""Training baselines and the population stability index (PSI), with the standard library and numpy only.

One module holds both sides of the comparison so that the build, the server's `/metrics` and
`mlpack monitor` put a value into the same bin in the same way:

- `baseline_of(...)` (build time) profiles the data a model was built from: per numeric feature the
  edges of 10 quantile bins and the share of values in each, per categorical feature the share of
  each category, the missing rate of every feature, and the distribution of the model's predictions
  (class shares, or quantile bins of the regression value); a free-text feature is profiled by its
  length in characters (quantile bins; an empty text is missing, as the graph reads it). It is stored
  in the metadata as `baseline`.
- `Profile` reads one baseline entry back and puts live values into its bins.
- `psi(expected, actual)` compares two distributions over the same bins.
- `drift_window.DriftWindow` keeps the bins of the most recent records a server answered, for `/metrics`.

PSI is computed over the values that are present: missing values are reported as their own rate
rather than as a bin, so a feature that goes missing more often shows as a missing-rate change, not
as drift of its values. Categories never seen in training share one "unknown" bin (training share
0), so new categories do count as drift. Shares of zero are clipped to `EPSILON` before the
logarithm, the same convention as Evidently's PSI.

Part of the runtime copied into every model wheel, and public to the build side (the baseline) and
`mlpack monitor`: no imports beyond the standard library and numpy, and Python 3.9 syntax.
"""

from __future__ import annotations

import bisect
import itertools
import math
import time
from collections.abc import Callable, Collection, Mapping, Sequence
from typing import Any, Optional

import numpy as np

# How the runtime feeds a missing categorical and a missing date (int64 has no NaN): the same values here.
from .contract import MISSING_CATEGORY
from .values import MISSING_DATE

NUMERIC_BINS = 10
MAX_CATEGORIES = 1000  # more categories than this: the rarest share one "other" bin
EPSILON = 1e-4  # shares of zero are clipped to this before the logarithm
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


def categorical_profile(
    values: Sequence[Any], max_categories: int = MAX_CATEGORIES, known: Optional[Collection[str]] = None
) -> dict[str, Any]:
    """The share of each category among present values; the rarest beyond `max_categories` as one bin.
    `known`: the categories the model tells apart; any other value is counted in the "other" bin."""
    texts = [str(v) for v in values]
    present = [t for t in texts if t != MISSING_CATEGORY]
    missing = 1.0 - len(present) / len(texts) if texts else 0.0
    counted: dict[str, int] = {}
    for text in present:
        counted[text] = counted.get(text, 0) + 1
    ranked = sorted(counted.items(), key=lambda item: (-item[1], item[0]))  # frequent first, then by name
    kept, rest = ranked[:max_categories], ranked[max_categories:]
    if known is not None:
        kept, rest = [i for i in ranked if i[0] in known], [i for i in ranked if i[0] not in known]
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
    columns: Mapping[str, tuple[str, Any]],
    predictions: Sequence[Any],
    task: str,
    *,
    rows: int,
    max_categories: int = MAX_CATEGORIES,
    known: Optional[Mapping[str, Collection[str]]] = None,
) -> dict[str, Any]:
    """The training baseline stored in the metadata.

    `max_categories`, `known`: the model's own cap ([preprocessing].max_categories) and, per feature,
    the categories it tells apart, so the baseline lists no other value of the training data (the
    rest share its "other" bin, as in the graph).

    `columns`: feature name → (kind, values), numeric values as floats with NaN for missing and
    categorical values as the runtime's canonical strings, text as strings (None or "" missing).
    """
    features = {}
    for name, (kind, values) in columns.items():
        maker = _PROFILERS.get(kind)
        if kind == "categorical":
            features[name] = categorical_profile(values, max_categories, (known or {}).get(name))
        elif maker is not None:
            features[name] = maker(values)
    if task == "classification":
        prediction = categorical_profile([label_text(v) for v in predictions])
    else:
        prediction = numeric_profile(np.asarray(predictions, dtype=np.float64))
    return {"rows": rows, "bins": NUMERIC_BINS, "features": features, "predictions": prediction}


def datetime_profile(values: Any, bins: int = NUMERIC_BINS) -> dict[str, Any]:
    """Quantile bins of dates, as the graph takes them (int64 milliseconds since 1970, MISSING_DATE = missing)."""
    return {**numeric_profile(_date_numbers(values), bins), "kind": "datetime"}


def _date_numbers(values: Any) -> np.ndarray:
    array = np.asarray(values).ravel()
    numbers = array.astype(np.float64)
    numbers[array == MISSING_DATE] = np.nan
    return numbers


def text_profile(values: Any, bins: int = NUMERIC_BINS) -> dict[str, Any]:
    """Quantile bins of free text's length in characters: a change in what people write (a form
    that now truncates, a new language, pasted documents) shows as drift without tokenising."""
    return {**numeric_profile(_text_lengths(values), bins), "kind": "text"}


def _text_lengths(values: Any) -> np.ndarray:
    flat = values.ravel().tolist() if isinstance(values, np.ndarray) else values
    # The graph reads None (and NaN) as "", so an empty text is missing here too.
    return np.array([len(v) if isinstance(v, str) and v else math.nan for v in flat], dtype=np.float64)


_PROFILERS: Mapping[str, Callable[..., Any]] = {
    "numeric": numeric_profile,
    "categorical": categorical_profile,
    "datetime": datetime_profile,
    "text": text_profile,
}


def label_text(label: Any) -> str:
    """A class label as a category: booleans as true/false, like the runtime's categories."""
    if isinstance(label, bool):
        return "true" if label else "false"
    return str(label)


# -- binning live values --------------------------------------------------------------------------
def _numeric_bins(edges: Sequence[float], present: np.ndarray) -> np.ndarray:
    # Bin i holds edges[i-1] < x <= edges[i]: the same rule as bisect_left for one value.
    return np.searchsorted(np.asarray(edges, dtype=np.float64), present, side="left")


def _as_is(values: Any) -> Any:
    return values


_NUMBERS_OF = {"datetime": _date_numbers, "text": _text_lengths}  # kinds binned by a number derived from them


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
        self.binned = self.kind in ("numeric", "datetime", "text")  # quantile bins, not categories
        if self.binned:
            self.edges = [float(e) for e in entry.get("edges", [])]
            self._edges = np.asarray(self.edges, dtype=np.float64)
            self.labels = _interval_labels(self.edges, dates=self.kind == "datetime") if shares else []
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
        if not self.binned:  # category → bin, the spellings of a missing category included; else `_fallback`
            self._table: dict[Any, int] = {**self.index, MISSING_CATEGORY: self.missing_bin, None: self.missing_bin}
            self._fallback = self.other_bin if self.other_bin >= 0 else self.unknown_bin
        self._bin = self.binner()

    def bin_of(self, value: Any) -> int:
        """The bin of one value: a float32 model input as a float (NaN = missing), or a canonical category."""
        return self._bin(value)

    def binner(self) -> Callable[[Any], int]:
        """The bin of one value (`bin_of`), as one small function with this profile's tables bound in:
        the server calls it for every value of every one-record request, where each branch and
        attribute read shows."""
        missing = self.missing_bin
        if self.binned:
            if not self.value_bins:
                return lambda value: missing
            edges, find = self.edges, bisect.bisect_left
            if self.kind == "datetime":
                return lambda value: missing if value == MISSING_DATE else find(edges, float(np.float32(value)))
            if self.kind == "text":
                return lambda value: find(edges, len(value)) if value and isinstance(value, str) else missing
            return lambda value: find(edges, value) if value == value else missing  # NaN != NaN
        table, fallback = self._table, self._fallback
        return lambda value: table.get(value, fallback)

    def label_binner(self) -> Callable[[Any], int]:
        """`binner` for class labels, which may be booleans or numbers: binned as their text."""
        find = self.binner()
        return lambda label: find(label if label.__class__ is str else label_text(label))

    def bins_of(self, values: Any) -> np.ndarray:
        """Bins of many values at once (numpy for numbers; `binner`'s dict lookup per category)."""
        if self.binned:
            # As float32, like the model's inputs and the baseline's edges (see numeric_profile);
            # the edges are float32 values, so comparing in float64 changes nothing.
            numbers = _NUMBERS_OF.get(self.kind, _as_is)(values)
            array = np.asarray(numbers, dtype=np.float32).ravel()
            if not self.value_bins:
                return np.full(len(array), self.missing_bin, dtype=np.int64)
            bins = self._edges.searchsorted(array, side="left")  # as _numeric_bins
            bins[array != array] = self.missing_bin  # NaN
            return bins
        flat = values.ravel().tolist() if isinstance(values, np.ndarray) else list(values)
        return np.fromiter(map(self._table.get, flat, itertools.repeat(self._fallback)), np.int64, count=len(flat))

    def counts_of(self, values: Any) -> np.ndarray:
        """How many values fall in each slot (value bins, then missing)."""
        return np.bincount(self.bins_of(values), minlength=self.slots)

    def psi(self, counts: Sequence[int] | np.ndarray) -> float | None:
        """PSI of live slot counts against this baseline; None when no value was present."""
        return psi(self.expected, np.asarray(counts, dtype=np.float64)[: self.value_bins])


def _interval_labels(edges: Sequence[float], *, dates: bool = False) -> list[str]:
    shown = [_date_text(e) if dates else f"{e:g}" for e in edges]
    bounds = ["-inf", *shown, "+inf"]
    return [f"({low}, {high}]" for low, high in zip(bounds, bounds[1:])]


def _date_text(milliseconds: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(milliseconds / 1000))


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


def model_inputs(metadata: Mapping[str, Any]) -> dict[str, str]:
    """Document path → ONNX input name, from the metadata's `inputs` (or `features`, in older models)."""
    if metadata.get("inputs"):
        return {entry["path"]: entry["name"] for entry in metadata["inputs"]}
    return {entry["name"]: entry["input"] for entry in metadata.get("features", [])}


__all__ = [
    "DEFAULT_THRESHOLD",
    "Profile",
    "baseline_of",
    "categorical_profile",
    "datetime_profile",
    "label_text",
    "model_inputs",
    "numeric_profile",
    "text_profile",
    "psi",
]
