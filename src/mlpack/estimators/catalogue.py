"""The estimators mlpack supports, each registered with what its pipeline and converter need.

Adding an estimator is one entry here plus its row in tests/test_estimators.py, which trains it,
converts it and checks ONNX-vs-scikit-learn parity with the pinned skl2onnx/onnx/scikit-learn.
"""

from __future__ import annotations

import difflib
import importlib
import importlib.util
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from sklearn.base import BaseEstimator

from mlpack.config import EstimatorSection, Task
from mlpack.errors import ConfigError
from mlpack.estimators import converters


@dataclass(frozen=True)
class EstimatorSpec:
    task: Task
    # Scale-sensitive models get a StandardScaler; trees must not: scaling changes nothing for them,
    # and a scaled value can round onto the other side of a float32 split threshold.
    scaled: bool
    # Params mlpack sets unless the config sets them, each for a reason given in its entry below.
    defaults: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))
    # Whether, with its defaults, it gives class probabilities (LinearSVC gives only labels).
    probabilities: bool = True
    # The mlpack-onnx extra that installs its library, when scikit-learn is not enough.
    extra: str | None = None
    # Registers the skl2onnx converter mlpack provides for it, before it is constructed.
    register: Callable[[], None] | None = None
    # The class actually trained, when mlpack adapts the configured one (module.Class).
    trained_class: str | None = None
    # The ai.onnx.ml opset its converter writes, when it cannot write the newest (onnxmltools).
    ml_opset: int | None = None
    # skl2onnx options for a classifier: a plain probability tensor instead of ZipMap (faster, and
    # readable by Triton and ORT-web clients).
    converter_options: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({"zipmap": False}))
    # A boosted regressor whose trees onnxruntime must add in double precision (export.py says why).
    sum_in_double: bool = False
    # Exceptions its fit raises for bad params besides ValueError/TypeError (module.Class).
    fit_errors: tuple[str, ...] = ()
    # The library's own parameter names, which it takes through **kwargs and get_params() does not
    # list (LightGBM's `verbose`, XGBoost's `eta`): accepted as the library accepts them.
    native_params: Callable[[], frozenset[str]] | None = None
    # [estimator.early_stopping]: "native" (scikit-learn's own n_iter_no_change), or the library whose
    # fit takes a validation set (estimators/decision.py holds one out); "" for estimators that do not boost.
    early_stopping: str = ""
    # Its fit keeps float32 features float32 and computes in float32 (scikit-learn 1.9.1's SGD validates
    # X with dtype=[float64, float32] and runs _plain_sgd32 on it; coef_ is float32), so
    # [estimator].float32 can give it the graph's float32 features as they are instead of their float64
    # copy: half the build's largest array. Given float32, SVC, SVR, LinearSVC, LinearSVR and
    # HistGradientBoosting* copy it to float64 (more memory, not less). LogisticRegression, MLP*,
    # LinearRegression, Ridge, Lasso, ElasticNet, KNeighborsRegressor and GaussianNB keep it float32 in
    # 1.9.1 too, but their metrics and parity in float32 have not been measured: not offered yet.
    float32: bool = False
    note: str = ""


# SVC's probability=True is mlpack's default (so SVC answers probabilities like the others);
# scikit-learn 1.9 deprecates it for removal in 1.11, and pyproject pins 1.9.1. Its warnings, at fit
# and when skl2onnx reads probA_/probB_, would tell the user about a param they did not set.
warnings.filterwarnings("ignore", message="The `probability` parameter was deprecated", category=FutureWarning)
warnings.filterwarnings("ignore", message="Attribute `prob[AB]_` was deprecated", category=FutureWarning)


def _lightgbm_params() -> frozenset[str]:
    """Every parameter name and alias LightGBM's C library knows (its own list, as lgb.train reads it)."""
    from lightgbm.basic import _ConfigAliases

    return frozenset(name for names in _ConfigAliases._get_all_param_aliases().values() for name in names)


