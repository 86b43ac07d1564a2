"""`mlpack k8s`: Kubernetes manifests for a model's image, sized from the model and its measured memory.

Plain Kubernetes: a Deployment (probes on /healthz and /readyz, non-root, read-only root file system
with a small tmpfs at /tmp, no privilege escalation, no capabilities), a Service, a
HorizontalPodAutoscaler and a PodDisruptionBudget. With `kserve=True`: a KServe ServingRuntime that
speaks the v2 (Open Inference) protocol and an InferenceService using it with `protocolVersion: v2`.

Memory is sized from a measurement, not a guess: the model's own server is started from the wheel
(the image's entrypoint), answers one prediction, and its resident and peak memory are read.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from packaging.version import InvalidVersion, Version

from mlpack import names
from mlpack.artifacts.read import read_metadata
from mlpack.deploy.footprint import Footprint, measure
from mlpack.errors import ConfigError
from mlpack.runtime import Metadata

USER_ID = 65532  # the image's USER (packaging/docker/Dockerfile.in)
TMPFS_MIB = 16  # the only writable path: /tmp, memory-backed, for Python and onnxruntime scratch


@dataclass(frozen=True)
class K8sOptions:
    replicas: int = 2
    max_replicas: int | None = None  # default: 4 × replicas
    image: str | None = None  # default: NAME:VERSION, as `mlpack build` tags it
    port: int = 8080
    namespace: str | None = None
    kserve: bool = False
    cpu_target: int = 70  # HPA: average CPU utilisation, percent of the request


def dns_name(name: str) -> str:
    """A model name as a Kubernetes object name (RFC 1035 label: Services need a leading letter)."""
    text = re.sub(r"[^a-z0-9-]+", "-", name.lower()).strip("-")
    if not text or not text[0].isalpha():
        text = f"model-{text}".rstrip("-")
    return text[:63].rstrip("-")


def label_value(value: str) -> str:
    text = re.sub(r"[^A-Za-z0-9._-]+", "_", value)[:63]
    return re.sub(r"^[^A-Za-z0-9]+|[^A-Za-z0-9]+$", "", text)


# -- manifests ------------------------------------------------------------------------------------
def _labels(metadata: Metadata, name: str) -> dict[str, str]:
    return {
        "app.kubernetes.io/name": name,
        "app.kubernetes.io/version": label_value(metadata["version"]),
        "app.kubernetes.io/component": "model-server",
        "app.kubernetes.io/managed-by": "mlpack",
    }


def _annotations(metadata: Metadata, footprint: Footprint) -> dict[str, str]:
    return {
        "mlpack.io/model": f"{metadata['name']} {metadata['version']}",
        "mlpack.io/model-bytes": str(footprint.model_bytes),
        "mlpack.io/measured-rss-bytes": str(footprint.rss_bytes),
        "mlpack.io/measured-peak-bytes": str(footprint.peak_bytes),
        "mlpack.io/worst-requests-bytes": str(footprint.requests_bytes),
    }


def log_secret(metadata: Metadata) -> tuple[str, str] | None:
    """The model's inference log, when its [serve] turns it on: (the variable the server reads its MongoDB
    from, the Secret the Deployment takes it from, key `uri`). A connection string is a credential, so it
    is in no manifest: without the reference the pods served with the log silently off (a warning in each
    pod's output), and `mlpack monitor` and [source.feedback] found nothing logged."""
    serve = metadata.get("serve") or {}
    if not serve.get("inference_log"):
        return None
    variable = serve.get("inference_log_uri_env") or "MLPACK_INFERENCE_LOG_URI"
    return variable, f"{dns_name(metadata['name'])[:50].rstrip('-')}-inference-log"


def _container(
    name: str,
    image: str,
    port: int,
    footprint: Footprint,
    *,
    probes: bool = True,
    secret: tuple[str, str] | None = None,
) -> dict[str, Any]:
    container: dict[str, Any] = {
        "name": name,
        "image": image,
        "imagePullPolicy": "IfNotPresent",
        "ports": [{"name": "http", "containerPort": port, "protocol": "TCP"}],
        "env": [
            {"name": "MLPACK_HOST", "value": "0.0.0.0"},
            {"name": "MLPACK_PORT", "value": str(port)},
            # One onnxruntime thread per pod, matching the CPU limit: scale out with replicas instead.
            {"name": "MLPACK_THREADS", "value": "1"},
        ],
        "resources": {
            "requests": {"cpu": "250m", "memory": footprint.memory_request},
            "limits": {"cpu": "1", "memory": footprint.memory_limit},
        },
        "securityContext": {
            "runAsNonRoot": True,
            "runAsUser": USER_ID,
            "runAsGroup": USER_ID,
            "readOnlyRootFilesystem": True,
            "allowPrivilegeEscalation": False,
            "capabilities": {"drop": ["ALL"]},
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        "volumeMounts": [{"name": "tmp", "mountPath": "/tmp"}],
    }
    if secret is not None:  # not optional: a pod asked to log does not start serving without its log
        variable, secret_name = secret
        reference = {"secretKeyRef": {"name": secret_name, "key": "uri"}}
        container["env"].append({"name": variable, "valueFrom": reference})
    if probes:
        container["livenessProbe"] = {
            "httpGet": {"path": "/healthz", "port": "http"},
            "initialDelaySeconds": 2,
            "periodSeconds": 10,
            "timeoutSeconds": 3,
            "failureThreshold": 3,
        }
        container["readinessProbe"] = {
            "httpGet": {"path": "/readyz", "port": "http"},
            "periodSeconds": 5,
            "timeoutSeconds": 3,
            "failureThreshold": 2,
        }
    return container


def _pod_spec(container: dict[str, Any]) -> dict[str, Any]:
    return {
        "automountServiceAccountToken": False,
        "terminationGracePeriodSeconds": 30,  # the server drains in-flight requests on SIGTERM
        "securityContext": {
            "runAsNonRoot": True,
            "runAsUser": USER_ID,
            "runAsGroup": USER_ID,
            "fsGroup": USER_ID,
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        "containers": [container],
        "volumes": [{"name": "tmp", "emptyDir": {"medium": "Memory", "sizeLimit": f"{TMPFS_MIB}Mi"}}],
    }


def _metadata(name: str, labels: dict[str, str], namespace: str | None, **extra: Any) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name, "labels": labels, **extra}
    if namespace:
        meta["namespace"] = namespace
    return meta


def manifests(metadata: Metadata, footprint: Footprint, options: K8sOptions) -> list[dict[str, Any]]:
    name = dns_name(metadata["name"])
    image = options.image or f"{metadata['name'].lower()}:{metadata['version']}"
    labels = _labels(metadata, name)
    selector = {"app.kubernetes.io/name": name}
    max_replicas = options.max_replicas or 4 * options.replicas
    annotations = _annotations(metadata, footprint)
    if options.kserve:
        return _kserve(metadata, footprint, options, name, image, labels, annotations, max_replicas)
    pod = _pod_spec(_container("model", image, options.port, footprint, secret=log_secret(metadata)))
    return [
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": _metadata(name, labels, options.namespace, annotations=annotations),
            "spec": {
                "replicas": options.replicas,
                "selector": {"matchLabels": selector},
                "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1}},
                "template": {"metadata": {"labels": labels, "annotations": annotations}, "spec": pod},
            },
        },
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": _metadata(name, labels, options.namespace),
            "spec": {
                "type": "ClusterIP",
                "selector": selector,
                "ports": [{"name": "http", "port": 80, "targetPort": "http", "protocol": "TCP"}],
            },
        },
        {
            "apiVersion": "autoscaling/v2",
            "kind": "HorizontalPodAutoscaler",
            "metadata": _metadata(name, labels, options.namespace),
            "spec": {
                "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": name},
                "minReplicas": options.replicas,
                "maxReplicas": max_replicas,
                "metrics": [
                    {
                        "type": "Resource",
                        "resource": {
                            "name": "cpu",
                            "target": {"type": "Utilization", "averageUtilization": options.cpu_target},
                        },
                    }
                ],
            },
        },
        {
            "apiVersion": "policy/v1",
            "kind": "PodDisruptionBudget",
            "metadata": _metadata(name, labels, options.namespace),
            # One pod at a time may be evicted: drains proceed, and with 2+ replicas one always serves.
            "spec": {"maxUnavailable": 1, "selector": {"matchLabels": selector}},
        },
    ]


