"""Issue 24, the third hostile-input round: each finding sent again, with what the server must do now.

Memory is measured in the server process itself (/proc VmHWM), where memory was the finding.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import struct
import time
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mlpack.build import BuildResult
from tests.helpers.documents import subscribers
from tests.helpers.http_client import ServerProcess

RECORDS = subscribers(30, seed=11, absent=False)
INFER = "/v2/models/test-model/infer"
MIB = 1024 * 1024


@pytest.fixture(scope="module")
def server(built_model: BuildResult) -> Iterator[ServerProcess]:
    process = ServerProcess.mlpack(built_model.artifacts["wheel"])
    yield process
    assert process.stop() == 0
    output = process.output()
    assert "Traceback" not in output and "never retrieved" not in output, output[-3000:]


@pytest.fixture(scope="module")
def app(built_model: BuildResult) -> Any:
    """The server's App in this process, for fuzzing thousands of requests without sockets."""
    from mlpack.runtime import Model, read_onnx_metadata
    from mlpack.runtime.serving import App

    onnx_file = built_model.artifacts["onnx"]
    served = App(Model(onnx_file, read_onnx_metadata(onnx_file)).load())
    served.ready.set()
    return served


def exchange(port: int, data: bytes, *, timeout: float = 10) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(data)
        sock.shutdown(socket.SHUT_WR)
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


def v2_inputs(record: dict[str, Any]) -> list[dict[str, Any]]:
    return [
        {"name": "tenure_months", "datatype": "FP32", "shape": [1], "data": [record["tenure_months"]]},
        {"name": "billing.monthly_charges", "datatype": "FP32", "shape": [1], "data": [1.0]},
        {"name": "support_calls", "datatype": "FP32", "shape": [1], "data": [record["support_calls"]]},
        {"name": "contract", "datatype": "BYTES", "shape": [1], "data": [record["contract"]]},
        {"name": "billing.method", "datatype": "BYTES", "shape": [1], "data": [record["billing"]["method"]]},
    ]


# -- item 1: numbers in headers, and v2 requests that were 500s ------------------------------------
@pytest.mark.parametrize("header", ["Content-Length", "Inference-Header-Content-Length"])
def test_a_5000_digit_size_in_a_header_is_a_400(server: ServerProcess, header: str) -> None:
    """The audit: a 5,000-digit Content-Length got no answer and 'Task exception was never retrieved'
    (int() refuses more than 4,300 digits); the same in Inference-Header-Content-Length was a 500."""
    body = json.dumps({"inputs": v2_inputs(RECORDS[0])}).encode()
    extra = f"{header}: {'9' * 5000}\r\n"
    if header == "Content-Length":
        head = f"POST {INFER} HTTP/1.1\r\nHost: x\r\n{extra}\r\n"
    else:
        head = f"POST {INFER} HTTP/1.1\r\nHost: x\r\nContent-Length: {len(body)}\r\n{extra}\r\n"
    answer = exchange(server.port, head.encode() + body)
    assert answer.startswith(b"HTTP/1.1 400 "), answer[:200]
    assert b"Content-Length" in answer and b"Traceback" not in answer
    # Leading zeros say nothing: 5,000 of them before a 5 is a length of 5, as RFC 9110 reads it.
    zeros = b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Length: " + b"0" * 5000 + b"5\r\n\r\n[{}] "
    assert exchange(server.port, zeros).startswith(b"HTTP/1.1 200 "), "a 5-byte body, predicted"
    assert server.request("GET", "/healthz").status == 200


@pytest.mark.parametrize("name", [[], {}, 3, None])
def test_an_output_name_that_is_not_text_is_a_400(server: ServerProcess, name: Any) -> None:
    body = {"inputs": v2_inputs(RECORDS[0]), "outputs": [{"name": name}]}
    answer = server.request("POST", INFER, body)
    assert answer.status == 400 and 'expected "outputs"' in answer.json()["error"], answer.body[:300]


def test_no_outputs_named_is_every_output(server: ServerProcess) -> None:
    answer = server.request("POST", INFER, {"inputs": v2_inputs(RECORDS[0]), "outputs": []})
    assert answer.status == 200
    assert [output["name"] for output in answer.json()["outputs"]] == ["label", "probabilities"]


