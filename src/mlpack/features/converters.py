"""skl2onnx converters for mlpack's own transformers, registered once with `register()`.

skl2onnx's registry pattern (`update_registered_converter`: a parser declaring the operator's
inputs and outputs, a shape calculator, a converter writing the nodes) rather than special cases
in export.py. Each converter writes the very steps its transformer computes with `NumpyOps`,
here with `OnnxOps`, so the graph and scikit-learn agree value for value.
"""

from __future__ import annotations

import warnings
from typing import Any

from onnx import TensorProto
from skl2onnx import update_registered_converter
from skl2onnx._parse import _parse_sklearn
from skl2onnx.algebra.onnx_operator import OnnxSubEstimator
from skl2onnx.common.data_types import FloatTensorType, StringTensorType
from skl2onnx.operator_converters.imputer_op import convert_sklearn_imputer
from skl2onnx.operator_converters.scaler_op import convert_sklearn_scaler
from skl2onnx.shape_calculators.imputer import calculate_sklearn_imputer_output_shapes
from skl2onnx.shape_calculators.scaler import calculate_sklearn_scaler_output_shapes

from mlpack.features.categories import OTHER, RareCategories
from mlpack.features.date_parts import DateParts
from mlpack.features.dates import DATE_PARTS, date_parts
from mlpack.features.derived import DerivedFeatures
from mlpack.features.encodings import ENCODERS, CategoryTable
from mlpack.features.expressions import compute
from mlpack.features.impute import MedianImputer
from mlpack.features.ordinal import OrdinalCategories
from mlpack.features.scaling import ColumnScaler
from mlpack.features.string_ops import TEXT_LOCALE, OnnxStringOps
from mlpack.features.target import TRANSFORMS, TransformedTarget
from mlpack.features.text import GRAPH_CHAR, GRAPH_WORD, TextWords

_ONNX_TYPES = {"float32": TensorProto.FLOAT, "float64": TensorProto.DOUBLE, "int64": TensorProto.INT64}
_ONNX_TYPES["bool"] = TensorProto.BOOL


class OnnxOps(OnnxStringOps):
    """`Ops` as ONNX nodes: each call adds one node and returns the name of its output."""

    def __init__(self, scope: Any, container: Any) -> None:
        self.scope = scope
        self.container = container
        self._constants: dict[tuple[str, float | int], str] = {}
        self._literals: set[str] = set()

    def _node(self, op: str, inputs: list[str], domain: str = "", version: int | None = None, **attrs: Any) -> str:
        output = self.scope.get_unique_variable_name(f"mlpack_{op.lower()}")
        name = self.scope.get_unique_operator_name(f"Mlpack{op}")
        self.container.add_node(op, inputs, [output], op_domain=domain, op_version=version, name=name, **attrs)
        return output

    def _constant(self, onnx_type: int, kind: str, value: float | int) -> str:
        key = (kind, value if value == value else "nan")  # NaN != NaN: key it by name
        if key not in self._constants:
            name = self.scope.get_unique_variable_name(f"mlpack_{kind}")
            self.container.add_initializer(name, onnx_type, [], [value])
            self._constants[key] = name  # type: ignore[index]
        return self._constants[key]  # type: ignore[index]

    def number(self, value: float) -> str:
        name = self._constant(TensorProto.FLOAT, "number", float(value))
        if value == value:
            self._literals.add(name)
        return name

    def integer(self, value: int) -> str:
        return self._constant(TensorProto.INT64, "integer", int(value))

    def binary(self, op: str, left: str, right: str) -> str:
        if op == "Mod":
            return self._node("Mod", [left, right], fmod=0)
        return self._node(op, [left, right])

    def unary(self, op: str, operand: str) -> str:
        return self._node(op, [operand])

    def cast(self, value: str, dtype: str) -> str:
        return self._node("Cast", [value], to=_ONNX_TYPES[dtype])

    def where(self, condition: str, then: str, otherwise: str) -> str:
        return self._node("Where", [condition, then, otherwise])

    def equals_text(self, value: str, text: str) -> str:
        # Equal has no string kernel before opset 19; LabelEncoder maps strings in every opset mlpack uses.
        return self._node(
            "LabelEncoder",
            [value],
            domain="ai.onnx.ml",
            version=2,
            keys_strings=[text],
            values_floats=[1.0],
            default_float=0.0,
        )

    def is_number_literal(self, value: str) -> bool:
        return value in self._literals

    def identity(self, value: str, output: str) -> None:
        self.container.add_node("Identity", [value], [output], name=self.scope.get_unique_operator_name("MlpackOut"))


