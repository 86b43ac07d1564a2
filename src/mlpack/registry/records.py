"""The build registry: one document per (name, version) in MongoDB.

Beside the collection (`[registry].collection`, default `mlpack_models`) live two more of the same
name: `NAME.aliases` (which version each alias names, with every move; mlpack.aliases) and, with
`[registry].store_artifacts`, the GridFS bucket `NAME.artifacts` holding each build's wheel and
`.onnx`, so that a machine that never saw `dist/` can fetch a registered build (digests checked).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal, TypedDict, cast

from bson import ObjectId
from gridfs import GridFSBucket
from gridfs.grid_file import GridOut
from packaging.version import InvalidVersion, Version
from pymongo import ASCENDING
from pymongo.collection import Collection
from pymongo.database import Database

from mlpack.config import Config, RegistrySection
from mlpack.errors import ConfigError, outside
from mlpack.source import open_database

FIRST_VERSION = "1.0.0"
# A rejected build leaves its record for the log, but does not hold the version.
HOLDING_STATUSES = ("built", "published")
_PROJECTION = {"_id": 0, "trained_on": 0}  # what find() and list() read of a record
STORED_KINDS = ("wheel", "onnx")  # what `store_artifacts` puts in GridFS: what serve, score and k8s read


Status = Literal["built", "published", "rejected"]


class _RecordRequired(TypedDict):
    name: str
    version: str
    status: Status
    created: str  # the build's time (SOURCE_DATE_EPOCH when set)
    recorded: str  # when the registry was written
    task: str
    metrics: dict[str, float]
    data: dict[str, Any]  # database, collection, rows, sha256 of the training data
    config_sha256: str
    estimator: str  # the class path


class RegistryRecord(_RecordRequired, total=False):
    """One build in the registry collection, keyed by (name, version)."""

    artifacts: dict[str, dict[str, Any]]  # kind → file, size, sha256 (and "stored": its GridFS id)
    image: dict[str, Any]
    reason: str  # a rejected build's: the gate or check that refused it
    details: str
    published: dict[str, str]  # where and when `mlpack publish` uploaded it
    # A Bloom filter of the training rows' _ids (training/seen.py): read only by trained_on(), as it may
    # weigh megabytes; find() and list() leave it out.
    trained_on: dict[str, Any]


def next_patch(versions: list[str]) -> str:
    """The version after the newest (PEP 440 ordering): 1.2.3 → 1.2.4; none → 1.0.0."""
    parsed = []
    for text in versions:
        try:
            parsed.append(Version(text))
        except InvalidVersion:
            continue
    if not parsed:
        return FIRST_VERSION
    newest = max(parsed)
    return f"{newest.major}.{newest.minor}.{newest.micro + 1}"


class Registry:
    """Records builds; a disabled registry (collection None) records nothing and holds no versions."""

    def __init__(self, collection: Collection[dict[str, Any]] | None, *, store_artifacts: bool = False) -> None:
        self.collection = collection
        self.store_artifacts = store_artifacts and collection is not None
        self._indexed = False

    @classmethod
    def for_config(cls, database: Database[dict[str, Any]], section: RegistrySection) -> Registry:
        if section.store_artifacts and not section.enabled:
            raise ConfigError(
                "[registry].store_artifacts = true needs the registry: set [registry].enabled = true (or leave it out)"
            )
        return cls(database[section.collection] if section.enabled else None, store_artifacts=section.store_artifacts)

    def companion(self, suffix: str) -> Collection[dict[str, Any]]:
        """A collection beside the registry's own: `mlpack_models.aliases`."""
        assert self.collection is not None
        return self.collection.database[f"{self.collection.name}.{suffix}"]

    @property
    def bucket(self) -> GridFSBucket:
        assert self.collection is not None
        return GridFSBucket(self.collection.database, bucket_name=f"{self.collection.name}.artifacts")

    def _indexed_collection(self) -> Collection[dict[str, Any]]:
        """The collection, with its unique (name, version) index made on first write."""
        assert self.collection is not None
        if not self._indexed:
            with outside("MongoDB", action=f"indexing the registry {self.collection.full_name}"):
                self.collection.create_index([("name", ASCENDING), ("version", ASCENDING)], unique=True)
            self._indexed = True
        return self.collection

    def find(self, name: str, version: str) -> RegistryRecord | None:
        if self.collection is None:
            return None
        with outside("MongoDB", action=f"reading the registry {self.collection.full_name}"):
            found = self.collection.find_one({"name": name, "version": version}, projection=_PROJECTION)
        return cast(RegistryRecord, found) if found is not None else None

    def list(self, name: str | None = None) -> list[RegistryRecord]:
        if self.collection is None:
            return []
        query = {"name": name} if name else {}
        with outside("MongoDB", action=f"reading the registry {self.collection.full_name}"):
            documents = list(self.collection.find(query, projection=_PROJECTION))
        records = [cast(RegistryRecord, d) for d in documents]
        return sorted(records, key=lambda d: (d["name"], _version_key(d["version"])))

    def trained_on(self, name: str, version: str) -> dict[str, Any] | None:
        """The build's record of the rows it trained on (training/seen.py's document), or None."""
        if self.collection is None:
            return None
        with outside("MongoDB", action=f"reading the registry {self.collection.full_name}"):
            found = self.collection.find_one({"name": name, "version": version}, projection={"_id": 0, "trained_on": 1})
        entry = (found or {}).get("trained_on")
        return entry if isinstance(entry, dict) else None

    def resolve_version(self, name: str, version: str, *, force: bool = False) -> str:
        """The version to build: "auto" → next patch; an explicit one must not be registered yet."""
        if version == "auto":
            if self.collection is None:
                raise ConfigError(
                    '[model].version = "auto" needs the registry: set a version, or [registry].enabled = true'
                )
            held = [d["version"] for d in self.list(name) if d.get("status") in HOLDING_STATUSES]
            return next_patch(held)
        existing = self.find(name, version)
        if existing and existing.get("status") in HOLDING_STATUSES and not force:
            raise ConfigError(
                f"{name} {version} is already in the registry (status {existing['status']}, created "
                f"{existing.get('created', '?')}): choose a new version, or pass --force to replace it"
            )
        return version

    def _write(self, record: RegistryRecord) -> None:
        collection = self._indexed_collection()
        with outside("MongoDB", action=f"recording the build in {collection.full_name}"):
            collection.replace_one({"name": record["name"], "version": record["version"]}, dict(record), upsert=True)

    def record_built(
        self,
        metadata: Mapping[str, Any],
        artifacts: dict[str, Any],
        *,
        config_text: str,
        image: dict[str, Any] | None = None,
        files: Mapping[str, Path] | None = None,
        trained_on: dict[str, Any] | None = None,
    ) -> None:
        """Record a build; with `store_artifacts`, its wheel and .onnx (`files`, by kind) go into GridFS first.
        `trained_on`: the filter of its training rows' _ids (training/seen.py), in this record only."""
        if self.collection is None:
            return
        name, version = metadata["name"], metadata["version"]
        stored = self._store(name, version, artifacts, files or {}) if self.store_artifacts else {}
        recorded = {kind: {**entry, **stored.get(kind, {})} for kind, entry in artifacts.items()}
        record: RegistryRecord = {**_summary(metadata, config_text, "built"), "artifacts": recorded}
        if image is not None:
            record["image"] = image
        if trained_on is not None:
            record["trained_on"] = trained_on
        self._write(record)
        if stored:  # a forced rebuild: the blobs of the build it replaced go
            self._drop_blobs(name, version, keep=[entry["stored"]["id"] for entry in stored.values()])

    def _store(
        self, name: str, version: str, artifacts: Mapping[str, Any], files: Mapping[str, Path]
    ) -> dict[str, dict[str, Any]]:
        bucket, bucket_name, stored = self.bucket, self.companion("artifacts").name, {}
        for kind in STORED_KINDS:
            if kind not in files or kind not in artifacts:
                continue
            entry = artifacts[kind]
            label = {"name": name, "version": version, "kind": kind, "sha256": entry["sha256"]}
            with (
                outside("MongoDB", action=f"storing the {kind} of {name} {version} in the registry's GridFS"),
                files[kind].open("rb") as stream,
            ):
                file_id = bucket.upload_from_stream(f"{name}/{version}/{entry['file']}", stream, metadata=label)
            stored[kind] = {"stored": {"bucket": bucket_name, "id": file_id}}
        return stored

    def _drop_blobs(self, name: str, version: str, *, keep: Sequence[ObjectId]) -> None:
        bucket = self.bucket
        with outside("MongoDB", action=f"removing replaced artifacts of {name} {version} from GridFS"):
            query = {"metadata.name": name, "metadata.version": version, "_id": {"$nin": keep}}
            for old in list(bucket.find(query)):
                bucket.delete(old._id)

    def open_blob(self, file_id: Any) -> GridOut:
        """A stored artifact's bytes as a stream (the caller checks them against the record's sha256)."""
        return self.bucket.open_download_stream(file_id)

    def record_rejected(self, metadata: Mapping[str, Any], *, config_text: str, reason: str, details: str) -> None:
        if self.collection is None:
            return
        existing = self.find(metadata["name"], metadata["version"])
        if existing and existing.get("status") in HOLDING_STATUSES:
            return  # a forced rebuild that failed must not erase the good build it tried to replace
        self._write({**_summary(metadata, config_text, "rejected"), "reason": reason, "details": details})

    def record_push(self, name: str, version: str, entry: Mapping[str, Any]) -> None:
        """One more push of the build's image (`mlpack push`): reference, digest, attachments, when."""
        collection = self._indexed_collection()
        with outside("MongoDB", action=f"recording the push in {collection.full_name}"):
            collection.update_one({"name": name, "version": version}, {"$push": {"pushes": dict(entry)}})

    def mark(self, name: str, version: str, **fields: Any) -> None:
        collection = self._indexed_collection()
        with outside("MongoDB", action=f"updating {collection.full_name}"):
            collection.update_one({"name": name, "version": version}, {"$set": fields})


def _version_key(text: str) -> tuple[int, Version | str]:
    try:
        return (0, Version(text))
    except InvalidVersion:
        return (1, text)


def _summary(metadata: Mapping[str, Any], config_text: str, status: Status) -> RegistryRecord:
    return {
        "name": metadata["name"],
        "version": metadata["version"],
        "status": status,
        "created": metadata["created"],
        "recorded": datetime.now(tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "task": metadata["task"],
        "metrics": metadata.get("metrics", {}),
        "data": {
            key: metadata["data"][key]
            for key in ("database", "collection", "rows", "sha256", "feedback")
            if key in metadata["data"]
        },
        "config_sha256": hashlib.sha256(config_text.encode()).hexdigest(),
        "estimator": metadata["estimator"]["class"],
    }


@contextmanager
def open_registry(config: Config, *, persistent_for: str | None = None) -> Iterator[Registry]:
    """The project's registry in its database, the connection closed on the way out. `persistent_for`:
    what needs a registry that outlives one command (open_database refuses an embedded server then)."""
    with open_database(config.source, persistent_for=persistent_for) as opened:
        yield Registry.for_config(opened.database, config.registry)
