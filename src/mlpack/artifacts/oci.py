"""The model image with no engine: an OCI image layout and a `docker load` archive, written by mlpack.

The base comes from `[image].base` (oci_base.py: a registry, the local engine's store, an OCI layout
or a `docker save` archive; every blob checked against its digest). On top go two layers (oci_install.py):
the dependencies, installed by `pip install --target` for the image's Python and platform, then the
model wheel, installed by the PyPA's `installer` (nothing runs inside the image), so a retrained model
shares the dependency layer. A layer (oci_layer.py) is a reproducible tar (sorted, SOURCE_DATE_EPOCH
mtimes, uid/gid 0, no names, 0o755/0o644 modes, no .pyc, GNU headers only where a name is long, never
PAX) gzipped with mtime 0 and no file name; the config, manifest and index are canonical JSON.
Same inputs and epoch, same manifest digest.
"""

from __future__ import annotations

import copy
import os
import shutil
import tempfile
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from mlpack.artifacts.image import ImageTarget, image_labels, image_pins
from mlpack.artifacts.oci_base import (
    CHUNK,
    CONFIG,
    INDEX,
    LAYER_GZIP,
    MANIFEST,
    BaseImage,
    canonical,
    digest_of,
    image_python,
)
from mlpack.artifacts.oci_deps import dependency_layer
from mlpack.artifacts.oci_files import place, write_archive
from mlpack.artifacts.oci_install import DEPS, SITE, image_requirements, install_model
from mlpack.artifacts.oci_layer import Layer, entries, tar_info, write_layer
from mlpack.artifacts.oci_prune import LABEL as PRUNED_LABEL
from mlpack.artifacts.oci_prune import label as pruned_label
from mlpack.artifacts.oci_pull import resolve_base
from mlpack.artifacts.oci_remote import Connection
from mlpack.config import ImageSection
from mlpack.runtime import Metadata

USER = "65532:65532"


