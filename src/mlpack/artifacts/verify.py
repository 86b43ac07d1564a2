"""`mlpack verify ARTIFACT [--key PUBLIC]`: is this what the build made, and did the key's owner sign it?

ARTIFACT is a wheel, an sdist, a .onnx, an image archive (`NAME-VERSION.image.tar`) or layout
(`NAME-VERSION.oci/`) in the folder the build wrote it to, where its SBOM and provenance sit too.
Everything is recomputed from the bytes, nothing is taken from a report:

- the provenance statement (and, signed, its DSSE envelope: the statement must be the envelope's
  payload, byte for byte, and with --key a signature must verify);
- the artifact's sha256 against its provenance subject; inside a wheel, every file against its
  RECORD, RECORD against the SBOM's list of the wheel's files, the embedded model against the .onnx
  subject; inside an image, every blob against its digest, each layer against its diff_id, and the
  Python and Debian packages the layers hold against the SBOM's list;
- the SBOM against its own subject, and its model, wheel and image hashes against the subjects;
- with --key, the model against its model-signing signature (`NAME-VERSION.model.sig`).

The first mismatch is a VerificationError (exit 1) naming the file that no longer matches.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import re
import shutil
import tarfile
import tempfile
import zipfile
import zlib
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from mlpack.artifacts import provenance, sbom, signing
from mlpack.artifacts.dist import sha256_of
from mlpack.artifacts.inventory import Inventory, inventory
from mlpack.artifacts.oci_install import SITE
from mlpack.errors import ConfigError, VerificationError

if TYPE_CHECKING:
    from mlpack.artifacts.oci_remote import Connection

CHUNK = 1 << 20
_IMAGE_MODEL = re.compile(re.escape(SITE) + r"/[A-Za-z0-9_]+/model\.onnx")  # the model package's own file
MAX_DOCUMENT_BYTES = 64 << 20  # an image's SBOM is a few hundred KiB; the provenance a few KiB


@dataclass
class Verified:
    artifact: Path
    checks: list[str] = field(default_factory=list)  # one line per thing found to match
    signed: bool = False  # a signature was checked with --key
    unsigned_note: str = ""  # why no signature was checked


def _sha256_stream(stream: IO[bytes] | gzip.GzipFile) -> str:
    digest = hashlib.sha256()
    for block in iter(lambda: stream.read(CHUNK), b""):
        digest.update(block)
    return digest.hexdigest()


@dataclass(frozen=True)
class Build:
    """One build's attestations, found next to the artifact."""

    folder: Path
    stem: str  # NAME-VERSION
    statement: dict[str, Any]
    subjects: dict[str, str]  # name → sha256
    kinds: dict[str, str]  # kind → subject name

    def path(self, suffix: str) -> Path:
        return self.folder / f"{self.stem}{suffix}"


def _small(path: Path) -> bytes:
    """A build document's bytes; one larger than any mlpack writes is refused unread."""
    if path.stat().st_size > MAX_DOCUMENT_BYTES:
        raise VerificationError(f"{path.name} is larger than {MAX_DOCUMENT_BYTES >> 20} MiB: not one mlpack writes")
    return path.read_bytes()


def _find_build(artifact: Path) -> tuple[Path, bytes]:
    folder = artifact.parent
    for candidate in sorted(folder.glob("*.provenance.json")):
        try:
            names = {s.get("name") for s in json.loads(_small(candidate)).get("subject", [])}
        except (ValueError, AttributeError, TypeError, OSError, RecursionError, VerificationError):
            continue
        layout = candidate.name.removesuffix(".provenance.json") + ".oci"  # by the image manifest it holds
        if artifact.name in names or (artifact.is_dir() and artifact.name == layout):
            return candidate, _small(candidate)
    raise VerificationError(
        f"no provenance in {folder} names {artifact.name} (mlpack build writes NAME-VERSION.provenance.json "
        "next to its artifacts): nothing to verify it against"
    )


def _load_build(artifact: Path, key: Path | None, result: Verified) -> Build:
    path, data = _find_build(artifact)
    stem = path.name.removesuffix(".provenance.json")
    envelope = path.with_name(f"{stem}.provenance.dsse.json")
    public = signing.load_public_key(key) if key is not None else None
    if envelope.is_file():
        payload = signing.open_envelope(_small(envelope), envelope.name, public)
        if payload != data:
            raise VerificationError(f"{path.name} is not the statement signed in {envelope.name}: it was changed")
        if public is not None:
            result.signed = True
            result.checks.append(f"{envelope.name}: the provenance's signature verifies with {key}")
        else:
            result.unsigned_note = f"{envelope.name} holds a signature: pass --key PUBLIC to check it"
    elif public is not None:
        raise VerificationError(f"{stem} was not signed: there is no {envelope.name} next to {artifact.name}")
    else:
        result.unsigned_note = "the build was not signed ([sign] was not set)"
    read = provenance.read(data, path.name)
    kinds = {s.get("annotations", {}).get("kind", ""): s["name"] for s in read["document"]["subject"]}
    result.checks.append(f"{path.name}: an in-toto statement, SLSA provenance v1, {len(read['subjects'])} subjects")
    return Build(artifact.parent, stem, read["document"], read["subjects"], kinds)


