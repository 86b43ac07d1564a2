"""Check the loaded documents before training and turn them into typed columns.

Every problem found is collected into one report, so a user fixes their data in one pass rather
than one error per build.
"""

from __future__ import annotations

import difflib
import hashlib
import json
import math
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from mlpack.config import FeaturesSection, Task
from mlpack.errors import DataError
from mlpack.features.expressions import unknown_field
from mlpack.features.labels import TargetKind, label_kind, with_feedback_targets
from mlpack.features.ordinal import unlisted
from mlpack.features.target import TRANSFORMS
from mlpack.runtime import MISSING_DATE, category_text, date_milliseconds, to_number
from mlpack.source import readings
from mlpack.source.feedback import FeedbackSummary
from mlpack.source.mongo import RawColumns
from mlpack.validate import cleaning
from mlpack.validate.cleaning import data_warnings, missing_target

MIN_ROWS_PER_CLASS = 2


@dataclass
class Dataset:
    """Typed training data: numeric columns as float64 (NaN = missing), categoricals as strings."""

    numeric: dict[str, np.ndarray]
    categorical: dict[str, np.ndarray]
    target: np.ndarray  # class codes (int64, booleans as 0/1, or str) or float64 values
    ids: Sequence[Any]
    fingerprint: str = ""
    weight: np.ndarray | None = None  # [features].weight: per-document sample weights (float64, finite, >= 0)
    dates: dict[str, np.ndarray] = field(default_factory=dict)  # int64 ms since 1970 UTC, MISSING_DATE = missing
    texts: dict[str, np.ndarray] = field(default_factory=dict)  # strings, "" = missing
    target_kind: TargetKind = "float"  # what the target's values were: predictions come back as that
    warnings: list[str] = field(default_factory=list)  # not fatal; in the report and on the terminal
    # [evaluation].split_field and the fields of test_filter as loaded, one value per document
    split_values: dict[str, Sequence[Any]] = field(default_factory=dict)
    feedback: FeedbackSummary | None = None  # [source.feedback]: its rows are the last `feedback.rows`

    @property
    def rows(self) -> int:
        return len(self.target)

    def columns(self) -> dict[str, np.ndarray]:
        return {**self.numeric, **self.categorical, **self.dates, **self.texts}


@dataclass
class ValidationReport:
    rows: int
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # not problems: warnings for the dataset

    def render(self) -> str:
        lines = [f"data validation failed ({self.rows} documents):"]
        lines += [f"  - {problem}" for problem in self.problems]
        return "\n".join(lines)


def _example(ids: Sequence[Any], index: int, value: Any) -> str:
    return f"e.g. _id {ids[index]!s} has {_shown(value)}"


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _read_all(values: Sequence[Any], read: Callable[[Any], Any]) -> tuple[list[Any], list[tuple[int, str]]]:
    """Every value through the runtime's reading; the failures as (index, reason)."""
    out: list[Any] = []
    bad: list[tuple[int, str]] = []
    for index, value in enumerate(values):
        try:
            out.append(read(value))
        except ValueError as exc:
            bad.append((index, str(exc)))
            out.append(None)
    return out, bad


def _report_bad(kind: str, path: str, bad: list[tuple[int, str]], ids: Sequence[Any]) -> str:
    index, reason = bad[0]
    return f"{kind} feature '{path}': {len(bad)} bad value(s), e.g. _id {ids[index]!s}: {reason}"


def _check_numeric(path: str, values: Sequence[Any], ids: Sequence[Any], report: ValidationReport) -> np.ndarray | None:
    if (fast := readings.numbers(values)) is not None:  # all numbers: the same reading, without a call per value
        return fast
    numbers, bad = _read_all(values, to_number)
    if bad:
        report.problems.append(_report_bad("numeric", path, bad, ids))
        return None
    note = cleaning.text_numbers_note(path, values, numbers)
    if note:
        report.notes.append(note)
    return np.array(numbers, dtype=np.float64)


def _check_categorical(
    path: str, values: Sequence[Any], ids: Sequence[Any], report: ValidationReport
) -> np.ndarray | None:
    if (fast := readings.categories(values)) is not None:
        return fast
    texts, bad = _read_all(values, category_text)
    if bad:
        report.problems.append(_report_bad("categorical", path, bad, ids))
        return None
    column = np.empty(len(values), dtype=object)
    column[:] = texts
    return column


def _number_or_nan(value: Any) -> float:
    try:
        return to_number(value)
    except ValueError:
        return math.nan


