"""Aliases: which registered version a name such as `production` stands for, and every move of it.

`mlpack promote NAME VERSION --alias ALIAS` points an alias at a version the registry holds as built
(or published; a rejected build cannot be promoted) and appends the move (alias, from, to, when,
reason, who) to the alias's history; a rollback is a promote of the earlier version. Each alias is one
document of `REGISTRY.aliases` ({name, alias, version, moves, history}) changed only by a
compare-and-swap on its move count (find_one_and_update with $push), so concurrent promotes never lose
a move and each move's `from` is the `to` of the one before.

`NAME@ALIAS` names the aliased version wherever a command takes an artifact (serve, inspect, k8s,
monitor --model) or a version (score, monitor --version): the registry says which version; the
artifact comes from `dist/` through BuildDir (its report's sha256), and must also be the build the
registry recorded; when `dist/` does not have it, from the registry's GridFS (`[registry]
store_artifacts`) into a cache folder, its sha256 checked against the record before it is used.
"""

from __future__ import annotations

import getpass
import hashlib
import os
import random
import re
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, BinaryIO

from gridfs.errors import CorruptGridFile, NoFile
from pymongo import ASCENDING, ReturnDocument
from pymongo.errors import DuplicateKeyError

from mlpack import names
from mlpack.artifacts.dist import BuildDir, sha256_of
from mlpack.config import Config, load_config
from mlpack.errors import ConfigError, ExternalError, outside
from mlpack.registry import HOLDING_STATUSES, Registry
from mlpack.source import open_database

ALIAS = re.compile(r"^[a-z][a-z0-9_-]{0,39}$")
_REFERENCE = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)?@([^@/\\:\s]+)$")
_FILE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+-]*$")  # a file or folder name the registry may give the cache
_CHUNK = 1 << 20
_ATTEMPTS = 500  # compare-and-swap retries: each failed one means another promote succeeded


@dataclass(frozen=True)
class Reference:
    """`NAME@ALIAS` (or `@ALIAS`: the project's own model)."""

    name: str
    alias: str

    def __str__(self) -> str:
        return f"{self.name}@{self.alias}"


def check_alias(alias: str) -> str:
    if not ALIAS.match(alias):
        raise ConfigError(
            f"{alias[:60]!r} is not a valid alias: a lowercase letter, then up to 39 lowercase letters, digits, "
            "- or _ (production, staging, canary-eu)"
        )
    return alias


def parse_reference(text: str | None) -> Reference | None:
    """`NAME@ALIAS` as a reference; anything else (a path, an image such as repo@sha256:...) is None."""
    if not text or "@" not in text or Path(text).exists():
        return None
    match = _REFERENCE.match(text)
    if match is None:
        return None
    return Reference(match.group(1) or "", check_alias(match.group(2)))


def _who() -> str:
    try:
        return getpass.getuser()
    except Exception:  # no login name and no passwd entry (a container's arbitrary uid)
        return f"uid {os.getuid()}" if hasattr(os, "getuid") else "unknown"