def _kserve(
    metadata: Metadata,
    footprint: Footprint,
    options: K8sOptions,
    name: str,
    image: str,
    labels: dict[str, str],
    annotations: dict[str, str],
    max_replicas: int,
) -> list[dict[str, Any]]:
    """A ServingRuntime holding the image (the model is inside it: no storageUri) and the InferenceService."""
    runtime = f"mlpack-{name}"[:63].rstrip("-")
    container = _container("kserve-container", image, options.port, footprint, secret=log_secret(metadata))
    pod = _pod_spec(container)
    return [
        {
            "apiVersion": "serving.kserve.io/v1alpha1",
            "kind": "ServingRuntime",
            "metadata": _metadata(runtime, labels, options.namespace, annotations=annotations),
            "spec": {
                "supportedModelFormats": [{"name": "mlpack-onnx", "version": "1", "autoSelect": False}],
                "protocolVersions": ["v2"],
                "containers": pod["containers"],
                "volumes": pod["volumes"],
                "securityContext": pod["securityContext"],
            },
        },
        {
            "apiVersion": "serving.kserve.io/v1beta1",
            "kind": "InferenceService",
            "metadata": _metadata(name, labels, options.namespace, annotations=annotations),
            "spec": {
                "predictor": {
                    "minReplicas": options.replicas,
                    "maxReplicas": max_replicas,
                    "model": {
                        "modelFormat": {"name": "mlpack-onnx", "version": "1"},
                        "runtime": runtime,
                        "protocolVersion": "v2",
                    },
                }
            },
        },
    ]


