"""The image's dependency layer leaves out what the model's runtime never loads (artifacts/oci_prune.py),
says so, and the model still predicts from it exactly as the wheel does."""

from __future__ import annotations

import base64
import csv
import hashlib
import json
import os
import platform
import subprocess
import sys
import tarfile
from pathlib import Path
from typing import Any

import pytest

from mlpack.artifacts.oci import build_oci_image
from mlpack.artifacts.oci_prune import RULES
from mlpack.config import ImageSection
from tests.helpers.documents import subscribers
from tests.helpers.http_client import ServerProcess
from tests.helpers.oci_layouts import EPOCH

GONE = (
    "onnxruntime/capi/libonnxruntime.so.",  # 35 MB: the C API library
    "onnxruntime/tools/",
    "onnxruntime/quantization/",
    "onnxruntime/transformers/",
    "numpy/f2py/",
    "numpy/_core/include/",
    "numpy/_core/tests/",
)


@pytest.fixture(scope="module")
def unpacked(inputs: dict[str, Any], tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """An image built on the tiny base, and its two layers unpacked as a container would see them."""
    root = tmp_path_factory.mktemp("pruned")
    image = build_oci_image(
        root,
        stem="m-1.0.0",
        tag="m:1.0.0",
        wheel=inputs["wheel"],
        metadata=inputs["metadata"],
        section=ImageSection(base=f"oci:{inputs['oci']}", python="3.11"),
        revision="",
        epoch=EPOCH,
        deps=inputs["deps"],
    )
    files = root / "rootfs"
    for layer in (image.dependency_layer, image.layer):
        with tarfile.open(image.layout / "blobs" / "sha256" / layer.digest[7:]) as tar:
            tar.extractall(files, filter="data")
    return {"image": image, "root": files, "deps": files / "opt/model/deps", "site": files / "opt/model/site"}


def record_rows(record: Path) -> list[list[str]]:
    return list(csv.reader(record.read_text(encoding="utf-8").splitlines()))


def test_the_layer_leaves_out_the_tools_tests_and_c_library_and_records_stay_true(unpacked: dict[str, Any]) -> None:
    deps: Path = unpacked["deps"]
    present = {p.relative_to(deps).as_posix() for p in deps.rglob("*") if p.is_file()}
    assert "onnxruntime/capi/onnxruntime_pybind11_state.cpython-311-x86_64-linux-gnu.so" in present
    assert "numpy/_core/_multiarray_umath.cpython-311-x86_64-linux-gnu.so" in present
    assert not [p for p in present if p.startswith(GONE) or p.endswith((".pyi", ".pxd")) or "/tests/" in p]
    for name in RULES:
        (dist_info,) = deps.glob(f"{name}-*.dist-info")
        note = json.loads((dist_info / "PRUNED.json").read_bytes())
        assert note["by"] == "mlpack" and note["rules"] == list(RULES[name][0]) and note["files"]
        assert not set(note["files"]) & present  # what it lists as taken out is not there
        rows = record_rows(dist_info / "RECORD")
        listed = {row[0] for row in rows}
        assert not set(note["files"]) & listed  # nor in RECORD
        # RECORD lists what is there, PRUNED.json included, each with its hash and size.
        for path, digest, size in rows:
            if path.endswith("/RECORD"):
                continue
            data = (deps / path).read_bytes()
            expected = "sha256=" + base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
            assert (digest, int(size)) == (expected, len(data)), path
        assert f"{dist_info.name}/PRUNED.json" in listed
        top = name.replace("-", "_")
        assert {p for p in present if p.startswith(f"{top}/")} <= listed  # every file of the package is in RECORD
    image = unpacked["image"]
    blobs = image.layout / "blobs" / "sha256"
    manifest = json.loads((blobs / image.digest[7:]).read_bytes())
    labels = json.loads((blobs / manifest["config"]["digest"][7:]).read_bytes())["config"]["Labels"]
    assert json.loads(labels["io.mlpack.pruned"])["onnxruntime"]["patterns"][0] == "onnxruntime/capi/libonnxruntime.so*"


@pytest.mark.skipif(
    sys.version_info[:2] != (3, 11) or platform.machine() != "x86_64",
    reason="the layers hold CPython 3.11 extension modules for x86_64 (the image's platform), run here",
)
def test_the_model_predicts_from_the_pruned_layers_as_the_wheel_does(
    unpacked: dict[str, Any], inputs: dict[str, Any], tmp_path: Path
) -> None:
    """The image's own Python path (site, then the pruned deps), and nothing of this machine's site-packages."""
    records = tmp_path / "records.jsonl"
    rows = [{k: v for k, v in doc.items() if k != "_id"} for doc in subscribers(40, seed=7)]
    records.write_text("".join(json.dumps(row, default=str) + "\n" for row in rows), encoding="utf-8")
    module = inputs["metadata"]["import_name"]

    def predict(python_path: str, *isolation: str) -> str:
        env = {"PATH": os.environ["PATH"], "PYTHONPATH": python_path, "PYTHONDONTWRITEBYTECODE": "1"}
        command = [sys.executable, *isolation, "-m", module, "predict", "--input", str(records)]
        done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=120, check=False)
        assert done.returncode == 0, done.stderr[-2000:]
        return done.stdout

    from_image = predict(f"{unpacked['site']}{os.pathsep}{unpacked['deps']}", "-S")
    wheel = predict(str(unpacked["site"]))  # this environment's own, unpruned numpy and onnxruntime
    assert from_image == wheel and len(from_image.splitlines()) == 40


@pytest.mark.skipif(
    sys.version_info[:2] != (3, 11) or platform.machine() != "x86_64",
    reason="the layers hold CPython 3.11 extension modules for x86_64 (the image's platform), run here",
)
def test_the_images_server_writes_its_inference_log_from_the_layers_alone(
    unpacked: dict[str, Any], inputs: dict[str, Any], mongo_uri: str, mongo_client: Any, database_name: str
) -> None:
    """The image's entrypoint with MLPACK_INFERENCE_LOG_URI set, as a deployment sets it (`mlpack k8s` requires
    it for a model whose [serve].inference_log is on): its pymongo comes from the dependency layer. Without it
    the container stopped at start: `error: inference logging needs pymongo: pip install 'MODEL[serve]'`."""
    assert {p.name.split("-")[0] for p in unpacked["deps"].glob("*.dist-info")} >= {"pymongo", "dnspython"}
    module = inputs["metadata"]["import_name"]
    env = {
        "PYTHONPATH": f"{unpacked['site']}{os.pathsep}{unpacked['deps']}",
        "PYTHONDONTWRITEBYTECODE": "1",
        "MLPACK_INFERENCE_LOG_URI": mongo_uri,
        "MLPACK_INFERENCE_LOG_DB": database_name,
    }
    server = ServerProcess([sys.executable, "-S", "-m", module, "serve"], env=env)  # -S: no site-packages here
    try:
        rows = [{k: v for k, v in doc.items() if k != "_id"} for doc in subscribers(5, seed=3)]
        assert server.request("POST", "/predict", rows).status == 200
    finally:
        assert server.stop() == 0  # SIGTERM flushes the log
    (logged,) = mongo_client[database_name]["inference_log"].find()
    assert logged["route"] == "/predict" and len(logged["inputs"]) == len(logged["predictions"]) == 5
