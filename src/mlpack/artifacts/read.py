"""Reading built artifacts back: the metadata and the model of a `.onnx` file, a model `.whl`,
an image's build context (`NAME-VERSION.docker/`), a `docker save` archive or an image.

Artifacts come from others, so nothing is read before its size is known: a wheel member's
declared size and compression ratio are checked first (zipfile then stops at the declared size,
so a member cannot lie its way past the check), and metadata must have the shape every reader
relies on — anything else is "not an mlpack model", exit 2, never a TypeError or KeyError.
"""

from __future__ import annotations

import json
import os
import zipfile
import zlib
from pathlib import Path
from typing import Any

from mlpack.errors import ConfigError
from mlpack.runtime import Metadata, Model, read_onnx_metadata
from mlpack.runtime.contract import check_metadata as contract_check
from mlpack.runtime.settings import SettingsError

MiB = 1 << 20
MAX_METADATA_BYTES = 16 * MiB  # a real one is a few KiB to a few MiB (baseline bins, categories)
MAX_MODEL_BYTES = 2048 * MiB  # protobuf, and so ONNX, cannot hold more in one file
# Deflate reaches ~1000:1 on constant data; ONNX files and JSON compress 2-10:1. A large member
# compressed far beyond that is a zip bomb.
MAX_RATIO = 100
_RATIO_APPLIES_FROM = 1 * MiB
MAX_JSON_DEPTH = 64


def _size(n: int) -> str:
    return f"{n / MiB:.0f} MiB" if n >= MiB else f"{n} bytes"


def _check_member(info: zipfile.ZipInfo, limit: int, where: Path) -> None:
    name = info.filename
    if info.file_size > limit:
        raise ConfigError(
            f"{where} is not an mlpack model wheel: {name} would unpack to {_size(info.file_size)} "
            f"(more than the {_size(limit)} allowed)"
        )
    if info.file_size > _RATIO_APPLIES_FROM and info.file_size > MAX_RATIO * max(info.compress_size, 1):
        raise ConfigError(
            f"{where} is not an mlpack model wheel: {name} is compressed "
            f"{info.file_size // max(info.compress_size, 1)}:1 (a zip bomb?)"
        )


def _read_member(archive: zipfile.ZipFile, name: str, limit: int, where: Path) -> bytes:
    _check_member(archive.getinfo(name), limit, where)
    try:
        return archive.read(name)
    except (zipfile.BadZipFile, zlib.error, NotImplementedError, OSError, EOFError) as exc:
        raise ConfigError(f"{where}: {name} cannot be unpacked: {exc}") from None


def _depth(value: Any, limit: int) -> int:
    """Nesting depth, counted without recursion and stopping past `limit`."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        node, depth = stack.pop()
        deepest = max(deepest, depth)
        if deepest > limit:
            break
        if isinstance(node, dict):
            stack.extend((child, depth + 1) for child in node.values())
        elif isinstance(node, list):
            stack.extend((child, depth + 1) for child in node)
    return deepest


def parse_metadata(raw: bytes | str, where: str) -> Metadata:
    """metadata.json's bytes → the checked metadata, or ConfigError "not an mlpack model"."""
    try:
        text = raw.decode("utf-8") if isinstance(raw, bytes) else raw
        metadata = json.loads(text)
    except (UnicodeDecodeError, ValueError) as exc:
        raise ConfigError(f"{where} is not an mlpack model: its metadata is not JSON ({exc})") from None
    except RecursionError:
        raise ConfigError(f"{where} is not an mlpack model: its metadata is nested too deeply") from None
    return check_metadata(metadata, where)


def check_metadata(metadata: Any, where: str) -> Metadata:
    """A finished build's metadata, checked by the runtime's one check of the contract (with the
    keys of a built model), or ConfigError "WHERE is not an mlpack model: ..."."""
    if isinstance(metadata, dict) and _depth(metadata, MAX_JSON_DEPTH) > MAX_JSON_DEPTH:
        raise ConfigError(f"{where} is not an mlpack model: its metadata is nested too deeply")
    try:
        return contract_check(metadata, built=True)
    except ValueError as exc:
        raise ConfigError(f"{where} is {exc}" if str(exc).startswith("not ") else f"{where}: {exc}") from None


