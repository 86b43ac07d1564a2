"""Builds with their attestations, in-process (no database): for the attestation and verify tests."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519

from mlpack.artifacts import attest
from mlpack.build import BuildResult, write_artifacts
from tests.helpers.documents import subscribers
from tests.helpers.training import config_for, export


def key_pair(folder: Path, kind: str) -> tuple[Path, Path]:
    key: Any = ec.generate_private_key(ec.SECP256R1()) if kind == "ecdsa" else ed25519.Ed25519PrivateKey.generate()
    private, public = folder / f"{kind}.key", folder / f"{kind}.pub"
    private.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    public.write_bytes(
        key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    return private, public


def build_in(folder: Path, *, sign: dict[str, str] | None = None) -> BuildResult:
    """The build's own stages on 200 subscribers, then its attestations, as `mlpack build` writes them."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "mlpack.toml").write_text("# test config\n", encoding="utf-8")
    sections = {"sign": sign} if sign is not None else {}
    config = config_for("sklearn.linear_model.LogisticRegression", "classification", **sections)
    config = dataclasses.replace(config, path=folder / "mlpack.toml", project_dir=folder)
    attest.check(config)
    result = write_artifacts(config, export(config, subscribers(200)), folder / "dist", attest_build=True)
    if result.failure is not None:
        raise result.failure
    return result


def write_oci_base(folder: Path, layer: bytes) -> Path:
    """An OCI image layout of one uncompressed layer: a base for the engine-free image (nothing in it runs)."""
    from mlpack.artifacts.oci_base import digest_of
    from tests.helpers.oci_layouts import write_oci_base as write_layout

    config = {
        "architecture": "amd64",
        "os": "linux",
        "config": {"Env": ["PATH=/usr/local/bin:/usr/bin:/bin", "PYTHON_VERSION=3.11.9"], "Cmd": ["python3"]},
        "rootfs": {"type": "layers", "diff_ids": [digest_of(layer)]},
        "history": [{"created_by": "test base"}],
    }
    return write_layout(folder, layer, config)
