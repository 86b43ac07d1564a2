"""The shape of the code: the import rules of docs/architecture.md, and modules small enough to read."""

from __future__ import annotations

import ast
import os
import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
PACKAGE = REPO / "src" / "mlpack"
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")

# -- imports ------------------------------------------------------------------------------------
# The contracts are in pyproject.toml ([tool.importlinter]); these tests run them, and check that
# each of them still catches what it is there to catch.

CONTRACTS = ("layers", "sealed-runtime", "sealed-spark-worker")


def lint_imports(root: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(LINT_IMPORTS), "--no-logo", "--no-cache"],
        cwd=root,
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_the_import_contracts_are_kept() -> None:
    result = lint_imports(REPO)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    assert f"Contracts: {len(CONTRACTS)} kept, 0 broken." in result.stdout


# import-linter forbids named modules but cannot say "the standard library and these, nothing else",
# which is what a model wheel and a Spark executor can rely on: this small checker says it. The
# mlpack-internal half of the rule (no other mlpack module) is import-linter's sealed-* contracts.
# Each pattern is a glob under src/mlpack; a file takes the allowance of the last pattern it matches.
ALLOWED_OUTSIDE_STDLIB: dict[str, set[str]] = {
    # Copied into every model wheel, whose only requirements are numpy and onnxruntime.
    "runtime/**/*.py": {"numpy", "onnxruntime"},  # the server (runtime/serving/) included
    "runtime/drift.py": {"numpy"},  # the drift statistics, also used by the build and `mlpack monitor`
    "runtime/settings.py": set(),  # the server's settings: the standard library alone
    # Imported only when the inference log is switched on (the plain wheel has no pymongo; bson ships in it).
    "runtime/serving/inference_log.py": {"numpy", "onnxruntime", "pymongo", "bson"},
    # Pickled by value onto Spark executors, which have pyspark, pymongo, onnxruntime and numpy but not
    # mlpack; the wheel it loads brings onnxruntime and numpy itself.
    "scoring/worker.py": {"pymongo", "pyspark"},
}


def imports_outside_stdlib(path: Path, package: Path) -> set[str]:
    """The top-level names a file imports beyond the standard library; "mlpack" for a relative import
    that climbs out of the file's world (its first folder under src/mlpack, or the file itself)."""
    where = path.relative_to(package).parts
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
        elif isinstance(node, ast.ImportFrom) and (len(where) == 1 or node.level >= len(where)):
            names.add("mlpack")  # `from .. import x` in runtime/, `from ... import x` in runtime/serving/
    return {name for name in names if name not in sys.stdlib_module_names and name != "__future__"}


def sealed_import_violations(package: Path) -> dict[str, set[str]]:
    """Each sealed file (relative to `package`) → what it imports beyond its allowance."""
    allowed: dict[Path, set[str]] = {}
    for pattern, names in ALLOWED_OUTSIDE_STDLIB.items():
        for path in package.glob(pattern):
            allowed[path] = names
    assert len(allowed) >= 10, f"the sealed files are not where the patterns look: {sorted(allowed)}"
    found = {path: imports_outside_stdlib(path, package) - names for path, names in allowed.items()}
    return {str(path.relative_to(package)): extra for path, extra in sorted(found.items()) if extra}


def test_the_sealed_worlds_import_only_the_standard_library_and_their_allowance() -> None:
    assert sealed_import_violations(PACKAGE) == {}
    # What the runtime needs, as a whole (so a pattern that stopped matching would show here too).
    runtime = sorted(set(PACKAGE.glob("runtime/**/*.py")) - {PACKAGE / "runtime/serving/inference_log.py"})
    assert runtime and set().union(*(imports_outside_stdlib(p, PACKAGE) for p in runtime)) == {"numpy", "onnxruntime"}


