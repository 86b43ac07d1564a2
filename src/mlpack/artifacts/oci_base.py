"""The base of an image built with no engine: an OCI image layout folder or a `docker save` archive.

Every blob is checked against its digest (a layout) or its config's diff_id (an archive), so a base
changed after it was written is refused rather than built on.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import re
import tarfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import IO, Any

from mlpack.artifacts.image import ImageTarget
from mlpack.artifacts.oci_files import place
from mlpack.artifacts.oci_memo import cache_dir, remember, remembered
from mlpack.config import ImageSection
from mlpack.errors import ConfigError

PREFIXES = ("oci:", "docker-archive:")
INDEX = "application/vnd.oci.image.index.v1+json"
MANIFEST = "application/vnd.oci.image.manifest.v1+json"
CONFIG = "application/vnd.oci.image.config.v1+json"
LAYER = "application/vnd.oci.image.layer.v1.tar"
LAYER_GZIP = LAYER + "+gzip"
_DOCKER_TYPES = {
    "application/vnd.docker.distribution.manifest.list.v2+json": INDEX,
    "application/vnd.docker.distribution.manifest.v2+json": MANIFEST,
    "application/vnd.docker.container.image.v1+json": CONFIG,
    "application/vnd.docker.image.rootfs.diff.tar.gzip": LAYER_GZIP,
    "application/vnd.docker.image.rootfs.diff.tar": LAYER,
}
CHUNK = 1 << 20
MAX_JSON_BYTES = 16 << 20


def is_local_base(base: str) -> bool:
    return base.startswith(PREFIXES)


def canonical(document: Any) -> bytes:
    return json.dumps(document, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def digest_of(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


@dataclass(frozen=True)
class Blob:
    digest: str
    size: int
    media_type: str
    open: Callable[[], Any]  # a context manager giving a binary stream of the blob
    # Where its bytes lie as they are, so a layout links or copies them in the kernel: a file, and the offset in it.
    file: Path | None = None
    offset: int = 0


@dataclass(frozen=True)
class BaseImage:
    config: dict[str, Any]
    layers: list[Blob]


def load_base(base: str, project_dir: Path | None = None) -> BaseImage:
    """The base image a `oci:PATH` or `docker-archive:PATH` names (relative to the project folder)."""
    kind, _, where = base.partition(":")
    path = (project_dir or Path.cwd()) / Path(where).expanduser()
    if not path.exists():
        raise ConfigError(f"[image].base {base!r}: {path} does not exist")
    try:
        image = _load_layout(path) if kind == "oci" else _load_archive(path)
    except (OSError, tarfile.TarError, KeyError, IndexError, ValueError, TypeError, AttributeError) as exc:
        raise ConfigError(f"[image].base {base!r} is not a readable image: {type(exc).__name__} {exc}") from None
    if not isinstance(image.config.get("rootfs", {}).get("diff_ids"), list):
        raise ConfigError(f"[image].base {base!r}: its config has no rootfs.diff_ids")
    return image


def _json(data: bytes, what: str, digest: str | None = None) -> dict[str, Any]:
    if len(data) > MAX_JSON_BYTES:
        raise ValueError(f"{what} is larger than {MAX_JSON_BYTES} bytes")
    if digest is not None and digest_of(data) != digest:
        raise ValueError(f"{what} does not match its digest {digest} (changed after it was written?)")
    document = json.loads(data)
    if not isinstance(document, dict):
        raise ValueError(f"{what} is not a JSON object")
    return document


def _load_layout(root: Path) -> BaseImage:
    def blob_path(digest: str) -> Path:
        algorithm, _, hexdigest = digest.partition(":")
        if algorithm != "sha256" or not re.fullmatch(r"[0-9a-f]{64}", hexdigest):
            raise ValueError(f"unsupported digest {digest!r}")
        return root / "blobs" / "sha256" / hexdigest

    document = _json((root / "index.json").read_bytes(), "index.json")
    while True:  # an index may name an index: take the linux/amd64 (or the only) image in it
        manifests = document["manifests"]
        chosen = next(
            (m for m in manifests if m.get("platform", {}).get("architecture") in (None, "amd64")), manifests[0]
        )
        document = _json(blob_path(chosen["digest"]).read_bytes(), f"blob {chosen['digest']}", chosen["digest"])
        if _DOCKER_TYPES.get(document.get("mediaType", ""), document.get("mediaType")) != INDEX:
            break
    descriptor = document["config"]
    config = _json(blob_path(descriptor["digest"]).read_bytes(), "the image config", descriptor["digest"])
    layers = []
    for layer in document["layers"]:
        path = blob_path(layer["digest"])
        opener = _file_opener(path)
        check_file(path, layer["digest"], f"layer {layer['digest']}")
        media = _DOCKER_TYPES.get(layer["mediaType"], layer["mediaType"])
        layers.append(Blob(layer["digest"], path.stat().st_size, media, opener, path))
    return BaseImage(config, layers)


def _load_archive(path: Path) -> BaseImage:
    with tarfile.open(path, "r:") as archive:
        manifest = json.loads(_member(archive, "manifest.json"))[0]
        config = _json(_member(archive, manifest["Config"]), "the image config")
        members = {name: archive.getmember(name) for name in manifest["Layers"]}
    diff_ids = config["rootfs"]["diff_ids"]
    if len(diff_ids) != len(manifest["Layers"]):
        raise ValueError("manifest.json and the config name different numbers of layers")
    layers = []
    for name, diff_id in zip(manifest["Layers"], diff_ids, strict=True):
        opener = _member_opener(path, name)
        checked = remembered(
            path, f"member {name} {diff_id}", partial(_check_blob, opener, None, diff_id, f"layer {name}")
        )
        digest, gzipped = str(checked[0]), bool(checked[1])
        member = members[name]
        media = LAYER_GZIP if gzipped else LAYER
        if not member.isreg() or member.issparse():
            layers.append(Blob(digest, member.size, media, opener))
            continue
        cached = _into_cache(path, member.offset_data, member.size, digest)
        if cached is not None:
            layers.append(Blob(digest, member.size, media, _file_opener(cached), cached))
        else:
            layers.append(Blob(digest, member.size, media, opener, path, member.offset_data))
    return BaseImage(config, layers)


def _into_cache(archive: Path, offset: int, size: int, digest: str) -> Path | None:
    """The checked layer copied once into the blob cache, so that every later layout links it (None: no cache).

    The copy is of bytes just checked, made in the kernel, and remembered as the blob it is; a cached
    blob changed since (through a layout's link to it) fails its digest and is copied again."""
    cached = cache_dir() / digest.removeprefix("sha256:")
    try:
        if cached.is_file():
            try:
                check_file(cached, digest, f"the cached layer {cached}")
                return cached
            except ValueError:
                pass
        cached.parent.mkdir(parents=True, exist_ok=True)
        partial = cached.with_name(f"{cached.name}.{os.getpid()}.part")
        partial.unlink(missing_ok=True)
        place(archive, offset, size, partial)
        os.replace(partial, cached)
        remember(cached, f"blob {digest}", None)
        return cached
    except OSError:
        return None


def _member(archive: tarfile.TarFile, name: str) -> bytes:
    info = archive.getmember(name)
    if not info.isfile() or info.size > MAX_JSON_BYTES:
        raise ValueError(f"{name} is not a small file")
    stream = archive.extractfile(info)
    assert stream is not None
    return stream.read()


def _file_opener(path: Path) -> Callable[[], Any]:
    return lambda: path.open("rb")


def _member_opener(path: Path, name: str) -> Callable[[], Any]:
    @contextmanager
    def opener() -> Iterator[IO[bytes]]:
        with tarfile.open(path, "r:") as archive:
            stream = archive.extractfile(name)
            if stream is None:
                raise ValueError(f"{name} is not a file")
            yield stream

    return opener


def check_file(path: Path, digest: str, what: str) -> None:
    """The file's bytes are the blob `digest` names (hashed once while the file is unchanged: oci_memo.py)."""
    remembered(path, f"blob {digest}", lambda: _check_blob(_file_opener(path), digest, None, what))


def _check_blob(opener: Callable[[], Any], digest: str | None, diff_id: str | None, what: str) -> tuple[str, bool]:
    """The blob's digest, and whether it is gzipped; a digest or diff_id that does not match is refused."""
    raw = hashlib.sha256()
    with opener() as stream:
        head = stream.read(2)
        gzipped = head == b"\x1f\x8b"
        raw.update(head)
        for chunk in iter(lambda: stream.read(CHUNK), b""):
            raw.update(chunk)
    found = "sha256:" + raw.hexdigest()
    if digest is not None and found != digest:
        raise ValueError(f"{what} does not match its digest (changed after it was written?)")
    if diff_id is not None:
        if gzipped:
            plain = hashlib.sha256()
            with opener() as stream, gzip.GzipFile(fileobj=stream) as inflated:
                for chunk in iter(lambda: inflated.read(CHUNK), b""):
                    plain.update(chunk)
            unpacked = "sha256:" + plain.hexdigest()
        else:
            unpacked = found
        if unpacked != diff_id:
            raise ValueError(f"{what} does not match its diff_id in the config (changed after it was written?)")
    return found, gzipped


def image_python(section: ImageSection, config: dict[str, Any]) -> str:
    """[image].python, else the base's PYTHON_VERSION (the python images set it), else ImageTarget's guess."""
    if section.python:
        return section.python
    for entry in config.get("config", {}).get("Env") or []:
        match = re.fullmatch(r"PYTHON_VERSION=(\d+\.\d+)(\..*)?", entry)
        if match:
            return match.group(1)
    return ImageTarget.for_section(section).python
