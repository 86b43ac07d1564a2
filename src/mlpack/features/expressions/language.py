"""`[features.derived]` → checked expressions: names, kinds, cycles, the fields they read."""

from __future__ import annotations

from collections.abc import Mapping

from mlpack.errors import ConfigError
from mlpack.features.expressions.check import _Checker
from mlpack.features.expressions.functions import FUNCTIONS
from mlpack.features.expressions.nodes import (
    NAME_PATTERN,
    Call,
    Expression,
    ExpressionError,
    Field,
    Kind,
    Node,
    _at,
    _children,
    _fields,
    _word,
)
from mlpack.features.expressions.parse import _Parser


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


STRING_FUNCTIONS = ("lower", "strip", "contains", "length", "number", "coalesce")


def string_read_fields(expressions: list[Expression]) -> set[str]:
    """The fields a string function reads: the model tells none of their values apart (a name read by
    contains() is not a category of the model), so no artifact lists them."""
    found: set[str] = set()

    def visit(node: Node) -> None:
        if isinstance(node, Call) and node.name in STRING_FUNCTIONS:
            found.update(arg.path for arg in node.args if isinstance(arg, Field))
        for child in _children(node):
            visit(child)

    for expression in expressions:
        visit(expression.root)
    return found - {e.name for e in expressions}
