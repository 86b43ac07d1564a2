"""Freed memory handed back to the system between a build's large steps.

glibc's malloc keeps what Python and numpy free in its heap for the next allocation, and an array
above its mmap threshold is mapped on its own. At a million documents the steps of a build free
hundreds of megabytes of arrays (the loaded columns once validated, the dataset's columns once
split, the preprocessing's passes once fitted) and then allocate the next step's largest array
(the training rows' features, above the threshold) in fresh pages: the process held both, and
its peak was the sum of what an earlier step had freed and what the next one used. `release()`
gives the heap's free pages back (malloc_trim), so what was freed no longer counts. Elsewhere
than glibc it does nothing.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
from collections.abc import Callable


@functools.cache
def _trim() -> Callable[[int], int] | None:
    name = ctypes.util.find_library("c")
    if name is None:
        return None
    try:
        return getattr(ctypes.CDLL(name), "malloc_trim", None)
    except OSError:
        return None


def release() -> bool:
    """The heap's free memory back to the system; whether there was a malloc_trim to ask."""
    trim = _trim()
    if trim is None:
        return False
    trim(0)
    return True


__all__ = ["release"]
