"""The `[features.derived]` language: parse with `ast` into a whitelist, check types, compute.

An expression is parsed by Python's own parser but never evaluated by Python: only the nodes
below become an `Expression` tree, and anything else (attribute calls, subscripts, lambdas,
keywords, names of Python builtins) is refused with a pointer to where it stands. The tree is
computed with `Ops`, so the numpy reference (`evaluate`) and the ONNX graph are the same steps.

Values have kinds: numbers (float32; NaN = missing), categories (strings; "__missing__" = missing)
and dates (int64 milliseconds; MISSING_DATE = missing). A derived feature is a number; a result
that is not finite (division by zero, log of 0) is missing and imputed like any missing number.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Literal

import numpy as np

from mlpack.errors import ConfigError
from mlpack.features import dates
from mlpack.features.ops import MISSING_DATE, NumpyOps, Ops, Value

Kind = Literal["number", "category", "date", "text"]
_MISSING_CATEGORY = "__missing__"  # mlpack.runtime.MISSING_CATEGORY: a missing category's value
NAME_PATTERN = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


# -- the tree -------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Number:
    value: float
    at: int


@dataclass(frozen=True)
class Text:
    value: str
    at: int


@dataclass(frozen=True)
class Field:
    path: str  # a document path ("billing.total") or the name of another derived feature
    at: int


@dataclass(frozen=True)
class Unary:
    op: str  # "-" or "not"
    operand: Node
    at: int


@dataclass(frozen=True)
class Binary:
    op: str  # + - * / **
    left: Node
    right: Node
    at: int


@dataclass(frozen=True)
class Compare:
    op: str  # == != < <= > >=
    left: Node
    right: Node
    at: int


@dataclass(frozen=True)
class Logic:
    op: str  # "and" or "or"
    operands: tuple[Node, ...]
    at: int


@dataclass(frozen=True)
class Call:
    name: str
    args: tuple[Node, ...]
    at: int


Node = Number | Text | Field | Unary | Binary | Compare | Logic | Call


@dataclass(frozen=True)
class Expression:
    name: str  # the derived feature's name
    text: str
    root: Node
    fields: dict[str, Kind] = field(default_factory=dict)  # document paths it reads (itself), by kind
    uses: tuple[str, ...] = ()  # other derived features it reads


class ExpressionError(ConfigError):
    """A derived feature that cannot be computed: names the feature and points at the place."""

    def __init__(self, name: str, text: str, at: int, problem: str) -> None:
        line_start = text.rfind("\n", 0, at) + 1
        line_end = text.find("\n", at)
        line = text[line_start : line_end if line_end >= 0 else len(text)]
        pointer = " " * (at - line_start) + "^"
        column = at - line_start + 1
        super().__init__(
            f"[features.derived].{name}: {problem} (column {column})", details=f"    {line}\n    {pointer}"
        )
        self.problem = problem
        self.at = at


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
_KIND_WORDS = {"category": "a category", "date": "a date", "text": "a text field", "string": "a string"}


# -- parsing --------------------------------------------------------------------------------------
class _Parser:
    def __init__(self, name: str, text: str) -> None:
        self.name = name
        self.text = text
        self.indent = len(text) - len(text.lstrip())
        self.source = text.lstrip()
        self.line_starts = [0]
        for index, char in enumerate(self.source):
            if char == "\n":
                self.line_starts.append(index + 1)

    def fail(self, at: int, problem: str) -> ExpressionError:
        return ExpressionError(self.name, self.text, at, problem)

    def at(self, node: ast.AST) -> int:
        """A node's character offset in the text (ast gives UTF-8 byte columns per line)."""
        line = self.line_starts[getattr(node, "lineno", 1) - 1]
        end = self.source.find("\n", line)
        raw = self.source[line : end if end >= 0 else len(self.source)].encode()
        column = len(raw[: getattr(node, "col_offset", 0)].decode(errors="ignore"))
        return self.indent + line + column

    def parse(self) -> Node:
        if not self.source.strip():
            raise self.fail(0, "the expression is empty")
        try:
            tree = ast.parse(self.source, mode="eval")
        except SyntaxError as exc:
            line = self.line_starts[min(max((exc.lineno or 1) - 1, 0), len(self.line_starts) - 1)]
            at = min(self.indent + line + max((exc.offset or 1) - 1, 0), max(len(self.text) - 1, 0))
            raise self.fail(at, f"syntax error: {exc.msg}") from None
        return self.node(tree.body)

    def node(self, node: ast.expr) -> Node:
        at = self.at(node)
        if isinstance(node, ast.Constant):
            if isinstance(node.value, bool) or not isinstance(node.value, (int, float, str)):
                raise self.fail(at, f"{node.value!r} is not a number or a 'string'")
            if isinstance(node.value, str):
                return Text(node.value, at)
            return Number(float(node.value), at)
        if isinstance(node, (ast.Name, ast.Attribute)):
            return Field(self.path(node), at)
        if isinstance(node, ast.UnaryOp):
            if isinstance(node.op, ast.USub):
                return Unary("-", self.node(node.operand), at)
            if isinstance(node.op, ast.UAdd):
                return self.node(node.operand)
            if isinstance(node.op, ast.Not):
                return Unary("not", self.node(node.operand), at)
            raise self.fail(at, "operator '~' is not supported (use not)")
        if isinstance(node, ast.BinOp):
            op = _BINARY.get(type(node.op))
            if op is None:
                raise self.fail(self.operator_at(node), "operator not supported (use + - * / **)")
            return Binary(op, self.node(node.left), self.node(node.right), self.operator_at(node))
        if isinstance(node, ast.Compare):
            left = node.left
            pairs: list[Node] = []
            for operator, right in zip(node.ops, node.comparators):
                op = _COMPARE.get(type(operator))
                if op is None:
                    raise self.fail(at, "comparison not supported (use == != < <= > >=)")
                pairs.append(Compare(op, self.node(left), self.node(right), self.at(left)))
                left = right
            return pairs[0] if len(pairs) == 1 else Logic("and", tuple(pairs), at)
        if isinstance(node, ast.BoolOp):
            op = "and" if isinstance(node.op, ast.And) else "or"
            return Logic(op, tuple(self.node(value) for value in node.values), at)
        if isinstance(node, ast.Call):
            if not isinstance(node.func, ast.Name):
                raise self.fail(at, "only the functions of the expression language can be called")
            if node.keywords:
                raise self.fail(self.at(node.keywords[0].value), "functions take no keyword arguments")
            name = node.func.id
            if name not in FUNCTIONS:
                raise self.fail(at, f"unknown function '{name}' (known: {', '.join(FUNCTIONS)})")
            if any(isinstance(arg, ast.Starred) for arg in node.args):
                raise self.fail(at, "'*' arguments are not supported")
            return Call(name, tuple(self.node(arg) for arg in node.args), at)
        what = type(node).__name__.lower()
        raise self.fail(at, f"'{ast.unparse(node)}' is not part of the expression language ({what})")

    def path(self, node: ast.expr) -> str:
        parts: list[str] = []
        while isinstance(node, ast.Attribute):
            parts.append(node.attr)
            node = node.value
        if not isinstance(node, ast.Name):
            raise self.fail(self.at(node), "a field path is made of names joined by dots")
        if node.id in FUNCTIONS and not parts:
            raise self.fail(self.at(node), f"'{node.id}' is a function: call it, e.g. {node.id}(x)")
        if node.id in ("True", "False", "None"):
            raise self.fail(self.at(node), f"unknown name '{node.id}' (use 1, 0 or isnull(...))")
        return ".".join([node.id, *reversed(parts)])

    def operator_at(self, node: ast.BinOp) -> int:
        """Where the operator itself stands (between the operands), for pointing at it."""
        end = getattr(node.left, "end_col_offset", None)
        if end is None or getattr(node.left, "end_lineno", None) != getattr(node, "lineno", None):
            return self.at(node)
        start = self.at(node) - getattr(node, "col_offset", 0) + end
        gap = self.text[start:]
        return start + (len(gap) - len(gap.lstrip()))


