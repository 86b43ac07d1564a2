"""`mlpack build` with [sign], as a user runs it: the key from an environment variable or a file, its
mistakes refused before any data is read, and the key in no artifact, log or registry document."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed448, rsa
from pymongo import MongoClient

from tests.helpers.cli import RECORDER, assert_clean_error
from tests.helpers.projects import Project

SIGN = '\n[sign]\nkey_env = "MY_SIGNING_KEY"\n'


def pem(key: Any, password: bytes | None = None) -> str:
    encryption = serialization.BestAvailableEncryption(password) if password else serialization.NoEncryption()
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption).decode()


def test_a_signed_build_verifies_and_the_key_is_nowhere(
    churn_project: Project,
    run: Any,
    mongo_client: MongoClient[Any],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    text = pem(key, b"pass phrase 7")
    monkeypatch.setenv("MY_SIGNING_KEY", text)
    monkeypatch.setenv("MY_KEY_PASSWORD", "pass phrase 7")
    churn_project.config.write_text(
        churn_project.config.read_text() + SIGN + 'password_env = "MY_KEY_PASSWORD"\n', encoding="utf-8"
    )
    result = run("build", churn_project.path, "--json", "-v")
    assert result.code == 0, result.err
    dist = churn_project.path / "dist"
    public = tmp_path / "signer.pub"
    public.write_bytes(
        key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    report = json.loads((dist / "churn-model-1.0.0.json").read_text())
    assert {"sbom", "provenance", "provenance_envelope", "model_signature"} <= set(report["artifacts"])
    for artifact in ("churn_model-1.0.0-py3-none-any.whl", "churn-model-1.0.0.onnx"):
        checked = run("verify", dist / artifact, "--key", public)
        assert checked.code == 0 and "signatures checked" in checked.out, checked.err
    record = mongo_client[churn_project.database]["mlpack_models"].find_one({"name": "churn-model"})
    assert record is not None and "model_signature" in record["artifacts"]
    scalar = key.private_numbers().private_value.to_bytes(32, "big")
    needles = [line for line in text.splitlines() if not line.startswith("-----")]
    needles += [scalar.hex(), base64.b64encode(scalar).decode(), "pass phrase 7"]
    documents = [json.dumps(d, default=str) for d in mongo_client[churn_project.database]["mlpack_models"].find()]
    texts = [result.out, result.err, checked.out, *documents]
    texts += [path.read_bytes().decode("latin-1") for path in dist.rglob("*") if path.is_file()]
    for needle in needles:
        assert all(needle not in text for text in texts), needle[:12]


@pytest.mark.parametrize(
    ("setup", "message"),
    [
        ({}, "[sign] reads the signing key from $MY_SIGNING_KEY, which is not set"),
        ({"MY_SIGNING_KEY": "hello"}, "cannot be read: not a PEM private key, or a wrong password"),
        ({"MY_SIGNING_KEY": "rsa"}, "holds an RSA private key: [sign] takes ECDSA P-256"),
        (
            {"MY_SIGNING_KEY": "ed448"},
            "holds an Ed448 private key: [sign] takes ECDSA P-256 (or P-384, P-521) or Ed25519",
        ),
        ({"MY_SIGNING_KEY": "secp256k1"}, "holds an EC secp256k1 private key"),
        ({"MY_SIGNING_KEY": "encrypted"}, "is encrypted: set [sign].password_env"),
    ],
)
def test_a_bad_key_is_refused_before_any_data_is_read(
    setup: dict[str, str],
    message: str,
    churn_project: Project,
    run: Any,
    monkeypatch: pytest.MonkeyPatch,
    mongo_client: MongoClient[Any],
) -> None:
    keys = {
        "rsa": lambda: pem(rsa.generate_private_key(public_exponent=65537, key_size=2048)),
        "ed448": lambda: pem(ed448.Ed448PrivateKey.generate()),
        "secp256k1": lambda: pem(ec.generate_private_key(ec.SECP256K1())),
        "encrypted": lambda: pem(ec.generate_private_key(ec.SECP256R1()), b"secret"),
    }
    monkeypatch.delenv("MY_SIGNING_KEY", raising=False)
    for name, value in setup.items():
        monkeypatch.setenv(name, keys[value]() if value in keys else value)
    churn_project.config.write_text(churn_project.config.read_text() + SIGN, encoding="utf-8")
    result = run("build", churn_project.path)
    assert_clean_error(result, 2, message)
    assert "secret" not in result.err and "PRIVATE KEY" not in result.err
    assert not (churn_project.path / "dist").exists()  # refused before training, nothing written
    assert mongo_client[churn_project.database]["mlpack_models"].count_documents({}) == 0


def test_a_wrong_password_and_a_missing_key_file(
    churn_project: Project, run: Any, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    key_file = tmp_path / "signer.pem"
    key_file.write_text(pem(ec.generate_private_key(ec.SECP256R1()), b"right"))
    monkeypatch.setenv("MY_KEY_PASSWORD", "wrong")
    base = churn_project.config.read_text()
    churn_project.config.write_text(
        base + f'\n[sign]\nkey_file = "{key_file}"\npassword_env = "MY_KEY_PASSWORD"\n', encoding="utf-8"
    )
    assert_clean_error(run("build", churn_project.path), 2, f"[sign].key_file {key_file}", "wrong password")
    churn_project.config.write_text(base + '\n[sign]\nkey_file = "nowhere.pem"\n', encoding="utf-8")
    assert_clean_error(run("build", churn_project.path), 2, "[sign].key_file nowhere.pem cannot be read")
    churn_project.config.write_text(base + '\n[sign]\nkey_fle = "x.pem"\n', encoding="utf-8")
    assert_clean_error(run("build", churn_project.path), 2, "unknown key [sign].key_fle (did you mean 'key_file'?)")
    churn_project.config.write_text(base + '\n[sign]\nkey_env = "not a name"\n', encoding="utf-8")
    assert_clean_error(run("build", churn_project.path), 2, "[sign].key_env 'not a name' is not an environment")


def test_no_tool_the_build_runs_inherits_the_signing_key_or_the_database_uri(
    churn_project: Project, run: Any, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """python -m build, twine and pip run with the environment minus the variables holding secrets:
    every Python child records the variables it was given (a sitecustomize on PYTHONPATH)."""
    (tmp_path / "recorder").mkdir()
    (tmp_path / "recorder" / "sitecustomize.py").write_text(RECORDER, encoding="utf-8")
    record = tmp_path / "children.log"
    monkeypatch.setenv("PYTHONPATH", str(tmp_path / "recorder"))
    monkeypatch.setenv("ENV_RECORD", str(record))
    monkeypatch.setenv("MY_SIGNING_KEY", pem(ec.generate_private_key(ec.SECP256R1())))
    churn_project.config.write_text(churn_project.config.read_text() + SIGN, encoding="utf-8")
    result = run("build", churn_project.path, "-q")
    assert result.code == 0, result.err
    children = [line.split("\t") for line in record.read_text(encoding="utf-8").splitlines()]
    assert any("build" in argv for argv, _ in children) and any("twine" in argv for argv, _ in children), children
    for argv, names in children:
        assert "MY_SIGNING_KEY" not in names.split(","), argv
        assert "MLPACK_TEST_URI" not in names.split(","), argv  # the project's [source].uri_env
        assert "ENV_RECORD" in names.split(",")  # the rest of the environment is passed on


def test_the_config_s_secret_variables_never_reach_a_tool_the_build_runs(
    churn_project: Project, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Declared when the config is read, by any command: not only once the key is loaded (a tool run
    before that, or by a command that never signs, would have inherited them)."""
    from mlpack.config import load_config
    from mlpack.redaction import child_environment, forget_all

    forget_all()
    for name in ("MY_SIGNING_KEY", "MY_KEY_PASSWORD", "UNRELATED_SETTING"):
        monkeypatch.setenv(name, "x" * 12)
    assert {"MY_SIGNING_KEY", "MY_KEY_PASSWORD", "MLPACK_TEST_URI"} <= set(child_environment())
    churn_project.config.write_text(
        churn_project.config.read_text() + SIGN + 'password_env = "MY_KEY_PASSWORD"\n', encoding="utf-8"
    )
    load_config(churn_project.path)
    passed = child_environment()
    assert not {"MY_SIGNING_KEY", "MY_KEY_PASSWORD", "MLPACK_TEST_URI"} & set(passed)  # [source].uri_env too
    assert passed["UNRELATED_SETTING"] == "x" * 12
    forget_all()


