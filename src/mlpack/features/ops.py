"""The few tensor operations feature engineering is written in, and their numpy implementation.

Expressions and date parts are written once against `Ops`; `NumpyOps` runs them on arrays (the
reference scikit-learn trains with) and `converters.OnnxOps` writes the same steps as ONNX nodes.
Every step is one ONNX operator with numpy's meaning, so the two agree value for value:
numbers are float32 (the graph's numeric inputs), dates int64 milliseconds, categories strings.
"""

from __future__ import annotations

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
