"""The build's image step: the image with no engine (the default), or `docker build` of the context.

`[image].builder = "mlpack"` (the default) writes the image itself (oci.py) from a base in a
registry, the engine's store or a file, and when a Docker engine answers loads it there too, so
`docker run NAME:VERSION` works as after a `docker build`. `builder = "docker"` builds the context's
Dockerfile on the engine. Either way the build context (the Dockerfile and the dependency wheels) is
kept for users who want `docker build` themselves.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mlpack.artifacts.image import build_image, docker_cli, engine_version, git_revision
from mlpack.artifacts.oci import build_oci_image
from mlpack.artifacts.oci_remote import Connection, Credentials
from mlpack.config import Config
from mlpack.errors import ExternalError
from mlpack.redaction import child_environment
from mlpack.runtime import Metadata
from mlpack.times import epoch_of

LOAD_TIMEOUT_S = 600


@dataclass
class ImageStep:
    report: dict[str, Any]
    artifacts: dict[str, Path] = field(default_factory=dict)  # kind → path: the layout and the archive


def base_connection(config: Config) -> Connection:
    """How to reach the base's registry: [image].registry_ca or plain_http, and MLPACK_REGISTRY_* or
    docker's config.json."""
    ca = config.image.registry_ca
    return Connection(
        ca_file=config.project_dir / ca if ca else None,
        plain_http=config.image.plain_http,
        credentials=Credentials.from_env(),
        ca_option="[image].registry_ca",
        plain_option="[image].plain_http = true",
    )


def make_image(
    config: Config,
    metadata: Metadata,
    *,
    wheel: Path,
    context: Path,
    required: bool,
    say: Callable[[str], None],
) -> ImageStep:
    """The image NAME:VERSION of the built wheel and its context, files dated at the build's `created`;
    or (not `required`, and the engine or the base's registry is not there) why not."""
    tag = config.image.tag_for(config.model.name, metadata["version"])
    if config.image.builder == "docker":
        return _docker_build(context, tag, required=required, say=say)
    say(f"writing image {tag} on {config.image.base} (no engine)")
    try:
        image = build_oci_image(
            context.parent,
            stem=context.name.removesuffix(".docker"),
            tag=tag,
            wheel=wheel,
            metadata=metadata,
            section=config.image,
            revision=git_revision(config.project_dir),
            epoch=epoch_of(metadata["created"]),
            project_dir=config.project_dir,
            find_links=str(config.project_dir / config.image.find_links) if config.image.find_links else "",
            deps=context / "deps",
            connection=base_connection(config),
        )
    except ExternalError as exc:
        if required:
            raise ExternalError(f"{exc.message}: the image was not built; its build context is in {context}") from None
        # The wheel and the rest are built; say how to get the image without a network to the base's registry.
        hint = (
            f"[image].base = {config.image.base!r} could not be read; "
            "name a reachable registry, an OCI layout or a `docker save` archive"
        )
        say(f"{exc.message}: image not built ({hint}; context in {context})")
        return ImageStep({"built": False, "tag": tag, "reason": f"{exc.message} ({hint})"})

    def layer(found: Any) -> dict[str, Any]:
        return {"digest": found.digest, "diff_id": found.diff_id, "size": found.size, "unpacked": found.unpacked}

    report: dict[str, Any] = {
        "built": True,
        "engine": False,
        "tag": tag,
        "id": image.config_digest,
        "digest": image.digest,
        "size": image.size,
        "layers": image.layers,
        "layout": image.layout.name,
        "archive": image.archive.name,
        "base": {"reference": config.image.base, "from": image.base_source},
        "dependency_layer": {**layer(image.dependency_layer), "cached": image.dependency_cached},
        "model_layer": layer(image.layer),
    }
    say(f"image {tag}: manifest {image.digest}")
    report["loaded"] = _load_into_engine(image.archive, tag, say)
    return ImageStep(report, {"oci": image.layout, "image_archive": image.archive})


def _load_into_engine(archive: Path, tag: str, say: Callable[[str], None]) -> bool:
    """`docker load` where an engine answers, so the image runs by its tag; False where none does."""
    cli = docker_cli()
    if cli is None or engine_version() is None:
        return False
    try:
        done = subprocess.run(
            [cli, "load", "--quiet", "--input", str(archive)],
            capture_output=True,
            text=True,
            timeout=LOAD_TIMEOUT_S,
            check=False,
            env=child_environment(),
        )
    except subprocess.TimeoutExpired:
        raise ExternalError(f"docker load of {archive.name} did not finish in {LOAD_TIMEOUT_S} s") from None
    if done.returncode != 0:
        raise ExternalError(f"docker load of {archive.name} failed: {' '.join(done.stderr.split())[:300]}")
    say(f"loaded {tag} into the Docker engine")
    return True


def _docker_build(context: Path, tag: str, *, required: bool, say: Callable[[str], None]) -> ImageStep:
    engine = engine_version()
    if engine is None:
        message = f"no Docker engine answers (DOCKER_HOST={os.environ.get('DOCKER_HOST', 'default')})"
        if required:
            raise ExternalError(f"{message}: the image was not built; its build context is in {context}")
        say(f"{message}: image not built (context in {context})")
        return ImageStep({"built": False, "tag": tag, "reason": message})
    say(f"building image {tag} (Docker {engine}, no network)")
    image = build_image(context, tag)
    report = {"built": True, "engine": True, "tag": image.tag, "id": image.id, "size": image.size}
    return ImageStep({**report, "layers": len(image.layers)})
