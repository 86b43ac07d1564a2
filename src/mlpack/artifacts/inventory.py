"""What an image holds, read from its layers: every Python distribution (dist-info) and Debian package (dpkg).

Nothing is run and nothing is unpacked to disk: each layer is streamed once, oldest first, keeping
only the few small files that name packages; OCI whiteouts (`.wh.NAME`, `.wh..wh..opq`) delete what a
lower layer held, as the image's file system would. The SBOM lists what this returns, and
`mlpack verify` reads the layers again and compares.
"""

from __future__ import annotations

import hashlib
import json
import posixpath
import re
import tarfile
from collections.abc import Iterable
from dataclasses import dataclass
from email.parser import HeaderParser
from typing import IO, Any

from packaging.utils import canonicalize_name

MAX_FILE_BYTES = 8 << 20  # a dpkg status of a large distribution is a few MiB; METADATA, RECORD far less
_DPKG_STATUS = "var/lib/dpkg/status"
_DPKG_STATUS_D = "var/lib/dpkg/status.d/"  # distroless images: one file per package
_OS_RELEASE = ("etc/os-release", "usr/lib/os-release")
_DIST_INFO = re.compile(r"(?:^|/)[^/]+\.dist-info/(METADATA|RECORD|PRUNED\.json)$")
_EGG_INFO = re.compile(r"(?:^|/)[^/]+\.egg-info(?:/PKG-INFO)?$")  # Debian's own python3-* packages


@dataclass(frozen=True, order=True)
class PythonDistribution:
    name: str  # canonical (PEP 503)
    version: str
    path: str  # the dist-info folder in the image, e.g. opt/model/site/numpy-2.1.0.dist-info
    record_sha256: str  # sha256 of its RECORD: every installed file's own hash; "" for an egg-info
    pruned: str = ""  # what mlpack took out of it for the image (oci_prune.py's PRUNED.json), in words


@dataclass(frozen=True, order=True)
class DebianPackage:
    name: str
    version: str
    architecture: str
    source: str


@dataclass(frozen=True)
class Inventory:
    python: tuple[PythonDistribution, ...]
    debian: tuple[DebianPackage, ...]
    os_id: str  # /etc/os-release ID ("debian"), the purl namespace of the Debian packages
    os_version: str


def _wanted(name: str) -> bool:
    return (
        name == _DPKG_STATUS
        or name.startswith(_DPKG_STATUS_D)
        or name in _OS_RELEASE
        or bool(_DIST_INFO.search(name))
        or bool(_EGG_INFO.search(name))
    )


def _normal(name: str) -> str:
    return posixpath.normpath(name.lstrip("/")).removeprefix("./")


def _without(files: dict[str, bytes], path: str) -> dict[str, bytes]:
    if path in ("", "."):  # an opaque root
        return {}
    return {k: v for k, v in files.items() if k != path and not k.startswith(path + "/")}


def overlay(layers: Iterable[IO[bytes]]) -> dict[str, bytes]:
    """The files that name packages, as the image's merged file system holds them (layers oldest first).

    A layer's whiteouts remove what the layers below it hold, not its own files (the OCI layer spec)."""
    files: dict[str, bytes] = {}
    for stream in layers:
        added: dict[str, bytes] = {}
        gone: list[str] = []
        with tarfile.open(fileobj=stream, mode="r|*") as tar:
            for member in tar:
                name = _normal(member.name)
                folder, base = posixpath.split(name)
                if base == ".wh..wh..opq":  # an opaque folder: nothing below it from lower layers
                    gone.append(folder)
                elif base.startswith(".wh."):
                    gone.append(posixpath.join(folder, base[4:]))
                elif not _wanted(name):
                    continue
                elif not member.isfile() or member.size > MAX_FILE_BYTES:
                    gone.append(name)  # a link or a folder where a package file was: not read
                    added.pop(name, None)
                else:
                    data = tar.extractfile(member)
                    if data is not None:
                        added[name] = data.read()
        for path in gone:
            files = _without(files, path)
        files.update(added)
    return files


def _headers(data: bytes) -> Any:
    return HeaderParser().parsestr(data.decode("utf-8", "replace"), headersonly=True)


def _python(files: dict[str, bytes]) -> list[PythonDistribution]:
    found = []
    for name, data in files.items():
        if name.endswith(".dist-info/METADATA"):
            folder = name.rsplit("/", 1)[0]
            record = files.get(folder + "/RECORD")
            digest = hashlib.sha256(record).hexdigest() if record is not None else ""
        elif name.endswith((".egg-info/PKG-INFO", ".egg-info")):  # a folder's PKG-INFO, or a one-file egg-info
            folder, digest = name.removesuffix("/PKG-INFO"), ""
        else:
            continue
        headers = _headers(data)
        if headers.get("Name") and headers.get("Version"):
            name, version = canonicalize_name(headers["Name"]), headers["Version"]
            found.append(PythonDistribution(name, version, folder, digest, _pruned(files, folder)))
    return sorted(found)


def _pruned(files: dict[str, bytes], folder: str) -> str:
    """PRUNED.json of a dist-info, in words: how many files and bytes were taken out, why, where listed."""
    data = files.get(folder + "/PRUNED.json")
    if data is None:
        return ""
    try:
        note = json.loads(data)
        taken = note["files"]
        size = sum(int(value) for value in taken.values())
        return f"{len(taken)} files ({size} bytes) taken out by {note['by']}: {note['why']}; listed in PRUNED.json"
    except (ValueError, KeyError, TypeError, AttributeError):
        return "files taken out: PRUNED.json is not readable"


def _paragraphs(text: str) -> Iterable[dict[str, str]]:
    for block in re.split(r"\n\s*\n", text):
        fields: dict[str, str] = {}
        key = ""
        for line in block.splitlines():
            if line[:1] in (" ", "\t"):
                continue  # a continuation line (Description, Conffiles): not needed here
            key, _, value = line.partition(":")
            fields[key.strip()] = value.strip()
        if fields.get("Package"):
            yield fields


def _debian(files: dict[str, bytes]) -> list[DebianPackage]:
    texts = [files[_DPKG_STATUS]] if _DPKG_STATUS in files else []
    texts += [data for name, data in sorted(files.items()) if name.startswith(_DPKG_STATUS_D)]
    found = set()
    for text in texts:
        for fields in _paragraphs(text.decode("utf-8", "replace")):
            if fields.get("Status", "install ok installed").split()[-1:] != ["installed"]:
                continue  # removed, or configuration files only
            source = fields.get("Source", "").split(" ")[0]
            found.add(
                DebianPackage(fields["Package"], fields.get("Version", ""), fields.get("Architecture", ""), source)
            )
    return sorted(found)


def _os_release(files: dict[str, bytes]) -> tuple[str, str]:
    for name in _OS_RELEASE:
        if name in files:
            values = dict(
                line.split("=", 1) for line in files[name].decode("utf-8", "replace").splitlines() if "=" in line
            )
            return values.get("ID", "").strip('"'), values.get("VERSION_ID", "").strip('"')
    return "", ""


def inventory(layers: Iterable[IO[bytes]]) -> Inventory:
    files = overlay(layers)
    os_id, os_version = _os_release(files)
    return Inventory(tuple(_python(files)), tuple(_debian(files)), os_id, os_version)
