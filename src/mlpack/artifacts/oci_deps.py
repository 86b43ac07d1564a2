"""The dependency layer, made once: a retrained model's image reuses the layer its predecessor made.

The layer depends on the wheel's requirements, the pins, the image's Python and platform and the
wheel files pip installs them from, never on the model or the build's time: its mtimes are fixed
(1980-01-01, as in a wheel), so the same dependencies make the same bytes, whenever they are built.
When they come from a folder of wheels (the build context's deps/, or [image].find_links), the
finished layer is kept in the blob cache under a key of all of those (the pruning rules included),
and checked against its digest when it is used again (hashed once while the blob is unchanged:
oci_memo.py).
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
from pathlib import Path

from mlpack import __version__
from mlpack.artifacts.dist import sha256_of
from mlpack.artifacts.image import ImageTarget
from mlpack.artifacts.oci_files import place
from mlpack.artifacts.oci_install import install_dependencies
from mlpack.artifacts.oci_layer import Layer, write_layer
from mlpack.artifacts.oci_memo import cache_dir, cache_root, remember, remembered
from mlpack.artifacts.oci_prune import RULES

DEPENDENCY_EPOCH = 315532800  # 1980-01-01T00:00:00Z: zip's earliest time, what wheels carry


def dependency_key(requirements: list[str], pins: dict[str, str], target: ImageTarget, links: str) -> str | None:
    """What the layer is made of, hashed; None when pip would ask an index (its answer may change)."""
    if not links or not Path(links).is_dir():
        return None
    found = sorted(Path(links).glob("*.whl"))
    wheels = sorted((p.name, remembered(p, "sha256", functools.partial(sha256_of, p))) for p in found)
    inputs = {
        "mlpack": __version__,  # how the tree is installed and cleaned
        "requirements": requirements,
        "pins": pins,
        "platform": target.pip_platform_args(),
        "wheels": wheels,
        "pruned": RULES,  # what is taken out of them
    }
    return hashlib.sha256(json.dumps(inputs, sort_keys=True).encode()).hexdigest()


def _cached(key: str) -> Layer | None:
    """The layer the entry names, if its blob still has the digest it was written with.

    The diff_id (the unpacked tar's digest) was computed from the same bytes as the digest while the
    layer was written, and is kept beside it: bytes that match the digest match the diff_id, so the
    blob is not unpacked again to check it. The digest itself is hashed once while the blob is unchanged
    (oci_memo.py)."""
    entry = cache_root() / "layers" / f"{key}.json"
    try:
        found = json.loads(entry.read_text(encoding="utf-8"))
        blob = cache_dir() / found["digest"].removeprefix("sha256:")
        if "sha256:" + remembered(blob, "sha256", lambda: sha256_of(blob)) != found["digest"]:
            return None
        return Layer(blob, found["digest"], found["diff_id"], int(found["size"]), int(found["unpacked"]))
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _keep(key: str, layer: Layer) -> None:
    """Into the cache, best effort: a cache that cannot be written only costs the next build time."""
    try:
        blobs = cache_dir()
        blobs.mkdir(parents=True, exist_ok=True)
        blob = blobs / layer.digest.removeprefix("sha256:")
        # Written even if there (what is there failed its check), under this process's own name: the
        # partial is a link to this build's layer, and another build's copy must never write through it.
        partial = blob.with_name(f"{blob.name}.{os.getpid()}.part")
        partial.unlink(missing_ok=True)
        place(layer.path, 0, layer.size, partial)
        os.replace(partial, blob)
        if os.path.samefile(blob, layer.path):  # linked: the very bytes hashed as they were written
            remember(blob, "sha256", layer.digest.removeprefix("sha256:"))
        entry = cache_root() / "layers" / f"{key}.json"
        entry.parent.mkdir(parents=True, exist_ok=True)
        document = {"digest": layer.digest, "diff_id": layer.diff_id, "size": layer.size, "unpacked": layer.unpacked}
        partial = entry.with_name(f"{entry.name}.{os.getpid()}.part")
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
