"""The model image: a build context that needs no network, and `docker build` where an engine answers.

The context holds the Dockerfile, `deps/` (every dependency as a wheel for the base image's Python
and platform, fetched once with `pip download`) and `model/` (the model wheel, unpacked). Files
carry fixed timestamps, so identical inputs make identical layers.
"""

from __future__ import annotations

import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tarfile
import zipfile
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError
from importlib.metadata import version as installed_version
from pathlib import Path
from string import Template
from typing import Any

from mlpack import names
from mlpack.artifacts.wheel import packaging_dir
from mlpack.config import ImageSection
from mlpack.errors import ConfigError, ExternalError
from mlpack.redaction import child_environment
from mlpack.runtime import Metadata

METADATA_LABEL = "io.mlpack.metadata"
DOCKER_TIMEOUT_S = 10
# Platform tags pip may pick for a glibc base image, newest first.
_MANYLINUX = ["manylinux_2_28", "manylinux_2_27", "manylinux_2_24", "manylinux_2_17", "manylinux2014"]
_ARCHES = names.ARCHES
# The image's entrypoint is the model's server, and its inference log (MLPACK_INFERENCE_LOG_URI, which a
# deployment may set whatever [serve].inference_log says) needs the wheel's `serve` extra: pymongo.
SERVER_EXTRA = "serve"
# pymongo and the one package it pulls, held to this build's own versions like numpy, so the dependency
# layer is the same bytes for every model built here, whatever the index has released since.
_SERVER_PINS = ("pymongo", "dnspython")


def image_pins(onnxruntime: str) -> dict[str, str]:
    """What the image's dependencies are held to: the onnxruntime and numpy the parity check ran with,
    and the server's pymongo as installed here."""
    pins = {"onnxruntime": onnxruntime, "numpy": installed_version("numpy")}
    for name in _SERVER_PINS:
        try:
            pins[name] = installed_version(name)
        except PackageNotFoundError:
            continue  # pip resolves it within the wheel's own range
    return pins


@dataclass(frozen=True)
class ImageTarget:
    python: str  # "3.11"
    arch: str  # "x86_64"

    @classmethod
    def for_section(cls, section: ImageSection) -> ImageTarget:
        python = section.python
        if not python:
            match = re.search(r"python:(\d+\.\d+)", section.base)
            python = match.group(1) if match else f"{sys.version_info.major}.{sys.version_info.minor}"
        arch = _ARCHES.get((section.arch or platform.machine()).lower())
        if arch is None:
            raise ConfigError(
                f"[image].arch {section.arch or platform.machine()!r} is not supported (x86_64 or aarch64)"
            )
        return cls(python, arch)

    def pip_platform_args(self) -> list[str]:
        tag = self.python.replace(".", "")
        args = ["--only-binary=:all:", "--python-version", self.python, "--implementation", "cp", "--abi", f"cp{tag}"]
        for prefix in _MANYLINUX:
            args += ["--platform", f"{prefix}_{self.arch}"]
        return args


@dataclass(frozen=True)
class ImageResult:
    tag: str
    id: str
    size: int
    layers: list[str]


def dockerfile_string(value: str) -> str:
    """A double-quoted Dockerfile word that the builder reads back as exactly `value`.

    In double quotes the builder expands `$VAR`/`${VAR}` and takes `\\`, `\"` and `\\$` as escapes
    (moby's shell lexer); every other character, non-ASCII included, is kept as written. A line
    break cannot be written at all, so one is refused (config values are checked to be one line).
    """
    if "\n" in value or "\r" in value:
        raise ConfigError(f"a line break cannot be written into a Dockerfile value: {value[:60]!r}")
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"').replace("$", "\\$") + '"'


def _label_lines(labels: dict[str, str]) -> str:
    return "LABEL " + " \\\n      ".join(f"{key}={dockerfile_string(value)}" for key, value in labels.items())


