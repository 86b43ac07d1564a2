"""Columns of values → the graph's [N, 1] input tensors, one per input, each kind its own way."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, List

import numpy as np

from .contract import FLOAT32_MAX, MISSING_CATEGORY
from .values import (
    _NAIVE_EPOCH,
    _ONE_MS,
    ABSENT,
    MISSING_DATE,
    _shown,
    absent_reason,
    category_text,
    date_milliseconds,
    lookup,
    to_number,
)

_PLAIN_NUMBER_TYPES = frozenset({float, int, type(None), np.float64, np.float32, np.int64, np.int32})


@dataclass(frozen=True)
class Feature:
    name: str  # the document path, e.g. "billing.monthly_charges"
    input: str  # the ONNX input it feeds, e.g. "billing_monthly_charges"
    kind: str  # "numeric" or "categorical"
    parts: tuple  # type: ignore[type-arg]  # the path split at dots
    known: frozenset  # type: ignore[type-arg]  # categories seen in training (empty: not recorded)

    @classmethod
    def from_metadata(cls, entry: Mapping[str, Any]) -> Feature:
        categories = entry.get("categories") or {}
        return cls(entry["name"], entry["input"], entry["kind"], tuple(entry["name"].split(".")), frozenset(categories))

    @classmethod
    def from_input(cls, entry: Mapping[str, Any], known: Mapping[str, Any]) -> Feature:
        """An entry of the metadata's `inputs`; `known`: the training categories of its path, if any."""
        return cls(entry["path"], entry["name"], entry["kind"], tuple(entry["path"].split(".")), frozenset(known))

    def problem(self, reason: str, index: int, many: bool) -> ValueError:
        where = f"record {index}: " if many else ""
        return ValueError(f"{where}field '{self.name}': {reason}")


def _values(records: Sequence[Mapping[str, Any]], feature: Feature, strict: bool) -> List[Any]:
    """One feature's values across records: absent → None (strict: an error); the fast path is one comprehension."""
    name, parts = feature.name, feature.parts
    careful = strict or len(parts) > 2
    try:
        if len(parts) == 1:
            values = [record.get(name) for record in records]
        elif len(parts) == 2:
            outer, inner = parts
            values = [(record.get(outer) or _EMPTY).get(inner) for record in records]
            dotted = [name in record for record in records]
            if True in dotted:  # a literal dotted key ("billing.method": ...) comes first, as in `lookup`
                for index in _positions(dotted, True):
                    values[index] = records[index][name]
        else:
            values = [None] * len(records)
        has_none = None in values
    except (AttributeError, TypeError, ValueError):  # odd shapes, or arrays where values belong
        values, has_none, careful = [None] * len(records), True, True
    # Not careful: absent and null both read as None, and a dotted key has been read above already.
    if has_none and careful:  # strict (absent is an error), odd shapes or a deeper path: read those records carefully
        many = len(records) > 1
        for index in _positions(values, None):
            found = lookup(records[index], name, parts)
            if found is ABSENT:
                if strict:
                    raise feature.problem(absent_reason(records[index], parts), index, many)
                found = None
            values[index] = found
    return values


def _positions(items: List[Any], value: Any) -> List[int]:
    """Where `value` stands in `items`; list.index scans in C, so a few hits in 20k items cost little."""
    positions: List[int] = []
    index = -1
    try:
        while True:
            index = items.index(value, index + 1)
            positions.append(index)
    except ValueError:
        return positions


_EMPTY: Mapping[str, Any] = {}


def _numeric_input(feature: Feature, values: Sequence[Any], strict: bool = False) -> np.ndarray:
    if isinstance(values, np.ndarray) and values.dtype.kind == "f":
        array = values.astype(np.float64, copy=False)
    elif len(values) <= _FEW and _plain_numbers(values):
        # A few records (the server's usual request): a Python check costs less than numpy's calls.
        return np.array(values, dtype=np.float32).reshape(-1, 1)
    elif set(map(type, values)) <= _PLAIN_NUMBER_TYPES:
        try:
            array = np.array(values, dtype=np.float64)
        except OverflowError:  # an int beyond float range: let to_number name it
            array = _numbers_one_by_one(feature, values)
    else:
        array = _numbers_one_by_one(feature, values)
    if array.ndim != 1 or bool((np.abs(array) > FLOAT32_MAX).any()):  # NaN compares False: missing is fine
        array = _numbers_one_by_one(feature, values)
    return array.astype(np.float32).reshape(-1, 1)