def _check_weight(path: str, values: Sequence[Any], ids: Sequence[Any], report: ValidationReport) -> np.ndarray | None:
    """Sample weights: a number in every document, finite and not negative, not all zero."""
    fast = readings.numbers(values)
    column = fast if fast is not None else np.array([_number_or_nan(v) for v in values], dtype=np.float64)
    bad = np.flatnonzero(~np.isfinite(column) | (column < 0)).tolist()
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


def _check_datetime(
    path: str, values: Sequence[Any], ids: Sequence[Any], report: ValidationReport
) -> np.ndarray | None:
    """BSON dates (and ISO 8601 strings) → int64 milliseconds, as the graph receives them."""
    if (fast := readings.milliseconds(values)) is not None:
        return fast
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


def _check_text(path: str, values: Sequence[Any], ids: Sequence[Any], report: ValidationReport) -> np.ndarray | None:
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
    features: FeaturesSection, target: np.ndarray, ids: Sequence[Any], report: ValidationReport
) -> None:
    transform = TRANSFORMS[features.target_transform]
    bad = np.flatnonzero(~transform.accepts(target))
    if bad.size:
        report.problems.append(
            f"target '{features.target}': target_transform = \"{features.target_transform}\" needs values "
            f"{transform.domain}, but {bad.size} are not, {_example(ids, int(bad[0]), float(target[bad[0]]))}"
        )


def _check_target(
    path: str, values: Sequence[Any], ids: Sequence[Any], task: Task, report: ValidationReport
) -> tuple[np.ndarray, TargetKind] | None:
    missing = readings.missing(values, task == "regression")
    missing = missing_target(values, task == "regression") if missing is None else missing
    if missing:
        report.problems.append(
            f"target '{path}': missing in {len(missing)} document(s), e.g. _id {ids[missing[0]]!s}: "
            + cleaning.missing_target_hint(path)
        )
        return None
    if task == "regression":
        if (fast := readings.numbers(values)) is not None:
            return fast, "float"
        numbers, bad = _read_all(values, to_number)
        if bad:
            index, reason = bad[0]
            report.problems.append(
                f"target '{path}': {len(bad)} value(s) are not numbers for a regression, e.g. _id {ids[index]!s}: "
                f"{reason}"
            )
            return None
        return np.array(numbers, dtype=np.float64), "float"
    return _class_labels(path, values, ids, report)


def _read_labels(
    path: str, values: Sequence[Any], ids: Sequence[Any], report: ValidationReport
) -> tuple[np.ndarray, TargetKind] | None:
    kinds = [label_kind(v) for v in values]
    kind = kinds[0]
    if kind is None or any(k != kind for k in kinds):
        bad = next(i for i, k in enumerate(kinds) if k is None or k != kind)
        found = sorted({type(v).__name__ for v in values})
        report.problems.append(
            f"target '{path}': class labels must be all strings, all integers or all booleans, "
            f"found {', '.join(found)}, {_example(ids, bad, values[bad])}"
        )
        return None
    labels: np.ndarray
    if kind == "str":
        labels = np.array(list(values), dtype=object)
    else:
        try:
            labels = np.array([int(v) for v in values], dtype=np.int64)
        except OverflowError:
            report.problems.append(f"target '{path}': integer class labels must fit in 64 bits")
            return None
    return labels, kind


def _class_labels(
    path: str, values: Sequence[Any], ids: Sequence[Any], report: ValidationReport
) -> tuple[np.ndarray, TargetKind] | None:
    """Labels become the codes ONNX classifiers can emit: integers (booleans as 0/1) or strings.

    The kind is kept so that predictions come back as the data had them (True stays True).
    """
    read = readings.labels(values) or _read_labels(path, values, ids, report)
    if read is None:
        return None
    labels, kind = read
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
    return labels, kind


def _json_list(values: list[Any]) -> bytes:
    """`json.dumps(values).encode()`, each distinct value encoded once (categories and labels repeat).
    Only for values all str, all int or all bool: equal values of those encode alike (0.0 and -0.0,
    or 1 and True, are equal keys that json writes differently)."""
    types = set(map(type, values))
    if len(types) != 1 or not types <= {str, int, bool}:
        return json.dumps(values).encode()
    encoded = {value: json.dumps(value) for value in set(values)}
    return ("[" + ", ".join(map(encoded.__getitem__, values)) + "]").encode()


