"""The predict command line, shared by `mlpack predict` and every model wheel's `python -m MODEL`."""

from __future__ import annotations

import argparse
import csv
import difflib
import io
import json
import os
import sys
import tempfile
from collections.abc import Sequence
from typing import Any, Optional, TextIO

from .files import InputFileError, format_of, predict_file
from .model import Model
from .settings import SettingsError


class SubcommandParser(argparse.ArgumentParser):
    """A subcommand's parser that refuses what it does not know with its own usage (`mlpack build --bogus`:
    build's usage and the flag). argparse hands a subcommand's leftovers back to the top parser, whose
    usage lists only the subcommands; everything after a subcommand's name is the subcommand's."""

    def parse_known_args(self, args: Any = None, namespace: Any = None) -> Any:
        namespace, extras = super().parse_known_args(args, namespace)
        if extras:
            flags = [flag for flag in self._option_string_actions if flag.startswith("--")]
            unknown = next((extra.split("=", 1)[0] for extra in extras if extra.startswith("--")), "")
            close = difflib.get_close_matches(unknown, flags, n=1, cutoff=0.75) if unknown else []
            hint = f" (did you mean {close[0]}?)" if close else ""
            self.error(f"unrecognized arguments: {' '.join(extras)}{hint}")
        return namespace, extras


def add_predict_arguments(parser: argparse.ArgumentParser) -> None:
    """The options `mlpack predict` and `python -m MODEL predict` share."""
    parser.add_argument("--input", "-i", required=True, help="input file ('-' = stdin)")
    parser.add_argument("--format", choices=["jsonl", "json", "csv"], help="default: from the file's suffix")
    parser.add_argument("--output", "-o", default="-", help="JSON Lines output file (default: stdout)")
    parser.add_argument(
        "--on-error",
        choices=["fail", "skip"],
        default="fail",
        help="fail: stop at the first bad record (default); skip: report it (line and field), predict the rest",
    )
    parser.add_argument("--strict", action="store_true", help="absent fields and unknown categories are errors")


def run_predict(model: Model, args: argparse.Namespace, stderr: TextIO, prog: str = "") -> int:
    """Exit 0: all predicted; 1: a bad record stopped it (fail) or some were skipped (skip); 2: an input
    file that cannot be read as a whole (absent, not UTF-8, broken CSV, JSON nested too deeply) or that
    shares no field with the model. Warnings are `PROG: warning: ...` lines, or `warning: ...` without a
    `prog` (`-q`, where the command has it, drops them)."""
    fmt = args.format or format_of(args.input)
    prefix = f"{prog}: warning: " if prog else "warning: "
    quiet = getattr(args, "quiet", False)  # mlpack predict has -q; a model's own CLI has not

    def warn(message: str) -> None:
        if not quiet:
            print(f"{prefix}--input {args.input}: {message}", file=stderr)

    try:
        source = _stdin() if args.input == "-" else open(args.input, encoding=INPUT_ENCODING, newline="")
    except OSError as exc:
        print(f"error: cannot read --input {args.input}: {exc.strerror}", file=stderr)
        return 2
    try:
        with source, _Output(args.output) as out:
            summary = predict_file(
                model, source, fmt, out, on_error=args.on_error, errors=stderr, strict=args.strict, warn=warn
            )
    except UnicodeDecodeError as exc:
        print(f"error: --input {args.input}: not UTF-8 text ({exc.reason} at byte {exc.start})", file=stderr)
        return 2
    except RecursionError:
        print(f"error: --input {args.input}: the input is nested too deeply to be records", file=stderr)
        return 2
    except csv.Error as exc:  # e.g. a field over the csv module's 128 KiB limit
        print(f"error: --input {args.input}: not a readable CSV file: {exc}", file=stderr)
        return 2
    except InputFileError as exc:
        print(f"error: --input {args.input}: {exc}", file=stderr)
        return 2
    except SettingsError as exc:  # e.g. MLPACK_THREADS=abc, met when the session is made
        print(f"error: {exc.message}", file=stderr)
        return exc.exit_code
    except ValueError as exc:
        print(f"error: {args.input}: {exc}", file=stderr)
        return 1
    except BrokenPipeError:  # the reader left (`| head`): the callers end quietly
        raise
    except OSError as exc:
        print(f"error: cannot write {args.output}: {exc.strerror}", file=stderr)
        return 2
    if summary.skipped:
        print(f"{summary.skipped} of {summary.records} record(s) skipped (see the lines above)", file=stderr)
        return 1
    return 0


# UTF-8, a leading byte order mark skipped: Excel's "CSV UTF-8" and PowerShell write one, and read as
# "utf-8" it sticks to the first column's name (that column then read as missing) or breaks the JSON.
INPUT_ENCODING = "utf-8-sig"


def _stdin() -> TextIO:
    """Standard input as UTF-8 (a BOM skipped) whatever the locale says, lines as they are (csv wants them)."""
    buffer = getattr(sys.stdin, "buffer", None)
    if buffer is None:  # replaced by something text-only (an embedding program, a test)
        return sys.stdin
    return io.TextIOWrapper(buffer, encoding=INPUT_ENCODING, newline="")


def main(model: Model, argv: Optional[Sequence[str]] = None, prog: Optional[str] = None, server: Any = None) -> int:
    """`python -m MODEL predict --input FILE` (and `serve`, given the server module): the model's CLI."""
    parser = argparse.ArgumentParser(prog=prog or model.name, description=f"{model.name} {model.version}")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=SubcommandParser)
    predict = commands.add_parser("predict", help="predict for a JSON Lines, JSON or CSV file ('-' = stdin)")
    add_predict_arguments(predict)
    commands.add_parser("info", help="print the model's metadata")
    if server is not None:
        serve = commands.add_parser("serve", help="serve predictions over HTTP")
        server.add_serve_arguments(serve)
    args = parser.parse_args(argv)
    if args.command == "serve":
        return int(server.serve_args(model, args))
    if args.command == "info":
        print(json.dumps(model.metadata, indent=2))
        return 0
    return run_predict(model, args, sys.stderr)  # `warning: ...`, as its errors are `error: ...`


def run_main(model: Model, prog: str, server: Any = None) -> int:
    """`main` as a program: its exit code, with the reader leaving (`| head`) and Ctrl-C ending quietly.
    The model wheel's `python -m MODEL` is this; `mlpack predict` maps the same cases in mlpack's CLI."""
    try:
        code = main(model, prog=prog, server=server)
        sys.stdout.flush()  # inside the try: a reader that left shows here at the latest
        return code
    except BrokenPipeError:
        # The reader went away: end quietly, and keep Python's own flush at exit quiet too.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


class _Output:
    """stdout, or a file written under a temporary name and renamed into place only on success."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.stream: Optional[TextIO] = None
        self.temporary = ""

    def __enter__(self) -> TextIO:
        if self.path == "-":
            self.stream = sys.stdout
            return self.stream
        folder = os.path.dirname(os.path.abspath(self.path))
        handle, self.temporary = tempfile.mkstemp(prefix=".mlpack-predict-", dir=folder)
        self.stream = os.fdopen(handle, "w", encoding="utf-8")
        return self.stream

    def __exit__(self, kind: Any, *exc: object) -> None:
        if self.stream is None or self.stream is sys.stdout:
            return
        self.stream.close()
        if kind is None:
            os.replace(self.temporary, self.path)
        else:
            os.unlink(self.temporary)
