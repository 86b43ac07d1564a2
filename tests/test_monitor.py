"""`mlpack monitor`: a real server process writes the inference log to MongoDB; the CLI reads it back."""

from __future__ import annotations

import json
import math
import time
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from pymongo import MongoClient

from mlpack.build import BuildResult, write_artifacts
from mlpack.config import load_config
from mlpack.monitor import Window, analyse, parse_time, render_html, render_text
from tests.helpers.cli import Result, assert_clean_error, run_process
from tests.helpers.documents import subscribers
from tests.helpers.drift import reference_categorical_psi, reference_numeric_psi
from tests.helpers.http_client import ServerProcess
from tests.helpers.projects import CHURN_CONFIG
from tests.helpers.training import export

TRAINING = subscribers(240)
LOG_DB = "mlpack_test_monitor_log"


def like_stream(n: int = 160) -> list[dict[str, Any]]:
    """New subscribers drawn like the training ones (another seed)."""
    return subscribers(n, seed=99, absent=False)


def shifted_stream(n: int = 160) -> list[dict[str, Any]]:
    """Longer tenures, nearly everyone monthly, and a payment method never seen in training."""
    documents = subscribers(n, seed=98, absent=False)
    for index, document in enumerate(documents):
        if document["tenure_months"] is not None:
            document["tenure_months"] += 60
        document["contract"] = "monthly" if index % 10 else "yearly"
        if index % 3 == 0:
            document["billing"]["method"] = "paypal"
    return documents


@dataclass
class Served:
    project: Path
    built: BuildResult
    like: tuple[str, str]  # the --since / --until of each stream
    shifted: tuple[str, str]
    env: dict[str, str]

    def monitor(self, *args: str, env: dict[str, str] | None = None) -> Result:
        """`python -m mlpack monitor` in its own process, as cron or CI would run it."""
        return run_process("monitor", self.project, *args, env={**self.env, **(env or {})}, timeout=120)