def fingerprint(dataset: Dataset, features: FeaturesSection, rows: slice = slice(None)) -> str:
    """sha256 of the training data as the model saw it: column names, order, and values (of `rows`).

    With feedback rows, the whole dataset's says how many of its rows are feedback (the last ones), so
    the same documents with fewer or more of them counted as feedback are another fingerprint."""
    digest = hashlib.sha256()
    for path, values in dataset.numeric.items():
        digest.update(f"numeric:{path}\0".encode())
        digest.update(np.ascontiguousarray(values[rows], dtype="<f8").tobytes())
    for path, values in dataset.categorical.items():
        digest.update(f"categorical:{path}\0".encode())
        digest.update(_json_list(values[rows].tolist()))
    for path, values in dataset.dates.items():
        digest.update(f"datetime:{path}\0".encode())
        digest.update(np.ascontiguousarray(values[rows], dtype="<i8").tobytes())
    for path, values in dataset.texts.items():
        digest.update(f"text:{path}\0".encode())
        digest.update(_json_list(values[rows].tolist()))
    digest.update(f"target:{features.target}\0".encode())
    digest.update(_json_list(dataset.target[rows].tolist()))
    if dataset.weight is not None:
        digest.update(f"weight:{features.weight}\0".encode())
        digest.update(np.ascontiguousarray(dataset.weight[rows], dtype="<f8").tobytes())
    if dataset.feedback is not None and rows == slice(None):  # builds without feedback keep their fingerprint
        digest.update(f"feedback:{dataset.feedback.rows}\0".encode())
    return digest.hexdigest()


def validate(
    raw: RawColumns,
    features: FeaturesSection,
    task: Task,
    *,
    max_categories: int = 50,
    source_label: str = "",
    known_paths: Callable[[], list[str]] | None = None,
    feedback: FeedbackSummary | None = None,
) -> Dataset:
    """Typed columns for training, or a DataError whose details list every problem found.

    `known_paths` gives the paths a sample document does have, asked only when a path is absent
    everywhere, to suggest the one that was meant.
    """
    report = ValidationReport(rows=raw.rows)
    uneven = [path for path in features.loaded if len(raw.values.get(path, ())) != raw.rows]
    if uneven:  # never train on values shifted onto other documents
        raise DataError(
            f"field '{uneven[0]}' was read {len(raw.values.get(uneven[0], ()))} times from {raw.rows} documents; "
            "the loader is out of step with the documents, nothing was trained"
        )
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
    if raw.feedback:  # labels of the collection's type, by their names too; before a missing one is dropped
        raw = with_feedback_targets(raw, features, task == "regression")
    if features.drop_missing_target:  # the documents whose target is missing are left out, and counted
        raw = cleaning.without_missing_targets(raw, features.target, task == "regression", report.notes)
    by_kind: dict[str, list[str]] = {"number": [], "category": [], "date": [], "text": []}
    for path in features.inputs:
        by_kind[features.input_kind(path)].append(path)
    numeric = {path: _check_numeric(path, raw.values[path], raw.ids, report) for path in by_kind["number"]}
    categorical = {path: _check_categorical(path, raw.values[path], raw.ids, report) for path in by_kind["category"]}
    for path, order in features.ordinal.items():  # a value the declared order does not list: a typo somewhere
        problem = unlisted(path, categorical.get(path), order, raw.ids)
        report.problems += [problem] if problem else []
    dates = {path: _check_datetime(path, raw.values[path], raw.ids, report) for path in by_kind["date"]}
    texts = {path: _check_text(path, raw.values[path], raw.ids, report) for path in by_kind["text"]}
    for kind, found in (("numeric", numeric), ("categorical", categorical), ("datetime", dates), ("text", texts)):
        report.problems += cleaning.never_present(kind, found, raw.rows)  # all null: nothing to learn from
    target = _check_target(features.target, raw.values[features.target], raw.ids, task, report)
    if target is not None and features.target_transform:
        _check_target_domain(features, target[0], raw.ids, report)
    weight = _check_weight(features.weight, raw.values[features.weight], raw.ids, report) if features.weight else None
    if report.problems:
        raise DataError("the training data is not usable", details=report.render())
    assert target is not None
    dataset = Dataset(
        numeric={k: v for k, v in numeric.items() if v is not None},
        categorical={k: v for k, v in categorical.items() if v is not None},
        target=target[0],
        ids=raw.ids,
        weight=weight,
        dates={k: v for k, v in dates.items() if v is not None},
        texts={k: v for k, v in texts.items() if v is not None},
        target_kind=target[1],
        split_values={path: raw.values[path] for path in features.split_fields},
    )
    if feedback is not None:
        feedback.rows = raw.feedback
        dataset.feedback = feedback
        feedback.sha256 = fingerprint(dataset, features, slice(dataset.rows - raw.feedback, None))
        report.notes += [] if feedback.rows else [feedback.none_found()]
    dataset.fingerprint = fingerprint(dataset, features)
    dataset.warnings = report.notes + data_warnings(dataset, features, task, max_categories)
    return dataset