# -- the config and the layout ---------------------------------------------------------------------
def image_config(
    base: dict[str, Any], layers: list[Layer], *, metadata: Metadata, section: ImageSection, revision: str, epoch: int
) -> dict[str, Any]:
    """The base's config with the model's: what today's Dockerfile says, field for field."""
    config = copy.deepcopy(base)
    created = datetime.fromtimestamp(epoch, tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    port = section.port
    runtime = config.setdefault("config", {})
    env = {
        "PYTHONPATH": f"/{SITE}:/{DEPS}",
        "PYTHONDONTWRITEBYTECODE": "1",
        "PYTHONUNBUFFERED": "1",
        "HOME": "/tmp",
        "MLPACK_HOST": "0.0.0.0",
        "MLPACK_PORT": str(port),
    }
    kept = [entry for entry in runtime.get("Env") or [] if entry.partition("=")[0] not in env]
    runtime["Env"] = kept + [f"{key}={value}" for key, value in env.items()]
    runtime["Entrypoint"] = ["python3", "-m", metadata["import_name"], "serve"]
    runtime.pop("Cmd", None)  # as an ENTRYPOINT does in a Dockerfile
    runtime["User"] = USER
    runtime["ExposedPorts"] = {**(runtime.get("ExposedPorts") or {}), f"{port}/tcp": {}}
    probe = f"import urllib.request; urllib.request.urlopen('http://127.0.0.1:{port}/healthz', timeout=2)"
    seconds = 1_000_000_000
    runtime["Healthcheck"] = {
        "Test": ["CMD", "python3", "-c", probe],
        "Interval": 10 * seconds,
        "Timeout": 3 * seconds,
        "StartPeriod": 5 * seconds,
        "Retries": 3,
    }
    labels = {**image_labels(metadata, revision), PRUNED_LABEL: pruned_label()}  # what left the dependencies
    runtime["Labels"] = {**(runtime.get("Labels") or {}), **labels}
    config["created"] = created
    config.setdefault("architecture", "amd64")
    config.setdefault("os", "linux")
    history = config.get("history") or []
    if sum(1 for entry in history if not entry.get("empty_layer")) != len(config["rootfs"]["diff_ids"]):
        history = [{"created_by": "base layer"} for _ in config["rootfs"]["diff_ids"]]  # docker load counts them
    by = f"mlpack {metadata['versions']['mlpack']}:"
    deps_by = f"{by} pip install --target /{DEPS} (the dependencies; no engine)"
    history.append({"created": created, "created_by": deps_by})
    model_by = f"{by} installer /{SITE} {metadata['name']}=={metadata['version']} (no engine)"
    history.append({"created": created, "created_by": model_by})
    config["history"] = history
    config["rootfs"]["diff_ids"] = [*config["rootfs"]["diff_ids"], *(layer.diff_id for layer in layers)]
    return config


@dataclass(frozen=True)
class OciImage:
    digest: str  # the manifest's
    config_digest: str  # what `docker images` shows as the id
    layout: Path
    archive: Path
    layer: Layer  # the model's, on top
    dependency_layer: Layer  # the same for every model with the same dependencies
    size: int  # every layer's bytes (compressed where they are)
    layers: int
    base_source: str  # where the base came from: registry, engine, oci, docker-archive
    dependency_cached: bool = False  # the dependency layer came from the cache (made by an earlier build)


def write_layout(
    folder: Path, base: BaseImage, layers: list[Layer], config: dict[str, Any], tag: str
) -> tuple[str, str]:
    """The OCI image layout; returns the manifest's digest and the config's."""
    blobs = folder / "blobs" / "sha256"
    blobs.mkdir(parents=True)
    for blob in base.layers:  # linked or copied in the kernel where the bytes lie in a file (oci_files.py)
        target = blobs / blob.digest.partition(":")[2]
        if target.exists():  # a layer the base repeats (the empty layer, often): one blob, named twice
            continue
        if blob.file is not None:
            place(blob.file, blob.offset, blob.size, target)
        else:
            with blob.open() as source, target.open("xb") as out:
                shutil.copyfileobj(source, out, CHUNK)
    for layer in layers:
        target = blobs / layer.digest.partition(":")[2]
        if not target.exists():  # place() never writes through a name (it may be a link to the cache)
            place(layer.path, 0, layer.size, target)
    config_bytes = canonical(config)
    descriptors: list[dict[str, Any]] = [
        {"mediaType": b.media_type, "digest": b.digest, "size": b.size} for b in base.layers
    ]
    descriptors += [{"mediaType": LAYER_GZIP, "digest": layer.digest, "size": layer.size} for layer in layers]
    manifest = {
        "schemaVersion": 2,
        "mediaType": MANIFEST,
        "config": {"mediaType": CONFIG, "digest": digest_of(config_bytes), "size": len(config_bytes)},
        "layers": descriptors,
    }
    manifest_bytes = canonical(manifest)
    digest = digest_of(manifest_bytes)
    for data in (config_bytes, manifest_bytes):
        (blobs / digest_of(data).partition(":")[2]).write_bytes(data)
    reference = {"io.containerd.image.name": tag, "org.opencontainers.image.ref.name": tag.rpartition(":")[2]}
    entry = {"mediaType": MANIFEST, "digest": digest, "size": len(manifest_bytes), "annotations": reference}
    (folder / "index.json").write_bytes(canonical({"schemaVersion": 2, "mediaType": INDEX, "manifests": [entry]}))
    (folder / "oci-layout").write_bytes(canonical({"imageLayoutVersion": "1.0.0"}))
    # docker load reads manifest.json (Docker ≥ 25 writes the same pair itself with `docker save`).
    paths = [f"blobs/sha256/{d['digest'].partition(':')[2]}" for d in descriptors]
    legacy = [
        {"Config": f"blobs/sha256/{digest_of(config_bytes).partition(':')[2]}", "RepoTags": [tag], "Layers": paths}
    ]
    (folder / "manifest.json").write_bytes(canonical(legacy))
    return digest, digest_of(config_bytes)


def build_oci_image(
    out_dir: Path,
    *,
    stem: str,
    tag: str,
    wheel: Path,
    metadata: Metadata,
    section: ImageSection,
    revision: str,
    epoch: int,
    project_dir: Path | None = None,
    find_links: str = "",
    deps: Path | None = None,
    connection: Connection | None = None,
) -> OciImage:
    """NAME-VERSION.oci/ and NAME-VERSION.image.tar in `out_dir`, written aside and renamed into place.

    `deps`: a build context's wheels for the same Python, installed from with no index.
    `connection`: how to reach the base's registry (its CA, credentials)."""
    stage = Path(tempfile.mkdtemp(prefix=".mlpack-oci-", dir=out_dir))
    try:
        arch = ImageTarget.for_section(section).arch
        base, source = resolve_base(section.base, project_dir, scratch=stage, connection=connection, arch=arch)
        # As the build context: the image holds the onnxruntime and numpy the parity check ran with.
        pins = image_pins(metadata["versions"]["onnxruntime"])
        python = image_python(section, base.config)
        target = ImageTarget(python, arch)
        deps = deps if deps is not None and deps.is_dir() else None
        offline = bool(find_links) or (deps is not None and ImageTarget.for_section(section).python == python)
        links = find_links or (str(deps) if offline and deps is not None else "")

        requirements = image_requirements(wheel)
        deps_layer, cached = dependency_layer(stage, requirements, target, pins=pins, links=links, offline=offline)
        layers = [deps_layer, write_layer(install_model(stage, wheel, target), stage / "model.tar.gz", epoch)]
        config = image_config(base.config, layers, metadata=metadata, section=section, revision=revision, epoch=epoch)
        layout = stage / f"{stem}.oci"
        digest, config_digest = write_layout(layout, base, layers, config, tag)
        archive = stage / f"{stem}.image.tar"
        write_archive(archive, [(name, tar_info(name, path, epoch), path) for name, path in entries(layout)])
        (layout / "manifest.json").unlink()  # not part of an OCI layout; kept in the archive only
        final_layout, final_archive = out_dir / layout.name, out_dir / archive.name
        if final_layout.is_dir():
            os.replace(final_layout, stage / "replaced.oci")
        os.replace(layout, final_layout)
        os.replace(archive, final_archive)
    finally:
        shutil.rmtree(stage, ignore_errors=True)
    size = sum(blob.size for blob in base.layers) + sum(layer.size for layer in layers)
    count = len(base.layers) + len(layers)
    return OciImage(
        digest, config_digest, final_layout, final_archive, layers[1], layers[0], size, count, source, cached
    )


__all__ = ["OciImage", "build_oci_image"]
