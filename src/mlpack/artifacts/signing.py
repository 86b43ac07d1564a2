"""Signatures: the model signed with OpenSSF model-signing, the provenance as a DSSE envelope.

`[sign]` names where the private key is (an environment variable holding the PEM text, or a file)
and, for an encrypted key, the variable holding its password. The key is read when the build
starts (a wrong key or password fails before any data is loaded) and again when it signs; it is
never written to disk, to an artifact, to a log or to the registry. model-signing's public API reads
a key from a path, so the key reaches it through a pipe (`/dev/fd/N`), never a file.

Two key kinds, as `[sign]` promises:
- ECDSA P-256 (P-384 and P-521 too): model-signing's own key signer. Its `.model.sig` differs
  from build to build and every one verifies: OpenSSL draws a fresh nonce, and model-signing writes
  its payload's keys in an order that follows PYTHONHASHSEED. The DSSE envelope of the provenance
  is signed here with RFC 6979 deterministic ECDSA, and is byte-identical.
- Ed25519: deterministic by design, and both files are byte-identical. model-signing 1.1 signs with
  EC keys only, so the same bundle (model-signing's payload, its in-toto statement and Sigstore
  bundle format, written with sorted keys) is signed here on model-signing's own classes;
  `mlpack verify` checks it, model-signing's command line cannot (it loads EC keys only).
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import pathlib
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from cryptography import exceptions as crypto_exceptions
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519

from mlpack.config import SignSection
from mlpack.errors import ConfigError, VerificationError

ENVELOPE_MEDIA_TYPE = "application/vnd.dsse.envelope.v1+json"
BUNDLE_MEDIA_TYPE: Final = "application/vnd.dev.sigstore.bundle.v0.3+json"
IN_TOTO = "application/vnd.in-toto+json"
_CURVES: dict[str, type[hashes.SHA256 | hashes.SHA384 | hashes.SHA512]] = {
    "secp256r1": hashes.SHA256,
    "secp384r1": hashes.SHA384,
    "secp521r1": hashes.SHA512,
}

PrivateKey = ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey
PublicKey = ec.EllipticCurvePublicKey | ed25519.Ed25519PublicKey


@dataclass(frozen=True)
class SigningKey:
    key: PrivateKey
    where: str  # "$MLPACK_SIGNING_KEY" or the file: what a message may name (never the key)

    @property
    def algorithm(self) -> str:
        if isinstance(self.key, ed25519.Ed25519PrivateKey):
            return "ed25519"
        return {"secp256r1": "ecdsa-p256", "secp384r1": "ecdsa-p384", "secp521r1": "ecdsa-p521"}[self.key.curve.name]

    def public_pem(self) -> bytes:
        return self.key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )

    def __repr__(self) -> str:  # never the key, whatever prints this
        return f"SigningKey({self.algorithm}, from {self.where})"


def _check_kind(key: Any, where: str, what: str) -> None:
    if isinstance(key, ed25519.Ed25519PrivateKey | ed25519.Ed25519PublicKey):
        return
    if isinstance(key, ec.EllipticCurvePrivateKey | ec.EllipticCurvePublicKey) and key.curve.name in _CURVES:
        return
    curve = getattr(getattr(key, "curve", None), "name", None)
    kind = f"an EC {curve}" if curve else "an " + re.sub(r"(Private|Public)Key$", "", type(key).__name__)
    raise ConfigError(f"{where} holds {kind} {what}: [sign] takes ECDSA P-256 (or P-384, P-521) or Ed25519 keys")


def load_key(section: SignSection, project_dir: Path) -> SigningKey:
    """The private key [sign] names, checked; every failure is one line naming where it was read from."""
    if section.key_file:
        path = project_dir / Path(section.key_file).expanduser()
        where = f"[sign].key_file {section.key_file}"
        try:
            pem = path.read_bytes()
        except OSError as exc:
            raise ConfigError(f"{where} cannot be read: {exc.strerror}") from None
    else:
        where = f"${section.key_env}"  # kept from the tools the build runs since the config was read
        text = os.environ.get(section.key_env, "")
        if not text.strip():
            raise ConfigError(
                f"[sign] reads the signing key from {where}, which is not set: "
                "put the PEM private key there, or name a file in [sign].key_file"
            )
        pem = text.encode("utf-8")
    password = None
    if section.password_env:
        value = os.environ.get(section.password_env)
        if value is None:
            raise ConfigError(f"[sign].password_env names ${section.password_env}, which is not set")
        password = value.encode("utf-8")
    try:
        key = serialization.load_pem_private_key(pem, password)
    except TypeError:  # encrypted without a password, or a password for a key that has none
        need = "is encrypted: set [sign].password_env" if password is None else "is not encrypted: drop password_env"
        raise ConfigError(f"the signing key in {where} {need}") from None
    except ValueError:  # cryptography's words never quote the key; they are not passed on anyway
        raise ConfigError(
            f"the signing key in {where} cannot be read: not a PEM private key, or a wrong password"
        ) from None
    _check_kind(key, where, "private key")
    return SigningKey(key, where)  # type: ignore[arg-type]


def load_public_key(path: Path) -> PublicKey:
    try:
        key = serialization.load_pem_public_key(path.read_bytes())
    except OSError as exc:
        raise ConfigError(f"--key {path} cannot be read: {exc.strerror}") from None
    except ValueError:
        raise ConfigError(f"--key {path} is not a PEM public key") from None
    _check_kind(key, f"--key {path}", "public key")
    return key  # type: ignore[return-value]


def _sign_bytes(key: PrivateKey, data: bytes) -> bytes:
    if isinstance(key, ed25519.Ed25519PrivateKey):
        return key.sign(data)
    return key.sign(data, ec.ECDSA(_CURVES[key.curve.name](), deterministic_signing=True))


def _verify_bytes(key: PublicKey, signature: bytes, data: bytes) -> bool:
    try:
        if isinstance(key, ed25519.Ed25519PublicKey):
            key.verify(signature, data)
        else:
            key.verify(signature, data, ec.ECDSA(_CURVES[key.curve.name]()))
    except crypto_exceptions.InvalidSignature:
        return False
    return True


def key_id(key: PublicKey) -> str:
    """sha256 of the public key's PEM: what model-signing's bundles carry as the key's hint, too."""
    pem = key.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    return hashlib.sha256(pem).hexdigest()


