"""/metrics per-feature data quality and drift, from a real server process, one or more workers."""

from __future__ import annotations

import math
import re
from typing import Any

import numpy as np
import pytest

from mlpack.build import BuildResult
from mlpack.runtime.drift import Profile
from tests.helpers.documents import subscribers
from tests.helpers.drift import reference_categorical_psi, reference_numeric_psi
from tests.helpers.http_client import ServerProcess


def scrape(server: ServerProcess) -> dict[str, float]:
    """`name{labels}` → value, for the per-feature and drift lines."""
    text = server.request("GET", "/metrics").body.decode()
    values = {}
    for line in text.splitlines():
        if line.startswith(("mlpack_feature_", "mlpack_drift_", "mlpack_prediction_drift")):
            key, _, value = line.rpartition(" ")
            values[key] = float(value)
    return values


def odd_records(n: int) -> list[dict[str, Any]]:
    """Like the training data, but some tenures missing and some contracts never seen in training."""
    records = subscribers(n, seed=41, absent=False)
    for index, record in enumerate(records):
        if index % 5 == 0:
            record["tenure_months"] = None
        if index % 4 == 0:
            record["contract"] = "weekly"
    return records


def _psi_of(built: BuildResult, feature: str, values: list[Any]) -> float | None:
    profile = Profile(built.metadata["baseline"]["features"][feature])
    return profile.psi(profile.counts_of(np.array(values, dtype=object if profile.kind == "categorical" else float)))


def test_metrics_count_missing_and_unknown_values_and_report_psi(built_model: BuildResult) -> None:
    records = odd_records(60)
    server = ServerProcess.mlpack(built_model.artifacts["wheel"])
    try:
        for record in records[:40]:
            assert server.request("POST", "/predict", record).status == 200
        assert server.request("POST", "/predict", records[40:]).status == 200
        metrics = scrape(server)
    finally:
        assert server.stop() == 0
    tenure = [math.nan if r["tenure_months"] is None else r["tenure_months"] for r in records]
    contracts = [r["contract"] for r in records]
    assert metrics['mlpack_feature_values_total{feature="tenure_months"}'] == 60
    missing = sum(math.isnan(t) for t in tenure)
    assert missing >= 12
    assert metrics['mlpack_feature_missing_total{feature="tenure_months"}'] == missing
    assert metrics['mlpack_feature_unknown_category_total{feature="contract"}'] == contracts.count("weekly") == 15
    assert metrics['mlpack_feature_unknown_category_total{feature="billing.method"}'] == 0
    assert metrics['mlpack_drift_window_values{feature="tenure_months"}'] == 60 - missing
    assert metrics['mlpack_feature_drift_psi{feature="tenure_months"}'] == pytest.approx(
        _psi_of(built_model, "tenure_months", tenure), rel=1e-5
    )
    # Against the independent reference, from the training documents themselves.
    training = subscribers(200)
    assert metrics['mlpack_feature_drift_psi{feature="contract"}'] == pytest.approx(
        reference_categorical_psi([d["contract"] for d in training], contracts), rel=1e-4
    )
    train_tenure = np.array([math.nan if d["tenure_months"] is None else d["tenure_months"] for d in training])
    assert metrics['mlpack_feature_drift_psi{feature="tenure_months"}'] == pytest.approx(
        reference_numeric_psi(train_tenure, np.array(tenure)), rel=1e-4
    )
    assert "mlpack_prediction_drift_psi" in metrics


def test_the_window_slides_over_the_most_recent_records(built_model: BuildResult) -> None:
    server = ServerProcess.mlpack(built_model.artifacts["wheel"], env={"MLPACK_DRIFT_WINDOW": "30"})
    try:
        like = subscribers(50, seed=5, absent=False)
        shifted = [{**r, "tenure_months": 500} for r in subscribers(30, seed=6, absent=False)]
        assert server.request("POST", "/predict", like).status == 200
        before = scrape(server)['mlpack_feature_drift_psi{feature="tenure_months"}']
        assert server.request("POST", "/predict", shifted).status == 200
        after = scrape(server)
    finally:
        assert server.stop() == 0
    last = [math.nan if r["tenure_months"] is None else r["tenure_months"] for r in like[-30:]]
    assert before == pytest.approx(_psi_of(built_model, "tenure_months", last), rel=1e-5)
    assert after['mlpack_drift_window_values{feature="tenure_months"}'] == 30
    assert after['mlpack_feature_drift_psi{feature="tenure_months"}'] == pytest.approx(
        _psi_of(built_model, "tenure_months", [500.0] * 30), rel=1e-5
    )
    assert after['mlpack_feature_values_total{feature="tenure_months"}'] == 80  # totals do not slide


