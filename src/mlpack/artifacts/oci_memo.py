"""Checks remembered by file: a blob hashed once is not hashed again while its file is unchanged.

A retrained model's image is built on the same base and dependency layer as its predecessor's; hashing
those hundreds of MiB again on every build was most of a retrain's time. What a check found (a blob's
digest, a layer's digest and gzip flag) is kept under MLPACK_CACHE_DIR/verified, keyed by the file's
absolute path and what was checked, with the file's device, inode, size and modification time in
nanoseconds, as git's index keeps a file's hash (ctime is left out, as git's core.trustctime=false
does: linking a blob into a layout changes it). Any write to the file moves its mtime, so a changed
blob is hashed again and refused. Only a result that passed is remembered, and only when the file
did not change while it was hashed. The memo is best effort: one that cannot be read or written only
costs the next build the hashing.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any


def cache_root() -> Path:
    """MLPACK_CACHE_DIR, else ~/.cache/mlpack (XDG_CACHE_HOME respected): the blobs, layers and this memo."""
    if os.environ.get("MLPACK_CACHE_DIR"):
        return Path(os.environ["MLPACK_CACHE_DIR"])
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "mlpack"


def cache_dir() -> Path:
    """The content-addressed blobs: a registry's layers, the dependency layers made here."""
    return cache_root() / "blobs" / "sha256"


def _signature(path: Path) -> list[int]:
    found = path.stat()
    return [found.st_dev, found.st_ino, found.st_size, found.st_mtime_ns]


def _entry(path: Path, what: str) -> Path:
    name = hashlib.sha256(f"{os.path.abspath(path)}\0{what}".encode()).hexdigest()
    return cache_root() / "verified" / f"{name}.json"


def _write(entry: Path, signature: list[int], what: str, value: Any) -> None:
    try:
        entry.parent.mkdir(parents=True, exist_ok=True)
        partial = entry.with_name(f"{entry.name}.{os.getpid()}.part")
        partial.write_text(json.dumps({"signature": signature, "what": what, "value": value}), encoding="utf-8")
        os.replace(partial, entry)
    except OSError:
        pass


def remember(path: Path, what: str, value: Any) -> None:
    """What a check of the file as it is now would find, known already (a blob hashed as it was written)."""
    with contextlib.suppress(OSError):
        _write(_entry(path, what), _signature(path), what, value)


def remembered(path: Path, what: str, check: Callable[[], Any]) -> Any:
    """`check()`'s (JSON) result for this file as it is now: remembered, or computed and remembered.

    `check` raises when the file fails it; nothing is remembered then."""
    try:
        before = _signature(path)
    except OSError:
        return check()
    entry = _entry(path, what)
    try:
        found = json.loads(entry.read_text(encoding="utf-8"))
        if found["signature"] == before and found["what"] == what:
            return found["value"]
    except (OSError, ValueError, KeyError, TypeError):
        pass
    value = check()
    try:
        if _signature(path) == before:  # unchanged while it was read: the value is of these bytes
            _write(entry, before, what, value)
    except OSError:
        pass
    return value