# -- DSSE (github.com/secure-systems-lab/dsse, protocol v1) ----------------------------------------
def pae(payload_type: str, payload: bytes) -> bytes:
    """DSSE's pre-authentication encoding: what is signed, so the type cannot be swapped."""
    kind = payload_type.encode("utf-8")
    return b"DSSEv1 %d %s %d %s" % (len(kind), kind, len(payload), payload)


def sign_envelope(key: SigningKey, payload: bytes, payload_type: str = IN_TOTO) -> bytes:
    signature = _sign_bytes(key.key, pae(payload_type, payload))
    envelope = {
        "payload": base64.b64encode(payload).decode("ascii"),
        "payloadType": payload_type,
        "signatures": [{"keyid": key_id(key.key.public_key()), "sig": base64.b64encode(signature).decode("ascii")}],
    }
    return (json.dumps(envelope, indent=2, sort_keys=True) + "\n").encode("utf-8")


def open_envelope(data: bytes, where: str, public: PublicKey | None) -> bytes:
    """The envelope's payload; with a key, only once one of its signatures verifies with it."""
    try:
        envelope = json.loads(data)
        payload = base64.b64decode(envelope["payload"], validate=True)
        payload_type = envelope["payloadType"]
        signatures = [base64.b64decode(s["sig"], validate=True) for s in envelope["signatures"]]
    except (ValueError, KeyError, TypeError) as exc:
        raise VerificationError(f"{where} is not a DSSE envelope ({type(exc).__name__})") from None
    if payload_type != IN_TOTO:
        raise VerificationError(f"{where} carries a {payload_type!r} payload, not an in-toto statement")
    if public is not None and not any(_verify_bytes(public, sig, pae(payload_type, payload)) for sig in signatures):
        raise VerificationError(f"{where}: its signature does not verify with this key (another key, or changed)")
    return payload


# -- model-signing -----------------------------------------------------------------------------------
@contextmanager
def _key_pipe(key: SigningKey) -> Iterator[str]:
    """A path model-signing can read the key from, that is no file: the read end of a pipe."""
    pem = key.key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    read, write = os.pipe()
    try:
        os.write(write, pem)  # a PEM key is far below a pipe's 64 KiB buffer
        os.close(write)
        write = -1
        yield f"/dev/fd/{read}"
    finally:
        if write >= 0:
            os.close(write)
        os.close(read)


