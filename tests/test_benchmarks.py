"""The benchmark scripts still name what mlpack has: each `from mlpack... import NAME` (and the test
helpers they borrow) resolves, so a move inside the package cannot silently break a benchmark that no
test runs (they are run by hand, for the figures in the issues and the README)."""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

import pytest

BENCHMARKS = sorted((Path(__file__).resolve().parent.parent / "benchmarks").glob("*.py"))


def unresolved(script: Path) -> list[str]:
    missing = []
    for node in ast.walk(ast.parse(script.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] in ("mlpack", "tests"):
            module = importlib.import_module(node.module)
            for alias in node.names:
                if hasattr(module, alias.name):
                    continue
                try:
                    importlib.import_module(f"{node.module}.{alias.name}")
                except ImportError:
                    missing.append(f"from {node.module} import {alias.name}")
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] == "mlpack":
                    importlib.import_module(alias.name)
    return missing


@pytest.mark.parametrize("script", BENCHMARKS, ids=lambda path: path.name)
def test_a_benchmark_imports_only_what_mlpack_has(script: Path) -> None:
    assert unresolved(script) == []


def test_the_check_sees_a_name_that_moved(tmp_path: Path) -> None:
    script = tmp_path / "old.py"
    script.write_text("from mlpack import experiments\nfrom mlpack.training import experiments as fine\n")
    assert unresolved(script) == ["from mlpack import experiments"]
