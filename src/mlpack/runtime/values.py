"""One reading of a document, in training and in prediction: paths, numbers, category text, dates."""

from __future__ import annotations

import datetime as _dt
import math
import re
from collections.abc import Mapping, Sequence
from typing import Any, Optional

import numpy as np

from .contract import FLOAT32_MAX, MISSING_CATEGORY


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


def absent_reason(document: Mapping[str, Any], parts: Sequence[str]) -> str:
    """Why `strict` refuses a field `lookup` found absent, for its message only (never on the way of a
    value that is there): a parent that is a plain value is named, since `lookup` reads it as having no
    fields, as MongoDB's projection does ("acidity is 5, not a document")."""
    node: Any = document
    for depth, part in enumerate(parts[:-1]):
        node = node.get(part, ABSENT) if isinstance(node, Mapping) else ABSENT
        if node is ABSENT:
            break
        if not isinstance(node, Mapping):
            shown = "null" if node is None else _shown(node)
            return (
                f"absent ({'.'.join(parts[: depth + 1])} is {shown}, not a document; strict: every field must be given)"
            )
    return "absent (strict: every field must be given)"


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _is_decimal(value: Any) -> bool:
    return type(value).__name__ in ("Decimal128", "Decimal")


def _date_hint(value: Any) -> Optional[str]:
    if isinstance(value, (_dt.date, _dt.time, np.datetime64)):
        return "list the field under [features].datetime"
    return None


# Text a numeric field may hold for "no value", compared stripped and case-insensitively: R's NA
# and pandas' read_csv missing markers (its defaults without the platform ones like "1.#IND").
MISSING_NUMBER_TEXTS = ("", "na", "n/a", "#n/a", "nan", "-nan", "null", "none", "<na>")
_MISSING_TEXTS = frozenset(MISSING_NUMBER_TEXTS)
# A number written as text: decimal digits (ASCII only), optional sign, fraction and exponent; no
# thousands separators, underscores, hex, "inf" or other spellings float() would also take.
_NUMBER_TEXT = re.compile(r"[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?", re.ASCII)
_INTEGER_TEXT = re.compile(r"-?\d+", re.ASCII)
_THOUSANDS = re.compile(r"[+-]?\d{1,3}(?:,\d{3})+(?:\.\d*)?", re.ASCII)
# Canonical Extended JSON numbers (mongoexport, EJSON.stringify): the text is the number.
_EXTENDED_NUMBERS = ("$numberInt", "$numberLong", "$numberDouble", "$numberDecimal")
_EXTENDED_SPECIAL = {"NaN": math.nan, "-NaN": math.nan, "Infinity": math.inf, "-Infinity": -math.inf, "Inf": math.inf}


def extended_number(value: Any) -> Any:
    """{"$numberInt": "3"} → 3, {"$numberDouble": "0.5"} → 0.5 (an int for Int/Long, else a float);
    None when `value` is not a canonical Extended JSON number. A malformed one is a ValueError."""
    if not isinstance(value, Mapping) or len(value) != 1:
        return None
    key, text = next(iter(value.items()))
    if key not in _EXTENDED_NUMBERS:
        return None
    if isinstance(text, str):
        if key in ("$numberInt", "$numberLong"):
            if _INTEGER_TEXT.fullmatch(text) and len(text) <= 400:  # int() refuses thousands of digits
                return int(text)
        elif text in _EXTENDED_SPECIAL:
            return _EXTENDED_SPECIAL[text]
        elif _NUMBER_TEXT.fullmatch(text):
            return float(text)
    raise ValueError(f"expected a number, got {_shown(value)} (not a valid Extended JSON {key})")


def _number_text(text: str) -> float:
    """A numeric field's text: a missing marker (MISSING_NUMBER_TEXTS) is NaN, a number with spaces around
    it is that number; anything else is a ValueError."""
    cleaned = text.strip()
    if cleaned.lower() in _MISSING_TEXTS:
        return math.nan
    if _NUMBER_TEXT.fullmatch(cleaned):
        return _in_range(float(cleaned), text)
    if _THOUSANDS.fullmatch(cleaned):
        raise ValueError(f"expected a number, got {_shown(text)} (thousands separators are not read)")
    raise ValueError(f"expected a number, got {_shown(text)}")


def _in_range(number: float, value: Any) -> float:
    if number != number:
        return math.nan
    if not -FLOAT32_MAX <= number <= FLOAT32_MAX:
        raise ValueError(f"{_shown(value)} is not a finite number within float32 range")
    return number


def to_number(value: Any) -> float:
    """A numeric field's value as training and prediction both read it; NaN = missing.

    Numbers (int, float, numpy, Decimal128) as they are; text is stripped, a missing marker
    (MISSING_NUMBER_TEXTS: "NA", "", "n/a", "NaN", "null", ... in any case) is missing, and a
    decimal number (" 54 ", "131.0", "-1e3") is read; canonical Extended JSON numbers
    ({"$numberDouble": "0.0"}) are their number. ValueError (without the field's name: the caller
    adds it) for anything else.
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
        if number != number:  # written out, not _in_range: this is the loop of every training value
            return math.nan
        if not -FLOAT32_MAX <= number <= FLOAT32_MAX:
            raise ValueError(f"{_shown(value)} is not a finite number within float32 range")
        return number
    if isinstance(value, str):
        return _number_text(value)
    extended = extended_number(value)
    if extended is not None:
        try:
            return _in_range(float(extended), value)
        except OverflowError:
            raise ValueError(f"{_shown(value)} is too large a number") from None
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
    extended = extended_number(value)
    if extended is not None:
        return category_text(extended)
    hint = _date_hint(value)
    if hint:
        raise ValueError(f"a date is not a category ({_shown(value)}): {hint}")
    if isinstance(value, (Mapping, list, tuple, set, np.ndarray, bytes, bytearray)):
        raise ValueError(f"expected a category (string, number or boolean), got {_shown(value)}")
    return str(value)  # ObjectId, UUID and the like: their text is their identity


# Types `np.array(values, dtype=float64)` converts exactly as `to_number` would (None → NaN).

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
