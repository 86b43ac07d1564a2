"""What a build attests of itself, once its artifacts and image are in place: SBOM, provenance, signatures.

`attest_build` is the build's one call, made after the image (whose manifest is a subject). It
writes next to the artifacts, each staged and then renamed into place:

    NAME-VERSION.cdx.json              the SBOM (CycloneDX 1.6; sbom.py)
    NAME-VERSION.provenance.json       the in-toto Statement with its SLSA provenance (provenance.py)
    NAME-VERSION.provenance.dsse.json  with [sign]: that statement's bytes, signed, as a DSSE envelope
    NAME-VERSION.model.sig             with [sign]: the .onnx signed with model-signing (signing.py)

and records them in the build's report, which the build writes once, after this. `attachment_files`
tells `mlpack push` which of them go to the registry with a pushed image, and as what.
"""

from __future__ import annotations

import importlib.util
import json
import os
import platform
import shutil
import tempfile
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from importlib.metadata import PackageNotFoundError
from importlib.metadata import version as installed_version
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, Protocol

from mlpack.artifacts.dist import BuildReport, sha256_of
from mlpack.artifacts.inventory import inventory
from mlpack.config import Config
from mlpack.errors import ConfigError
from mlpack.runtime import Metadata

if TYPE_CHECKING:
    from mlpack.artifacts import sbom

SBOM, PROVENANCE, ENVELOPE, MODEL_SIGNATURE = ".cdx.json", ".provenance.json", ".provenance.dsse.json", ".model.sig"
# Build tools beyond the metadata's (scikit-learn, skl2onnx, onnx, onnxruntime) whose versions
# decided the artifacts' bytes: the provenance records them.
_TOOLS = ("numpy", "hatchling", "pip", "cyclonedx-python-lib", "in-toto-attestation", "model-signing")
_SLSA = {"in-toto.io/predicate-type": "https://slsa.dev/provenance/v1"}
# file suffix → (the layer's media type, the referrer's artifactType, annotations) for `mlpack push`
ATTACHMENTS: dict[str, tuple[str, str, dict[str, str]]] = {
    SBOM: ("application/vnd.cyclonedx+json", "application/vnd.cyclonedx+json", {}),
    PROVENANCE: ("application/vnd.in-toto+json", "application/vnd.in-toto+json", _SLSA),
    ENVELOPE: ("application/vnd.dsse.envelope.v1+json", "application/vnd.dsse.envelope.v1+json", _SLSA),
    MODEL_SIGNATURE: (
        "application/vnd.dev.sigstore.bundle.v0.3+json",
        "application/vnd.dev.sigstore.bundle.v0.3+json",
        {"dev.sigstore.bundle.predicateType": "https://model_signing/signature/v1.0"},
    ),
}
# What writing the attestations imports (the [attest] extra); signing needs model-signing too.
_NEEDED = ("cyclonedx", "packageurl", "in_toto_attestation")
_NEEDED_TO_SIGN = ("cryptography", "model_signing", "OpenSSL")
# What `mlpack verify` imports: the SBOM's reader and the signatures' (model-signing's with a key).
_NEEDED_TO_VERIFY = ("cyclonedx", "packageurl", "cryptography")
EXTRA = "pip install 'mlpack-onnx[attest]'"


def missing(signed: bool, *, verifying: bool = False) -> str:
    """The first module of the [attest] extra that writing (or `verifying`) the attestations needs and
    is not installed, or ""."""
    for module in (_NEEDED_TO_VERIFY if verifying else _NEEDED) + (_NEEDED_TO_SIGN if signed else ()):
        if importlib.util.find_spec(module) is None:
            return module
    return ""


def check(config: Config) -> None:
    """Before any data is read: with [sign], the extra is installed and the key loads (and is of a kind
    that signs). The key is read again when the build signs; it is never kept."""
    if config.sign is None:
        return
    absent = missing(signed=True)
    if absent:
        raise ConfigError(f"[sign] needs the {absent} package, which is not installed: {EXTRA}")
    from mlpack.artifacts import signing

    signing.load_key(config.sign, config.project_dir)


class Built(Protocol):
    """What attest_build needs of build.BuildResult (build.py sits above this layer)."""

    metadata: Metadata
    artifacts: dict[str, Path]
    report: BuildReport


def attachment_files(folder: Path, stem: str) -> list[tuple[Path, str, str, dict[str, str]]]:
    """(file, media type, artifact type, annotations) of each attestation of build `stem` in `folder`."""
    found = []
    for suffix, (media_type, artifact_type, notes) in ATTACHMENTS.items():
        path = folder / f"{stem}{suffix}"
        if path.is_file():
            found.append((path, media_type, artifact_type, dict(notes)))
    return found


def tool_versions(signed: bool) -> dict[str, str]:
    found = {"python": platform.python_version()}
    for name in _TOOLS:
        if name == "model-signing" and not signed:
            continue
        try:
            found[name] = installed_version(name)
        except PackageNotFoundError:
            continue
    return found


@contextmanager
def _staging(folder: Path) -> Iterator[Path]:
    stage = Path(tempfile.mkdtemp(prefix=".mlpack-attest-", dir=folder))
    try:
        yield stage
    finally:
        shutil.rmtree(stage, ignore_errors=True)


