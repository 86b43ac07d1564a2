"""An image mlpack wrote (its OCI layout, or the archive holding one) into a registry, with attachments.

The manifest goes up as the exact bytes in the layout, so the registry's digest is the build's.
Each attachment (an SBOM, a provenance statement, a signature) becomes an OCI artifact: an image
manifest whose `artifactType` says what it is, whose config is the empty descriptor, whose one layer
is the file, and whose `subject` is the image, which is what the referrers API lists. A registry
without that API (distribution 2.8, Debian's docker-registry) is given the OCI 1.1 fallback: an
index tagged `sha256-<hex of the image digest>` listing the artifacts, which clients read instead.
"""

from __future__ import annotations

import hashlib
import json
import tarfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mlpack.artifacts.image import METADATA_LABEL
from mlpack.artifacts.oci_base import CHUNK, INDEX, MANIFEST, MAX_JSON_BYTES, canonical, digest_of
from mlpack.artifacts.oci_remote import Connection, ImageReference, RegistryClient, RegistryMismatch
from mlpack.errors import ConfigError, ExternalError

EMPTY = b"{}"
EMPTY_TYPE = "application/vnd.oci.empty.v1+json"
TITLE = "org.opencontainers.image.title"
CREATED = "org.opencontainers.image.created"


@dataclass(frozen=True)
class Attachment:
    path: Path  # the file, pushed as the artifact's one layer, bytes as they are
    media_type: str  # that layer's mediaType: "application/vnd.cyclonedx+json"
    artifact_type: str  # the artifact manifest's artifactType, what referrers are filtered on
    annotations: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class LocalImage:
    manifest: bytes  # the bytes the digest names
    digest: str
    blobs: dict[str, Path]  # digest → file, every one checked
    labels: dict[str, str]

    @property
    def metadata(self) -> dict[str, Any]:
        try:
            found = json.loads(self.labels.get(METADATA_LABEL, "{}"))
        except ValueError:
            return {}
        return found if isinstance(found, dict) else {}


@dataclass(frozen=True)
class PushResult:
    reference: str  # REGISTRY/REPOSITORY:TAG as pushed
    digest: str  # the image manifest's
    attachments: list[dict[str, str]]  # file, artifact_type, digest
    referrers: str  # "api" (the registry lists them itself) or "tag" (the sha256-<hex> fallback index)


def read_local_image(artifact: Path, scratch: Path) -> LocalImage:
    """The image of an mlpack layout folder or `.image.tar` (unpacked into `scratch`), every blob checked."""
    if artifact.is_file():
        try:
            with tarfile.open(artifact, "r:") as archive:
                archive.extractall(scratch / "layout", filter="data")
        except (tarfile.TarError, OSError) as exc:
            raise ConfigError(f"{artifact} is not an image archive mlpack wrote: {exc}") from None
        layout = scratch / "layout"
    elif artifact.is_dir():
        layout = artifact
    else:
        raise ConfigError(f"{artifact} does not exist (push takes dist/NAME-VERSION.oci or NAME-VERSION.image.tar)")
    try:
        index = json.loads((layout / "index.json").read_bytes())
        entry = next(m for m in index["manifests"] if m.get("mediaType", MANIFEST) == MANIFEST)
        digest = entry["digest"]
        blobs: dict[str, Path] = {}
        manifest = _checked(layout, digest, blobs).read_bytes()
        document = json.loads(manifest)
        config = json.loads(_checked(layout, document["config"]["digest"], blobs).read_bytes())
        for layer in document["layers"]:
            _checked(layout, layer["digest"], blobs)
    except ConfigError:
        raise
    except (OSError, ValueError, KeyError, TypeError, StopIteration) as exc:
        problem = f"{type(exc).__name__} {exc}"
        raise ConfigError(f"{artifact} is not an OCI image layout with an image in it: {problem}") from None
    labels = (config.get("config") or {}).get("Labels") or {}
    return LocalImage(manifest, digest, blobs, labels if isinstance(labels, dict) else {})


def _checked(layout: Path, digest: str, blobs: dict[str, Path]) -> Path:
    algorithm, _, hexdigest = str(digest).partition(":")
    if algorithm != "sha256" or len(hexdigest) != 64 or not all(c in "0123456789abcdef" for c in hexdigest):
        raise ValueError(f"unsupported digest {digest!r}")
    path = layout / "blobs" / "sha256" / hexdigest
    sha = hashlib.sha256()
    with path.open("rb") as stream:
        for chunk in iter(lambda: stream.read(CHUNK), b""):
            sha.update(chunk)
    if sha.hexdigest() != hexdigest:
        raise ConfigError(f"blobs/sha256/{hexdigest[:12]}... of {layout.name} does not match its digest: changed?")
    blobs[digest] = path
    return path


