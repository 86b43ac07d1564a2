"""The build's SBOM: one CycloneDX 1.6 JSON document per build, made with cyclonedx-python-lib.

It lists the model (a `machine-learning-model` component with its model card: task, metrics, the
training data), the training data (a `data` component: collection, filter, document count,
fingerprint), the model wheel with every file its RECORD names, every package the wheel pulls, and
the image with every Python distribution and Debian package its layers hold (`inventory.py`).

cyclonedx-python-lib 11 writes neither `modelCard` nor `data` yet (its issues #912 and #913), so
those two objects are added to the library's JSON here. tests/test_sbom.py validates the documents
against the CycloneDX 1.6 JSON schema with the library's own strict validator; the build does not
(importing jsonschema's format checkers costs about 7 s, more than the whole SBOM).

The same inputs give the same bytes: the serial number is derived from the artifacts' digests, the
timestamp is the build's (SOURCE_DATE_EPOCH), and the JSON is written with sorted keys.
"""

from __future__ import annotations

import base64
import csv
import hashlib
import io
import json
import uuid
import zipfile
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib.metadata import PackageNotFoundError, distribution
from importlib.metadata import version as installed_version
from pathlib import Path
from typing import Any

from cyclonedx.model import HashAlgorithm, HashType, Property
from cyclonedx.model.bom import Bom, BomMetaData
from cyclonedx.model.component import Component, ComponentType
from cyclonedx.output.json import JsonV1Dot6
from packageurl import PackageURL
from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import canonicalize_name

from mlpack.artifacts.inventory import Inventory
from mlpack.runtime import Metadata

MEDIA_TYPE = "application/vnd.cyclonedx+json"
MODEL_REF, DATA_REF, WHEEL_REF, IMAGE_REF = "model", "training-data", "wheel", "image"
PROPERTY = "mlpack:"  # the namespace of this tool's property names (CycloneDX's property taxonomy)
# What a dependency's SHA-256 is of: the wheel file the image installed, or (no image) the RECORD
# of the distribution this build ran with, which itself holds every installed file's hash.
HASH_OF = PROPERTY + "sha256_of"


@dataclass(frozen=True)
class ImageFacts:
    tag: str
    digest: str  # the manifest's, sha256:...
    inventory: Inventory


@dataclass(frozen=True)
class Dependency:
    name: str  # canonical (PEP 503)
    version: str
    sha256: str
    hash_of: str  # "wheel" or "RECORD"
    requirement: str = ""  # the wheel's own Requires-Dist line for a direct dependency


def _sha256(hexdigest: str) -> list[HashType]:
    return [HashType(alg=HashAlgorithm.SHA_256, content=hexdigest)] if hexdigest else []


def _properties(values: dict[str, Any]) -> list[Property]:
    return [Property(name=PROPERTY + key, value=str(value)) for key, value in sorted(values.items()) if value != ""]


def _b64_hex(value: str) -> str:
    return base64.urlsafe_b64decode(value + "=" * (-len(value) % 4)).hex()


def wheel_record(wheel: Path) -> dict[str, tuple[str, int]]:
    """The wheel's RECORD: path → (sha256 hex, size). RECORD itself, which has no hash of itself, is left out."""
    with zipfile.ZipFile(wheel) as archive:
        names = [n for n in archive.namelist() if n.endswith(".dist-info/RECORD") and n.count("/") == 1]
        if len(names) != 1:
            raise ValueError(f"{wheel.name} has {len(names)} .dist-info/RECORD files, not one")
        text = archive.read(names[0]).decode("utf-8")
    found: dict[str, tuple[str, int]] = {}
    for row in csv.reader(io.StringIO(text)):
        if len(row) == 3 and row[1].startswith("sha256="):
            found[row[0]] = (_b64_hex(row[1].removeprefix("sha256=")), int(row[2]))
    return found


def wheel_requirements(wheel: Path) -> list[Requirement]:
    """The wheel's Requires-Dist, read from its METADATA (not from this environment)."""
    with zipfile.ZipFile(wheel) as archive:
        name = next(n for n in archive.namelist() if n.endswith(".dist-info/METADATA") and n.count("/") == 1)
        text = archive.read(name).decode("utf-8")
    found = []
    for line in text.splitlines():
        if line.startswith("Requires-Dist:"):
            requirement = Requirement(line.partition(":")[2].strip())
            if requirement.marker is None or requirement.marker.evaluate({"extra": ""}):
                found.append(requirement)
    return found


def wheelhouse_dependencies(folder: Path, direct: Iterable[Requirement]) -> list[Dependency]:
    """The wheels an image installed from (the build context's deps/): name, version, the file's sha256."""
    lines = {canonicalize_name(r.name): str(r) for r in direct}
    found = []
    for path in sorted(folder.glob("*.whl")):
        name, version = path.name.split("-")[:2]
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
        found.append(
            Dependency(canonicalize_name(name), version, digest, "wheel", lines.get(canonicalize_name(name), ""))
        )
    return found