def _xgboost_params() -> frozenset[str]:
    """Every parameter of XGBoost's learner, read from the configuration of a one-tree booster."""
    import json

    import numpy as np
    import xgboost

    booster = xgboost.train({}, xgboost.DMatrix(np.zeros((2, 1)), label=[0.0, 1.0]), 1)
    names: set[str] = set()

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                if isinstance(value, str):  # parameters are strings in the config; sections are objects
                    names.add(key)
                walk(value)

    walk(json.loads(booster.save_config()))
    return frozenset(names)


_C: Task = "classification"
_R: Task = "regression"


def _defaults(**params: Any) -> Mapping[str, Any]:
    return MappingProxyType(params)


# onnxmltools 1.16 writes the TreeEnsemble ops of ai.onnx.ml 3 and refuses to convert into a model
# that declares a newer version of that domain (which skl2onnx does for target_opset 17).
_ONNXMLTOOLS_ML_OPSET = 3

SUPPORTED: dict[str, EstimatorSpec] = {
    # -- linear models, SVMs, neural networks: scale-sensitive ----------------------------------
    "sklearn.linear_model.LogisticRegression": EstimatorSpec(_C, scaled=True),
    "sklearn.linear_model.SGDClassifier": EstimatorSpec(
        _C,
        scaled=True,
        # log_loss gives probabilities (the default hinge loss gives none).
        defaults=_defaults(loss="log_loss"),
        float32=True,
        note="probabilities with loss log_loss (mlpack's default) or modified_huber",
    ),
    "sklearn.svm.SVC": EstimatorSpec(
        _C,
        scaled=True,
        # probability=True fits Platt scaling, so the model answers probabilities like the others.
        defaults=_defaults(probability=True),
    ),
    "sklearn.svm.LinearSVC": EstimatorSpec(
        _C,
        scaled=True,
        probabilities=False,
        # Its converter has no zipmap option, but skl2onnx's Pipeline parser adds zipmap=True to a
        # final classifier that has no options, then refuses it: naming any valid option avoids that.
        converter_options=_defaults(nocl=False),
        note="labels only: no class probabilities (use SVC for them)",
    ),
    "sklearn.neural_network.MLPClassifier": EstimatorSpec(_C, scaled=True),
    "sklearn.linear_model.LinearRegression": EstimatorSpec(_R, scaled=True),
    "sklearn.linear_model.Ridge": EstimatorSpec(_R, scaled=True),
    "sklearn.linear_model.Lasso": EstimatorSpec(_R, scaled=True),
    "sklearn.linear_model.ElasticNet": EstimatorSpec(_R, scaled=True),
    "sklearn.linear_model.SGDRegressor": EstimatorSpec(_R, scaled=True, float32=True),
    "sklearn.svm.SVR": EstimatorSpec(_R, scaled=True),
    "sklearn.svm.LinearSVR": EstimatorSpec(_R, scaled=True),
    "sklearn.neural_network.MLPRegressor": EstimatorSpec(_R, scaled=True),
    "sklearn.neighbors.KNeighborsRegressor": EstimatorSpec(_R, scaled=True),
    # -- naive Bayes: per-feature Gaussians are unchanged by scaling --------------------------
    "sklearn.naive_bayes.GaussianNB": EstimatorSpec(_C, scaled=False),
    # -- trees: unscaled ------------------------------------------------------------------------
    "sklearn.tree.DecisionTreeClassifier": EstimatorSpec(_C, scaled=False),
    "sklearn.ensemble.RandomForestClassifier": EstimatorSpec(_C, scaled=False),
    "sklearn.ensemble.ExtraTreesClassifier": EstimatorSpec(_C, scaled=False),
    "sklearn.ensemble.GradientBoostingClassifier": EstimatorSpec(_C, scaled=False, early_stopping="native"),
    "sklearn.ensemble.HistGradientBoostingClassifier": EstimatorSpec(
        _C, scaled=False, register=converters.register_hist_gradient_boosting, early_stopping="native"
    ),
    "sklearn.tree.DecisionTreeRegressor": EstimatorSpec(_R, scaled=False),
    "sklearn.ensemble.RandomForestRegressor": EstimatorSpec(_R, scaled=False),
    "sklearn.ensemble.ExtraTreesRegressor": EstimatorSpec(_R, scaled=False),
    "sklearn.ensemble.GradientBoostingRegressor": EstimatorSpec(
        _R, scaled=False, sum_in_double=True, early_stopping="native"
    ),
    "sklearn.ensemble.HistGradientBoostingRegressor": EstimatorSpec(
        _R,
        scaled=False,
        register=converters.register_hist_gradient_boosting,
        sum_in_double=True,
        early_stopping="native",
    ),
    # -- XGBoost and LightGBM, converted by onnxmltools (the `boosting` extra) ------------------
    "xgboost.XGBClassifier": EstimatorSpec(
        _C,
        scaled=False,
        extra="boosting",
        register=converters.register_xgboost,
        trained_class="mlpack.estimators.xgboost_labels.LabelledXGBClassifier",  # XGBoost takes only labels 0..n-1
        ml_opset=_ONNXMLTOOLS_ML_OPSET,
        native_params=_xgboost_params,
        early_stopping="xgboost",
    ),
    "xgboost.XGBRegressor": EstimatorSpec(
        _R,
        scaled=False,
        extra="boosting",
        register=converters.register_xgboost,
        ml_opset=_ONNXMLTOOLS_ML_OPSET,
        sum_in_double=True,
        native_params=_xgboost_params,
        early_stopping="xgboost",
        note="XGBoost itself sums its trees in float32: on large targets raise [export].parity_tolerance",
    ),
    "lightgbm.LGBMClassifier": EstimatorSpec(
        _C,
        scaled=False,
        # LightGBM logs every fit to stdout ("[LightGBM] [Info] ..."), which would garble --json output.
        defaults=_defaults(verbose=-1),
        extra="boosting",
        register=converters.register_lightgbm,
        fit_errors=("lightgbm.basic.LightGBMError",),
        ml_opset=_ONNXMLTOOLS_ML_OPSET,
        native_params=_lightgbm_params,
        early_stopping="lightgbm",
    ),
    "lightgbm.LGBMRegressor": EstimatorSpec(
        _R,
        scaled=False,
        defaults=_defaults(verbose=-1),
        extra="boosting",
        register=converters.register_lightgbm,
        fit_errors=("lightgbm.basic.LightGBMError",),
        ml_opset=_ONNXMLTOOLS_ML_OPSET,
        sum_in_double=True,
        native_params=_lightgbm_params,
        early_stopping="lightgbm",
    ),
}