def push_image(
    image: LocalImage,
    reference: ImageReference,
    *,
    connection: Connection,
    attachments: Sequence[Attachment] = (),
) -> PushResult:
    """Blobs the registry lacks, the manifest under the reference's tag, then each attachment by digest."""
    if reference.digest:
        raise ConfigError(f"push to a tag, not a digest: {reference} (the digest is the registry's answer)")
    for attachment in attachments:
        if not attachment.path.is_file():
            raise ConfigError(f"the attachment {attachment.path} does not exist")
    client = RegistryClient(reference, connection)
    for digest, path in image.blobs.items():
        if digest != image.digest:
            client.upload_blob(path, digest)
    client.put_manifest(reference.target, image.manifest, MANIFEST)
    subject = {"mediaType": MANIFEST, "digest": image.digest, "size": len(image.manifest)}
    pushed, descriptors, listed_by_api = [], [], True
    created = str(image.metadata.get("created", ""))
    for attachment in attachments:
        manifest = _artifact_manifest(attachment, subject, created)
        client.upload_blob(EMPTY, digest_of(EMPTY))
        client.upload_blob(attachment.path, _file_digest(attachment.path))
        headers = client.put_manifest(digest_of(manifest), manifest, MANIFEST)
        listed_by_api = listed_by_api and any(key.lower() == "oci-subject" for key in headers)
        descriptors.append(
            {
                "mediaType": MANIFEST,
                "digest": digest_of(manifest),
                "size": len(manifest),
                "artifactType": attachment.artifact_type,
                "annotations": json.loads(manifest).get("annotations", {}),
            }
        )
        pushed.append(
            {"file": attachment.path.name, "artifact_type": attachment.artifact_type, "digest": digest_of(manifest)}
        )
    if descriptors and not listed_by_api:
        _update_fallback_index(client, image.digest, descriptors)
    return PushResult(str(reference), image.digest, pushed, "api" if listed_by_api or not descriptors else "tag")


def _file_digest(path: Path) -> str:
    sha = hashlib.sha256()
    with path.open("rb") as stream:
        for chunk in iter(lambda: stream.read(CHUNK), b""):
            sha.update(chunk)
    return "sha256:" + sha.hexdigest()


def _artifact_manifest(attachment: Attachment, subject: dict[str, Any], created: str) -> bytes:
    """Canonical, and dated by the build (not the push): pushing the same files again changes nothing."""
    annotations = {**({CREATED: created} if created else {}), **attachment.annotations}
    layer = {
        "mediaType": attachment.media_type,
        "digest": _file_digest(attachment.path),
        "size": attachment.path.stat().st_size,
        "annotations": {TITLE: attachment.path.name},
    }
    document: dict[str, Any] = {
        "schemaVersion": 2,
        "mediaType": MANIFEST,
        "artifactType": attachment.artifact_type,
        "config": {"mediaType": EMPTY_TYPE, "digest": digest_of(EMPTY), "size": len(EMPTY)},
        "layers": [layer],
        "subject": subject,
    }
    if annotations:
        document["annotations"] = annotations
    return canonical(document)


def _update_fallback_index(client: RegistryClient, subject: str, descriptors: list[dict[str, Any]]) -> None:
    """The referrers tag schema (distribution spec 1.1): read the index, add ours, write it back."""
    tag = subject.replace(":", "-")
    manifests: list[dict[str, Any]] = []
    if client.has_manifest(tag, [INDEX]):
        data, _ = client.get_manifest(tag, [INDEX])
        try:
            if len(data) > MAX_JSON_BYTES:
                raise ValueError("too large")
            manifests = [m for m in json.loads(data)["manifests"] if isinstance(m, dict)]
        except (ValueError, KeyError, TypeError) as exc:
            problem = f"the referrers index {tag} in {client.reference.repository} is not an index: {exc}"
            raise ExternalError(problem) from None
    ours = {d["digest"] for d in descriptors}
    kept = [m for m in manifests if m.get("digest") not in ours]
    index = {"schemaVersion": 2, "mediaType": INDEX, "manifests": kept + descriptors}
    client.put_manifest(tag, canonical(index), INDEX)


def referrers(client: RegistryClient, digest: str) -> list[dict[str, Any]]:
    """The artifacts attached to `digest`: the referrers API where the registry has it, else the fallback tag."""
    response = client.request("GET", f"referrers/{digest}", headers={"Accept": INDEX})
    if response.status_code == 200 and response.headers.get("Content-Type", "").startswith(INDEX):
        data = response.content
    else:
        tag = digest.replace(":", "-")
        if not client.has_manifest(tag, [INDEX]):
            return []
        data, _ = client.get_manifest(tag, [INDEX])
    try:
        if len(data) > MAX_JSON_BYTES:
            raise ValueError("too large")
        return [m for m in json.loads(data)["manifests"] if isinstance(m, dict) and "digest" in m]
    except (ValueError, KeyError, TypeError) as exc:
        raise RegistryMismatch(f"the referrers of {digest} in {client.reference} are not an index: {exc}") from None


