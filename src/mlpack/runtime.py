"""The model runtime: records → ONNX feeds → predictions, with onnxruntime and numpy only.

This file is copied verbatim into every model wheel (as `_runtime.py`), so it imports nothing
from mlpack and nothing beyond the standard library, numpy and onnxruntime. mlpack itself uses it
for `mlpack predict`, for the parity check, and to read the training documents: there is ONE
reading of a document (`lookup`, `to_number`, `category_text`), so a document that trained the
model always predicts, and `4`, `4.0` and `"4"` are the same category in training and here.

It also declares the model's metadata as a typed contract (`Metadata`): the build fills it in one
function (mlpack.metadata.build_metadata); everything else reads it by checked key.

Hot path: plain lists and one `np.array` per input; no pandas, no per-value Python checks unless
a cheap scan of the value types shows the values need them.
"""

from __future__ import annotations

import argparse
import csv
import datetime as _dt
import json
import math
import os
import re
import sys
import tempfile
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Optional, TextIO, TypedDict, Union

import numpy as np

MISSING_CATEGORY = "__missing__"  # what a missing categorical becomes, in training and here alike
FLOAT32_MAX = float(np.finfo(np.float32).max)


# -- the metadata contract -----------------------------------------------------------------------
# Declared here (the runtime ships in every wheel) and built in one function at build time
# (mlpack.metadata.build_metadata). Helpers that add a key add it here first. Keys under
# `total=False` may be absent (older models, rejected builds); read them with `.get` or `in`.
# Python 3.9 has no NotRequired, hence a required base and an optional subclass per dict.


class _FeatureRequired(TypedDict):
    name: str  # the document path, e.g. "billing.monthly_charges"
    input: str  # the ONNX input it feeds, e.g. "billing_monthly_charges"
    kind: str  # "numeric" | "categorical"
    dtype: str  # "float32" | "string"


class FeatureInfo(_FeatureRequired, total=False):
    imputed: Optional[float]  # numeric: the value a missing one becomes (the training median)
    missing: int  # documents of the training split without a value
    categories: Dict[str, int]  # categorical: the categories the model tells apart (canonical text) → training count
    other: int  # categorical: training values rarer than those, sharing one "other" column


class InputInfo(TypedDict):
    """One input of the ONNX graph (derived features read several fields, dates and text have their own)."""

    name: str  # the ONNX input
    path: str  # the document path it reads
    type: str  # the tensor type, e.g. "float32", "int64", "string"
    kind: str  # "numeric" | "categorical" | "datetime" | "text"


class ClassShare(TypedDict):
    label: Any  # the class as predict() returns it (bool, int, str or its [features].labels name)
    code: Any  # what the ONNX graph emits for it
    count: int  # training-split documents
    share: float


class DataInfo(TypedDict):
    database: str
    collection: str
    filter: Any
    limit: int
    rows: int
    sha256: str


# "class" is a Python keyword, so this one uses the functional syntax.
EstimatorInfo = TypedDict("EstimatorInfo", {"class": str, "params": Dict[str, Any]})


class ParityInfo(TypedDict, total=False):
    rows: int
    max_abs_diff: float
    tolerance: float
    within_tolerance: bool
    label_agreement: float
    label_disagreements: int
    diagnosis: str
    train_rows: int
    test_rows: int
    train_failures: int
    test_failures: int


class _MetadataRequired(TypedDict):
    name: str
    import_name: str
    version: str
    created: str  # UTC, ISO 8601
    task: str  # "classification" | "regression"
    description: str
    target: str
    features: List[FeatureInfo]
    estimator: EstimatorInfo
    evaluation: Dict[str, Any]
    data: DataInfo
    versions: Dict[str, Any]
    serve: Dict[str, Any]


class Metadata(_MetadataRequired, total=False):
    inputs: List[InputInfo]  # what the graph is fed; absent in models built before derived features
    inputs_contract: Dict[str, Any]  # how any client turns values into inputs (README), with test vectors
    derived: List[Dict[str, Any]]  # [features.derived]: name, expression, the fields it reads
    target_transform: str  # regression: "log1p" | "log" | "sqrt", undone in the graph
    metrics: Dict[str, float]
    parity: ParityInfo
    classes: List[Any]  # as predict() returns them: booleans stay booleans, labels by their names
    class_codes: List[Any]  # what the ONNX graph emits, in the same order (int or str)
    class_balance: List[ClassShare]
    probabilities: bool  # False: a classifier that gives labels only (LinearSVC); absent: it gives them
    warnings: List[str]  # data warnings found at build (not fatal)
    baseline: Dict[str, Any]  # the training distributions drift is measured against (mlpack.drift)
    cv: Dict[str, Any]  # cross-validation summary on the training split (mlpack.experiments)
    search: Dict[str, Any]  # hyper-parameter search summary: space, trials, best params (mlpack.experiments)


