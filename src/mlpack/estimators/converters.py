"""Converters mlpack registers with skl2onnx: a fix for a pinned-version bug, and the boosting libraries.

Each `register_*` function is idempotent and is called by the estimator registry (estimators.py)
right before an estimator that needs it is constructed, so `import mlpack` never imports xgboost,
lightgbm or onnxmltools, and a build without the `boosting` extra never needs them.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

# skl2onnx 1.20.0 builds TreeEnsemble* attributes for HistGradientBoosting with `False` for every
# leaf's `nodes_missing_value_tracks_true` and numpy integers for branches; onnx >= 1.22 refuses the
# mixed list ("Expected an int, got a boolean"). skl2onnx's main branch fixed it by casting to int
# (onnx/sklearn-onnx#1256, not released as of 1.20.0): this does the same cast around its converter.
_INT_LIST_ATTRIBUTES = ("nodes_missing_value_tracks_true",)


def _with_int_attributes(convert: Callable[..., Any]) -> Callable[..., Any]:
    """`convert`, with the boolean-holding integer attributes it passes to add_node cast to int."""

    @functools.wraps(convert)
    def converter(scope: Any, operator: Any, container: Any) -> Any:
        add_node = container.add_node

        def add_int_node(*args: Any, **attributes: Any) -> Any:
            for name in _INT_LIST_ATTRIBUTES:
                if name in attributes:
                    attributes[name] = [int(value) for value in attributes[name]]
            return add_node(*args, **attributes)

        container.add_node = add_int_node  # this one container, for this one operator
        try:
            return convert(scope, operator, container)
        finally:
            del container.add_node  # back to the class's own method

    return converter


@functools.cache
def register_hist_gradient_boosting() -> None:
    from skl2onnx import update_registered_converter
    from skl2onnx._supported_operators import sklearn_operator_name_map
    from skl2onnx.common._registration import _converter_pool, get_shape_calculator
    from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor

    for model in (HistGradientBoostingClassifier, HistGradientBoostingRegressor):
        alias = sklearn_operator_name_map[model]
        registered = _converter_pool[alias]
        update_registered_converter(
            model,
            alias,
            get_shape_calculator(alias),
            _with_int_attributes(registered._fct),
            options=registered.get_allowed_options(),
        )


# -- XGBoost and LightGBM, through onnxmltools (the `boosting` extra) ----------------------------
_CLASSIFIER_OPTIONS = {"nocl": [True, False], "zipmap": [True, False, "columns"]}


@functools.cache
def register_xgboost() -> None:
    from onnxmltools.convert.xgboost.operator_converters.XGBoost import convert_xgboost
    from skl2onnx import update_registered_converter
    from skl2onnx.common.shape_calculator import (
        calculate_linear_classifier_output_shapes,
        calculate_linear_regressor_output_shapes,
    )
    from xgboost import XGBRegressor

    from mlpack.estimators.xgboost_labels import LabelledXGBClassifier

    update_registered_converter(
        LabelledXGBClassifier,
        "XGBoostXGBClassifier",
        calculate_linear_classifier_output_shapes,
        convert_xgboost,
        options=_CLASSIFIER_OPTIONS,
    )
    update_registered_converter(
        XGBRegressor, "XGBoostXGBRegressor", calculate_linear_regressor_output_shapes, convert_xgboost
    )


@functools.cache
def register_lightgbm() -> None:
    from lightgbm import LGBMClassifier, LGBMRegressor
    from onnxmltools.convert.lightgbm.operator_converters.LightGbm import convert_lightgbm
    from skl2onnx import update_registered_converter
    from skl2onnx.common.shape_calculator import (
        calculate_linear_classifier_output_shapes,
        calculate_linear_regressor_output_shapes,
    )

    update_registered_converter(
        LGBMClassifier,
        "LightGbmLGBMClassifier",
        calculate_linear_classifier_output_shapes,
        convert_lightgbm,
        options=_CLASSIFIER_OPTIONS,
    )
    # "split": onnxmltools can cut a long ensemble into several summed in double precision; the
    # option must be declared for its converter to read it.
    update_registered_converter(
        LGBMRegressor,
        "LightGbmLGBMRegressor",
        calculate_linear_regressor_output_shapes,
        convert_lightgbm,
        options={"split": None},
    )
