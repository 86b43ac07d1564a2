"""Which model and which inference log to read, and the time window: the options of `mlpack monitor`."""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mlpack.artifacts.dist import BuildDir
from mlpack.config import Config
from mlpack.errors import ConfigError
from mlpack.runtime.settings import DEFAULT_LOG_URI_ENV, SettingsError, inference_log, mongodb_uri_problem

CHUNK = 2000  # logged records read through the runtime at once
# Label metrics (the log holds labels, not probabilities), by task.
LIVE_METRICS = {
    "classification": ("accuracy", "balanced_accuracy", "f1_macro"),
    "regression": ("r2", "rmse", "mae"),
}


# -- options -------------------------------------------------------------------------------------
def check_threshold(value: float, flag: str = "--threshold", *, share: bool = False) -> float:
    """A PSI limit is a positive number; a rate's limit (`share`) is above 0 and at most 1."""
    if not (math.isfinite(value) and value > 0) or (share and value > 1):
        wanted = "a share above 0 and at most 1 (0.1 = 10%)" if share else "a positive number"
        raise ConfigError(f"{flag} must be {wanted}, got {value:g}")
    return value


@dataclass(frozen=True)
class Limits:
    """Above any of these, `mlpack monitor` exits 1: a PSI, a rise of the missing rate over the training
    one, a share of categories never seen in training (the flags, else [monitor] in mlpack.toml)."""

    psi: float = 0.2
    missing: float = 0.1
    unknown: float = 0.05

    @classmethod
    def of(cls, config: Config, psi: float | None, missing: float | None, unknown: float | None) -> Limits:
        section = config.monitor
        missing = section.missing_threshold if missing is None else missing
        unknown = section.unknown_threshold if unknown is None else unknown
        return cls(
            check_threshold(section.threshold if psi is None else psi),
            check_threshold(missing, "--missing-threshold", share=True),
            check_threshold(unknown, "--unknown-threshold", share=True),
        )


# -- which model, which log ----------------------------------------------------------------------
def model_metadata(config: Config, *, version: str | None, dist: Path | None, artifact: str | None) -> dict[str, Any]:
    """The metadata (with its baseline) of the model version being monitored."""
    from mlpack.registry import aliases

    metadata: dict[str, Any]
    reference = aliases.project_version(config, version)
    if artifact or reference:
        from mlpack.artifacts.read import read_metadata

        reference = aliases.parse_reference(artifact) if artifact else reference  # --model NAME@ALIAS: any model
        if reference is not None:
            artifact = str(aliases.resolve(config, reference, dist=dist).path)
        assert artifact is not None
        metadata = dict(read_metadata(artifact))
    else:
        builds = BuildDir(dist or config.project_dir / "dist", config.model.name)
        metadata = dict(builds.report(builds.resolve(version or config.model.version)))
    if not metadata.get("baseline"):
        raise ConfigError(
            f"{metadata.get('name')} {metadata.get('version')} has no training baseline in its metadata "
            "(built by an older mlpack): rebuild it to monitor drift"
        )
    return dict(metadata)


@dataclass(frozen=True)
class LogLocation:
    uri: str
    database: str
    collection: str
    uri_env: str


def log_location(config: Config, metadata: Mapping[str, Any]) -> LogLocation:
    """Where the server writes its log, read by the server's own reader (runtime.settings), so the
    variables, [serve] keys and name checks are the server's; the built model's [serve] wins over the
    project's. With no log variable set, the source's MongoDB is where the log is looked for."""
    serve = config.serve
    settings = {
        "inference_log_uri_env": serve.inference_log_uri_env,
        "inference_log_database": serve.inference_log_database,
        "inference_log_collection": serve.inference_log_collection,
        **metadata.get("serve", {}),
    }
    try:
        log, _ = inference_log(settings, os.environ)
        via = log.uri_env if log else config.source.uri_env
        if log is None and os.environ.get(via, "").strip():
            problem = mongodb_uri_problem(os.environ[via].strip(), via)  # named as the user set it
            if problem:
                raise ConfigError(problem)
            log, _ = inference_log(settings, {**os.environ, DEFAULT_LOG_URI_ENV: os.environ[via]})
    except SettingsError as exc:
        raise ConfigError(exc.message) from None
    if log is None:
        raise ConfigError(
            f"no inference log to read: set {settings['inference_log_uri_env']} (the server's log connection "
            f"string) or {config.source.uri_env} to the MongoDB that holds it"
        )
    return LogLocation(log.uri, log.database, log.collection, via)
