"""The registry of builds in MongoDB (records.py: one document per name and version) and the aliases
that name a version (aliases.py: promote, roll back, NAME@ALIAS)."""

from mlpack.registry.records import (
    FIRST_VERSION,
    HOLDING_STATUSES,
    STORED_KINDS,
    Registry,
    RegistryRecord,
    next_patch,
    open_registry,
)

__all__ = [
    "FIRST_VERSION",
    "HOLDING_STATUSES",
    "STORED_KINDS",
    "Registry",
    "RegistryRecord",
    "next_patch",
    "open_registry",
]