def image_labels(metadata: Metadata, revision: str) -> dict[str, str]:
    return {
        "org.opencontainers.image.title": metadata["name"],
        "org.opencontainers.image.version": metadata["version"],
        "org.opencontainers.image.created": metadata["created"],
        "org.opencontainers.image.description": metadata["description"],
        "org.opencontainers.image.revision": revision,
        "io.mlpack.task": metadata["task"],
        "io.mlpack.metrics": json.dumps(metadata["metrics"], sort_keys=True),
        "io.mlpack.data.sha256": metadata["data"]["sha256"],
        # ensure_ascii=False: the label holds the text itself, as `docker inspect` shows it.
        METADATA_LABEL: json.dumps(metadata, sort_keys=True, ensure_ascii=False),
    }


def git_revision(folder: Path) -> str:
    try:
        result = subprocess.run(
            ["git", "-C", str(folder), "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
            env=child_environment(),
        )
    except (OSError, subprocess.TimeoutExpired):
        return ""
    return result.stdout.strip() if result.returncode == 0 else ""


def download_dependencies(
    wheel: Path, deps: Path, target: ImageTarget, *, pins: dict[str, str], find_links: str = ""
) -> dict[str, str]:
    """Every dependency of the model wheel and its server extra as wheels for the image; returns {name: version}.

    `pins` (image_pins) hold the image to the onnxruntime and numpy the parity check ran with.
    """
    deps.mkdir(parents=True)
    constraints = deps.parent / "constraints.txt"
    constraints.write_text("".join(f"{name}=={version}\n" for name, version in pins.items()), encoding="utf-8")
    command = [
        sys.executable,
        "-m",
        "pip",
        "download",
        "--quiet",
        "--disable-pip-version-check",
        "--dest",
        str(deps),
        "--constraint",
        str(constraints),
        *target.pip_platform_args(),
        f"{wheel}[{SERVER_EXTRA}]",
    ]
    if find_links:  # a local wheelhouse: the context is then made with no network at all
        command += ["--no-index", "--find-links", find_links]
    result = subprocess.run(command, capture_output=True, text=True, check=False, env=child_environment())
    constraints.unlink()
    if result.returncode != 0:
        raise ExternalError(
            f"could not fetch the image's dependencies ({', '.join(f'{n}=={v}' for n, v in pins.items())}) "
            f"for Python {target.python} on {target.arch} "
            "(pip download needs the package index or its cache)",
            details=result.stderr[-3000:],
        )
    (deps / wheel.name).unlink(missing_ok=True)  # the model goes in its own layer, unpacked
    pinned = {}
    for found in sorted(deps.glob("*.whl")):
        name, version = found.name.split("-")[:2]
        pinned[name.replace("_", "-").lower()] = version
    (deps / "requirements.txt").write_text("".join(f"{n}=={v}\n" for n, v in pinned.items()), encoding="utf-8")
    return pinned


def write_context(
    context: Path,
    *,
    wheel: Path,
    metadata: Metadata,
    section: ImageSection,
    revision: str,
    epoch: int,
    find_links: str = "",
) -> dict[str, str]:
    """The image's build context; returns the pinned dependency versions."""
    target = ImageTarget.for_section(section)
    context.mkdir(parents=True)
    pins = image_pins(metadata["versions"]["onnxruntime"])
    pinned = download_dependencies(wheel, context / "deps", target, pins=pins, find_links=find_links)
    with zipfile.ZipFile(wheel) as archive:
        archive.extractall(context / "model" / "opt" / "model-app")
    template = (packaging_dir() / "docker" / "Dockerfile.in").read_text(encoding="utf-8")
    dockerfile = Template(template).substitute(
        mlpack_version=metadata["versions"]["mlpack"],
        name=metadata["name"],
        version=metadata["version"],
        base=section.base.removeprefix("docker://").removeprefix("docker-daemon:"),
        port=section.port,
        import_name=metadata["import_name"],
        labels=_label_lines(image_labels(metadata, revision)),
    )
    (context / "Dockerfile").write_text(dockerfile, encoding="utf-8")
    (context / ".dockerignore").write_text("Dockerfile\n.dockerignore\n", encoding="utf-8")
    _set_times(context, epoch)
    return pinned


def _set_times(root: Path, epoch: int) -> None:
    """COPY keeps file times: fixed ones make the model layer reproducible."""
    for path in sorted(root.rglob("*"), reverse=True):
        os.utime(path, (epoch, epoch), follow_symlinks=False)
    os.utime(root, (epoch, epoch))


# -- the engine ---------------------------------------------------------------------------------
def docker_cli() -> str | None:
    return shutil.which("docker")


def engine_version() -> str | None:
    """The Docker engine's version if one answers (DOCKER_HOST is respected), else None."""
    cli = docker_cli()
    if cli is None:
        return None
    try:
        result = subprocess.run(
            [cli, "version", "--format", "{{.Server.Version}}"],
            capture_output=True,
            text=True,
            timeout=DOCKER_TIMEOUT_S,
            check=False,
            env=child_environment(),
        )
    except subprocess.TimeoutExpired:
        return None
    version = result.stdout.strip()
    return version if result.returncode == 0 and version else None


def build_image(context: Path, tag: str) -> ImageResult:
    cli = docker_cli()
    if cli is None:
        raise ExternalError("the docker command is not installed")
    result = subprocess.run(
        [cli, "build", "--network", "none", "--tag", tag, str(context)],
        capture_output=True,
        text=True,
        check=False,
        env=child_environment({"DOCKER_BUILDKIT": "0"}),
    )
    if result.returncode != 0:
        raise ExternalError(f"docker build of {tag} failed", details=(result.stdout + result.stderr)[-4000:])
    details = inspect_engine_image(tag)
    return ImageResult(tag=tag, id=details["Id"], size=int(details["Size"]), layers=list(details["RootFS"]["Layers"]))


def inspect_engine_image(reference: str) -> dict[str, Any]:
    cli = docker_cli()
    if cli is None:
        raise ExternalError("the docker command is not installed")
    try:
        result = subprocess.run(
            [cli, "image", "inspect", reference],
            capture_output=True,
            text=True,
            timeout=DOCKER_TIMEOUT_S * 3,
            check=False,
            env=child_environment(),
        )
    except subprocess.TimeoutExpired:
        raise ExternalError("the Docker engine did not answer") from None
    if result.returncode != 0:
        if "No such image" in result.stderr or "No such object" in result.stderr:
            raise ConfigError(f"no image {reference!r} in the Docker engine")
        raise ExternalError(f"docker image inspect {reference} failed: {result.stderr.strip()[:300]}")
    return dict(json.loads(result.stdout)[0])


def metadata_from_labels(labels: dict[str, str] | None, where: str) -> dict[str, Any]:
    if not isinstance(labels, dict) or not isinstance(labels.get(METADATA_LABEL), str):
        raise ConfigError(f"{where} has no mlpack metadata label (was it built by mlpack?)")
    try:
        metadata = json.loads(labels[METADATA_LABEL])
    except (ValueError, RecursionError) as exc:
        raise ConfigError(f"{where}: its mlpack metadata label is not JSON: {type(exc).__name__}") from None
    if not isinstance(metadata, dict):
        raise ConfigError(f"{where}: its mlpack metadata label is not a JSON object")
    return metadata


MAX_ARCHIVE_JSON_BYTES = 16 << 20  # manifest.json and the image config are a few KiB


def _tar_member(archive: tarfile.TarFile, name: str) -> bytes:
    info = archive.getmember(name)
    if not info.isfile() or info.size > MAX_ARCHIVE_JSON_BYTES:
        raise ValueError(f"{name} is not a small JSON file")
    stream = archive.extractfile(info)
    assert stream is not None
    return stream.read()


def read_image_metadata(reference: str) -> dict[str, Any]:
    """Metadata from an image's labels: an image in the engine, or a `docker save` archive."""
    path = Path(reference)
    if path.is_file():
        try:
            # "r:" — `docker save` writes a plain tar; a compressed one would be unpacked to find members.
            with tarfile.open(path, "r:") as archive:
                manifest = json.loads(_tar_member(archive, "manifest.json"))
                config = json.loads(_tar_member(archive, manifest[0]["Config"]))
            labels = config.get("config", {}).get("Labels")
        except (tarfile.TarError, KeyError, IndexError, ValueError, TypeError, AttributeError, RecursionError) as exc:
            raise ConfigError(f"{path} is not a docker image archive: {type(exc).__name__} {exc}") from None
        return metadata_from_labels(labels, str(path))
    if engine_version() is None:
        raise ExternalError(f"{reference!r} is not a file, and no Docker engine answers to look it up as an image")
    return metadata_from_labels(inspect_engine_image(reference)["Config"].get("Labels"), f"image {reference}")