def _against_subject(build: Build, name: str, digest: str, result: Verified) -> None:
    expected = build.subjects.get(name)
    if expected is None:
        raise VerificationError(f"{name} is not a subject of {build.stem}.provenance.json")
    if digest != expected:
        raise VerificationError(f"{name} does not match its sha256 in {build.stem}.provenance.json: it was changed")
    result.checks.append(f"{name}: sha256 matches the provenance")


# -- the SBOM -----------------------------------------------------------------------------------
def _load_sbom(build: Build, result: Verified) -> dict[str, Any]:
    path = build.path(".cdx.json")
    if not path.is_file():
        raise VerificationError(f"{path.name} (the SBOM) is missing next to the artifact")
    _against_subject(build, path.name, sha256_of(path), result)
    document: dict[str, Any] = json.loads(_small(path))
    by_ref = {c.get("bom-ref"): c for c in document.get("components", [])}
    by_ref[sbom.WHEEL_REF] = document["metadata"]["component"]
    for ref, kind in ((sbom.MODEL_REF, "onnx"), (sbom.WHEEL_REF, "wheel"), (sbom.IMAGE_REF, "image")):
        subject = build.kinds.get(kind)
        if subject is None:
            continue
        hashes = [h["content"] for h in by_ref.get(ref, {}).get("hashes", []) if h.get("alg") == "SHA-256"]
        if hashes != [build.subjects[subject]]:
            raise VerificationError(f"{path.name} names another {kind} than the provenance's {subject}")
    result.checks.append(f"{path.name}: its model, wheel and image hashes are the provenance's")
    return document


# -- a wheel ------------------------------------------------------------------------------------
def _verify_wheel(wheel: Path, build: Build, key: Path | None, result: Verified) -> None:
    try:
        record = sbom.wheel_record(wheel)
        archive = zipfile.ZipFile(wheel)
    except (zipfile.BadZipFile, ValueError, KeyError, OSError) as exc:
        raise VerificationError(f"{wheel.name} is not a readable wheel: {exc}") from None
    with archive:
        for info in archive.infolist():
            if info.filename.endswith(".dist-info/RECORD"):
                continue
            entry = record.get(info.filename)
            if entry is None:
                raise VerificationError(f"{wheel.name}: {info.filename} is not in its RECORD (added after the build)")
            if info.file_size != entry[1]:  # before reading: a crafted size is refused unread
                raise VerificationError(f"{wheel.name}: {info.filename} does not match its RECORD size")
            try:
                with archive.open(info) as stream:
                    digest = _sha256_stream(stream)
            except (zipfile.BadZipFile, zlib.error, EOFError) as exc:  # a changed byte inside its compressed data
                raise VerificationError(
                    f"{wheel.name}: {info.filename} was changed: its bytes are damaged ({exc})"
                ) from None
            if digest != entry[0]:
                raise VerificationError(f"{wheel.name}: {info.filename} does not match its RECORD hash")
        missing = sorted(set(record) - set(archive.namelist()))
        if missing:
            raise VerificationError(f"{wheel.name}: {missing[0]} is in its RECORD but not in the wheel")
        result.checks.append(f"{wheel.name}: all {len(record)} files match its RECORD")
        _against_subject(build, wheel.name, sha256_of(wheel), result)
        document = _load_sbom(build, result)
        listed = {
            c["name"]: [h["content"] for h in c.get("hashes", [])]
            for c in document["metadata"]["component"].get("components", [])
        }
        if listed != {path: [digest] for path, (digest, _) in record.items()}:
            differs = sorted(set(listed.items()) ^ {(p, d) for p, (d, _) in record.items()}, key=str)  # type: ignore[arg-type]
            raise VerificationError(f"{build.stem}.cdx.json does not list {wheel.name}'s RECORD: {differs[:1]}")
        result.checks.append(f"{build.stem}.cdx.json lists every file of {wheel.name} with its RECORD hash")
        models = [n for n in archive.namelist() if n.endswith("/model.onnx") and n.count("/") == 1]
        onnx = build.kinds.get("onnx")
        if models and onnx:
            model_bytes = archive.read(models[0])
            if hashlib.sha256(model_bytes).hexdigest() != build.subjects[onnx]:
                raise VerificationError(f"{wheel.name}: {models[0]} is not the model of the provenance ({onnx})")
            # The provenance's hash of it, not the file beside the wheel (which may have changed since).
            result.checks.append(f"{wheel.name}: {models[0]} is the provenance's {onnx} (its sha256)")
            if key is not None:
                with tempfile.TemporaryDirectory(prefix="mlpack-verify-") as folder:
                    copy = Path(folder) / "model.onnx"
                    copy.write_bytes(model_bytes)
                    _verify_model_signature(copy, f"{wheel.name}: {models[0]}", build, key, result)