def _stamp(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


@pytest.fixture(scope="module")
def served(
    tmp_path_factory: pytest.TempPathFactory, mongo_uri: str, mongo_client: MongoClient[dict[str, Any]]
) -> Iterator[Served]:
    """Build a churn model, serve its wheel with the inference log on, send a like stream, then a shifted one."""
    project = tmp_path_factory.mktemp("monitored")
    (project / "mlpack.toml").write_text(CHURN_CONFIG.format(database="unused"), encoding="utf-8")
    config = load_config(project)
    built = write_artifacts(config, export(config, TRAINING), project / "dist")
    mongo_client.drop_database(LOG_DB)
    env = {"MLPACK_INFERENCE_LOG_URI": mongo_uri, "MLPACK_INFERENCE_LOG_DB": LOG_DB}
    server = ServerProcess.mlpack(built.artifacts["wheel"], env=env)
    try:
        streams = []
        answers: list[dict[str, Any]] = []
        for stream in (like_stream(), shifted_stream()):
            start = datetime.now(tz=UTC)
            for record in stream[:100]:  # one record per request, as most clients send them
                answer = server.request("POST", "/predict", record)
                assert answer.status == 200
                answers.append(answer.json())
            for first in range(100, len(stream), 20):  # and a few batches
                assert server.request("POST", "/predict", stream[first : first + 20]).status == 200
            time.sleep(0.05)
            streams.append((_stamp(start), _stamp(datetime.now(tz=UTC))))
            time.sleep(0.05)
        # True outcomes for 40 of the like stream's answers: 30 as predicted, 10 the other class.
        truths = []
        for number, answer in enumerate(answers[:40]):
            predicted = answer["predictions"][0]
            truths.append(predicted if number % 4 else ("stayed" if predicted == "churned" else "churned"))
            assert server.request("POST", "/feedback", {"id": answer["id"], "label": truths[-1]}).status == 202
        # A client sending an outcome again (a retry) is counted once.
        assert server.request("POST", "/feedback", {"id": answers[1]["id"], "label": truths[1]}).status == 202
    finally:
        assert server.stop() == 0  # SIGTERM flushes the log
    assert mongo_client[LOG_DB]["inference_log"].count_documents({}) == 2 * (100 + 3)
    yield Served(project, built, streams[0], streams[1], env)
    mongo_client.drop_database(LOG_DB)


def _window(span: tuple[str, str]) -> list[str]:
    return ["--since", span[0], "--until", span[1]]


@pytest.fixture
def monitor(served: Served, run: Any, monkeypatch: pytest.MonkeyPatch) -> Any:
    """The same command in this process (a fresh interpreter costs seconds on a busy machine)."""

    def invoke(*args: str, env: dict[str, str] | None = None) -> Result:
        for name, value in {**served.env, **(env or {})}.items():
            monkeypatch.setenv(name, value)
        result: Result = run("monitor", served.project, *args)
        return result

    return invoke


def test_like_requests_pass_and_a_shifted_stream_fails_naming_its_features(served: Served) -> None:
    like = served.monitor(*_window(served.like))
    assert like.code == 0, like.err + like.out
    assert "160 records in 103 logged requests" in like.out
    assert "no PSI above the threshold 0.2" in like.out

    shifted = served.monitor(*_window(served.shifted))
    assert shifted.code == 1, shifted.err + shifted.out
    assert "Traceback" not in shifted.err
    errors = [line for line in shifted.err.strip().splitlines() if line.startswith("error: ")]
    message = next(line for line in errors if line.startswith("error: PSI above 0.2 for: "))
    # The new payment method is also a share of unknown categories above the 5% limit.
    assert any(line.startswith("error: unknown categories above 5.0% for: billing.method (") for line in errors)
    named = set(message.split(": ", 2)[2].split(", "))
    assert {"tenure_months", "contract", "billing.method"} <= named
    assert not named & {"support_calls", "billing.monthly_charges"}


def test_json_report_psi_matches_an_independent_reference(served: Served, monitor: Any) -> None:
    result = monitor(*_window(served.shifted), "--json")
    assert result.code == 1
    report = json.loads(result.out)
    rows = {row["name"]: row for row in report["features"]}
    stream = shifted_stream()
    tenure_train = np.array([math.nan if d["tenure_months"] is None else d["tenure_months"] for d in TRAINING])
    tenure_live = np.array([math.nan if d["tenure_months"] is None else d["tenure_months"] for d in stream])
    assert rows["tenure_months"]["psi"] == pytest.approx(
        reference_numeric_psi(tenure_train, tenure_live), rel=1e-5, abs=1e-6
    )
    method_train = [d["billing"].get("method") or "__missing__" for d in TRAINING]
    method_live = [d["billing"]["method"] or "__missing__" for d in stream]
    assert rows["billing.method"]["psi"] == pytest.approx(
        reference_categorical_psi(method_train, method_live), rel=1e-5, abs=1e-6
    )
    assert rows["billing.method"]["unknown_rate"] == pytest.approx(method_live.count("paypal") / len(stream))
    missing = sum(d["tenure_months"] is None for d in stream) / len(stream)
    assert rows["tenure_months"]["missing_rate"] == pytest.approx(missing, abs=1e-6)
    assert rows["tenure_months"]["training_missing_rate"] == pytest.approx(
        sum(d["tenure_months"] is None for d in TRAINING) / len(TRAINING), abs=1e-6
    )
    assert report["records"] == len(stream) and report["requests"] == 103
    assert set(report["drifted"]) >= {"tenure_months", "contract", "billing.method"}
    assert report["predictions"]["psi"] is not None


def test_feedback_sent_to_the_server_gives_live_metrics(served: Served, monitor: Any) -> None:
    result = monitor(*_window(served.like), "--json")
    assert result.code == 0, result.err
    feedback = json.loads(result.out)["feedback"]
    assert feedback["labels"] == 40
    assert feedback["metrics"]["accuracy"] == pytest.approx(30 / 40)
    assert feedback["build_metrics"] == served.built.metadata["metrics"]
    text = monitor(*_window(served.like))
    assert "live metrics on 40 feedback labels: accuracy" in text.out


def test_html_report_is_self_contained(served: Served, monitor: Any, tmp_path: Path) -> None:
    page = tmp_path / "reports" / "drift.html"
    result = monitor(*_window(served.shifted), "--html", str(page), "-q")
    assert result.code == 1
    text = page.read_text(encoding="utf-8")
    assert "<svg" in text and "tenure_months" in text and 'class="drift"' in text
    assert "http://" not in text.replace('xmlns="http://www.w3.org/2000/svg"', "")
    assert not list(page.parent.glob(".*.tmp"))


def test_a_higher_threshold_passes_the_shifted_stream(served: Served, monitor: Any) -> None:
    result = monitor(*_window(served.shifted), "--threshold", "1000")
    assert result.code == 1 and result.err.startswith("error: unknown categories above 5.0%"), result.err
    result = monitor(*_window(served.shifted), "--threshold", "1000", "--unknown-threshold", "0.5")
    assert result.code == 0, result.err


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--since", "yesterday-ish"], "--since 'yesterday-ish' is not a time"),
        (["--until", "2026-13-40"], "--until '2026-13-40' is not a time"),
        (["--since", "1h", "--until", "2h"], "must be before --until"),
        (["--threshold", "-1"], "--threshold must be a positive number"),
        (["--missing-threshold", "1.5"], "--missing-threshold must be a share above 0 and at most 1"),
        (["--unknown-threshold", "0"], "--unknown-threshold must be a share above 0 and at most 1"),
        (["--threshold", "nan"], "--threshold must be a positive number"),
        (["--version", "9.9.9"], "no build of churn-model 9.9.9"),
        (["--model", "/nonexistent/model.onnx"], "artifact not found"),
    ],
)
def test_bad_options_exit_2_naming_the_problem(served: Served, monitor: Any, args: list[str], needle: str) -> None:
    assert_clean_error(monitor(*args), 2, needle)