# -- kinds ----------------------------------------------------------------------------------------
class _Checker:
    """Infers the kind of each field an expression reads, then checks every operation's kinds."""

    def __init__(self, parser: _Parser, declared: Mapping[str, Kind], derived: set[str]) -> None:
        self.parser = parser
        self.declared = declared
        self.derived = derived
        self.inferred: dict[str, tuple[Kind, int]] = {}

    def kind_of_field(self, path: str) -> Kind:
        if path in self.derived:
            return "number"
        if path in self.declared:
            return self.declared[path]
        return self.inferred.get(path, ("number", 0))[0]

    def expect(self, node: Node, kind: str) -> None:
        """Record what a context wants of a field no [features] list declares."""
        if not isinstance(node, Field) or node.path in self.declared or node.path in self.derived or kind == "any":
            return
        assert kind in ("number", "category", "date")
        seen = self.inferred.get(node.path)
        if seen is None:
            self.inferred[node.path] = (kind, node.at)  # type: ignore[assignment]
        elif seen[0] != kind:
            column = seen[1] - self.parser.text.rfind("\n", 0, seen[1])
            raise self.parser.fail(
                node.at,
                f"field '{node.path}' is used as {_word(kind)} here but as {_word(seen[0])} at column {column}",
            )

    def infer(self, node: Node, context: str = "number") -> None:
        if isinstance(node, Field):
            self.expect(node, context)
        elif isinstance(node, Compare):
            if node.op in ("==", "!=") and (isinstance(node.left, Text) or isinstance(node.right, Text)):
                self.infer(node.left, "category")
                self.infer(node.right, "category")
            else:
                self.infer(node.left, "number")
                self.infer(node.right, "number")
        elif isinstance(node, Call):
            function = FUNCTIONS[node.name]
            for index, arg in enumerate(node.args):
                wanted = function.args[min(index, len(function.args) - 1)].rstrip("*")
                self.infer(arg, wanted)
        elif isinstance(node, Unary):
            self.infer(node.operand)
        elif isinstance(node, Binary):
            self.infer(node.left)
            self.infer(node.right)
        elif isinstance(node, Logic):
            for operand in node.operands:
                self.infer(operand)

    def check(self, node: Node) -> str:
        """The node's kind ("number", "category", "date", "text", or "string" for a literal)."""
        if isinstance(node, Number):
            return "number"
        if isinstance(node, Text):
            return "string"
        if isinstance(node, Field):
            kind = self.kind_of_field(node.path)
            if kind == "text":
                raise self.parser.fail(node.at, f"'{node.path}' is a text field: expressions cannot read text")
            return kind
        if isinstance(node, Unary):
            self.number(node.operand, f"'{node.op}'")
            return "number"
        if isinstance(node, Binary):
            self.number(node.left, f"arithmetic ('{node.op}')")
            self.number(node.right, f"arithmetic ('{node.op}')")
            return "number"
        if isinstance(node, Logic):
            for operand in node.operands:
                self.number(operand, f"'{node.op}'")
            return "number"
        if isinstance(node, Compare):
            return self.check_compare(node)
        function = FUNCTIONS[node.name]
        repeating = function.args[-1].endswith("*")
        count = len(node.args)
        if (repeating and count < function.min_args) or (not repeating and count != len(function.args)):
            wanted = f"at least {function.min_args}" if repeating else str(len(function.args))
            raise self.parser.fail(node.at, f"{node.name}() takes {wanted} argument(s), got {count}")
        for index, arg in enumerate(node.args):
            wanted_kind = function.args[min(index, len(function.args) - 1)].rstrip("*")
            if wanted_kind == "number":
                self.number(arg, f"{node.name}()")
            elif wanted_kind == "date":
                arg_kind = self.check(arg)
                if arg_kind != "date":
                    raise self.parser.fail(_at(arg), f"{node.name}() needs a date, got {_word(arg_kind)}")
            else:
                arg_kind = self.check(arg)
                if arg_kind in ("category", "date") and not isinstance(arg, Field):
                    raise self.parser.fail(_at(arg), f"{node.name}() takes a field or a number")
                if arg_kind == "string":
                    raise self.parser.fail(_at(arg), f"{node.name}() of a 'string' is always 0")
        return "number"

    def check_compare(self, node: Compare) -> str:
        left, right = self.check(node.left), self.check(node.right)
        kinds = {left, right}
        if kinds == {"number"}:
            return "number"
        if kinds == {"category", "string"} and node.op in ("==", "!="):
            return "number"
        if "date" in kinds:
            side = node.left if left == "date" else node.right
            raise self.parser.fail(
                _at(side), "dates cannot be compared directly: use days_between(a, b) or a date part"
            )
        if "category" in kinds and node.op in ("==", "!="):
            side = node.right if left == "category" else node.left
            raise self.parser.fail(_at(side), "compare a category with a 'string', e.g. contract == 'monthly'")
        side = node.left if left != "number" else node.right
        if node.op in ("==", "!="):
            raise self.parser.fail(_at(side), f"cannot compare {_word(left)} with {_word(right)}")
        raise self.parser.fail(
            _at(side), f"'{node.op}' needs numbers, got {_word(left if left != 'number' else right)}"
        )

    def number(self, node: Node, where: str) -> None:
        kind = self.check(node)
        if kind == "number":
            return
        hint = {
            "category": " (compare it instead, e.g. x == 'value')",
            "date": " (use year(), month(), ..., or days_between())",
        }.get(kind, "")
        subject = f"'{node.path}' is {_word(kind)}: it" if isinstance(node, Field) else _word(kind)
        raise self.parser.fail(_at(node), f"{subject} cannot be used in {where}{hint}")