@pytest.mark.parametrize("binary", [(True, True), (True, False), (False, False)])
def test_one_output_asked_twice_is_a_400(server: ServerProcess, binary: tuple[bool, bool]) -> None:
    """The audit: twice in binary was a 500 (KeyError); binary then JSON announced two chunks and sent one."""
    asked = [{"name": "label", "parameters": {"binary_data": flag}} for flag in binary]
    answer = server.request("POST", INFER, {"inputs": v2_inputs(RECORDS[0]), "outputs": asked})
    assert answer.status == 400 and "asked for more than once" in answer.json()["error"]


def split_binary(answer: Any) -> tuple[dict[str, Any], bytes]:
    cut = int(answer.headers["inference-header-content-length"])
    return json.loads(answer.body[:cut]), answer.body[cut:]


@pytest.mark.parametrize("in_binary", [(True, False), (False, True), (True, True)])
def test_a_mixed_answers_header_describes_exactly_its_chunks(
    server: ServerProcess, in_binary: tuple[bool, bool]
) -> None:
    records = RECORDS[:3]
    inputs = [
        {**column[0], "shape": [3], "data": [tensor["data"][0] for tensor in column]}
        for column in zip(*(v2_inputs(r) for r in records))
    ]
    asked = [{"name": n, "parameters": {"binary_data": b}} for n, b in zip(("label", "probabilities"), in_binary)]
    answer = server.request("POST", INFER, {"inputs": inputs, "outputs": asked})
    assert answer.status == 200
    header, raw = split_binary(answer)
    sizes = [o.get("parameters", {}).get("binary_data_size") for o in header["outputs"]]
    assert [size is not None for size in sizes] == list(in_binary)
    assert sum(size or 0 for size in sizes) == len(raw)
    offset = 0
    for output, size in zip(header["outputs"], sizes):
        if size is None:
            assert "data" in output and len(output["data"]) == (3 if output["name"] == "label" else 6)
            continue
        assert "data" not in output
        chunk = raw[offset : offset + size]
        offset += size
        if output["name"] == "probabilities":
            values = struct.unpack(f"<{size // 4}f", chunk)
            assert len(values) == 6 and all(abs(values[i] + values[i + 1] - 1) < 1e-5 for i in (0, 2, 4))


# Everything the v2 request schema allows, and much it does not: names, datatypes, shapes, data,
# parameters, outputs and binary trailers drawn freely. None of it may be answered 5xx.
SCALARS = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8)
VALUES = st.recursive(
    SCALARS,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner, max_size=3),
    max_leaves=8,
)
NAMES = st.sampled_from(
    [
        "tenure_months",
        "billing.monthly_charges",
        "billing_monthly_charges",
        "support_calls",
        "contract",
        "billing.method",
        "x",
    ]
)
DATATYPES = st.sampled_from(["FP32", "FP64", "INT64", "INT32", "BOOL", "BYTES", "UINT8", "FP16", "nope"])
TENSOR = st.fixed_dictionaries(
    {"name": NAMES | VALUES},
    optional={
        "datatype": DATATYPES | VALUES,
        "shape": st.lists(st.integers(-2, 4), max_size=3) | VALUES,
        "data": st.lists(SCALARS | st.lists(SCALARS, max_size=2), max_size=4) | VALUES,
        "parameters": st.fixed_dictionaries({}, optional={"binary_data_size": st.integers(-1, 40) | VALUES}) | VALUES,
    },
)
OUTPUT = st.fixed_dictionaries(
    {"name": st.sampled_from(["label", "probabilities", "variable"]) | VALUES},
    optional={"parameters": st.fixed_dictionaries({}, optional={"binary_data": st.booleans() | VALUES}) | VALUES},
)
REQUEST = st.fixed_dictionaries(
    {"inputs": st.lists(TENSOR, max_size=6) | VALUES},
    optional={
        "id": VALUES,
        "outputs": st.lists(OUTPUT, max_size=3) | VALUES,
        "parameters": st.fixed_dictionaries({}, optional={"binary_data_output": st.booleans() | VALUES}) | VALUES,
    },
)


