"""Reading the experiment log back: `mlpack experiments`, each build run's trials best first."""

from __future__ import annotations

import math
from typing import Any

from pymongo.collection import Collection

from mlpack.errors import ConfigError, outside


def list_trials(collection: Collection[dict[str, Any]], name: str | None, version: str | None) -> list[dict[str, Any]]:
    """Logged trials, one build run after another (by name, version, start), each run's trials best first.

    An unknown name or version is a usage error listing what the collection does hold.
    """
    query: dict[str, Any] = {}
    if name:
        query["name"] = name
    if version:
        query["version"] = version
    with outside("MongoDB", action=f"reading {collection.full_name}"):
        documents = list(collection.find(query, projection={"_id": 0}))
        names = sorted(map(str, collection.distinct("name"))) if not documents and query else []
        versions = sorted(map(str, collection.distinct("version", {"name": name}))) if name in names else []
    if not documents and query:
        where = f"in {collection.full_name}"
        if name and name not in names:
            raise ConfigError(f"no trials logged for {name!r} {where} (known models: {', '.join(names) or 'none'})")
        label = f"{name} {version}" if name else f"version {version}"
        known = f" (known versions: {', '.join(versions)})" if versions else ""
        raise ConfigError(f"no trials logged for {label} {where}{known}")
    runs: dict[tuple[str, str, str], list[dict[str, Any]]] = {}
    for document in documents:
        runs.setdefault((document["name"], document["version"], document.get("run", "")), []).append(document)
    ordered = sorted(
        runs.values(), key=lambda run: (run[0]["name"], _version_order(run[0]["version"]), run[0].get("started", ""))
    )
    return [document for run in ordered for document in sorted(run, key=_trial_rank)]


def _version_order(text: str) -> tuple[int, Any]:
    from packaging.version import InvalidVersion, Version

    try:
        return (0, Version(text))
    except InvalidVersion:
        return (1, text)


def _trial_rank(document: dict[str, Any]) -> tuple[int, float, int]:
    value = document.get("score")
    if document.get("status") != "ok" or value is None or math.isnan(value):
        return (1, 0.0, document.get("trial", 0))
    return (0, -value if document.get("higher_is_better", True) else value, document.get("trial", 0))


__all__ = ["list_trials"]
