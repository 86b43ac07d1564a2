"""Where the base of the image with no engine comes from: a registry, the local engine's store, or a file.

`[image].base`:
- `oci:PATH`, `docker-archive:PATH`: a local OCI layout or `docker save` archive (oci_base.py);
- `docker://REFERENCE`: a registry, over the OCI distribution API (oci_remote.py);
- `docker-daemon:REFERENCE`: the local Docker engine's store (`docker save`);
- a plain `REFERENCE` (`python:3.11-slim`): the engine's store when an engine answers and holds it,
  else the registry, as `docker build` would look.
Blobs from a registry are kept in a content-addressed cache (MLPACK_CACHE_DIR, else ~/.cache/mlpack)
and checked against their digests when fetched and again when used.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from mlpack.artifacts.image import docker_cli, engine_version, inspect_engine_image
from mlpack.artifacts.oci_base import (
    _DOCKER_TYPES,
    INDEX,
    MANIFEST,
    BaseImage,
    Blob,
    _file_opener,
    _json,
    _load_archive,
    check_file,
    is_local_base,
    load_base,
)
from mlpack.artifacts.oci_memo import cache_dir
from mlpack.artifacts.oci_remote import Connection, ImageReference, RegistryClient
from mlpack.errors import ConfigError, ExternalError
from mlpack.redaction import child_environment

REGISTRY, ENGINE = "docker://", "docker-daemon:"
ACCEPT = [INDEX, MANIFEST, *(docker for docker, oci in _DOCKER_TYPES.items() if oci in (INDEX, MANIFEST))]
OCI_ARCH = {"x86_64": "amd64", "aarch64": "arm64"}
SAVE_TIMEOUT_S = 600


def resolve_base(
    base: str,
    project_dir: Path | None = None,
    *,
    scratch: Path,
    connection: Connection | None = None,
    arch: str = "x86_64",
) -> tuple[BaseImage, str]:
    """The base image and where it came from ("registry", "engine", "oci", "docker-archive").

    `scratch` is a folder that outlives the build (an engine's `docker save` archive is written there)."""
    if is_local_base(base):
        return load_base(base, project_dir), base.partition(":")[0]
    if base.startswith(ENGINE):
        return _load_engine(base.removeprefix(ENGINE), scratch, demanded=True), "engine"
    if not base.startswith(REGISTRY) and engine_version() is not None:
        try:
            inspect_engine_image(base)
        except ConfigError:  # not in the engine's store: the registry it names
            pass
        else:
            return _load_engine(base, scratch, demanded=False), "engine"
    return _load_registry(base.removeprefix(REGISTRY), connection or Connection(), OCI_ARCH.get(arch, arch)), "registry"


def _load_engine(reference: str, scratch: Path, *, demanded: bool) -> BaseImage:
    cli = docker_cli()
    if cli is None or (demanded and engine_version() is None):
        raise ExternalError(f"[image].base {ENGINE}{reference}: no Docker engine answers (DOCKER_HOST?)")
    archive = scratch / "engine-base.tar"
    try:
        done = subprocess.run(
            [cli, "save", "--output", str(archive), reference],
            capture_output=True,
            text=True,
            timeout=SAVE_TIMEOUT_S,
            check=False,
            env=child_environment(),
        )
    except subprocess.TimeoutExpired:
        raise ExternalError(f"docker save {reference} did not finish in {SAVE_TIMEOUT_S} s") from None
    if done.returncode != 0:
        raise ExternalError(f"docker save {reference} failed: {' '.join(done.stderr.split())[:300]}")
    try:
        return _load_archive(archive)
    except (OSError, ValueError, KeyError, IndexError, TypeError) as exc:
        raise ExternalError(f"docker save {reference} wrote an archive mlpack cannot read: {exc}") from None


def _load_registry(text: str, connection: Connection, arch: str) -> BaseImage:
    reference = ImageReference.parse(text, what="[image].base")
    client = RegistryClient(reference, connection)
    data, media_type = client.get_manifest(reference.target, ACCEPT)
    try:
        document = _json(data, f"the manifest of {reference}")
        kind = _DOCKER_TYPES.get(document.get("mediaType") or media_type, document.get("mediaType") or media_type)
        if kind == INDEX:  # a multi-platform image: the one for linux and the image's architecture
            chosen = [
                entry
                for entry in document["manifests"]
                if entry.get("platform", {}).get("os") == "linux"
                and entry.get("platform", {}).get("architecture") == arch
            ]
            if not chosen:
                raise ConfigError(f"[image].base {text!r} has no image for linux/{arch}")
            data, media_type = client.get_manifest(chosen[0]["digest"], ACCEPT)
            document = _json(data, f"the manifest of {reference} for linux/{arch}")
        config = _json(_fetch(client, document["config"]["digest"]).read_bytes(), "the base's config")
        layers = []
        for layer in document["layers"]:
            path = _fetch(client, layer["digest"])
            try:
                check_file(path, layer["digest"], f"the cached layer {path}")
            except ValueError:  # changed in the cache (a layout links its blobs from there): fetched anew
                path.unlink()
                path = _fetch(client, layer["digest"])
                check_file(path, layer["digest"], f"the layer {layer['digest']} from the registry")
            media = _DOCKER_TYPES.get(layer["mediaType"], layer["mediaType"])
            layers.append(Blob(layer["digest"], path.stat().st_size, media, _file_opener(path), path))
    except (KeyError, TypeError, IndexError, AttributeError, json.JSONDecodeError) as exc:
        raise ExternalError(f"the registry's manifest of {reference} is not an image manifest: {exc!r}") from None
    except ValueError as exc:
        raise ExternalError(f"[image].base {text!r}: {exc}") from None
    if not isinstance(config.get("rootfs", {}).get("diff_ids"), list):
        raise ExternalError(f"[image].base {text!r}: its config has no rootfs.diff_ids")
    return BaseImage(config, layers)


def _fetch(client: RegistryClient, digest: str) -> Path:
    """The blob from the cache, else from the registry into the cache."""
    if not digest.startswith("sha256:") or len(digest) != 71:
        raise ValueError(f"unsupported digest {digest!r}")
    folder = cache_dir()
    path = folder / digest.removeprefix("sha256:")
    if not path.is_file():
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            problem = f"the blob cache {folder} cannot be made ({exc.strerror}): set MLPACK_CACHE_DIR"
            raise ExternalError(problem) from None
        client.download_blob(digest, path)
    return path