_FEW = 8


def _plain_numbers(values: Sequence[Any]) -> bool:
    """Ints, floats and None within float32 range: what np.array(dtype=float32) reads as to_number would."""
    for value in values:
        kind = type(value)
        if kind is float or kind is int:
            if not -FLOAT32_MAX <= value <= FLOAT32_MAX and value == value:
                return False
        elif value is not None:
            return False
    return True


def _numbers_one_by_one(feature: Feature, values: Sequence[Any]) -> np.ndarray:
    converted = []
    for index, value in enumerate(values):
        try:
            converted.append(to_number(value))
        except ValueError as exc:
            raise feature.problem(str(exc), index, len(values) > 1) from None
    return np.array(converted, dtype=np.float64)


def _date_input(feature: Feature, values: Sequence[Any], strict: bool) -> np.ndarray:
    """Dates as int64 milliseconds since 1970 UTC, the graph's date input (MISSING_DATE = missing)."""
    if isinstance(values, np.ndarray) and values.dtype == np.int64:  # columns already in the graph's form
        return values.reshape(-1, 1)
    try:
        # The common case in one comprehension: pymongo gives naive (UTC) datetimes, gaps are None.
        # Anything else (aware datetimes, strings, Extended JSON) raises here and takes the loop below.
        fast = [MISSING_DATE if value is None else (value - _NAIVE_EPOCH) // _ONE_MS for value in values]
        if all(type(ms) is int for ms in fast):
            return np.array(fast, dtype=np.int64).reshape(-1, 1)
    except (TypeError, ValueError, OverflowError):
        pass
    milliseconds = []
    for index, value in enumerate(values):
        try:
            milliseconds.append(date_milliseconds(value))
        except ValueError as exc:
            raise feature.problem(str(exc), index, len(values) > 1) from None
    return np.array(milliseconds, dtype=np.int64).reshape(-1, 1)


def _text_input(feature: Feature, values: Sequence[Any], strict: bool) -> np.ndarray:
    texts = []
    for index, value in enumerate(values):
        if value is None or (isinstance(value, float) and value != value):
            texts.append("")
        elif isinstance(value, str):
            texts.append(value)
        else:
            raise feature.problem(f"expected text, got {_shown(value)}", index, len(values) > 1)
    return np.array(texts, dtype=object).reshape(-1, 1)


def _categorical_input(feature: Feature, values: Sequence[Any], strict: bool) -> np.ndarray:
    try:
        texts = [value if type(value) is str else category_text(value) for value in values]
    except ValueError:
        for index, value in enumerate(values):  # find and name the record
            try:
                category_text(value)
            except ValueError as exc:
                raise feature.problem(str(exc), index, len(values) > 1) from None
        raise
    if strict and feature.known:
        unknown = set(texts) - feature.known - {MISSING_CATEGORY}
        if unknown:
            index = next(i for i, text in enumerate(texts) if text in unknown)
            known = ", ".join(repr(k) for k in sorted(feature.known)[:10])
            raise feature.problem(
                f"category {texts[index]!r} was not seen in training (strict; known: {known})", index, len(texts) > 1
            )
    return np.array(texts, dtype=object).reshape(-1, 1)


# How each kind of graph input is made from a column of values (value, strict) → a [n, 1] tensor.
_INPUTS = {
    "numeric": _numeric_input,
    "categorical": _categorical_input,
    "datetime": _date_input,
    "text": _text_input,
}


_LISTLIKE_TYPES = frozenset({list, tuple, np.ndarray})


def _is_listlike(value: Any) -> bool:
    return isinstance(value, (list, tuple)) or (isinstance(value, np.ndarray) and value.ndim == 1)
