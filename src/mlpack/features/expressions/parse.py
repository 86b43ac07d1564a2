"""Text → tree with Python's own parser, keeping only the whitelisted nodes."""

from __future__ import annotations

import ast

from mlpack.features.expressions.functions import _BINARY, _COMPARE, FUNCTIONS
from mlpack.features.expressions.nodes import (
    Binary,
    Call,
    Compare,
    ExpressionError,
    Field,
    Logic,
    Node,
    Number,
    Text,
    Unary,
)


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
