"""Freed memory handed back to the system: between a build's large steps, and by the served
model's inference log once its queue drains (its records of ~30 KB stay in glibc's heap otherwise).

glibc's malloc keeps what Python and numpy free in its heap for the next allocation, and an array
above its mmap threshold is mapped on its own. At a million documents the steps of a build free
hundreds of megabytes of arrays (the loaded columns once validated, the dataset's columns once
split, the preprocessing's passes once fitted) and then allocate the next step's largest array
(the training rows' features, above the threshold) in fresh pages: the process held both, and
its peak was the sum of what an earlier step had freed and what the next one used. `release()`
gives the heap's free pages back (malloc_trim), so what was freed no longer counts. Elsewhere
than glibc it does nothing.

`map_large_arrays()` fixes glibc's mmap threshold where glibc would raise it: after an array that
was mapped on its own is freed, glibc serves allocations up to that array's size (up to 32 MiB)
from the heap from then on, and what they free stays resident until the next `release()`. At a
million documents the arrays of a few megabytes that each step makes and frees a column at a time
(a validated column, a chunk of the graph's features, a pass of the drift baseline) piled up in
the heap that way. With the threshold fixed, an array above it is mapped on its own and unmapped
when freed, and no step keeps what the one before it freed.
"""

from __future__ import annotations

import ctypes
import functools
from collections.abc import Callable


@functools.cache
def _libc(function: str) -> Callable[..., int] | None:
    """A function of the C library by name, or None where the library or the function is not there.

    Looked up among the symbols the process has loaded (the C library's, on Linux and macOS), not by
    ctypes.util.find_library, which runs ldconfig: a served model's first trim waited on that child."""
    try:
        return getattr(ctypes.CDLL(None), function, None)
    except (OSError, TypeError):  # Windows has no handle of the process's own symbols
        return None


M_MMAP_THRESHOLD = -3  # glibc's mallopt parameter; setting it also stops glibc from raising it
MAPPED_FROM = 128 * 1024  # glibc's own default threshold, before it raises it


def map_large_arrays() -> bool:
    """Allocations of MAPPED_FROM bytes or more are mapped on their own from now on, in this process
    (glibc; elsewhere nothing is done): whether glibc took the setting."""
    mallopt = _libc("mallopt")
    if mallopt is None:
        return False
    return bool(mallopt(M_MMAP_THRESHOLD, MAPPED_FROM))


def release() -> bool:
    """The heap's free memory back to the system; whether there was a malloc_trim to ask."""
    trim = _libc("malloc_trim")
    if trim is None:
        return False
    trim(0)
    return True


__all__ = ["map_large_arrays", "release"]
