"""The recipe: what training needs of mlpack.toml, settled once before any data is read.

`settle(config)` constructs the estimator once, checks the metrics (the champion's too), the search
space and the folds, and settles what the graph's features are made of (`FeatureSpec`); every stage
of training (split, experiments, fit) is handed this frozen value instead of the whole Config and
re-derives nothing. Its mistakes are exit 2
before any database is touched.
"""

from __future__ import annotations

import dataclasses
import difflib
from dataclasses import dataclass
from typing import Any

import numpy as np
from sklearn.base import BaseEstimator
from sklearn.model_selection import ParameterGrid, ParameterSampler
from sklearn.utils.validation import has_fit_parameter

from mlpack.config import (
    Config,
    EstimatorSection,
    EvaluationSection,
    FeaturesSection,
    PreprocessingSection,
    Task,
)
from mlpack.errors import ConfigError
from mlpack.estimators import EstimatorSpec, make_estimator
from mlpack.features.pipeline import FeatureSpec
from mlpack.names import onnx_input_names
from mlpack.runtime import category_text
from mlpack.training.metrics import METRICS, champion_metric, metric_names

DEFAULT_FOLDS = 3


@dataclass(frozen=True)
class Recipe:
    task: Task
    feature_spec: FeatureSpec  # what the graph's features are made of (features/pipeline.py)
    evaluation: EvaluationSection
    estimator: EstimatorSection  # the class and the configured params
    spec: EstimatorSpec
    metrics: tuple[str, ...]  # what the build reports; the gates' metrics included
    plan: Plan | None  # cross-validation or search, None for neither
    champion_metric: str  # the metric a champion's margin is measured on (checked when [evaluation].champion is set)
    # Once the data is known (train.with_classes), for a classifier: how mlpack.toml may name each class
    # (its text, its [features].labels name) → its code, and a threshold's class (its code).
    class_keys: dict[str, Any] | None = None
    positive: Any = None

    @property
    def classification(self) -> bool:
        return self.task == "classification"

    @property
    def features(self) -> FeaturesSection:
        return self.feature_spec.features

    @property
    def preprocessing(self) -> PreprocessingSection:
        return self.feature_spec.preprocessing

    @property
    def input_names(self) -> dict[str, str]:
        """Feature path → ONNX input name."""
        return self.feature_spec.input_names

    @property
    def estimator_name(self) -> str:
        return self.estimator.class_path.rsplit(".", 1)[-1]

    def make(self, params: dict[str, Any]) -> tuple[BaseEstimator, EstimatorSpec]:
        """A fresh estimator with these params (over mlpack's defaults), seeded by [evaluation].seed; a
        class_weight table's keys (a class's text or label name) mapped to the classes' codes. The final
        fit and every trial make theirs here, so a key that works for one works for the other."""
        weights = params.get("class_weight")
        if self.class_keys is not None and isinstance(weights, dict):
            params = {**params, "class_weight": weights_by_class(weights, self.class_keys)}
        section = dataclasses.replace(self.estimator, params=params)
        return make_estimator(section, self.task, seed=self.evaluation.seed)


def weights_by_class(weights: dict[Any, Any], keys: dict[str, Any]) -> dict[Any, Any]:
    """`class_weight = { churned = 5.0, stayed = 1.0 }`: TOML keys are strings, integer classes are not;
    each key is mapped to its class's code by `keys` (the recipe's class_keys). A key that names no class
    is a config error (scikit-learn's own message would not name the key)."""
    mapped = {}
    for key, value in weights.items():
        text = key if isinstance(key, str) else category_text(key)
        if text not in keys:
            known = ", ".join(keys)
            raise ConfigError(f"class_weight names {key!r}, which is not a class of the target (classes: {known})")
        mapped[keys[text]] = value
    return mapped


# TOML has no null. In [estimator].params and [search].params this string stands for Python's None
# (max_depth = [4, 8, "@none"]): no parameter of a supported estimator takes it as a value, where
# "none" or "None" could be one (a class named "none", a string option) and a typo of it would pass.
NONE = "@none"
_NULL_LOOKALIKES = {"none", "null", "nil", "~"}