def _verify_model_signature(model: Path, shown: str, build: Build, key: Path, result: Verified) -> None:
    signature = build.path(".model.sig")
    if not signature.is_file():
        raise VerificationError(f"{build.stem} was not signed: there is no {signature.name}")
    signing.verify_model(key, model, signature, shown=shown)
    result.checks.append(f"{shown}: model-signing's signature {signature.name} verifies with {key}")


def _verify_onnx(model: Path, build: Build, key: Path | None, result: Verified) -> None:
    _against_subject(build, model.name, sha256_of(model), result)
    _load_sbom(build, result)
    if key is not None:
        _verify_model_signature(model, model.name, build, key, result)


# -- an image -------------------------------------------------------------------------------------
Opener = Callable[[str], Any]  # a path in the layout → a context manager of its stream


@contextmanager
def _image_files(path: Path) -> Iterator[tuple[Opener, set[str]]]:
    if path.is_dir():
        names = {p.relative_to(path).as_posix() for p in path.rglob("*") if p.is_file()}
        yield (lambda name: (path / name).open("rb")), names
        return
    with tarfile.open(path, "r:") as archive:
        members = {m.name: m for m in archive.getmembers() if m.isfile()}

        @contextmanager
        def opener(name: str) -> Iterator[IO[bytes]]:
            stream = archive.extractfile(members[name])
            assert stream is not None
            yield stream

        yield opener, set(members)


def _verify_image(image: Path, build: Build, key: Path | None, result: Verified) -> None:
    shown = image.name
    scratch = tempfile.TemporaryDirectory(prefix="mlpack-verify-")
    try:
        with scratch, _image_files(image) as (open_file, names):
            for name in sorted(n for n in names if n.startswith("blobs/sha256/")):
                with open_file(name) as stream:
                    if _sha256_stream(stream) != name.rsplit("/", 1)[1]:
                        raise VerificationError(f"{shown}: {name} does not match its digest (it was changed)")
            with open_file("index.json") as stream:
                manifest_digest = json.load(stream)["manifests"][0]["digest"]
            tag = build.kinds.get("image")
            if tag is None or build.subjects[tag] != manifest_digest.removeprefix("sha256:"):
                raise VerificationError(f"{shown}: its manifest {manifest_digest} is not the provenance's image")
            result.checks.append(f"{shown}: every blob matches its digest; the manifest is the provenance's {tag}")
            manifest = _blob_json(open_file, manifest_digest)
            config = _blob_json(open_file, manifest["config"]["digest"])
            layers = [layer["digest"] for layer in manifest["layers"]]
            for descriptor, diff_id in zip(manifest["layers"], config["rootfs"]["diff_ids"], strict=True):
                digest = descriptor["digest"]
                with open_file(_blob(digest)) as stream:
                    if descriptor["mediaType"].endswith("gzip"):
                        with gzip.GzipFile(fileobj=stream) as plain:
                            unpacked = _sha256_stream(plain)
                    else:
                        unpacked = _sha256_stream(stream)
                if "sha256:" + unpacked != diff_id:
                    raise VerificationError(f"{shown}: layer {digest} does not match its diff_id in the config")
            found = _inventory_of(open_file, layers)
            _verify_image_model(open_file, layers, Path(scratch.name) / "model.onnx", shown, build, key, result)
    except (KeyError, ValueError, OSError, tarfile.TarError) as exc:
        if isinstance(exc, VerificationError):
            raise
        raise VerificationError(f"{shown} is not a readable OCI image: {type(exc).__name__} {exc}") from None
    if image.is_file():  # after its blobs, so that a changed layer is named, not just the archive
        _against_subject(build, image.name, sha256_of(image), result)
    document = _load_sbom(build, result)
    listed = sbom.listed_packages(document)
    held = sorted((package.purl, package.sha256) for package in sbom.image_packages(found))
    if listed != held:
        first = sorted(set(listed) ^ set(held))[:1]
        raise VerificationError(f"{build.stem}.cdx.json does not list the packages {shown}'s layers hold: {first}")
    result.checks.append(f"{shown}: its {len(held)} Python and Debian packages are the ones its SBOM lists")