def _now() -> str:
    return datetime.now(tz=UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@contextmanager
def registry_of(config: Config) -> Iterator[Registry]:
    """The project's registry, which must outlive this command for an alias to mean anything."""
    if not config.registry.enabled:
        raise ConfigError(f"{config.path}: aliases live in the registry: set [registry].enabled = true")
    with open_database(config.source, persistent_for="aliases need a persistent registry") as opened:
        yield Registry.for_config(opened.database, config.registry)


class Aliases:
    """The aliases of a registry's models, beside it in `REGISTRY.aliases`."""

    def __init__(self, registry: Registry) -> None:
        self.registry = registry
        self.collection = registry.companion("aliases")

    def documents(self, name: str | None = None) -> list[dict[str, Any]]:
        query = {"name": name} if name else {}
        with outside("MongoDB", action=f"reading the aliases {self.collection.full_name}"):
            return list(self.collection.find(query, projection={"_id": 0}).sort([("name", 1), ("alias", 1)]))

    def by_version(self, name: str | None = None) -> dict[tuple[str, str], list[str]]:
        """(name, version) → the aliases naming it."""
        found: dict[tuple[str, str], list[str]] = {}
        for document in self.documents(name):
            found.setdefault((document["name"], document["version"]), []).append(document["alias"])
        return found

    def history(self, name: str | None = None, alias: str | None = None) -> list[dict[str, Any]]:
        """Every move, oldest first (name added to each)."""
        moves = [
            {"name": document["name"], **move}
            for document in self.documents(name)
            if alias is None or document["alias"] == alias
            for move in document.get("history", [])
        ]
        return sorted(moves, key=lambda move: str(move.get("when", "")))

    def version_of(self, name: str, alias: str) -> str:
        with outside("MongoDB", action=f"reading the aliases {self.collection.full_name}"):
            document = self.collection.find_one({"name": name, "alias": alias})
        if document is None or not isinstance(document.get("version"), str):
            if not self.registry.list(name):  # a typo in NAME: say that, not "no alias" of a model never built
                models = sorted({row["name"] for row in self.registry.list()})
                listing = f"known: {', '.join(models)}" if models else "the registry is empty"
                raise ConfigError(f"no model named {name!r} in the registry ({listing})")
            known = sorted(d["alias"] for d in self.documents(name))
            listing = f"its aliases: {', '.join(known)}" if known else "it has none"
            raise ConfigError(
                f"{name} has no alias {alias!r} in the registry ({listing}; "
                f"set one with `mlpack promote {name} VERSION --alias {alias}`)"
            )
        return str(document["version"])

    def promote(self, name: str, version: str, alias: str, *, reason: str = "") -> dict[str, Any] | None:
        """Point `alias` at `version`: the move recorded, or None when the alias already names it."""
        check_alias(alias)
        check_reason(reason)
        self._check_promotable(name, version)
        with outside("MongoDB", action=f"indexing the aliases {self.collection.full_name}"):
            self.collection.create_index([("name", ASCENDING), ("alias", ASCENDING)], unique=True)
        who = _who()
        for _ in range(_ATTEMPTS):
            with outside("MongoDB", action=f"reading the aliases {self.collection.full_name}"):
                current = self.collection.find_one({"name": name, "alias": alias})
            moves = int(current.get("moves", 0)) if current else 0
            previous = current.get("version") if current else None
            if previous == version:
                return None
            move = {"alias": alias, "from": previous, "to": version, "when": _now(), "reason": reason, "who": who}
            with outside("MongoDB", action=f"moving {name}@{alias} in {self.collection.full_name}"):
                try:
                    done = self.collection.find_one_and_update(
                        {"name": name, "alias": alias, "moves": moves},
                        {"$set": {"version": version, "moves": moves + 1}, "$push": {"history": move}},
                        upsert=True,
                        return_document=ReturnDocument.AFTER,
                    )
                except DuplicateKeyError:  # another promote moved it (or created it) first: read again
                    done = None
            if done is not None:
                return move
            time.sleep(random.uniform(0, 0.005))
        raise ExternalError(f"{name}@{alias} kept changing under {_ATTEMPTS} attempts to move it: try again")

    def _check_promotable(self, name: str, version: str) -> None:
        record = self.registry.find(name, version)
        if record is None:
            rows = self.registry.list(name)
            if not rows:
                known = sorted({row["name"] for row in self.registry.list()})
                listing = f"known: {', '.join(known)}" if known else "the registry is empty"
                raise ConfigError(f"no model named {name!r} in the registry ({listing})")
            held = [row["version"] for row in rows if row.get("status") in HOLDING_STATUSES]
            raise ConfigError(
                f"{name} {version[:80]} is not in the registry (built versions: {', '.join(held) or 'none'})"
            )
        status = record.get("status")
        if status not in HOLDING_STATUSES:
            why = f": {record['reason']}" if record.get("reason") else ""
            raise ConfigError(f"{name} {version} was {status}{why}; only a built version can be promoted")


def registry_project(project: str | Path) -> Config:
    """The project whose mlpack.toml names the registry's database. A folder without one was answered "run
    `mlpack init NAME` to create a project", which misleads whoever only wants to read or move an alias."""
    try:
        return load_config(project)
    except ConfigError as exc:
        if not exc.message.startswith("no mlpack.toml in "):
            raise
        raise ConfigError(
            f"{exc.message.split(' (', 1)[0]}: the registry is found through a project's mlpack.toml "
            "(its [source] database): run this in the project's folder, or pass --config PROJECT"
        ) from None


def check_reason(reason: str) -> None:
    """A move's reason is one line: a line break split the history table's row in two. Of any length: the
    scheduled retraining's names every drifted feature."""
    problem = names.plain_path(reason)
    if problem:
        raise ConfigError(f"--reason {problem}: it must be one line of text")


def promote(project: str | Path, name: str, version: str, alias: str, *, reason: str = "") -> dict[str, Any] | None:
    check_alias(alias)
    check_reason(reason)
    with registry_of(registry_project(project)) as registry:
        return Aliases(registry).promote(name, version, alias, reason=reason)


def history(project: str | Path, name: str | None = None, alias: str | None = None) -> list[dict[str, Any]]:
    with registry_of(registry_project(project)) as registry:
        return Aliases(registry).history(name, alias)


# -- NAME@ALIAS → a verified artifact ----------------------------------------------------------
@dataclass(frozen=True)
class Resolved:
    name: str
    alias: str
    version: str
    path: Path
    fetched: bool  # from the registry's GridFS (else from dist/)


def cache_dir() -> Path:
    """Where fetched artifacts are kept: MLPACK_CACHE_DIR, else $XDG_CACHE_HOME/mlpack, else ~/.cache/mlpack."""
    configured = os.environ.get("MLPACK_CACHE_DIR", "").strip()
    if configured:
        return Path(configured)
    base = os.environ.get("XDG_CACHE_HOME", "").strip()
    return (Path(base) if base else Path.home() / ".cache") / "mlpack"


def resolve(config: Config, reference: Reference, *, kind: str = "wheel", dist: Path | None = None) -> Resolved:
    """The artifact of `kind` of the version `reference` names, its sha256 the registry's record's."""
    name = reference.name or config.model.name
    with registry_of(config) as registry:
        version = Aliases(registry).version_of(name, reference.alias)
        if not _FILE.match(version):  # it names files in dist/ and the cache: never a path
            raise ConfigError(
                f"{name}@{reference.alias} names {version[:80]!r}, which is not a version: promote another"
            )
        record = registry.find(name, version)
        if record is None or record.get("status") not in HOLDING_STATUSES:
            state = "is not in the registry" if record is None else f"is {record.get('status')}"
            raise ConfigError(f"{name}@{reference.alias} names {name} {version}, which {state}: promote another")
        entry = record.get("artifacts", {}).get(kind)
        if not isinstance(entry, dict) or not isinstance(entry.get("sha256"), str):
            raise ConfigError(f"the registry's record of {name} {version} has no {kind}: rebuild it")
        builds = BuildDir(dist or config.project_dir / "dist", name)
        stored = entry.get("stored")
        if builds.report_path(version).is_file():
            path = builds.verified(version, kind)
            if sha256_of(path) == entry["sha256"]:
                return Resolved(name, reference.alias, version, path, fetched=False)
            if not isinstance(stored, dict):
                raise ConfigError(
                    f"{path} is not the build of {name} {version} that the registry recorded (sha256 differs): "
                    "refusing it; pass --dist with the registered build"
                )
        elif not isinstance(stored, dict):
            raise ConfigError(
                f"{name}@{reference.alias} is {name} {version}, whose {kind} is neither in {builds.folder} nor "
                "stored in the registry: pass --dist, or build with [registry].store_artifacts = true"
            )
        return Resolved(name, reference.alias, version, _fetch(registry, name, version, kind, entry), fetched=True)


def _fetch(registry: Registry, name: str, version: str, kind: str, entry: dict[str, Any]) -> Path:
    file, stored, expected = entry.get("file"), entry["stored"], entry["sha256"]
    if not (isinstance(file, str) and _FILE.match(file) and _FILE.match(version) and _FILE.match(name)):
        raise ConfigError(f"the registry's record of {name} {version[:80]} names no usable {kind} file: rebuild it")
    folder = cache_dir() / "artifacts" / name / version
    target = folder / file
    if target.is_file() and sha256_of(target) == expected:
        return target
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"cannot create the cache folder {folder}: {exc.strerror} (set MLPACK_CACHE_DIR)") from None
    partial = folder / f".{file}.{os.getpid()}.part"
    digest = hashlib.sha256()
    try:
        with _open_for_writing(partial) as out, outside("MongoDB", action=f"fetching {file} from the registry"):
            try:
                stream = registry.open_blob(stored.get("id"))
                for block in iter(lambda: stream.read(_CHUNK), b""):
                    digest.update(block)
                    _write(out, block, partial)
            except (NoFile, CorruptGridFile) as exc:
                raise ConfigError(
                    f"the {kind} of {name} {version} stored in the registry cannot be read ({exc}): "
                    f"rebuild it (mlpack build --force --version {version})"
                ) from None
        if digest.hexdigest() != expected:
            raise ConfigError(
                f"the {kind} of {name} {version} stored in the registry does not match the sha256 its record holds "
                f"(tampered or damaged): refused; rebuild it (mlpack build --force --version {version})"
            )
        os.replace(partial, target)
    finally:
        partial.unlink(missing_ok=True)
    return target