def environment_dependencies(direct: Iterable[Requirement]) -> list[Dependency]:
    """What the wheel pulls, as this build's own environment holds it (the versions parity was checked
    with), following each distribution's requirements; the sha256 is of each installed RECORD."""
    lines = {canonicalize_name(r.name): str(r) for r in direct}
    queue = [canonicalize_name(r.name) for r in direct]
    found: dict[str, Dependency] = {}
    while queue:
        name = queue.pop()
        if name in found:
            continue
        try:
            dist = distribution(name)
        except PackageNotFoundError:
            continue  # declared by the wheel but absent here: pip would fetch it on install
        record = dist.read_text("RECORD") or ""
        digest = hashlib.sha256(record.encode("utf-8")).hexdigest() if record else ""
        found[name] = Dependency(name, dist.version, digest, "RECORD", lines.get(name, ""))
        for line in dist.requires or []:
            try:
                requirement = Requirement(line)
            except InvalidRequirement:
                continue
            if requirement.marker is None or requirement.marker.evaluate({"extra": ""}):
                queue.append(canonicalize_name(requirement.name))
    return sorted(found.values(), key=lambda d: d.name)


def _pypi(name: str, version: str) -> PackageURL:
    return PackageURL(type="pypi", name=name, version=version)


def _model_component(metadata: Metadata, onnx_sha256: str) -> Component:
    return Component(
        type=ComponentType.MACHINE_LEARNING_MODEL,
        name=metadata["name"],
        version=metadata["version"],
        bom_ref=MODEL_REF,
        description=metadata["description"] or None,
        hashes=_sha256(onnx_sha256),
        properties=_properties(
            {"file": f"{metadata['name']}-{metadata['version']}.onnx", "opset": metadata["versions"].get("opset", "")}
        ),
    )


def _data_component(metadata: Metadata) -> Component:
    data = metadata["data"]
    return Component(
        type=ComponentType.DATA,
        name=f"{data['database']}.{data['collection']}",
        bom_ref=DATA_REF,
        hashes=_sha256(data["sha256"]),
        properties=_properties({"documents": data["rows"], "filter": json.dumps(data["filter"], sort_keys=True)}),
    )


def _wheel_component(metadata: Metadata, wheel: Path, wheel_sha256: str) -> Component:
    component = Component(
        type=ComponentType.LIBRARY,
        name=metadata["name"],
        version=metadata["version"],
        bom_ref=WHEEL_REF,
        purl=PackageURL(
            type="pypi", name=metadata["name"], version=metadata["version"], qualifiers={"file_name": wheel.name}
        ),
        hashes=_sha256(wheel_sha256),
    )
    for path, (digest, size) in sorted(wheel_record(wheel).items()):
        component.components.add(
            Component(
                type=ComponentType.FILE,
                name=path,
                bom_ref=f"{WHEEL_REF}:{path}",
                hashes=_sha256(digest),
                properties=_properties({"size": size}),
            )
        )
    return component


def _dependency_component(dep: Dependency) -> Component:
    return Component(
        type=ComponentType.LIBRARY,
        name=dep.name,
        version=dep.version,
        bom_ref=f"pypi:{dep.name}@{dep.version}",
        purl=_pypi(dep.name, dep.version),
        hashes=_sha256(dep.sha256),
        properties=_properties({"sha256_of": dep.hash_of, "requirement": dep.requirement}),
    )


@dataclass(frozen=True, order=True)
class Package:
    """One package an image holds, as its SBOM entry says it (what `mlpack verify` compares)."""

    ref: str
    purl: str
    sha256: str  # of a Python distribution's RECORD; "" for a Debian package (dpkg keeps no hash)
    name: str
    version: str
    properties: tuple[tuple[str, str], ...]


def image_packages(found: Inventory) -> list[Package]:
    """The image's Python distributions and Debian packages, in the SBOM's terms."""
    packages = []
    for dist in found.python:
        packages.append(
            Package(
                f"{IMAGE_REF}:{dist.path}",
                str(_pypi(dist.name, dist.version)),
                dist.record_sha256,
                dist.name,
                dist.version,
                (("path", dist.path),)
                + ((("sha256_of", "RECORD"),) if dist.record_sha256 else ())
                + ((("pruned", dist.pruned),) if dist.pruned else ()),
            )
        )
    namespace = found.os_id or "debian"
    for deb in found.debian:
        qualifiers = {"arch": deb.architecture} if deb.architecture else {}
        if found.os_version:
            qualifiers["distro"] = f"{namespace}-{found.os_version}"
        purl = PackageURL(type="deb", namespace=namespace, name=deb.name, version=deb.version, qualifiers=qualifiers)
        packages.append(
            Package(
                f"{IMAGE_REF}:deb:{deb.name}:{deb.architecture}",
                str(purl),
                "",
                deb.name,
                deb.version,
                (("source", deb.source),) if deb.source else (),
            )
        )
    return packages


