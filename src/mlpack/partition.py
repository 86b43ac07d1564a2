"""How documents are divided: `_id` ranges for `mlpack score --engine spark`, and a build's train/test split.

`_id` ranges of a collection, about equal in size: how `mlpack score --engine spark` splits the work.

The MongoDB Spark connector's sample partitioner, over pymongo (its jar is not needed): sample the
matching `_id`s, let the server sort them, keep every SAMPLES_PER_RANGE-th as a boundary.
"""

from __future__ import annotations

import datetime
import math
import re
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from bson import json_util
from pymongo.collection import Collection

from mlpack.runtime import MISSING_CATEGORY, MISSING_DATE, category_text, date_milliseconds

SAMPLES_PER_RANGE = 10  # as the connector's sample partitioner


def _bracket(value: Any) -> str:
    """MongoDB compares values in a range query only within one type bracket (numbers are one)."""
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, (int, float)) or type(value).__name__ in ("Int64", "Decimal128"):
        return "number"
    return type(value).__name__


def id_ranges(collection: Collection[dict[str, Any]], query: dict[str, Any], count: int, parts: int) -> list[Any]:
    """Up to `parts` queries on `_id` that split the matching documents into about equal ranges.

    Boundaries come from a `$sample` of the `_id`s, sorted by the server, every SAMPLES_PER_RANGE-th
    kept (what the MongoDB Spark connector's sample partitioner does). `_id`s of more than one type
    are split with `$expr` comparisons, which use BSON's total order instead of type brackets.
    """
    parts = max(1, min(parts, count))
    if parts == 1:
        return [{}]
    sample = [
        d["_id"]
        for d in collection.aggregate(
            [{"$match": query}, {"$sample": {"size": parts * SAMPLES_PER_RANGE}}, {"$project": {"_id": 1}}]
            + [{"$sort": {"_id": 1}}]
        )
    ]
    step = len(sample) / parts
    bounds: list[Any] = []
    for index in range(1, parts):
        candidate = sample[int(index * step)]
        if not bounds or candidate != bounds[-1]:
            bounds.append(candidate)
    lowest = collection.find_one(query, {"_id": 1}, sort=[("_id", 1)])
    highest = collection.find_one(query, {"_id": 1}, sort=[("_id", -1)])
    one_bracket = lowest is not None and highest is not None and _bracket(lowest["_id"]) == _bracket(highest["_id"])
    edges: list[Any] = [None, *bounds, None]
    ranges = []
    for low, high in zip(edges, edges[1:]):
        if one_bracket:
            condition = {}
            if low is not None:
                condition["$gte"] = low
            if high is not None:
                condition["$lt"] = high
            ranges.append({"_id": condition} if condition else {})
        else:
            terms = []
            if low is not None:
                terms.append({"$gte": ["$_id", {"$literal": low}]})
            if high is not None:
                terms.append({"$lt": ["$_id", {"$literal": high}]})
            ranges.append({"$expr": {"$and": terms}} if terms else {})
    return ranges


# -- the train/test split of a build ([evaluation].split) -------------------------------------------
# "random" is train_test_split (stratified for classification); "time" holds out the newest documents
# by a date field; "group" keeps every value of a field in one split (GroupShuffleSplit: test_size is
# the share of groups); "filter" holds out the documents a MongoDB query matches. Cross-validation
# on the training split follows the same rule: TimeSeriesSplit in time order, GroupKFold by group.


def split_keys(kind: str, path: str, columns: Mapping[str, Sequence[Any]], ids: Sequence[Any]) -> np.ndarray:
    """The split field's value per document (columns[path]): int64 ms since 1970 for "time", the
    category text for "group"; a document without one is a ValueError naming the count and an `_id`."""
    values = columns[path]
    keys: list[Any] = []
    missing: list[int] = []
    for index, value in enumerate(values):
        try:
            key = date_milliseconds(value) if kind == "time" else category_text(value)
        except ValueError as exc:
            raise ValueError(f"[evaluation].split_field '{path}': _id {ids[index]!s}: {exc}") from None
        if key in (MISSING_DATE, MISSING_CATEGORY):
            missing.append(index)
        keys.append(key)
    if missing:
        raise ValueError(
            f"[evaluation].split_field '{path}' is missing in {len(missing)} document(s), e.g. _id "
            f"{ids[missing[0]]!s}: every document needs one to be put in a split (filter them out in [source].filter)"
        )
    return np.array(keys, dtype=np.int64 if kind == "time" else object)


