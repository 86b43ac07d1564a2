"""The CLI as a test sees it: in its own process as a user runs it, and what a clean error looks like."""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


@dataclass
class Result:
    code: int
    out: str
    err: str


# A sitecustomize.py for PYTHONPATH: every Python child records its argv's start and the names of the
# environment variables it was given, to ENV_RECORD (which tools may inherit which secrets).
RECORDER = """
import os, sys
with open(os.environ["ENV_RECORD"], "a", encoding="utf-8") as log:
    log.write(" ".join(sys.orig_argv[1:4]).replace("\\n", " ") + "\\t" + ",".join(sorted(os.environ)) + "\\n")
"""


def run_process(
    *argv: str | Path, env: dict[str, str] | None = None, cwd: Path | None = None, timeout: float = 300
) -> Result:
    """Run `python -m mlpack` as a user would, in its own process."""
    proc = subprocess.run(
        [sys.executable, "-m", "mlpack", *map(str, argv)],
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        cwd=cwd,
        timeout=timeout,
        check=False,
    )
    return Result(proc.returncode, proc.stdout, proc.stderr)


def assert_clean_error(result: Result, code: int, *needles: str) -> None:
    assert result.code == code, (result.code, result.out, result.err)
    assert "Traceback" not in result.err + result.out
    for needle in needles:
        assert needle in result.err, (needle, result.err)


def artifacts_in(folder: Path) -> list[str]:
    """Every entry in an output folder, hidden ones included: nothing half-written may be left."""
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


HEAVY_IMPORTS = ("sklearn", "skl2onnx", "onnx", "pymongo")  # seconds of imports a mistake should not wait for


def build_before_imports(project: Path, env: dict[str, str] | None = None) -> tuple[str, str]:
    """`mlpack build PROJECT` in a fresh process (the test's own has everything imported already): its
    stdout, "EXIT-CODE [the HEAVY_IMPORTS it had imported]", and its stderr."""
    probe = (
        "import sys\n"
        "from mlpack.cli import main\n"
        f"code = main(['build', {str(project)!r}])\n"
        f"heavy = sorted(m for m in {HEAVY_IMPORTS!r} if m in sys.modules)\n"
        "print(code, heavy)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, env={**os.environ, **(env or {})}, timeout=120
    )
    return done.stdout.strip(), done.stderr