def test_a_demanded_image_that_fails_leaves_the_rest_signed_and_attested(
    churn_project: Project,
    run: Any,
    mongo_client: MongoClient[Any],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    """`--image` whose base cannot be had (here: the engine's store, with no engine) is exit 3, and the rest
    of the build is in place and recorded as built, as the README says. That rest was recorded with no SBOM,
    provenance or signatures, though [sign] asked for them: the image's failure skipped the attestation, so
    the version's wheel could not be verified, and publish would have sent it unsigned."""
    key = ec.generate_private_key(ec.SECP256R1())
    monkeypatch.setenv("MY_SIGNING_KEY", pem(key))
    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path / 'nothing.sock'}")
    image = '\n[image]\nbase = "docker-daemon:python:3.11-slim"\npython = "3.11"\n'
    churn_project.config.write_text(churn_project.config.read_text() + SIGN + image, encoding="utf-8")
    result = run("build", churn_project.path, "--image")
    assert_clean_error(result, 3, "no Docker engine answers", "churn-model-1.0.0.docker")
    public = tmp_path / "signer.pub"
    public.write_bytes(
        key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    dist = churn_project.path / "dist"
    checked = run("verify", dist / "churn_model-1.0.0-py3-none-any.whl", "--key", public)
    assert checked.code == 0 and "signatures checked" in checked.out, checked.err
    record = mongo_client[churn_project.database]["mlpack_models"].find_one({"name": "churn-model"})
    assert record is not None and record["status"] == "built"
    assert {"sbom", "provenance", "provenance_envelope", "model_signature"} <= set(record["artifacts"])
