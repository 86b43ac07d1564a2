"""Shared fixtures: a real MongoDB wire server, project folders, and a CLI runner.

Tests use the server named by MONGODB_URI when it is set (CI's `mongo` service container);
otherwise they start SecantusDB on 127.0.0.1 for the session.
"""

from __future__ import annotations

import dataclasses
import itertools
import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from pymongo import MongoClient

from mlpack.cli import main as cli_main
from mlpack.source.embedded import embedded_server
from tests.documents import subscribers

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session")
def mongo_uri() -> Iterator[str]:
    uri = os.environ.get("MONGODB_URI")
    if uri:
        yield uri
        return
    with embedded_server() as started:
        yield started


@pytest.fixture(scope="session")
def mongo_client(mongo_uri: str) -> Iterator[MongoClient[dict[str, Any]]]:
    client: MongoClient[dict[str, Any]] = MongoClient(mongo_uri, serverSelectionTimeoutMS=10_000)
    yield client
    client.close()


_database_numbers = itertools.count()


@pytest.fixture
def database_name(mongo_client: MongoClient[dict[str, Any]]) -> Iterator[str]:
    name = f"mlpack_test_{os.getpid()}_{next(_database_numbers)}"
    yield name
    mongo_client.drop_database(name)


@dataclass
class Result:
    code: int
    out: str
    err: str


@pytest.fixture
def run(capsys: pytest.CaptureFixture[str]) -> Any:
    """Run the CLI in-process (fast); a traceback would escape and fail the test."""

    def invoke(*argv: str | Path) -> Result:
        code = cli_main([str(a) for a in argv])
        captured = capsys.readouterr()
        return Result(code, captured.out, captured.err)

    return invoke


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


CHURN_CONFIG = """
[model]
name = "churn-model"
version = "1.0.0"
task = "classification"
description = "Which subscribers will cancel next month"

[source]
uri_env = "MLPACK_TEST_URI"
database = "{database}"
collection = "customers"

[features]
numeric = ["tenure_months", "billing.monthly_charges", "support_calls"]
categorical = ["contract", "billing.method"]
target = "label"

[estimator]
class = "sklearn.ensemble.RandomForestClassifier"
params = {{ n_estimators = 30, random_state = 0 }}

[evaluation]
test_size = 0.25
seed = 0
gates = {{ accuracy = 0.6 }}
"""


@dataclass
class Project:
    path: Path
    database: str
    uri: str

    @property
    def config(self) -> Path:
        return self.path / "mlpack.toml"

    def write_config(self, text: str) -> None:
        self.config.write_text(textwrap.dedent(text).format(database=self.database), encoding="utf-8")

    def edit(self, old: str, new: str) -> None:
        text = self.config.read_text(encoding="utf-8")
        assert old in text, f"{old!r} not in config"
        self.config.write_text(text.replace(old, new, 1), encoding="utf-8")


@pytest.fixture
def churn_project(
    tmp_path: Path,
    mongo_uri: str,
    mongo_client: MongoClient[dict[str, Any]],
    database_name: str,
    monkeypatch: pytest.MonkeyPatch,
) -> Project:
    """A project whose collection holds 240 synthetic subscribers; MLPACK_TEST_URI points at the server."""
    mongo_client[database_name]["customers"].insert_many(subscribers())
    project = Project(tmp_path / "churn", database_name, mongo_uri)
    project.path.mkdir()
    project.write_config(CHURN_CONFIG)
    monkeypatch.setenv("MLPACK_TEST_URI", mongo_uri)
    return project


@pytest.fixture(scope="session")
def built_model(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """A logistic-regression churn model's artifacts, built once (no database: the build's own stages)."""
    from mlpack.build import write_artifacts
    from tests.training import config_for, export

    root = tmp_path_factory.mktemp("built")
    (root / "mlpack.toml").write_text("# test config\n", encoding="utf-8")
    config = dataclasses.replace(
        config_for("sklearn.linear_model.LogisticRegression", "classification"), path=root / "mlpack.toml"
    )
    return write_artifacts(config, export(config, subscribers(200)), root / "dist")


def assert_clean_error(result: Result, code: int, *needles: str) -> None:
    assert result.code == code, (result.code, result.out, result.err)
    assert "Traceback" not in result.err + result.out
    for needle in needles:
        assert needle in result.err, (needle, result.err)


def artifacts_in(folder: Path) -> list[str]:
    """Every entry in an output folder, hidden ones included: nothing half-written may be left."""
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


@pytest.fixture(scope="session")
def spark() -> Iterator[Any]:
    """One local[2] SparkSession for the whole run (Spark takes seconds to start); skipped without pyspark."""
    pytest.importorskip("pyspark")
    from pyspark.sql import SparkSession

    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)  # Python workers need this venv's packages
    session = (
        SparkSession.builder.master("local[2]")
        .appName("mlpack tests")
        .config("spark.ui.enabled", "false")
        .config("spark.sql.shuffle.partitions", "2")
        .getOrCreate()
    )
    session.sparkContext.setLogLevel("ERROR")
    yield session
    session.stop()