# The estimators [estimator].float32 is for (their short names, for its error).
FLOAT32_ESTIMATORS = tuple(path.rsplit(".", 1)[1] for path, spec in SUPPORTED.items() if spec.float32)

# Refused up front, with the reason (shown by `mlpack estimators` and in the error). Any other
# class is refused too: mlpack admits only what tests/test_estimators.py checks for parity.
UNSUPPORTED: dict[str, str] = {
    "sklearn.neighbors.KNeighborsClassifier": (
        "scikit-learn and onnxruntime break ties between equidistant neighbours differently, so 3-13% of "
        "rows disagreed on every real data set tried (whole-number features tie often); use another classifier"
    ),
    "catboost.CatBoostClassifier": (
        "there is no skl2onnx converter to register for it: onnxmltools only calls CatBoost's own "
        "exporter, which converts a bare model, not one inside mlpack's preprocessing pipeline; "
        "use lightgbm.LGBMClassifier or xgboost.XGBClassifier"
    ),
    "catboost.CatBoostRegressor": (
        "there is no skl2onnx converter to register for it (see CatBoostClassifier); "
        "use lightgbm.LGBMRegressor or xgboost.XGBRegressor"
    ),
}

# The modules each extra must provide (checked without importing them).
_EXTRA_MODULES: dict[str, tuple[str, ...]] = {"boosting": ("onnxmltools", "xgboost", "lightgbm")}