def with_nones(value: Any) -> Any:
    """`value` with every "@none" (inside lists and tables too) as None."""
    if isinstance(value, str) and value == NONE:
        return None
    if isinstance(value, list):
        return [with_nones(v) for v in value]
    if isinstance(value, dict):
        return {k: with_nones(v) for k, v in value.items()}
    return value


def _with_nones(config: Config) -> Config:
    estimator = dataclasses.replace(config.estimator, params=with_nones(config.estimator.params))
    search = config.search and dataclasses.replace(config.search, params=with_nones(config.search.params))
    return dataclasses.replace(config, estimator=estimator, search=search)


def settle(config: Config) -> Recipe:
    config = _with_nones(config)
    estimator, spec = make_estimator(config.estimator, config.model.task)
    _check_values(estimator, config.estimator.params, "[estimator].params")
    _check_decision(config, estimator, spec)
    names = _metrics(config, estimator)
    the_plan = _plan(config, estimator, names)
    return Recipe(
        task=config.model.task,
        evaluation=config.evaluation,
        estimator=config.estimator,
        spec=spec,
        metrics=tuple(names),
        plan=the_plan,
        champion_metric=champion_metric(config.evaluation, names) if config.evaluation.champion else names[0],
        feature_spec=feature_spec(config, spec),
    )


def feature_spec(config: Config, spec: EstimatorSpec) -> FeatureSpec:
    """[features] and [preprocessing], with what they depend on of the estimator: whether it is scaled
    ([preprocessing].scale "auto" scales only scale-sensitive estimators), the opsets its converter needs, and
    the dtype its fit takes the features in."""
    scale = config.preprocessing.scale
    opset: int | dict[str, int] = config.export.target_opset
    if spec.ml_opset is not None:
        opset = {"": config.export.target_opset, "ai.onnx.ml": spec.ml_opset}
    return FeatureSpec(
        features=config.features,
        preprocessing=config.preprocessing,
        input_names=onnx_input_names(config.features.inputs),
        scale=("standard" if spec.scaled else "none") if scale == "auto" else scale,
        task=config.model.task,
        seed=config.evaluation.seed,
        opset=opset,
        dtype="float32" if config.estimator.float32 else "float64",
    )


@dataclass(frozen=True)
class Plan:
    """What to run, settled before any data is read (so config mistakes are exit 2 up front)."""

    kind: str  # "search" | "cv"
    points: list[dict[str, Any]]
    folds: int
    scoring: str
    higher_is_better: bool
    seed: int
    space: dict[str, list[Any]]
    method: str


def plan(config: Config) -> Plan | None:
    """The trials a config asks for, or None without [evaluation].cv and [search]. Checks every name."""
    config = _with_nones(config)
    estimator, _ = make_estimator(config.estimator, config.model.task)
    return _plan(config, estimator, _metrics(config, estimator))


def _metrics(config: Config, estimator: BaseEstimator) -> list[str]:
    return metric_names(config.model.task, config.evaluation, estimator, config.estimator.class_path)


def _plan(config: Config, estimator: BaseEstimator, names: list[str]) -> Plan | None:
    search, evaluation = config.search, config.evaluation
    check_sample_weight(config, estimator)
    if search is None and not evaluation.cv:
        return None
    if search is None:
        scoring = names[0]
        return Plan("cv", [{}], evaluation.cv, scoring, METRICS[scoring].higher_is_better, evaluation.seed, {}, "cv")
    scoring = search.scoring or names[0]
    metric = METRICS.get(scoring)
    if metric is None or metric.task != config.model.task:
        known = ", ".join(n for n, m in METRICS.items() if m.task == config.model.task)
        raise ConfigError(f"[search].scoring '{scoring}' is not a {config.model.task} metric (known: {known})")
    _check_param_names(config, estimator)
    if search.method == "grid":
        points = list(ParameterGrid(search.params))
    else:
        size = len(ParameterGrid(search.params))
        sampler = ParameterSampler(search.params, n_iter=min(search.n_iter, size), random_state=search.seed)
        points = list(sampler)
    # TOML hands over plain Python values; numpy scalars from the sampler would not go into MongoDB.
    points = [{k: _plain(v) for k, v in sorted(point.items())} for point in points]
    for point in points:  # a value the estimator refuses is a config mistake: said now, not as failed trials
        _check_values(estimator, {**config.estimator.params, **point}, "[search].params", only=set(point))
    folds = search.cv or evaluation.cv or DEFAULT_FOLDS
    return Plan(
        "search", points, folds, scoring, metric.higher_is_better, evaluation.seed, search.params, search.method
    )