def secrets_read(documents: list[dict[str, Any]]) -> list[tuple[str, str]]:
    """(variable, Secret) for each variable the manifests' containers take from a Secret, once each."""
    found: dict[tuple[str, str], None] = {}
    pending: list[Any] = list(documents)
    while pending:
        value = pending.pop()
        if isinstance(value, dict):
            reference = (value.get("valueFrom") or {}).get("secretKeyRef")
            if reference:
                found[(value["name"], reference["name"])] = None
            pending.extend(value.values())
        elif isinstance(value, list):
            pending.extend(value)
    return list(found)


# -- output -------------------------------------------------------------------------------------
def to_yaml(documents: list[dict[str, Any]]) -> str:
    """Multi-document YAML; every string double-quoted (a JSON string is a valid YAML scalar)."""
    return "".join("---\n" + _yaml(document, 0) for document in documents)


def _yaml(value: Any, indent: int) -> str:
    pad = "  " * indent
    lines = []
    if isinstance(value, dict):
        for key, item in value.items():
            if isinstance(item, (dict, list)) and item:
                lines.append(f"{pad}{key}:\n{_yaml(item, indent + 1)}")
            else:
                lines.append(f"{pad}{key}: {_scalar(item)}\n")
    else:
        for item in value:
            if isinstance(item, (dict, list)) and item:
                body = _yaml(item, indent + 1)
                lines.append(f"{pad}- {body[len(pad) + 2 :]}")
            else:
                lines.append(f"{pad}- {_scalar(item)}\n")
    return "".join(lines)


def _scalar(value: Any) -> str:
    if isinstance(value, dict):
        return "{}"
    if isinstance(value, list):
        return "[]"
    return json.dumps(value)


def image_tag_warning(image: str | None, metadata: Metadata) -> str | None:
    """A warning when --image is tagged with a version other than the model's: the manifests are that
    model's (its labels, the memory measured from it), so the pods would run one model sized and named
    for another. A tag that is no version (latest, a branch, a digest) says nothing either way."""
    if image is None:
        return None
    match = names.IMAGE_REFERENCE.fullmatch(image)  # the grammar base images are read by: a port is no tag
    tag = match.group("tag") if match else None
    if not tag:
        return None
    try:
        tagged = Version(tag)
    except InvalidVersion:
        return None
    if tagged == Version(str(metadata["version"])):
        return None
    return (
        f"--image {image} is tagged {tag}, but the manifests are {metadata['name']} {metadata['version']}'s "
        "(its labels, the memory measured from it): name the image built for that version"
    )


def k8s(artifact: str | Path, options: K8sOptions) -> tuple[list[dict[str, Any]], Footprint, list[str]]:
    """The manifests for the model in `artifact`, the footprint they are sized by, and warnings."""
    path = Path(artifact)
    if path.suffix not in (".whl", ".onnx"):
        raise ConfigError(
            f"{artifact}: expected the model .whl or .onnx (its memory is measured); name the image with --image"
        )
    if options.replicas < 1:
        raise ConfigError(f"--replicas must be at least 1, got {options.replicas}")
    if options.max_replicas is not None and options.max_replicas < options.replicas:
        raise ConfigError(f"--max-replicas ({options.max_replicas}) must be at least --replicas ({options.replicas})")
    if not 1 <= options.port <= 65535:
        raise ConfigError(f"--port must be between 1 and 65535, got {options.port}")
    if options.image is not None and not re.match(r"^[a-z0-9][a-z0-9._/:@-]*$", options.image):
        raise ConfigError(f"--image {options.image!r} is not a valid image reference (lowercase name[:tag])")
    if options.namespace is not None and dns_name(options.namespace) != options.namespace:
        raise ConfigError(f"--namespace {options.namespace!r} is not a valid Kubernetes name")
    metadata = read_metadata(path)
    metadata.setdefault("import_name", re.sub(r"[-.]+", "_", metadata["name"]).lower())
    footprint = measure(path, metadata)
    warning = image_tag_warning(options.image, metadata)
    return manifests(metadata, footprint, options), footprint, [warning] if warning else []
