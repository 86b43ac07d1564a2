"""`mlpack models` and `mlpack experiments`: what the registry and the trial log hold for a project."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mlpack.aliases import Aliases
from mlpack.config import load_config
from mlpack.errors import ConfigError
from mlpack.registry import open_registry
from mlpack.source import open_database
from mlpack.training.trial_history import list_trials


def list_models(project: str | Path, name: str | None = None) -> list[dict[str, Any]]:
    """The registry's records for the project's database, optionally of one model."""
    config = load_config(project)
    with open_registry(config) as registry:
        records = registry.list(name)
        if name and not records:
            known = sorted({row["name"] for row in registry.list()})
            listing = f" (known: {', '.join(known)})" if known else " (the registry is empty)"
            raise ConfigError(f"no model named {name!r} in the registry{listing}")
        named = Aliases(registry).by_version(name) if registry.collection is not None else {}
        # The listing is the record with the aliases that name it (a view, not stored in the record).
        return [{**record, "aliases": named.get((record["name"], record["version"]), [])} for record in records]


def list_experiments(project: str | Path, name: str | None = None, version: str | None = None) -> list[dict[str, Any]]:
    """The logged trials of cross-validation and search, each build's best first."""
    config = load_config(project)
    with open_database(config.source) as opened:
        return list_trials(opened.database[config.registry.experiments], name, version)