def _hashing() -> Any:
    """model-signing's hashing of one file, with no ignore list: its default lists the git paths from a
    set, whose order (in the signed payload) follows PYTHONHASHSEED; a single file has none to ignore."""
    from model_signing import hashing

    return hashing.Config().set_ignored_paths(paths=[], ignore_git_paths=False)


def sign_model(key: SigningKey, model: Path, signature: Path) -> None:
    """model-signing's signature of the model file (a Sigstore bundle, no network, no transparency log)."""
    from model_signing import signing as model_signing

    if isinstance(key.key, ed25519.Ed25519PrivateKey):
        _ed25519_sign_model(key.key, model, signature)
        return
    with _key_pipe(key) as path:
        config = model_signing.Config().set_hashing_config(_hashing())
        config.use_elliptic_key_signer(private_key=path).sign(model, signature)


def verify_model(public_key: Path, model: Path, signature: Path, *, shown: str) -> None:
    """model-signing's check of the model against its signature; `shown` names the model in the message."""
    from model_signing import hashing
    from model_signing import verifying as model_verifying
    from model_signing._signing import sign_sigstore_pb

    key = load_public_key(public_key)
    try:
        if isinstance(key, ed25519.Ed25519PublicKey):
            expected = _Ed25519Verifier(key).verify(sign_sigstore_pb.Signature.read(signature))
            if hashing.Config().hash(model) != expected:
                raise ValueError("Signature mismatch")
        else:
            model_verifying.Config().use_elliptic_key_verifier(public_key=public_key).verify(model, signature)
    except (ValueError, KeyError, crypto_exceptions.InvalidSignature) as exc:
        text = str(exc)
        if "mismatch" in text.lower() and "Key" not in text:
            raise VerificationError(f"{shown} does not match its model-signing signature {signature.name}") from None
        raise VerificationError(
            f"{signature.name}: the model-signing signature does not verify with --key {public_key} "
            "(another key, or a changed signature)"
        ) from None


def _ed25519_sign_model(key: ed25519.Ed25519PrivateKey, model: Path, signature: Path) -> None:
    from google.protobuf import json_format
    from model_signing._signing import sign_sigstore_pb, signing
    from sigstore_models import intoto as intoto_pb
    from sigstore_models.bundle import v1 as bundle_pb
    from sigstore_models.common import v1 as common_pb

    payload = signing.Payload(_hashing().hash(model))
    # sort_keys: model-signing writes the statement's Struct in map order, which follows PYTHONHASHSEED
    raw = json_format.MessageToJson(payload.statement.pb, sort_keys=True).encode("utf-8")
    envelope = intoto_pb.Envelope(
        payload=base64.b64encode(raw),
        payload_type=signing._IN_TOTO_JSON_PAYLOAD_TYPE,
        signatures=[intoto_pb.Signature(sig=base64.b64encode(key.sign(sign_sigstore_pb.pae(raw))), keyid="")],
    )
    material = bundle_pb.VerificationMaterial(
        public_key=common_pb.PublicKeyIdentifier(hint=key_id(key.public_key())), tlog_entries=[]
    )
    bundle = bundle_pb.Bundle(media_type=BUNDLE_MEDIA_TYPE, verification_material=material, dsse_envelope=envelope)
    sign_sigstore_pb.Signature(bundle).write(pathlib.Path(signature))


def _ed25519_verifier_class() -> Any:
    from model_signing._signing import sign_sigstore_pb

    class Verifier(sign_sigstore_pb.Verifier):  # type: ignore[misc]
        def __init__(self, key: ed25519.Ed25519PublicKey) -> None:
            self._key = key

        def _verify_bundle(self, bundle: Any) -> tuple[str, bytes]:
            if bundle.verification_material.public_key.hint != key_id(self._key):
                raise ValueError("Key mismatch: the signature names another public key")
            envelope = bundle.dsse_envelope
            if not _verify_bytes(self._key, envelope.signatures[0].sig, sign_sigstore_pb.pae(envelope.payload)):
                raise ValueError("Key: the signature does not verify")
            return envelope.payload_type, envelope.payload

    return Verifier


def _Ed25519Verifier(key: ed25519.Ed25519PublicKey) -> Any:  # noqa: N802 - a class, made on first use
    return _ed25519_verifier_class()(key)
