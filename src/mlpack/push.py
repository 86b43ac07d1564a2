"""`mlpack push ARTIFACT REFERENCE`: a built image (and its SBOM, provenance, signatures) into a registry.

The image is the one `mlpack build` wrote (dist/NAME-VERSION.oci, or the .image.tar holding the
same layout), every blob checked before anything is sent. With the project's registry at hand the
build's record must name this very image (its manifest digest), and the push is recorded there:
reference, digest, the attachments' digests, when. Credentials come from MLPACK_REGISTRY_USERNAME
and MLPACK_REGISTRY_PASSWORD (or --password-stdin, or docker's config.json), never from argv, and
never reach the output or the registry document.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from mlpack import names
from mlpack.artifacts import attest
from mlpack.artifacts.oci_push import Attachment, PushResult, push_image, read_local_image
from mlpack.artifacts.oci_remote import Connection, Credentials, ImageReference
from mlpack.config import find_config_file, load_config
from mlpack.errors import ConfigError
from mlpack.registry import open_registry


@dataclass(frozen=True)
class Pushed:
    result: PushResult
    name: str
    version: str
    recorded: str  # the registry collection it was recorded in, or why not


def default_attachments(artifact: Path) -> list[Attachment]:
    """The build's SBOM, provenance and signatures beside NAME-VERSION.oci / .image.tar, those that exist."""
    stem = artifact.name.removesuffix(".oci").removesuffix(".image.tar")
    return [Attachment(*row) for row in attest.attachment_files(artifact.parent, stem)]


def push(
    artifact: str | Path,
    reference: str,
    *,
    attachments: Sequence[Attachment] | None = None,
    project: str | Path | None = None,
    ca_file: Path | None = None,
    username: str | None = None,
    password: str | None = None,
    plain_http: bool = False,
) -> Pushed:
    """Push; `project` (else ./mlpack.toml when there is one) names the registry that records it."""
    artifact = Path(artifact)
    target = ImageReference.parse(reference, what="the push reference")
    if username is not None or password is not None:
        if not username or not password:
            raise ConfigError("registry credentials need both a user name and a password")
        credentials: Credentials | None = Credentials(username, password)
    else:
        credentials = Credentials.from_env()
    connection = Connection(ca_file=ca_file, plain_http=plain_http, credentials=credentials)
    config = None
    if project is not None or Path("mlpack.toml").is_file():
        config = load_config(project if project is not None else ".")
        if config.source.embedded and not os.environ.get(config.source.uri_env, "").strip():
            config = None  # an embedded server lives for one build: it holds no record to check or add to
    with tempfile.TemporaryDirectory(prefix="mlpack-push-") as scratch:
        image = read_local_image(artifact, Path(scratch))
        metadata = image.metadata
        name, version = str(metadata.get("name", "")), str(metadata.get("version", ""))
        if not target.tag:
            if not version:
                raise ConfigError(f"{artifact} names no version (no mlpack metadata label): give the reference a tag")
            target = target.with_tag(names.tag_text(version))
        chosen = default_attachments(artifact) if attachments is None else list(attachments)
        if config is None or not config.registry.enabled or not name:
            why = "no persistent registry (--config)" if config is None else "no registry" if name else "no metadata"
            return Pushed(push_image(image, target, connection=connection, attachments=chosen), name, version, why)
        if config.model.name != name:
            where = find_config_file(project if project is not None else ".")
            raise ConfigError(f"{artifact} is an image of {name}, not of {config.model.name} ({where})")
        with open_registry(config) as registry:
            record = registry.find(name, version)
            if record is None or record.get("status") not in ("built", "published"):
                raise ConfigError(f"{name} {version} is not a successful build in the registry: nothing to push")
            built = (record.get("image") or {}).get("digest")
            if built != image.digest:
                raise ConfigError(
                    f"{artifact} (manifest {image.digest}) is not the image the registry recorded for {name} {version} "
                    f"({built or 'none'}): refusing to push an image the registry does not vouch for"
                )
            result = push_image(image, target, connection=connection, attachments=chosen)
            entry = {
                "reference": result.reference,
                "digest": result.digest,
                "at": datetime.now(tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
                "attachments": result.attachments,
                "referrers": result.referrers,
            }
            registry.record_push(name, version, entry)
            assert registry.collection is not None
            return Pushed(result, name, version, registry.collection.full_name)
