"""Adaptive batching in a real server: concurrent requests share onnxruntime calls, and every answer is
byte for byte what the same request gets from a server that runs each request alone."""

from __future__ import annotations

import http.client
import json
import queue
import re
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from mlpack.build import BuildResult
from mlpack.runtime.settings import DEFAULT_BATCH_MAX_RECORDS, DEFAULT_BATCH_WAIT_US, ServeSettings, SettingsError
from tests.helpers.cli import run_process
from tests.helpers.documents import distinct_records, subscribers
from tests.helpers.http_client import ServerProcess
from tests.helpers.training import config_for, export

CONNECTIONS = 32
ID = re.compile(rb'"id": "[0-9a-f]{32}"')


@pytest.fixture(scope="module")
def forest(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A random forest's .onnx: onnxruntime on two threads would sum its trees batch by batch."""
    config = config_for("sklearn.ensemble.RandomForestClassifier", "classification", {"n_estimators": 40})
    path = tmp_path_factory.mktemp("forest") / "forest.onnx"
    path.write_bytes(export(config, subscribers(200)).onnx_bytes)
    return path


@pytest.fixture(scope="module")
def forest_pair(forest: Path) -> Iterator[tuple[ServerProcess, ServerProcess]]:
    together, alone = ServerProcess.mlpack(forest), ServerProcess.mlpack(forest, "--batch-max-records", "1")
    yield together, alone
    assert together.stop() == 0 and alone.stop() == 0


@pytest.fixture(scope="module")
def batched(built_model: BuildResult) -> Iterator[ServerProcess]:
    process = ServerProcess.mlpack(built_model.artifacts["wheel"])  # batching is on by default
    yield process
    assert process.stop() == 0


@pytest.fixture(scope="module")
def alone(built_model: BuildResult) -> Iterator[ServerProcess]:
    process = ServerProcess.mlpack(built_model.artifacts["wheel"], "--batch-max-records", "1")
    yield process
    assert process.stop() == 0


def send_all(server: ServerProcess, requests: list[tuple[str, bytes]], connections: int) -> list[tuple[int, bytes]]:
    """Every (path, body) POSTed over `connections` keep-alive connections at once; (status, body)
    in the order given, each answer's random id blanked (it is the one part that differs)."""
    answers: list[tuple[int, bytes]] = [(0, b"")] * len(requests)
    todo: queue.SimpleQueue[int] = queue.SimpleQueue()
    for index in range(len(requests)):
        todo.put(index)

    def client() -> None:
        conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=60)
        try:
            while True:
                try:
                    index = todo.get_nowait()
                except queue.Empty:
                    return
                path, body = requests[index]
                conn.request("POST", path, body=body, headers={"Content-Type": "application/json"})
                response = conn.getresponse()
                answers[index] = (response.status, ID.sub(b'"id": ""', response.read()))
        finally:
            conn.close()

    threads = [threading.Thread(target=client) for _ in range(connections)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(300)
    return answers


def scraped(server: ServerProcess) -> dict[str, float]:
    text = server.request("GET", "/metrics").body.decode()
    return {
        line.rsplit(" ", 1)[0]: float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith("mlpack_batch_")
    }


def v2_body(record: dict[str, Any]) -> bytes:
    billing = record["billing"]
    inputs = [
        {"name": "tenure_months", "datatype": "FP32", "shape": [1], "data": [record["tenure_months"]]},
        {"name": "billing.monthly_charges", "datatype": "FP32", "shape": [1], "data": [billing["monthly_charges"]]},
        {"name": "support_calls", "datatype": "FP32", "shape": [1], "data": [record["support_calls"]]},
        {"name": "contract", "datatype": "BYTES", "shape": [1], "data": [record["contract"]]},
        {"name": "billing.method", "datatype": "BYTES", "shape": [1], "data": [billing.get("method")]},
    ]
    return json.dumps({"inputs": inputs}).encode()


def test_thousands_of_concurrent_records_get_the_bytes_they_get_alone(
    batched: ServerProcess, alone: ServerProcess
) -> None:
    """A logistic regression: alone, its one row would take another kernel than in a batch."""
    same_bytes_together_and_alone(batched, alone, distinct_records(3000, seed=1))


def test_a_forests_concurrent_records_get_the_bytes_they_get_alone(
    forest_pair: tuple[ServerProcess, ServerProcess],
) -> None:
    """A forest, and onnxruntime's threads left to the server (which gives batching one)."""
    same_bytes_together_and_alone(*forest_pair, distinct_records(2000, seed=8))


def same_bytes_together_and_alone(batched: ServerProcess, alone: ServerProcess, records: list[dict[str, Any]]) -> None:
    requests = [("/predict", json.dumps(record).encode()) for record in records]
    requests += [("/predict", json.dumps(records[i : i + 3]).encode()) for i in range(0, 300, 3)]  # 3 at once
    requests += [("/v2/models/test-model/infer", v2_body(record)) for record in records[:1000]]
    before = scraped(batched)
    together = send_all(batched, requests, CONNECTIONS)
    one_by_one = send_all(alone, requests, 1)
    assert {status for status, _ in together} == {200}
    assert together == one_by_one  # the same bytes: labels, probabilities, everything but the ids
    after = scraped(batched)
    calls = after["mlpack_batch_records_count"] - before["mlpack_batch_records_count"]
    records_run = after["mlpack_batch_records_sum"] - before["mlpack_batch_records_sum"]
    assert records_run == len(records) + 300 + 1000  # every record went through the batcher, once
    assert calls < len(requests) * 0.9, (calls, len(requests))  # and requests did share calls
    assert scraped(alone).get("mlpack_batch_records_count", 0) == 0  # off: no batcher at all


def test_a_refused_record_fails_only_its_own_request(batched: ServerProcess, alone: ServerProcess) -> None:
    records = distinct_records(1500, seed=2)
    bad = [
        ("/predict", {"tenure_months": "abc"}),  # not a number
        ("/predict", {"tenure_months": 1e39}),  # beyond float32
        ("/predict", [records[0], {"support_calls": "x"}]),  # the second record of a request
        ("/predict?strict=true", {"contract": "monthly"}),  # strict: fields absent
        ("/v2/models/test-model/infer", {"inputs": []}),  # an input missing
    ]
    requests = []
    for index, record in enumerate(records):
        path, body = bad[index // 10 % len(bad)] if index % 10 == 9 else ("/predict", record)
        requests.append((path, json.dumps(body).encode()))
    before = scraped(batched)
    together = send_all(batched, requests, CONNECTIONS)
    assert together == send_all(alone, requests, 1)
    statuses = [status for status, _ in together]
    assert statuses.count(200) == 1350 and set(statuses) == {200, 400, 422}
    retried = scraped(batched)["mlpack_batch_retries_total"] - before["mlpack_batch_retries_total"]
    assert retried > 0  # bad records did land in batches with good ones


def test_metrics_show_batch_sizes_and_queue_wait(batched: ServerProcess) -> None:
    send_all(batched, [("/predict", json.dumps(r).encode()) for r in distinct_records(200, seed=3)], 8)
    text = batched.request("GET", "/metrics").body.decode()
    for name, unit in (("mlpack_batch_records", "records"), ("mlpack_batch_queue_seconds", "seconds")):
        assert f"# TYPE {name} histogram" in text, unit
        buckets = [float(v) for v in re.findall(rf'^{name}_bucket{{le="[^"]+"}} (\S+)$', text, re.M)]
        assert buckets == sorted(buckets) and buckets[-1] > 0  # cumulative
        count = float(re.search(rf"^{name}_count (\S+)$", text, re.M).group(1))  # type: ignore[union-attr]
        assert re.search(rf'^{name}_bucket{{le="\+Inf"}} {int(count)}$', text, re.M)
    assert re.search(r"^mlpack_batch_retries_total \d+$", text, re.M)


def test_batch_settings_come_from_the_flag_then_the_variable_then_serve() -> None:
    defaults = ServeSettings.read({}, {}, {})
    assert (defaults.batch_max_records, defaults.batch_wait_us) == (DEFAULT_BATCH_MAX_RECORDS, DEFAULT_BATCH_WAIT_US)
    serve = {"batch_max_records": 300, "batch_wait_us": 50}
    assert ServeSettings.read(serve, {}, {}).batch_max_records == 300
    assert ServeSettings.read(serve, {}, {"MLPACK_BATCH_MAX_RECORDS": "8"}).batch_max_records == 8
    assert ServeSettings.read(serve, {"batch_max_records": 1}, {"MLPACK_BATCH_MAX_RECORDS": "8"}).batch_max_records == 1
    assert ServeSettings.read(serve, {}, {"MLPACK_BATCH_WAIT_US": "0"}).batch_wait_us == 0  # 0: never wait
    records, wait = "must be a positive int (1: no batching)", "must be 0 or a positive int (microseconds)"
    for source, message in (
        ({"MLPACK_BATCH_MAX_RECORDS": "0"}, f"MLPACK_BATCH_MAX_RECORDS {records}, got '0'"),
        ({"MLPACK_BATCH_WAIT_US": "-1"}, f"MLPACK_BATCH_WAIT_US {wait}, got '-1'"),
        ({"MLPACK_BATCH_WAIT_US": "0.5"}, f"MLPACK_BATCH_WAIT_US {wait}, got '0.5'"),
    ):
        with pytest.raises(SettingsError) as refused:
            ServeSettings.read({}, {}, source)
        assert str(refused.value) == message


def test_a_bad_batch_flag_is_one_line_and_exit_2(built_model: BuildResult) -> None:
    result = run_process("serve", built_model.artifacts["wheel"], "--port", "0", "--batch-wait-us", "-5", timeout=60)
    assert result.code == 2 and "Traceback" not in result.err
    wanted = "error: --batch-wait-us must be 0 or a positive int (microseconds), got -5"
    assert result.err.strip().splitlines() == [wanted]


def test_several_onnxruntime_threads_turn_batching_off(built_model: BuildResult) -> None:
    """Several intra-op threads sum a forest's trees in an order that depends on the batch: the
    server says so and answers each request alone rather than risk a different last bit."""
    process = ServerProcess.mlpack(built_model.artifacts["wheel"], env={"MLPACK_THREADS": "2"})
    try:
        assert process.request("POST", "/predict", distinct_records(1)[0]).status == 200
        assert "mlpack_batch_" not in process.request("GET", "/metrics").body.decode()
    finally:
        assert process.stop() == 0
    assert "batching off: with MLPACK_THREADS=2" in process.output()