def spec_for(class_path: str, task: Task) -> EstimatorSpec:
    if class_path in UNSUPPORTED:
        raise ConfigError(f"[estimator].class {class_path} is not supported: {UNSUPPORTED[class_path]}")
    spec = SUPPORTED.get(class_path)
    if spec is None:
        by_short_name = {path.rsplit(".", 1)[1]: path for path in SUPPORTED}
        guess = by_short_name.get(class_path.rsplit(".", 1)[-1]) or next(
            iter(difflib.get_close_matches(class_path, list(SUPPORTED), n=1, cutoff=0.6)), None
        )
        hint = f" (did you mean {guess}?)" if guess else " (see `mlpack estimators` for the supported ones)"
        raise ConfigError(f"[estimator].class {class_path} is not a supported estimator{hint}")
    if spec.task != task:
        raise ConfigError(f"[estimator].class {class_path} is a {spec.task} estimator but [model].task is {task}")
    return spec


def _import_class(class_path: str, spec: EstimatorSpec) -> Any:
    module_name, class_name = class_path.rsplit(".", 1)
    try:
        if spec.register is not None:
            spec.register()
        return getattr(importlib.import_module(module_name), class_name)
    except ImportError as exc:
        if spec.extra is None:
            raise
        raise ConfigError(
            f"[estimator].class {class_path} needs the '{spec.extra}' extra "
            f"(pip install 'mlpack-onnx[{spec.extra}]'): {exc}"
        ) from None


def make_estimator(section: EstimatorSection, task: Task, *, seed: int = 0) -> tuple[BaseEstimator, EstimatorSpec]:
    """The configured estimator, constructed with its params; bad params name themselves.

    Params: mlpack's defaults for the estimator, then the config's. An estimator with a
    `random_state` gets `seed` unless the config sets one, so that the same data and config
    train the same model (and give byte-identical artifacts).
    """
    spec = spec_for(section.class_path, task)
    estimator_class = _import_class(section.class_path, spec)
    class_name = section.class_path.rsplit(".", 1)[1]
    valid = set(estimator_class().get_params())
    if spec.native_params is not None and any(param not in valid for param in section.params):
        valid |= spec.native_params()
    for param in section.params:
        if param not in valid:
            hint = difflib.get_close_matches(param, sorted(valid), n=1)
            suggestion = f" (did you mean '{hint[0]}'?)" if hint else ""
            raise ConfigError(f"[estimator].params.{param} is not a parameter of {class_name}{suggestion}")
    params = {**spec.defaults, **section.params}
    if "random_state" in valid:
        params.setdefault("random_state", seed)
    trained_class = _import_class(spec.trained_class, spec) if spec.trained_class else estimator_class
    return trained_class(**params), spec


def fit_errors(spec: EstimatorSpec) -> tuple[type[Exception], ...]:
    """What a fit with bad params raises: scikit-learn's ValueError/TypeError, and the library's own."""
    errors: list[type[Exception]] = [ValueError, TypeError]
    for path in spec.fit_errors:
        module_name, class_name = path.rsplit(".", 1)
        errors.append(getattr(importlib.import_module(module_name), class_name))
    return tuple(errors)


def catalogue() -> dict[str, Any]:
    """What `mlpack estimators` shows: each supported estimator with what it needs, and the refused ones."""
    supported = {}
    for path, spec in SUPPORTED.items():
        modules = (path.split(".", 1)[0], *_EXTRA_MODULES.get(spec.extra or "", ()))
        supported[path] = {
            "task": spec.task,
            "scaled": spec.scaled,
            "probabilities": spec.probabilities if spec.task == "classification" else None,
            "defaults": dict(spec.defaults),
            "extra": spec.extra,
            "float32": spec.float32,
            "installed": all(importlib.util.find_spec(module) is not None for module in modules),
            "note": spec.note,
        }
    return {"supported": supported, "unsupported": dict(UNSUPPORTED)}


def has_probabilities(estimator: Any) -> bool:
    """Whether a (fitted or configured) classifier answers class probabilities: SVC only with
    probability=True, SGDClassifier only with a probabilistic loss, LinearSVC never."""
    return hasattr(estimator, "predict_proba")
