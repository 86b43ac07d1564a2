"""Registry-facing commands that are not a build: listing models (and, later, publishing)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mlpack.config import load_config
from mlpack.registry import Registry
from mlpack.source import connect, mongo_server


def list_models(project: str | Path, name: str | None = None) -> list[dict[str, Any]]:
    """The registry's records for the project's database, optionally of one model."""
    config = load_config(project)
    with mongo_server(config.source) as uri:
        client = connect(uri)
        try:
            registry = Registry.for_config(client[config.source.database], config.registry)
            return registry.list(name)
        finally:
            client.close()
