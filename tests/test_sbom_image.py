"""The image's part of the SBOM, read from its layers (artifacts/inventory.py), and `mlpack verify` on an image."""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import os
import shutil
import tarfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from mlpack.artifacts.inventory import inventory
from mlpack.build import BuildResult, write_artifacts
from tests.helpers.attested import key_pair, write_oci_base
from tests.helpers.cli import assert_clean_error
from tests.helpers.documents import subscribers
from tests.helpers.registry_server import (
    PASSWORD,
    USERNAME,
    LoopbackRegistry,
    RegistryUnavailable,
    loopback_registry,
)
from tests.helpers.training import config_for, export

STATUS = """Package: base-files
Status: install ok installed
Priority: required
Architecture: amd64
Version: 12.4+deb12u15
Description: Debian base system miscellaneous files
 This package contains the basic filesystem hierarchy.

Package: libc6
Status: install ok installed
Architecture: amd64
Source: glibc
Version: 2.36-9+deb12u10

Package: old-tool
Status: deinstall ok config-files
Architecture: amd64
Version: 1.0
"""


def layer(files: dict[str, str | bytes]) -> bytes:
    """A tar layer of these files (sorted, as mlpack writes them); a value "DIR" makes a folder."""
    stream = io.BytesIO()
    with tarfile.open(fileobj=stream, mode="w", format=tarfile.GNU_FORMAT) as tar:
        for name, content in sorted(files.items()):
            info = tarfile.TarInfo(name)
            if content == "DIR":
                info.type = tarfile.DIRTYPE
                tar.addfile(info)
                continue
            data = content.encode() if isinstance(content, str) else content
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return stream.getvalue()


def dist_info(folder: str, name: str, version: str) -> dict[str, str | bytes]:
    return {
        f"{folder}/{name}-{version}.dist-info/METADATA": f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n",
        f"{folder}/{name}-{version}.dist-info/RECORD": f"{name}/__init__.py,sha256=x,0\n",
    }


BASE = {
    "etc/os-release": 'PRETTY_NAME="Debian GNU/Linux 12 (bookworm)"\nID=debian\nVERSION_ID="12"\n',
    "var/lib/dpkg/status": STATUS,
    **dist_info("usr/lib/python3/dist-packages", "Requests", "2.28.1"),
    **dist_info("usr/lib/python3/dist-packages", "chardet", "5.1.0"),
    "usr/lib/python3/dist-packages/python_apt-2.6.0.egg-info": "Name: python-apt\nVersion: 2.6.0\n",
    "usr/local/lib/python3.11/site-packages/pip-24.0.dist-info/METADATA": "Name: pip\nVersion: 24.0\n",
}


def test_the_inventory_reads_dpkg_and_dist_info_through_whiteouts() -> None:
    upper = {
        "usr/lib/python3/dist-packages/.wh.chardet-5.1.0.dist-info": b"",  # pip uninstall chardet
        "usr/local/lib/python3.11/site-packages/.wh..wh..opq": b"",  # the folder replaced whole
        **dist_info("usr/local/lib/python3.11/site-packages", "pip", "25.1"),
        **dist_info("opt/model/site", "numpy", "2.1.0"),
    }
    found = inventory([io.BytesIO(layer(BASE)), io.BytesIO(layer(upper))])
    assert (found.os_id, found.os_version) == ("debian", "12")
    assert [(p.name, p.version, p.architecture, p.source) for p in found.debian] == [
        ("base-files", "12.4+deb12u15", "amd64", ""),
        ("libc6", "2.36-9+deb12u10", "amd64", "glibc"),
    ]  # old-tool is removed (its configuration files only), Description's continuation is not a field
    python = {(d.name, d.version): d for d in found.python}
    assert set(python) == {("requests", "2.28.1"), ("python-apt", "2.6.0"), ("pip", "25.1"), ("numpy", "2.1.0")}
    assert python[("numpy", "2.1.0")].path == "opt/model/site/numpy-2.1.0.dist-info"
    assert len(python[("numpy", "2.1.0")].record_sha256) == 64 and python[("python-apt", "2.6.0")].record_sha256 == ""


