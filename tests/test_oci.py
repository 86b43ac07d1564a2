"""The image with no engine (package/oci.py): reproducible layout and archive, checked bases, docker load."""

from __future__ import annotations

import dataclasses
import gzip
import json
import os
import subprocess
import sys
import tarfile
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from mlpack.artifacts.oci import build_oci_image
from mlpack.artifacts.oci_base import canonical, digest_of, load_base
from mlpack.artifacts.oci_deps import DEPENDENCY_EPOCH
from mlpack.artifacts.read import open_model
from mlpack.config import ImageSection
from mlpack.errors import ConfigError
from mlpack.source.embedded import free_port
from tests.helpers.cli import assert_clean_error
from tests.helpers.documents import subscribers
from tests.helpers.oci_layouts import (
    EPOCH,
    base_config,
    image_from,
    tiny_base_layer,
    tree_bytes,
    with_local_base,
    write_archive_base,
    write_oci_base,
)
from tests.helpers.projects import Project

SCRIPT = """
import json, sys
from pathlib import Path
from mlpack.config import ImageSection
from mlpack.artifacts.oci import build_oci_image
args = json.loads(Path(sys.argv[1]).read_text())
image = build_oci_image(
    Path(args["out"]), stem="churn-model-1.0.0", tag="churn-model:1.0.0", wheel=Path(args["wheel"]),
    metadata=args["metadata"], section=ImageSection(base=args["base"]), revision="",
    epoch=args["epoch"], project_dir=Path(args["project"]), deps=Path(args["deps"]),
)
print(image.digest)
"""


def build_in_process(folder: Path, inputs: dict[str, Any], base: str, seed: str) -> str:
    """One build in its own process and folder (the wheel copied there), with its own PYTHONHASHSEED."""
    folder.mkdir()
    wheel = folder / inputs["wheel"].name
    wheel.write_bytes(inputs["wheel"].read_bytes())
    args = {
        "out": str(folder),
        "wheel": str(wheel),
        "metadata": inputs["metadata"],
        "base": base,
        "epoch": EPOCH,
        "project": str(inputs["oci"].parent),
        "deps": str(inputs["deps"]),
    }
    (folder / "args.json").write_text(json.dumps(args))
    env = {**os.environ, "PYTHONHASHSEED": seed, "SOURCE_DATE_EPOCH": str(EPOCH)}
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT, folder / "args.json"], capture_output=True, text=True, env=env, check=False
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def test_two_processes_and_folders_give_the_same_manifest_digest(inputs: dict[str, Any], tmp_path: Path) -> None:
    first = build_in_process(tmp_path / "one", inputs, "oci:base.oci", "1")
    second = build_in_process(tmp_path / "two", inputs, "oci:base.oci", "2")
    assert first == second and first.startswith("sha256:")
    one, two = tmp_path / "one" / "churn-model-1.0.0.oci", tmp_path / "two" / "churn-model-1.0.0.oci"
    assert tree_bytes(one) == tree_bytes(two)  # the layout, byte for byte
    archives = [tmp_path / name / "churn-model-1.0.0.image.tar" for name in ("one", "two")]
    assert archives[0].read_bytes() == archives[1].read_bytes()
    index = json.loads((one / "index.json").read_bytes())
    assert index["manifests"][0]["digest"] == first
    assert digest_of((one / "blobs" / "sha256" / first[7:]).read_bytes()) == first
    # The same base as a `docker save` archive makes the same image.
    assert build_in_process(tmp_path / "three", inputs, f"docker-archive:{inputs['archive']}", "3") == first


