"""The command line: argument parsing, progress, `--json`, and errors → exit codes. Nothing else."""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading
import warnings
from collections.abc import Sequence
from typing import Any

from mlpack.cli.commands import _print_json
from mlpack.cli.parser import build_parser
from mlpack.errors import MlpackError
from mlpack.redaction import redact
from mlpack.runtime.settings import SettingsError


class Terminated(BaseException):
    """SIGTERM, raised like KeyboardInterrupt so that every `finally` runs: embedded servers stop,
    their temporary folders and the build's scratch folder are removed."""


def _raise_terminated(signum: int, _frame: object) -> None:
    raise Terminated(signum)


def _show_warning(
    message: Warning | str, category: type[Warning], filename: str, lineno: int, file: Any = None, line: Any = None
) -> None:
    # Libraries warn with text that may quote a connection string: through `redact`, one line, no source.
    print(redact(f"mlpack: warning: {message}"), file=sys.stderr)  # the form of mlpack's own warnings


def _quiet_broken_pipe() -> int:
    """The reader went away (`mlpack ... | head`): no traceback, and none at exit when Python flushes."""
    with contextlib.suppress(OSError, ValueError):
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    return 1


def main(argv: Sequence[str] | None = None) -> int:
    in_main_thread = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, _raise_terminated) if in_main_thread else None
    shown = warnings.showwarning
    warnings.showwarning = _show_warning
    try:
        try:
            code = _main(argv)
        finally:  # also for argparse's SystemExit (--help, usage): a reader that left shows here, not at exit
            sys.stdout.flush()
        return code
    except BrokenPipeError:  # also from --help or usage output
        return _quiet_broken_pipe()
    finally:
        warnings.showwarning = shown
        if in_main_thread:
            signal.signal(signal.SIGTERM, previous)


def _main(argv: Sequence[str] | None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.handler(args))
    except MlpackError as exc:
        if getattr(args, "json", False):
            _print_json({"error": exc.message, "details": exc.details, "exit_code": exc.exit_code})
        print(f"error: {redact(exc.message)}", file=sys.stderr)
        if exc.details:
            print(redact(exc.details), file=sys.stderr)
        return exc.exit_code
    except SettingsError as exc:  # a runtime setting (MLPACK_THREADS=abc) met outside `serve`, e.g. by parity
        print(f"error: {redact(exc.message)}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except Terminated:
        print("terminated", file=sys.stderr)
        return 143
    except BrokenPipeError:
        return _quiet_broken_pipe()


__all__ = ["Terminated", "build_parser", "main"]