def test_no_log_connection_is_exit_2_and_an_unreachable_database_exit_3(monitor: Any) -> None:
    unset = {"MLPACK_INFERENCE_LOG_URI": "", "MLPACK_TEST_URI": ""}
    assert_clean_error(monitor(env=unset), 2, "no inference log to read: set MLPACK_INFERENCE_LOG_URI")
    down = {"MLPACK_INFERENCE_LOG_URI": "mongodb://127.0.0.1:1/?serverSelectionTimeoutMS=300"}
    assert_clean_error(monitor(env=down), 3, "unreachable")


def test_the_log_name_is_read_and_checked_as_the_server_reads_it(monitor: Any) -> None:
    # monitor and the server share one reader: a name the server would refuse is refused the same way.
    bad_db = monitor(env={"MLPACK_INFERENCE_LOG_DB": "a/b"})
    assert_clean_error(bad_db, 2, "MLPACK_INFERENCE_LOG_DB must not hold")
    bad_collection = monitor(env={"MLPACK_INFERENCE_LOG_COLLECTION": "system.users"})
    assert_clean_error(bad_collection, 2, "MLPACK_INFERENCE_LOG_COLLECTION must not start with system.")
    # A database the server never wrote to holds no records of the model: the variable was read.
    unset = {"MLPACK_INFERENCE_LOG_COLLECTION": ""}  # the fixture's variables last for the whole test
    elsewhere = monitor(env={"MLPACK_INFERENCE_LOG_DB": "mlpack_test_monitor_elsewhere", **unset})
    assert_clean_error(elsewhere, 1, "no inference log records of churn-model 1.0.0")


def test_an_empty_window_is_exit_1_saying_so(monitor: Any) -> None:
    result = monitor("--since", "2001-01-01", "--until", "2001-01-02")
    assert_clean_error(result, 1, "no inference log records of churn-model 1.0.0 in the window")
    # The version was the project's, not one asked for: the served one may be another, named by its alias.
    assert "the one an alias serves: --version @production" in result.err
    asked = monitor("--since", "2001-01-01", "--until", "2001-01-02", "--version", "1.0.0")
    assert_clean_error(asked, 1, "no inference log records of churn-model 1.0.0 in the window")
    assert "--version @production" not in asked.err
    # Nothing was read: no table of 0.0% missing rates, no "no PSI above the threshold" (a pass to the eye).
    assert result.out.splitlines()[1:] == [
        "  nothing to compare with the training baseline: no record of this version was logged then"
    ], result.out


