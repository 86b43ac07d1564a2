"""Reading built artifacts back: the metadata and the model of a `.onnx` file or a model `.whl`."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path
from typing import Any

from mlpack.errors import ConfigError
from mlpack.runtime import Model, read_onnx_metadata


def _wheel_members(path: Path) -> tuple[zipfile.ZipFile, str]:
    """The open wheel and its model package's folder (the one holding metadata.json and model.onnx)."""
    try:
        archive = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError) as exc:
        raise ConfigError(f"{path} is not a readable wheel: {exc}") from None
    for name in archive.namelist():
        folder, _, leaf = name.rpartition("/")
        if leaf == "metadata.json" and "/" not in folder and f"{folder}/model.onnx" in archive.namelist():
            return archive, folder
    archive.close()
    raise ConfigError(f"{path} is not an mlpack model wheel (no model.onnx with metadata.json inside)")


def _check_exists(path: Path) -> None:
    if not path.is_file():
        raise ConfigError(f"artifact not found: {path}")


def read_any_metadata(reference: str) -> dict[str, Any]:
    """`mlpack inspect`: a .onnx file, a model .whl, a `docker save` archive, or an image in the engine."""
    from mlpack.package.image import read_image_metadata

    path = Path(reference)
    if path.suffix in (".onnx", ".whl"):
        return read_metadata(path)
    if path.is_file():
        if path.suffix != ".tar":
            raise ConfigError(f"{path}: expected a .onnx file, a model .whl or a docker image archive (.tar)")
        return read_image_metadata(reference)
    if path.suffix == ".tar" or path.is_dir():
        raise ConfigError(f"artifact not found: {path}")
    return read_image_metadata(reference)  # an image tag or id in the Docker engine


def read_metadata(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    _check_exists(path)
    if path.suffix == ".whl":
        archive, folder = _wheel_members(path)
        with archive:
            return dict(json.loads(archive.read(f"{folder}/metadata.json")))
    if path.suffix == ".onnx":
        try:
            return read_onnx_metadata(path)
        except ValueError as exc:
            raise ConfigError(f"{path}: {exc}") from None
        except Exception as exc:  # onnxruntime raises its own exception types for unreadable files
            raise ConfigError(f"{path} is not a readable ONNX model: {exc}") from None
    raise ConfigError(f"{path}: expected a .onnx file or a model .whl")


def open_model(path: str | Path) -> Model:
    path = Path(path)
    metadata = read_metadata(path)
    if path.suffix == ".whl":
        archive, folder = _wheel_members(path)
        with archive:
            return Model(archive.read(f"{folder}/model.onnx"), metadata)
    return Model(path, metadata)
