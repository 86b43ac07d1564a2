"""The dependency layer, made once: a retrained model's image reuses the layer its predecessor made.

The layer depends on the wheel's requirements, the pins, the image's Python and platform and the
wheel files pip installs them from, never on the model or the build's time: its mtimes are fixed
(1980-01-01, as in a wheel), so the same dependencies make the same bytes, whenever they are built.
When they come from a folder of wheels (the build context's deps/, or [image].find_links), the
finished layer is kept in the blob cache under a key of all of those, and checked against its
digest and diff_id when it is used again.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import shutil
from pathlib import Path

from mlpack import __version__
from mlpack.artifacts.dist import sha256_of
from mlpack.artifacts.image import ImageTarget
from mlpack.artifacts.oci import Layer, write_layer
from mlpack.artifacts.oci_base import CHUNK
from mlpack.artifacts.oci_install import install_dependencies
from mlpack.artifacts.oci_pull import cache_dir

DEPENDENCY_EPOCH = 315532800  # 1980-01-01T00:00:00Z: zip's earliest time, what wheels carry


def dependency_key(requirements: list[str], pins: dict[str, str], target: ImageTarget, links: str) -> str | None:
    """What the layer is made of, hashed; None when pip would ask an index (its answer may change)."""
    if not links or not Path(links).is_dir():
        return None
    wheels = sorted((p.name, sha256_of(p)) for p in Path(links).glob("*.whl"))
    inputs = {
        "mlpack": __version__,  # how the tree is installed and cleaned
        "requirements": requirements,
        "pins": pins,
        "platform": target.pip_platform_args(),
        "wheels": wheels,
    }
    return hashlib.sha256(json.dumps(inputs, sort_keys=True).encode()).hexdigest()


def _cached(key: str) -> Layer | None:
    entry = cache_dir().parent.parent / "layers" / f"{key}.json"
    try:
        found = json.loads(entry.read_text(encoding="utf-8"))
        blob = cache_dir() / found["digest"].removeprefix("sha256:")
        if "sha256:" + sha256_of(blob) != found["digest"]:
            return None
        plain = hashlib.sha256()
        with gzip.open(blob) as stream:
            for chunk in iter(lambda: stream.read(CHUNK), b""):
                plain.update(chunk)
        if "sha256:" + plain.hexdigest() != found["diff_id"]:
            return None
        return Layer(blob, found["digest"], found["diff_id"], int(found["size"]), int(found["unpacked"]))
    except (OSError, ValueError, KeyError, TypeError, EOFError):
        return None


def _keep(key: str, layer: Layer) -> None:
    """Into the cache, best effort: a cache that cannot be written only costs the next build time."""
    try:
        blobs = cache_dir()
        blobs.mkdir(parents=True, exist_ok=True)
        blob = blobs / layer.digest.removeprefix("sha256:")
        partial = blob.with_name(blob.name + ".part")  # written even if there: what is there failed its check
        shutil.copyfile(layer.path, partial)
        os.replace(partial, blob)
        entry = blobs.parent.parent / "layers" / f"{key}.json"
        entry.parent.mkdir(parents=True, exist_ok=True)
        document = {"digest": layer.digest, "diff_id": layer.diff_id, "size": layer.size, "unpacked": layer.unpacked}
        partial = entry.with_name(entry.name + ".part")
        partial.write_text(json.dumps(document), encoding="utf-8")
        os.replace(partial, entry)
    except OSError:
        pass


def dependency_layer(
    stage: Path, requirements: list[str], target: ImageTarget, *, pins: dict[str, str], links: str, offline: bool
) -> tuple[Layer, bool]:
    """The layer (made, or from the cache) and whether it came from the cache."""
    key = dependency_key(requirements, pins, target, links) if offline else None
    if key is not None:
        found = _cached(key)
        if found is not None:
            return found, True
    root = install_dependencies(stage, requirements, target, pins=pins, find_links=links, offline=offline)
    layer = write_layer(root, stage / "deps.tar.gz", DEPENDENCY_EPOCH)
    if key is not None:
        _keep(key, layer)
    return layer, False
