"""Check the loaded documents before training and turn them into typed columns.

Every problem found is collected into one report, so a user fixes their data in one pass rather
than one error per build.
"""

from __future__ import annotations

import datetime
import difflib
import hashlib
import json
import math
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from numbers import Integral, Real
from typing import Any

import numpy as np

from mlpack.config import FeaturesSection, Task
from mlpack.errors import DataError
from mlpack.features.expressions import unknown_field
from mlpack.features.target import TRANSFORMS
from mlpack.runtime import MISSING_CATEGORY, MISSING_DATE, date_milliseconds
from mlpack.source.mongo import RawColumns

MIN_ROWS_PER_CLASS = 2


@dataclass
class Dataset:
    """Typed training data: numeric columns as float64 (NaN = missing), categoricals as strings."""

    numeric: dict[str, np.ndarray]
    categorical: dict[str, np.ndarray]
    target: np.ndarray
    ids: list[Any]
    fingerprint: str = ""
    weight: np.ndarray | None = None  # [features].weight: per-document sample weights (float64, finite, >= 0)
    dates: dict[str, np.ndarray] = field(default_factory=dict)  # int64 ms since 1970 UTC, MISSING_DATE = missing
    texts: dict[str, np.ndarray] = field(default_factory=dict)  # strings, "" = missing

    @property
    def rows(self) -> int:
        return len(self.target)

    def columns(self) -> dict[str, np.ndarray]:
        return {**self.numeric, **self.categorical, **self.dates, **self.texts}


@dataclass
class ValidationReport:
    rows: int
    problems: list[str] = field(default_factory=list)

    def render(self) -> str:
        lines = [f"data validation failed ({self.rows} documents):"]
        lines += [f"  - {problem}" for problem in self.problems]
        return "\n".join(lines)


def _is_number(value: Any) -> bool:
    return isinstance(value, Real) or _is_decimal128(value)


def _is_decimal128(value: Any) -> bool:
    return type(value).__name__ == "Decimal128"


def _to_float(value: Any) -> float:
    if value is None:
        return math.nan
    if _is_decimal128(value):
        return float(value.to_decimal())
    return float(value)


def _example(ids: list[Any], index: int, value: Any) -> str:
    return f"e.g. _id {ids[index]!s} has {value!r}"


def _check_numeric(path: str, values: list[Any], ids: list[Any], report: ValidationReport) -> np.ndarray | None:
    bad = [i for i, v in enumerate(values) if v is not None and not _is_number(v)]
    if bad:
        report.problems.append(
            f"numeric feature '{path}': {len(bad)} non-numeric value(s), {_example(ids, bad[0], values[bad[0]])}"
            + (" (a date: list it under [features].datetime)" if isinstance(values[bad[0]], datetime.date) else "")
        )
        return None
    try:
        return np.array([_to_float(v) for v in values], dtype=np.float64)
    except OverflowError:
        huge = next(i for i, v in enumerate(values) if isinstance(v, int) and abs(v) > 2**1023)
        report.problems.append(f"numeric feature '{path}': a value too large for a float, e.g. _id {ids[huge]!s}")
        return None


def _check_categorical(path: str, values: list[Any], ids: list[Any], report: ValidationReport) -> np.ndarray | None:
    bad = [i for i, v in enumerate(values) if isinstance(v, (dict, list))]
    if bad:
        report.problems.append(
            f"categorical feature '{path}': {len(bad)} value(s) are documents or arrays, not categories, "
            f"{_example(ids, bad[0], values[bad[0]])}"
        )
        return None
    column = np.empty(len(values), dtype=object)
    column[:] = [MISSING_CATEGORY if v is None or (isinstance(v, float) and v != v) else str(v) for v in values]
    return column


def _to_float_or_inf(value: Any) -> float:
    try:
        return _to_float(value)
    except OverflowError:
        return math.inf


