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
    """Where the server writes its log: the same variables and [serve] keys the server reads."""
    settings = {**metadata.get("serve", {})}
    serve = config.serve
    uri_env = settings.get("inference_log_uri_env") or serve.inference_log_uri_env
    candidates = [uri_env, "MLPACK_INFERENCE_LOG_URI", config.source.uri_env]
    for name in candidates:
        uri = os.environ.get(name, "").strip()
        if uri:
            break
    else:
        raise ConfigError(
            f"no inference log to read: set {uri_env} (the server's log connection string) "
            f"or {config.source.uri_env} to the MongoDB that holds it"
        )
    database = os.environ.get("MLPACK_INFERENCE_LOG_DB") or settings.get(
        "inference_log_database", serve.inference_log_database
    )
    collection = os.environ.get("MLPACK_INFERENCE_LOG_COLLECTION") or settings.get(
        "inference_log_collection", serve.inference_log_collection
    )
    return LogLocation(uri, database, collection, name)
