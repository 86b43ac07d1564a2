"""The few tensor operations feature engineering is written in, and their numpy implementation.

Expressions and date parts are written once against `Ops`; `NumpyOps` runs them on arrays (the
reference scikit-learn trains with) and `converters.OnnxOps` writes the same steps as ONNX nodes.
Every step is one ONNX operator with numpy's meaning, so the two agree value for value:
numbers are float32 (the graph's numeric inputs), dates int64 milliseconds, categories strings.
"""

from __future__ import annotations

import math
import re
from typing import Any, Protocol

import numpy as np

# A missing date fed to the graph: int64 cannot hold NaN, and no real date is this far in the past.
MISSING_DATE = np.iinfo(np.int64).min

Value = Any  # an array (numpy) or the name of a graph variable (ONNX)


class Ops(Protocol):
    def number(self, value: float) -> Value: ...
    def integer(self, value: int) -> Value: ...
    def binary(self, op: str, left: Value, right: Value) -> Value:
        """ONNX's Add Sub Mul Div Pow Min Max Mod Less LessOrEqual Greater GreaterOrEqual Equal And Or."""
        ...

    def unary(self, op: str, operand: Value) -> Value:
        """ONNX's Neg Abs Floor Ceil Exp Log Sqrt IsNaN IsInf Not."""
        ...

    def cast(self, value: Value, dtype: str) -> Value:
        """To "float32", "float64", "int64" or "bool"."""
        ...

    def where(self, condition: Value, then: Value, otherwise: Value) -> Value: ...
    def equals_text(self, value: Value, text: str) -> Value:
        """1.0 where a string tensor equals `text`, else 0.0 (float32)."""
        ...

    def is_number_literal(self, value: Value) -> bool:
        """True for a constant made by `number` that is not NaN (it can never be missing)."""
        ...

    # Strings (categories): each the same in numpy and in the graph's ops (features/string_ops.py).
    def text(self, value: str) -> Value:
        """A string constant."""
        ...

    def lower(self, value: Value) -> Value:
        """Lowercased as the graph's StringNormalizer does: `graph_lower`."""
        ...

    def strip(self, value: Value) -> Value:
        """Without leading and trailing SPACES."""
        ...

    def contains(self, value: Value, text: str) -> Value:
        """1.0 where the string contains `text`, else 0.0 (float32)."""
        ...

    def length(self, value: Value) -> Value:
        """The number of characters (code points), float32."""
        ...

    def to_number(self, value: Value) -> Value:
        """The number a string spells (NUMBER, spaces around allowed), else NaN; float32."""
        ...


SPACES = " \t\n\f\r\v"  # what strip() removes: ASCII white space, as re2's character classes spell it
# A decimal number as text, the same pattern for Python's `re` (ASCII) and re2 (the graph's tokenizer).
NUMBER = r"^[ \t\n\f\r\v]*[-+]?([0-9]+(\.[0-9]*)?|\.[0-9]+)([eE][-+]?[0-9]+)?[ \t\n\f\r\v]*$"
_NUMBER = re.compile(NUMBER, re.ASCII)


def graph_lower(text: str) -> str:
    """Lowercase as the graph does (onnxruntime's StringNormalizer, glibc's towlower): character by
    character. Python's whole-string rules for "İ" (to "i̇") and a final "Σ" (to "ς") are the only ones
    that differ, measured over every assigned code point."""
    lowered = text.lower()
    if len(lowered) == len(text) and "Σ" not in text:
        return lowered
    return "".join(char.lower()[0] for char in text)


def _number(text: str) -> float:
    return float(text.strip(SPACES)) if _NUMBER.match(text) else math.nan


_BINARY = {
    "Add": np.add,
    "Sub": np.subtract,
    "Mul": np.multiply,
    "Pow": np.power,
    "Min": np.minimum,
    "Max": np.maximum,
    "Mod": np.mod,  # ONNX Mod with fmod=0: the remainder takes the divisor's sign, like Python's %
    "Less": np.less,
    "LessOrEqual": np.less_equal,
    "Greater": np.greater,
    "GreaterOrEqual": np.greater_equal,
    "Equal": np.equal,
    "And": np.logical_and,
    "Or": np.logical_or,
}
_UNARY = {
    "Neg": np.negative,
    "Abs": np.abs,
    "Floor": np.floor,
    "Ceil": np.ceil,
    "Exp": np.exp,
    "Log": np.log,
    "Sqrt": np.sqrt,
    "IsNaN": np.isnan,
    "IsInf": np.isinf,
    "Not": np.logical_not,
}
_DTYPES = {"float32": np.float32, "float64": np.float64, "int64": np.int64, "bool": np.bool_}


class NumpyOps:
    """The reference implementation: what scikit-learn trains on and the graph must reproduce."""

    def number(self, value: float) -> np.ndarray:
        return np.array(value, dtype=np.float32)

    def integer(self, value: int) -> np.ndarray:
        return np.array(value, dtype=np.int64)

    def binary(self, op: str, left: np.ndarray, right: np.ndarray) -> np.ndarray:
        with np.errstate(all="ignore"):
            if op == "Div":
                if left.dtype.kind == "i":  # ONNX divides integers by truncating toward zero
                    quotient = np.abs(left) // np.abs(right)
                    return np.asarray(np.where((left < 0) != (right < 0), -quotient, quotient))
                return np.asarray(np.divide(left, right))
            return np.asarray(_BINARY[op](left, right))

    def unary(self, op: str, operand: np.ndarray) -> np.ndarray:
        with np.errstate(all="ignore"):
            return np.asarray(_UNARY[op](operand))

    def cast(self, value: np.ndarray, dtype: str) -> np.ndarray:
        with np.errstate(all="ignore"):
            return value.astype(_DTYPES[dtype])

    def where(self, condition: np.ndarray, then: np.ndarray, otherwise: np.ndarray) -> np.ndarray:
        return np.asarray(np.where(condition, then, otherwise))

    def equals_text(self, value: np.ndarray, text: str) -> np.ndarray:
        return (value == text).astype(np.float32)

    def is_number_literal(self, value: np.ndarray) -> bool:
        return value.ndim == 0 and value.dtype == np.float32 and not np.isnan(value)

    def text(self, value: str) -> np.ndarray:
        return np.array(value, dtype=object)

    def lower(self, value: np.ndarray) -> np.ndarray:
        return _strings(value, graph_lower, object)

    def strip(self, value: np.ndarray) -> np.ndarray:
        return _strings(value, lambda text: text.strip(SPACES), object)

    def contains(self, value: np.ndarray, text: str) -> np.ndarray:
        return _strings(value, lambda string: float(text in string), np.float32)

    def length(self, value: np.ndarray) -> np.ndarray:
        return _strings(value, lambda text: float(len(text)), np.float32)

    def to_number(self, value: np.ndarray) -> np.ndarray:
        with np.errstate(over="ignore"):  # 1e400 is inf, as the graph's Cast makes it
            return _strings(value, _number, np.float32)


def _strings(value: np.ndarray, function: Any, dtype: Any) -> np.ndarray:
    flat = [function(item) for item in np.asarray(value, dtype=object).ravel().tolist()]
    return np.array(flat, dtype=dtype).reshape(np.shape(value))