def _check_weight(path: str, values: list[Any], ids: list[Any], report: ValidationReport) -> np.ndarray | None:
    """Sample weights: a number in every document, finite and not negative, not all zero."""
    numbers = [_to_float_or_inf(v) if _is_number(v) and not isinstance(v, bool) else math.nan for v in values]
    column = np.array(numbers, dtype=np.float64)
    bad = [i for i, w in enumerate(numbers) if not math.isfinite(w) or w < 0]
    if bad:
        report.problems.append(
            f"weight '{path}': {len(bad)} document(s) without a finite, non-negative number as weight, "
            f"{_example(ids, bad[0], values[bad[0]])}"
        )
        return None
    if not column.any():
        report.problems.append(f"weight '{path}': every weight is 0")
        return None
    return column


def _check_datetime(path: str, values: list[Any], ids: list[Any], report: ValidationReport) -> np.ndarray | None:
    """BSON dates (and ISO 8601 strings) → int64 milliseconds, as the graph receives them."""
    milliseconds: list[int] = []
    bad: list[int] = []
    for index, value in enumerate(values):
        try:
            milliseconds.append(date_milliseconds(value))
        except ValueError:
            bad.append(index)
            milliseconds.append(MISSING_DATE)
    if bad:
        report.problems.append(
            f"datetime feature '{path}': {len(bad)} bad value(s) are not dates, {_example(ids, bad[0], values[bad[0]])}"
        )
        return None
    return np.array(milliseconds, dtype=np.int64)


def _check_text(path: str, values: list[Any], ids: list[Any], report: ValidationReport) -> np.ndarray | None:
    bad = [i for i, v in enumerate(values) if v is not None and not isinstance(v, str)]
    if bad:
        report.problems.append(
            f"text feature '{path}': {len(bad)} value(s) are not strings, {_example(ids, bad[0], values[bad[0]])}"
        )
        return None
    column = np.empty(len(values), dtype=object)
    column[:] = ["" if v is None else v for v in values]
    return column


def _check_target_domain(
    features: FeaturesSection, target: np.ndarray, ids: list[Any], report: ValidationReport
) -> None:
    transform = TRANSFORMS[features.target_transform]
    bad = np.flatnonzero(~transform.accepts(target))
    if bad.size:
        report.problems.append(
            f"target '{features.target}': target_transform = \"{features.target_transform}\" needs values "
            f"{transform.domain}, but {bad.size} are not, {_example(ids, int(bad[0]), float(target[bad[0]]))}"
        )


def _check_target(
    path: str, values: list[Any], ids: list[Any], task: Task, report: ValidationReport
) -> np.ndarray | None:
    missing = [i for i, v in enumerate(values) if v is None or (isinstance(v, float) and math.isnan(v))]
    if missing:
        report.problems.append(f"target '{path}': missing in {len(missing)} document(s), e.g. _id {ids[missing[0]]!s}")
        return None
    if task == "regression":
        bad = [i for i, v in enumerate(values) if not _is_number(v) or isinstance(v, bool)]
        if bad:
            report.problems.append(
                f"target '{path}': {len(bad)} non-numeric value(s) for a regression, "
                f"{_example(ids, bad[0], values[bad[0]])}"
            )
            return None
        return np.array([_to_float(v) for v in values], dtype=np.float64)
    return _class_labels(path, values, ids, report)


def _same_label_kind(value: Any, strings: bool) -> bool:
    if strings:
        return isinstance(value, str)
    return isinstance(value, Integral) or (isinstance(value, float) and value.is_integer())


def _class_labels(path: str, values: list[Any], ids: list[Any], report: ValidationReport) -> np.ndarray | None:
    """Labels stay integers or strings, the two label types ONNX classifiers can emit."""
    if all(isinstance(v, str) for v in values):
        labels = np.array(values, dtype=object)
    elif all(_same_label_kind(v, strings=False) for v in values):
        try:
            labels = np.array([int(v) for v in values], dtype=np.int64)
        except OverflowError:
            report.problems.append(f"target '{path}': integer class labels must fit in 64 bits")
            return None
    else:
        strings = isinstance(values[0], str)
        bad = next((i for i, v in enumerate(values) if not _same_label_kind(v, strings)), 0)
        kinds = sorted({type(v).__name__ for v in values})
        report.problems.append(
            f"target '{path}': class labels must be all strings or all integers, found {', '.join(kinds)}, "
            f"{_example(ids, bad, values[bad])}"
        )
        return None
    counts = Counter(labels.tolist())
    if len(counts) < 2:
        report.problems.append(
            f"target '{path}': only one class ({next(iter(counts))!r}) in the data; a classifier needs at least two"
        )
        return None
    rare = sorted((str(label) for label, n in counts.items() if n < MIN_ROWS_PER_CLASS))
    if rare:
        report.problems.append(
            f"target '{path}': class(es) {', '.join(rare)} have fewer than {MIN_ROWS_PER_CLASS} documents, "
            "too few to split into train and test"
        )
        return None
    return labels


