"""Text → tree with Python's own parser, keeping only the whitelisted nodes."""

from __future__ import annotations

import ast
import io
import keyword
import tokenize

from mlpack.features.expressions.functions import _BINARY, _COMPARE, FUNCTIONS
from mlpack.features.expressions.nodes import (
    Binary,
    Call,
    Compare,
    ExpressionError,
    Field,
    Logic,
    Member,
    Node,
    Number,
    Text,
    Unary,
)

# -- parsing --------------------------------------------------------------------------------------
# A quoted name becomes a Python identifier of the same length in characters, so every offset Python's
# parser reports is the offset in the text as written: a click letter, then a CJK ideograph numbering it
# (both letters Python accepts in names, and unchanged by the NFKC normalisation it applies to them).
_QUOTE_MARK = "\u01c2"
_QUOTE_NUMBERS = 0x4E00
_KEYWORDS_OF_THE_LANGUAGE = {"and", "or", "not", "in"}


class _Parser:
    def __init__(self, name: str, text: str) -> None:
        self.name = name
        self.text = text
        self.indent = len(text) - len(text.lstrip())
        self.quoted: dict[str, str] = {}  # placeholder identifier → the field path written in backticks
        self.source = self.unquote(text.lstrip())
        self.line_starts = [0]
        for index, char in enumerate(self.source):
            if char == "\n":
                self.line_starts.append(index + 1)

    def unquote(self, source: str) -> str:
        """`any name` (backticks) → a placeholder identifier; the text inside strings is left alone."""
        out: list[str] = []
        index, string = 0, ""
        while index < len(source):
            char = source[index]
            if string:
                string = "" if char == string else string
            elif char in "'\"":
                string = char
            elif char == "`":
                end = source.find("`", index + 1)
                newline = source.find("\n", index + 1)
                if end < 0 or 0 <= newline < end:
                    raise self.fail(self.indent + index, "a quoted name has no closing backtick (`)")
                path = source[index + 1 : end]
                problem = _quoted_problem(path)
                if problem:
                    raise self.fail(self.indent + index, problem)
                placeholder = _QUOTE_MARK + chr(_QUOTE_NUMBERS + len(self.quoted))
                placeholder += _QUOTE_MARK * (end + 1 - index - len(placeholder))
                self.quoted[placeholder] = path
                out.append(placeholder)
                index = end + 1
                continue
            out.append(char)
            index += 1
        return "".join(out)

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
            reason = self.name_not_allowed()
            if reason is not None:
                raise self.fail(*reason) from None
            line = self.line_starts[min(max((exc.lineno or 1) - 1, 0), len(self.line_starts) - 1)]
            at = min(self.indent + line + max((exc.offset or 1) - 1, 0), max(len(self.text) - 1, 0))
            raise self.fail(at, f"syntax error: {exc.msg}") from None
        return self.node(tree.body)

    def name_not_allowed(self) -> tuple[int, str] | None:
        """Why a text that does not parse has a name Python cannot read, and how to write it: a field
        named like a Python keyword (`from`, `ticket.class`) or starting with a digit (`2nd_class`)."""
        try:
            tokens = list(tokenize.generate_tokens(io.StringIO(self.source).readline))
        except (tokenize.TokenError, SyntaxError, IndentationError):
            return None
        for index, token in enumerate(tokens):
            before = tokens[index - 1].string if index else ""
            after = tokens[index + 1] if index + 1 < len(tokens) else None
            if token.type == tokenize.NAME and keyword.iskeyword(token.string):
                if token.string in _KEYWORDS_OF_THE_LANGUAGE and before != ".":
                    continue
                if token.string in ("True", "False", "None") and before != ".":
                    continue  # a value, refused with its own message once the text parses
                path = self.dotted_around(tokens, index)
                return self.token_at(token), (
                    f"'{token.string}' is a Python keyword, so a field named so must be quoted with backticks: `{path}`"
                )
            glued = after is not None and after.type == tokenize.NAME and after.start == token.end
            if token.type == tokenize.NUMBER and glued and after is not None and not keyword.iskeyword(after.string):
                name = token.string + after.string
                return self.token_at(token), (
                    f"'{name}' starts with a digit, so a field named so must be quoted with backticks: `{name}`"
                )
        return None

    def dotted_around(self, tokens: list[tokenize.TokenInfo], index: int) -> str:
        """The dotted path a token is part of (ticket . class → "ticket.class"), quoted parts unquoted."""
        start = index
        while start >= 2 and tokens[start - 1].string == "." and tokens[start - 2].type == tokenize.NAME:
            start -= 2
        end = index
        while end + 2 < len(tokens) and tokens[end + 1].string == "." and tokens[end + 2].type == tokenize.NAME:
            end += 2
        return ".".join(self.quoted.get(t.string, t.string) for t in tokens[start : end + 1 : 2])

    def token_at(self, token: tokenize.TokenInfo) -> int:
        line = self.line_starts[min(token.start[0] - 1, len(self.line_starts) - 1)]
        return self.indent + line + token.start[1]

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
                if isinstance(operator, (ast.In, ast.NotIn)):
                    pairs.append(self.member(left, right, isinstance(operator, ast.NotIn)))
                    left = right
                    continue
                op = _COMPARE.get(type(operator))
                if op is None:
                    raise self.fail(at, "comparison not supported (use == != < <= > >= in)")
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
            if name in self.quoted:
                raise self.fail(at, f"`{self.quoted[name]}` is quoted, so it is a field: fields cannot be called")
            if name not in FUNCTIONS:
                raise self.fail(at, f"unknown function '{name}' (known: {', '.join(FUNCTIONS)})")
            if any(isinstance(arg, ast.Starred) for arg in node.args):
                raise self.fail(at, "'*' arguments are not supported")
            return Call(name, tuple(self.node(arg) for arg in node.args), at)
        what = type(node).__name__.lower()
        raise self.fail(at, f"'{ast.unparse(node)}' is not part of the expression language ({what})")

    def member(self, left: ast.expr, right: ast.expr, negated: bool) -> Member:
        """x in [literal, ...]: every item a number, or every item a 'string'."""
        if not isinstance(right, (ast.List, ast.Tuple, ast.Set)):
            raise self.fail(self.at(right), "'in' takes a list of values, e.g. x in ['a', 'b'] or x in [1, 2]")
        values = [self.node(item) for item in right.elts]
        if not values:
            raise self.fail(self.at(right), "'in' needs at least one value in its list")
        numbers = [value for value in values if isinstance(value, Number)]
        texts = [value for value in values if isinstance(value, Text)]
        if len(numbers) + len(texts) != len(values) or (numbers and texts):
            odd = next(v for v in values if not isinstance(v, Number if numbers and not texts else Text))
            raise self.fail(odd.at, "the list after 'in' holds only numbers or only 'strings', written out")
        listed: tuple[Number, ...] | tuple[Text, ...] = tuple(numbers) if numbers else tuple(texts)
        return Member(self.node(left), listed, negated, self.at(left))

    def path(self, node: ast.expr) -> str:
        parts: list[str] = []
        while isinstance(node, ast.Attribute):
            parts.append(self.quoted.get(node.attr, node.attr))
            node = node.value
        if not isinstance(node, ast.Name):
            raise self.fail(self.at(node), "a field path is made of names joined by dots")
        if node.id in self.quoted:
            return ".".join([self.quoted[node.id], *reversed(parts)])
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


def _quoted_problem(path: str) -> str | None:
    """Why text between backticks is no field path, or None."""
    if not path:
        return "an empty quoted name: write the field's path between the backticks"
    if path.startswith("$"):
        return f"`{path}`: a field path cannot start with '$' (MongoDB reads that as an operator)"
    if ".." in path or path.startswith(".") or path.endswith("."):
        return f"`{path}` is not a dotted path: a dot joins two names"
    return None