def _verify_image_model(
    open_file: Opener, layers: list[str], copy: Path, shown: str, build: Build, key: Path | None, result: Verified
) -> None:
    """The model the image serves (its site folder's NAME/model.onnx, top layer first) is the .onnx subject,
    and with a key it verifies with the model-signing signature: an image is checked whole, pushed or not."""
    for digest in reversed(layers):
        with open_file(_blob(digest)) as stream, tarfile.open(fileobj=stream, mode="r|*") as tar:
            for member in tar:
                name = member.name.removeprefix("./")
                if not (member.isfile() and _IMAGE_MODEL.fullmatch(name)):
                    continue
                source = tar.extractfile(member)
                assert source is not None
                with copy.open("wb") as target:
                    shutil.copyfileobj(source, target, CHUNK)
                onnx = build.kinds.get("onnx", "")
                if sha256_of(copy) != build.subjects.get(onnx):
                    raise VerificationError(f"{shown}: its {name} is not the provenance's model {onnx}")
                result.checks.append(f"{shown}: its {name} is the provenance's {onnx} (its sha256)")
                if key is not None:
                    _verify_model_signature(copy, f"{shown}: {name}", build, key, result)
                return
    raise VerificationError(f"{shown} holds no {SITE}/NAME/model.onnx: not an image mlpack built")


def _blob(digest: str) -> str:
    return "blobs/sha256/" + digest.removeprefix("sha256:")


def _blob_json(open_file: Opener, digest: str) -> dict[str, Any]:
    with open_file(_blob(digest)) as stream:
        document: dict[str, Any] = json.load(stream)
        return document


def _inventory_of(open_file: Opener, layers: list[str]) -> Inventory:
    with ExitStack() as stack:
        return inventory(stack.enter_context(open_file(_blob(digest))) for digest in layers)


# -- the command ----------------------------------------------------------------------------------
def verify_reference(reference: str, *, key: str | Path | None = None, connection: Connection) -> Verified:
    """A pushed image: pulled with its attached files (oci_push.pull_image) into a scratch folder, every
    blob checked on the way, then verified as a layout is; the reference is what the result names."""
    from mlpack.artifacts.oci_push import pull_image
    from mlpack.artifacts.oci_remote import ImageReference, RegistryMismatch

    parsed = ImageReference.parse(reference, what="the image to verify")
    if key is not None:
        signing.load_public_key(Path(key))
    with tempfile.TemporaryDirectory(prefix="mlpack-verify-") as scratch:
        try:
            layout, _files = pull_image(parsed, Path(scratch), connection=connection, provenance=True)
        except RegistryMismatch as exc:
            # What the registry holds is not what was pushed (a changed blob, another image under the tag):
            # a failed check, exit 1, as a changed file in dist/ is; exit 3 reads as "try again later".
            raise VerificationError(exc.message) from None
        result = verify(layout, key=key)
    result.checks.insert(0, f"{reference}: pulled, with {len(_files)} attached files")
    result.artifact = Path(reference)
    return result


# What a build ships and its provenance names (artifacts/attest.py): wheel, sdist, .onnx, image archive, SBOM.
_ARTIFACT_SUFFIXES = (".whl", ".tar.gz", ".onnx", ".image.tar", ".cdx.json")
_WHAT = "a wheel, .onnx, sdist, image archive, OCI layout or pushed image reference"


def verify(artifact: str | Path, *, key: str | Path | None = None) -> Verified:
    path = Path(artifact)
    if not path.exists():
        raise ConfigError(f"{path} does not exist (give {_WHAT})")
    if not (path.name.endswith(_ARTIFACT_SUFFIXES) or (path.is_dir() and path.name.endswith(".oci"))):
        # Not a kind of file a build ships (mlpack.toml, a card, a folder): the user's mistake, not a failed check.
        raise ConfigError(f"{path.name} is not an artifact mlpack builds (give {_WHAT})")
    public = Path(key) if key is not None else None
    if public is not None:
        signing.load_public_key(public)  # a bad --key is a usage error before anything is read
    result = Verified(path)
    try:
        _verify(path, public, result)
    except (KeyError, TypeError, AttributeError, IndexError, ValueError, RecursionError) as exc:
        # Only a crafted document gets here: every file mlpack writes has the shapes read above.
        raise VerificationError(
            f"{path.name}: its build's provenance or SBOM is not one mlpack writes ({type(exc).__name__})"
        ) from None
    return result


def _verify(path: Path, public: Path | None, result: Verified) -> None:
    build = _load_build(path, public, result)
    name = path.name
    if name.endswith(".whl"):
        _verify_wheel(path, build, public, result)
    elif name.endswith(".onnx"):
        _verify_onnx(path, build, public, result)
    elif name.endswith(".image.tar") or (path.is_dir() and name.endswith(".oci")):
        _verify_image(path, build, public, result)
    else:
        _against_subject(build, name, sha256_of(path), result)
        _load_sbom(build, result)
