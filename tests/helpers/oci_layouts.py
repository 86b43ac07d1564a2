"""Small OCI image layouts for the image tests: a base the engine-free build can start from."""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
from pathlib import Path
from typing import Any

from mlpack.artifacts.oci import OciImage, build_oci_image
from mlpack.artifacts.oci_base import canonical, digest_of
from mlpack.artifacts.oci_layer import write_tar
from tests.helpers.projects import Project

EPOCH = 1767225600
BASE_ENV = ["PATH=/usr/local/bin:/usr/bin:/bin", "PYTHON_VERSION=3.11.9", "LANG=C.UTF-8"]


def write_oci_base(folder: Path, layer: bytes, config: dict[str, Any], *, repeat: int = 1) -> Path:
    """An OCI image layout of one uncompressed layer with this image config (nothing in it runs);
    `repeat`: the manifest names the layer that many times (as old images name the empty layer)."""
    blobs = folder / "blobs" / "sha256"
    blobs.mkdir(parents=True)
    config_bytes = canonical(config)
    manifest = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {
            "mediaType": "application/vnd.oci.image.config.v1+json",
            "digest": digest_of(config_bytes),
            "size": len(config_bytes),
        },
        "layers": [
            {"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": digest_of(layer), "size": len(layer)}
        ]
        * repeat,
    }
    manifest_bytes = canonical(manifest)
    for data in (layer, config_bytes, manifest_bytes):
        (blobs / digest_of(data)[7:]).write_bytes(data)
    entry = {"mediaType": manifest["mediaType"], "digest": digest_of(manifest_bytes), "size": len(manifest_bytes)}
    (folder / "index.json").write_bytes(canonical({"schemaVersion": 2, "manifests": [entry]}))
    (folder / "oci-layout").write_text('{"imageLayoutVersion":"1.0.0"}')
    return folder


def tiny_base_layer(folder: Path) -> bytes:
    """A few files as a layer: enough to be a base for the layout (nothing in it runs)."""
    root = folder / "rootfs"
    (root / "etc").mkdir(parents=True)
    (root / "etc" / "os-release").write_text('NAME="tiny"\n')
    (root / "usr" / "bin").mkdir(parents=True)
    (root / "usr" / "bin" / "python3").write_text("#!/bin/sh\n")
    (root / "usr" / "bin" / "python3").chmod(0o755)
    stream = io.BytesIO()
    files = sorted((p.relative_to(root).as_posix(), p) for p in root.rglob("*"))
    write_tar(stream, files, 0)
    return stream.getvalue()


def base_config(diff_ids: list[str], env: list[str] | None = None) -> dict[str, Any]:
    return {
        "architecture": "amd64",
        "os": "linux",
        "config": {"Env": env or BASE_ENV, "Cmd": ["python3"]},
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
        "history": [{"created_by": "tiny base"} for _ in diff_ids],
    }


def write_archive_base(path: Path, layer: bytes, config: dict[str, Any]) -> Path:
    config_bytes = canonical(config)
    members: dict[str, str | bytes] = {
        "manifest.json": json.dumps([{"Config": "config.json", "RepoTags": ["tiny:1"], "Layers": ["l/layer.tar"]}]),
        "config.json": config_bytes,
        "l/layer.tar": layer,
    }
    with tarfile.open(path, "w") as archive:
        for name, data in members.items():
            raw = data.encode() if isinstance(data, str) else data
            info = tarfile.TarInfo(name)
            info.size = len(raw)
            archive.addfile(info, io.BytesIO(raw))
    return path


def tree_bytes(folder: Path) -> dict[str, str]:
    return {
        p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def with_local_base(project: Project, base: str) -> None:
    project.config.write_text(project.config.read_text() + f'\n[image]\nbase = "{base}"\npython = "3.11"\n')


def image_from(
    folder: Path, inputs: dict[str, Any], section: Any, *, stem: str = "m", tag: str = "m:1", epoch: int = EPOCH
) -> OciImage:
    """The engine-free image of the `inputs` fixture's wheel and dependencies on `section`'s base."""
    return build_oci_image(
        folder,
        stem=stem,
        tag=tag,
        wheel=inputs["wheel"],
        metadata=inputs["metadata"],
        section=section,
        revision="",
        epoch=epoch,
        deps=inputs["deps"],
    )
