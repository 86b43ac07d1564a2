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
    args: tuple[str, ...]  # kind of each argument: "number", "date" or "any" ("*" suffix: repeats)
    compute: Callable[..., Value]  # (ops, kinds, *args) -> float32 value
    min_args: int = 0  # for repeating arguments


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