def _image(built: Built) -> tuple[sbom.ImageFacts | None, dict[str, Any] | None, Path | None]:
    """The image built with no engine (its layout is read back); an engine's image has no layout to read."""
    from mlpack.artifacts import sbom

    details = built.report.get("image") or {}
    layout = built.artifacts.get("oci")
    if not details.get("built") or layout is None or not layout.is_dir():
        return None, None, None
    index = json.loads((layout / "index.json").read_bytes())
    digest = index["manifests"][0]["digest"]
    manifest = json.loads((layout / "blobs" / "sha256" / digest.removeprefix("sha256:")).read_bytes())
    layers = [layer["digest"] for layer in manifest["layers"]]
    with ExitStack() as stack:
        streams: list[IO[bytes]] = [
            stack.enter_context((layout / "blobs" / "sha256" / d.removeprefix("sha256:")).open("rb")) for d in layers
        ]
        found = inventory(streams)
    # On the base: the dependency layer (shared by every model with the same dependencies), then the model's.
    parameters = {"tag": details["tag"], "base_layers": layers[:-2], "dependency_layer": layers[-2]}
    parameters["model_layer"] = layers[-1]
    return sbom.ImageFacts(details["tag"], digest, found), parameters, built.artifacts.get("image_archive")


def attest_build(
    config: Config, built: Built, say: Callable[[str], None], warn: Callable[[str], None] | None = None
) -> None:
    """Write the SBOM and the provenance of a finished build (and sign them with [sign]); record them in
    `built.report`, which the caller writes.

    Without the extra, `warn` says so (stderr, on a terminal or not: `say` is progress, which CI never saw)."""
    absent = missing(signed=config.sign is not None)
    if absent:  # (with [sign], `check` refused this before the build began)
        (warn or say)(f"no SBOM nor provenance: the {absent} package is not installed ({EXTRA})")
        return
    from mlpack.artifacts import provenance, sbom, signing

    metadata, artifacts = built.metadata, built.artifacts
    report_path = artifacts["report"]
    folder, stem = report_path.parent, report_path.stem
    image, image_parameters, archive = _image(built)
    say("writing the SBOM and the provenance" + (" and signing them" if config.sign else ""))
    digests = {kind: sha256_of(artifacts[kind]) for kind in ("wheel", "sdist", "onnx")}
    direct = sbom.wheel_requirements(artifacts["wheel"])
    context = artifacts.get("docker")
    wheelhouse = context / "deps" if context is not None else None
    dependencies = (
        sbom.wheelhouse_dependencies(wheelhouse, direct)
        if wheelhouse is not None and wheelhouse.is_dir()
        else sbom.environment_dependencies(direct)
    )
    document = sbom.build_sbom(
        metadata,
        wheel=artifacts["wheel"],
        onnx_sha256=digests["onnx"],
        wheel_sha256=digests["wheel"],
        dependencies=dependencies,
        image=image,
    )
    key = signing.load_key(config.sign, config.project_dir) if config.sign is not None else None
    subjects = [provenance.Subject(artifacts[kind].name, digests[kind], kind) for kind in ("wheel", "sdist", "onnx")]
    if image is not None:
        subjects.append(provenance.Subject(image.tag, image.digest.removeprefix("sha256:"), "image"))
        if archive is not None:
            subjects.append(provenance.Subject(archive.name, sha256_of(archive), "image_archive"))
    with _staging(folder) as stage:
        written: dict[str, Path] = {"sbom": stage / f"{stem}{SBOM}"}
        written["sbom"].write_bytes(document)
        subjects.append(provenance.Subject(written["sbom"].name, sha256_of(written["sbom"]), "sbom"))
        statement = provenance.statement(
            metadata,
            subjects,
            config_text=config.path.read_text(encoding="utf-8"),
            source_date_epoch=os.environ.get("SOURCE_DATE_EPOCH", "").strip(),
            tools=tool_versions(key is not None),
            image={**image_parameters, "base": config.image.base} if image_parameters is not None else None,
            byproducts=[
                provenance.Subject(artifacts[kind].name, sha256_of(artifacts[kind]), kind)
                for kind in ("card", "predictions")
                if kind in artifacts
            ],
        )
        written["provenance"] = stage / f"{stem}{PROVENANCE}"
        written["provenance"].write_bytes(statement)
        if key is not None:  # the statement's very bytes are the envelope's payload
            written["provenance_envelope"] = stage / f"{stem}{ENVELOPE}"
            written["provenance_envelope"].write_bytes(signing.sign_envelope(key, statement))
            written["model_signature"] = stage / f"{stem}{MODEL_SIGNATURE}"
            signing.sign_model(key, artifacts["onnx"], written["model_signature"])
        else:  # a signature of an earlier build of this version would no longer match: it goes
            for suffix in (ENVELOPE, MODEL_SIGNATURE):
                (folder / f"{stem}{suffix}").unlink(missing_ok=True)
        for kind, path in written.items():
            final = folder / path.name
            os.replace(path, final)
            artifacts[kind] = final
            built.report["artifacts"][kind] = {
                "file": final.name,
                "size": final.stat().st_size,
                "sha256": sha256_of(final),
            }
        if key is not None:  # the public key's hash, as model-signing's bundle names it: never the key
            built.report["signed"] = {"algorithm": key.algorithm, "key_sha256": signing.key_id(key.key.public_key())}
