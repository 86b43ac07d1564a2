"""The model image on a real Docker engine: build, run, labels, health, offline rebuild, layers."""

from __future__ import annotations

import json
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from pymongo import MongoClient

from mlpack.artifacts.read import open_model
from mlpack.source.embedded import free_port
from tests.helpers.cli import assert_clean_error
from tests.helpers.documents import subscribers
from tests.helpers.images import docker, image_inspect
from tests.helpers.projects import Project

RECORD = subscribers(3, seed=21, absent=False)


def with_image_section(project: Project, port: int = 8080, builder: str = "") -> None:
    """An image on the engine's python:3.11-slim: written by mlpack (the default), or `docker build`."""
    text = project.config.read_text() + f'\n[image]\nbase = "python:3.11-slim"\nport = {port}\n'
    project.config.write_text(text + (f'builder = "{builder}"\n' if builder else ""))


def wait_healthy(container: str, timeout: float = 60) -> str:
    deadline = time.monotonic() + timeout
    status = ""
    while time.monotonic() < deadline:
        status = docker("inspect", "--format", "{{.State.Health.Status}}", container).stdout.strip()
        if status == "healthy":
            return status
        time.sleep(1)
    return status


def test_image_builds_runs_and_describes_itself(
    churn_project: Project, run, docker_env: dict[str, str], mongo_client: MongoClient[Any], tmp_path: Path
) -> None:
    """builder = "docker": the context's Dockerfile built on the engine (the default is tested below)."""
    port = free_port()
    with_image_section(churn_project, port, builder="docker")
    result = run("build", churn_project.path, "--image", "--json")
    assert result.code == 0, result.err
    report = json.loads(result.out)
    image = report["image"]
    assert image["built"] and image["tag"] == "churn-model:1.0.0" and image["id"].startswith("sha256:")
    assert report["timings"]["stages"]["image"] > 0  # the engine's build is a timed stage (issue #10)
    on_disk = json.loads((churn_project.path / "dist" / "churn-model-1.0.0.json").read_text())
    assert on_disk["timings"] == report["timings"] and on_disk["image"] == image
    context = churn_project.path / "dist" / "churn-model-1.0.0.docker"
    dockerfile = (context / "Dockerfile").read_text()
    assert "USER 65532:65532" in dockerfile and f"EXPOSE {port}" in dockerfile and "HEALTHCHECK" in dockerfile
    assert dockerfile.index("COPY --from=deps") < dockerfile.index("COPY model/ /")  # dependencies before the model
    assert {p.name.split("-")[0].lower() for p in (context / "deps").glob("*.whl")} >= {"onnxruntime", "numpy"}
    assert report["artifacts"]["docker"]["dependencies"]["onnxruntime"] == report["versions"]["onnxruntime"]
    assert json.loads((churn_project.path / "dist" / "churn-model-1.0.0.json").read_text())["image"] == image
    record = mongo_client[churn_project.database]["mlpack_models"].find_one({"version": "1.0.0"})
    assert record["image"]["id"] == image["id"]

    details = image_inspect("churn-model:1.0.0")
    labels = details["Config"]["Labels"]
    assert labels["org.opencontainers.image.title"] == "churn-model"
    assert labels["org.opencontainers.image.version"] == "1.0.0"
    assert labels["org.opencontainers.image.created"] == "2026-01-01T00:00:00Z"
    assert labels["org.opencontainers.image.description"] == "Which subscribers will cancel next month"
    assert "org.opencontainers.image.revision" in labels
    assert json.loads(labels["io.mlpack.metadata"])["data"]["sha256"] == report["data"]["sha256"]
    assert details["Config"]["User"] == "65532:65532"
    assert f"{port}/tcp" in details["Config"]["ExposedPorts"]

    # mlpack inspect reads the labels back, from the engine and from a `docker save` archive.
    inspected = run("inspect", "churn-model:1.0.0", "--json")
    assert inspected.code == 0, inspected.err
    assert json.loads(inspected.out)["version"] == "1.0.0"
    archive = tmp_path / "image.tar"
    docker("save", "--output", archive, "churn-model:1.0.0")
    assert json.loads(run("inspect", archive, "--json").out)["name"] == "churn-model"

    container = docker("run", "--detach", "--network", "host", "churn-model:1.0.0").stdout.strip()
    try:
        assert wait_healthy(container) == "healthy"
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=5) as answer:
            assert json.load(answer) == {"status": "ok"}
        request = urllib.request.Request(
            f"http://127.0.0.1:{port}/predict",
            data=json.dumps(RECORD).encode(),
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=10) as answer:
            predictions = json.load(answer)["predictions"]
        assert predictions == open_model(churn_project.path / "dist" / "churn-model-1.0.0.onnx").predict(RECORD)
        uid = docker("exec", container, "/opt/model/bin/python", "-c", "import os; print(os.getuid())").stdout.strip()
        assert uid == "65532"
        leftovers = docker(
            "exec",
            container,
            "/opt/model/bin/python",
            "-c",
            "import pathlib; print(sum(1 for p in pathlib.Path('/opt').rglob('*.pyc')),"
            " any(pathlib.Path('/opt/model/bin').glob('pip*')))",
        ).stdout.split()
        assert leftovers == ["0", "False"]  # no bytecode churn, no pip in the runtime image
    finally:
        docker("stop", "--time", "20", container)
        exit_code = docker("inspect", "--format", "{{.State.ExitCode}}", container).stdout.strip()
        docker("rm", container)
    assert exit_code == "0"  # SIGTERM drains and exits cleanly

    # The context builds again with no network and no cache, into the very same layers.
    rebuilt = docker("build", "--network", "none", "--no-cache", "--tag", "churn-model:rebuilt", context, timeout=600)
    assert rebuilt.returncode == 0
    assert image_inspect("churn-model:rebuilt")["RootFS"]["Layers"] == details["RootFS"]["Layers"]


