"""Honest edges (issue 19, item 9): a feature with no value anywhere is refused, mlpack's warnings reach
stderr whatever the terminal (and only -q silences them), the libraries' warnings come out as mlpack's
sentences, and `mlpack monitor` exits 1 on a missing-rate jump or a flood of unknown categories."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from pymongo import MongoClient

from mlpack.build import BuildResult, write_artifacts
from mlpack.config import load_config
from mlpack.errors import DataError
from mlpack.source import collect
from mlpack.validate import validate
from tests.helpers.cli import Result, assert_clean_error, run_process
from tests.helpers.documents import subscribers
from tests.helpers.http_client import ServerProcess
from tests.helpers.projects import CHURN_CONFIG, Project
from tests.helpers.training import config_for, export

LOG_DB = "mlpack_test_honest_edges_log"


# -- a feature with no value in any document ---------------------------------------------------------
@pytest.mark.parametrize(
    ("field", "kind", "values"),
    [
        ("support_calls", "numeric", [None, "NA", "", float("nan"), {"$numberDouble": "NaN"}]),
        ("signup", "datetime", [None]),
        ("contract", "categorical", [None]),
    ],
)
def test_a_feature_without_a_single_value_is_refused_naming_it(field: str, kind: str, values: list[Any]) -> None:
    documents = subscribers(120)
    for index, document in enumerate(documents):
        document[field] = values[index % len(values)]  # present in every document, never a value
    extra = {"features": {"datetime": [field]}} if kind == "datetime" else {}
    features = config_for("sklearn.linear_model.LogisticRegression", "classification", **extra).features
    raw = collect(documents, features.loaded)
    with pytest.raises(DataError) as caught:
        validate(raw, features, "classification")
    assert f"{kind} feature '{field}' has no value in any of the 120 documents" in (caught.value.details or "")
    assert "nothing to learn from it" in (caught.value.details or "")


def test_an_all_null_field_stops_the_build_with_exit_1(
    churn_project: Project, run: Any, mongo_client: MongoClient[dict[str, Any]]
) -> None:
    mongo_client[churn_project.database]["customers"].update_many({}, {"$set": {"support_calls": None}})
    result = run("build", churn_project.path)
    assert_clean_error(result, 1, "numeric feature 'support_calls' has no value in any of the 240 documents")
    assert not (churn_project.path / "dist" / "churn-model-1.0.0.onnx").exists()


# -- warnings on stderr ------------------------------------------------------------------------------
def _noisy(project: Project, mongo_client: MongoClient[dict[str, Any]]) -> None:
    """Half the charges missing (mlpack's data warning) and a logistic regression stopped at 3 iterations
    (scikit-learn's ConvergenceWarning)."""
    customers = mongo_client[project.database]["customers"]
    customers.update_many({"_id": {"$mod": [3, 0]}}, {"$set": {"billing.monthly_charges": "NA"}})
    customers.update_many({"_id": {"$mod": [3, 1]}}, {"$set": {"billing.monthly_charges": None}})
    project.edit(
        'class = "sklearn.ensemble.RandomForestClassifier"', 'class = "sklearn.linear_model.LogisticRegression"'
    )
    project.edit("params = { n_estimators = 30, random_state = 0 }", "params = { max_iter = 3 }")


def test_warnings_reach_stderr_without_a_terminal_and_only_q_silences_them(
    churn_project: Project, mongo_client: MongoClient[dict[str, Any]]
) -> None:
    _noisy(churn_project, mongo_client)
    env = {"MLPACK_TEST_URI": churn_project.uri}
    plain = run_process("build", churn_project.path, "--out", churn_project.path / "one", env=env)
    assert plain.code == 0, plain.err
    lines = plain.err.splitlines()
    assert any(
        line.startswith("mlpack: warning: numeric feature 'billing.monthly_charges' is missing in 67% of the documents")
        for line in lines
    ), plain.err
    assert any(line.startswith("mlpack: warning: the estimator did not converge") for line in lines), plain.err
    assert "raise [estimator].params.max_iter" in plain.err
    # scikit-learn's own form never leaks: no class name of a warning, no path into site-packages.
    assert "ConvergenceWarning" not in plain.err and "site-packages" not in plain.err and "sklearn/" not in plain.err
    assert all(line.startswith("mlpack: warning: ") for line in lines), plain.err  # no progress off a terminal

    report = json.loads((churn_project.path / "one" / "churn-model-1.0.0.json").read_text())
    assert any(w.startswith("the estimator did not converge") for w in report["warnings"])

    as_json = run_process(
        "build", churn_project.path, "--out", churn_project.path / "two", "--json", "--force", env=env
    )
    assert as_json.code == 0 and json.loads(as_json.out)["name"] == "churn-model"
    assert "mlpack: warning: numeric feature 'billing.monthly_charges'" in as_json.err

    quiet = run_process("build", churn_project.path, "--out", churn_project.path / "three", "-q", "--force", env=env)
    assert quiet.code == 0 and quiet.err == "" and quiet.out == ""


# -- monitor: a missing-rate jump and unknown categories ---------------------------------------------
def broken_upstream(n: int = 200) -> list[dict[str, Any]]:
    """Subscribers like the training ones, but a third arrive without their charges (an upstream join
    that broke): the charges that do arrive are distributed as before, so their PSI stays small."""
    documents = subscribers(n, seed=97, absent=False)
    for index, document in enumerate(documents):
        if index % 3 == 0:
            document["billing"]["monthly_charges"] = None
    return documents


@dataclass
class Logged:
    project: Path
    built: BuildResult
    env: dict[str, str]

    def monitor(self, *args: str) -> Result:
        return run_process("monitor", self.project, *args, env=self.env, timeout=120)


@pytest.fixture(scope="module")
def logged(
    tmp_path_factory: pytest.TempPathFactory, mongo_uri: str, mongo_client: MongoClient[dict[str, Any]]
) -> Iterator[Logged]:
    project = tmp_path_factory.mktemp("edges")
    (project / "mlpack.toml").write_text(CHURN_CONFIG.format(database="unused"), encoding="utf-8")
    config = load_config(project)
    built = write_artifacts(config, export(config, subscribers(240)), project / "dist")
    mongo_client.drop_database(LOG_DB)
    env = {"MLPACK_INFERENCE_LOG_URI": mongo_uri, "MLPACK_INFERENCE_LOG_DB": LOG_DB}
    server = ServerProcess.mlpack(built.artifacts["wheel"], env=env)
    try:
        stream = broken_upstream()
        for first in range(0, len(stream), 10):
            assert server.request("POST", "/predict", stream[first : first + 10]).status == 200
        time.sleep(0.05)
    finally:
        assert server.stop() == 0
    yield Logged(project, built, env)
    mongo_client.drop_database(LOG_DB)


def test_a_missing_rate_jump_fails_the_monitor_although_no_psi_moves(logged: Logged) -> None:
    result = logged.monitor("--json")
    assert result.code == 1, result.err
    report = json.loads(result.out)
    rows = {row["name"]: row for row in report["features"]}
    charges = rows["billing.monthly_charges"]
    assert charges["missing_rate"] == pytest.approx(67 / 200) and charges["training_missing_rate"] == 0.0
    assert charges["psi"] < 0.2 and not report["drifted"]  # what the PSI alone would have let through
    assert report["missing_jumps"] == ["billing.monthly_charges"] and report["unknown_jumps"] == []
    assert result.err.strip() == (
        "error: missing rate up by more than 10.0% for: billing.monthly_charges (33.5%, training 0.0%)"
    )
    text = logged.monitor()
    assert "missing rate up by more than 10.0%: billing.monthly_charges (0.0% -> 33.5%)" in text.out
    assert "  billing.monthly_charges  0.136  33.5% !  0.0%" in text.out, text.out


def test_the_limits_come_from_the_flags_or_from_mlpack_toml(logged: Logged, tmp_path: Path) -> None:
    assert logged.monitor("--missing-threshold", "0.4").code == 0
    config = logged.project / "mlpack.toml"
    original = config.read_text(encoding="utf-8")
    try:
        config.write_text(original + "\n[monitor]\nmissing_threshold = 0.4\n", encoding="utf-8")
        assert logged.monitor().code == 0
        config.write_text(original + "\n[monitor]\nunknown_threshold = 0.0\n", encoding="utf-8")
        assert_clean_error(logged.monitor(), 2, "[monitor].unknown_threshold must be a share above 0 and at most 1")
    finally:
        config.write_text(original, encoding="utf-8")
    page = tmp_path / "report.html"
    assert logged.monitor("--html", str(page)).code == 1
    html = page.read_text(encoding="utf-8")
    assert "nan" not in html and "Missing rate up by more than" in html and "billing.monthly_charges" in html


# -- too small a test split ------------------------------------------------------------------------
def test_a_test_split_too_small_to_score_is_refused() -> None:
    config = config_for("sklearn.linear_model.Ridge", "regression")
    with pytest.raises(DataError) as caught:
        export(config, subscribers(20))  # 4 test documents: r² of one document was "nan" and shipped
    assert caught.value.message.startswith("the test split holds 4 of 20 documents, fewer than 5")
    assert "raise [evaluation].test_size" in caught.value.message


def test_a_metric_the_test_split_cannot_give_is_refused_not_shipped_as_nan() -> None:
    documents = subscribers(200)
    held_out = [d for d in documents if d["label"] == "stayed"][:10]  # a test split of one class: no roc_auc
    for document in documents:
        document["batch"] = "test" if document in held_out else "train"
    config = config_for(
        "sklearn.linear_model.LogisticRegression",
        "classification",
        evaluation={"split": "filter", "test_filter": {"batch": "test"}},
    )
    with pytest.raises(DataError) as caught:
        export(config, documents)
    assert caught.value.message.startswith("roc_auc cannot be computed on the test split of")