def _word(kind: str) -> str:
    return _KIND_WORDS.get(kind, "a number")


def _at(node: Node) -> int:
    return node.at


def _fields(node: Node) -> list[Field]:
    if isinstance(node, Field):
        return [node]
    children: tuple[Node, ...] = ()
    if isinstance(node, Unary):
        children = (node.operand,)
    elif isinstance(node, (Binary, Compare)):
        children = (node.left, node.right)
    elif isinstance(node, Logic):
        children = node.operands
    elif isinstance(node, Call):
        children = node.args
    return [found for child in children for found in _fields(child)]


def parse_derived(derived: Mapping[str, str], declared: Mapping[str, Kind]) -> list[Expression]:
    """`[features.derived]` → checked expressions, in the file's order.

    `declared` gives the kind of every field a [features] list names; other fields an expression
    reads get their kind from how they are used (a date function's argument is a date, a field
    compared with a 'string' is a category, anything else a number), and must be used one way.
    """
    names = set(derived)
    expressions: list[Expression] = []
    for name, text in derived.items():
        if not NAME_PATTERN.match(name) or name in FUNCTIONS:
            raise ConfigError(
                f"[features.derived].{name}: a derived feature's name must be a plain name (letters, digits, "
                "'_') that is not a function of the language"
            )
        if name in declared:
            raise ConfigError(f"[features.derived].{name}: the name is already a field listed in [features]")
        parser = _Parser(name, text)
        root = parser.parse()
        checker = _Checker(parser, declared, names - {name})
        checker.infer(root)
        kind = checker.check(root)
        if kind != "number":
            hint = " (compare it, e.g. x == 'value')" if kind == "category" else " (use a date part, e.g. year(x))"
            raise parser.fail(_at(root), f"the result must be a number, not {_word(kind)}{hint}")
        if not _fields(root):
            raise parser.fail(_at(root), "the expression reads no field: it would be the same for every document")
        for found in _fields(root):
            if found.path == name:
                raise parser.fail(found.at, f"'{name}' refers to itself")
        fields = {found.path: checker.kind_of_field(found.path) for found in _fields(root) if found.path not in names}
        uses = tuple(dict.fromkeys(found.path for found in _fields(root) if found.path in names))
        expressions.append(Expression(name, text, root, fields, uses))
    _check_cycles(expressions)
    return expressions