def test_retrain_reuses_the_dependency_layer(
    churn_project: Project, run, docker_env: dict[str, str], mongo_client: MongoClient[Any]
) -> None:
    with_image_section(churn_project)
    assert run("build", churn_project.path, "--image", "-q").code == 0
    first = image_inspect("churn-model:1.0.0")["RootFS"]["Layers"]
    new_rows = [{**d, "_id": 5000 + i} for i, d in enumerate(subscribers(40, seed=99, absent=False))]
    mongo_client[churn_project.database]["customers"].insert_many(new_rows)  # the retrain sees more data
    churn_project.edit('version = "1.0.0"', 'version = "1.1.0"')
    result = run("build", churn_project.path, "--image", "--json")
    assert result.code == 0, result.err
    second = image_inspect("churn-model:1.1.0")["RootFS"]["Layers"]
    image = json.loads(result.out)["image"]  # the default: written by mlpack on the engine's base, loaded there
    assert image["engine"] is False and image["base"]["from"] == "engine" and image["loaded"] is True
    assert len(first) == len(second)
    assert first[:-1] == second[:-1]  # base and dependencies reused
    assert first[-1] != second[-1]  # only the model layer is new


def test_no_engine_with_image_demanded_exits_3_and_keeps_the_context(
    churn_project: Project, run, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    with_image_section(churn_project, builder="docker")
    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path / 'nothing.sock'}")
    result = run("build", churn_project.path, "--image")
    assert_clean_error(result, 3, "no Docker engine answers", "churn-model-1.0.0.docker")
    assert (churn_project.path / "dist" / "churn-model-1.0.0.docker" / "Dockerfile").is_file()
    assert (churn_project.path / "dist" / "churn_model-1.0.0-py3-none-any.whl").is_file()


def test_no_base_with_image_demanded_exits_3_and_keeps_the_context(
    churn_project: Project, run, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """The default builder needs no engine, but its base: with neither an engine nor Docker Hub here, exit 3."""
    with_image_section(churn_project)
    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path / 'nothing.sock'}")
    result = run("build", churn_project.path, "--image")
    assert_clean_error(result, 3, "registry-1.docker.io", "churn-model-1.0.0.docker")
    assert (churn_project.path / "dist" / "churn-model-1.0.0.docker" / "Dockerfile").is_file()
    assert (churn_project.path / "dist" / "churn_model-1.0.0-py3-none-any.whl").is_file()


def test_no_engine_without_the_flag_builds_the_rest_and_says_so(
    churn_project: Project, run, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    with_image_section(churn_project)
    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path / 'nothing.sock'}")
    result = run("build", churn_project.path)
    assert result.code == 0, result.err
    assert "the registry registry-1.docker.io is unreachable" in result.out and "image not built" in result.out
    assert "could not be read; name a reachable registry, an OCI layout or a `docker save` archive" in result.out
    report = json.loads((churn_project.path / "dist" / "churn-model-1.0.0.json").read_text())
    assert report["image"]["built"] is False
    assert run("build", churn_project.path, "--no-image", "--version", "1.0.1", "-q").code == 0
    assert not (churn_project.path / "dist" / "churn-model-1.0.1.docker").exists()


