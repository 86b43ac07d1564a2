"""Rules between the keys of one section that their types cannot say: the champion's, the estimator's
decision ([estimator] calibration, threshold, early stopping). Each failure names the key (exit 2)."""

from __future__ import annotations

import math
import re

from mlpack.config.sections import Config
from mlpack.errors import ConfigError
from mlpack.redaction import remember_secret_variable

# What [estimator].threshold_metric may name (estimators/decision.py computes them on held-out folds).
THRESHOLD_METRICS = ("f1", "precision", "recall", "accuracy", "balanced_accuracy", "f1_macro")


def check_champion(config: Config, where: str) -> None:
    """[evaluation].champion: an alias name; champion_margin and champion_metric only with it."""
    evaluation = config.evaluation
    if evaluation.champion and not re.match(r"^[a-z][a-z0-9_-]{0,39}$", evaluation.champion):
        raise ConfigError(
            f"{where}: [evaluation].champion {evaluation.champion[:60]!r} is not an alias name "
            "(a lowercase letter, then up to 39 lowercase letters, digits, - or _: production, staging)"
        )
    margin = evaluation.champion_margin
    if not math.isnan(margin) and not (math.isfinite(margin) and margin >= 0):
        raise ConfigError(f"{where}: [evaluation].champion_margin must be a number of at least 0, got {margin}")
    if not evaluation.champion and (not math.isnan(margin) or evaluation.champion_metric):
        key = "champion_margin" if not math.isnan(margin) else "champion_metric"
        raise ConfigError(f'{where}: [evaluation].{key} needs champion, the alias to compare with ("production")')


def check_estimator(config: Config, where: str) -> None:
    """[estimator]: calibration and a threshold are a classifier's; one threshold, fixed or chosen."""
    section, classification = config.estimator, config.model.task == "classification"
    for key, given in (
        ("calibration", bool(section.calibration)),
        ("threshold", not math.isnan(section.threshold)),
        ("threshold_metric", bool(section.threshold_metric)),
        ("positive_class", bool(section.positive_class)),
    ):
        if given and not classification:
            raise ConfigError(f"{where}: [estimator].{key} is for a classifier; [model].task is {config.model.task}")
    if not math.isnan(section.threshold) and not 0 < section.threshold < 1:
        raise ConfigError(
            f"{where}: [estimator].threshold must be a probability between 0 and 1, got {section.threshold}"
        )
    if not math.isnan(section.threshold) and section.threshold_metric:
        raise ConfigError(
            f"{where}: [estimator] has threshold and threshold_metric: give a threshold, or the metric to choose it for"
        )
    if section.threshold_metric and section.threshold_metric not in THRESHOLD_METRICS:
        raise ConfigError(
            f"{where}: [estimator].threshold_metric {section.threshold_metric!r} is not one of "
            + ", ".join(THRESHOLD_METRICS)
        )
    if section.positive_class and not section.decides:
        raise ConfigError(
            f"{where}: [estimator].positive_class is the class of a threshold: give threshold or threshold_metric"
        )
    stopping = section.early_stopping
    if stopping is not None and stopping.rounds < 1:
        raise ConfigError(f"{where}: [estimator.early_stopping].rounds must be at least 1")
    if stopping is not None and not 0 < stopping.validation_fraction < 1:
        raise ConfigError(
            f"{where}: [estimator.early_stopping].validation_fraction must be between 0 and 1, got "
            f"{stopping.validation_fraction}"
        )


def declare_secrets(config: Config) -> None:
    """The environment variables this config names for secrets (MongoDB connection strings, the signing
    key and its password) are kept from every tool mlpack runs (pip, docker) from the
    moment the config is read, whichever command reads it and whether or not it reads them itself."""
    named = [config.source.uri_env, config.serve.inference_log_uri_env]
    if config.source.feedback is not None and config.source.feedback.uri_env:
        named.append(config.source.feedback.uri_env)
    if config.sign is not None:
        named += [config.sign.key_env, config.sign.password_env]
    for name in named:
        if name:
            remember_secret_variable(name)
