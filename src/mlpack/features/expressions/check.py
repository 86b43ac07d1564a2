"""Kinds: infer each field's kind from its use, and check every operation's operands."""

from __future__ import annotations

from collections.abc import Mapping

from mlpack.features.expressions.functions import FUNCTIONS
from mlpack.features.expressions.nodes import (
    Binary,
    Call,
    Compare,
    Field,
    Kind,
    Logic,
    Member,
    Node,
    Number,
    Text,
    Unary,
    _at,
    _word,
)
from mlpack.features.expressions.parse import _Parser


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
        elif isinstance(node, Member):
            self.infer(node.operand, "category" if isinstance(node.values[0], Text) else "number")
        elif isinstance(node, Call):
            function = FUNCTIONS[node.name]
            same = "category" if any(isinstance(a, Text) for a in node.args) else "number"
            for index, arg in enumerate(node.args):
                wanted = function.args[min(index, len(function.args) - 1)].rstrip("*")
                wanted = {"string": "category", "same": same}.get(wanted, wanted)
                if wanted != "literal":
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
            return self.kind_of_field(node.path)
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
        if isinstance(node, Member):
            if isinstance(node.values[0], Number):
                self.number(node.operand, "'in' a list of numbers")
            elif self.check(node.operand) not in ("category", "text"):
                kind = self.check(node.operand)
                raise self.parser.fail(
                    _at(node.operand), f"'in' a list of 'strings' needs a category, got {_word(kind)}"
                )
            return "number"
        return self.check_call(node)

    def check_call(self, node: Call) -> str:
        function = FUNCTIONS[node.name]
        repeating = function.args[-1].endswith("*")
        count = len(node.args)
        if (repeating and count < function.min_args) or (not repeating and count != len(function.args)):
            wanted = f"at least {function.min_args}" if repeating else str(len(function.args))
            raise self.parser.fail(node.at, f"{node.name}() takes {wanted} argument(s), got {count}")
        kinds: list[str] = []
        for index, arg in enumerate(node.args):
            wanted_kind = function.args[min(index, len(function.args) - 1)].rstrip("*")
            kinds.append(self.check_argument(node, arg, wanted_kind))
        if wanted_kind == "same":
            found = {"category" if kind == "string" else kind for kind in kinds}
            if len(found) > 1 or found & {"text"}:
                odd = next(a for a, k in zip(node.args, kinds) if k != kinds[0]) if len(found) > 1 else node.args[0]
                raise self.parser.fail(
                    _at(odd),
                    f"{node.name}() takes values of one kind (numbers, categories or dates), "
                    f"got {_word(self.check(odd))}",
                )
            return found.pop()
        return kinds[0] if function.returns == "arg" else "number"

    def check_argument(self, node: Call, arg: Node, wanted: str) -> str:
        """The argument's kind, if it is one the function takes; else an error pointing at it."""
        if wanted == "number":
            self.number(arg, f"{node.name}()")
            return "number"
        kind = self.check(arg)
        if wanted == "date" and kind != "date":
            raise self.parser.fail(_at(arg), f"{node.name}() needs a date, got {_word(kind)}")
        if wanted == "string" and kind not in ("category", "text"):
            got = "a 'string' written out: give a field" if kind == "string" else _word(kind)
            raise self.parser.fail(_at(arg), f"{node.name}() needs a category or a text field, got {got}")
        if wanted == "literal" and not (isinstance(arg, Text) and arg.value):
            raise self.parser.fail(_at(arg), f"{node.name}() needs a 'string' written out here, e.g. 'mr.'")
        if wanted == "any":
            if kind in ("category", "date") and not isinstance(arg, Field):
                raise self.parser.fail(_at(arg), f"{node.name}() takes a field or a number")
            if kind == "string":
                raise self.parser.fail(_at(arg), f"{node.name}() of a 'string' is always 0")
            if kind == "text":
                raise self.parser.fail(
                    _at(arg), f"{node.name}() of a text field: a missing text is '', use length(x) == 0"
                )
        return kind

    def check_compare(self, node: Compare) -> str:
        left, right = self.check(node.left), self.check(node.right)
        kinds = {left, right}
        if kinds == {"number"}:
            return "number"
        if kinds in ({"category", "string"}, {"text", "string"}) and node.op in ("==", "!="):
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
            "category": " (compare it instead, e.g. x == 'value', or number(x) if it holds numbers)",
            "date": " (use year(), month(), ..., or days_between())",
            "text": " (read it with length(), contains(), number() or lower(x) == 'value')",
        }.get(kind, "")
        subject = f"'{node.path}' is {_word(kind)}: it" if isinstance(node, Field) else _word(kind)
        raise self.parser.fail(_at(node), f"{subject} cannot be used in {where}{hint}")