# -- DerivedFeatures: every raw input in, the same inputs plus one float column per expression out --
def _derived_parser(scope: Any, model: DerivedFeatures, inputs: list[Any], custom_parsers: Any = None) -> list[Any]:
    operator = scope.declare_local_operator("MlpackDerivedFeatures", model)
    by_column = {variable.raw_name: variable for variable in inputs}
    for column in model.inputs_.values():
        if column not in by_column:
            raise RuntimeError(f"derived features read {column!r}, which is not an input of the graph")
        operator.inputs.append(by_column[column])
    for column in model.outputs_.values():
        operator.outputs.append(scope.declare_local_variable(column, FloatTensorType([None, 1])))
    # The raw inputs go on unchanged: the preprocessing after this step selects from both by name.
    return [*inputs, *operator.outputs]


def _derived_shapes(operator: Any) -> None:
    rows = operator.inputs[0].type.shape[0] if operator.inputs else None
    for output in operator.outputs:
        output.type = FloatTensorType([rows, 1])


def _derived_converter(scope: Any, operator: Any, container: Any) -> None:
    model: DerivedFeatures = operator.raw_operator
    ops = OnnxOps(scope, container)
    inputs = {path: variable.onnx_name for path, variable in zip(model.inputs_, operator.inputs)}
    values = compute(model.parsed_, ops, inputs)
    for expression, output in zip(model.parsed_, operator.outputs):
        ops.identity(values[expression.name], output.onnx_name)


# -- DateParts: int64 milliseconds [N, k] → float [N, 6k] -------------------------------------------
def _date_parts_shapes(operator: Any) -> None:
    rows, columns = operator.inputs[0].type.shape
    width = None if columns is None else columns * len(DATE_PARTS)
    operator.outputs[0].type = FloatTensorType([rows, width])


def _date_parts_converter(scope: Any, operator: Any, container: Any) -> None:
    model: DateParts = operator.raw_operator
    ops = OnnxOps(scope, container)
    source = operator.inputs[0].onnx_name
    blocks: list[str] = []
    for index in range(model.n_features_in_):
        indices = scope.get_unique_variable_name("mlpack_column")
        container.add_initializer(indices, TensorProto.INT64, [1], [index])
        column = ops._node("Gather", [source, indices], axis=1)  # [N, 1]
        parts = date_parts(ops, column)
        blocks.extend(parts[part] for part in DATE_PARTS)
    container.add_node(
        "Concat", blocks, [operator.outputs[0].onnx_name], axis=1, name=scope.get_unique_operator_name("MlpackDates")
    )


# -- TransformedTarget: the regressor's own converter, then the inverse transform ------------------
def _target_parser(scope: Any, model: TransformedTarget, inputs: list[Any], custom_parsers: Any = None) -> list[Any]:
    predicted = _parse_sklearn(scope, model.regressor_, inputs, custom_parsers=custom_parsers)
    operator = scope.declare_local_operator("MlpackTransformedTarget", model)
    operator.inputs.append(predicted[0])
    operator.outputs.append(scope.declare_local_variable("variable", FloatTensorType([None, 1])))
    return list(operator.outputs)


def _target_shapes(operator: Any) -> None:
    operator.outputs[0].type = FloatTensorType([operator.inputs[0].type.shape[0], 1])


def _target_converter(scope: Any, operator: Any, container: Any) -> None:
    model: TransformedTarget = operator.raw_operator
    ops = OnnxOps(scope, container)
    value = operator.inputs[0].onnx_name
    for step in TRANSFORMS[model.func].onnx_inverse:
        if step == "Exp":
            value = ops.unary("Exp", value)
        elif step == "Minus1":
            value = ops.binary("Sub", value, ops.number(1.0))
        elif step == "Square":
            value = ops.binary("Mul", value, value)
    ops.identity(value, operator.outputs[0].onnx_name)


# -- TextWords: skl2onnx's TfidfVectorizer converter, with a locale every system has and the graph's tokens
def _text_shapes(operator: Any) -> None:
    width = len(operator.raw_operator.vectorizer_.vocabulary_)
    operator.outputs[0].type = FloatTensorType([operator.inputs[0].type.shape[0], width])


def _text_converter(scope: Any, operator: Any, container: Any) -> None:
    model: TextWords = operator.raw_operator
    vectorizer = model.graph_vectorizer()
    tokens = GRAPH_CHAR if model.chars else GRAPH_WORD
    container.add_options(id(vectorizer), {"locale": TEXT_LOCALE, "tokenexp": tokens})
    vectors = OnnxSubEstimator(
        vectorizer, operator.inputs[0], op_version=container.target_opset, output_names=operator.outputs[:1]
    )
    vectors.add_to(scope, container)


# -- RareCategories: strings [N, k] → strings [N, k], unknown and rare values made OTHER -------------
def _rare_shapes(operator: Any) -> None:
    operator.outputs[0].type = StringTensorType(list(operator.inputs[0].type.shape))