_REQUIRED_KEYS = {
    "name": str,
    "version": str,
    "task": str,
    "features": list,
}


def parse_metadata(document: Any) -> Metadata:
    """Check a metadata document read from a file: a ValueError naming what is wrong, never a KeyError later."""
    if not isinstance(document, Mapping):
        raise ValueError(f"not an mlpack model: its metadata is a {type(document).__name__}, not an object")
    for key, kind in _REQUIRED_KEYS.items():
        if key not in document:
            raise ValueError(f"not an mlpack model: its metadata has no '{key}'")
        if not isinstance(document[key], kind):
            raise ValueError(f"not an mlpack model: its metadata's '{key}' has the wrong shape")
    if document["task"] not in ("classification", "regression"):
        raise ValueError(f"the metadata's task {document['task']!r} is not classification or regression")
    for index, entry in enumerate(document["features"]):
        if not isinstance(entry, Mapping) or not all(isinstance(entry.get(k), str) for k in ("name", "input", "kind")):
            raise ValueError(f"the metadata's features[{index}] is not a feature (name, input, kind)")
    if document["task"] == "classification" and not isinstance(document.get("classes"), list):
        raise ValueError("the metadata of a classifier has no list of classes")
    return document  # type: ignore[return-value]


# -- one reading of a document ---------------------------------------------------------------------
class _Absent:
    """A field the document does not have (as opposed to one that is null)."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "<absent>"


ABSENT: Any = _Absent()


def lookup(document: Mapping[str, Any], path: str, parts: Sequence[str]) -> Any:
    """A field by dotted key ("billing.method") or by nested path ({"billing": {"method": ...}}).

    ABSENT when the document does not have it. As in MongoDB's own reading of a dotted path (the
    projection that loads the training data), a parent that is null or a plain value ({"billing": 5})
    has no fields: the field is absent, hence missing (and refused under strict).
    """
    value = document.get(path, ABSENT)
    if value is not ABSENT or len(parts) == 1:
        return value
    node: Any = document
    for part in parts:
        if not isinstance(node, Mapping):
            return ABSENT
        node = node.get(part, ABSENT)
        if node is ABSENT:
            return ABSENT
    return node


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _is_decimal(value: Any) -> bool:
    return type(value).__name__ in ("Decimal128", "Decimal")


def _date_hint(value: Any) -> Optional[str]:
    if isinstance(value, (_dt.date, _dt.time, np.datetime64)):
        return "list the field under [features].datetime"
    return None


def to_number(value: Any) -> float:
    """A numeric field's value as training and prediction both read it; NaN = missing.

    ValueError (without the field's name: the caller adds it) for anything that is not a number.
    """
    if value is None or value is ABSENT:
        return math.nan
    if isinstance(value, (bool, np.bool_)):
        raise ValueError(f"expected a number, got {_shown(value)} (a boolean: list it under [features].categorical)")
    if isinstance(value, (int, float, np.integer, np.floating)) or _is_decimal(value):
        try:
            number = float(value.to_decimal()) if type(value).__name__ == "Decimal128" else float(value)
        except OverflowError:
            raise ValueError(f"{str(value)[:20]}... is too large a number") from None
        if number != number:
            return math.nan
        if not -FLOAT32_MAX <= number <= FLOAT32_MAX:
            raise ValueError(f"{_shown(value)} is not a finite number within float32 range")
        return number
    hint = _date_hint(value)
    raise ValueError(f"expected a number, got {_shown(value)}" + (f" (a date: {hint})" if hint else ""))


def category_text(value: Any) -> str:
    """A categorical field's value as training and prediction both read it: its canonical text.

    `4`, `4.0`, `"4"`, `np.int64(4)` and Decimal128("4") are all "4"; True is "true"; None, NaN
    and absent are MISSING_CATEGORY. Strings are kept as they are ("04" stays "04").
    """
    if type(value) is str:
        return value
    if value is None or value is ABSENT:
        return MISSING_CATEGORY
    if isinstance(value, str):
        return str(value)
    if isinstance(value, (bool, np.bool_)):
        return "true" if value else "false"
    if isinstance(value, (int, np.integer)):
        try:
            return str(int(value))
        except ValueError:  # an integer too long to print (Python's int_max_str_digits)
            raise ValueError("the value is too long for a category") from None
    if isinstance(value, (float, np.floating)) or _is_decimal(value):
        number = float(value.to_decimal()) if type(value).__name__ == "Decimal128" else float(value)
        if number != number:
            return MISSING_CATEGORY
        if math.isinf(number):
            raise ValueError(f"expected a category, got {_shown(value)}")
        if number.is_integer():
            return str(int(number))
        return str(np.float32(number)) if isinstance(value, np.float32) else repr(number)
    hint = _date_hint(value)
    if hint:
        raise ValueError(f"a date is not a category ({_shown(value)}): {hint}")
    if isinstance(value, (Mapping, list, tuple, set, np.ndarray, bytes, bytearray)):
        raise ValueError(f"expected a category (string, number or boolean), got {_shown(value)}")
    return str(value)  # ObjectId, UUID and the like: their text is their identity


# Types `np.array(values, dtype=float64)` converts exactly as `to_number` would (None → NaN).
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
        else:
            values = [None] * len(records)
        has_none = None in values
    except (AttributeError, TypeError, ValueError):  # odd shapes, or arrays where values belong
        values, has_none, careful = [None] * len(records), True, True
    if has_none and not careful:
        # Absent and null both read as None here; only a dotted key ("billing.method") can still
        # hold a value, and a top-level field has no other spelling.
        if len(parts) == 2:
            for index in _none_positions(values):
                values[index] = records[index].get(name)
        return values
    if has_none:  # strict (absent is an error), odd shapes or a deeper path: read those records carefully
        many = len(records) > 1
        for index in _none_positions(values):
            found = lookup(records[index], name, parts)
            if found is ABSENT:
                if strict:
                    raise feature.problem("absent (strict: every field must be given)", index, many)
                found = None
            values[index] = found
    return values


def _none_positions(values: List[Any]) -> List[int]:
    """Where the Nones are; list.index scans in C, so a few gaps in 20k values cost little."""
    positions: List[int] = []
    index = -1
    try:
        while True:
            index = values.index(None, index + 1)
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


class Model:
    """One ONNX model with its mlpack metadata; the onnxruntime session is created on first use."""

    def __init__(self, model: Union[bytes, str, "os.PathLike[str]"], metadata: Mapping[str, Any]) -> None:
        self._model = model if isinstance(model, bytes) else os.fspath(model)
        self.metadata: Metadata = parse_metadata(dict(metadata))
        self.name: str = self.metadata["name"]
        self.version: str = self.metadata["version"]
        self.task: str = self.metadata["task"]
        self.classes: Optional[List[Any]] = self.metadata.get("classes")
        # A classifier without class probabilities (LinearSVC) says so; older models always had them.
        self.probabilities: bool = self.task == "classification" and self.metadata.get("probabilities", True)
        # What the graph is fed: every input (derived features' fields, dates, text), or for models
        # built before `inputs` existed, the features.
        inputs = self.metadata.get("inputs")
        if inputs:
            known = {f["name"]: f.get("categories") or {} for f in self.metadata["features"]}
            self.features = [Feature.from_input(entry, known.get(entry["path"], {})) for entry in inputs]
        else:
            self.features = [Feature.from_metadata(entry) for entry in self.metadata["features"]]
        self._decode = _class_decoder(self.classes, self.metadata.get("class_codes"))
        self._session: Any = None
        self._lock = threading.Lock()

    @property
    def session(self) -> Any:
        if self._session is None:
            with self._lock:  # many threads may ask at once; only one session is ever built
                if self._session is None:
                    self._session = _new_session(self._model)
        return self._session

    def load(self) -> Model:
        """Create the session now rather than on the first prediction (servers call this at start)."""
        _ = self.session
        return self

    # -- inputs ---------------------------------------------------------------------------------
    def feeds(self, data: Any, strict: bool = False) -> "tuple[Dict[str, np.ndarray], bool]":
        """ONNX feeds for one record, a list of records, a dict of columns or a DataFrame.

        Returns the feeds and whether a single record was given (its answer is then not a list).
        `strict`: absent fields and categories never seen in training are errors, not missing values.
        """
        if type(data) is dict and not self._looks_like_columns(data):
            return self._record_feeds(data, strict), True  # one record: the server's usual request
        columns, single = self._columns(data, strict)
        feeds: Dict[str, np.ndarray] = {}
        for feature in self.features:
            feeds[feature.input] = _INPUTS[feature.kind](feature, columns[feature.name], strict)
        return feeds, single

    def _record_feeds(self, record: Dict[str, Any], strict: bool) -> Dict[str, np.ndarray]:
        """One record straight to [1, 1] tensors: the same reading as for many records (the careful
        paths are shared), without building columns first, which costs more than the model for one."""
        feeds: Dict[str, np.ndarray] = {}
        for feature in self.features:
            value = record.get(feature.name, ABSENT)
            if value is ABSENT and len(feature.parts) > 1:
                value = lookup(record, feature.name, feature.parts)
            if value is ABSENT:
                if strict:
                    raise feature.problem("absent (strict: every field must be given)", 0, False)
                value = None
            kind = feature.kind
            if kind == "numeric":
                kind_of = type(value)
                if value is None or (kind_of is float or kind_of is int) and -FLOAT32_MAX <= value <= FLOAT32_MAX:
                    feeds[feature.input] = np.array([[value]], dtype=np.float32)  # None becomes NaN: missing
                    continue
            elif kind == "categorical" and (value is None or type(value) is str and not strict):
                feeds[feature.input] = np.array([[MISSING_CATEGORY if value is None else value]], dtype=object)
                continue
            feeds[feature.input] = _INPUTS[kind](feature, [value], strict)
        return feeds

    def _columns(self, data: Any, strict: bool) -> "tuple[Dict[str, Sequence[Any]], bool]":
        if hasattr(data, "iloc") and hasattr(data, "columns"):  # a pandas DataFrame, without importing pandas
            return self._dataframe_columns(data, strict), False
        if isinstance(data, Mapping):
            if self._looks_like_columns(data):
                return self._column_dict(data, strict), False
            return self._record_columns([data], strict), True
        if isinstance(data, (list, tuple)):
            if not data:
                raise ValueError("no records given")
            return self._record_columns(data, strict), False
        raise ValueError(f"expected a record (dict), a list of records or a dict of columns, got {type(data).__name__}")

    def _looks_like_columns(self, data: Mapping[str, Any]) -> bool:
        """Columns when most of the model's fields hold lists; a record with one list in it is a record
        (so the error names that field, not another one)."""
        if _LISTLIKE_TYPES.isdisjoint(map(type, data.values())):
            return False
        found = [lookup(data, f.name, f.parts) for f in self.features]
        lists = sum(1 for value in found if _is_listlike(value))
        scalars = sum(1 for value in found if value is not ABSENT and not _is_listlike(value))
        return lists > scalars

    def _record_columns(self, records: Sequence[Any], strict: bool) -> Dict[str, Sequence[Any]]:
        if set(map(type, records)) != {dict}:  # plain dicts (JSON, find()) skip the per-record check
            for index, record in enumerate(records):
                if not isinstance(record, Mapping):
                    raise ValueError(f"record {index} is a {type(record).__name__}, not an object of fields")
        return {feature.name: _values(records, feature, strict) for feature in self.features}

    def _column_dict(self, data: Mapping[str, Any], strict: bool) -> Dict[str, Sequence[Any]]:
        columns: Dict[str, Sequence[Any]] = {}
        length = None
        absent = []
        for feature in self.features:
            values = lookup(data, feature.name, feature.parts)
            if values is ABSENT:
                if strict:
                    raise ValueError(f"missing column '{feature.name}' (strict: every field must be given)")
                absent.append(feature.name)
                continue
            if not _is_listlike(values):
                raise ValueError(f"column '{feature.name}' must be a list of values, got {_shown(values)}")
            if length is None:
                length = len(values)
            elif len(values) != length:
                raise ValueError(f"column '{feature.name}' has {len(values)} values, expected {length}")
            columns[feature.name] = values
        if not length:
            raise ValueError("no records given")
        for name in absent:  # an absent column is a column of missing values, as an absent field is
            columns[name] = [None] * length
        return columns

    def _dataframe_columns(self, frame: Any, strict: bool) -> Dict[str, Sequence[Any]]:
        if len(frame) == 0:
            raise ValueError("no records given")
        columns: Dict[str, Sequence[Any]] = {}
        for feature in self.features:
            if feature.name not in frame.columns:
                if strict:
                    raise ValueError(f"missing column '{feature.name}' (strict: every field must be given)")
                columns[feature.name] = [None] * len(frame)
            else:
                columns[feature.name] = frame[feature.name].tolist()
        return columns

    # -- outputs --------------------------------------------------------------------------------
    def run(
        self,
        data: Any,
        observe: Optional[Callable[[Dict[str, np.ndarray], List[Any]], object]] = None,
        strict: bool = False,
    ) -> "tuple[List[Any], Optional[List[List[float]]], bool]":
        """Labels (or values), class probabilities (classification) and whether one record came in.

        `observe(feeds, labels)`, when given, sees the inputs exactly as the model read them (the
        server's drift window counts them there rather than reading the records a second time).
        `strict`: absent fields and categories never seen in training are errors.
        """
        feeds, single = self.feeds(data, strict)
        outputs = self.session.run(None, feeds)
        if self.task == "classification":
            labels, probabilities = outputs[0].tolist(), outputs[1].tolist() if self.probabilities else None
            if self._decode is not None:
                decode = self._decode
                labels = [decode[label] for label in labels]
        else:
            labels, probabilities = outputs[0].ravel().tolist(), None
        if observe is not None:
            observe(feeds, labels)
        return labels, probabilities, single

    def predict(self, data: Any, strict: bool = False) -> Any:
        """One label (or value) for one record; a list for records, columns or a DataFrame."""
        labels, _, single = self.run(data, strict=strict)
        return labels[0] if single else labels

    def predict_batches(self, frames: Iterable[Any]) -> Iterator[Any]:
        """pandas DataFrames in, each with `prediction` (and `probabilities`) columns added, out.

        The shape of Spark's `mapInPandas` and, one frame at a time, Dask's `map_partitions`. A
        feature is read from its dotted column ("billing.method") or from a column of sub-documents
        ("billing", as Spark hands over structs). Frames are never concatenated: memory stays one batch.
        """
        for frame in frames:
            if len(frame) == 0:  # Spark sends empty batches; they keep their shape
                empty: dict[str, list[Any]] = {"prediction": []}
                if self.task == "classification":
                    empty["probabilities"] = []
                yield frame.assign(**empty)
                continue
            labels, probabilities, _ = self.run(self._frame_columns(frame))
            added: dict[str, list[Any]] = {"prediction": labels}
            if probabilities is not None:
                added["probabilities"] = probabilities
            yield frame.assign(**added)

    def _frame_columns(self, frame: Any) -> dict[str, Sequence[Any]]:
        columns: dict[str, Sequence[Any]] = {}
        for feature in self.features:
            if feature.name in frame.columns:
                columns[feature.name] = frame[feature.name].tolist()
            elif feature.parts[0] in frame.columns:
                # Sub-documents (Spark structs as dicts): the rest of the path, read as any record is.
                rest, parts = ".".join(feature.parts[1:]), feature.parts[1:]
                outer = frame[feature.parts[0]].tolist()
                values = [lookup(v, rest, parts) if isinstance(v, Mapping) else None for v in outer]
                columns[feature.name] = [None if v is ABSENT else v for v in values]
            else:
                columns[feature.name] = [None] * len(frame)  # an absent column: missing values, as in records
        return columns

    def predict_proba(self, data: Any, strict: bool = False) -> Any:
        """Class probabilities in the order of `classes`: one row per record."""
        if self.task != "classification":
            raise ValueError(f"{self.name} is a regression model: it has no class probabilities")
        if not self.probabilities:
            estimator = self.metadata.get("estimator", {}).get("class", "its estimator")
            raise ValueError(f"{self.name} gives labels only: {estimator} has no class probabilities")
        _, probabilities, single = self.run(data, strict=strict)
        assert probabilities is not None
        return probabilities[0] if single else probabilities


def _class_decoder(classes: Optional[List[Any]], codes: Optional[List[Any]]) -> Optional[Dict[Any, Any]]:
    """The graph emits integer or string codes; booleans and [features].labels names are mapped back here."""
    if classes is None or codes is None or len(codes) != len(classes):
        return None
    if all(type(c) is type(k) and c == k for c, k in zip(classes, codes)):
        return None
    return dict(zip(codes, classes))


def _new_session(model: Union[bytes, str]) -> Any:
    import onnxruntime  # imported here so `import model_package` stays cheap until the first prediction

    options = onnxruntime.SessionOptions()
    threads = os.environ.get("MLPACK_THREADS")
    if threads:
        options.intra_op_num_threads = int(threads)
    options.log_severity_level = 3
    return onnxruntime.InferenceSession(model, options, providers=["CPUExecutionProvider"])


def read_onnx_metadata(model: Union[bytes, str, "os.PathLike[str]"]) -> Metadata:
    """The mlpack metadata stored in an ONNX file's metadata_props (each value JSON-encoded)."""
    session = _new_session(model if isinstance(model, bytes) else os.fspath(model))
    props = session.get_modelmeta().custom_metadata_map
    if "mlpack.metadata" not in props:
        raise ValueError("this ONNX file has no mlpack metadata (was it built by mlpack?)")
    try:
        document = json.loads(props["mlpack.metadata"])
    except RecursionError:
        raise ValueError("not an mlpack model: its metadata is nested too deeply") from None
    except ValueError:
        raise ValueError("not an mlpack model: its metadata is not valid JSON") from None
    return parse_metadata(document)


# -- reading input files, streamed ---------------------------------------------------------------
BATCH_RECORDS = 2_000  # records predicted at once from a file: bounded memory, most of the batch speed


@dataclass
class Item:
    """One record of an input file: where it was (line), and the record or why it could not be read."""

    line: int
    record: Any = None
    error: Optional[str] = None


def iter_records(stream: TextIO, fmt: str, model: Model) -> Iterator[Item]:
    """Records one at a time from JSON Lines or CSV (streamed), or a JSON document (read whole)."""
    if fmt == "jsonl":
        return _jsonl_items(stream)
    if fmt == "csv":
        return _csv_items(stream, model)
    if fmt == "json":
        return _json_items(stream)
    raise ValueError(f"unknown input format {fmt!r}: use jsonl, json or csv")


def _jsonl_items(stream: TextIO) -> Iterator[Item]:
    for number, line in enumerate(stream, 1):
        if not line.strip():
            continue
        try:
            yield Item(number, json.loads(line))
        except RecursionError:
            yield Item(number, error="the record is nested too deeply")
        except ValueError as exc:
            yield Item(number, error=f"not valid JSON: {getattr(exc, 'msg', exc)}")


def _json_items(stream: TextIO) -> Iterator[Item]:
    try:
        document = json.load(stream)
    except RecursionError:
        raise InputFileError("JSON nested too deeply to be records") from None
    except ValueError as exc:
        where = f" (line {exc.lineno})" if isinstance(exc, json.JSONDecodeError) else ""
        raise ValueError(f"not valid JSON: {getattr(exc, 'msg', exc)}{where}") from None
    if isinstance(document, Mapping) and "instances" in document:
        document = document["instances"]
    if isinstance(document, Mapping):
        document = [document]
    if not isinstance(document, list):
        raise ValueError('expected a record, a list of records or {"instances": [...]}')
    for index, record in enumerate(document):
        yield Item(index + 1, record)  # "line" is the record's position in the document here


def _csv_items(stream: TextIO, model: Model) -> Iterator[Item]:
    numeric = {f.name for f in model.features if f.kind == "numeric"}
    reader = csv.DictReader(stream)
    while True:
        try:
            row = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:  # e.g. a field over the csv module's 128 KiB limit
            raise InputFileError(f"not a readable CSV file (line {reader.line_num}): {exc}") from None
        number = reader.line_num
        record: Dict[str, Any] = {}
        error = None
        for key, text in row.items():
            if key is None:  # more cells than header names
                error = "more values than columns in the header"
                break
            if key in numeric:
                try:
                    record[key] = float(text) if text not in ("", None) else None
                except ValueError:
                    error = f"field '{key}': expected a number, got {text!r}"
                    break
            else:
                record[key] = None if text in ("", None) else text
        yield Item(number, None if error else record, error)


def read_records(stream: TextIO, fmt: str, model: Model) -> List[Any]:
    """Every record of a file at once (small files; predict_file streams instead)."""
    records = []
    for item in iter_records(stream, fmt, model):
        if item.error is not None:
            raise ValueError(f"line {item.line}: {item.error}")
        records.append(item.record)
    return records


def format_of(path: str) -> str:
    suffix = Path(path).suffix.lower()
    return {".jsonl": "jsonl", ".ndjson": "jsonl", ".json": "json", ".csv": "csv"}.get(suffix, "jsonl")


@dataclass
class PredictSummary:
    records: int = 0
    skipped: int = 0


class InputFileError(ValueError):
    """The input file as a whole cannot be read (not UTF-8, broken CSV, JSON nested too deeply): exit 2."""


class RecordError(ValueError):
    """A record of an input file that cannot be predicted: its line and why (the field is named)."""

    def __init__(self, line: int, reason: str) -> None:
        super().__init__(f"line {line}: {reason}")
        self.line, self.reason = line, reason


def predict_file(
    model: Model,
    source: TextIO,
    fmt: str,
    out: TextIO,
    *,
    on_error: str = "fail",
    errors: Optional[TextIO] = None,
    strict: bool = False,
    batch: int = BATCH_RECORDS,
) -> PredictSummary:
    """One JSON line per input record: the prediction (and probabilities for classifiers), streamed.

    The file is read and predicted `batch` records at a time, so memory stays bounded whatever its
    size. `on_error="fail"` stops at the first bad record (RecordError naming line and field);
    "skip" writes `{"line": N, "error": ...}` in its place (so output line k is still input record k),
    reports it on `errors`, and predicts every other record.
    """
    if on_error not in ("fail", "skip"):
        raise ValueError(f"on_error must be 'fail' or 'skip', got {on_error!r}")
    summary = PredictSummary()
    for chunk in _batches(iter_records(source, fmt, model), batch):
        for line in _predict_chunk(model, chunk, on_error, strict):
            if "error" in line:
                summary.skipped += 1
                if errors is not None:
                    print(f"line {line['line']}: {line['error']}", file=errors)
            out.write(json.dumps(line) + "\n")
        summary.records += len(chunk)
    return summary


def _batches(items: Iterable[Item], size: int) -> Iterator[List[Item]]:
    chunk: List[Item] = []
    for item in items:
        chunk.append(item)
        if len(chunk) >= size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def _predict_chunk(model: Model, chunk: List[Item], on_error: str, strict: bool) -> List[Dict[str, Any]]:
    readable = [item for item in chunk if item.error is None and isinstance(item.record, Mapping)]
    if len(readable) == len(chunk):
        try:
            return _answer_lines(model, [item.record for item in chunk], strict)
        except ValueError as exc:
            if on_error == "fail":
                raise _located(exc, chunk) from None
    # Some record is bad: predict one by one to tell the bad from the good (only for this chunk).
    lines = []
    for item in chunk:
        reason = item.error
        if reason is None and not isinstance(item.record, Mapping):
            reason = f"expected an object of fields, got {type(item.record).__name__}"
        if reason is None:
            try:
                lines.extend(_answer_lines(model, [item.record], strict))
                continue
            except ValueError as exc:
                reason = str(exc)
        if on_error == "fail":
            raise RecordError(item.line, reason)
        lines.append({"line": item.line, "error": reason})
    return lines


def _located(exc: ValueError, chunk: List[Item]) -> RecordError:
    """A batch error says "record i: ..."; the user wants the file's line."""
    text = str(exc)
    if text.startswith("record "):
        head, _, rest = text.partition(": ")
        try:
            return RecordError(chunk[int(head.split()[1])].line, rest)
        except (ValueError, IndexError):
            pass
    return RecordError(chunk[0].line, text)


def _answer_lines(model: Model, records: List[Any], strict: bool) -> List[Dict[str, Any]]:
    labels, probabilities, _ = model.run(records, strict=strict)
    class_names = [str(c) for c in model.classes or []]
    lines = []
    for index, label in enumerate(labels):
        line: Dict[str, Any] = {"prediction": label}
        if probabilities is not None:
            line["probabilities"] = dict(zip(class_names, probabilities[index]))
        lines.append(line)
    return lines


def add_predict_arguments(parser: argparse.ArgumentParser) -> None:
    """The options `mlpack predict` and `python -m MODEL predict` share."""
    parser.add_argument("--input", "-i", required=True, help="input file ('-' = stdin)")
    parser.add_argument("--format", choices=["jsonl", "json", "csv"], help="default: from the file's suffix")
    parser.add_argument("--output", "-o", default="-", help="JSON Lines output file (default: stdout)")
    parser.add_argument(
        "--on-error",
        choices=["fail", "skip"],
        default="fail",
        help="fail: stop at the first bad record (default); skip: report it (line and field), predict the rest",
    )
    parser.add_argument("--strict", action="store_true", help="absent fields and unknown categories are errors")


def run_predict(model: Model, args: argparse.Namespace, stderr: TextIO) -> int:
    """Exit 0: all predicted; 1: a bad record stopped it (fail) or some were skipped (skip); 2: an input
    file that cannot be read as a whole (absent, not UTF-8, broken CSV, JSON nested too deeply)."""
    fmt = args.format or format_of(args.input)
    try:
        source: TextIO = sys.stdin if args.input == "-" else open(args.input, encoding="utf-8", newline="")
    except OSError as exc:
        print(f"error: cannot read --input {args.input}: {exc.strerror}", file=stderr)
        return 2
    try:
        with source, _Output(args.output) as out:
            summary = predict_file(model, source, fmt, out, on_error=args.on_error, errors=stderr, strict=args.strict)
    except UnicodeDecodeError as exc:
        print(f"error: --input {args.input}: not UTF-8 text ({exc.reason} at byte {exc.start})", file=stderr)
        return 2
    except InputFileError as exc:
        print(f"error: --input {args.input}: {exc}", file=stderr)
        return 2
    except ValueError as exc:
        print(f"error: {args.input}: {exc}", file=stderr)
        return 1
    except BrokenPipeError:  # the reader left (`| head`): the callers end quietly
        raise
    except OSError as exc:
        print(f"error: cannot write {args.output}: {exc.strerror}", file=stderr)
        return 2
    if summary.skipped:
        print(f"{summary.skipped} of {summary.records} record(s) skipped (see the lines above)", file=stderr)
        return 1
    return 0


def main(model: Model, argv: Optional[Sequence[str]] = None, prog: Optional[str] = None, server: Any = None) -> int:
    """`python -m MODEL predict --input FILE` (and `serve`, given the server module): the model's CLI."""
    parser = argparse.ArgumentParser(prog=prog or model.name, description=f"{model.name} {model.version}")
    commands = parser.add_subparsers(dest="command", required=True)
    predict = commands.add_parser("predict", help="predict for a JSON Lines, JSON or CSV file ('-' = stdin)")
    add_predict_arguments(predict)
    commands.add_parser("info", help="print the model's metadata")
    if server is not None:
        serve = commands.add_parser("serve", help="serve predictions over HTTP")
        server.add_serve_arguments(serve)
    args = parser.parse_args(argv)
    if args.command == "serve":
        return int(server.serve_args(model, args))
    if args.command == "info":
        print(json.dumps(model.metadata, indent=2))
        return 0
    return run_predict(model, args, sys.stderr)


class _Output:
    """stdout, or a file written under a temporary name and renamed into place only on success."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.stream: Optional[TextIO] = None
        self.temporary = ""

    def __enter__(self) -> TextIO:
        if self.path == "-":
            self.stream = sys.stdout
            return self.stream
        folder = os.path.dirname(os.path.abspath(self.path))
        handle, self.temporary = tempfile.mkstemp(prefix=".mlpack-predict-", dir=folder)
        self.stream = os.fdopen(handle, "w", encoding="utf-8")
        return self.stream

    def __exit__(self, kind: Any, *exc: object) -> None:
        if self.stream is None or self.stream is sys.stdout:
            return
        self.stream.close()
        if kind is None:
            os.replace(self.temporary, self.path)
        else:
            os.unlink(self.temporary)


# -- dates ----------------------------------------------------------------------------------------
# A date enters the graph as int64 milliseconds since 1970 UTC (BSON's own representation); a
# missing one as the smallest int64, since int64 has no NaN.
MISSING_DATE = -(2**63)
_EPOCH = _dt.datetime(1970, 1, 1, tzinfo=_dt.timezone.utc)
_ONE_MS = _dt.timedelta(milliseconds=1)
_NAIVE_EPOCH = _dt.datetime(1970, 1, 1)  # naive datetimes are UTC, as pymongo returns them
_ISO_FRACTION = re.compile(r"(\.\d+)")


def date_milliseconds(value: Any) -> int:
    """A date as milliseconds since 1970 UTC: a datetime (naive = UTC), an ISO 8601 string, or
    Extended JSON {"$date": ...}; None or NaN is MISSING_DATE. Anything else is a ValueError."""
    if value is None or (isinstance(value, float) and value != value):
        return MISSING_DATE
    if isinstance(value, _dt.datetime):
        moment = value if value.tzinfo is not None else value.replace(tzinfo=_dt.timezone.utc)
        return (moment - _EPOCH) // _ONE_MS
    if isinstance(value, _dt.date):
        return (_dt.date(value.year, value.month, value.day) - _EPOCH.date()).days * 86_400_000
    if isinstance(value, str):
        return date_milliseconds(_parse_iso(value))
    if isinstance(value, Mapping) and set(value) == {"$date"}:
        inner = value["$date"]
        if isinstance(inner, Mapping) and set(inner) == {"$numberLong"}:  # canonical Extended JSON
            inner = inner["$numberLong"]
            if isinstance(inner, str) and re.fullmatch(r"-?\d+", inner):
                return int(inner)
        elif isinstance(inner, int) and not isinstance(inner, bool):  # legacy Extended JSON
            return inner
        elif isinstance(inner, str):  # relaxed Extended JSON
            return date_milliseconds(_parse_iso(inner))
    raise ValueError(f'expected a date (a datetime, an ISO 8601 string or {{"$date": ...}}), got {value!r}')


def _parse_iso(text: str) -> _dt.datetime:
    """ISO 8601 with Python 3.9's fromisoformat: 'Z' and fractions of any length are normalised first."""
    cleaned = text.strip()
    if cleaned[-1:] in ("Z", "z"):
        cleaned = cleaned[:-1] + "+00:00"
    cleaned = _ISO_FRACTION.sub(lambda m: (m.group(1) + "000000")[:7], cleaned, count=1)
    try:
        if len(cleaned) == 10:
            return _dt.datetime.combine(_dt.date.fromisoformat(cleaned), _dt.time())
        return _dt.datetime.fromisoformat(cleaned)
    except ValueError:
        raise ValueError(f"expected a date, got {text!r} (not ISO 8601, e.g. 2024-05-01T12:00:00Z)") from None


__all__ = [
    "ABSENT",
    "MISSING_CATEGORY",
    "MISSING_DATE",
    "date_milliseconds",
    "Feature",
    "FeatureInfo",
    "Metadata",
    "Model",
    "RecordError",
    "category_text",
    "iter_records",
    "lookup",
    "main",
    "parse_metadata",
    "add_predict_arguments",
    "predict_file",
    "run_predict",
    "read_onnx_metadata",
    "read_records",
    "to_number",
]
