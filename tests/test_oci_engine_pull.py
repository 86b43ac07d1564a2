"""A pushed image, pulled and run by a real Docker engine: `mlpack push` to the loopback registry (TLS from a
test CA, an htpasswd login), then `docker login`, `docker pull` and `docker run` of what it pushed.

The engine is Debian's docker.io (tests/helpers/images.py), the registry Debian's docker-registry
(tests/helpers/registry_server.py). The engine finds the registry's CA where dockerd looks for one,
/etc/docker/certs.d/HOST:PORT/ca.crt, written for the test and taken away after it. dockerd checks no
certificate of a registry in 127.0.0.0/8 (it takes loopback as an insecure registry), so the registry
listens on this machine's own address where it has one: there the engine refuses it until the CA is in
place.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from mlpack.artifacts.read import open_model
from mlpack.config import ImageSection
from mlpack.source.embedded import free_port
from tests.helpers.documents import subscribers
from tests.helpers.oci_layouts import image_from
from tests.helpers.registry_server import (
    PASSWORD,
    USERNAME,
    LoopbackRegistry,
    RegistryUnavailable,
    loopback_registry,
    own_address,
)

pytestmark = pytest.mark.slow
CERTS_D = Path("/etc/docker/certs.d")


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LoopbackRegistry]:
    try:
        address = own_address() or "127.0.0.1"
        with loopback_registry(tmp_path_factory.mktemp("registry-engine"), address=address) as login:
            yield login
    except RegistryUnavailable as exc:
        if os.environ.get("MLPACK_REQUIRE_REGISTRY"):
            raise
        pytest.skip(f"no registry: {exc}")


@pytest.fixture
def certs_folder(registry: LoopbackRegistry) -> Iterator[Path]:
    """Where dockerd reads the registry's CA for HOST:PORT, empty; only the folder made here is removed."""
    folder = CERTS_D / registry.host
    try:
        folder.mkdir(parents=True)
    except OSError as exc:
        pytest.skip(f"cannot make the engine's CA folder {folder}: {exc.strerror}")
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def docker(
    env: dict[str, str], *args: str | Path, stdin: str | None = None, timeout: float = 300, check: bool = True
) -> str:
    done = subprocess.run(
        ["docker", *map(str, args)],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **env},
        check=False,
    )
    assert done.returncode == 0 or not check, (args, done.stderr[-2000:])
    return done.stdout if done.returncode == 0 else done.stderr


def test_docker_pulls_and_runs_the_pushed_image(
    inputs: dict[str, Any],
    engine: dict[str, str],
    registry: LoopbackRegistry,
    certs_folder: Path,
    run: Any,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    env = {**engine, "DOCKER_CONFIG": str(tmp_path / "docker-config")}  # docker login's file, this test's own
    base = tmp_path / "python.tar"
    docker(env, "save", "--output", base, "python:3.11-slim")
    port = free_port()
    image = image_from(
        tmp_path,
        inputs,
        dataclasses.replace(ImageSection(base=f"docker-archive:{base}", port=port), python="3.11"),
        stem="churn-model-9.9.9",
        tag="churn-model-oci:9.9.9",
    )
    reference = f"{registry.host}/models/churn-model-oci:9.9.9"
    monkeypatch.setenv("MLPACK_REGISTRY_USERNAME", USERNAME)
    monkeypatch.setenv("MLPACK_REGISTRY_PASSWORD", PASSWORD)
    pushed = run("push", image.layout, reference, "--ca-file", registry.ca, "-q")
    assert pushed.code == 0, pushed.err
    assert pushed.out.strip() == image.digest

    login = ("login", "--username", USERNAME, "--password-stdin", registry.host)
    if not registry.host.startswith("127."):  # the engine checks the certificate: refused without the CA
        refused = docker(env, *login, stdin=PASSWORD, check=False)
        assert "certificate signed by unknown authority" in refused, refused
    shutil.copyfile(registry.ca, certs_folder / "ca.crt")
    docker(env, *login, stdin=PASSWORD)
    docker(env, "pull", reference)
    try:
        pulled = json.loads(docker(env, "image", "inspect", reference))[0]
        assert pulled["Id"] == image.config_digest  # the engine's id is the config mlpack wrote
        assert f"{reference.rpartition(':')[0]}@{image.digest}" in pulled["RepoDigests"]  # the manifest pushed
        container = docker(env, "run", "--detach", "--network", "host", reference).strip()
        try:
            records = [{k: v for k, v in doc.items() if k != "_id"} for doc in subscribers(20, seed=11)]
            records = json.loads(json.dumps(records, default=str))
            request = urllib.request.Request(
                f"http://127.0.0.1:{port}/predict",
                data=json.dumps(records).encode(),
                headers={"Content-Type": "application/json"},
            )
            deadline, answer = time.monotonic() + 60, None
            while answer is None:
                try:
                    with urllib.request.urlopen(request, timeout=5) as response:
                        answer = json.load(response)
                except OSError:
                    if time.monotonic() > deadline:
                        raise AssertionError(docker(env, "logs", container)) from None
                    time.sleep(0.5)
            assert answer["predictions"] == open_model(inputs["onnx"]).predict(records)
        finally:
            docker(env, "rm", "--force", container)
    finally:
        docker(env, "rmi", reference)
