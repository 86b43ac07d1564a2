"""The build output folder (`dist/`): the one owner of what a build leaves there and how it is read back.

A build writes, per version, `NAME-VERSION.json` (the build report: the metadata plus each artifact's
file, size and sha256), the wheel, the sdist, the `.onnx`, the card and the test split's predictions
(`NAME-VERSION.predictions.jsonl`). Everything that later reads
a build — `monitor`, `score`, `publish`, `build`'s own `version = "auto"` — asks a `BuildDir`, so
"which versions are here", "which one is `auto`" and "is this wheel the one that was built" have one
answer each: the versions are the reports' own, `auto` is the newest of them by PEP 440, and an
artifact is handed out only when its sha256 is the one its report recorded.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypedDict, cast

from packaging.version import InvalidVersion, Version

from mlpack.errors import ConfigError
from mlpack.runtime import Metadata

_CHUNK = 1 << 20


class ArtifactRecord(TypedDict, total=False):
    """One file a build wrote, as its report records it: `BuildDir.verified` checks the sha256."""

    file: str
    size: int
    sha256: str
    dependencies: dict[str, str]  # the image context's pinned wheels: name → version
    dockerfile_sha256: str


class BuildReport(Metadata, total=False):
    """`NAME-VERSION.json`: the model's metadata, then what the build wrote and how long it took."""

    artifacts: dict[str, ArtifactRecord]
    timings: dict[str, Any]
    image: dict[str, Any]  # the image step's result: built or not, its tag, id, digest, layers
    champion: dict[str, Any]  # the aliased version's scores on the same test split
    champion_warning: str
    signed: dict[str, str]  # [sign]: the algorithm and the public key's sha256 (never the key)


def write_report(path: Path, report: BuildReport) -> None:
    """The report as canonical JSON (sorted keys), written whole or not at all."""
    handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as stream:
            stream.write(json.dumps(report, indent=2, sort_keys=True) + "\n")
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as stream:
        for block in iter(lambda: stream.read(_CHUNK), b""):
            digest.update(block)
    return digest.hexdigest()


def wheel_stem(name: str) -> str:
    """How wheel file names spell a distribution name (PEP 427: runs of -_. become one underscore)."""
    return re.sub(r"[-_.]+", "_", name).lower()


def _version_key(text: str) -> tuple[int, Any]:
    try:
        return (1, Version(text))
    except InvalidVersion:
        return (0, text)  # not PEP 440: never newer than a real version


@dataclass(frozen=True)
class BuildDir:
    """One model's builds in one output folder."""

    folder: Path
    name: str  # the model's distribution name, [model].name

    def report_path(self, version: str) -> Path:
        return self.folder / f"{self.name}-{version}.json"

    def wheel_path(self, version: str) -> Path:
        return self.folder / f"{wheel_stem(self.name)}-{version}-py3-none-any.whl"

    def versions(self) -> list[str]:
        """The versions whose build report is here, oldest first (by what each report says it is)."""
        found = []
        for path in self.folder.glob(f"{self.name}-*.json"):
            document = self._load(path)
            if document is not None and document.get("name") == self.name and isinstance(document.get("version"), str):
                found.append(document["version"])
        return sorted(set(found), key=_version_key)

    def resolve(self, version: str) -> str:
        """A version as asked for: "auto" is the newest built one."""
        if version != "auto":
            return version
        versions = self.versions()
        if not versions:
            raise ConfigError(f'no build of {self.name} in {self.folder}: version "auto" needs one (or pass --version)')
        return versions[-1]

    def report(self, version: str) -> BuildReport:
        """The build report of one version (not "auto": resolve it first), checked to be that build's."""
        path = self.report_path(version)
        if not path.is_file():
            raise ConfigError(
                f"no build of {self.name} {version} in {self.folder} (no {path.name}): run `mlpack build` first "
                "(or name another build: --version, --dist)"
            )
        document = self._load(path)
        if document is None:
            raise ConfigError(f"{path} cannot be read as a build report: rebuild it")
        if document.get("name") != self.name or document.get("version") != version:
            raise ConfigError(
                f"{path} is the report of {document.get('name')} {document.get('version')}, not of "
                f"{self.name} {version}: rebuild it"
            )
        return cast(BuildReport, document)

    def verified(self, version: str, kind: str) -> Path:
        """The artifact of `kind` ("wheel", "sdist", "onnx") of a version, as its report recorded it."""
        path = self.report_path(version)
        entry = self.report(version).get("artifacts", {}).get(kind)
        if not isinstance(entry, dict) or not isinstance(entry.get("file"), str) or "/" in entry["file"]:
            raise ConfigError(f"{path} records no {kind}: rebuild it")
        artifact = self.folder / entry["file"]
        if not artifact.is_file():
            raise ConfigError(f"{artifact} is missing: run `mlpack build` again")
        if sha256_of(artifact) != entry.get("sha256"):
            raise ConfigError(f"{artifact} does not match its build report {path.name} (sha256 differs): rebuild it")
        return artifact

    def wheel(self, version: str) -> Path:
        """The model wheel of a version ("auto": the newest), verified against its report. A wheel with no
        report is not handed out: a build the registry could not record gets none (build.py)."""
        try:
            wanted = self.resolve(version)
        except ConfigError:
            raise ConfigError(f"no built wheel of {self.name} in {self.folder}: run `mlpack build` first") from None
        return self.verified(wanted, "wheel")

    @staticmethod
    def _load(path: Path) -> dict[str, Any] | None:
        try:
            document = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError, RecursionError):
            return None
        return document if isinstance(document, dict) else None


__all__ = ["ArtifactRecord", "BuildDir", "BuildReport", "sha256_of", "wheel_stem", "write_report"]
