"""Small OCI image layouts for the image tests: a base the engine-free build can start from."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mlpack.artifacts.oci_base import canonical, digest_of


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
