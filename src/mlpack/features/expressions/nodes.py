"""The expression tree, the kinds of values, and the error that points into the text."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Literal

from mlpack.errors import ConfigError

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
class Member:
    operand: Node
    values: tuple[Number, ...] | tuple[Text, ...]  # the listed literals, all numbers or all strings
    negated: bool  # "not in"
    at: int


@dataclass(frozen=True)
class Call:
    name: str
    args: tuple[Node, ...]
    at: int


Node = Number | Text | Field | Unary | Binary | Compare | Logic | Member | Call


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


_KIND_WORDS = {"category": "a category", "date": "a date", "text": "a text field", "string": "a string"}


def _word(kind: str) -> str:
    return _KIND_WORDS.get(kind, "a number")


def _at(node: Node) -> int:
    return node.at


def _fields(node: Node) -> list[Field]:
    if isinstance(node, Field):
        return [node]
    return [found for child in _children(node) for found in _fields(child)]


def _children(node: Node) -> tuple[Node, ...]:
    children: tuple[Node, ...] = ()
    if isinstance(node, Unary):
        children = (node.operand,)
    elif isinstance(node, (Binary, Compare)):
        children = (node.left, node.right)
    elif isinstance(node, Logic):
        children = node.operands
    elif isinstance(node, Call):
        children = node.args
    elif isinstance(node, Member):
        children = (node.operand,)
    return children
