"""Shared fixtures: a real MongoDB wire server, project folders, and a CLI runner.

Tests use the server named by MONGODB_URI when it is set (CI's `mongo` service container);
otherwise they start SecantusDB on 127.0.0.1 for the session.
"""

from __future__ import annotations

import dataclasses
import itertools
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pymongo import MongoClient

from mlpack.cli import main as cli_main
from mlpack.source.embedded import embedded_server
from tests.helpers.cli import Result
from tests.helpers.documents import subscribers
from tests.helpers.projects import CHURN_CONFIG, Project

# Fixtures that several test modules use, kept with the helpers they need.
pytest_plugins = ["tests.helpers.images", "tests.helpers.oci_inputs", "tests.helpers.shop"]


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


@pytest.fixture
def run(capsys: pytest.CaptureFixture[str]) -> Any:
    """Run the CLI in-process (fast); a traceback would escape and fail the test."""

    def invoke(*argv: str | Path) -> Result:
        code = cli_main([str(a) for a in argv])
        captured = capsys.readouterr()
        return Result(code, captured.out, captured.err)

    return invoke


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
    from tests.helpers.training import config_for, export

    root = tmp_path_factory.mktemp("built")
    (root / "mlpack.toml").write_text("# test config\n", encoding="utf-8")
    config = dataclasses.replace(
        config_for("sklearn.linear_model.LogisticRegression", "classification"), path=root / "mlpack.toml"
    )
    return write_artifacts(config, export(config, subscribers(200)), root / "dist")


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


# -- markers --------------------------------------------------------------------------------------
# Each test is marked by what it needs, found from the fixtures it uses (directly or through other
# fixtures) and from the names its body and those fixtures call, so no test file says it itself:
#   pytest -m "not docker and not spark and not slow"   the quick run (the README gives its time)
# The markers are registered in pyproject.toml ([tool.pytest.ini_options] markers).
MARKED_BY_FIXTURE = {
    "mongo_uri": "mongo",  # and so mongo_client, database_name, churn_project and all built on them
    "engine": "docker",  # tests/test_image.py's engine (docker_env uses it); tests/test_escaping.py imports it
    "spark": "spark",
    "node": "node",  # tests/test_node_client.py: Node.js and examples/node-client
}
MARKED_BY_NAME = {
    "embedded_server": "mongo",  # a test or fixture that starts its own SecantusDB
    "docker_engine": "docker",
    "CHROMIUM": "browser",  # tests/test_card.py runs the model card in headless Chromium
    "chromium": "browser",
    "SparkSession": "spark",
}
# Measured over 10 s (pytest --durations=30, setup + call; 2 CPUs): `slow`, by test function (every
# parametrization). tests/test_layout.py checks that each entry still names a test.
SLOW = {
    "tests/test_aliases.py::test_promote_roll_back_history_and_every_command_by_alias",  # 11 s + 5 s setup
    "tests/test_artifact_contents.py::test_no_training_text_or_unused_identifier_is_in_any_artifact",  # 20 s
    "tests/test_build.py::test_builds_in_separate_processes_and_folders_are_byte_identical",  # 12 s
    "tests/test_build.py::test_unreachable_database_exits_3_within_30_seconds",  # 10 s: its bound is 30
    "tests/test_features_build.py::test_the_wheel_reads_dates_on_the_oldest_and_newest_python",  # 33 s + 11 s
    "tests/test_feedback.py::test_feedback_on_n_served_records_gives_n_more_training_rows",  # 17 s: 3 builds
    # 10 s: three builds
    "tests/test_feedback.py::test_a_document_the_collection_has_takes_its_latest_feedback_and_names_map_to_classes",
    "tests/test_image.py::test_image_builds_runs_and_describes_itself",  # 38 s
    "tests/test_image.py::test_the_image_runs_as_the_manifest_asks",  # 27 s
    "tests/test_newcomer.py::test_dist_is_never_silently_overwritten",  # 17 s
    "tests/test_oci.py::test_the_dependency_layer_is_made_once_and_checked_when_reused",  # 37 s: four images
    "tests/test_oci.py::test_mlpack_build_writes_the_image_with_no_engine",  # 16 s: two builds
    "tests/test_oci.py::test_two_processes_and_folders_give_the_same_manifest_digest",  # 13 s
    "tests/test_oci_registry.py::test_a_base_from_a_registry_makes_the_image_a_local_base_makes",  # 18 s + 9 s
    "tests/test_newcomer.py::test_init_next_step_works_where_mlpack_is_not_published",  # 6.5 min, MLPACK_SLOW_TESTS
    "tests/test_predict_batches.py::test_spark_map_in_pandas_with_the_wheel_shipped_as_a_zip",  # 12 s + 9 s setup
    # 52 s: a server, three runs of the workflow's steps, three builds
    "tests/test_retrain_workflow.py::test_the_scheduled_retraining_rebuilds_on_drift_and_promotes_only_a_better_challenger",
    "tests/test_score.py::test_a_spark_run_says_what_it_did_and_nothing_of_sparks_start_up_in_a_log",  # 15 s: a JVM
    "tests/test_server.py::test_inference_log_writes_batches_and_survives_the_database_going_away",  # 22 s
    "tests/test_server_framing.py::test_every_request_h11_rejects_mlpack_rejects",  # 11 s
    "tests/test_server_hostile3.py::test_every_v2_request_answers_2xx_or_4xx",  # 24 s
    "tests/test_server_hostile3.py::test_nesting_is_the_parsed_depth",  # 14 s
    # Its module's `installed` fixture makes two virtual environments (11 s), then 16 s and 10 s more.
    "tests/test_wheel_install.py::*",
}


def _names_called(function: Any) -> set[str]:
    """The global and attribute names a function's code (and the code nested in it) refers to."""
    names: set[str] = set()
    codes = [getattr(function, "__code__", None)]
    while codes:
        code = codes.pop()
        if code is not None:
            names.update(code.co_names)
            codes.extend(const for const in code.co_consts if hasattr(const, "co_names"))
    return names


def markers_for(item: pytest.Item) -> set[str]:
    marks: set[str] = set()
    params = set(getattr(getattr(item, "callspec", None), "params", {}))
    definitions = getattr(getattr(item, "_fixtureinfo", None), "name2fixturedefs", {})
    functions = [getattr(item, "function", None)]
    for name in getattr(item, "fixturenames", ()):
        if name in params:
            continue  # a parameter of the test, not a fixture
        if name in MARKED_BY_FIXTURE:
            marks.add(MARKED_BY_FIXTURE[name])
        functions.extend(definition.func for definition in definitions.get(name, ()))
    for function in functions:
        marks.update(MARKED_BY_NAME[name] for name in _names_called(function) & MARKED_BY_NAME.keys())
    path, _, rest = item.nodeid.partition("::")
    if f"{path}::*" in SLOW or f"{path}::{rest.split('[')[0]}" in SLOW:
        marks.add("slow")
    return marks


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        for mark in sorted(markers_for(item)):
            item.add_marker(mark)