def test_the_rules_catch_what_they_are_there_to_catch(tmp_path: Path) -> None:
    """A copy of the package with one planted break per rule: every contract and the checker fail."""
    copy = tmp_path / "repo"
    shutil.copytree(PACKAGE, copy / "src" / "mlpack", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(REPO / "pyproject.toml", copy)
    planted = copy / "src" / "mlpack"

    def plant(relative: str, line: str) -> None:
        path = planted / relative
        path.write_text(path.read_text(encoding="utf-8") + f"\n{line}\n", encoding="utf-8")

    plant("features/__init__.py", "import mlpack.build")  # a lower layer reaching up
    plant("runtime/serving/wire.py", "from mlpack import names")  # the shipped server reaching outside itself
    plant("scoring/worker.py", "from mlpack import errors")  # the Spark worker importing mlpack
    plant("runtime/drift.py", "import onnxruntime")  # beyond drift's allowance
    plant("runtime/settings.py", "import numpy")  # the settings: the standard library only
    plant("runtime/model.py", "import pandas")  # a build-side library in the wheel
    plant("scoring/worker.py", "import numpy")  # executors get numpy from the wheel, not from here
    plant("runtime/serving/v2.py", "from ... import __version__")  # the package root: no contract sees it
    (planted / "newcomer.py").write_text('"""A module no layer names."""\n', encoding="utf-8")

    result = lint_imports(copy, env={"PYTHONPATH": str(copy / "src")})
    assert result.returncode != 0
    broken = [line for line in result.stdout.splitlines() if line.endswith("BROKEN")]
    assert f"Contracts: 0 kept, {len(CONTRACTS)} broken." in result.stdout, result.stdout[-4000:]
    assert len(broken) == len(CONTRACTS)
    for expected in (
        "mlpack.features is not allowed to import mlpack.build",
        "mlpack.runtime is not allowed to import mlpack.names",
        "mlpack.scoring.worker is not allowed to import mlpack.errors",
        "mlpack.newcomer",  # exhaustive: a new module has to be given a layer
    ):
        assert expected in result.stdout, (expected, result.stdout[-4000:])
    assert sealed_import_violations(planted) == {
        "runtime/drift.py": {"onnxruntime"},
        "runtime/model.py": {"pandas"},
        "runtime/serving/v2.py": {"mlpack"},
        "runtime/serving/wire.py": {"mlpack"},  # the checker sees an absolute import of mlpack too
        "runtime/settings.py": {"numpy"},
        "scoring/worker.py": {"numpy", "mlpack"},
    }


# -- module size --------------------------------------------------------------------------------
MAX_LINES = 400

# Today's modules over MAX_LINES, each with its line count when this test was written as its
# ceiling. This list may only shrink: a listed file may not grow, a file under the limit may not
# join it, and an entry whose file is split (or back under the limit) must be deleted here.
OVER_THE_LIMIT: dict[str, int] = {}


def line_counts(package: Path) -> dict[str, int]:
    return {
        str(path.relative_to(package)): len(path.read_text(encoding="utf-8").splitlines())
        for path in sorted(package.rglob("*.py"))
    }


def size_problems(counts: dict[str, int], ceilings: dict[str, int]) -> tuple[dict[str, int], list[str]]:
    """(modules too long: over the limit and over their ceiling, if any; ceilings to delete)."""
    too_long = {name: n for name, n in counts.items() if n >= MAX_LINES and n > ceilings.get(name, 0)}
    done = sorted(name for name in ceilings if counts.get(name, 0) < MAX_LINES)
    return too_long, done


def test_every_module_is_under_the_line_limit_or_shrinking() -> None:
    counts = line_counts(PACKAGE)
    assert len(counts) > 50
    too_long, done = size_problems(counts, OVER_THE_LIMIT)
    assert not too_long, f"{MAX_LINES} lines or more (past their ceiling, if listed): split them: {too_long}"
    assert not done, f"now under {MAX_LINES} lines, or gone: delete them from OVER_THE_LIMIT: {done}"


def test_the_limit_and_the_ceilings() -> None:
    ceilings = {"big.py": 500, "split.py": 450}
    counts = {"small.py": MAX_LINES - 1, "new.py": MAX_LINES, "big.py": 500, "grown.py": 401, "split.py": 120}
    assert size_problems(counts, ceilings) == ({"new.py": MAX_LINES, "grown.py": 401}, ["split.py"])
    assert size_problems({**counts, "big.py": 501}, ceilings)[0]["big.py"] == 501
    assert size_problems({"big.py": 480}, ceilings) == ({}, ["split.py"])  # shrinking, still listed


# -- test markers -------------------------------------------------------------------------------
def test_every_slow_entry_names_a_test() -> None:
    """tests/conftest.py marks `slow` by name: a renamed or deleted test must leave the list too."""
    from tests.conftest import SLOW

    for entry in sorted(SLOW):
        path, _, name = entry.partition("::")
        assert (REPO / path).is_file(), entry
        if name != "*":
            tree = ast.parse((REPO / path).read_text(encoding="utf-8"))
            assert name in {node.name for node in tree.body if isinstance(node, ast.FunctionDef)}, entry


MARKS_PLUGIN = """
def pytest_collection_finish(session):
    for item in session.items:
        marks = sorted({m.name for m in item.iter_markers()} - {"parametrize", "skipif", "usefixtures"})
        print("MARKS", item.nodeid, ",".join(marks))
"""


def test_markers_follow_the_fixtures_a_test_uses(tmp_path: Path) -> None:
    (tmp_path / "show_marks.py").write_text(MARKS_PLUGIN, encoding="utf-8")
    files = ["test_image.py", "test_escaping.py", "test_score.py", "test_card.py", "test_node_client.py"]
    result = subprocess.run(
        # -n 0: collected in this process, where the plugin prints (not in pytest-xdist's workers)
        [
            sys.executable,
            "-m",
            "pytest",
            "--collect-only",
            "-q",
            "-n",
            "0",
            "-p",
            "show_marks",
            *(f"tests/{f}" for f in files),
        ],
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(tmp_path)},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    marks = {
        nodeid: set(filter(None, found.split(",")))
        for _, nodeid, found in (line.split(" ", 2) for line in result.stdout.splitlines() if line.startswith("MARKS "))
    }
    assert marks["tests/test_image.py::test_retrain_reuses_the_dependency_layer"] == {"docker", "mongo"}
    assert marks["tests/test_image.py::test_image_builds_runs_and_describes_itself"] == {"docker", "mongo", "slow"}
    assert "docker" not in marks["tests/test_image.py::test_no_engine_without_the_flag_builds_the_rest_and_says_so"]
    assert "docker" in marks["tests/test_escaping.py::test_labels_round_trip_through_the_docker_engine"]
    assert marks["tests/test_score.py::test_spark_engine_writes_the_same_documents_as_the_local_engine"] == {
        "spark",
        "mongo",
    }
    assert "spark" not in marks["tests/test_score.py::test_filter_scores_only_the_matching_documents"]
    assert marks["tests/test_card.py::test_the_card_renders_in_headless_chromium"] == {"browser"}
    node = {nodeid for nodeid, found in marks.items() if "node" in found}
    assert node and all(nodeid.startswith("tests/test_node_client.py::") for nodeid in node)


def _test_imports(source: str) -> list[str]:
    """The test modules (tests/test_*.py) that `source` imports: shared code lives in tests/helpers/."""
    found = []
    for node in ast.walk(ast.parse(source)):
        names = [node.module or ""] if isinstance(node, ast.ImportFrom) else []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        found += [name for name in names if name.startswith("tests.test_")]
    return found


def test_no_test_module_imports_another() -> None:
    # Importing a test module runs its fixtures' definitions twice and ties two files' tests together;
    # shared data, builders and fixtures (as pytest plugins) are in tests/helpers/.
    offenders = {
        path.name: _test_imports(path.read_text(encoding="utf-8")) for path in sorted((REPO / "tests").rglob("*.py"))
    }
    assert {name: found for name, found in offenders.items() if found} == {}
    assert _test_imports("from tests.test_oci import EPOCH\nimport tests.test_cli, os\n") == [
        "tests.test_oci",
        "tests.test_cli",
    ]
