"""The string operations of `Ops` as ONNX nodes, in the opsets mlpack writes (17 and up).

ONNX has string operators only from opset 20 (StringConcat, RegexFullMatch), so these are built
from what opset 17 and onnxruntime have: StringNormalizer (lowercase), LabelEncoder (a string → a
number or a string), Where (on strings too), and onnxruntime's Tokenizer (com.microsoft), which
returns the matches of an re2 pattern. A pattern matched at most once per string gives [N, 1, 0]
when no row matches at all, so a column of PAD is put after the matches before the first is taken:
then every row has one, PAD where it had no match.
"""

from __future__ import annotations

from typing import Any

from onnx import TensorProto

from mlpack.features.ops import NUMBER, SPACES

PAD = "\u2400mlpack\u2400"  # no one-character token equals it, and no real text is it
TEXT_LOCALE = "C.UTF-8"  # StringNormalizer's default, en_US.UTF-8, is absent from slim images
_CLASS = "".join(f"\\x{{{ord(char):02x}}}" for char in SPACES)  # SPACES as an re2 class body
STRIPPED = f"[^{_CLASS}](?s:.*[^{_CLASS}])?"  # from the first to the last character that is no space


def re2_literal(text: str) -> str:
    """`text` as an re2 pattern matching exactly it: every character spelt as its code point."""
    return "".join(f"\\x{{{ord(char):x}}}" for char in text)


class OnnxStringOps:
    """Mixed into `converters.OnnxOps`, which gives `_node`, `scope` and `container`."""

    scope: Any
    container: Any

    def _node(self, op: str, inputs: list[str], domain: str = "", version: int | None = None, **attrs: Any) -> str:
        raise NotImplementedError

    def _string_constant(self, value: str, shape: list[int]) -> str:
        name = self.scope.get_unique_variable_name("mlpack_text")
        self.container.add_initializer(name, TensorProto.STRING, shape, [value.encode()])
        return name

    def _int64s(self, values: list[int]) -> str:
        name = self.scope.get_unique_variable_name("mlpack_ints")
        self.container.add_initializer(name, TensorProto.INT64, [len(values)], values)
        return name

    def text(self, value: str) -> str:
        return self._string_constant(value, [])

    def lower(self, value: str) -> str:
        # StringNormalizer takes [C] or [1, C]: the column goes through as a vector and comes back.
        flat = self._node("Reshape", [value, self._int64s([-1])])
        lowered = self._node("StringNormalizer", [flat], case_change_action="LOWER", locale=TEXT_LOCALE)
        return self._node("Reshape", [lowered, self._int64s([-1, 1])])

    def _tokens(self, value: str, pattern: str) -> str:
        """[N, D]: the matches of `pattern` in each string of the [N, 1] column, PAD after the last."""
        tokens = self._node(
            "Tokenizer", [value], domain="com.microsoft", tokenexp=pattern, pad_value=PAD, mark=0, mincharnum=1
        )
        return self._node("Flatten", [tokens], axis=1)

    def _first_match(self, value: str, pattern: str) -> str:
        """[N, 1]: each string's first match of `pattern`, else PAD."""
        tokens = self._tokens(value, pattern)
        pad = self._node(
            "LabelEncoder",
            [value],
            domain="ai.onnx.ml",
            version=2,
            keys_strings=[PAD],
            values_strings=[PAD],
            default_string=PAD,
        )
        both = self._node("Concat", [tokens, pad], axis=1)
        return self._node("Gather", [both, self._int64s([0])], axis=1)

    def _is_pad(self, value: str) -> str:
        return self._node(
            "LabelEncoder",
            [value],
            domain="ai.onnx.ml",
            version=2,
            keys_strings=[PAD],
            values_floats=[1.0],
            default_float=0.0,
        )

    def _bool(self, value: str) -> str:
        return self._node("Cast", [value], to=TensorProto.BOOL)

    def strip(self, value: str) -> str:
        match = self._first_match(value, STRIPPED)
        return self._node("Where", [self._bool(self._is_pad(match)), self.text(""), match])

    def contains(self, value: str, text: str) -> str:
        found = self._is_pad(self._first_match(value, re2_literal(text)))
        return self._node("Sub", [self._float(1.0), found])

    def length(self, value: str) -> str:
        characters = self._node(
            "LabelEncoder",
            [self._tokens(value, "(?s).")],
            domain="ai.onnx.ml",
            version=2,
            keys_strings=[PAD],
            values_floats=[0.0],
            default_float=1.0,
        )
        return self._node("ReduceSum", [characters, self._int64s([1])], keepdims=1)

    def to_number(self, value: str) -> str:
        # onnxruntime's Cast reads a prefix ("1,5" is 1, "0x10" is 16): only a whole NUMBER reaches it.
        match = self._first_match(value, NUMBER)
        text = self._node("Where", [self._bool(self._is_pad(match)), self.text("NaN"), match])
        return self._node("Cast", [text], to=TensorProto.FLOAT)

    def _float(self, value: float) -> str:
        name = self.scope.get_unique_variable_name("mlpack_float")
        self.container.add_initializer(name, TensorProto.FLOAT, [], [value])
        return name