@settings(max_examples=3000, deadline=None, suppress_health_check=list(HealthCheck))
@given(
    request=REQUEST,
    trailer=st.binary(max_size=48),
    header_length=st.none() | st.integers(-1, 2000) | st.text(max_size=6),
)
def test_every_v2_request_answers_2xx_or_4xx(
    app: Any, request: dict[str, Any], trailer: bytes, header_length: Any
) -> None:
    from mlpack.runtime.serving import Request

    document = json.dumps(request).encode()
    headers: dict[str, str] = {}
    if header_length is not None:
        headers["inference-header-content-length"] = str(len(document) if header_length == -1 else header_length)
        document += trailer
    answer = app.respond(Request("POST", INFER, "", headers, document))
    assert answer.status < 500, (answer.status, answer.body[:300], request)
    if answer.status == 200 and answer.content_type == "application/octet-stream":
        cut = int(dict(answer.headers)["Inference-Header-Content-Length"])
        header = json.loads(answer.body[:cut])
        described = sum(o.get("parameters", {}).get("binary_data_size", 0) for o in header["outputs"])
        assert described == len(answer.body) - cut


# -- item 2: what a JSON body may cost -----------------------------------------------------------
@pytest.fixture
def fresh_server(built_model: BuildResult) -> Iterator[ServerProcess]:
    """A server of its own, default limits (10 MiB bodies), so that its peak RSS is this test's."""
    process = ServerProcess.mlpack(built_model.artifacts["wheel"])
    yield process
    assert process.stop() == 0


def nested_body(depth: int, size: int) -> bytes:
    chain = b"[" * depth + b"]" * depth
    return b"[" + b",".join([chain] * ((size - 2) // (len(chain) + 1))) + b"]"


def test_a_10_mib_body_nested_900_deep_costs_at_most_4x_its_size(fresh_server: ServerProcess) -> None:
    """The audit: 71 -> 585 MB RSS for one such body (50x), 1.11 GB for two; the pod's limit was 208 MiB."""
    from tests.helpers.http_client import post_concurrently

    body = nested_body(900, 10 * MIB)
    assert 10 * MIB - 2000 < len(body) <= 10 * MIB
    before = fresh_server.rss_kib()
    ((status, _, payload),) = post_concurrently(fresh_server.port, [body])
    peak = fresh_server.rss_kib("VmHWM") - before
    assert status == 413 and "more than 1000000 JSON values" in json.loads(payload)["error"]
    assert peak * 1024 <= 4 * len(body), f"peak RSS grew by {peak} KiB for a {len(body)}-byte body"
    # Under the element budget, the depth: 1,000 chains 900 deep (1.7 MiB) are refused before parsing.
    before_deep = fresh_server.rss_kib("VmHWM")
    ((status, _, payload),) = post_concurrently(fresh_server.port, [nested_body(900, 1800 * 1000)])
    assert status == 400 and "more than 64 levels" in json.loads(payload)["error"]
    assert fresh_server.rss_kib("VmHWM") - before_deep < 8 * 1024
    assert fresh_server.request("POST", "/predict", RECORDS[0]).status == 200


def test_brackets_inside_strings_are_not_nesting(server: ServerProcess) -> None:
    deep_text = '"[{' * 100 + '\\"' + "]" * 10
    records = [{**RECORDS[n % len(RECORDS)], "note": deep_text, "tags": ["[[[", "\\\\", '\\"{{{']} for n in range(70)]
    answer = server.request("POST", "/predict", records)  # 70 records: more than 64 openers, so scanned
    assert answer.status == 200, answer.body[:300]
    deeper = {"a": RECORDS[0]}
    for _ in range(64):
        deeper = {"a": deeper}
    assert server.request("POST", "/predict", [deeper] * 2).status == 400


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.floats(allow_nan=False) | st.text(alphabet='[]{}"\\,:ab', max_size=6),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(alphabet='[]{}"\\a', max_size=3), inner),
    max_leaves=30,
)


def reference_depth(value: Any) -> int:
    if isinstance(value, list):
        return 1 + max(map(reference_depth, value), default=0)
    if isinstance(value, dict):
        return 1 + max(map(reference_depth, value.values()), default=0)
    return 0


@settings(max_examples=2000, deadline=None)
@given(value=JSON_VALUES, ascii_only=st.booleans())
def test_nesting_is_the_parsed_depth(value: Any, ascii_only: bool) -> None:
    from mlpack.runtime.serving.wire import nesting

    assert nesting(json.dumps(value, ensure_ascii=ascii_only).encode()) == reference_depth(value)


