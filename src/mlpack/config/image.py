"""The checks of `[image]`: the base's grammar (a reference, or a local file), the builder, the files it names."""

from __future__ import annotations

from mlpack import names
from mlpack.config.sections import Config
from mlpack.errors import ConfigError

LOCAL_BASES = ("oci:", "docker-archive:")


def image_base(value: str) -> str | None:
    """A reference (docker://REF: the registry only; docker-daemon:REF: the engine only), or a local
    base for the image with no engine: oci:PATH, docker-archive:PATH."""
    for prefix in ("docker://", "docker-daemon:"):
        if value.startswith(prefix):
            return names.image_reference(value.removeprefix(prefix))
    kind, _, path = value.partition(":")
    if kind in ("oci", "docker-archive"):
        return names.plain_path(path) if path else f"names no path after {kind}:"
    return names.image_reference(value)


def check_image(config: Config, where: str) -> None:
    image = config.image
    if not 1 <= image.port <= 65535:
        raise ConfigError(f"{where}: [image].port must be between 1 and 65535")
    if image.builder not in ("mlpack", "docker"):
        raise ConfigError(
            f'{where}: [image].builder must be "mlpack" (no engine needed) or "docker" (docker build), '
            f"got {image.builder[:40]!r}"
        )
    if image.builder == "docker" and image.base.startswith(LOCAL_BASES):
        raise ConfigError(f'{where}: [image].base {image.base!r} is a local file: builder = "docker" needs a reference')
    if image.plain_http and image.registry_ca:
        raise ConfigError(
            f"{where}: [image].plain_http has no TLS, so [image].registry_ca would check nothing: set one"
        )
    for key, value, exists in (
        ("registry_ca", image.registry_ca, lambda path: path.is_file()),
        ("find_links", image.find_links, lambda path: path.is_dir()),
    ):
        if value and not names.plain_path(value) and not exists(config.project_dir / value):
            kind = "file" if key == "registry_ca" else "folder"
            raise ConfigError(f"{where}: [image].{key} {value!r} is not a {kind} (relative to the project)")