def test_workers_report_the_servers_totals(built_model: BuildResult) -> None:
    server = ServerProcess.mlpack(built_model.artifacts["wheel"], "--workers", "2")
    records = odd_records(40)
    try:
        for record in records:
            # A connection per request (the helper opens one each time): the kernel hands them to both workers.
            assert server.request("POST", "/predict", record).status == 200
        # A request is counted before it is answered: the very next scrapes, whichever worker answers them, see all 40.
        scrapes = [scrape(server) for _ in range(4)]
    finally:
        assert server.stop() == 0
    for metrics in scrapes:
        assert metrics['mlpack_feature_values_total{feature="contract"}'] == 40
        assert metrics['mlpack_feature_unknown_category_total{feature="contract"}'] == 10
        assert metrics['mlpack_feature_missing_total{feature="tenure_months"}'] == sum(
            r["tenure_months"] is None for r in records
        )


def test_drift_tracking_can_be_switched_off(built_model: BuildResult) -> None:
    server = ServerProcess.mlpack(built_model.artifacts["wheel"], env={"MLPACK_DRIFT_WINDOW": "0"})
    try:
        assert server.request("POST", "/predict", odd_records(3)).status == 200
        text = server.request("GET", "/metrics").body.decode()
    finally:
        assert server.stop() == 0
    assert "mlpack_requests_total" in text
    assert not re.search(r"^mlpack_feature_", text, re.M)


@pytest.mark.parametrize(("value", "shown"), [("abc", "'abc'"), ("-3", "'-3'"), ("2.5", "'2.5'")])
def test_a_bad_drift_window_is_one_line_and_exit_2(built_model: BuildResult, value: str, shown: str) -> None:
    """As MLPACK_MAX_RECORDS=abc is: the server does not start, and says which setting and what it got."""
    import os
    import subprocess
    import sys

    result = subprocess.run(
        [sys.executable, "-m", "mlpack", "serve", str(built_model.artifacts["wheel"]), "--port", "0"],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "MLPACK_DRIFT_WINDOW": value},
    )
    assert result.returncode == 2, result.stderr
    assert result.stderr.strip().splitlines() == [
        f"error: MLPACK_DRIFT_WINDOW must be 0 (off) or a positive int, got {shown}"
    ]


def test_the_drift_window_comes_from_the_flag_then_the_environment_then_serve_then_the_default() -> None:
    from mlpack.runtime.settings import DEFAULT_DRIFT_WINDOW, ServeSettings, SettingsError

    def window(serve: dict[str, Any], env: dict[str, str], flag: int | None = None) -> int:
        return ServeSettings.read(serve, {"drift_window": flag}, env).drift_window

    assert window({}, {}) == DEFAULT_DRIFT_WINDOW
    assert window({"drift_window": 0}, {}) == 0
    assert window({"drift_window": 50}, {"MLPACK_DRIFT_WINDOW": ""}) == 50  # empty is unset, as for every MLPACK_*
    assert window({"drift_window": 50}, {"MLPACK_DRIFT_WINDOW": "7"}) == 7
    assert window({"drift_window": 50}, {"MLPACK_DRIFT_WINDOW": "7"}, flag=3) == 3
    with pytest.raises(SettingsError) as refused:
        window({"drift_window": 2.5}, {})  # a crafted wheel's metadata
    assert refused.value.exit_code == 2
    assert str(refused.value) == "[serve].drift_window must be 0 (off) or a positive int, got 2.5"