def at_random(count: int, test_size: float, seed: int, stratify: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    """(train rows, test rows) of the seeded random split, stratified by `stratify` (the classes) if given."""
    from sklearn.model_selection import train_test_split  # here: reading a config imports this module

    train, test = train_test_split(np.arange(count), test_size=test_size, random_state=seed, stratify=stratify)
    return train, test


def holdout(kind: str, keys: np.ndarray, test_size: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(train rows, test rows) for "time" (the newest test_size share; documents of the boundary's
    time all go to test, so no moment is in both) or "group" (no group in both splits)."""
    from sklearn.model_selection import GroupShuffleSplit

    rows = np.arange(len(keys))
    if kind == "time":
        order = np.argsort(keys, kind="stable")
        cut = keys[order[len(keys) - max(1, math.ceil(len(keys) * test_size))]]
        return rows[keys < cut], rows[keys >= cut]
    groups = np.unique(keys.astype(str), return_inverse=True)[1]
    if groups.max() < 1:
        raise ValueError("needs at least 2 distinct values to split by group")
    splitter = GroupShuffleSplit(n_splits=1, test_size=test_size, random_state=seed)
    train, test = next(splitter.split(rows, groups=groups))
    return np.sort(train), np.sort(test)


def folds(kind: str, keys: np.ndarray, count: int, seed: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """Cross-validation folds over the training rows that follow the split: in time order (each fold
    validates on documents newer than those it trains on) or by group (no group in two folds)."""
    from sklearn.model_selection import GroupKFold, TimeSeriesSplit

    if kind == "time":
        order = np.argsort(keys, kind="stable")
        return [(order[fit], order[check]) for fit, check in TimeSeriesSplit(n_splits=count).split(order)]
    groups = np.unique(keys.astype(str), return_inverse=True)[1]
    splitter = GroupKFold(n_splits=count, shuffle=True, random_state=seed)
    return list(splitter.split(np.zeros(len(keys)), groups=groups))


# -- a MongoDB query evaluated on loaded documents ([evaluation].test_filter) -----------------------
_LOGICAL = ("$and", "$or", "$nor")
_EXTENDED_VALUES = {"$date", "$oid", "$numberLong", "$numberDecimal", "$numberInt", "$numberDouble", "$uuid"}
_OPERATORS = ("$eq", "$ne", "$gt", "$gte", "$lt", "$lte", "$in", "$nin", "$exists", "$not", "$regex", "$options")


def filter_fields(query: Any) -> list[str]:
    """The document paths a query reads; ValueError for an operator mlpack cannot evaluate."""
    if not isinstance(query, Mapping) or not query:
        raise ValueError("must be a non-empty table, e.g. { year = 2024 }")
    paths: list[str] = []
    for key, condition in query.items():
        if key in _LOGICAL:
            if not isinstance(condition, list) or not condition:
                raise ValueError(f"{key} takes a non-empty list of queries")
            for part in condition:
                paths += filter_fields(part)
        elif key.startswith("$"):
            raise ValueError(f"{key} is not supported here (supported: {', '.join(_LOGICAL + _OPERATORS)})")
        else:
            _check_condition(key, condition)
            paths.append(key)
    return list(dict.fromkeys(paths))


def _is_operators(condition: Any) -> bool:
    return isinstance(condition, Mapping) and bool(condition) and all(str(k).startswith("$") for k in condition)


def _check_condition(path: str, condition: Any) -> None:
    if not _is_operators(condition):
        return
    for operator, operand in condition.items():
        if operator not in _OPERATORS:
            # Extended JSON ({"$date": ...}) is a value, not an operator
            if operator in _EXTENDED_VALUES:
                return
            raise ValueError(f"'{path}': {operator} is not supported here (supported: {', '.join(_OPERATORS)})")
        if operator in ("$in", "$nin") and not isinstance(operand, list):
            raise ValueError(f"'{path}': {operator} takes a list")
        if operator == "$not":
            if not _is_operators(operand):
                raise ValueError(f"'{path}': $not takes a table of operators, e.g. {{ \"$gt\" = 5 }}")
            _check_condition(path, operand)


def matching(query: Mapping[str, Any], columns: Mapping[str, Sequence[Any]], rows: int) -> np.ndarray:
    """Which of `rows` loaded documents (columns: path → values) the [evaluation].test_filter matches."""
    parsed = _bson_values(query)
    paths = list(columns)
    return np.array([matches(parsed, dict(zip(paths, values))) for values in zip(*columns.values())] or [False] * rows)


def _bson_values(value: Any) -> Any:
    """TOML dates as midnight UTC, Extended JSON ({"$date": ...}, {"$oid": ...}) as the BSON values they name."""
    if isinstance(value, Mapping):
        converted = {key: _bson_values(item) for key, item in value.items()}
        return json_util.object_hook(converted) if converted and set(converted) <= _EXTENDED_VALUES else converted
    if isinstance(value, list):
        return [_bson_values(item) for item in value]
    if isinstance(value, datetime.date) and not isinstance(value, datetime.datetime):
        return datetime.datetime(value.year, value.month, value.day, tzinfo=datetime.UTC)
    return value


def matches(query: Mapping[str, Any], document: Mapping[str, Any]) -> bool:
    """Whether a document (path → loaded value, None for absent or null) matches the query, as MongoDB
    would for these operators: values compare within their type (numbers, text, dates, booleans),
    an array matches when one of its elements does."""
    for key, condition in query.items():
        if key == "$and":
            ok = all(matches(part, document) for part in condition)
        elif key == "$or":
            ok = any(matches(part, document) for part in condition)
        elif key == "$nor":
            ok = not any(matches(part, document) for part in condition)
        else:
            ok = _satisfies(document.get(key), condition)
        if not ok:
            return False
    return True


def _satisfies(value: Any, condition: Any) -> bool:
    if not _is_operators(condition):
        return _equal(value, condition)
    options = str(condition.get("$options", ""))
    for operator, operand in condition.items():
        if operator == "$options":
            continue
        if not _operator(operator, operand, value, options):
            return False
    return True


def _operator(operator: str, operand: Any, value: Any, options: str) -> bool:
    if operator == "$eq":
        return _equal(value, operand)
    if operator == "$ne":
        return not _equal(value, operand)
    if operator == "$in":
        return any(_equal(value, item) for item in operand)
    if operator == "$nin":
        return not any(_equal(value, item) for item in operand)
    if operator == "$exists":
        return (value is not None) == bool(operand)
    if operator == "$not":
        return not _satisfies(value, operand)
    if operator == "$regex":
        flags = re.IGNORECASE if "i" in options else 0
        return any(isinstance(v, str) and re.search(str(operand), v, flags) for v in _candidates(value))
    compare = {"$gt": lambda a, b: a > b, "$gte": lambda a, b: a >= b, "$lt": lambda a, b: a < b}
    compare["$lte"] = lambda a, b: a <= b
    wanted = _comparable(operand)
    if wanted is None:
        return False
    found = [_comparable(candidate) for candidate in _candidates(value)]
    return any(f is not None and f[0] == wanted[0] and compare[operator](f[1], wanted[1]) for f in found)


def _candidates(value: Any) -> list[Any]:
    return [value, *value] if isinstance(value, list) else [value]


def _comparable(value: Any) -> tuple[str, Any] | None:
    """(type bracket, comparable value): MongoDB compares only within a bracket."""
    if isinstance(value, bool):
        return ("bool", value)
    if isinstance(value, (int, float)) or type(value).__name__ in ("Int64", "Decimal128"):
        number = float(value.to_decimal()) if type(value).__name__ == "Decimal128" else float(value)
        return None if number != number else ("number", number)
    if isinstance(value, str):
        return ("string", value)
    if isinstance(value, datetime.datetime):
        return ("date", value if value.tzinfo else value.replace(tzinfo=datetime.UTC))
    return None


def _equal(value: Any, wanted: Any) -> bool:
    if wanted is None:
        return value is None
    target = _comparable(wanted)
    for candidate in _candidates(value):
        found = _comparable(candidate)
        if (found is not None and found == target) or (target is None and candidate == wanted):
            return True
    return False
