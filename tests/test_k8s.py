"""`mlpack k8s`: manifests that validate against the Kubernetes schemas (kubernetes-validate --strict,
offline), sized from a measured server. That the image runs the way they ask (its own non-root user,
read-only root, a tmpfs at /tmp) is tested in the real Docker engine, in tests/test_image.py.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from mlpack.deploy.footprint import Footprint
from mlpack.deploy.k8s import K8sOptions, image_tag_warning, manifests, secrets_read
from tests.helpers.cli import assert_clean_error
from tests.helpers.k8s import k8s_documents

VALIDATOR = Path(sys.executable).with_name("kubernetes-validate")


def validate(tmp_path: Path, documents: list[dict[str, Any]] | str, name: str = "manifests.yaml") -> str:
    """kubernetes-validate --strict on the text; returns its output, raises with it on failure."""
    path = tmp_path / name
    path.write_text(documents if isinstance(documents, str) else json.dumps(documents[0]), encoding="utf-8")
    result = subprocess.run(
        [str(VALIDATOR), "--strict", str(path)], capture_output=True, text=True, timeout=120, check=False
    )
    if result.returncode != 0:
        raise AssertionError(result.stdout + result.stderr)
    return result.stdout + result.stderr


@pytest.fixture(scope="module")
def wheel(built_model: Any) -> Path:
    return Path(built_model.artifacts["wheel"])


def test_manifests_validate_strictly_and_carry_the_hardening(wheel: Path, run, tmp_path: Path) -> None:
    text = run("k8s", wheel, "--replicas", "3", "--namespace", "models")
    assert text.code == 0, text.err
    assert "sized from a measured server" in text.err
    report = validate(tmp_path, text.out)
    for kind in ("deployment", "service", "horizontalpodautoscaler", "poddisruptionbudget"):
        assert f"passed for resource {kind}/test-model" in report, report

    documents = k8s_documents(run, wheel, "--replicas", "3", "--namespace", "models", "--image", "reg.io/m:1")
    kinds = [d["kind"] for d in documents]
    assert kinds == ["Deployment", "Service", "HorizontalPodAutoscaler", "PodDisruptionBudget"]
    assert all(d["metadata"]["namespace"] == "models" for d in documents)
    deployment, service, autoscaler, budget = documents
    assert deployment["spec"]["replicas"] == 3
    pod = deployment["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert container["image"] == "reg.io/m:1"
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["securityContext"] == {
        "runAsNonRoot": True,
        "runAsUser": 65532,
        "runAsGroup": 65532,
        "readOnlyRootFilesystem": True,
        "allowPrivilegeEscalation": False,
        "capabilities": {"drop": ["ALL"]},
        "seccompProfile": {"type": "RuntimeDefault"},
    }
    assert pod["securityContext"]["runAsNonRoot"] is True and pod["automountServiceAccountToken"] is False
    assert container["volumeMounts"] == [{"name": "tmp", "mountPath": "/tmp"}]
    assert pod["volumes"][0]["emptyDir"]["medium"] == "Memory"

    # Memory is sized from the measurement the annotations record: request above resident, limit above peak.
    notes = deployment["metadata"]["annotations"]
    rss, peak = int(notes["mlpack.io/measured-rss-bytes"]), int(notes["mlpack.io/measured-peak-bytes"])
    assert 20 * 2**20 < rss <= peak < 1024 * 2**20  # a Python process with numpy and onnxruntime loaded
    assert int(notes["mlpack.io/model-bytes"]) == len(_model_bytes(wheel))
    request = int(container["resources"]["requests"]["memory"].removesuffix("Mi")) * 2**20
    limit = int(container["resources"]["limits"]["memory"].removesuffix("Mi")) * 2**20
    assert rss < request < limit and peak < limit

    assert service["spec"]["selector"] == deployment["spec"]["selector"]["matchLabels"]
    assert service["spec"]["ports"][0]["targetPort"] == "http"
    assert autoscaler["spec"]["minReplicas"] == 3 and autoscaler["spec"]["maxReplicas"] == 12
    assert autoscaler["spec"]["scaleTargetRef"]["name"] == deployment["metadata"]["name"]
    assert budget["spec"]["selector"] == deployment["spec"]["selector"]

    # The validator is strict: the same Deployment with one misspelt field fails.
    container["readOnlyRootFileSystem"] = True
    with pytest.raises(AssertionError, match="readOnlyRootFileSystem"):
        validate(tmp_path, [deployment], "broken.json")


def _model_bytes(wheel: Path) -> bytes:
    import zipfile

    with zipfile.ZipFile(wheel) as archive:
        return archive.read("test_model/model.onnx")


def test_kserve_inference_service_speaks_v2(wheel: Path, run, tmp_path: Path) -> None:
    runtime, service = k8s_documents(run, wheel, "--kserve", "--replicas", "1")
    assert service["apiVersion"] == "serving.kserve.io/v1beta1" and service["kind"] == "InferenceService"
    predictor = service["spec"]["predictor"]
    assert predictor["model"]["protocolVersion"] == "v2" and predictor["minReplicas"] == 1
    assert runtime["kind"] == "ServingRuntime" and runtime["metadata"]["name"] == predictor["model"]["runtime"]
    assert runtime["spec"]["protocolVersions"] == ["v2"]
    assert predictor["model"]["modelFormat"]["name"] in [f["name"] for f in runtime["spec"]["supportedModelFormats"]]
    (container,) = runtime["spec"]["containers"]
    assert container["name"] == "kserve-container" and container["securityContext"]["readOnlyRootFilesystem"]
    # KServe's CRDs are not in the Kubernetes schemas: the runtime's pod part is checked as the Pod it becomes.
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "kserve-check"},
        "spec": {k: runtime["spec"][k] for k in ("containers", "volumes", "securityContext")},
    }
    assert "passed for resource pod/kserve-check" in validate(tmp_path, [pod], "pod.json")


def test_bad_requests_are_named(wheel: Path, run, tmp_path: Path) -> None:
    cases = [
        (("--replicas", "0"), "--replicas must be at least 1"),
        (("--replicas", "3", "--max-replicas", "2"), "--max-replicas (2) must be at least --replicas (3)"),
        (("--image", "Bad Image"), "not a valid image reference"),
        (("--port", "0"), "--port must be between 1 and 65535"),
        (("--namespace", "Not_OK"), "not a valid Kubernetes name"),
    ]
    for args, message in cases:
        assert_clean_error(run("k8s", wheel, *args), 2, message)
    assert_clean_error(run("k8s", "churn-model:1.0.0"), 2, "expected the model .whl or .onnx")
    assert_clean_error(run("k8s", tmp_path / "missing.whl"), 2, "artifact not found")
    (tmp_path / "fake.whl").write_bytes(b"not a zip")
    assert_clean_error(run("k8s", tmp_path / "fake.whl"), 2, "not a readable wheel")


def test_measuring_writes_nothing_into_the_inference_log_of_the_environment(
    wheel: Path, run, mongo_uri: str, mongo_client: Any, database_name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The server k8s measures answers 32 made-up records: with the log's variable set where it ran (as it is
    where the model is served), they went into the production log and `mlpack monitor` counted them."""
    monkeypatch.setenv("MLPACK_INFERENCE_LOG_URI", mongo_uri)
    monkeypatch.setenv("MLPACK_INFERENCE_LOG_DB", database_name)
    assert run("k8s", wheel).code == 0
    time.sleep(2.5)  # the log's flush interval: a record on its way would be there now
    assert mongo_client[database_name]["inference_log"].count_documents({}) == 0


