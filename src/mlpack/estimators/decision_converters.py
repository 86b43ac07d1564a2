"""skl2onnx converters for decision.py's meta-estimators: each calls the wrapped model's own converter
and, for the threshold, adds the decision to the graph: `label = P(positive) >= threshold`.

skl2onnx 1.20's converter for scikit-learn's TunedThresholdClassifierCV passes the inner model's
label through and ignores the tuned threshold, so mlpack registers its own for `DecisionThreshold`.
"""

from __future__ import annotations

import functools
from typing import Any

_CLASSIFIER_OPTIONS = {"zipmap": [True, False, "columns"], "nocl": [True, False]}


def _inner_outputs(scope: Any, operator: Any, model: Any) -> tuple[Any, Any]:
    """Declare the wrapped model as a sub-operator of `operator`: its (label, probabilities) variables."""
    from skl2onnx._supported_operators import sklearn_operator_name_map

    sub = scope.declare_local_operator(sklearn_operator_name_map[type(model)], model)
    sub.inputs = operator.inputs
    label = scope.declare_local_variable("inner_label", operator.outputs[0].type.__class__())
    proba = scope.declare_local_variable("inner_probabilities", operator.outputs[1].type.__class__())
    sub.outputs.extend([label, proba])
    return label, proba


def _convert_threshold(scope: Any, operator: Any, container: Any) -> None:
    from onnx import TensorProto

    model = operator.raw_operator
    _, proba = _inner_outputs(scope, operator, model.estimator_)
    name = scope.get_unique_operator_name
    container.add_node("Identity", [proba.onnx_name], [operator.outputs[1].full_name], name=name("ThresholdProba"))
    index = scope.get_unique_variable_name("positive_index")
    container.add_initializer(index, TensorProto.INT64, [1], [model.positive_index_])
    column = scope.get_unique_variable_name("positive_probability")
    container.add_node("Gather", [proba.onnx_name, index], [column], axis=1, name=name("ThresholdGather"))
    limit = scope.get_unique_variable_name("threshold")
    # float32, as the graph's probabilities: P >= threshold decides as scikit-learn's float64 compare
    # except within one float32 step of it (the parity check treats such rows as ties).
    container.add_initializer(limit, TensorProto.FLOAT, [], [float(model.threshold_)])
    said = scope.get_unique_variable_name("at_least_threshold")
    container.add_node("GreaterOrEqual", [column, limit], [said], name=name("ThresholdCompare"))
    as_index = scope.get_unique_variable_name("decision_index")
    container.add_node("Cast", [said], [as_index], to=TensorProto.INT64, name=name("ThresholdCast"))
    flat = scope.get_unique_variable_name("decision_flat")
    shape = scope.get_unique_variable_name("flat_shape")
    container.add_initializer(shape, TensorProto.INT64, [1], [-1])
    container.add_node("Reshape", [as_index, shape], [flat], name=name("ThresholdReshape"))
    classes = list(model.classes_)
    ordered = [classes[1 - model.positive_index_], classes[model.positive_index_]]  # index 0: no, 1: yes
    table = scope.get_unique_variable_name("decision_labels")
    if isinstance(classes[0], str):
        container.add_initializer(table, TensorProto.STRING, [2], [c.encode("utf-8") for c in ordered])
    else:
        container.add_initializer(table, TensorProto.INT64, [2], [int(c) for c in ordered])
    container.add_node("Gather", [table, flat], [operator.outputs[0].full_name], axis=0, name=name("ThresholdLabel"))


def _convert_stops_early_classifier(scope: Any, operator: Any, container: Any) -> None:
    label, proba = _inner_outputs(scope, operator, operator.raw_operator.estimator_)
    name = scope.get_unique_operator_name
    container.add_node("Identity", [label.onnx_name], [operator.outputs[0].full_name], name=name("EarlyLabel"))
    container.add_node("Identity", [proba.onnx_name], [operator.outputs[1].full_name], name=name("EarlyProba"))


def _convert_stops_early_regressor(scope: Any, operator: Any, container: Any) -> None:
    from skl2onnx._supported_operators import sklearn_operator_name_map

    model = operator.raw_operator.estimator_
    sub = scope.declare_local_operator(sklearn_operator_name_map[type(model)], model)
    sub.inputs = operator.inputs
    value = scope.declare_local_variable("inner_value", operator.outputs[0].type.__class__())
    sub.outputs.append(value)
    name = scope.get_unique_operator_name("EarlyValue")
    container.add_node("Identity", [value.onnx_name], [operator.outputs[0].full_name], name=name)


@functools.cache
def register() -> None:
    """Idempotent: called by the export before converting a pipeline (decision.py's classes are used
    only when [estimator] asks for a threshold, calibration or early stopping)."""
    from skl2onnx import update_registered_converter
    from skl2onnx.common.shape_calculator import (
        calculate_linear_classifier_output_shapes,
        calculate_linear_regressor_output_shapes,
    )

    from mlpack.estimators.decision import DecisionThreshold, StopsEarlyClassifier, StopsEarlyRegressor

    update_registered_converter(
        DecisionThreshold,
        "MlpackDecisionThreshold",
        calculate_linear_classifier_output_shapes,
        _convert_threshold,
        options=_CLASSIFIER_OPTIONS,
    )
    update_registered_converter(
        StopsEarlyClassifier,
        "MlpackStopsEarlyClassifier",
        calculate_linear_classifier_output_shapes,
        _convert_stops_early_classifier,
        options=_CLASSIFIER_OPTIONS,
    )
    update_registered_converter(
        StopsEarlyRegressor,
        "MlpackStopsEarlyRegressor",
        calculate_linear_regressor_output_shapes,
        _convert_stops_early_regressor,
    )