def listed_packages(document: dict[str, Any]) -> list[tuple[str, str]]:
    """(purl, sha256) of every package an SBOM lists inside the image, sorted."""
    image: dict[str, Any] = next((c for c in document.get("components", []) if c.get("bom-ref") == IMAGE_REF), {})
    found = []
    for component in image.get("components", []):
        hashes = [h["content"] for h in component.get("hashes", []) if h.get("alg") == "SHA-256"]
        found.append((component.get("purl", ""), hashes[0] if hashes else ""))
    return sorted(found)


def _image_component(image: ImageFacts) -> Component:
    name, _, tag = image.tag.rpartition(":")
    hexdigest = image.digest.removeprefix("sha256:")
    component = Component(
        type=ComponentType.CONTAINER,
        name=name or image.tag,
        version=tag,
        bom_ref=IMAGE_REF,
        purl=PackageURL(type="oci", name=(name or image.tag).rsplit("/", 1)[-1], version=image.digest),
        hashes=_sha256(hexdigest),
    )
    for package in image_packages(image.inventory):
        component.components.add(
            Component(
                type=ComponentType.LIBRARY,
                name=package.name,
                version=package.version,
                bom_ref=package.ref,
                purl=PackageURL.from_string(package.purl),
                hashes=_sha256(package.sha256),
                properties=_properties(dict(package.properties)),
            )
        )
    return component


def model_card(metadata: Metadata) -> dict[str, Any]:
    """CycloneDX's modelCard from the metadata: what the HTML card and the wheel's README say."""
    inputs = [
        {"format": f"{item['name']}: {item['type']} ({item['kind']}, from {item['path']})"}
        for item in metadata.get("inputs", [])
    ]
    outputs = [{"format": "label" + (" and probabilities" if metadata.get("probabilities", True) else "")}]
    if metadata["task"] == "regression":
        outputs = [{"format": "value (float32)"}]
    metrics = [
        {"type": name, "value": repr(float(value)), "slice": "test split"}
        for name, value in sorted((metadata.get("metrics") or {}).items())
    ]
    return {
        "modelParameters": {
            "approach": {"type": "supervised"},
            "task": metadata["task"],
            "architectureFamily": metadata["estimator"]["class"].rsplit(".", 1)[-1],
            "modelArchitecture": metadata["estimator"]["class"],
            "datasets": [{"ref": DATA_REF}],
            "inputs": inputs,
            "outputs": outputs,
        },
        "quantitativeAnalysis": {"performanceMetrics": metrics},
    }


def data_card(metadata: Metadata) -> list[dict[str, Any]]:
    data = metadata["data"]
    contents = {
        "collection": f"{data['database']}.{data['collection']}",
        "filter": json.dumps(data["filter"], sort_keys=True),
        "limit": str(data["limit"]),
        "documents": str(data["rows"]),
        "fingerprint": data["sha256"],
    }
    return [
        {
            "type": "dataset",
            "name": contents["collection"],
            "contents": {"properties": [{"name": PROPERTY + k, "value": v} for k, v in contents.items()]},
        }
    ]


def build_sbom(
    metadata: Metadata,
    *,
    wheel: Path,
    onnx_sha256: str,
    wheel_sha256: str,
    dependencies: list[Dependency],
    image: ImageFacts | None = None,
) -> bytes:
    """The SBOM's bytes: sorted JSON, one document per build."""
    created = datetime.strptime(metadata["created"], "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
    seed = f"{metadata['name']} {metadata['version']} {wheel_sha256} {onnx_sha256} {image.digest if image else ''}"
    wheel_component = _wheel_component(metadata, wheel, wheel_sha256)
    model, data = _model_component(metadata, onnx_sha256), _data_component(metadata)
    packages = [_dependency_component(dep) for dep in dependencies]
    components = [model, data, *packages]
    if image is not None:
        components.append(_image_component(image))
    bom = Bom(
        components=components,
        metadata=BomMetaData(component=wheel_component, timestamp=created),
        serial_number=uuid.uuid5(uuid.NAMESPACE_URL, "mlpack-sbom:" + seed),
    )
    for tool in ("mlpack-onnx", "cyclonedx-python-lib"):
        version = installed_version(tool)
        bom.metadata.tools.components.add(
            Component(type=ComponentType.APPLICATION, name=tool, version=version, purl=_pypi(tool, version))
        )
    bom.register_dependency(wheel_component, [model, *packages])
    bom.register_dependency(model, [data])
    if image is not None:
        bom.register_dependency(components[-1], [wheel_component])
    document = json.loads(JsonV1Dot6(bom).output_as_string())
    for component in document["components"]:
        if component["bom-ref"] == MODEL_REF:
            component["modelCard"] = model_card(metadata)
        elif component["bom-ref"] == DATA_REF:
            component["data"] = data_card(metadata)
    return (json.dumps(document, indent=2, sort_keys=True, ensure_ascii=False) + "\n").encode("utf-8")