def test_a_model_that_logs_is_measured_with_a_log_that_reaches_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    """Its pods run pymongo and the log's threads (~9 MiB): measured, but pointed at no listener."""
    from mlpack.deploy.footprint import _without_log

    monkeypatch.setenv("MLPACK_INFERENCE_LOG_URI", "mongodb://db.example/")
    monkeypatch.setenv("TEAM_LOG_URI", "mongodb://db.example/")
    assert "MLPACK_INFERENCE_LOG_URI" not in _without_log({"serve": {"inference_log": False}})
    env = _without_log({"serve": {"inference_log": True, "inference_log_uri_env": "TEAM_LOG_URI"}})
    assert "MLPACK_INFERENCE_LOG_URI" not in env
    assert env["TEAM_LOG_URI"].startswith("mongodb://127.0.0.1:")


def test_a_model_that_logs_reads_its_connection_from_a_secret(built_model: Any, tmp_path: Path) -> None:
    """[serve].inference_log on: a Deployment without the variable served with the log off (a warning in each
    pod), so monitor and [source.feedback] found nothing; the connection string is a credential: a Secret."""
    metadata = {**built_model.metadata, "serve": {**built_model.metadata["serve"], "inference_log": True}}
    footprint = Footprint(model_bytes=1 << 20, rss_bytes=80 << 20, peak_bytes=80 << 20)
    for options in (K8sOptions(), K8sOptions(kserve=True)):
        documents = manifests(metadata, footprint, options)
        assert secrets_read(documents) == [("MLPACK_INFERENCE_LOG_URI", "test-model-inference-log")]
    deployment = manifests(metadata, footprint, K8sOptions())[0]
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    assert container["env"][-1] == {
        "name": "MLPACK_INFERENCE_LOG_URI",
        "valueFrom": {"secretKeyRef": {"name": "test-model-inference-log", "key": "uri"}},
    }
    assert "passed for resource deployment/test-model" in validate(tmp_path, [deployment], "logged.json")
    # A model that does not log reads no Secret.
    assert secrets_read(manifests(built_model.metadata, footprint, K8sOptions())) == []


def test_an_image_tagged_with_another_version_is_warned_of(wheel: Path, run) -> None:
    """`mlpack k8s churn-model@production --image reg/churn-model:1.0.2` where the alias names 1.0.0 wrote
    manifests labelled and sized for 1.0.0 that run 1.0.2, without a word. The manifests are still written
    (the tag is the user's to choose), with one warning naming both versions."""
    result = run("k8s", wheel, "--image", "registry.example:5000/churn/test-model:9.9.9")
    assert result.code == 0, result.err
    assert 'kind: "Deployment"' in result.out and 'image: "registry.example:5000/churn/test-model:9.9.9"' in result.out
    (warning,) = [line for line in result.err.splitlines() if "warning" in line]
    assert "is tagged 9.9.9, but the manifests are test-model 1.0.0's" in warning
    metadata = {"name": "test-model", "version": "1.0.0"}
    for quiet in ["test-model:1.0.0", "test-model:1.0", "reg:5000/test-model", "test-model:latest",
                  "reg:5000/test-model@sha256:" + "0" * 64, "test-model:1.0.0@sha256:" + "0" * 64, None]:  # fmt: skip
        assert image_tag_warning(quiet, metadata) is None, quiet
    for loud in ["test-model:1.0.1", "reg:5000/a/test-model:2.0.0rc1@sha256:" + "0" * 64]:
        assert image_tag_warning(loud, metadata), loud
