"""Blobs put in place without passing through Python: a hard link where the bytes are a whole file, else a
copy in the kernel (copy_file_range), and the `docker load` archive written the same way.

A retrained model's image holds a base and a dependency layer of hundreds of MiB that the build did
not change. Reading them into Python and writing them out again, once for the layout and once for the
archive, was most of a retrain's time. A layout's blob is content-addressed and never written in
place by mlpack, so a link to the cache's file (or the base layout's) is the same bytes; a blob
changed later through either name is caught by its digest the next time it is used (oci_memo.py).
"""

from __future__ import annotations

import os
import tarfile
from pathlib import Path
from typing import BinaryIO

BLOCK = tarfile.BLOCKSIZE
RECORD = tarfile.RECORDSIZE


def copy_range(source: BinaryIO, target: BinaryIO, offset: int, size: int) -> None:
    """`size` bytes of `source` from `offset` appended to `target`, in the kernel where it can."""
    target.flush()
    done = 0
    try:
        while done < size:
            copied = os.copy_file_range(source.fileno(), target.fileno(), size - done, offset + done)
            if copied == 0:
                raise OSError("the source ended before its size")
            done += copied
    except OSError:
        if done == 0 and size:  # no copy_file_range here (another file system, an old kernel): through Python
            source.seek(offset)
            target.seek(0, os.SEEK_END)
            remaining = size
            while remaining:
                chunk = source.read(min(remaining, 1 << 20))
                if not chunk:
                    raise OSError("the source ended before its size") from None
                target.write(chunk)
                remaining -= len(chunk)
            return
        if done < size:
            raise
    target.seek(0, os.SEEK_END)


def place(source: Path, offset: int, size: int, target: Path) -> None:
    """A new file `target` holding `size` bytes of `source` from `offset`: a hard link when they are all of it.

    `target` must not exist (never written through: it may be a link to another file's bytes)."""
    if offset == 0 and source.stat().st_size == size:
        try:
            os.link(source, target)
            return
        except FileExistsError:
            raise
        except OSError:  # another file system, or links not allowed: a copy
            pass
    with source.open("rb") as data, target.open("xb") as out:
        copy_range(data, out, offset, size)


def write_archive(path: Path, files: list[tuple[str, tarfile.TarInfo, Path | None]]) -> None:
    """A plain tar of (name, header, file) in this order, byte for byte what tarfile's "w|" stream in GNU
    format writes for the same headers, the data copied in the kernel."""
    with path.open("wb") as out:
        for _name, info, file in files:
            out.write(info.tobuf(tarfile.GNU_FORMAT, tarfile.ENCODING, "surrogateescape"))
            if info.isreg() and file is not None:
                with file.open("rb") as data:
                    copy_range(data, out, 0, info.size)
                pad = -info.size % BLOCK
                if pad:
                    out.write(b"\0" * pad)
        written = out.tell() + 2 * BLOCK
        out.write(b"\0" * (2 * BLOCK + (-written % RECORD)))