def test_context_from_a_local_wheelhouse_needs_no_package_index(
    churn_project: Project, run, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """[image].find_links: the whole build, image context included, works with the index unreachable."""
    with_image_section(churn_project)
    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path / 'nothing.sock'}")
    assert run("build", churn_project.path, "-q").code == 0
    wheelhouse = churn_project.path / "wheelhouse"
    (churn_project.path / "dist" / "churn-model-1.0.0.docker" / "deps").rename(wheelhouse)
    churn_project.edit("port = 8080", 'port = 8080\nfind_links = "wheelhouse"')
    churn_project.edit('version = "1.0.0"', 'version = "1.0.1"')
    monkeypatch.setenv("PIP_INDEX_URL", "http://127.0.0.1:9/simple/")  # nothing listens there
    result = run("build", churn_project.path, "--json")
    assert result.code == 0, result.err
    deps = churn_project.path / "dist" / "churn-model-1.0.1.docker" / "deps"
    assert sorted(p.name for p in deps.glob("*.whl")) == sorted(p.name for p in wheelhouse.glob("*.whl"))


def test_the_image_runs_as_the_manifest_asks(
    churn_project: Project,
    run,
    docker_env: dict[str, str],
    tmp_path: Path,
) -> None:
    """`mlpack k8s`'s Deployment, obeyed by the real engine: read-only root, the image's own non-root
    user, no capabilities, no new privileges, a tmpfs at /tmp."""
    from tests.helpers.k8s import k8s_documents

    port = free_port()
    with_image_section(churn_project, port)
    built = run("build", churn_project.path, "--image", "--json")
    assert built.code == 0, built.err
    wheel = churn_project.path / "dist" / "churn_model-1.0.0-py3-none-any.whl"
    (deployment, *_) = k8s_documents(run, wheel, "--port", str(port))
    pod = deployment["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    security = container["securityContext"]
    tmpfs = f"/tmp:rw,noexec,nosuid,size={pod['volumes'][0]['emptyDir']['sizeLimit'].removesuffix('Mi')}m"
    env = [arg for item in container["env"] for arg in ("--env", f"{item['name']}={item['value']}")]
    hardening = [
        "--read-only",
        "--user", f"{security['runAsUser']}:{security['runAsGroup']}",
        "--cap-drop", "ALL", "--security-opt", "no-new-privileges",
        *env,
    ]  # fmt: skip
    name = f"mlpack-k8s-{port}"
    docker("run", "--detach", "--name", name, "--network", "host", "--tmpfs", tmpfs, *hardening, container["image"])
    try:
        _answers_probes_and_predictions(name, port, container)
        uid = docker("exec", name, "python3", "-c", "import os; print(os.getuid())").stdout.strip()
        assert uid == "65532"
        # Nothing but the tmpfs is writable: the root refuses a write, /tmp takes one.
        denied = docker("exec", name, "python3", "-c", "open('/opt/x', 'w')", check=False)
        assert denied.returncode != 0 and "Read-only file system" in denied.stderr
        docker("exec", name, "python3", "-c", "open('/tmp/x', 'w').write('ok')")
    finally:
        docker("rm", "--force", name, check=False)

    # The server itself writes nothing at all: it runs with no writable path (the tmpfs is a margin).
    docker("run", "--detach", "--name", name, "--network", "host", *hardening, container["image"])
    try:
        _answers_probes_and_predictions(name, port, container)
        assert docker("inspect", "--format", "{{.State.Running}}", name).stdout.strip() == "true"
    finally:
        docker("rm", "--force", name, check=False)


def _answers_probes_and_predictions(name: str, port: int, container: dict[str, Any]) -> None:
    assert wait_healthy(name) == "healthy", docker("logs", name, check=False).stderr
    for probe in ("livenessProbe", "readinessProbe"):
        path = container[probe]["httpGet"]["path"]
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as answer:
            assert answer.status == 200
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/predict",
        data=json.dumps(subscribers(1, seed=5, absent=False)[0]).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=10) as answer:
        assert json.load(answer)["predictions"][0] in ("churned", "stayed")