def test_the_layer_and_config_hold_what_the_dockerfile_says(inputs: dict[str, Any], tmp_path: Path) -> None:
    section = ImageSection(base=f"oci:{inputs['oci']}", port=9090)
    image = build_oci_image(
        tmp_path,
        stem="m-1.0.0",
        tag="m:1.0.0",
        wheel=inputs["wheel"],
        metadata=inputs["metadata"],
        section=section,
        revision="abc",
        epoch=EPOCH,
        deps=inputs["deps"],
    )
    blobs = image.layout / "blobs" / "sha256"
    manifest = json.loads((blobs / image.digest[7:]).read_bytes())
    config_bytes = (blobs / manifest["config"]["digest"][7:]).read_bytes()
    assert canonical(json.loads(config_bytes)) == config_bytes  # canonical JSON
    config = json.loads(config_bytes)
    runtime = config["config"]
    assert runtime["User"] == "65532:65532" and "9090/tcp" in runtime["ExposedPorts"]
    assert runtime["Entrypoint"] == ["python3", "-m", inputs["metadata"]["import_name"], "serve"]
    assert "Cmd" not in runtime and "LANG=C.UTF-8" in runtime["Env"]
    assert "PYTHONPATH=/opt/model/site:/opt/model/deps" in runtime["Env"]
    assert "9090/healthz" in runtime["Healthcheck"]["Test"][-1]
    assert runtime["Labels"]["org.opencontainers.image.revision"] == "abc"
    assert json.loads(runtime["Labels"]["io.mlpack.metadata"])["version"] == inputs["metadata"]["version"]
    assert config["created"] == "2026-01-01T00:00:00Z" and len(config["rootfs"]["diff_ids"]) == 3
    assert len(config["history"]) == 3
    import_name = inputs["metadata"]["import_name"]
    members = {}
    for descriptor, diff_id, folder in zip(manifest["layers"][1:], config["rootfs"]["diff_ids"][1:], ("deps", "site")):
        layer = blobs / descriptor["digest"][7:]
        assert layer.read_bytes()[:10] == b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\xff"  # gzip: mtime 0, no name
        with gzip.open(layer) as plain:
            assert digest_of(plain.read()) == diff_id
        with tarfile.open(layer) as tar:
            members[folder] = tar.getmembers()
        names = [m.name for m in members[folder]]
        assert names == sorted(names, key=lambda n: n.encode()) and names[:3] == [
            "opt",
            "opt/model",
            f"opt/model/{folder}",
        ]
        mtime = DEPENDENCY_EPOCH if folder == "deps" else EPOCH  # the dependencies' do not depend on the build
        assert {(m.uid, m.gid, m.uname, m.gname, m.mtime) for m in members[folder]} == {(0, 0, "", "", mtime)}
        assert {m.mode for m in members[folder]} <= {0o755, 0o644, 0o777}
        assert not [n for n in names if n.endswith(".pyc") or "__pycache__" in n or "/bin/" in n]
        assert not [n for n in names if n.endswith("direct_url.json")]
    deps, site = ([m.name for m in members[folder]] for folder in ("deps", "site"))
    # The dependencies in one layer, the model alone in the next: a retrained model shares the first.
    assert any(n.startswith("opt/model/deps/onnxruntime/") for n in deps) and any("/numpy/" in n for n in deps)
    assert not [n for n in deps if import_name in n]
    assert any(n.startswith(f"opt/model/site/{import_name}/") for n in site)
    assert not [n for n in site if n.startswith(("opt/model/site/onnxruntime", "opt/model/site/numpy"))]
    assert image.dependency_layer.digest == manifest["layers"][1]["digest"] == image.dependency_layer.digest
    with tarfile.open(image.archive) as archive:
        listed = json.loads(archive.extractfile("manifest.json").read())  # type: ignore[union-attr]
    assert listed[0]["RepoTags"] == ["m:1.0.0"] and len(listed[0]["Layers"]) == 3