def _wheel_members(path: Path) -> tuple[zipfile.ZipFile, str]:
    """The open wheel and its model package's folder (the one holding metadata.json and model.onnx)."""
    try:
        archive = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError) as exc:
        raise ConfigError(f"{path} is not a readable wheel: {exc}") from None
    try:  # every member, so that no reader of this wheel (inspect, predict, serve) unpacks a bomb
        for info in archive.infolist():
            _check_member(info, MAX_MODEL_BYTES, path)
    except ConfigError:
        archive.close()
        raise
    names = set(archive.namelist())
    for name in sorted(names):
        folder, _, leaf = name.rpartition("/")
        if leaf == "metadata.json" and "/" not in folder and f"{folder}/model.onnx" in names:
            return archive, folder
    archive.close()
    raise ConfigError(f"{path} is not an mlpack model wheel (no model.onnx with metadata.json inside)")


def _check_exists(path: Path) -> None:
    if not path.is_file():
        raise ConfigError(f"artifact not found: {path}")


def read_any_metadata(reference: str) -> Metadata:
    """`mlpack inspect`: a .onnx file, a model .whl, an image build context (`.docker` folder), a
    `docker save` archive, or an image in the engine."""
    from mlpack.artifacts.image import read_image_metadata

    path = Path(reference)
    if path.suffix in (".onnx", ".whl"):
        return read_metadata(path)
    if path.is_dir():
        return read_context_metadata(path)
    if path.is_file():
        if path.suffix != ".tar":
            raise ConfigError(
                f"{path}: expected a .onnx file, a model .whl, an image build context (.docker folder) "
                "or a docker image archive (.tar)"
            )
        return check_metadata(read_image_metadata(reference), str(path))
    if path.suffix in (".tar", ".docker") or os.sep in reference:
        raise ConfigError(f"artifact not found: {path}")
    return check_metadata(read_image_metadata(reference), f"image {reference}")  # a tag or id in the engine


def read_context_metadata(folder: Path) -> Metadata:
    """The metadata of the model an image build context (`NAME-VERSION.docker/`) packs."""
    found = sorted((folder / "model" / "opt" / "model-app").glob("*/metadata.json"))
    if len(found) != 1:
        raise ConfigError(
            f"{folder} is not an mlpack image build context (no model/opt/model-app/PACKAGE/metadata.json)"
        )
    if found[0].stat().st_size > MAX_METADATA_BYTES:
        raise ConfigError(f"{folder} is not an mlpack image build context: its metadata.json is too large")
    return parse_metadata(found[0].read_bytes(), str(folder))


def read_metadata(path: str | Path) -> Metadata:
    path = Path(path)
    _check_exists(path)
    if path.suffix == ".whl":
        archive, folder = _wheel_members(path)
        with archive:
            raw = _read_member(archive, f"{folder}/metadata.json", MAX_METADATA_BYTES, path)
        return parse_metadata(raw, str(path))
    if path.suffix == ".onnx":
        if path.stat().st_size > MAX_MODEL_BYTES:
            raise ConfigError(f"{path} is larger than an ONNX file can be ({_size(MAX_MODEL_BYTES)})")
        try:
            metadata = read_onnx_metadata(path)
        except ValueError as exc:
            raise ConfigError(f"{path}: {exc}") from None
        except RecursionError:
            raise ConfigError(f"{path} is not an mlpack model: its metadata is nested too deeply") from None
        except SettingsError:  # MLPACK_THREADS=abc: the setting's own message, not the file's
            raise
        except Exception as exc:  # onnxruntime raises its own exception types for unreadable files
            raise ConfigError(f"{path} is not a readable ONNX model: {exc}") from None
        return check_metadata(metadata, str(path))
    raise ConfigError(f"{path}: expected a .onnx file or a model .whl")


def open_model(path: str | Path) -> Model:
    path = Path(path)
    metadata = read_metadata(path)
    if path.suffix == ".whl":
        archive, folder = _wheel_members(path)
        with archive:
            onnx_bytes = _read_member(archive, f"{folder}/model.onnx", MAX_MODEL_BYTES, path)
        try:
            return Model(onnx_bytes, metadata)
        except (ValueError, KeyError, TypeError) as exc:
            raise ConfigError(f"{path} is not an mlpack model wheel: {exc}") from None
        except Exception as exc:  # onnxruntime's own exception types
            raise ConfigError(f"{path}: its model.onnx is not a readable ONNX model: {exc}") from None
    return Model(path, metadata)
