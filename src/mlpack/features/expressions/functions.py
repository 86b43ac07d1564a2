"""The functions of the language and the operators, each computed with `Ops` (numpy or ONNX)."""

from __future__ import annotations

import ast
from collections.abc import Callable
from dataclasses import dataclass

from mlpack.features import dates
from mlpack.features.expressions.nodes import _MISSING_CATEGORY
from mlpack.features.ops import MISSING_DATE, Ops, Value


# -- functions ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Function:
    # The kind of each argument ("*" suffix: repeats): "number", "date", "any"; "string" (a category or
    # a text field), "literal" (a 'string' written in the expression), "same" (one kind for all of them).
    args: tuple[str, ...]
    compute: Callable[..., Value]  # (ops, kinds, *args) -> value (float32 unless `returns` says otherwise)
    min_args: int = 0  # for repeating arguments
    returns: str = "number"  # or "arg": the kind of its first argument that is no literal


def _unary(op: str) -> Function:
    return Function(("number",), lambda ops, _kinds, x: ops.unary(op, x))


def _log1p(ops: Ops, _kinds: tuple[str, ...], x: Value) -> Value:
    # log(1 + x) in float32, step for step what the graph computes (np.log1p would be more exact
    # for tiny x, and would then disagree with the graph).
    return ops.unary("Log", ops.binary("Add", x, ops.number(1.0)))


def _extreme(op: str) -> Function:
    def compute(ops: Ops, _kinds: tuple[str, ...], *args: Value) -> Value:
        result = args[0]
        for arg in args[1:]:
            result = ops.binary(op, result, arg)
        return _nan_if_any(ops, result, args)

    return Function(("number*",), compute, min_args=2)


def _clip(ops: Ops, _kinds: tuple[str, ...], x: Value, low: Value, high: Value) -> Value:
    clipped = ops.binary("Min", ops.binary("Max", x, low), high)
    return _nan_if_any(ops, clipped, (x, low, high))


def _where(ops: Ops, _kinds: tuple[str, ...], condition: Value, then: Value, otherwise: Value) -> Value:
    chosen = ops.where(_truth(ops, condition), then, otherwise)
    return _nan_if_any(ops, chosen, (condition,))


def _isnull(ops: Ops, kinds: tuple[str, ...], x: Value) -> Value:
    if kinds[0] == "category":
        return ops.equals_text(x, _MISSING_CATEGORY)
    if kinds[0] == "date":
        return ops.cast(ops.binary("Equal", x, ops.integer(MISSING_DATE)), "float32")
    return ops.cast(ops.binary("Or", ops.unary("IsNaN", x), ops.unary("IsInf", x)), "float32")


def _missing(ops: Ops, kind: str, x: Value) -> Value:
    """True where a value of this kind is missing (a text field's missing value is "", no special value)."""
    if kind == "category":
        return ops.cast(ops.equals_text(x, _MISSING_CATEGORY), "bool")
    if kind == "date":
        return ops.binary("Equal", x, ops.integer(MISSING_DATE))
    if kind == "number":
        return ops.binary("Or", ops.unary("IsNaN", x), ops.unary("IsInf", x))
    return ops.cast(ops.number(0.0), "bool")


def _contains(ops: Ops, kinds: tuple[str, ...], x: Value, text: str) -> Value:
    return ops.where(_missing(ops, kinds[0], x), ops.number(0.0), ops.contains(x, text))  # as == is, for missing


def _length(ops: Ops, kinds: tuple[str, ...], x: Value) -> Value:
    return ops.where(_missing(ops, kinds[0], x), ops.number(float("nan")), ops.length(x))


def _coalesce(ops: Ops, kinds: tuple[str, ...], *args: Value) -> Value:
    """The first argument that is not missing (the last one, if all are)."""
    kind = next(k for k in kinds if k != "string") if any(k != "string" for k in kinds) else "category"
    result = args[-1]
    for arg in reversed(args[:-1]):
        result = ops.where(_missing(ops, kind, arg), result, arg)
    return result


def _date_part(part: str) -> Function:
    return Function(("date",), lambda ops, _kinds, ms: dates.date_parts(ops, ms, (part,))[part])


FUNCTIONS: dict[str, Function] = {
    "log": _unary("Log"),
    "log1p": Function(("number",), _log1p),
    "exp": _unary("Exp"),
    "sqrt": _unary("Sqrt"),
    "abs": _unary("Abs"),
    "floor": _unary("Floor"),
    "ceil": _unary("Ceil"),
    "min": _extreme("Min"),
    "max": _extreme("Max"),
    "clip": Function(("number", "number", "number"), _clip),
    "where": Function(("number", "number", "number"), _where),
    "isnull": Function(("any",), _isnull),
    **{part: _date_part(part) for part in ("year", "month", "day", "dayofweek", "hour")},
    "days_between": Function(("date", "date"), lambda ops, _kinds, a, b: dates.days_between(ops, a, b)),
    # Strings: categories and text fields. lower and strip give a string, to compare or to read further.
    "lower": Function(("string",), lambda ops, _kinds, x: ops.lower(x), returns="arg"),
    "strip": Function(("string",), lambda ops, _kinds, x: ops.strip(x), returns="arg"),
    "contains": Function(("string", "literal"), _contains),
    "length": Function(("string",), _length),
    "number": Function(("string",), lambda ops, _kinds, x: ops.to_number(x)),
    "coalesce": Function(("same*",), _coalesce, min_args=2, returns="arg"),
}

_BINARY = {ast.Add: "+", ast.Sub: "-", ast.Mult: "*", ast.Div: "/", ast.Pow: "**"}
_ONNX_BINARY = {"+": "Add", "-": "Sub", "*": "Mul", "/": "Div", "**": "Pow"}
_COMPARE = {ast.Eq: "==", ast.NotEq: "!=", ast.Lt: "<", ast.LtE: "<=", ast.Gt: ">", ast.GtE: ">="}
_ONNX_COMPARE = {"==": "Equal", "<": "Less", "<=": "LessOrEqual", ">": "Greater", ">=": "GreaterOrEqual"}


def _truth(ops: Ops, value: Value) -> Value:
    return ops.unary("Not", ops.binary("Equal", value, ops.number(0.0)))


def _nan_if_any(ops: Ops, result: Value, operands: tuple[Value, ...] | list[Value]) -> Value:
    """A missing operand makes the result missing (comparisons and min/max would otherwise hide it)."""
    missing = None
    for operand in operands:
        if ops.is_number_literal(operand):
            continue  # a literal number is never missing
        isnan = ops.unary("IsNaN", operand)
        missing = isnan if missing is None else ops.binary("Or", missing, isnan)
    return result if missing is None else ops.where(missing, ops.number(float("nan")), result)
