"""The model wheel installed in a fresh venv: only onnxruntime and numpy come along, and it agrees
with scikit-learn. Needs the package index (or pip's cache) for onnxruntime and numpy."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
import venv
from pathlib import Path
from typing import Any, NamedTuple

import pytest

from mlpack.build import ExportedModel, write_artifacts
from tests.helpers.documents import subscribers
from tests.helpers.interpreters import python_interpreter
from tests.helpers.training import config_for, export, sklearn_frame

# What onnxruntime itself pulls in; anything else (scikit-learn, pandas, mlpack...) is a leak.
ALLOWED = {
    "churn-model",
    "test-model",
    "onnxruntime",
    "numpy",
    "flatbuffers",
    "packaging",
    "protobuf",
    "coloredlogs",
    "humanfriendly",
    "sympy",
    "mpmath",
    "pip",
    "setuptools",
}


class Installed(NamedTuple):
    python: Path  # the fresh venv's interpreter, with the model wheel installed
    exported: ExportedModel  # the scikit-learn pipeline it came from
    records: list[dict[str, Any]]  # records it has not seen
    wheel: Path


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Installed:
    root = tmp_path_factory.mktemp("wheel")
    (root / "mlpack.toml").write_text("# test config\n", encoding="utf-8")
    config = config_for("sklearn.ensemble.GradientBoostingClassifier", "classification", {"random_state": 0})
    config = dataclasses.replace(config, path=root / "mlpack.toml")
    exported = export(config, subscribers(240))
    result = write_artifacts(config, exported, root / "dist")
    env = root / "venv"
    venv.EnvBuilder(with_pip=True).create(env)
    python = env / "bin" / "python"
    subprocess.run(
        [python, "-m", "pip", "install", "-q", "--disable-pip-version-check", str(result.artifacts["wheel"])],
        check=True,
        timeout=600,
    )
    return Installed(python, exported, subscribers(60, seed=99, absent=False), result.artifacts["wheel"])


def test_only_onnxruntime_and_numpy_are_installed(installed: Installed) -> None:
    python = installed.python
    listing = subprocess.run(
        [python, "-m", "pip", "list", "--format", "json"], capture_output=True, text=True, check=True
    )
    names = {entry["name"].lower() for entry in json.loads(listing.stdout)}
    assert {"test-model", "onnxruntime", "numpy"} <= names
    assert names <= ALLOWED, names - ALLOWED


def test_installed_wheel_predicts_the_same_labels_as_scikit_learn(installed: Installed, tmp_path: Path) -> None:
    python, exported, records, _ = installed
    script = (
        "import json, sys, test_model\n"
        "records = json.load(sys.stdin)\n"
        "print(json.dumps({'labels': test_model.predict(records), 'proba': test_model.predict_proba(records),"
        " 'one': test_model.predict(records[0]), 'version': test_model.__version__, 'classes': test_model.classes,"
        " 'name': test_model.metadata['name']}))\n"
    )
    answer = subprocess.run(
        [python, "-c", script], input=json.dumps(records), capture_output=True, text=True, check=True, cwd=tmp_path
    )
    got = json.loads(answer.stdout)
    frame = sklearn_frame(exported, records)
    assert got["labels"] == exported.trained.pipeline.predict(frame).tolist()
    assert got["one"] == got["labels"][0]
    assert got["version"] == "1.0.0" and got["name"] == "test-model" and got["classes"] == ["churned", "stayed"]
    expected = exported.trained.pipeline.predict_proba(frame)
    assert max(abs(a - b) for row, erow in zip(got["proba"], expected) for a, b in zip(row, erow)) < 1e-4


def test_module_cli_predicts_a_file_and_names_bad_fields(installed: Installed, tmp_path: Path) -> None:
    python, exported, records, _ = installed
    source = tmp_path / "in.jsonl"
    source.write_text("".join(json.dumps(r) + "\n" for r in records[:5]), encoding="utf-8")
    result = subprocess.run(
        [python, "-m", "test_model", "predict", "--input", source],
        capture_output=True,
        text=True,
        check=True,
        cwd=tmp_path,
    )
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert [line["prediction"] for line in lines] == exported.trained.pipeline.predict(
        sklearn_frame(exported, records[:5])
    ).tolist()
    assert set(lines[0]["probabilities"]) == {"churned", "stayed"}

    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({**records[0], "support_calls": "many"}) + "\n", encoding="utf-8")
    failed = subprocess.run(
        [python, "-m", "test_model", "predict", "--input", bad], capture_output=True, text=True, cwd=tmp_path
    )
    assert failed.returncode == 1
    assert "field 'support_calls': expected a number" in failed.stderr and "Traceback" not in failed.stderr
    assert sys.executable != str(python)


def test_installed_wheel_serves_with_only_its_own_dependencies(installed: Installed) -> None:
    from tests.helpers.http_client import ServerProcess

    python, exported, records, _ = installed
    process = ServerProcess([python, "-m", "test_model", "serve"])
    try:
        answer = process.request("POST", "/predict", records[:3])
        assert answer.status == 200
        frame = sklearn_frame(exported, records[:3])
        assert answer.json()["predictions"] == exported.trained.pipeline.predict(frame).tolist()
        # Absent fields are missing values, imputed as in training; strict mode and wrong types refuse.
        assert process.request("POST", "/predict", {"tenure_months": 1}).status == 200
        strict = process.request("POST", "/predict?strict=true", {"tenure_months": 1})
        assert strict.status == 422 and b"absent" in strict.body
        wrong = process.request("POST", "/predict", {"tenure_months": "soon"})
        assert wrong.status == 422 and b"tenure_months" in wrong.body
    finally:
        assert process.stop() == 0


@pytest.mark.parametrize("version", ["3.9", "3.13"])
def test_wheel_predicts_on_the_oldest_and_newest_python(
    installed: Installed, version: str, tmp_path: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    interpreter = python_interpreter(version)
    if interpreter is None:
        pytest.skip(f"no Python {version} on this machine")
    _, exported, records, wheel = installed
    env = tmp_path / "venv"
    subprocess.run([interpreter, "-m", "venv", env], check=True)
    subprocess.run(
        [env / "bin" / "python", "-m", "pip", "install", "-q", "--disable-pip-version-check", wheel],
        check=True,
        timeout=600,
    )
    script = "import json, sys, test_model; print(json.dumps(test_model.predict(json.load(sys.stdin))))"
    answer = subprocess.run(
        [env / "bin" / "python", "-c", script], input=json.dumps(records), capture_output=True, text=True, check=True
    )
    assert json.loads(answer.stdout) == exported.trained.pipeline.predict(sklearn_frame(exported, records)).tolist()


@pytest.mark.parametrize("workers", ["1", "3"])
def test_the_inference_log_without_pymongo_is_one_error_line_and_exit_2(installed: Installed, workers: str) -> None:
    """The plain wheel has no pymongo: turning its log on says which extra to install, as `error:`, exit
    2 (a setting the server cannot use), before any request; it was the bare message and exit 1. Found
    before the workers fork: one line, not one per worker."""
    env = {**os.environ, "MLPACK_INFERENCE_LOG_URI": "mongodb://127.0.0.1:1/"}
    done = subprocess.run(
        [installed.python, "-m", "test_model", "serve", "--port", "0", "--workers", workers],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert done.returncode == 2, (done.returncode, done.stderr)
    assert done.stderr == "error: inference logging needs pymongo: pip install 'test-model[serve]'\n", done.stderr
