"""`mlpack inspect`, `mlpack predict` and `mlpack estimators` on built artifacts."""

from __future__ import annotations

import csv
import json
import zipfile
from pathlib import Path

import pytest

from mlpack.build import BuildResult
from tests.helpers.cli import assert_clean_error, run_process
from tests.helpers.documents import subscribers

RECORDS = subscribers(20, seed=5, absent=False)


@pytest.fixture(scope="module")
def built(built_model: BuildResult) -> BuildResult:
    return built_model


@pytest.mark.parametrize("kind", ["onnx", "wheel"])
def test_inspect_shows_the_metadata(built: BuildResult, run, kind: str) -> None:
    result = run("inspect", built.artifacts[kind], "--json")
    assert result.code == 0
    assert json.loads(result.out) == built.metadata
    human = run("inspect", built.artifacts[kind])
    assert "test-model 1.0.0" in human.out and "billing.monthly_charges" in human.out and "accuracy" in human.out


def test_predict_agrees_across_artifacts_and_formats(built: BuildResult, run, tmp_path: Path) -> None:
    jsonl = tmp_path / "in.jsonl"
    jsonl.write_text("".join(json.dumps(r) + "\n" for r in RECORDS), encoding="utf-8")
    document = tmp_path / "in.json"
    document.write_text(json.dumps({"instances": RECORDS}), encoding="utf-8")
    table = tmp_path / "in.csv"
    with table.open("w", newline="", encoding="utf-8") as stream:
        writer = csv.DictWriter(
            stream,
            ["tenure_months", "billing.monthly_charges", "support_calls", "contract", "billing.method", "customer"],
        )
        writer.writeheader()
        for r in RECORDS:
            writer.writerow(
                {
                    "tenure_months": "" if r["tenure_months"] is None else r["tenure_months"],
                    "billing.monthly_charges": r["billing"]["monthly_charges"],
                    "support_calls": r["support_calls"],
                    "contract": r["contract"],
                    "billing.method": r["billing"]["method"] or "",
                    "customer": r["customer"],
                }
            )
    answers = []
    for artifact in (built.artifacts["onnx"], built.artifacts["wheel"]):
        for source in (jsonl, document, table):
            result = run("predict", artifact, "--input", source)
            assert result.code == 0, result.err
            answers.append([json.loads(line)["prediction"] for line in result.out.splitlines()])
    assert len(answers[0]) == len(RECORDS)
    assert all(answer == answers[0] for answer in answers)


@pytest.mark.parametrize(
    ("content", "suffix", "flags", "message"),
    [
        ('{"tenure_months": 1}\n', ".jsonl", ["--strict"], "line 1: field 'billing.monthly_charges': absent"),
        ('{"contract": "weekly"}\n', ".jsonl", ["--strict"], "line 1: field 'tenure_months': absent (strict"),
        ("{not json}\n", ".jsonl", [], "line 1: not valid JSON"),
        ("[1, 2]", ".json", [], "line 1: expected an object of fields, got int"),
        ("tenure_months,support_calls\nabc,1\n", ".csv", [], "line 2: field 'tenure_months': expected a number"),
        ("tenure_months\n1,2\n", ".csv", [], "line 2: more values than columns in the header"),
        # A cut-off row: its absent cells are no empty ones, and would have been predicted as missing values.
        (
            "tenure_months,support_calls\n1,2\n3\n",
            ".csv",
            [],
            "line 3: fewer values (1) than columns in the header (2)",
        ),
        ('{"support_calls": true}\n', ".jsonl", [], "line 1: field 'support_calls': expected a number, got True"),
    ],
)
def test_predict_bad_input_exits_1_naming_the_problem(
    built: BuildResult, run, tmp_path: Path, content: str, suffix: str, flags: list[str], message: str
) -> None:
    source = tmp_path / f"bad{suffix}"
    source.write_text(content, encoding="utf-8")
    output = tmp_path / "out.jsonl"
    result = run("predict", built.artifacts["wheel"], "--input", source, "--output", output, *flags)
    assert_clean_error(result, 1, message)
    assert not output.exists() and not list(tmp_path.glob(".mlpack-predict-*"))  # nothing half-written


