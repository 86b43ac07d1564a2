"""skl2onnx converters mlpack registers where skl2onnx 1.20's own do not compute what scikit-learn does.

- Linear regressors (LinearRegression, Ridge, Lasso, ElasticNet, SGDRegressor, LinearSVR...):
  skl2onnx writes an `ai.onnx.ml.LinearRegressor` with the coefficients rounded to float32 and sums
  in float32. A prediction near 0 can be the sum of terms of ±1,600 (subscribers' lifetime value:
  -1585 - 616 + 17 + 444 + 327 + intercept 1412 = -0.88), and float32 cannot hold that sum closer
  than a unit of the terms' last place (1.2e-4): the parity check, relative above 1 and absolute
  below, refused 1 row in 3,000 on seeds 1 and 3 (1.3e-4 against 1e-4). This one casts the
  features to double, multiplies by the float64 coefficients and adds the float64 intercept, as
  scikit-learn does, and casts the result to float32 (0.5 ulp of the result, not of the terms).
- Isotonic calibration (CalibratedClassifierCV, method "isotonic"): skl2onnx answers the y of the
  knot nearest to the score (ArgMin of |score - X_thresholds_|), a step function; scikit-learn's
  IsotonicRegression interpolates linearly between the two knots around it (scipy's interp1d). On
  a forest's few distinct probabilities the scores sit on the knots and both agree; on SGD's
  continuous scores probabilities differed by up to 0.09 (1,000 subscribers). This one interpolates,
  in double, with scipy's choice of segment (the first knot at or above the score is its upper end).
"""

from __future__ import annotations

import functools
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np

_LINEAR_ALIASES = ("SklearnLinearRegressor", "SklearnLinearSVR")


def _convert_linear_in_double(scope: Any, operator: Any, container: Any) -> None:
    """y = x @ coef.T + intercept in double, from float32 features, answered as float32."""
    from onnx import TensorProto
    from skl2onnx.common.data_types import guess_proto_type

    model = operator.raw_operator
    coef = np.asarray(model.coef_, dtype=np.float64)
    weights = coef.reshape(-1, 1) if coef.ndim == 1 else coef.T
    intercept = np.asarray(model.intercept_, dtype=np.float64).reshape(-1)
    weights_name = scope.get_unique_variable_name("coef_double")
    intercept_name = scope.get_unique_variable_name("intercept_double")
    container.add_initializer(weights_name, TensorProto.DOUBLE, list(weights.shape), weights.ravel().tolist())
    container.add_initializer(intercept_name, TensorProto.DOUBLE, list(intercept.shape), intercept.tolist())
    shape_name = scope.get_unique_variable_name("shape")
    container.add_initializer(shape_name, TensorProto.INT64, [2], [-1, weights.shape[1]])
    x, product, total, shaped = (
        scope.get_unique_variable_name(name) for name in ("x_double", "product", "total", "shaped")
    )
    container.add_node(
        "Cast", operator.inputs[0].full_name, x, to=TensorProto.DOUBLE, name=scope.get_unique_operator_name("Cast")
    )
    container.add_node("MatMul", [x, weights_name], product, name=scope.get_unique_operator_name("MatMul"))
    container.add_node("Add", [product, intercept_name], total, name=scope.get_unique_operator_name("Add"))
    container.add_node("Reshape", [total, shape_name], shaped, name=scope.get_unique_operator_name("Reshape"))
    output_type = guess_proto_type(operator.outputs[0].type)
    container.add_node(
        "Cast", shaped, operator.outputs[0].full_name, to=output_type, name=scope.get_unique_operator_name("Cast")
    )


