"""A layer of the model image: a reproducible tar of a folder, gzipped, and the digests the image names it by.

Sorted entries, SOURCE_DATE_EPOCH mtimes, uid/gid 0 and no owner names, 0o755/0o644 modes, GNU
headers only where a name is long (never PAX), gzip with mtime 0 and no file name: the same folder
and epoch give the same bytes. Apart from oci.py, which assembles the image, because the dependency
layer (oci_deps.py) is written the same way and oci.py builds on that.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import stat
import tarfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mlpack.errors import ExternalError


class _Hashing:
    """A write-only stream that hashes what it passes on."""

    def __init__(self, stream: Any, sha: Any) -> None:
        self.stream, self.sha, self.size = stream, sha, 0

    def write(self, data: bytes) -> int:
        self.sha.update(data)
        self.size += len(data)
        return int(self.stream.write(data) or len(data))


def entries(root: Path) -> list[tuple[str, Path]]:
    """Every path below `root` by its name in the layer, in the order of those names' UTF-8 bytes."""
    found = [(path.relative_to(root).as_posix(), path) for path in root.rglob("*")]
    return sorted(found, key=lambda item: item[0].encode("utf-8"))


def tar_info(name: str, path: Path, epoch: int) -> tarfile.TarInfo:
    """The header of one entry: owner 0, no owner names, `epoch` as its time, 0o755 or 0o644."""
    info = tarfile.TarInfo(name)
    info.mtime, info.uid, info.gid, info.uname, info.gname = epoch, 0, 0, "", ""
    mode = path.lstat().st_mode
    if stat.S_ISLNK(mode):
        info.type, info.linkname, info.mode = tarfile.SYMTYPE, os.readlink(path), 0o777
    elif stat.S_ISDIR(mode):
        info.type, info.mode = tarfile.DIRTYPE, 0o755
    elif stat.S_ISREG(mode):
        info.size, info.mode = path.stat().st_size, 0o755 if mode & 0o111 else 0o644
    else:
        raise ExternalError(f"{path} is neither a file, a folder nor a link: it cannot go into a layer")
    return info


def write_tar(stream: Any, files: list[tuple[str, Path]], epoch: int) -> None:
    with tarfile.open(fileobj=stream, mode="w|", format=tarfile.GNU_FORMAT) as tar:
        for name, path in files:
            info = tar_info(name, path, epoch)
            if info.isreg():
                with path.open("rb") as data:
                    tar.addfile(info, data)
            else:
                tar.addfile(info)


@dataclass(frozen=True)
class Layer:
    path: Path
    digest: str
    diff_id: str
    size: int
    unpacked: int


def write_layer(root: Path, out: Path, epoch: int, *, compress: bool = True) -> Layer:
    digest, diff_id = hashlib.sha256(), hashlib.sha256()
    with out.open("wb") as raw:
        packed = _Hashing(raw, digest)
        if compress:
            with gzip.GzipFile(filename="", mode="wb", fileobj=packed, mtime=0, compresslevel=6) as zipped:  # type: ignore[call-overload]
                plain = _Hashing(zipped, diff_id)
                write_tar(plain, entries(root), epoch)
        else:
            plain = _Hashing(packed, diff_id)
            write_tar(plain, entries(root), epoch)
    return Layer(out, "sha256:" + digest.hexdigest(), "sha256:" + diff_id.hexdigest(), packed.size, plain.size)


__all__ = ["Layer", "entries", "tar_info", "write_layer", "write_tar"]