def test_bad_artifacts_are_usage_errors(built: BuildResult, run, tmp_path: Path) -> None:
    assert_clean_error(run("inspect", tmp_path / "none.onnx"), 2, "artifact not found")
    garbage = tmp_path / "garbage.onnx"
    garbage.write_bytes(b"\x00not onnx")
    assert_clean_error(run("inspect", garbage), 2, "is not a readable ONNX model")
    foreign = tmp_path / "foreign-1.0-py3-none-any.whl"
    with zipfile.ZipFile(foreign, "w") as archive:
        archive.writestr("foreign/__init__.py", "")
    assert_clean_error(run("inspect", foreign), 2, "is not an mlpack model wheel")
    text = tmp_path / "model.txt"
    text.write_text("x")
    assert_clean_error(run("inspect", text), 2, "expected a .onnx file, a model .whl", "docker image archive")
    assert_clean_error(
        run("predict", built.artifacts["onnx"], "--input", tmp_path / "absent.jsonl"), 2, "cannot read --input"
    )


def test_estimators_lists_the_registry(run) -> None:
    result = run("estimators", "--json")
    listing = json.loads(result.out)
    assert listing["supported"]["sklearn.ensemble.RandomForestClassifier"]["task"] == "classification"
    assert listing["supported"]["sklearn.svm.LinearSVC"]["probabilities"] is False
    assert listing["supported"]["sklearn.svm.SVC"]["defaults"] == {"probability": True}
    assert listing["supported"]["xgboost.XGBRegressor"] == {
        "task": "regression",
        "scaled": False,
        "probabilities": None,
        "defaults": {},
        "extra": "boosting",
        "float32": False,
        "installed": True,  # the test extra installs the boosting extra
        "note": "XGBoost itself sums its trees in float32: on large targets raise [export].parity_tolerance",
    }
    assert "catboost.CatBoostClassifier" in listing["unsupported"]
    text = run("estimators")
    assert text.code == 0
    assert "sklearn.svm.LinearSVC" in text.out and "labels only" in text.out
    assert "needs mlpack-onnx[boosting] (installed)" in text.out
    assert listing["supported"]["sklearn.linear_model.SGDRegressor"]["float32"] is True
    sgd = next(line for line in text.out.splitlines() if line.startswith("sklearn.linear_model.SGDClassifier "))
    assert "fits in float32 with float32 = true" in sgd


def test_console_entry_point_and_module_are_the_same_program() -> None:
    import subprocess
    import sys

    module = run_process("estimators", "--json")
    script = subprocess.run(
        [Path(sys.executable).parent / "mlpack", "estimators", "--json"], capture_output=True, text=True, check=False
    )
    assert module.code == script.returncode == 0
    assert module.out == script.stdout and "RandomForestClassifier" in module.out


def test_serve_on_a_port_in_use_is_a_usage_error(built: BuildResult) -> None:
    import socket

    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        result = run_process("serve", built.artifacts["onnx"], "--port", str(port), timeout=60)
    assert_clean_error(result, 2, f"cannot listen on 127.0.0.1:{port}")


def test_a_library_warning_is_shown_in_mlpacks_own_form(capsys: pytest.CaptureFixture[str]) -> None:
    """A library's warning that reaches the command line is one `mlpack: warning:` line, like the build's
    own (README: "Warnings"), with no file or source line; it was a bare `warning:`."""
    from mlpack.cli import _show_warning

    _show_warning(UserWarning("y_pred contains classes not in y_true"), UserWarning, "/x/sklearn/metrics.py", 7)
    assert capsys.readouterr().err == "mlpack: warning: y_pred contains classes not in y_true\n"