def _interpolate_isotonic(
    scope: Any, container: Any, model: Any, score: str, k: int, dtype: Any, proto_type: int
) -> str:
    """skl2onnx's `_transform_isotonic`, by linear interpolation: calibrator k's probability of each row's score."""
    from onnx import TensorProto

    calibrator = model.calibrators[k]
    knots = np.asarray(calibrator.X_thresholds_, dtype=np.float64)
    heights = np.asarray(calibrator.y_thresholds_, dtype=np.float64)
    if len(knots) == 1:  # scikit-learn answers the one y everywhere: a flat segment to the right of it
        knots, heights = np.r_[knots, knots + 1.0], np.r_[heights, heights]
    # Segment i runs from knot i to knot i+1; scipy's interp1d computes its slope exactly so.
    slopes = np.diff(heights) / np.diff(knots)

    def constant(name: str, values: np.ndarray, onnx_type: int = TensorProto.DOUBLE) -> str:
        unique = scope.get_unique_variable_name(name)
        container.add_initializer(unique, onnx_type, list(values.shape), values.ravel().tolist())
        return unique

    def node(op: str, inputs: list[str], name: str, **attributes: Any) -> str:
        output = scope.get_unique_variable_name(name)
        container.add_node(op, inputs, output, name=scope.get_unique_operator_name(op), **attributes)
        return output

    shaped = node("Reshape", [score, constant("column", np.array([-1, 1]), TensorProto.INT64)], "score_column")
    x = node("Cast", [shaped], "score_double", to=TensorProto.DOUBLE)
    # out_of_bounds="clip" (CalibratedClassifierCV's): a score beyond the knots gets the end's probability.
    x = node("Max", [x, constant("lowest", np.array(knots[0]))], "above_lowest")
    x = node("Min", [x, constant("highest", np.array(knots[-1]))], "clipped_score")
    # scipy: index = searchsorted(knots, x) (knots strictly below x), clipped to [1, n-1]; the
    # segment starts one knot before. Counting by MatMul keeps to ops every opset has.
    below = node(
        "Cast",
        [node("Less", [constant("starts", knots[None, :-1]), x], "below")],
        "below_double",
        to=TensorProto.DOUBLE,
    )
    count = node("MatMul", [below, constant("ones", np.ones((len(knots) - 1, 1)))], "count")
    start = node(
        "Max",
        [node("Sub", [count, constant("one", np.array(1.0))], "minus_one"), constant("zero", np.array(0.0))],
        "start",
    )
    index = node("Cast", [start], "segment", to=TensorProto.INT64)
    at_knot = node("Gather", [constant("knots", knots[:-1]), index], "segment_knot", axis=0)
    at_height = node("Gather", [constant("heights", heights[:-1]), index], "segment_height", axis=0)
    slope = node("Gather", [constant("slopes", slopes), index], "segment_slope", axis=0)
    rise = node("Mul", [node("Sub", [x, at_knot], "run"), slope], "rise")
    probability = node("Add", [rise, at_height], "calibrated")  # scipy's slope * (x - x_lo) + y_lo
    return node("Cast", [probability], "calibrated_probability", to=proto_type)  # (N, 1), the graph's type


@contextmanager
def _interpolating() -> Iterator[None]:
    """skl2onnx's calibration converter, with its isotonic step replaced for the duration of one call."""
    from skl2onnx.operator_converters import calibrated_classifier_cv as module

    stock = module._transform_isotonic
    module._transform_isotonic = _interpolate_isotonic
    try:
        yield
    finally:
        module._transform_isotonic = stock


def _convert_calibrated(stock: Any) -> Any:
    @functools.wraps(stock)
    def converter(scope: Any, operator: Any, container: Any) -> Any:
        with _interpolating():
            return stock(scope, operator, container)

    return converter


@functools.cache
def register() -> None:
    """Idempotent: called by the export before converting a pipeline."""
    from skl2onnx import update_registered_converter
    from skl2onnx._supported_operators import sklearn_operator_name_map
    from skl2onnx.common._registration import _converter_pool, get_shape_calculator
    from sklearn.calibration import CalibratedClassifierCV

    for model, alias in list(sklearn_operator_name_map.items()):
        if alias in _LINEAR_ALIASES:
            update_registered_converter(model, alias, get_shape_calculator(alias), _convert_linear_in_double)
    alias = sklearn_operator_name_map[CalibratedClassifierCV]
    registered = _converter_pool[alias]
    update_registered_converter(
        CalibratedClassifierCV,
        alias,
        get_shape_calculator(alias),
        _convert_calibrated(registered._fct),
        options=registered.get_allowed_options(),
    )
