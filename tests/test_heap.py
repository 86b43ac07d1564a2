"""Freed memory goes back to the system between a build's large steps (mlpack.runtime.heap, issue 23).

glibc keeps freed heap memory for the next allocation; an array above its mmap threshold is mapped
in fresh pages beside it, so a step that freed its arrays and a next step that maps a larger one
added up in the build's peak. After `release()` the freed pages are no longer the process's.
"""

from __future__ import annotations

import os
import platform
import subprocess
import sys

import pytest

# The module alone, loaded from its file: importing the runtime package first (the model, its server)
# fills the heap with what those imports leave, and where the arrays below are placed is no longer known.
HEAP = """
import importlib.util, pathlib
import numpy as np
import mlpack

_spec = importlib.util.spec_from_file_location("heap", pathlib.Path(mlpack.__file__).parent / "runtime" / "heap.py")
heap = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(heap)
"""

# The children's environment is fixed: Python copies it into the heap at start, and where that puts
# the first blocks decides whether glibc's own rule shows (with pytest's PYTEST_CURRENT_TEST, ~800
# bytes more, the 16 MiB array below came from elsewhere and glibc kept its threshold).
_ENV = {"PATH": os.environ.get("PATH", ""), "LANG": "C.UTF-8"}

# Run in a fresh process, whose heap holds nothing else: 64 KiB arrays, each followed by a small live
# allocation, all in the heap (under the mmap threshold), and no free block at its top for free() to
# hand back by itself. Prints the resident bytes held, after free() and after release().
SCRIPT = (
    HEAP
    + """
def resident():
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * 4096

blocks, pins = [], []
for _ in range(1_000):
    blocks.append(np.ones(8_192))
    pins.append(bytes(600))
held = resident()
del blocks
freed = resident()
asked = heap.release()
print(held, freed, resident(), asked, len(pins))
"""
)


@pytest.mark.skipif(sys.platform != "linux" or platform.libc_ver()[0] != "glibc", reason="malloc_trim is glibc's")
def test_freed_heap_memory_is_handed_back() -> None:
    command = [sys.executable, "-c", SCRIPT]
    out = subprocess.run(command, capture_output=True, text=True, check=True, env=_ENV).stdout.split()
    held, freed, released = (int(value) for value in out[:3])
    assert out[3:] == ["True", "1000"]
    assert held - freed < 16 * 2**20  # free() alone keeps the pages
    assert freed - released > 48 * 2**20  # of the 64 MiB freed


# A 16 MiB array mapped and freed (glibc then raises its mmap threshold to 16 MiB), then 1 MiB arrays,
# each followed by a small live allocation: the heap's, unless the threshold is fixed. Prints the
# resident bytes held after the 1 MiB arrays are freed, over those before they were made.
KEPT = (
    HEAP
    + """
import sys

def resident():
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * 4096

if sys.argv[1] == "fixed":
    assert heap.map_large_arrays()
del_me = np.ones(2 * 2**20)
del del_me
before = resident()
blocks, pins = [], []
for _ in range(64):
    blocks.append(np.ones(2**17))
    pins.append(bytes(600))
del blocks
print(resident() - before, len(pins))
"""
)


@pytest.mark.skipif(sys.platform != "linux" or platform.libc_ver()[0] != "glibc", reason="mallopt is glibc's")
def test_large_arrays_freed_are_not_kept_in_the_heap() -> None:
    def kept(mode: str) -> int:
        command = [sys.executable, "-c", KEPT, mode]
        out = subprocess.run(command, capture_output=True, text=True, check=True, env=_ENV).stdout.split()
        assert out[1] == "64"
        return int(out[0])

    assert kept("glibc") > 48 * 2**20  # glibc's raised threshold: the 64 MiB freed stay resident
    assert kept("fixed") < 4 * 2**20