def test_the_dependency_layer_is_made_once_and_checked_when_reused(
    inputs: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A second build (another model version, another time) takes the cached layer; a changed one is remade."""
    monkeypatch.setenv("MLPACK_CACHE_DIR", str(tmp_path / "cache"))
    section = ImageSection(base=f"oci:{inputs['oci']}", python="3.11")

    def build(name: str, epoch: int) -> Any:
        (tmp_path / name).mkdir()
        return image_from(tmp_path / name, inputs, section, epoch=epoch)

    first = build("one", EPOCH)
    (entry,) = (tmp_path / "cache" / "layers").iterdir()
    second = build("two", EPOCH + 86400)  # a day later: a new model layer, the same dependency layer
    assert not first.dependency_cached and second.dependency_cached
    assert second.dependency_layer.digest == first.dependency_layer.digest and second.digest != first.digest
    blob = tmp_path / "cache" / "blobs" / "sha256" / first.dependency_layer.digest[7:]
    blob.write_bytes(blob.read_bytes()[:-1] + b"\0")
    third = build("three", EPOCH)
    assert not third.dependency_cached and third.digest == first.digest  # remade, not taken
    assert build("four", EPOCH).dependency_cached and entry.is_file()  # and the cache mended


def test_a_tampered_or_missing_base_is_refused(inputs: dict[str, Any], tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load_base("oci:nowhere.oci", tmp_path)
    layer = tiny_base_layer(tmp_path)
    oci = write_oci_base(tmp_path / "bad.oci", layer, base_config([digest_of(layer)]))
    blob = oci / "blobs" / "sha256" / digest_of(layer)[7:]
    changed = bytearray(blob.read_bytes())
    changed[600] ^= 1
    blob.write_bytes(bytes(changed))
    with pytest.raises(ConfigError, match="does not match its digest"):
        load_base(f"oci:{oci}")
    archive = write_archive_base(tmp_path / "bad.tar", bytes(changed), base_config([digest_of(layer)]))
    with pytest.raises(ConfigError, match="does not match its diff_id"):
        load_base(f"docker-archive:{archive}")
    (tmp_path / "junk.tar").write_bytes(b"not a tar")
    with pytest.raises(ConfigError, match="is not a readable image"):
        load_base(f"docker-archive:{tmp_path / 'junk.tar'}")


def test_mlpack_build_writes_the_image_with_no_engine(
    churn_project: Project, run, inputs: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SOURCE_DATE_EPOCH", str(EPOCH))
    monkeypatch.setenv("DOCKER_HOST", "unix:///nonexistent.sock")  # no engine is asked
    with_local_base(churn_project, f"oci:{inputs['oci']}")
    result = run("build", churn_project.path, "--image", "--json")
    assert result.code == 0, result.err
    image = json.loads(result.out)["image"]
    dist = churn_project.path / "dist"
    assert image["built"] and image["engine"] is False and image["digest"].startswith("sha256:")
    assert image["layout"] == "churn-model-1.0.0.oci" and (dist / "churn-model-1.0.0.image.tar").is_file()
    index = json.loads((dist / "churn-model-1.0.0.oci" / "index.json").read_bytes())
    assert index["manifests"][0]["digest"] == image["digest"]
    assert json.loads((dist / "churn-model-1.0.0.json").read_text())["image"] == image
    assert image["base"] == {"reference": f"oci:{inputs['oci']}", "from": "oci"} and image["loaded"] is False

    # A retrained model: a new model layer on the very same dependency layer (what a registry already holds).
    churn_project.edit('version = "1.0.0"', 'version = "1.0.1"')
    retrained = run("build", churn_project.path, "--image", "--json")
    assert retrained.code == 0, retrained.err
    again = json.loads(retrained.out)["image"]
    assert again["dependency_layer"]["digest"] == image["dependency_layer"]["digest"]
    assert again["dependency_layer"]["cached"] is True  # made by the first build, taken from the cache
    assert again["model_layer"]["digest"] != image["model_layer"]["digest"] and again["digest"] != image["digest"]


def test_mlpack_build_with_a_missing_base_exits_2_in_one_line(churn_project: Project, run) -> None:
    with_local_base(churn_project, "docker-archive:missing.tar")
    result = run("build", churn_project.path, "--image")
    assert_clean_error(result, 2, "missing.tar does not exist")
    assert len(result.err.strip().splitlines()) == 1, result.err


# -- a real engine: docker load, then run ------------------------------------------------------------
def docker(env: dict[str, str], *args: str | Path, timeout: float = 300) -> str:
    done = subprocess.run(
        ["docker", *map(str, args)], capture_output=True, text=True, timeout=timeout, env={**os.environ, **env}
    )
    assert done.returncode == 0, (args, done.stderr[-2000:])
    return done.stdout


def test_docker_loads_and_runs_the_image(inputs: dict[str, Any], engine: dict[str, str], tmp_path: Path) -> None:
    base = tmp_path / "python.tar"
    docker(engine, "save", "--output", base, "python:3.11-slim")
    port = free_port()
    image = image_from(
        tmp_path,
        inputs,
        dataclasses.replace(ImageSection(base=f"docker-archive:{base}", port=port), python="3.11"),
        stem="churn-model-9.9.9",
        tag="churn-model-oci:9.9.9",
    )
    assert "churn-model-oci:9.9.9" in docker(engine, "load", "--input", image.archive)
    container = docker(engine, "run", "--detach", "--network", "host", "churn-model-oci:9.9.9").strip()
    try:
        deadline, answer = time.monotonic() + 60, None
        while answer is None and time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as response:
                    answer = json.load(response)
            except OSError:
                time.sleep(0.5)
        assert answer == {"status": "ok"}, docker(engine, "logs", container)
        # A prediction runs a session: onnxruntime and numpy from the pruned dependency layer (oci_prune.py).
        records = json.loads(
            json.dumps([{k: v for k, v in d.items() if k != "_id"} for d in subscribers(20)], default=str)
        )
        request = urllib.request.Request(
            f"http://127.0.0.1:{port}/predict",
            data=json.dumps(records).encode(),
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            assert json.load(response)["predictions"] == open_model(inputs["onnx"]).predict(records)
        uid = docker(engine, "exec", container, "python3", "-c", "import os; print(os.getuid())").strip()
        assert uid == "65532"
    finally:
        docker(engine, "rm", "--force", container)
        docker(engine, "rmi", "churn-model-oci:9.9.9")
