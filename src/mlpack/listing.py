"""`mlpack models` and `mlpack experiments`: what the registry and the trial log hold for a project."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mlpack.config import Config
from mlpack.errors import ConfigError
from mlpack.registry import open_registry
from mlpack.registry.aliases import Aliases, registry_project
from mlpack.source import open_database
from mlpack.training.trial_history import list_trials


def list_models(project: str | Path, name: str | None = None, *, every: bool = False) -> list[dict[str, Any]]:
    """The registry's records of one model: `name`, else the project's own; `every`: all the registry holds."""
    config = registry_project(project)
    asked, name = name, _which(config, name, every)
    # An embedded server's registry is gone with the build that made it: "no builds recorded" would mislead.
    with open_registry(config, persistent_for="the builds are listed from a persistent registry") as registry:
        records = registry.list(name)
        if asked and not records:
            known = sorted({row["name"] for row in registry.list()})
            listing = f" (known: {', '.join(known)})" if known else " (the registry is empty)"
            raise ConfigError(f"no model named {name!r} in the registry{listing}")
        named = Aliases(registry).by_version(name) if registry.collection is not None else {}
        # The listing is the record with the aliases that name it (a view, not stored in the record).
        return [{**record, "aliases": named.get((record["name"], record["version"]), [])} for record in records]


def list_experiments(
    project: str | Path, name: str | None = None, version: str | None = None, *, every: bool = False
) -> list[dict[str, Any]]:
    """The logged trials of cross-validation and search of one model (`name`, else the project's own;
    `every`: all the database holds), each build's best first."""
    config = registry_project(project)
    asked, name = name, _which(config, name, every)
    with open_database(config.source, persistent_for="the trials are listed from a persistent database") as opened:
        try:
            return list_trials(opened.database[config.registry.experiments], name, version)
        except ConfigError:
            if asked or version:  # what the user named is not there: say what is
                raise
            return []  # the project's own model has no trials yet


def _which(config: Config, name: str | None, every: bool) -> str | None:
    """The model a listing is about: the one named, else the project's (a registry is often shared)."""
    if every and name:
        raise ConfigError(f"--all lists every model: leave out the name {name!r}, or drop --all")
    return None if every else name or config.model.name
