"""Issue 13, server items 1-5: each request the audit sent, sent again, with what it must do now.

Memory is measured in the server process itself (/proc VmRSS, VmHWM), where that was the problem.
"""

from __future__ import annotations

import json
import os
import resource
import signal
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from mlpack.build import BuildResult
from tests.helpers.documents import subscribers
from tests.helpers.http_client import ServerProcess, exchange, post_concurrently

RECORDS = subscribers(30, seed=11, absent=False)
INJECTION = 'X"}\t1\ninjected_metric{evil="yes"}\t42\n#'
MIB = 1024


@pytest.fixture(scope="module")
def server(built_model: BuildResult) -> Iterator[ServerProcess]:
    process = ServerProcess.mlpack(built_model.artifacts["wheel"])
    yield process
    assert process.stop() == 0


def metric_samples(server: ServerProcess) -> list[Any]:
    text = server.request("GET", "/metrics").body.decode()
    return [sample for family in text_string_to_metric_families(text) for sample in family.samples]


# -- item 1: metrics injection and unbounded labels ---------------------------------------------
def test_a_forged_method_cannot_inject_a_series_into_metrics(server: ServerProcess) -> None:
    answer = exchange(server.port, f"{INJECTION} /healthz HTTP/1.1\r\nHost: x\r\n\r\n".encode())
    assert answer.startswith(b"HTTP/1.1 4") or answer.startswith(b"HTTP/1.1 5"), answer[:100]
    samples = metric_samples(server)  # prometheus_client parses the whole exposition
    assert not [s for s in samples if s.name.startswith("injected_metric")]
    assert not [s for s in samples if "evil" in s.labels]
    methods = {s.labels["method"] for s in samples if "method" in s.labels}
    assert methods <= {"GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "CONNECT", "TRACE", "other", "-"}


def test_label_values_are_escaped_for_the_text_format() -> None:
    from mlpack.runtime.serving import Metrics

    class Named:
        name, version = 'a"b\\c\nd', "1"

    metrics = Metrics(['/x"y'])
    metrics.observe('/x"y', "GET", 200, 0.001, 0)
    text = metrics.render(Named())
    families = {f.name: f for f in text_string_to_metric_families(text)}
    assert families["mlpack_model_info"].samples[0].labels["name"] == 'a"b\\c\nd'
    assert families["mlpack_requests"].samples[0].labels["route"] == '/x"y'


def test_many_distinct_methods_leave_memory_and_metrics_bounded(server: ServerProcess) -> None:
    """The audit: 2,000 methods of 60 KB took RSS up by 145 MB and /healthz waited 0.66 s."""
    before = server.rss_kib()
    with socket.create_connection(("127.0.0.1", server.port), timeout=30) as sock:
        reader = sock.makefile("rb")
        for n in range(2000):
            sock.sendall(f"M{n:05d}{'X' * 60_000} /healthz HTTP/1.1\r\nHost: x\r\n\r\n".encode())
            status = reader.readline()
            assert status.split()[1] in (b"400", b"405", b"501"), status
            length, close = 0, False
            while (line := reader.readline()) not in (b"\r\n", b""):
                name, _, value = line.decode().partition(":")
                length = int(value) if name.lower() == "content-length" else length
                close = close or (name.lower() == "connection" and "close" in value)
            reader.read(length)
            if close:  # a server that closes after a bad request: go on with a new connection
                sock.close()
                sock = socket.create_connection(("127.0.0.1", server.port), timeout=30)
                reader = sock.makefile("rb")
    started = time.monotonic()
    assert server.request("GET", "/healthz").status == 200
    assert time.monotonic() - started < 0.2
    metrics = server.request("GET", "/metrics").body
    assert len(metrics) < 32 * 1024, len(metrics)
    grown = server.rss_kib() - before
    assert grown < 20 * MIB, f"RSS grew by {grown} KiB"


@pytest.fixture
def big_server(built_model: BuildResult) -> Iterator[ServerProcess]:
    process = ServerProcess.mlpack(built_model.artifacts["wheel"])  # default limits: 10 MiB bodies
    yield process
    assert process.stop() == 0


def test_twelve_bodies_of_empty_objects_leave_memory_bounded(big_server: ServerProcess) -> None:
    """The audit: 12 concurrent 9.9 MB bodies of [{},{},...] took RSS from 68 MB to 1.8 GB."""
    body = b"[" + b"{}," * (3_300_000 - 1) + b"{}]"
    assert len(body) > 9_800_000
    before = big_server.rss_kib()
    results = post_concurrently(big_server.port, [body] * 12)
    peak = big_server.rss_kib("VmHWM") - before
    statuses = sorted(status for status, _, _ in results)
    assert len(statuses) == 12 and set(statuses) <= {413, 503}, statuses
    assert statuses.count(413) >= 2
    for status, headers, payload in results:
        if status == 413:
            assert "more than 1000000 JSON values" in json.loads(payload)["error"]
        if status == 503:
            assert headers["retry-after"] == "1"
    assert peak < 150 * MIB, f"peak RSS grew by {peak} KiB"
    assert big_server.request("POST", "/predict", RECORDS[0]).status == 200


def test_records_per_request_are_bounded_and_large_batches_still_answer(big_server: ServerProcess) -> None:
    too_many = big_server.request("POST", "/predict", [RECORDS[0]] * 10_001)
    assert too_many.status == 413
    assert too_many.json()["error"] == "10001 records is over the limit of 10000 per request"
    v2 = big_server.request(
        "POST",
        "/v2/models/test-model/infer",
        {"inputs": [{"name": "tenure_months", "datatype": "FP32", "shape": [10_001], "data": [1.0] * 10_001}]},
    )
    assert v2.status == 413 and "10001 rows is over the limit of 10000" in v2.json()["error"]
    before = big_server.rss_kib()
    batch = json.dumps([RECORDS[n % len(RECORDS)] for n in range(10_000)]).encode()
    results = post_concurrently(big_server.port, [batch] * 8)
    peak = big_server.rss_kib("VmHWM") - before
    statuses = [status for status, _, _ in results]
    assert statuses.count(200) >= 2 and set(statuses) <= {200, 503}, statuses
    for status, headers, payload in results:
        if status == 200:
            assert len(json.loads(payload)["predictions"]) == 10_000
        else:
            assert headers["retry-after"] == "1"
    assert peak < 250 * MIB, f"peak RSS grew by {peak} KiB"


def test_max_records_is_configurable(built_model: BuildResult) -> None:
    process = ServerProcess.mlpack(built_model.artifacts["wheel"], env={"MLPACK_MAX_RECORDS": "5"})
    try:
        assert process.request("POST", "/predict", RECORDS[:5]).status == 200
        answer = process.request("POST", "/predict", RECORDS[:6])
        assert answer.status == 413 and "over the limit of 5 per request" in answer.json()["error"]
    finally:
        assert process.stop() == 0


@pytest.mark.parametrize(
    ("flag", "value", "message"),
    [
        ("--max-records", "0", "--max-records must be a positive int, got 0"),
        ("--drain-timeout", "nan", "--drain-timeout must be a positive float"),
    ],
)
def test_bad_limits_are_exit_2(built_model: BuildResult, run: Any, flag: str, value: str, message: str) -> None:
    import subprocess
    import sys

    result = subprocess.run(
        [sys.executable, "-m", "mlpack", "serve", str(built_model.artifacts["wheel"]), "--port", "0", flag, value],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2 and message in result.stderr and "Traceback" not in result.stderr


# -- item 3: write timeout and a short drain -----------------------------------------------------
def never_reading_client(port: int, requests: int = 3000) -> tuple[socket.socket, int]:
    """Pipelines requests for a large answer and never reads one: the server's writes back up."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect(("127.0.0.1", port))
    sock.setblocking(False)
    request = b"GET /openapi.json HTTP/1.1\r\nHost: x\r\n\r\n"
    sent = 0
    for _ in range(requests):
        try:
            sock.send(request)
        except BlockingIOError:
            break
        sent += 1
    return sock, sent


def test_a_client_that_never_reads_is_cut_off(built_model: BuildResult) -> None:
    process = ServerProcess.mlpack(built_model.artifacts["wheel"], "--write-timeout", "1")
    try:
        stuck, sent = never_reading_client(process.port)
        time.sleep(0.5)
        started = time.monotonic()
        assert process.request("GET", "/healthz").status == 200  # the loop is not blocked by it
        assert time.monotonic() - started < 0.5
        time.sleep(2.5)  # past the write timeout
        stuck.setblocking(True)
        stuck.settimeout(5)
        received = b""
        ending = "eof"
        try:
            while chunk := stuck.recv(1 << 20):
                received += chunk
        except ConnectionResetError:
            ending = "reset"
        except TimeoutError:
            ending = "still open"
        stuck.close()
        answers = received.count(b"HTTP/1.1 200")
        assert ending in ("eof", "reset") and answers < sent, (ending, answers, sent)
    finally:
        assert process.stop() == 0
    assert "Traceback" not in process.output()


def test_sigterm_with_a_stuck_client_exits_within_docker_stop_grace(built_model: BuildResult) -> None:
    """The audit: SIGTERM waited the full 30 s drain, with CancelledError tracebacks; docker stop waits 10 s."""
    process = ServerProcess.mlpack(built_model.artifacts["wheel"])  # default write timeout 30 s, drain 8 s
    stuck, _ = never_reading_client(process.port)
    half = socket.create_connection(("127.0.0.1", process.port))  # and one whose body never comes
    half.sendall(b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{")
    time.sleep(0.5)
    started = time.monotonic()
    process.proc.send_signal(signal.SIGTERM)
    code = process.proc.wait(15)
    elapsed = time.monotonic() - started
    stuck.close()
    half.close()
    output = process.output()
    assert code == 0
    assert elapsed < 10, f"took {elapsed:.1f} s to stop"
    assert "Traceback" not in output and "CancelledError" not in output, output[-2000:]
    assert "requests cut off after 8 s" in output


# -- item 4: out of file descriptors, and workers whose parent died --------------------------------
def test_out_of_file_descriptors_backs_off_and_logs_rarely(built_model: BuildResult) -> None:
    def few_descriptors() -> None:
        resource.setrlimit(resource.RLIMIT_NOFILE, (96, 96))

    process = ServerProcess.mlpack(
        built_model.artifacts["wheel"], env={"MLPACK_MAX_CONNECTIONS": "100000"}, preexec_fn=few_descriptors
    )
    hogs = []
    try:
        for _ in range(150):  # more than the process can hold: the rest wait in the backlog
            hogs.append(socket.create_connection(("127.0.0.1", process.port), timeout=5))
        time.sleep(4)
        assert process.proc.poll() is None
        for hog in hogs:
            hog.close()
        hogs.clear()
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                if process.request("GET", "/healthz").status == 200:
                    break
            except OSError:
                time.sleep(0.2)
        assert process.request("GET", "/healthz").status == 200
    finally:
        for hog in hogs:
            hog.close()
        assert process.stop() == 0
    output = process.output()
    warnings = [line for line in output.splitlines() if "cannot accept connections" in line]
    assert 1 <= len(warnings) <= 2, output[-3000:]
    assert len(output) < 5000 and "Traceback" not in output


def children_of(pid: int) -> list[int]:
    path = Path(f"/proc/{pid}/task/{pid}/children")
    return [int(child) for child in path.read_text().split()] if path.exists() else []


def alive(pid: int) -> bool:
    try:
        state = next(line for line in Path(f"/proc/{pid}/status").read_text().splitlines() if line.startswith("State:"))
    except (FileNotFoundError, ProcessLookupError):
        return False
    return "Z" not in state.split()[1]


def test_workers_exit_when_the_parent_is_killed(built_model: BuildResult) -> None:
    process = ServerProcess.mlpack(built_model.artifacts["wheel"], "--workers", "3")
    workers = children_of(process.proc.pid)
    assert len(workers) == 2
    for _ in range(6):
        assert process.request("POST", "/predict", RECORDS[0]).status == 200
    os.kill(process.proc.pid, signal.SIGKILL)
    process.proc.wait(10)
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and any(alive(pid) for pid in workers):
        time.sleep(0.1)
    assert not any(alive(pid) for pid in workers), "workers kept serving after their parent died"
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", process.port), timeout=2).close()


# -- item 5: values that are not numbers a float32 feature can take --------------------------------
def with_support_calls(value: str) -> bytes:
    record = json.dumps({**RECORDS[0], "support_calls": "PLACEHOLDER"})
    return record.replace('"PLACEHOLDER"', value).encode()


VALUES = [
    ("true", "expected a number, got True"),
    ("false", "expected a number, got False"),
    ("1e39", "1e+39"),
    ("-1e39", "-1e+39"),
    ("Infinity", "inf"),
    ("-Infinity", "-inf"),
    ("9" * 5000, "an integer of 5000 digits"),
    ("-" + "9" * 5000, "an integer of 5000 digits"),
]


def v2_body(support_calls: str) -> bytes:
    record = RECORDS[0]
    inputs = [
        {"name": "tenure_months", "datatype": "FP32", "shape": [1], "data": [record["tenure_months"]]},
        {"name": "billing.monthly_charges", "datatype": "FP32", "shape": [1], "data": [1.0]},
        {"name": "support_calls", "datatype": "FP32", "shape": [1], "data": ["PLACEHOLDER"]},
        {"name": "contract", "datatype": "BYTES", "shape": [1], "data": [record["contract"]]},
        {"name": "billing.method", "datatype": "BYTES", "shape": [1], "data": [record["billing"]["method"]]},
    ]
    return json.dumps({"inputs": inputs}).replace('"PLACEHOLDER"', support_calls).encode()


@pytest.mark.parametrize(("value", "fragment"), VALUES, ids=[v[:12] for v, _ in VALUES])
def test_values_no_float32_feature_can_take_are_422_naming_the_field(
    server: ServerProcess, value: str, fragment: str
) -> None:
    answer = server.request("POST", "/predict", raw=with_support_calls(value))
    assert answer.status == 422, answer.body[:300]
    error = answer.json()["error"]
    assert "field 'support_calls'" in error and fragment in error, error
    assert "sys.set_int_max_str_digits" not in error
    listed = server.request("POST", "/predict", raw=b"[" + with_support_calls(value) + b"]")
    assert listed.status == 422 and "support_calls" in listed.json()["error"]
    v2 = server.request("POST", "/v2/models/test-model/infer", raw=v2_body(value))
    assert v2.status in (400, 422) and "support_calls" in v2.json()["error"]
    assert server.request("GET", "/healthz").status == 200


def test_the_log_has_no_overflow_warning(built_model: BuildResult) -> None:
    process = ServerProcess.mlpack(built_model.artifacts["wheel"])
    for value, _ in VALUES:
        assert process.request("POST", "/predict", raw=with_support_calls(value)).status == 422
    assert process.request("POST", "/predict", RECORDS[0]).status == 200
    assert process.stop() == 0
    output = process.output()
    assert "RuntimeWarning" not in output and "overflow" not in output and "Traceback" not in output
