"""The build's provenance: an in-toto Statement (v1) with a SLSA Provenance v1 predicate.

Its subjects are every artifact the build shipped, each by its sha256: the wheel, the sdist, the
.onnx, the image's manifest (when an image was made) and the SBOM. Its build definition holds what a
reader needs to rebuild and compare: the configuration file's hash, the training data's fingerprint
(collection, filter, document count), the versions of mlpack and of every build tool (scikit-learn,
skl2onnx, onnx, onnxruntime, numpy, Python), the image's base, and SOURCE_DATE_EPOCH.

The document is checked against in-toto's own protobuf definitions of the Statement and of the SLSA
predicate (the `in-toto-attestation` package) before it is written, and written as sorted JSON with
no time of its own (the build's creation time is SOURCE_DATE_EPOCH's): the same inputs give the same
bytes. No path of this machine, URI or credential goes in.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

from mlpack.errors import VerificationError
from mlpack.runtime import Metadata

STATEMENT_TYPE = "https://in-toto.io/Statement/v1"
PREDICATE_TYPE = "https://slsa.dev/provenance/v1"
MEDIA_TYPE = "application/vnd.in-toto+json"
# SLSA's buildType names the template a reader interprets the parameters with: this build's own,
# version 1 of the parameters below (a URN: it names, it need not resolve).
BUILD_TYPE = "urn:mlpack-onnx:build:v1"
_PYPI_NAMES = {"mlpack": "mlpack-onnx"}  # the metadata's short names → the distributions' own


@dataclass(frozen=True)
class Subject:
    name: str  # a file name in dist/, or the image's tag
    sha256: str  # hex
    kind: str  # wheel, sdist, onnx, image, sbom


def statement(
    metadata: Metadata,
    subjects: list[Subject],
    *,
    config_text: str,
    source_date_epoch: str,
    tools: dict[str, str],
    image: dict[str, Any] | None = None,
    byproducts: list[Subject] | None = None,
) -> bytes:
    """The Statement's bytes: canonical, validated against in-toto's definitions."""
    data = metadata["data"]
    versions = {**{k: str(v) for k, v in metadata["versions"].items()}, **tools}
    external: dict[str, Any] = {
        "model": {"name": metadata["name"], "version": metadata["version"], "task": metadata["task"]},
        "config": {"file": "mlpack.toml", "sha256": hashlib.sha256(config_text.encode("utf-8")).hexdigest()},
        "source": {
            "database": data["database"],
            "collection": data["collection"],
            "filter": data["filter"],
            "limit": data["limit"],
        },
        "estimator": metadata["estimator"]["class"],
    }
    if image is not None:
        external["image"] = image
    dependencies: list[dict[str, Any]] = [
        {"name": "mlpack.toml", "digest": {"sha256": external["config"]["sha256"]}},
        {
            "name": f"{data['database']}.{data['collection']}",
            "digest": {"sha256": data["sha256"]},
            "annotations": {"documents": data["rows"], "filter": json.dumps(data["filter"], sort_keys=True)},
        },
    ]
    for name, version in sorted(versions.items()):
        if name not in ("opset", "python"):
            dependencies.append({"uri": f"pkg:pypi/{_PYPI_NAMES.get(name, name)}@{version}", "name": name})
    if image is not None:  # the base, by the layers it gave the image (a local layout or archive has no name)
        dependencies.append({"name": image["base"], "annotations": {"layers": image["base_layers"]}})
    document = {
        "_type": STATEMENT_TYPE,
        "subject": [
            {"name": s.name, "digest": {"sha256": s.sha256}, "annotations": {"kind": s.kind}} for s in subjects
        ],
        "predicateType": PREDICATE_TYPE,
        "predicate": {
            "buildDefinition": {
                "buildType": BUILD_TYPE,
                "externalParameters": external,
                "internalParameters": {
                    # As the build saw it ("" when unset: then `created` is the build's clock time).
                    "SOURCE_DATE_EPOCH": source_date_epoch,
                    "created": metadata["created"],
                    "python": versions.get("python", ""),
                    "opset": str(metadata["versions"].get("opset", "")),
                },
                "resolvedDependencies": dependencies,
            },
            "runDetails": {
                "builder": {"id": f"pkg:pypi/mlpack-onnx@{versions['mlpack']}", "version": versions},
                "metadata": {"invocationId": f"{metadata['name']}-{metadata['version']}"},
                # What the build wrote for people, not for shipping: the model card, the test predictions.
                "byproducts": [{"name": b.name, "digest": {"sha256": b.sha256}} for b in byproducts or []],
            },
        },
    }
    _validate(document)
    return (json.dumps(document, indent=2, sort_keys=True, ensure_ascii=False) + "\n").encode("utf-8")


def _validate(document: dict[str, Any]) -> None:
    """in-toto-attestation's protobuf types, strictly: an unknown or misspelt field is refused."""
    from google.protobuf import json_format
    from in_toto_attestation.predicates.provenance.v1 import provenance_pb2
    from in_toto_attestation.v1 import statement_pb2
    from in_toto_attestation.v1.statement import Statement

    parsed = json_format.ParseDict(document, statement_pb2.Statement())
    Statement.copy_from_pb(parsed).validate()
    json_format.ParseDict(document["predicate"], provenance_pb2.Provenance())


def read(data: bytes, where: str) -> dict[str, Any]:
    """A provenance Statement read back: its subjects by name; refused unless it is one mlpack writes."""
    try:
        document = json.loads(data)
        subjects = {s["name"]: s["digest"]["sha256"] for s in document["subject"]}
    except (ValueError, KeyError, TypeError) as exc:
        raise VerificationError(f"{where} is not an in-toto statement ({type(exc).__name__})") from None
    if document.get("_type") != STATEMENT_TYPE or document.get("predicateType") != PREDICATE_TYPE:
        raise VerificationError(f"{where} is not an in-toto statement with a SLSA provenance v1 predicate")
    return {"document": document, "subjects": subjects}
