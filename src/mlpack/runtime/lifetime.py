"""A child process's life tied to its parent's: on Linux the kernel signals the child as soon as the
thread that started it dies, even by SIGKILL or a crash. The served model's worker processes stop
with their supervisor; the build's embedded MongoDB server (and the tests' servers) with the build:
a pytest worker that crashed left its server running, with nothing to stop it.
"""

from __future__ import annotations

import ctypes
import functools
import signal
import sys
from collections.abc import Callable

_PR_SET_PDEATHSIG = 1


def parent_death_signal(signal_number: int = signal.SIGKILL) -> Callable[[], object] | None:
    """A call that asks for `signal_number` at the parent's death, for the process it runs in: a
    child's `preexec_fn`, or a forked worker's first step. prctl is looked up here, before any fork:
    a forked child may not import (another thread may hold the import lock at the fork). None
    elsewhere than on Linux, where no such call exists."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None
    return functools.partial(prctl, _PR_SET_PDEATHSIG, signal_number, 0, 0, 0)


__all__ = ["parent_death_signal"]
