"""The image and a real registry: a base pulled over the distribution API, `mlpack push` with attachments.

The registry is Debian's docker-registry on loopback (tests/helpers/registry_server.py): TLS from a CA made
here, an htpasswd login or none. What mlpack pushed is read back by skopeo, an independent client.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import os
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pymongo import MongoClient

from mlpack.artifacts.image import ImageTarget, download_dependencies, image_pins
from mlpack.artifacts.image_step import base_connection
from mlpack.artifacts.oci import build_oci_image
from mlpack.artifacts.oci_base import digest_of
from mlpack.artifacts.oci_push import pull_image
from mlpack.artifacts.oci_remote import Connection, Credentials, ImageReference, RegistryClient
from mlpack.config import ImageSection, load_config
from mlpack.errors import ConfigError, ExternalError
from tests.helpers.cli import assert_clean_error
from tests.helpers.oci_layouts import EPOCH, base_config, tiny_base_layer, tree_bytes, with_local_base, write_oci_base
from tests.helpers.projects import CHURN_CONFIG, Project
from tests.helpers.registry_server import (
    PASSWORD,
    USERNAME,
    LoopbackRegistry,
    RegistryUnavailable,
    free_port,
    loopback_registry,
    make_ca_and_certificate,
)

CYCLONEDX = "application/vnd.cyclonedx+json"
IN_TOTO = "application/vnd.in-toto+json"


@pytest.fixture(scope="module")
def registries(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, LoopbackRegistry]]:
    """Three registries, each TLS with its own test CA: a Basic login (htpasswd), Bearer tokens from a
    token service for the same login, and anonymous."""
    try:
        with (
            loopback_registry(tmp_path_factory.mktemp("registry-login")) as login,
            loopback_registry(tmp_path_factory.mktemp("registry-token"), token=True) as token,
            loopback_registry(tmp_path_factory.mktemp("registry-anonymous"), login=False) as anonymous,
            loopback_registry(tmp_path_factory.mktemp("registry-plain"), login=False, tls=False) as plain,
        ):
            yield {"login": login, "token": token, "anonymous": anonymous, "plain": plain}
    except RegistryUnavailable as exc:
        if os.environ.get("MLPACK_REQUIRE_REGISTRY"):
            raise
        pytest.skip(f"no registry: {exc}")


@pytest.fixture(scope="module")
def inputs(built_model: Any, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    root = tmp_path_factory.mktemp("oci-registry-inputs")
    wheel = built_model.artifacts["wheel"]
    pins = image_pins(built_model.metadata["versions"]["onnxruntime"])
    download_dependencies(wheel, root / "deps", ImageTarget("3.11", "x86_64"), pins=pins)
    layer = tiny_base_layer(root)
    return {
        "wheel": wheel,
        "metadata": built_model.metadata,
        "deps": root / "deps",
        "oci": write_oci_base(root / "base.oci", layer, base_config([digest_of(layer)])),
    }


def build(inputs: dict[str, Any], out: Path, base: str, connection: Connection | None = None) -> Any:
    out.mkdir(exist_ok=True)
    return build_oci_image(
        out,
        stem="churn-model-1.0.0",
        tag="churn-model:1.0.0",
        wheel=inputs["wheel"],
        metadata=inputs["metadata"],
        section=ImageSection(base=base, python="3.11"),
        revision="",
        epoch=EPOCH,
        deps=inputs["deps"],
        connection=connection,
    )


@pytest.fixture(scope="module")
def image(inputs: dict[str, Any], tmp_path_factory: pytest.TempPathFactory) -> Any:
    return build(inputs, tmp_path_factory.mktemp("oci-image"), f"oci:{inputs['oci']}")


def login_env(monkeypatch: pytest.MonkeyPatch, password: str = PASSWORD) -> None:
    monkeypatch.setenv("MLPACK_REGISTRY_USERNAME", USERNAME)
    monkeypatch.setenv("MLPACK_REGISTRY_PASSWORD", password)


def test_a_base_from_a_registry_makes_the_image_a_local_base_makes(
    inputs: dict[str, Any],
    image: Any,
    registries: dict[str, LoopbackRegistry],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """skopeo puts the base in both registries; mlpack pulls it (login, and anonymous), blobs cached.

    Into the first as it is (--preserve-digests): the image is the one built on the layout, byte for
    byte. Into the second gzipped, as skopeo does by default: a compressed base layer, taken as it is."""
    monkeypatch.setenv("MLPACK_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("DOCKER_HOST", "unix:///nonexistent.sock")  # no engine's store to look in first
    login, anonymous = registries["login"], registries["anonymous"]
    login.skopeo("copy", "--preserve-digests", f"oci:{inputs['oci']}", f"docker://{login.host}/base/tiny:1")
    anonymous.skopeo("copy", f"oci:{inputs['oci']}", f"docker://{anonymous.host}/base/tiny:1")
    with_login = Connection(ca_file=login.ca, credentials=Credentials(USERNAME, PASSWORD))
    pulled = build(inputs, tmp_path / "login", f"{login.host}/base/tiny:1", with_login)
    assert pulled.digest == image.digest and pulled.base_source == "registry"
    cache = tmp_path / "cache" / "blobs" / "sha256"
    base = json.loads((image.layout / "blobs" / "sha256" / image.digest[7:]).read_bytes())
    cached = {p.name for p in cache.iterdir()}  # by sha256: the base's layer and config, the dependency layer
    assert len(cached) == 3 and {base["layers"][0]["digest"][7:], image.dependency_layer.digest[7:]} <= cached
    anonymous_base = f"docker://{anonymous.host}/base/tiny:1"
    anonymous_pull = build(inputs, tmp_path / "anon", anonymous_base, Connection(anonymous.ca))
    blobs = {"ours": image.layout / "blobs" / "sha256", "theirs": anonymous_pull.layout / "blobs" / "sha256"}
    ours = json.loads((blobs["ours"] / image.digest[7:]).read_bytes())
    theirs = json.loads((blobs["theirs"] / anonymous_pull.digest[7:]).read_bytes())
    assert [layer["mediaType"].rpartition(".")[2] for layer in theirs["layers"]] == ["tar+gzip"] * 3
    assert theirs["layers"][1:] == ours["layers"][1:]  # the dependency and model layers: the same bytes

    # A cached blob changed on disk is not built on: fetched anew from the registry (a layout links its
    # blobs from the cache, so a change made through a layout's name lands here), the cache mended.
    blob = cache / base["layers"][0]["digest"][7:]  # the base's layer
    blob.write_bytes(blob.read_bytes() + b"x")
    mended = build(inputs, tmp_path / "tampered", f"{login.host}/base/tiny:1", with_login)
    assert mended.digest == image.digest
    assert digest_of(blob.read_bytes()) == base["layers"][0]["digest"]
    blob.unlink()

    with pytest.raises(ExternalError, match="requires a login"):
        build(inputs, tmp_path / "nologin", f"{login.host}/base/tiny:1", Connection(login.ca))

    # Bearer tokens: the registry's challenge names its token service, which takes the same login.
    token = registries["token"]
    token.skopeo("copy", "--preserve-digests", f"oci:{inputs['oci']}", f"docker://{token.host}/base/tiny:1")
    with_token = Connection(ca_file=token.ca, credentials=Credentials(USERNAME, PASSWORD))
    assert build(inputs, tmp_path / "token", f"{token.host}/base/tiny:1", with_token).digest == image.digest
    refused = Connection(ca_file=token.ca, credentials=Credentials(USERNAME, "not-the-password"))
    with pytest.raises(ExternalError, match=f"refused the login of '{USERNAME}'"):
        build(inputs, tmp_path / "token-refused", f"{token.host}/base/tiny:1", refused)
    with pytest.raises(ExternalError, match="requires a login"):
        build(inputs, tmp_path / "token-none", f"{token.host}/base/tiny:1", Connection(token.ca))
    with pytest.raises(ConfigError, match="has no image"):
        build(inputs, tmp_path / "missing", f"{login.host}/base/none:1", with_login)


def test_push_sends_the_image_and_its_attachments_and_skopeo_reads_them(
    image: Any, registries: dict[str, LoopbackRegistry], run, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    registry = registries["login"]
    login_env(monkeypatch)
    monkeypatch.chdir(tmp_path)  # no mlpack.toml here: nothing to record in
    sbom = tmp_path / "churn-model-1.0.0.cdx.json"
    sbom.write_text('{"bomFormat": "CycloneDX", "specVersion": "1.6"}')
    statement = tmp_path / "statement.json"
    statement.write_text('{"_type": "https://in-toto.io/Statement/v1"}')
    reference = f"{registry.host}/models/churn-model:1.0.0"
    attach = ["--attach", f"{sbom}:{CYCLONEDX}", "--attach", f"{statement}:{IN_TOTO}"]
    result = run("push", image.layout, reference, "--ca-file", registry.ca, *attach, "--json")
    assert result.code == 0, result.err
    pushed = json.loads(result.out)
    assert pushed["digest"] == image.digest and pushed["reference"] == reference
    assert pushed["recorded"].startswith("no persistent registry") and pushed["referrers"] == "tag"
    assert [a["artifact_type"] for a in pushed["attachments"]] == [CYCLONEDX, IN_TOTO]

    # skopeo: the very manifest bytes, the labels, and a copy back to an OCI layout with the same digest.
    raw = registry.skopeo("inspect", "--raw", f"docker://{reference}").stdout.encode()
    assert "sha256:" + hashlib.sha256(raw).hexdigest() == image.digest
    inspected = json.loads(registry.skopeo("inspect", f"docker://{reference}").stdout)
    assert inspected["Digest"] == image.digest and inspected["Labels"]["io.mlpack.metadata"]
    registry.skopeo("copy", "--preserve-digests", f"docker://{reference}", f"oci:{tmp_path / 'back'}:1.0.0")
    back = json.loads((tmp_path / "back" / "index.json").read_text())
    assert back["manifests"][0]["digest"] == image.digest

    # The attachments: the referrers fallback tag lists both, each naming the image as its subject.
    tags = json.loads(registry.skopeo("list-tags", f"docker://{registry.host}/models/churn-model").stdout)["Tags"]
    fallback = image.digest.replace(":", "-")
    assert sorted(tags) == sorted(["1.0.0", fallback])
    index = json.loads(
        registry.skopeo("inspect", "--raw", f"docker://{reference.rpartition(':')[0]}:{fallback}").stdout
    )
    assert [m["artifactType"] for m in index["manifests"]] == [CYCLONEDX, IN_TOTO]
    assert [m["digest"] for m in index["manifests"]] == [a["digest"] for a in pushed["attachments"]]
    artifact_ref = f"docker://{registry.host}/models/churn-model@{index['manifests'][0]['digest']}"
    artifact = json.loads(registry.skopeo("inspect", "--raw", artifact_ref).stdout)
    assert artifact["subject"]["digest"] == image.digest and artifact["artifactType"] == CYCLONEDX
    assert artifact["layers"][0]["digest"] == "sha256:" + hashlib.sha256(sbom.read_bytes()).hexdigest()
    assert artifact["layers"][0]["annotations"]["org.opencontainers.image.title"] == sbom.name

    # To a registry of Bearer tokens too: the same digest, read back by skopeo.
    token = registries["token"]
    to_token = run("push", image.layout, f"{token.host}/models/churn-model:1.0.0", "--ca-file", token.ca, "-q")
    assert to_token.code == 0, to_token.err
    assert to_token.out.strip() == image.digest
    raw = token.skopeo("inspect", "--raw", f"docker://{token.host}/models/churn-model:1.0.0").stdout.encode()
    assert "sha256:" + hashlib.sha256(raw).hexdigest() == image.digest

    # A registry with no TLS (on loopback): only with --plain-http, never by falling back on its own.
    plain = registries["plain"]
    http = f"{plain.host}/models/churn-model:1.0.0"
    assert_clean_error(run("push", image.layout, http), 3, f"the registry {plain.host} does not answer TLS")
    over_http = run("push", image.layout, http, "--plain-http", "-q")
    assert over_http.code == 0, over_http.err
    assert json.loads(plain.skopeo("inspect", f"docker://{http}").stdout)["Digest"] == image.digest
    # And the other way round: --plain-http to a registry that speaks TLS is named so ("answered 400: Bad Request").
    assert_clean_error(
        run("push", image.layout, reference, "--plain-http"), 3, f"the registry {registry.host} speaks TLS"
    )

    # mlpack's own pull (what `mlpack verify REFERENCE` reads): the layout and the attached files, as pushed.
    pulled = tmp_path / "pulled"
    pulled.mkdir()
    connection = Connection(ca_file=registry.ca, credentials=Credentials(USERNAME, PASSWORD))
    layout, files = pull_image(ImageReference.parse(reference), pulled, connection=connection)
    assert tree_bytes(layout / "blobs") == tree_bytes(image.layout / "blobs")  # every blob, byte for byte
    assert {p.name: p.read_bytes() for p in files} == {p.name: p.read_bytes() for p in (sbom, statement)}

    # Again, from the archive, with the SBOM found next to it: same digests, the index not grown.
    archive = tmp_path / "churn-model-1.0.0.image.tar"
    archive.write_bytes(image.archive.read_bytes())
    again = run("push", archive, reference, "--ca-file", registry.ca, "-q")
    assert again.code == 0, again.err
    assert again.out.strip() == image.digest
    index = json.loads(
        registry.skopeo("inspect", "--raw", f"docker://{reference.rpartition(':')[0]}:{fallback}").stdout
    )
    assert len(index["manifests"]) == 2


def one_line(result: Any) -> None:
    assert len(result.err.strip().splitlines()) == 1, result.err
    assert PASSWORD not in result.out + result.err


def test_bad_inputs_are_one_line_errors_with_their_exit_codes(
    image: Any, registries: dict[str, LoopbackRegistry], run, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    registry = registries["login"]
    reference = f"{registry.host}/models/bad:1"
    monkeypatch.chdir(tmp_path)
    ca = ["--ca-file", registry.ca]

    login_env(monkeypatch, password="not-the-password")
    wrong = run("push", image.layout, reference, *ca)
    assert_clean_error(wrong, 3, f"refused the login of '{USERNAME}'")
    one_line(wrong)

    monkeypatch.delenv("MLPACK_REGISTRY_PASSWORD")
    assert_clean_error(run("push", image.layout, reference, *ca), 2, "MLPACK_REGISTRY_PASSWORD is not set")
    monkeypatch.delenv("MLPACK_REGISTRY_USERNAME")
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path / "no-docker-config"))
    nobody = run("push", image.layout, reference, *ca)
    assert_clean_error(nobody, 3, "requires a login", "MLPACK_REGISTRY_USERNAME")
    one_line(nobody)

    login_env(monkeypatch)
    unknown = run("push", image.layout, reference)
    assert_clean_error(unknown, 3, "TLS certificate is not trusted", "--ca-file")
    one_line(unknown)
    other_ca, _, _ = make_ca_and_certificate(tmp_path / "other", "another CA")
    other = run("push", image.layout, reference, "--ca-file", other_ca)
    assert_clean_error(other, 3, f"not trusted with the CA file {other_ca}")
    one_line(other)

    nowhere = run("push", image.layout, f"127.0.0.1:{free_port()}/models/bad:1", *ca)
    assert_clean_error(nowhere, 3, "is unreachable")
    one_line(nowhere)

    for bad in (f"{registry.host}/Models/Upper:1", "not a reference", f"{registry.host}/models/x@sha256:12"):
        refused = run("push", image.layout, bad, *ca)
        assert_clean_error(refused, 2, "the push reference")
        one_line(refused)
    assert_clean_error(run("push", tmp_path / "nothing.oci", reference, *ca), 2, "does not exist")

    # --password-stdin: the password from standard input, the user from the flag.
    monkeypatch.delenv("MLPACK_REGISTRY_PASSWORD")
    monkeypatch.setattr(sys, "stdin", io.StringIO(PASSWORD + "\n"))
    good = run("push", image.layout, reference, *ca, "--username", USERNAME, "--password-stdin", "-q")
    assert good.code == 0, good.err
    assert good.out.strip() == image.digest

    # `docker login`'s credentials: config.json in DOCKER_CONFIG, with nothing in the environment.
    monkeypatch.delenv("MLPACK_REGISTRY_USERNAME")
    docker_config = tmp_path / "docker-config"
    docker_config.mkdir()
    (docker_config / "config.json").write_text(registry.auth_file.read_text())  # {"auths": {host: {"auth": ...}}}
    monkeypatch.setenv("DOCKER_CONFIG", str(docker_config))
    logged_in = run("push", image.layout, reference, *ca, "-q")
    assert logged_in.code == 0, logged_in.err
    assert logged_in.out.strip() == image.digest


def test_push_checks_and_records_the_build_in_the_registry_document(
    churn_project: Project,
    run,
    inputs: dict[str, Any],
    registries: dict[str, LoopbackRegistry],
    mongo_client: MongoClient[Any],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    registry = registries["login"]
    monkeypatch.setenv("SOURCE_DATE_EPOCH", str(EPOCH))
    monkeypatch.setenv("DOCKER_HOST", "unix:///nonexistent.sock")
    with_local_base(churn_project, f"oci:{inputs['oci']}")
    built = run("build", churn_project.path, "--image", "--json")
    assert built.code == 0, built.err
    digest = json.loads(built.out)["image"]["digest"]
    layout = churn_project.path / "dist" / "churn-model-1.0.0.oci"
    login_env(monkeypatch)
    reference = f"{registry.host}/team/churn-model"  # no tag: the model's version

    # A layout changed after the build is refused before anything is sent.
    blobs = sorted((layout / "blobs" / "sha256").iterdir(), key=lambda p: p.stat().st_size)
    tampered = churn_project.path / "tampered.oci"
    shutil.copytree(layout, tampered)
    victim = tampered / "blobs" / "sha256" / blobs[-1].name
    data = bytearray(victim.read_bytes())
    data[len(data) // 2] ^= 1
    victim.write_bytes(bytes(data))
    refused = run("push", tampered, reference, "--ca-file", registry.ca, "--config", churn_project.path)
    assert_clean_error(refused, 2, f"blobs/sha256/{blobs[-1].name[:12]}", "does not match its digest")

    result = run("push", layout, reference, "--ca-file", registry.ca, "--config", churn_project.path, "--json")
    assert result.code == 0, result.err
    pushed = json.loads(result.out)
    assert pushed["digest"] == digest and pushed["reference"] == f"{reference}:1.0.0"
    record = mongo_client[churn_project.database]["mlpack_models"].find_one({"version": "1.0.0"}, {"_id": 0})
    assert record is not None and [p["digest"] for p in record["pushes"]] == [digest]
    assert record["pushes"][0]["reference"] == f"{reference}:1.0.0"
    assert PASSWORD not in json.dumps(record, default=str)
    inspected = json.loads(registry.skopeo("inspect", f"docker://{reference}:1.0.0").stdout)
    assert inspected["Digest"] == digest


def test_a_base_from_a_plain_http_registry_with_image_plain_http(
    inputs: dict[str, Any],
    image: Any,
    registries: dict[str, LoopbackRegistry],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """[image].plain_http = true reads the base over HTTP; without it, one line naming the key, never a fallback."""
    monkeypatch.setenv("MLPACK_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("DOCKER_HOST", "unix:///nonexistent.sock")
    plain = registries["plain"]
    plain.skopeo("copy", "--preserve-digests", f"oci:{inputs['oci']}", f"docker://{plain.host}/base/tiny:1")
    project = tmp_path / "project"
    project.mkdir()
    image_table = f'[image]\nbase = "{plain.host}/base/tiny:1"\npython = "3.11"\nplain_http = true\n'
    (project / "mlpack.toml").write_text(CHURN_CONFIG.format(database="d") + image_table, encoding="utf-8")
    config = load_config(project)
    assert config.image.plain_http is True
    pulled = build(inputs, tmp_path / "plain", config.image.base, base_connection(config))
    assert pulled.digest == image.digest and pulled.base_source == "registry"  # the base's bytes, over HTTP
    over_tls = dataclasses.replace(config, image=dataclasses.replace(config.image, plain_http=False))
    with pytest.raises(
        ExternalError, match=r"does not answer TLS: a plain HTTP registry\? \(then \[image\]\.plain_http = true\)"
    ):
        build(inputs, tmp_path / "tls", config.image.base, base_connection(over_tls))


def test_a_blob_download_never_writes_through_another_name_in_the_cache(
    inputs: dict[str, Any], registries: dict[str, LoopbackRegistry], tmp_path: Path
) -> None:
    """The cache is shared by concurrent builds, and its names may be links to a layout's blobs: a
    download goes through a name of this process's own. The shared `<digest>.part` was opened "wb",
    so a link left there (another build's partial, linked to its layer) was truncated and overwritten."""
    plain = registries["plain"]
    plain.skopeo("copy", "--preserve-digests", f"oci:{inputs['oci']}", f"docker://{plain.host}/base/race:1")
    layer = tiny_base_layer(tmp_path / "layer")
    digest = digest_of(layer)
    cache = tmp_path / "cache"
    cache.mkdir()
    out = cache / digest[7:]
    others = tmp_path / "another-build-layer"
    others.write_bytes(b"another build's layer\n")
    for name in (f"{out.name}.part", f"{out.name}.{os.getpid()}.part"):
        os.link(others, cache / name)
    client = RegistryClient(ImageReference.parse(f"{plain.host}/base/race:1"), Connection(plain_http=True))
    client.download_blob(digest, out)
    assert hashlib.sha256(out.read_bytes()).hexdigest() == digest[7:]
    assert others.read_bytes() == b"another build's layer\n"