def test_a_whiteout_in_the_same_layer_keeps_that_layers_own_files() -> None:
    lower = layer(dist_info("site", "six", "1.16.0"))
    upper = layer({"site/.wh..wh..opq": b"", **dist_info("site", "six", "1.17.0")})
    found = inventory([io.BytesIO(lower), io.BytesIO(upper)])
    assert [(d.name, d.version) for d in found.python] == [("six", "1.17.0")]


# -- a real image with no engine -------------------------------------------------------------------
@pytest.fixture(scope="module")
def imaged(tmp_path_factory: pytest.TempPathFactory) -> tuple[BuildResult, Path]:
    """A build with the engine-free image on a tiny Debian-like base, signed with Ed25519."""
    root = tmp_path_factory.mktemp("imaged")
    base = layer(BASE)
    write_oci_base(root / "base.oci", base)
    private, public = key_pair(root, "ed25519")
    (root / "mlpack.toml").write_text("# image test\n", encoding="utf-8")
    config = config_for(
        "sklearn.linear_model.LogisticRegression",
        "classification",
        image={"base": "oci:base.oci", "python": "3.11", "arch": "x86_64"},
        sign={"key_file": str(private)},
    )
    config = dataclasses.replace(config, path=root / "mlpack.toml", project_dir=root)
    result = write_artifacts(
        config, export(config, subscribers(200)), root / "dist", image="required", attest_build=True
    )
    assert result.failure is None, result.failure
    return result, public


def test_the_sbom_lists_what_the_images_layers_hold(imaged: tuple[BuildResult, Path]) -> None:
    from cyclonedx.schema import SchemaVersion
    from cyclonedx.validation.json import JsonStrictValidator

    result, _ = imaged
    text = result.artifacts["sbom"].read_text(encoding="utf-8")
    assert JsonStrictValidator(SchemaVersion.V1_6).validate_str(text) is None
    document = json.loads(text)
    image = next(c for c in document["components"] if c["bom-ref"] == "image")
    assert image["type"] == "container" and image["version"] == "1.0.0"
    assert image["hashes"][0]["content"] == result.report["image"]["digest"].removeprefix("sha256:")
    purls = {c["purl"] for c in image["components"]}
    assert "pkg:deb/debian/libc6@2.36-9%2Bdeb12u10?arch=amd64&distro=debian-12" in purls
    assert "pkg:pypi/requests@2.28.1" in purls and "pkg:pypi/python-apt@2.6.0" in purls
    assert not any("old-tool" in purl for purl in purls)
    installed = {c["name"]: c for c in image["components"] if "opt/model/" in json.dumps(c)}
    assert {"numpy", "onnxruntime", "test-model"} <= set(installed)  # the dependency and model layers, read back
    # What the image's dependency layer left out of a distribution is said on it (artifacts/oci_prune.py).
    properties = [(c["name"], p) for c in installed.values() for p in c["properties"]]
    pruned = {name: p["value"] for name, p in properties if p["name"] == "mlpack:pruned"}
    assert set(pruned) == {"numpy", "onnxruntime"}, pruned
    assert "taken out by mlpack: the C API library" in pruned["onnxruntime"] and "PRUNED.json" in pruned["numpy"]
    # The wheel's dependencies: the very wheels the image was installed from, each with its file's sha256.
    deps = {c["name"]: c for c in document["components"] if c["bom-ref"].startswith("pypi:")}
    wheel_file = next((result.artifacts["docker"] / "deps").glob("numpy-*.whl"))
    assert deps["numpy"]["hashes"][0]["content"] == hashlib.sha256(wheel_file.read_bytes()).hexdigest()
    subjects = {s["annotations"]["kind"]: s for s in json.loads(result.artifacts["provenance"].read_bytes())["subject"]}
    assert subjects["image"]["name"] == "test-model:1.0.0"
    assert subjects["image"]["digest"]["sha256"] == image["hashes"][0]["content"]
    assert subjects["image_archive"]["name"] == result.artifacts["image_archive"].name