def _per_column(
    scope: Any, container: Any, operator: Any, encoders: list[tuple[int, dict[str, Any]]], name: str
) -> None:
    """Columns of the [N, k] input through LabelEncoders, then side by side again: how the category
    transformers write their graph. `encoders`: (input column, LabelEncoder attributes) in output order;
    a column may have several (a target encoding, one per class)."""
    ops = OnnxOps(scope, container)
    source = operator.inputs[0].onnx_name
    columns: list[str] = []
    gathered: dict[int, str] = {}
    for index, attributes in encoders:
        if index not in gathered:
            indices = scope.get_unique_variable_name("mlpack_column")
            container.add_initializer(indices, TensorProto.INT64, [1], [index])
            gathered[index] = ops._node("Gather", [source, indices], axis=1)
        columns.append(ops._node("LabelEncoder", [gathered[index]], domain="ai.onnx.ml", version=2, **attributes))
    container.add_node(
        "Concat", columns, [operator.outputs[0].onnx_name], axis=1, name=scope.get_unique_operator_name(name)
    )


def _rare_converter(scope: Any, operator: Any, container: Any) -> None:
    model: RareCategories = operator.raw_operator
    # LabelEncoder gives every key its value and everything else the default: OTHER.
    encoders = [{"keys_strings": kept, "values_strings": kept, "default_string": OTHER} for kept in model.kept_]
    _per_column(scope, container, operator, list(enumerate(encoders)), "MlpackRare")


# -- OrdinalCategories: strings [N, k] → float [N, k], each value's position in its order, else NaN ----
def _ordinal_shapes(operator: Any) -> None:
    operator.outputs[0].type = FloatTensorType(list(operator.inputs[0].type.shape))


def _ordinal_converter(scope: Any, operator: Any, container: Any) -> None:
    model: OrdinalCategories = operator.raw_operator
    encoders = [
        {
            "keys_strings": list(order),
            "values_floats": [float(rank) for rank in range(len(order))],
            "default_float": float("nan"),
        }
        for order in model.orders_
    ]
    _per_column(scope, container, operator, list(enumerate(encoders)), "MlpackOrder")


# -- FrequencyEncoding, TargetEncoding: strings [N, k] → float [N, sum of widths], a lookup per output ----
def _table_shapes(operator: Any) -> None:
    width = sum(operator.raw_operator._widths())
    operator.outputs[0].type = FloatTensorType([operator.inputs[0].type.shape[0], width])


def _table_converter(scope: Any, operator: Any, container: Any) -> None:
    model: CategoryTable = operator.raw_operator
    encoders: list[tuple[int, dict[str, Any]]] = []
    for index, (keys, values, default) in enumerate(model.tables_):
        # A table with no key of its own (every category rarer than min_count) still needs one to be valid.
        listed = list(keys) or [OTHER]
        for output in range(default.shape[0]):
            column = values[:, output].tolist() if keys else [float(default[output])]
            attributes = {"keys_strings": listed, "values_floats": column, "default_float": float(default[output])}
            encoders.append((index, attributes))
    _per_column(scope, container, operator, encoders, "MlpackTable")


_registered = False


def register() -> None:
    """Make skl2onnx convert mlpack's transformers (idempotent; export calls it before converting)."""
    global _registered
    # skl2onnx warns that analyzer "char" "may not work": CharNgrams is what it computes (tests/test_text_options.py).
    # Set on every call: a caller's catch_warnings (pytest's, for one) puts the filters back afterwards.
    warnings.filterwarnings("ignore", "The conversion of CountVectorizer may not work", UserWarning)
    if _registered:
        return
    update_registered_converter(
        DerivedFeatures, "MlpackDerivedFeatures", _derived_shapes, _derived_converter, parser=_derived_parser
    )
    update_registered_converter(DateParts, "MlpackDateParts", _date_parts_shapes, _date_parts_converter)
    update_registered_converter(
        TransformedTarget, "MlpackTransformedTarget", _target_shapes, _target_converter, parser=_target_parser
    )
    update_registered_converter(RareCategories, "MlpackRareCategories", _rare_shapes, _rare_converter)
    update_registered_converter(TextWords, "MlpackTextWords", _text_shapes, _text_converter)
    # SimpleImputer's own converter: the fitted statistics_ are the same, only how they were found differs.
    update_registered_converter(
        MedianImputer, "MlpackMedianImputer", calculate_sklearn_imputer_output_shapes, convert_sklearn_imputer
    )
    # StandardScaler's own name, converter and options: the graph is StandardScaler's, node for node.
    scaler_options = {"div": ["std", "div", "div_cast"]}
    update_registered_converter(
        ColumnScaler,
        "SklearnScaler",
        calculate_sklearn_scaler_output_shapes,
        convert_sklearn_scaler,
        options=scaler_options,
    )
    update_registered_converter(OrdinalCategories, "MlpackOrdinalCategories", _ordinal_shapes, _ordinal_converter)
    for encoder in ENCODERS.values():
        update_registered_converter(encoder, f"Mlpack{encoder.__name__}", _table_shapes, _table_converter)
    _registered = True


__all__ = ["TEXT_LOCALE", "OnnxOps", "register"]
