"""MongoDB queries: read from mlpack.toml once (`parse_query`), and evaluated on loaded documents in
Python ([evaluation].test_filter, `score --watch --filter`).

The same operators MongoDB applies, on the values mlpack read: the holdout of a filter split is
exactly the documents the server would have matched.
"""

from __future__ import annotations

import datetime
import re
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from bson import json_util
from bson.errors import BSONError

_LOGICAL = ("$and", "$or", "$nor")
_EXTENDED_VALUES = {
    *("$date", "$oid", "$numberLong", "$numberDecimal", "$numberInt", "$numberDouble", "$uuid"),
    *("$binary", "$timestamp", "$minKey", "$maxKey", "$regularExpression"),
}
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
    paths = list(columns)
    return np.array([matches(query, dict(zip(paths, values))) for values in zip(*columns.values())] or [False] * rows)


def parse_query(query: Mapping[str, Any]) -> dict[str, Any]:
    """A query as mlpack.toml writes it, as MongoDB takes it; the config reads [source].filter and
    [evaluation].test_filter through this once, and every stage is handed the result. A TOML date is
    midnight UTC and a local date-time is UTC (as the server would read it); Extended JSON
    ({"$date": ...}, {"$oid": ...}) is the BSON value it names; an operator ({"$regex": ...}) stays an
    operator, so the server and `matches` read it alike. ValueError says what MongoDB has no type for."""
    try:
        parsed = _bson_values(query)
    except _NoMongoType:
        raise
    except (BSONError, ValueError, TypeError) as exc:  # a malformed $oid, $date, $numberLong ...
        raise ValueError(f"is not a valid query: {exc}") from None
    return dict(parsed)


class _NoMongoType(ValueError):
    pass


def _bson_values(value: Any) -> Any:
    if isinstance(value, Mapping):
        converted = {key: _bson_values(item) for key, item in value.items()}
        return json_util.object_hook(converted) if converted and set(converted) <= _EXTENDED_VALUES else converted
    if isinstance(value, list):
        return [_bson_values(item) for item in value]
    if isinstance(value, datetime.datetime):
        return value if value.tzinfo else value.replace(tzinfo=datetime.UTC)
    if isinstance(value, datetime.date):
        return datetime.datetime(value.year, value.month, value.day, tzinfo=datetime.UTC)
    if isinstance(value, datetime.time):
        raise _NoMongoType(f"holds a time of day ({value}), which has no MongoDB type: use a full date-time")
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