@contextmanager
def _open_for_writing(path: Path) -> Iterator[BinaryIO]:
    try:
        stream = path.open("wb")
    except OSError as exc:
        raise ConfigError(f"cannot write {path}: {exc.strerror} (set MLPACK_CACHE_DIR)") from None
    with stream:
        yield stream


def _write(stream: BinaryIO, block: bytes, path: Path) -> None:
    try:
        stream.write(block)
    except OSError as exc:
        raise ConfigError(f"cannot write {path}: {exc.strerror} (set MLPACK_CACHE_DIR)") from None


def artifact_path(text: str, *, project: str | Path = ".", dist: Path | None = None, kind: str = "wheel") -> str:
    """What a command was given as its artifact: a path, or `NAME@ALIAS` resolved to a verified file."""
    reference = parse_reference(text)
    if reference is None:
        return text
    try:
        config = load_config(project)
    except ConfigError as exc:
        raise ConfigError(f"{text} is resolved through the registry of a project (--config): {exc.message}") from None
    return str(resolve(config, reference, kind=kind, dist=dist).path)


def project_version(config: Config, text: str | None, *, flag: str = "--version") -> Reference | None:
    """A `--version NAME@ALIAS` (or `@ALIAS`), which must name the project's own model."""
    reference = parse_reference(text)
    if reference is not None and reference.name not in ("", config.model.name):
        raise ConfigError(f"{flag} {text} names another model than the project's ({config.model.name})")
    return reference


__all__ = ["Aliases", "Reference", "Resolved", "artifact_path", "parse_reference", "promote", "resolve"]
