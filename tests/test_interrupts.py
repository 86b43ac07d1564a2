"""A build that never ends can be stopped (issue 13 item 11): SIGINT and SIGTERM end `mlpack build`
with 130/143 and one line, no traceback, and nothing left behind — the embedded server stopped, its
temporary folder removed, no scratch folder in --out. Tested on the real program with real signals.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import zipfile
from pathlib import Path
from typing import Any

import pytest

from tests.helpers.documents import subscribers

CONFIG = """
[model]
name = "endless-model"
version = "1.0.0"
task = "classification"

[source]
uri_env = "MLPACK_INTERRUPT_TEST_URI"
database = "crm"
collection = "customers"
seed = "customers.jsonl"
embedded = true

[features]
numeric = ["tenure_months", "billing.monthly_charges", "support_calls"]
categorical = ["contract"]
target = "label"

[estimator]
# Ten million boosting stages: hours of work, one Python-level loop iteration per stage.
class = "sklearn.ensemble.GradientBoostingClassifier"
params = { n_estimators = 10000000, random_state = 0 }
"""


@pytest.mark.parametrize(
    ("signum", "code", "said"), [(signal.SIGINT, 130, "interrupted"), (signal.SIGTERM, 143, "terminated")]
)
def test_an_endless_build_stops_cleanly(signum: int, code: int, said: str, tmp_path: Path) -> None:
    project = tmp_path / "p"
    project.mkdir()
    (project / "mlpack.toml").write_text(CONFIG, encoding="utf-8")
    (project / "customers.jsonl").write_text(
        "".join(json.dumps(d) + "\n" for d in subscribers(120, absent=False)), encoding="utf-8"
    )
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    env = {k: v for k, v in os.environ.items() if k != "MLPACK_INTERRUPT_TEST_URI"}
    env["TMPDIR"] = str(scratch)
    proc = subprocess.Popen(
        [sys.executable, "-m", "mlpack", "build", project, "-v"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    assert proc.stderr is not None
    seen = []
    deadline = time.monotonic() + 120
    for line in proc.stderr:  # progress lines, until training has begun
        seen.append(line)
        if "training" in line or time.monotonic() > deadline:
            break
    assert any("training" in line for line in seen), seen
    assert any(p.name.startswith("mlpack-embedded-") for p in scratch.iterdir())  # the server is up
    time.sleep(1.0)  # well inside fit()
    proc.send_signal(signum)
    rest = proc.stderr.read()
    assert proc.wait(timeout=60) == code, rest
    assert said in rest and "Traceback" not in rest, rest
    # The embedded server's folder is gone. (`.ses` is not mlpack's: onnxruntime 1.32's telemetry SDK
    # writes a session stamp into TMPDIR when onnxruntime is imported, which training now does.)
    assert [p for p in scratch.iterdir() if p.name != ".ses"] == []
    assert not (project / "dist").exists() or list((project / "dist").iterdir()) == []  # no scratch folder


def _reader_gone(argv: list[str], env: dict[str, str] | None = None) -> tuple[int, str]:
    """Run a command whose stdout reader has already left (`... | head` after head exits)."""
    read, write = os.pipe()
    os.close(read)  # every write now fails with EPIPE (Python ignores SIGPIPE: BrokenPipeError)
    proc = subprocess.run(
        argv,
        stdout=write,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, **(env or {})},
        timeout=120,
        check=False,
    )
    os.close(write)
    return proc.returncode, proc.stderr


def test_a_reader_that_leaves_ends_the_program_quietly(built_model: Any, tmp_path: Path) -> None:
    records = tmp_path / "in.jsonl"
    records.write_text("".join(json.dumps(d) + "\n" for d in subscribers(50, absent=False)), encoding="utf-8")
    unpacked = tmp_path / "site"
    with zipfile.ZipFile(built_model.artifacts["wheel"]) as archive:
        archive.extractall(unpacked)
    mlpack = [sys.executable, "-m", "mlpack"]
    cases = [
        (mlpack + ["--help"], None),
        (mlpack + ["inspect", str(built_model.artifacts["wheel"]), "--json"], None),
        (mlpack + ["inspect", str(built_model.artifacts["onnx"])], None),
        (mlpack + ["estimators"], None),
        (mlpack + ["predict", str(built_model.artifacts["onnx"]), "--input", str(records)], None),
        ([sys.executable, "-m", "test_model", "info"], {"PYTHONPATH": str(unpacked)}),
        ([sys.executable, "-m", "test_model", "predict", "--input", str(records)], {"PYTHONPATH": str(unpacked)}),
        ([sys.executable, "-m", "test_model", "--help"], {"PYTHONPATH": str(unpacked)}),
    ]
    for argv, env in cases:
        code, err = _reader_gone(argv, env)
        assert err == "", (argv, err)
        assert code in (0, 1), (argv, code)
