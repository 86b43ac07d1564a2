"""A model wheel built before the server moved into the runtime (it ships `_serving/` beside `_runtime/`)
still loads in today's `mlpack inspect`, `mlpack predict` and `mlpack serve`.

`data/before-runtime-serving/` holds one, built by commit 26a5049 from the tests' logistic-regression
churn model (tests.helpers.training.config_for + subscribers(200)), kept as it came out.
"""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

from mlpack.artifacts.read import open_model
from tests.helpers.cli import run_process
from tests.helpers.documents import subscribers
from tests.helpers.http_client import ServerProcess

OLD_WHEEL = Path(__file__).parent / "data" / "before-runtime-serving" / "test_model-1.0.0-py3-none-any.whl"


def test_the_old_wheel_is_what_it_says() -> None:
    with zipfile.ZipFile(OLD_WHEEL) as wheel:
        folders = {name.split("/")[1] for name in wheel.namelist() if name.count("/") >= 2}
    assert folders == {"_runtime", "_serving"}  # the layout this test is about


def test_inspect_and_predict_read_a_wheel_from_before_the_move(tmp_path: Path) -> None:
    shown = run_process("inspect", OLD_WHEEL, timeout=60)
    assert shown.code == 0, shown.err
    assert shown.out.startswith("test-model 1.0.0  (classification")
    records = subscribers(5, seed=4, absent=False)
    source = tmp_path / "in.jsonl"
    source.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    predicted = run_process("predict", OLD_WHEEL, "--input", source, timeout=60)
    assert predicted.code == 0, predicted.err
    assert [json.loads(line)["prediction"] for line in predicted.out.splitlines()] == open_model(OLD_WHEEL).predict(
        records
    )


def test_serve_answers_from_a_wheel_from_before_the_move() -> None:
    records = subscribers(5, seed=5, absent=False)
    server = ServerProcess.mlpack(OLD_WHEEL)
    try:
        answer = server.request("POST", "/predict", records)
        assert answer.status == 200, answer.body
        assert answer.json()["predictions"] == open_model(OLD_WHEEL).predict(records)
        assert server.request("GET", "/metadata").json()["name"] == "test-model"
        assert "mlpack_feature_drift_psi" in server.request("GET", "/metrics").body.decode()  # its baseline read
    finally:
        assert server.stop() == 0
