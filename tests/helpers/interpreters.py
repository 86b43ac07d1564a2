"""Python interpreters other than this one, for installing a model wheel where mlpack is not."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path


def python_interpreter(version: str) -> str | None:
    """Another CPython on this machine (pyenv's or on PATH) that really runs, else None."""
    candidates = [str(p) for p in sorted(Path.home().glob(f".pyenv/versions/{version}.*/bin/python"))]
    candidates.append(shutil.which(f"python{version}") or "")
    for candidate in filter(None, candidates):
        if subprocess.run([candidate, "-c", "import venv"], capture_output=True, check=False).returncode == 0:
            return candidate
    return None