def _check_cycles(expressions: list[Expression]) -> None:
    by_name = {expression.name: expression for expression in expressions}

    def visit(name: str, trail: tuple[str, ...]) -> None:
        if name in trail:
            cycle = " -> ".join([*trail[trail.index(name) :], name])
            raise ConfigError(
                f"[features.derived].{trail[0]}: derived features refer to each other in a circle: {cycle}"
            )
        for used in by_name[name].uses:
            visit(used, (*trail, name))

    for expression in expressions:
        visit(expression.name, ())


def input_fields(expressions: list[Expression]) -> dict[str, Kind]:
    """Every document path the expressions read, with its kind, in order of first use."""
    fields: dict[str, Kind] = {}
    for expression in expressions:
        for path, kind in expression.fields.items():
            fields.setdefault(path, kind)
    return fields


def unknown_field(expressions: list[Expression], path: str, hint: str) -> ExpressionError:
    """The error for a field no document has, pointing at its first use (exit 2: the expression is wrong)."""
    for expression in expressions:
        for found in _fields(expression.root):
            if found.path == path:
                return ExpressionError(
                    expression.name, expression.text, found.at, f"unknown name '{path}': no document has it ({hint})"
                )
    raise KeyError(path)


# -- computing ------------------------------------------------------------------------------------
def compute(expressions: list[Expression], ops: Ops, inputs: Mapping[str, Value]) -> dict[str, Value]:
    """Each expression's float32 value, non-finite results made NaN. `inputs`: field path → value."""
    by_name = {expression.name: expression for expression in expressions}
    done: dict[str, Value] = {}

    def value_of(name: str) -> Value:
        if name not in done:
            expression = by_name[name]
            raw = _Computer(ops, inputs, value_of, expression.fields).node(expression.root)
            done[name] = ops.where(ops.unary("IsInf", raw), ops.number(float("nan")), raw)
        return done[name]

    return {expression.name: value_of(expression.name) for expression in expressions}


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
        if isinstance(node, Text):  # the checker allows strings only inside comparisons
            raise AssertionError(f"a string outside a comparison: {node.value!r}")
        args = [self.node(arg) for arg in node.args]
        return FUNCTIONS[node.name].compute(ops, tuple(self.kind(arg) for arg in node.args), *args)

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