def test_the_kubernetes_limit_holds_the_servers_worst_case() -> None:
    from mlpack.deploy.footprint import Footprint
    from mlpack.runtime.settings import Limits

    worst = Limits().worst_case_bytes  # two 10 MiB bodies, their copies, 1M elements parsed each
    assert 140 * MIB < worst < 160 * MIB
    footprint = Footprint(model_bytes=MIB, rss_bytes=80 * MIB, peak_bytes=90 * MIB, requests_bytes=worst)
    assert int(footprint.memory_limit.removesuffix("Mi")) * MIB >= footprint.rss_bytes + worst


# -- item 4: slots, connections and probes that slow clients cannot take -----------------------------
def trickler(port: int, length: int) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    sock.sendall(f"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Length: {length}\r\n\r\n[".encode())
    return sock


def test_trickling_bodies_cannot_hold_the_large_body_slots(server: ServerProcess) -> None:
    """The audit: two connections sending Content-Length: 100000 a byte at a time made every other
    body over 64 KiB a 503 for as long as they trickled (up to 60 s, renewable by reconnecting)."""
    tricklers = [trickler(server.port, 100_000) for _ in range(2)]
    try:
        time.sleep(0.3)
        body = json.dumps([RECORDS[n % len(RECORDS)] for n in range(440)]).encode()
        assert 100_000 < len(body) < 200_000
        for _ in range(3):
            started = time.monotonic()
            assert server.request("POST", "/predict", raw=body).status == 200
            assert time.monotonic() - started < 1
        answers = []
        for sock in tricklers:  # a byte every 0.3 s: far under 64 KiB/s, cut off after the 2 s grace
            received = b""
            deadline = time.monotonic() + 6
            while time.monotonic() < deadline and not received:
                with contextlib.suppress(OSError):
                    sock.sendall(b" ")
                sock.settimeout(0.3)
                with contextlib.suppress(TimeoutError):
                    received = sock.recv(4096)
            answers.append(received)
        for received in answers:
            assert received.startswith(b"HTTP/1.1 408 ") and b"slower than 64 KiB/s" in received, received[:200]
    finally:
        for sock in tricklers:
            sock.close()


def open_descriptors(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def test_max_connections_holds_against_a_burst(built_model: BuildResult) -> None:
    """The audit: --max-connections 100 accepted a burst of 1,000 (1,003 sockets open)."""
    process = ServerProcess.mlpack(built_model.artifacts["wheel"], "--max-connections", "100")
    burst: list[socket.socket] = []
    try:
        idle = open_descriptors(process.proc.pid)
        for _ in range(1000):
            burst.append(socket.create_connection(("127.0.0.1", process.port), timeout=10))
        time.sleep(1.0)
        held = open_descriptors(process.proc.pid) - idle
        assert held <= 100, f"{held} sockets open beyond the idle process"
        started = time.monotonic()
        assert process.request("GET", "/healthz").status == 200  # the longest idle made room for it
        assert time.monotonic() - started < 1
    finally:
        for sock in burst:
            sock.close()
        assert process.stop() == 0


def test_healthz_answers_within_a_second_under_6000_slow_connections(built_model: BuildResult) -> None:
    """The audit: ~5,900 slowloris connections kept /healthz from an answer for 40-50 s."""
    process = ServerProcess.mlpack(built_model.artifacts["wheel"])  # default: 4,096 connections
    slow: list[socket.socket] = []
    try:
        for n in range(6000):
            with contextlib.suppress(OSError):
                sock = socket.create_connection(("127.0.0.1", process.port), timeout=10)
                sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-%d: " % n)  # and never the rest
                slow.append(sock)
        assert len(slow) > 5000
        for path in ("/healthz", "/readyz", "/healthz"):
            started = time.monotonic()
            assert process.request("GET", path).status == 200
            elapsed = time.monotonic() - started
            assert elapsed < 1, f"{path} took {elapsed:.2f} s"
        assert open_descriptors(process.proc.pid) < 4096 + 64
    finally:
        for sock in slow:
            sock.close()
        assert process.stop() == 0
    assert "Traceback" not in process.output()
