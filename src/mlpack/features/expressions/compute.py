"""Computing the tree with `Ops`: the numpy reference (`evaluate`) and the ONNX graph are the same steps."""

from __future__ import annotations

from collections.abc import Callable, Mapping

import numpy as np

from mlpack.features.expressions.functions import _ONNX_BINARY, _ONNX_COMPARE, FUNCTIONS, _nan_if_any, _truth
from mlpack.features.expressions.language import input_fields
from mlpack.features.expressions.nodes import (
    Binary,
    Call,
    Compare,
    Expression,
    Field,
    Kind,
    Logic,
    Member,
    Node,
    Number,
    Text,
    Unary,
)
from mlpack.features.ops import NumpyOps, Ops, Value


# -- computing ------------------------------------------------------------------------------------
def compute(expressions: list[Expression], ops: Ops, inputs: Mapping[str, Value]) -> dict[str, Value]:
    """Each expression's float32 value, non-finite results made NaN. `inputs`: field path → value."""
    derived = _Derived(expressions, ops, inputs)
    return {expression.name: derived.value_of(expression.name) for expression in expressions}


class _Derived:
    """Each derived feature's value, computed once when first asked for (an expression may read another).
    Not a closure that refers to itself: that was a reference cycle, which kept every intermediate array
    of every row until the garbage collector ran (large arrays do not prompt it; at a million documents
    tens of MiB through the preprocessing's fit)."""

    def __init__(self, expressions: list[Expression], ops: Ops, inputs: Mapping[str, Value]) -> None:
        self.by_name = {expression.name: expression for expression in expressions}
        self.ops, self.inputs = ops, inputs
        self.done: dict[str, Value] = {}

    def value_of(self, name: str) -> Value:
        if name not in self.done:
            expression, ops = self.by_name[name], self.ops
            raw = _Computer(ops, self.inputs, self.value_of, expression.fields).node(expression.root)
            self.done[name] = ops.where(ops.unary("IsInf", raw), ops.number(float("nan")), raw)
        return self.done[name]


class _Computer:
    def __init__(
        self, ops: Ops, inputs: Mapping[str, Value], derived: Callable[[str], Value], kinds: Mapping[str, Kind]
    ) -> None:
        self.ops = ops
        self.inputs = inputs
        self.derived = derived
        self.kinds = kinds

    def kind(self, node: Node) -> str:
        if isinstance(node, Field):
            return self.kinds.get(node.path, "number")
        if isinstance(node, Call) and FUNCTIONS[node.name].returns == "arg":
            kinds = [self.kind(arg) for arg in node.args if not isinstance(arg, (Text, Number))]
            return kinds[0] if kinds else "category"
        return "string" if isinstance(node, Text) else "number"

    def node(self, node: Node) -> Value:
        ops = self.ops
        if isinstance(node, Number):
            return ops.number(node.value)
        if isinstance(node, Field):
            return self.inputs[node.path] if node.path in self.kinds else self.derived(node.path)
        if isinstance(node, Unary):
            operand = self.node(node.operand)
            if node.op == "-":
                return ops.unary("Neg", operand)
            negated = ops.cast(ops.unary("Not", _truth(ops, operand)), "float32")
            return _nan_if_any(ops, negated, (operand,))
        if isinstance(node, Binary):
            return ops.binary(_ONNX_BINARY[node.op], self.node(node.left), self.node(node.right))
        if isinstance(node, Logic):
            operands = [self.node(operand) for operand in node.operands]
            combined = _truth(ops, operands[0])
            for operand in operands[1:]:
                combined = ops.binary("And" if node.op == "and" else "Or", combined, _truth(ops, operand))
            return _nan_if_any(ops, ops.cast(combined, "float32"), operands)
        if isinstance(node, Compare):
            return self.compare(node)
        if isinstance(node, Member):
            return self.member(node)
        if isinstance(node, Text):  # a string constant (coalesce's last resort)
            return ops.text(node.value)
        function = FUNCTIONS[node.name]
        wanted = [function.args[min(i, len(function.args) - 1)] for i in range(len(node.args))]
        # A "literal" argument (contains' text) is passed as the Python string itself.
        args = [
            arg.value if w == "literal" and isinstance(arg, Text) else self.node(arg)
            for arg, w in zip(node.args, wanted)
        ]
        return function.compute(ops, tuple(self.kind(arg) for arg in node.args), *args)

    def member(self, node: Member) -> Value:
        """x in [a, b]: x == a or x == b (a missing number stays missing; a missing category is in no list)."""
        ops = self.ops
        operand = self.node(node.operand)
        if isinstance(node.values[0], Text):
            found = ops.number(0.0)
            for text in dict.fromkeys(str(v.value) for v in node.values):  # distinct: at most one matches
                found = ops.binary("Add", found, ops.equals_text(operand, text))
            return ops.binary("Sub", ops.number(1.0), found) if node.negated else found
        equal = None
        for number in dict.fromkeys(float(v.value) for v in node.values):
            test = ops.binary("Equal", operand, ops.number(number))
            equal = test if equal is None else ops.binary("Or", equal, test)
        assert equal is not None
        result = ops.unary("Not", equal) if node.negated else equal
        return _nan_if_any(ops, ops.cast(result, "float32"), (operand,))

    def compare(self, node: Compare) -> Value:
        ops = self.ops
        if isinstance(node.left, Text) or isinstance(node.right, Text):
            text, category = (node.left, node.right) if isinstance(node.left, Text) else (node.right, node.left)
            assert isinstance(text, Text)
            equal = ops.equals_text(self.node(category), text.value)
            return equal if node.op == "==" else ops.binary("Sub", ops.number(1.0), equal)
        left, right = self.node(node.left), self.node(node.right)
        if node.op == "!=":
            result = ops.unary("Not", ops.binary("Equal", left, right))
        else:
            result = ops.binary(_ONNX_COMPARE[node.op], left, right)
        return _nan_if_any(ops, ops.cast(result, "float32"), (left, right))


def evaluate(expressions: list[Expression], columns: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The numpy reference: each derived feature for columns of raw values keyed by document path.

    Numbers are computed in float32, as the graph computes them; categories are strings, dates
    int64 milliseconds (MISSING_DATE for missing).
    """
    inputs: dict[str, np.ndarray] = {}
    for path, kind in input_fields(expressions).items():
        values = np.asarray(columns[path])
        if kind == "number":
            inputs[path] = values.astype(np.float32)
        elif kind == "date":
            inputs[path] = values.astype(np.int64)
        else:
            inputs[path] = values.astype(object)
    results = compute(expressions, NumpyOps(), inputs)
    rows = len(next(iter(columns.values()))) if columns else 0
    return {name: np.broadcast_to(value, (rows,)).astype(np.float32) for name, value in results.items()}