def test_verify_passes_on_the_archive_and_the_layout_and_names_a_changed_layer(
    imaged: tuple[BuildResult, Path], run: Any, tmp_path: Path
) -> None:
    result, public = imaged
    for artifact in (result.artifacts["image_archive"], result.artifacts["oci"]):
        checked = run("verify", artifact, "--key", public)
        assert checked.code == 0, checked.err
        assert "Python and Debian packages are the ones its SBOM lists" in checked.out
        assert "model-signing's signature" in checked.out  # the image's model, signed
    # What a registry holds (and `pull` brings back): the layout and the attached files, no .onnx, no wheel.
    pulled = tmp_path / "pulled"
    pulled.mkdir()
    shutil.copytree(result.artifacts["oci"], pulled / result.artifacts["oci"].name)
    for kind in ("sbom", "provenance", "provenance_envelope", "model_signature"):
        shutil.copy(result.artifacts[kind], pulled)
    alone = run("verify", pulled / result.artifacts["oci"].name, "--key", public)
    assert alone.code == 0, alone.err
    assert (
        "its opt/model/site/test_model/model.onnx is the provenance's test-model-1.0.0.onnx (its sha256)" in alone.out
    )
    assert "opt/model/site/test_model/model.onnx: model-signing's signature" in alone.out
    copy = tmp_path / "dist"
    shutil.copytree(result.artifacts["report"].parent, copy, ignore=shutil.ignore_patterns("*.docker"))
    layer_digest = result.report["image"]["model_layer"]["digest"].removeprefix("sha256:")
    blob = copy / result.artifacts["oci"].name / "blobs" / "sha256" / layer_digest
    data = bytearray(blob.read_bytes())
    data[len(data) // 2] ^= 1
    blob.write_bytes(bytes(data))
    assert_clean_error(
        run("verify", copy / result.artifacts["oci"].name), 1, f"blobs/sha256/{layer_digest} does not match its digest"
    )
    archive = copy / result.artifacts["image_archive"].name
    with tarfile.open(result.artifacts["image_archive"]) as source:
        offset = next(m.offset_data for m in source.getmembers() if m.name.endswith(layer_digest))
    raw = bytearray(archive.read_bytes())
    raw[offset + 1000] ^= 1
    archive.write_bytes(bytes(raw))
    assert_clean_error(run("verify", archive), 1, f"{archive.name}: blobs/sha256/{layer_digest} does not match")


# -- a pushed image ---------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LoopbackRegistry]:
    """Debian's docker-registry on loopback, TLS from a test CA, htpasswd login (tests/helpers/registry_server.py)."""
    try:
        with loopback_registry(tmp_path_factory.mktemp("verify-registry")) as found:
            yield found
    except RegistryUnavailable as exc:
        if os.environ.get("MLPACK_REQUIRE_REGISTRY"):
            raise
        pytest.skip(f"no registry: {exc}")


def test_verify_a_pushed_reference(
    imaged: tuple[BuildResult, Path],
    registry: LoopbackRegistry,
    run: Any,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    result, public = imaged
    monkeypatch.setenv("MLPACK_REGISTRY_USERNAME", USERNAME)
    monkeypatch.setenv("MLPACK_REGISTRY_PASSWORD", PASSWORD)
    monkeypatch.chdir(tmp_path)  # no mlpack.toml: push records nothing
    reference = f"{registry.host}/models/test-model:1.0.0"
    pushed = run("push", result.artifacts["oci"], reference, "--ca-file", registry.ca, "-q")
    assert pushed.code == 0, pushed.err
    checked = run("verify", reference, "--key", public, "--ca-file", registry.ca)
    assert checked.code == 0, checked.err
    assert f"{reference}: pulled, with 4 attached files" in checked.out
    assert "opt/model/site/test_model/model.onnx: model-signing's signature" in checked.out
    assert f"verified: {Path(reference).name} (signatures checked)" in checked.out
    other = tmp_path / "other.pub"
    other.write_bytes(key_pair(tmp_path, "ecdsa")[1].read_bytes())
    assert_clean_error(run("verify", reference, "--key", other, "--ca-file", registry.ca), 1, "does not verify")
    # The same image pushed without its SBOM and provenance: nothing to verify it against.
    bare = tmp_path / "bare"
    bare.mkdir()
    shutil.copytree(result.artifacts["oci"], bare / result.artifacts["oci"].name)
    alone = f"{registry.host}/models/bare:1.0.0"
    assert run("push", bare / result.artifacts["oci"].name, alone, "--ca-file", registry.ca, "-q").code == 0
    assert_clean_error(run("verify", alone, "--ca-file", registry.ca), 1, "no provenance")
    # A path that does not exist is never taken for a reference (no registry is asked).
    assert_clean_error(run("verify", "dist/missing.whl"), 2, "does not exist")


def test_a_pushed_image_changed_in_the_registry_fails_its_check_with_exit_1(
    imaged: tuple[BuildResult, Path],
    registry: LoopbackRegistry,
    run: Any,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    """What the registry holds is not what was pushed: a failed check (exit 1, as for a changed file in dist/),
    never exit 3, which says "unreachable, try again". Each of these was exit 3 before; the tag re-pushed by a
    Docker client read as `is not an image manifest: 'config'` (distribution 2.8 answered a manifest asked for
    as OCI only with schema 1)."""
    result, public = imaged
    monkeypatch.setenv("MLPACK_REGISTRY_USERNAME", USERNAME)
    monkeypatch.setenv("MLPACK_REGISTRY_PASSWORD", PASSWORD)
    monkeypatch.chdir(tmp_path)
    repository = f"{registry.host}/models/changed"
    pushed = run("push", result.artifacts["oci"], f"{repository}:1.0.0", "--ca-file", registry.ca, "-q")
    assert pushed.code == 0, pushed.err
    digest = pushed.out.strip().rsplit("@", 1)[-1]
    assert run("verify", f"{repository}:1.0.0", "--key", public, "--ca-file", registry.ca).code == 0

    # 1. The model layer's bytes changed in the registry's storage (its root is beside the CA, as the fixture makes it).
    layer_digest = result.report["image"]["model_layer"]["digest"]
    (blob,) = (registry.ca.parents[1] / "data").rglob(f"blobs/sha256/{layer_digest[7:9]}/{layer_digest[7:]}/data")
    original = blob.read_bytes()
    changed = bytearray(original)
    changed[len(changed) // 2] ^= 1
    blob.write_bytes(bytes(changed))
    try:
        refused = run("verify", f"{repository}:1.0.0", "--key", public, "--ca-file", registry.ca)
    finally:
        blob.write_bytes(original)  # the store is the module's registry's, shared by its other tests
    assert_clean_error(refused, 1, f"sent a blob that does not match {layer_digest}")

    # 2. The tag re-pushed by a Docker client (schema 2, so another digest), with no attachments of its own.
    registry.skopeo("copy", "--format", "v2s2", f"oci:{result.artifacts['oci']}", f"docker://{repository}:1.0.0")
    refused = run("verify", f"{repository}:1.0.0", "--key", public, "--ca-file", registry.ca)
    assert_clean_error(refused, 1, "has no provenance attached (attached: nothing)")
    assert "'config'" not in refused.err

    # 3. ... and the original's attachments copied to the new digest's fallback tag: they name another subject.
    raw = registry.skopeo("inspect", "--raw", f"docker://{repository}:1.0.0").stdout
    moved, new = json.loads(raw), "sha256:" + hashlib.sha256(raw.encode()).hexdigest()
    assert moved["mediaType"] == "application/vnd.docker.distribution.manifest.v2+json" and new != digest
    old_tag, new_tag = digest.replace(":", "-"), new.replace(":", "-")
    registry.skopeo("copy", "--all", f"docker://{repository}:{old_tag}", f"docker://{repository}:{new_tag}")
    refused = run("verify", f"{repository}:1.0.0", "--key", public, "--ca-file", registry.ca)
    assert_clean_error(refused, 1, f"is attached to {digest}, not to {new}")