# What a pull asks for: an OCI image manifest, or Docker's schema 2 (what `docker push` writes). Asked for
# the OCI type alone, distribution 2.8 answers a schema 2 manifest converted to schema 1, which has no
# config: an image someone else pushed under the tag would read as a broken one instead of as another image.
PULLED = [MANIFEST, "application/vnd.docker.distribution.manifest.v2+json"]


def pull_image(
    reference: ImageReference, folder: Path, *, connection: Connection, provenance: bool = False
) -> tuple[Path, list[Path]]:
    """The pushed image back: folder/NAME-VERSION.oci (an OCI layout of the exact manifest bytes, every
    blob checked on the way) and each attached file in `folder` under its title; returns both.

    `provenance`: one attached file must be a build's NAME-VERSION.provenance.json, checked before any
    blob is fetched, so an image without one costs its small manifests, not its layers. Content that is not
    what its digest or subject says is a RegistryMismatch."""
    client = RegistryClient(reference, connection)
    manifest, _ = client.get_manifest(reference.target, PULLED)
    digest = digest_of(manifest)
    try:
        document = json.loads(manifest)
        wanted = [document["config"]["digest"], *(layer["digest"] for layer in document["layers"])]
    except (ValueError, KeyError, TypeError) as exc:
        raise RegistryMismatch(f"{reference} is not an image manifest: it has no {exc}") from None
    attached = _attachments(client, digest)
    if provenance and not any(title.endswith(".provenance.json") for title, _ in attached):
        titles = ", ".join(title for title, _ in attached) or "nothing"
        raise RegistryMismatch(
            f"{reference} ({digest}) has no provenance attached (attached: {titles}): nothing to verify it "
            "against; `mlpack push` sends the build's provenance with the image"
        )
    stage = folder / ".pulling.oci"
    blobs = stage / "blobs" / "sha256"
    blobs.mkdir(parents=True)
    (blobs / digest.removeprefix("sha256:")).write_bytes(manifest)
    for blob in wanted:
        if not (blobs / blob.removeprefix("sha256:")).is_file():
            _checked_digest(blob)
            client.download_blob(blob, blobs / blob.removeprefix("sha256:"))
    labels = (json.loads((blobs / wanted[0].removeprefix("sha256:")).read_bytes()).get("config") or {}).get("Labels")
    metadata = LocalImage(manifest, digest, {}, labels if isinstance(labels, dict) else {}).metadata
    stem = f"{metadata['name']}-{metadata['version']}" if metadata.get("name") and metadata.get("version") else "image"
    entry = {"mediaType": MANIFEST, "digest": digest, "size": len(manifest)}
    if reference.tag:
        entry["annotations"] = {"org.opencontainers.image.ref.name": reference.tag}
    (stage / "index.json").write_bytes(canonical({"schemaVersion": 2, "mediaType": INDEX, "manifests": [entry]}))
    (stage / "oci-layout").write_bytes(canonical({"imageLayoutVersion": "1.0.0"}))
    layout = folder / f"{stem}.oci"
    if layout.exists():
        raise ConfigError(f"{layout} already exists: pull into an empty folder")
    stage.rename(layout)
    files = []
    for title, layer_digest in attached:
        target = folder / title
        if target.exists():
            raise ConfigError(f"{target} already exists: pull into an empty folder")
        client.download_blob(layer_digest, target)
        files.append(target)
    return layout, files


def _attachments(client: RegistryClient, digest: str) -> list[tuple[str, str]]:
    """(title, the file's blob digest) of each artifact attached to `digest`, its small manifest read and
    checked: attached to this very image, naming a plain file."""
    found = []
    for descriptor in referrers(client, digest):
        artifact, _ = client.get_manifest(descriptor["digest"], [MANIFEST])
        try:
            document = json.loads(artifact)
            subject, (layer,) = document["subject"]["digest"], document["layers"]
            title = layer.get("annotations", {}).get(TITLE, "")
        except (ValueError, KeyError, TypeError) as exc:
            raise RegistryMismatch(f"the artifact {descriptor['digest']} is not one mlpack attaches: {exc}") from None
        if subject != digest:
            raise RegistryMismatch(f"the artifact {descriptor['digest']} is attached to {subject}, not to {digest}")
        if not title or Path(title).name != title or title.startswith("."):
            raise RegistryMismatch(f"the artifact {descriptor['digest']} names no plain file ({title[:60]!r})")
        found.append((title, _checked_digest(layer["digest"])))
    return found


def _checked_digest(digest: str) -> str:
    algorithm, _, hexdigest = str(digest).partition(":")
    if algorithm != "sha256" or len(hexdigest) != 64 or not all(c in "0123456789abcdef" for c in hexdigest):
        raise RegistryMismatch(f"the registry names a blob by an unsupported digest {str(digest)[:80]!r}")
    return digest