def _check_values(estimator: BaseEstimator, params: dict[str, Any], where: str, only: set[str] | None = None) -> None:
    """scikit-learn's own constraints on each value (an int >= 1 or None, one of "sqrt", "log2"...), before
    any data is read; a "none" written for None gets the spelling that works. Estimators without declared
    constraints (XGBoost, LightGBM) are checked by their fit, as failed trials."""
    from sklearn.base import clone
    from sklearn.utils._param_validation import InvalidParameterError

    if not hasattr(type(estimator), "_parameter_constraints"):
        return
    candidate = clone(estimator).set_params(**params)
    try:
        candidate._validate_params()
    except InvalidParameterError as exc:
        name = next((n for n in sorted(params, key=len, reverse=True) if f"'{n}' parameter" in str(exc)), "")
        if only is not None and name and name not in only:
            return  # a configured param's own problem, said for [estimator].params
        value = params.get(name)
        hint = f' (TOML has no null: write "{NONE}" for None)' if str(value).strip().lower() in _NULL_LOOKALIKES else ""
        raise ConfigError(f"{where}.{name or '?'} = {value!r}: {exc}{hint}") from None


def _check_decision(config: Config, estimator: BaseEstimator, spec: EstimatorSpec) -> None:
    """[estimator] early_stopping needs a boosting estimator; calibration and a threshold need probabilities;
    float32 an estimator whose fit keeps float32."""
    from mlpack.estimators import FLOAT32_ESTIMATORS, has_probabilities

    section, name = config.estimator, config.estimator.class_path.rsplit(".", 1)[-1]
    if section.float32 and not spec.float32:
        # Given float32, some copy it to float64 (an SVM: more memory, not less); the others' metrics and
        # parity in float32 are unmeasured (the catalogue's `float32` says which is which).
        raise ConfigError(
            f"[estimator].float32 is for {' and '.join(FLOAT32_ESTIMATORS)}, whose fit keeps the graph's "
            f"float32 features float32; {name} is given them in float64"
        )
    if section.early_stopping is not None and not spec.early_stopping:
        raise ConfigError(
            f"[estimator.early_stopping]: {name} does not boost, so there is nothing to stop early; it is for "
            "GradientBoosting*, HistGradientBoosting*, XGBoost and LightGBM"
        )
    for key, given in (("calibration", bool(section.calibration)), ("threshold", section.decides)):
        if given and not has_probabilities(estimator):
            raise ConfigError(
                f"[estimator].{key} needs class probabilities, which {name} with these params does not give"
            )


def _plain(value: Any) -> Any:
    return value.item() if isinstance(value, np.generic) else value


def _check_param_names(config: Config, estimator: BaseEstimator) -> None:
    assert config.search is not None
    valid = sorted(estimator.get_params())
    name = type(estimator).__name__
    for param in config.search.params:
        if param not in valid:
            hint = difflib.get_close_matches(param, valid, n=1)
            suggestion = f" (did you mean '{hint[0]}'?)" if hint else ""
            raise ConfigError(f"[search].params.{param} is not a parameter of {name}{suggestion}")


def check_sample_weight(config: Config, estimator: BaseEstimator) -> None:
    """[features].weight needs an estimator whose fit takes sample_weight (KNeighbors*, MLP* do not)."""
    if config.features.weight and not has_fit_parameter(estimator, "sample_weight"):
        raise ConfigError(
            f"[features].weight: {type(estimator).__name__} does not accept sample weights; "
            "remove the weight or choose another estimator (`mlpack estimators`)"
        )
