"""The newcomer path (issue 8 item 8): what a first-time user meets with the embedded demo server,
an unreachable database, the `.docker` folder and a fresh `mlpack init`."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from mlpack.artifacts.dist import sha256_of
from mlpack.source.embedded import free_port
from tests.helpers.cli import assert_clean_error
from tests.helpers.documents import subscribers

DEMO = """
[model]
name = "demo-model"
version = "{version}"
task = "classification"

[source]
uri_env = "MLPACK_NEWCOMER_URI"
database = "crm"
collection = "customers"
seed = "customers.jsonl"
embedded = true

[features]
numeric = ["tenure_months", "support_calls"]
categorical = ["contract"]
target = "label"

[estimator]
class = "sklearn.linear_model.LogisticRegression"
"""


def _demo(tmp_path: Path, version: str) -> Path:
    project = tmp_path / "demo"
    project.mkdir(exist_ok=True)
    (project / "mlpack.toml").write_text(DEMO.format(version=version), encoding="utf-8")
    (project / "customers.jsonl").write_text(
        "".join(json.dumps(d) + "\n" for d in subscribers(80, absent=False)), encoding="utf-8"
    )
    return project


@pytest.fixture
def no_uri(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MLPACK_NEWCOMER_URI", raising=False)
    monkeypatch.delenv("SOURCE_DATE_EPOCH", raising=False)


def _digests(dist: Path) -> dict[str, str]:
    """The build's artifacts by digest (the report also holds stage timings, so it is left out)."""
    return {p.name: sha256_of(p) for p in sorted(dist.iterdir()) if p.is_file() and p.suffix != ".json"}


def test_auto_with_the_embedded_server_never_reuses_a_version_in_dist(no_uri: None, run: Any, tmp_path: Path) -> None:
    """The embedded registry lives for one build; the build reports in dist/ still count as taken."""
    project = _demo(tmp_path, "auto")
    first = run("build", project, "--json")
    assert first.code == 0, first.err
    before = _digests(project / "dist")
    second = run("build", project, "--json")
    assert second.code == 0, second.err
    assert (json.loads(first.out)["version"], json.loads(second.out)["version"]) == ("1.0.0", "1.0.1")
    after = _digests(project / "dist")
    assert {name: after[name] for name in before} == before  # 1.0.0 untouched


def test_dist_is_never_silently_overwritten(
    no_uri: None, run: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    project = _demo(tmp_path, "1.0.0")
    dist = project / "dist"
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1767225600")
    assert run("build", project).code == 0
    before = _digests(dist)
    # The same data, config and SOURCE_DATE_EPOCH make the same bytes: a rebuild is no overwrite.
    assert run("build", project).code == 0
    assert _digests(dist) == before
    # A different build of the same name and version is refused, and leaves dist/ as it was.
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1767312000")
    result = run("build", project)
    assert_clean_error(result, 2, "already exists and holds a different build", "--force")
    assert _digests(dist) == before
    assert not [p for p in dist.iterdir() if p.name.startswith(".")]
    forced = run("build", project, "--force")
    assert forced.code == 0, forced.err
    assert _digests(dist)["demo_model-1.0.0-py3-none-any.whl"] != before["demo_model-1.0.0-py3-none-any.whl"]


def test_models_with_an_unreachable_database_prints_a_whole_message(
    run: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    project = _demo(tmp_path, "1.0.0")
    port = free_port()
    monkeypatch.setenv("MLPACK_NEWCOMER_URI", f"mongodb://127.0.0.1:{port}/?serverSelectionTimeoutMS=500")
    result = run("models", "--config", project)
    assert_clean_error(result, 3, f"127.0.0.1:{port}", "is unreachable", "Connection refused")
    line = result.err.strip().splitlines()[0]
    assert line.count("(") == line.count(")"), line  # not cut off inside a parenthesis
    assert "Topology" not in line and "configured timeouts" not in line


def test_no_help_text_cites_the_spec() -> None:
    """Users have no SPEC file: help texts must stand on their own."""
    commands = ["build", "inspect", "predict", "serve", "init", "publish", "models", "estimators"]
    for command in [[], *([c] for c in commands)]:
        shown = subprocess.run(
            [sys.executable, "-m", "mlpack", *command, "--help"], capture_output=True, text=True, check=False
        )
        assert shown.returncode == 0, shown.stderr
        assert "SPEC" not in shown.stdout, (command, shown.stdout)


def test_init_points_the_scaffold_at_the_running_mlpack(run: Any, tmp_path: Path) -> None:
    """mlpack-onnx is not on this machine's index; the scaffold pins this version and knows where
    this installation came from (PEP 610 direct_url.json), so init_setup.sh can fall back to it."""
    from importlib.metadata import distribution

    import mlpack

    assert run("init", "first-model", "--directory", tmp_path).code == 0
    project = tmp_path / "first-model"
    assert f"mlpack-onnx[embedded]=={mlpack.__version__}" in (project / "requirements.txt").read_text()
    source = json.loads(distribution("mlpack-onnx").read_text("direct_url.json") or "{}")["url"]
    script = (project / "init_setup.sh").read_text()
    assert f"mlpack-onnx[embedded] @ {source}" in script
    assert subprocess.run(["bash", "-n", project / "init_setup.sh"], check=False).returncode == 0


@pytest.mark.skipif(not os.environ.get("MLPACK_SLOW_TESTS"), reason="creates a venv and installs every dependency")
def test_init_next_step_works_where_mlpack_is_not_published(tmp_path: Path) -> None:
    """The printed next step, verbatim, on a machine whose index lacks mlpack-onnx (6.5 min here)."""
    created = subprocess.run(
        [sys.executable, "-m", "mlpack", "init", "first-model"], cwd=tmp_path, capture_output=True, text=True
    )
    next_step = created.stdout.splitlines()[-1].removeprefix("next: ")
    done = subprocess.run(["bash", "-c", next_step], cwd=tmp_path, capture_output=True, text=True, timeout=1800)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    assert "built first-model 1.0.0" in done.stdout