# -- the analysis itself, on log documents written here ---------------------------------------------
def test_feedback_labels_give_live_metrics(served: Served) -> None:
    metadata = served.built.metadata
    stream = like_stream(40)
    model_labels = [row["predictions"][0] for row in _predicted(served, stream)]
    documents = []
    for index, (record, label) in enumerate(zip(stream, model_labels)):
        truth = label if index % 4 else ("stayed" if label == "churned" else "churned")  # 3 in 4 right
        documents.append({"inputs": record, "predictions": [label], "feedback": {"label": truth}})
    documents.append({"inputs": stream[:2], "predictions": model_labels[:2], "feedback": [{"index": 1, "label": "x"}]})
    report = analyse(documents, metadata, 0.2)
    assert report.feedback.labels == 41
    assert report.feedback.metrics["accuracy"] == pytest.approx(30 / 41)
    assert report.feedback.build_metrics == metadata["metrics"]


def test_unreadable_log_documents_are_counted_and_skipped(served: Served) -> None:
    good = like_stream(3)
    documents = [
        {"inputs": good, "predictions": ["stayed"] * 3},
        # columns of different lengths (an absent column alone is missing values, not an error)
        {"inputs": {"contract": ["a", "b"], "tenure_months": [1]}, "predictions": ["stayed"] * 2},
        {"inputs": "not a record", "predictions": ["stayed"]},
        {"inputs": good[0], "predictions": []},  # predictions do not match the inputs
    ]
    report = analyse(documents, served.built.metadata, 0.2)
    assert report.requests == 4 and report.unreadable == 3 and report.records == 3
    assert "<table>" in render_html(report)


def test_times_parse_as_iso_8601_or_durations() -> None:
    now = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)
    assert parse_time("24h", flag="--since", now=now) == now - timedelta(hours=24)
    assert parse_time("7d", flag="--since", now=now) == now - timedelta(days=7)
    assert parse_time("2026-11-27", flag="--since", now=now) == datetime(2026, 11, 27, tzinfo=UTC)
    assert parse_time("2026-11-27T13:00+01:00", flag="--since", now=now) == datetime(2026, 11, 27, 12, tzinfo=UTC)
    window = Window.parse("30m", None, now=now)
    assert window.query() == {"at": {"$gte": datetime(2026, 11, 27, 11, 30), "$lt": datetime(2026, 11, 27, 12, 0)}}


def _predicted(served: Served, records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    from mlpack.artifacts.read import open_model

    model = open_model(served.built.artifacts["wheel"])
    return [{"predictions": [model.predict(record)]} for record in records]


def test_live_metrics_on_labels_of_one_class_warn_in_no_library_form(served: Served) -> None:
    """Feedback that holds only one class while the model also predicted the other: scikit-learn's
    "y_pred contains classes not in y_true" reached the monitor's stderr as a bare `warning:` line."""
    stream = like_stream(40)
    model_labels = [row["predictions"][0] for row in _predicted(served, stream)]
    assert len(set(model_labels)) == 2
    documents = [
        {"inputs": record, "predictions": [label], "feedback": {"label": model_labels[0]}}
        for record, label in zip(stream, model_labels)
    ]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        report = analyse(documents, served.built.metadata, 0.2)
    assert [str(w.message) for w in caught] == []
    assert report.feedback.labels == 40 and 0 < report.feedback.metrics["accuracy"] < 1


def test_a_window_of_few_records_says_its_psi_is_noise(served: Served) -> None:
    """3 logged records flagged every feature's PSI above 4 with nothing to say it means little."""
    stream = like_stream(120)
    labels = [row["predictions"][0] for row in _predicted(served, stream)]
    documents = [{"inputs": record, "predictions": [label]} for record, label in zip(stream, labels)]
    few = render_text(analyse(documents[:3], served.built.metadata, 0.2))
    assert "(only 3 records: PSI over 10 bins needs a few hundred values" in few.splitlines()[1]
    assert "PSI over 10 bins" not in render_text(analyse(documents, served.built.metadata, 0.2))