def fingerprint(dataset: Dataset, features: FeaturesSection) -> str:
    """sha256 of the training data as the model saw it: column names, order, and values."""
    digest = hashlib.sha256()
    for path, values in dataset.numeric.items():
        digest.update(f"numeric:{path}\0".encode())
        digest.update(np.ascontiguousarray(values, dtype="<f8").tobytes())
    for path, values in dataset.categorical.items():
        digest.update(f"categorical:{path}\0".encode())
        digest.update(json.dumps(values.tolist()).encode())
    for path, values in dataset.dates.items():
        digest.update(f"datetime:{path}\0".encode())
        digest.update(np.ascontiguousarray(values, dtype="<i8").tobytes())
    for path, values in dataset.texts.items():
        digest.update(f"text:{path}\0".encode())
        digest.update(json.dumps(values.tolist()).encode())
    digest.update(f"target:{features.target}\0".encode())
    digest.update(json.dumps(dataset.target.tolist()).encode())
    if dataset.weight is not None:
        digest.update(f"weight:{features.weight}\0".encode())
        digest.update(np.ascontiguousarray(dataset.weight, dtype="<f8").tobytes())
    return digest.hexdigest()


def validate(
    raw: RawColumns,
    features: FeaturesSection,
    task: Task,
    *,
    source_label: str = "",
    known_paths: Callable[[], list[str]] | None = None,
) -> Dataset:
    """Typed columns for training, or a DataError whose details list every problem found.

    `known_paths` gives the paths a sample document does have, asked only when a path is absent
    everywhere, to suggest the one that was meant.
    """
    report = ValidationReport(rows=raw.rows)
    if raw.rows == 0:
        where = f" in {source_label}" if source_label else ""
        raise DataError(f"no documents to train on: the query matched nothing{where}")
    absent = [path for path in features.loaded if raw.present[path] == 0]
    candidates = known_paths() if absent and known_paths else []
    for path in absent:
        guess = difflib.get_close_matches(path, candidates, n=1, cutoff=0.6)
        hint = f"did you mean '{guess[0]}'?" if guess else "check the path"
        if path in features.expression_fields:  # a name in an expression that is no field: the config is wrong
            raise unknown_field(features.expressions, path, hint)
        report.problems.append(f"field '{path}' is absent from all {raw.rows} documents ({hint})")
    if report.problems:
        raise DataError("the training data is not usable", details=report.render())
    by_kind: dict[str, list[str]] = {"number": [], "category": [], "date": [], "text": []}
    for path in features.inputs:
        by_kind[features.input_kind(path)].append(path)
    numeric = {path: _check_numeric(path, raw.values[path], raw.ids, report) for path in by_kind["number"]}
    categorical = {path: _check_categorical(path, raw.values[path], raw.ids, report) for path in by_kind["category"]}
    dates = {path: _check_datetime(path, raw.values[path], raw.ids, report) for path in by_kind["date"]}
    texts = {path: _check_text(path, raw.values[path], raw.ids, report) for path in by_kind["text"]}
    target = _check_target(features.target, raw.values[features.target], raw.ids, task, report)
    if target is not None and features.target_transform:
        _check_target_domain(features, target, raw.ids, report)
    weight = _check_weight(features.weight, raw.values[features.weight], raw.ids, report) if features.weight else None
    if report.problems:
        raise DataError("the training data is not usable", details=report.render())
    dataset = Dataset(
        numeric={k: v for k, v in numeric.items() if v is not None},
        categorical={k: v for k, v in categorical.items() if v is not None},
        target=target if target is not None else np.empty(0),
        ids=raw.ids,
        weight=weight,
        dates={k: v for k, v in dates.items() if v is not None},
        texts={k: v for k, v in texts.items() if v is not None},
    )
    dataset.fingerprint = fingerprint(dataset, features)
    return dataset
