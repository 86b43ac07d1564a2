"""SBOM, provenance and signatures of a build (artifacts/attest.py, sbom.py, provenance.py, signing.py).

Each document is checked by a party other than mlpack: the SBOM by cyclonedx-python-lib's strict
CycloneDX 1.6 schema validator, the provenance by in-toto-attestation's protobuf types, the model's
signature by model-signing's own command line, the DSSE envelope by securesystemslib.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from mlpack.build import BuildResult
from tests.helpers.attested import build_in, key_pair

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Path, Path]]:
    folder = tmp_path_factory.mktemp("keys")
    return {kind: key_pair(folder, kind) for kind in ("ecdsa", "ed25519")}


@pytest.fixture(scope="module")
def signed(keys: dict[str, tuple[Path, Path]], tmp_path_factory: pytest.TempPathFactory) -> BuildResult:
    return build_in(tmp_path_factory.mktemp("signed"), sign={"key_file": str(keys["ecdsa"][0])})


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def load(path: Path) -> dict[str, Any]:
    document: dict[str, Any] = json.loads(path.read_bytes())
    return document


# -- the SBOM -------------------------------------------------------------------------------------
def test_the_sbom_is_valid_cyclonedx_1_6(signed: BuildResult) -> None:
    from cyclonedx.schema import SchemaVersion
    from cyclonedx.validation.json import JsonStrictValidator

    text = signed.artifacts["sbom"].read_text(encoding="utf-8")
    assert JsonStrictValidator(SchemaVersion.V1_6).validate_str(text) is None
    document = json.loads(text)
    assert document["bomFormat"] == "CycloneDX" and document["specVersion"] == "1.6"
    # The validator can fail: a model card with a misspelt key is refused.
    model = next(c for c in document["components"] if c["type"] == "machine-learning-model")
    model["modelCard"]["modelParameter"] = model["modelCard"].pop("modelParameters")
    assert JsonStrictValidator(SchemaVersion.V1_6).validate_str(json.dumps(document)) is not None


def test_the_sbom_holds_the_model_card_and_the_training_data(signed: BuildResult) -> None:
    document = load(signed.artifacts["sbom"])
    metadata = signed.metadata
    by_ref = {c["bom-ref"]: c for c in document["components"]}
    model = by_ref["model"]
    assert model["type"] == "machine-learning-model"
    assert model["hashes"] == [{"alg": "SHA-256", "content": sha256(signed.artifacts["onnx"])}]
    card = model["modelCard"]
    assert card["modelParameters"]["task"] == "classification"
    assert card["modelParameters"]["datasets"] == [{"ref": "training-data"}]
    metrics = {m["type"]: float(m["value"]) for m in card["quantitativeAnalysis"]["performanceMetrics"]}
    assert metrics == pytest.approx(metadata["metrics"]) and "accuracy" in metrics
    data = by_ref["training-data"]
    assert data["type"] == "data" and data["name"] == "db.customers"
    assert data["hashes"] == [{"alg": "SHA-256", "content": metadata["data"]["sha256"]}]
    contents = {p["name"]: p["value"] for p in data["data"][0]["contents"]["properties"]}
    assert contents["mlpack:documents"] == "200" == str(metadata["data"]["rows"])
    assert contents["mlpack:filter"] == "{}" and contents["mlpack:fingerprint"] == metadata["data"]["sha256"]


def test_the_sbom_lists_every_file_of_the_wheel_and_what_it_pulls(signed: BuildResult) -> None:
    document = load(signed.artifacts["sbom"])
    wheel = document["metadata"]["component"]
    assert wheel["hashes"] == [{"alg": "SHA-256", "content": sha256(signed.artifacts["wheel"])}]
    with zipfile.ZipFile(signed.artifacts["wheel"]) as archive:
        actual = {
            name: hashlib.sha256(archive.read(name)).hexdigest()
            for name in archive.namelist()
            if not name.endswith("RECORD")
        }
    assert {f["name"]: f["hashes"][0]["content"] for f in wheel["components"]} == actual
    packages = {c["name"]: c for c in document["components"] if c.get("purl", "").startswith("pkg:pypi/")}
    # onnxruntime and numpy (the wheel's requirements) and what onnxruntime pulls in turn.
    from importlib.metadata import version

    for name in ("onnxruntime", "numpy", "protobuf"):
        assert packages[name]["version"] == version(name)
        assert packages[name]["purl"] == f"pkg:pypi/{name}@{version(name)}"
        assert len(packages[name]["hashes"][0]["content"]) == 64
    requirement = {p["name"]: p["value"] for p in packages["onnxruntime"]["properties"]}["mlpack:requirement"]
    assert requirement.startswith("onnxruntime>=")
    assert "mlpack-onnx" in {t["name"] for t in document["metadata"]["tools"]["components"]}


# -- the provenance -------------------------------------------------------------------------------
def test_the_provenance_names_every_artifact_and_what_made_it(signed: BuildResult) -> None:
    from google.protobuf import json_format
    from in_toto_attestation.predicates.provenance.v1 import provenance_pb2
    from in_toto_attestation.v1 import statement_pb2
    from in_toto_attestation.v1.statement import Statement

    document = load(signed.artifacts["provenance"])
    Statement.copy_from_pb(json_format.ParseDict(document, statement_pb2.Statement())).validate()
    json_format.ParseDict(document["predicate"], provenance_pb2.Provenance())
    assert document["_type"] == "https://in-toto.io/Statement/v1"
    assert document["predicateType"] == "https://slsa.dev/provenance/v1"
    subjects = {s["name"]: s["digest"]["sha256"] for s in document["subject"]}
    expected = {signed.artifacts[k].name: sha256(signed.artifacts[k]) for k in ("wheel", "sdist", "onnx", "sbom")}
    assert subjects == expected
    definition = document["predicate"]["buildDefinition"]
    config_hash = hashlib.sha256(b"# test config\n").hexdigest()
    assert definition["externalParameters"]["config"]["sha256"] == config_hash
    assert definition["internalParameters"]["created"] == "2026-01-01T00:00:00Z"
    assert definition["internalParameters"]["SOURCE_DATE_EPOCH"] == os.environ.get("SOURCE_DATE_EPOCH", "")
    data = next(d for d in definition["resolvedDependencies"] if d.get("name") == "db.customers")
    assert data["digest"]["sha256"] == signed.metadata["data"]["sha256"]
    assert data["annotations"]["documents"] == 200
    byproducts = {b["name"]: b["digest"]["sha256"] for b in document["predicate"]["runDetails"]["byproducts"]}
    assert byproducts["test-model-1.0.0.html"] == sha256(signed.artifacts["card"])  # the model card
    versions = document["predicate"]["runDetails"]["builder"]["version"]
    for tool in ("mlpack", "scikit-learn", "skl2onnx", "onnx", "onnxruntime", "numpy", "python", "model-signing"):
        assert versions[tool], tool
    assert versions["python"] == ".".join(map(str, sys.version_info[:3]))


SCRIPT = """
import sys
from pathlib import Path
from tests.helpers.attested import build_in
build_in(Path(sys.argv[1]), sign={"key_file": sys.argv[2]} if len(sys.argv) > 2 else None)
"""


def build_in_process(folder: Path, seed: str, *key: str) -> None:
    env = {**os.environ, "PYTHONHASHSEED": seed, "SOURCE_DATE_EPOCH": "1767225600"}
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(folder), *key], capture_output=True, text=True, env=env, check=False
    )
    assert done.returncode == 0, done.stderr[-3000:]


@pytest.mark.parametrize("kind", ["ecdsa", "ed25519"])
def test_two_processes_and_folders_write_the_same_sbom_provenance_and_envelope(
    kind: str, keys: dict[str, tuple[Path, Path]], tmp_path: Path
) -> None:
    key = str(keys[kind][0])
    build_in_process(tmp_path / "one", "1", key)
    build_in_process(tmp_path / "two", "2", key)
    one, two = tmp_path / "one" / "dist", tmp_path / "two" / "dist"
    recorded = load(one / "test-model-1.0.0.provenance.json")["predicate"]["buildDefinition"]["internalParameters"]
    assert recorded["SOURCE_DATE_EPOCH"] == "1767225600"
    for suffix in (".cdx.json", ".provenance.json", ".provenance.dsse.json", ".onnx"):
        name = f"test-model-1.0.0{suffix}"
        assert (one / name).read_bytes() == (two / name).read_bytes(), name
    signatures = [(folder / "test-model-1.0.0.model.sig").read_bytes() for folder in (one, two)]
    # model-signing's ECDSA draws a fresh nonce: two valid signatures that differ. Ed25519 is deterministic.
    assert (signatures[0] == signatures[1]) is (kind == "ed25519")


# -- the signatures -------------------------------------------------------------------------------
def test_model_signings_own_command_line_accepts_the_signature(
    signed: BuildResult, keys: dict[str, tuple[Path, Path]], tmp_path: Path
) -> None:
    def model_signing_verify(public: Path, model: Path) -> subprocess.CompletedProcess[str]:
        command = [sys.executable, "-m", "model_signing", "verify", "key", "--signature"]
        command += [str(signed.artifacts["model_signature"]), "--public_key", str(public), str(model)]
        return subprocess.run(command, capture_output=True, text=True, check=False)

    done = model_signing_verify(keys["ecdsa"][1], signed.artifacts["onnx"])
    assert done.returncode == 0 and "Verification succeeded" in done.stdout, done.stdout + done.stderr
    assert model_signing_verify(keys["ed25519"][1], signed.artifacts["onnx"]).returncode != 0  # another key
    changed = tmp_path / "model.onnx"
    data = bytearray(signed.artifacts["onnx"].read_bytes())
    data[len(data) // 2] ^= 1
    changed.write_bytes(bytes(data))
    assert model_signing_verify(keys["ecdsa"][1], changed).returncode != 0  # one byte of the model


def test_securesystemslib_verifies_the_provenance_envelope(
    signed: BuildResult, keys: dict[str, tuple[Path, Path]]
) -> None:
    from securesystemslib.dsse import Envelope
    from securesystemslib.exceptions import VerificationError
    from securesystemslib.signer import SSlibKey

    envelope = Envelope.from_dict(load(signed.artifacts["provenance_envelope"]))
    assert envelope.payload == signed.artifacts["provenance"].read_bytes()
    # securesystemslib only tries keys whose keyid is the signature's (DSSE calls keyid a mere hint):
    # each key is given that keyid, so it is the signature that decides.
    (keyid,) = envelope.signatures
    public = serialization.load_pem_public_key(keys["ecdsa"][1].read_bytes())
    assert envelope.verify([SSlibKey.from_crypto(public, keyid=keyid)], 1)  # type: ignore[arg-type]
    other = ec.generate_private_key(ec.SECP256R1()).public_key()
    with pytest.raises(VerificationError):
        envelope.verify([SSlibKey.from_crypto(other, keyid=keyid)], 1)
    payload = json.loads(base64.b64decode(load(signed.artifacts["provenance_envelope"])["payload"]))
    assert payload["predicateType"] == "https://slsa.dev/provenance/v1"


def test_the_key_is_in_no_artifact(signed: BuildResult, keys: dict[str, tuple[Path, Path]]) -> None:
    pem = keys["ecdsa"][0].read_text(encoding="utf-8")
    secret_lines = [line for line in pem.splitlines() if line and not line.startswith("-----")]
    private = serialization.load_pem_private_key(pem.encode(), None)
    scalar = private.private_numbers().private_value.to_bytes(32, "big")  # type: ignore[union-attr]
    needles = [line.encode() for line in secret_lines] + [scalar, scalar.hex().encode(), base64.b64encode(scalar)]
    folder = signed.artifacts["report"].parent
    files = [p for p in folder.rglob("*") if p.is_file()]
    for path in files:
        contents = [path.read_bytes()]
        if path.name.endswith(".whl"):
            with zipfile.ZipFile(path) as archive:
                contents += [archive.read(n) for n in archive.namelist()]
        elif path.name.endswith(".tar.gz"):
            with tarfile.open(path) as archive:
                contents += [archive.extractfile(m).read() for m in archive.getmembers() if m.isfile()]  # type: ignore[union-attr]
        for needle in needles:
            assert all(needle not in content for content in contents), (path.name, needle[:8])
    report = load(signed.artifacts["report"])
    assert report["signed"]["algorithm"] == "ecdsa-p256"
    assert {"sbom", "provenance", "provenance_envelope", "model_signature"} <= set(report["artifacts"])
