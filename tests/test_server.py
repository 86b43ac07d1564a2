"""The HTTP server (README: "The HTTP server") in a real process: routes, bad input, fuzzing, load, drain, the log."""

from __future__ import annotations

import dataclasses
import json
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from openapi_spec_validator import validate as validate_openapi
from pymongo import MongoClient

from mlpack.artifacts.read import open_model
from mlpack.build import BuildResult, write_artifacts
from mlpack.source.embedded import embedded_server
from tests.helpers.documents import fuzzed_subscriber, subscribers
from tests.helpers.http_client import ServerProcess, logged_server
from tests.helpers.training import config_for, export

RECORDS = subscribers(30, seed=11, absent=False)


@pytest.fixture(scope="module")
def server(built_model: BuildResult) -> Iterator[ServerProcess]:
    process = ServerProcess.mlpack(built_model.artifacts["wheel"], "--max-body-bytes", "65536")
    yield process
    assert process.stop() == 0


@pytest.fixture(scope="module")
def expected(built_model: BuildResult) -> Any:
    return open_model(built_model.artifacts["wheel"])


def assert_still_serving(server: ServerProcess) -> None:
    assert server.request("GET", "/healthz").status == 200
    assert server.proc.poll() is None


def test_predict_accepts_a_record_a_list_and_instances(server: ServerProcess, expected: Any) -> None:
    one = server.request("POST", "/predict", RECORDS[0])
    assert one.status == 200 and one.headers["content-type"] == "application/json"
    body = one.json()
    assert body["predictions"] == [expected.predict(RECORDS[0])]
    assert len(body["probabilities"][0]) == 2
    assert body["model"] == {"name": "test-model", "version": "1.0.0"}
    many = server.request("POST", "/predict", RECORDS).json()
    assert many["predictions"] == expected.predict(RECORDS)
    assert server.request("POST", "/predict", {"instances": RECORDS}).json()["predictions"] == many["predictions"]
    dotted = [
        {
            "tenure_months": r["tenure_months"],
            "support_calls": r["support_calls"],
            "contract": r["contract"],
            "billing.monthly_charges": r["billing"]["monthly_charges"],
            "billing.method": r["billing"]["method"],
            "unused": {"deep": [1, 2]},
        }
        for r in RECORDS
    ]
    assert server.request("POST", "/predict", dotted).json()["predictions"] == many["predictions"]


def test_health_metadata_openapi(server: ServerProcess, built_model: BuildResult) -> None:
    assert server.request("GET", "/healthz").json() == {"status": "ok"}
    assert server.request("GET", "/readyz").json() == {"ready": True}
    assert server.request("GET", "/metadata").json() == built_model.metadata
    spec = server.request("GET", "/openapi.json").json()
    validate_openapi(spec)  # a valid OpenAPI 3.1 document, not just JSON
    assert spec["openapi"].startswith("3.")
    record = spec["components"]["schemas"]["Record"]
    assert record["properties"]["billing"]["properties"]["monthly_charges"]["type"] == ["number", "null"]
    assert "required" not in record  # an absent field is a missing value (issue 24: schemathesis)
    assert record["properties"]["tenure_months"]["maximum"] == 3.4028234663852886e38
    assert "422" in spec["paths"]["/predict"]["post"]["responses"]


def test_metrics_count_requests_latency_predictions_and_errors(server: ServerProcess) -> None:
    server.request("POST", "/predict", RECORDS[:3])
    server.request("POST", "/predict", {"tenure_months": "nope"})
    text = server.request("GET", "/metrics").body.decode()
    assert 'mlpack_requests_total{route="/predict",method="POST",status="200"}' in text
    assert 'mlpack_requests_total{route="/predict",method="POST",status="422"}' in text
    assert 'mlpack_request_duration_seconds_bucket{route="/predict",le="+Inf"}' in text
    predictions = int(
        next(line.split()[-1] for line in text.splitlines() if line.startswith("mlpack_predictions_total"))
    )
    assert predictions >= 3
    assert 'mlpack_errors_total{kind="client"}' in text and 'mlpack_errors_total{kind="server"} 0' in text


def test_open_inference_protocol_v2(server: ServerProcess, expected: Any) -> None:
    assert server.request("GET", "/v2/health/live").json() == {"live": True}
    assert server.request("GET", "/v2/health/ready").status == 200
    assert server.request("GET", "/v2/models/test-model/ready").status == 200
    assert server.request("GET", "/v2/models/test-model/versions/1.0.0/ready").status == 200
    assert server.request("GET", "/v2/models/test-model/versions/9.9.9/ready").status == 404
    assert server.request("GET", "/v2").json()["name"] == "mlpack"
    meta = server.request("GET", "/v2/models/test-model").json()
    assert meta["name"] == "test-model" and meta["versions"] == ["1.0.0"]
    assert {"name": "contract", "datatype": "BYTES", "shape": [-1, 1]} in meta["inputs"]
    records = RECORDS[:4]
    inputs = [
        {"name": "tenure_months", "shape": [4, 1], "datatype": "FP32", "data": [[r["tenure_months"]] for r in records]},
        {
            "name": "billing_monthly_charges",
            "shape": [4],
            "datatype": "FP32",
            "data": [r["billing"]["monthly_charges"] for r in records],
        },
        {"name": "support_calls", "shape": [4], "datatype": "FP32", "data": [r["support_calls"] for r in records]},
        {"name": "contract", "shape": [4], "datatype": "BYTES", "data": [r["contract"] for r in records]},
        {
            "name": "billing.method",
            "shape": [4],
            "datatype": "BYTES",
            "data": [r["billing"]["method"] for r in records],
        },
    ]
    answer = server.request("POST", "/v2/models/test-model/infer", {"id": "r1", "inputs": inputs})
    assert answer.status == 200, answer.body
    body = answer.json()
    assert body["id"] == "r1" and body["model_name"] == "test-model"
    labels = next(o for o in body["outputs"] if o["name"] == "label")
    assert labels["data"] == expected.predict(records) and labels["shape"] == [4]
    probabilities = next(o for o in body["outputs"] if o["name"] == "probabilities")
    assert probabilities["shape"] == [4, 2] and len(probabilities["data"]) == 8
    missing = server.request("POST", "/v2/models/test-model/infer", {"inputs": inputs[:2]})
    assert missing.status == 400 and "missing input 'support_calls'" in missing.json()["error"]


BAD_REQUESTS = [
    # (method, path, raw body, headers, status, message fragment)
    ("POST", "/predict", b"{not json", {}, 400, "not valid JSON"),
    ("POST", "/predict", b"\xff\xfe\x00", {}, 400, "not valid JSON"),
    ("POST", "/predict", b"42", {}, 422, "expected a record"),
    ("POST", "/predict", b'"text"', {}, 422, "expected a record"),
    ("POST", "/predict", b"[]", {}, 422, "no records given"),
    ("POST", "/predict", b'{"instances": 5}', {}, 422, "'instances' must be a list"),
    ("POST", "/predict", b"[1, 2]", {}, 422, "record 0 is a int"),
    ("POST", "/predict?strict=true", b'{"contract": "monthly"}', {}, 422, "field 'tenure_months': absent (strict"),
    (
        "POST",
        "/predict?strict=true",
        json.dumps({**RECORDS[0], "contract": "weekly"}).encode(),
        {},
        422,
        "field 'contract': category 'weekly' was not seen in training",
    ),
    (
        "POST",
        "/predict?strict=true",
        json.dumps({**RECORDS[0], "billing": 5}).encode(),
        {},
        422,
        "field 'billing.monthly_charges': absent (billing is 5, not a document; strict: every field must be given)",
    ),
    ("POST", "/predict?strict=maybe", b'{"contract": "monthly"}', {}, 400, "strict must be true or false"),
    (
        "POST",
        "/predict",
        json.dumps({**RECORDS[0], "support_calls": "many"}).encode(),
        {},
        422,
        "field 'support_calls': expected a number, got 'many'",
    ),
    ("POST", "/predict", json.dumps({**RECORDS[0], "contract": {"x": 1}}).encode(), {}, 422, "field 'contract'"),
    (
        "POST",
        "/predict",
        json.dumps({**RECORDS[0], "support_calls": 10**400}).encode(),
        {},
        422,
        "field 'support_calls': 10000000000000000000... is too large a number",
    ),
    (
        "POST",
        "/predict",
        json.dumps({**RECORDS[0], "support_calls": 0})
        .replace('"support_calls": 0', '"support_calls": ' + "9" * 5000)
        .encode(),
        {},
        422,
        "field 'support_calls': expected a number, got an integer of 5000 digits",
    ),
    ("POST", "/predict", b"[" * 100_000 + b"]" * 100_000, {}, 413, "over the limit"),
    ("POST", "/predict", b"[" * 30_000 + b"]" * 30_000, {}, 400, "nested too deeply"),
    ("POST", "/predict", b"x" * 70_000, {}, 413, "over the limit of 65536"),
    ("GET", "/predict", None, {}, 405, "GET is not allowed on /predict"),
    ("DELETE", "/metadata", None, {}, 405, "not allowed"),
    ("GET", "/nowhere", None, {}, 404, "no route /nowhere"),
    ("POST", "/v2/models/test-model/infer", b'{"inputs": "x"}', {}, 400, 'expected {"inputs"'),
    (
        "POST",
        "/v2/models/test-model/infer",
        b'{"inputs": [{"name": "contract", "data": 3}]}',
        {},
        400,
        "data must be a list",
    ),
    ("POST", "/v2/models/other/infer", b"{}", {}, 404, "no route"),
]


@pytest.mark.parametrize(
    ("method", "path", "raw", "headers", "status", "message"),
    BAD_REQUESTS,
    ids=[f"{m} {p} {s} {msg[:20]}" for m, p, _, _, s, msg in BAD_REQUESTS],
)
def test_bad_requests_get_4xx_json_naming_the_problem(
    server: ServerProcess, method: str, path: str, raw: bytes | None, headers: dict[str, str], status: int, message: str
) -> None:
    answer = server.request(method, path, raw=raw, headers=headers)
    assert answer.status == status, answer.body[:300]
    assert message in answer.json()["error"]
    assert_still_serving(server)


def send_raw(server: ServerProcess, data: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.sendall(data)
        sock.shutdown(socket.SHUT_WR)
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


def test_framing_mistakes_are_4xx(server: ServerProcess) -> None:
    no_length = send_raw(server, b"POST /predict HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n{}")
    assert no_length.startswith(b"HTTP/1.1 411")
    chunked = send_raw(
        server, b"POST /predict HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n2\r\n{}\r\n0\r\n\r\n"
    )
    assert chunked.startswith(b"HTTP/1.1 411")
    negative = send_raw(server, b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Length: -5\r\n\r\n")
    assert negative.startswith(b"HTTP/1.1 400")
    short = send_raw(server, b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{}")
    assert short.startswith(b"HTTP/1.1 400")
    garbage = send_raw(server, b"\x00\x01GARBAGE\r\n\r\n")
    assert garbage.startswith(b"HTTP/1.1 400") or garbage == b""
    assert_still_serving(server)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats(allow_nan=False) | st.text(max_size=10),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=20,
)
field_values = (
    st.none()
    | st.integers(-(2**64), 2**64)
    | st.floats(allow_nan=False)
    | st.text(max_size=5)
    | st.booleans()
    | st.lists(st.integers(), max_size=2)
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(body=json_values)
def test_fuzzed_bodies_never_get_a_5xx(server: ServerProcess, body: Any) -> None:
    answer = server.request("POST", "/predict", body)
    assert answer.status < 500, answer.body
    assert isinstance(answer.json(), dict)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(record=fuzzed_subscriber(field_values))
def test_fuzzed_records_never_get_a_5xx(server: ServerProcess, record: dict[str, Any]) -> None:
    answer = server.request("POST", "/predict", [record, RECORDS[0]])
    assert answer.status in (200, 422), answer.body
    if answer.status == 200:
        assert len(answer.json()["predictions"]) == 2


def test_bounded_load_on_loopback_has_zero_errors(server: ServerProcess) -> None:
    threads, per_thread = 16, 100
    statuses: list[int] = []
    lock = threading.Lock()

    def client(index: int) -> None:
        conn = server.connection()
        local = []
        for n in range(per_thread):
            local.append(
                server.request("POST", "/predict", RECORDS[(index + n) % len(RECORDS)], connection=conn).status
            )
        conn.close()
        with lock:
            statuses.extend(local)

    started = time.monotonic()
    workers = [threading.Thread(target=client, args=(i,)) for i in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(120)
    elapsed = time.monotonic() - started
    assert len(statuses) == threads * per_thread
    assert set(statuses) == {200}
    assert elapsed < 120


def test_sigterm_drains_the_in_flight_request_then_exits_0(built_model: BuildResult) -> None:
    process = ServerProcess.mlpack(built_model.artifacts["wheel"])
    body = json.dumps(RECORDS).encode()
    sock = socket.create_connection(("127.0.0.1", process.port), timeout=30)
    sock.sendall(
        b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        + f"Content-Length: {len(body)}\r\n\r\n".encode()
        + body[:100]
    )
    time.sleep(0.5)  # the request is in flight: headers read, body half sent
    process.proc.send_signal(15)
    time.sleep(0.5)
    assert process.proc.poll() is None, "exited with a request in flight"
    sock.sendall(body[100:])
    response = b""
    while b"\r\n\r\n" not in response or not response.rstrip().endswith(b"}"):
        chunk = sock.recv(65536)
        if not chunk:
            break
        response += chunk
    sock.close()
    assert response.startswith(b"HTTP/1.1 200")
    assert len(json.loads(response.split(b"\r\n\r\n", 1)[1])["predictions"]) == len(RECORDS)
    assert process.proc.wait(30) == 0
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", process.port), timeout=2).close()


def scraped(text: str, name: str, **labels: str) -> float:
    from prometheus_client.parser import text_string_to_metric_families

    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                return float(sample.value)
    return 0.0


def test_workers_share_the_port_and_every_scrape_counts_every_request(built_model: BuildResult, expected: Any) -> None:
    """Issue 11: each worker kept its own /metrics, so successive scrapes disagreed."""
    process = ServerProcess.mlpack(built_model.artifacts["wheel"], "--workers", "2")
    try:
        pids = set()
        for n in range(40):  # a new connection each: the kernel hands them to both workers
            record = RECORDS[n % len(RECORDS)]
            answer = process.request("POST", "/predict", [record, record])
            assert answer.json()["predictions"] == [expected.predict(record)] * 2
        assert process.request("POST", "/predict", {"tenure_months": "nope"}).status == 422
        for _ in range(4):
            text = process.request("GET", "/metrics").body.decode()
            assert scraped(text, "mlpack_requests_total", route="/predict", method="POST", status="200") == 40
            assert scraped(text, "mlpack_requests_total", route="/predict", method="POST", status="422") == 1
            assert scraped(text, "mlpack_predictions_total") == 80
            assert scraped(text, "mlpack_request_duration_seconds_count", route="/predict") == 41
            assert scraped(text, "mlpack_errors_total", kind="client") == 1
        for line in Path(f"/proc/{process.proc.pid}/task/{process.proc.pid}/children").read_text().split():
            pids.add(int(line))
        assert len(pids) == 1
    finally:
        assert process.stop() == 0
    output = process.output()
    assert "worker" in output and "with 2 workers" in output and "Traceback" not in output


def test_inference_log_writes_batches_and_survives_the_database_going_away(
    built_model: BuildResult, tmp_path_factory: pytest.TempPathFactory
) -> None:
    with embedded_server() as log_uri:
        process = ServerProcess.mlpack(
            built_model.artifacts["wheel"],
            env={"MLPACK_INFERENCE_LOG_URI": log_uri, "MLPACK_INFERENCE_LOG_DB": "telemetry"},
        )
        for record in RECORDS[:5]:
            assert process.request("POST", "/predict", record).status == 200
        client: MongoClient[dict[str, Any]] = MongoClient(log_uri)
        collection = client["telemetry"]["inference_log"]
        deadline = time.monotonic() + 15
        while collection.count_documents({}) < 5 and time.monotonic() < deadline:
            time.sleep(0.2)
        logged = list(collection.find({}, {"_id": 0}))
        client.close()
        assert len(logged) == 5
        assert logged[0]["model"] == "test-model" and logged[0]["route"] == "/predict"
        assert logged[0]["predictions"] == [open_model(built_model.artifacts["wheel"]).predict(RECORDS[0])]
    # The database is gone now: predictions still answer, fast; the losses are counted.
    slowest = 0.0
    for n in range(40):
        started = time.monotonic()
        assert process.request("POST", "/predict", RECORDS[n % len(RECORDS)]).status == 200
        slowest = max(slowest, time.monotonic() - started)
        time.sleep(0.05)
    assert slowest < 0.5
    deadline = time.monotonic() + 20
    dropped = 0
    while time.monotonic() < deadline:
        text = process.request("GET", "/metrics").body.decode()
        dropped = int(next(line.split()[-1] for line in text.splitlines() if 'outcome="dropped"' in line))
        if dropped > 0:
            break
        time.sleep(0.5)
    assert dropped > 0
    assert process.stop() == 0


def test_inference_log_switched_on_by_the_models_config(
    tmp_path: Path, mongo_uri: str, mongo_client: MongoClient[dict[str, Any]]
) -> None:
    """[serve] in mlpack.toml names the variable and the collection; the URI stays in the environment."""
    (tmp_path / "mlpack.toml").write_text("# test\n", encoding="utf-8")
    config = dataclasses.replace(
        config_for(
            "sklearn.linear_model.LogisticRegression",
            "classification",
            serve={
                "inference_log": True,
                "inference_log_uri_env": "CRM_LOG_URI",
                "inference_log_database": "mlpack_test_log",
                "inference_log_collection": "served",
            },
        ),
        path=tmp_path / "mlpack.toml",
    )
    built = write_artifacts(config, export(config, subscribers(120)), tmp_path / "dist")
    assert built.metadata["serve"]["inference_log_uri_env"] == "CRM_LOG_URI"
    assert mongo_uri not in (tmp_path / "dist" / "test-model-1.0.0.json").read_text()
    mongo_client.drop_database("mlpack_test_log")
    process = ServerProcess.mlpack(built.artifacts["onnx"], env={"CRM_LOG_URI": mongo_uri})
    try:
        assert process.request("POST", "/predict", RECORDS[:2]).status == 200
        # An unused field BSON cannot hold: the prediction answers, and its record is logged with its
        # inputs as text (issue 24; it was dropped, and with a 5,000-digit integer its whole batch).
        assert process.request("POST", "/predict", {**RECORDS[2], "note": 10**30}).status == 200
        assert process.request("POST", "/predict", RECORDS[3]).status == 200
        collection = mongo_client["mlpack_test_log"]["served"]
        deadline = time.monotonic() + 15
        while collection.count_documents({}) < 3 and time.monotonic() < deadline:
            time.sleep(0.2)
        time.sleep(1.5)  # one more flush interval: nothing else may arrive
        logged = list(collection.find({}, {"_id": 0}).sort("at", 1))
        assert len(logged) == 3
        assert len(logged[0]["predictions"]) == 2 and logged[0]["inputs"][0]["contract"] == RECORDS[0]["contract"]
        assert "8-byte ints" in logged[1]["inputs_as_text"] and str(10**30) in logged[1]["inputs"]
        metrics = process.request("GET", "/metrics").body.decode()
        assert 'mlpack_inference_log_records_total{outcome="dropped"} 0' in metrics
        assert 'mlpack_inference_log_records_total{outcome="written"} 3' in metrics
        assert "mlpack_inference_log_as_text_total 1" in metrics
    finally:
        assert process.stop() == 0
        mongo_client.drop_database("mlpack_test_log")


def test_expect_100_continue_is_answered_at_once(server: ServerProcess) -> None:
    """curl sends `Expect: 100-continue` before bodies over 1 KiB and waits for the go-ahead."""
    body = json.dumps(RECORDS).encode()
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.sendall(
            b"POST /predict HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\n"
            + f"Content-Length: {len(body)}\r\n\r\n".encode()
        )
        started = time.monotonic()
        interim = sock.recv(100)
        assert interim.startswith(b"HTTP/1.1 100 Continue")
        assert time.monotonic() - started < 0.5
        sock.sendall(body)
        response = b""
        while not response.endswith(b"}") and (chunk := sock.recv(65536)):
            response += chunk
    assert response.startswith(b"HTTP/1.1 200")


def test_predictions_carry_ids_and_feedback_is_stored_beside_them(built_model: BuildResult) -> None:
    """Issue 11 item 5: every /predict answer has an id; POST /feedback puts the truth next to the logged record."""
    with logged_server(built_model.artifacts["wheel"]) as (process, log_uri):
        one = process.request("POST", "/predict", RECORDS[0]).json()
        two = process.request("POST", "/predict", RECORDS[1:3]).json()
        v2 = process.request("POST", "/v2/models/test-model/infer", {"inputs": v2_inputs(RECORDS[3:4])}).json()
        ids = [one["id"], two["id"], v2["id"]]
        assert all(isinstance(i, str) and len(i) == 32 for i in ids) and len(set(ids)) == 3
        accepted = [
            process.request("POST", "/feedback", {"id": one["id"], "label": "churned"}),
            process.request("POST", "/feedback", {"id": two["id"], "index": 1, "label": "stayed"}),
            process.request("POST", "/feedback", {"id": v2["id"], "label": "stayed"}),
        ]
        assert [a.status for a in accepted] == [202] * 3
        assert accepted[1].json() == {"id": two["id"], "index": 1, "status": "accepted"}
        # An id no /predict answered is said to be unknown (it was a 202, as if stored), and nothing is stored.
        unknown = process.request("POST", "/feedback", {"id": "0" * 32, "label": "stayed"})
        assert unknown.status == 404 and f"no logged prediction has id '{'0' * 32}'" in unknown.json()["error"]
        # A position the request did not have: it was a 202, stored, and every build on feedback skipped it.
        beyond = process.request("POST", "/feedback", {"id": two["id"], "index": 2, "label": "stayed"})
        assert beyond.status == 404, beyond.body
        assert beyond.json()["error"].startswith(
            f"field 'index': the logged request with id '{two['id']}' held 2 record(s), so index 2 names none (0 to 1)"
        )
        for body, field in FEEDBACK_MISTAKES:
            answer = process.request("POST", "/feedback", body)
            assert answer.status == 422 and f"field '{field}'" in answer.json()["error"], (body, answer.body)
        client: MongoClient[dict[str, Any]] = MongoClient(log_uri)
        collection = client["telemetry"]["inference_log"]
        deadline = time.monotonic() + 15
        while collection.count_documents({"feedback": {"$exists": True}}) < 3 and time.monotonic() < deadline:
            time.sleep(0.2)
        logged = {doc["_id"]: doc for doc in collection.find()}
        client.close()
        assert set(logged) == set(ids)
        assert logged[one["id"]]["predictions"] == one["predictions"]
        assert [(f["index"], f["label"]) for f in logged[one["id"]]["feedback"]] == [(0, "churned")]
        assert [(f["index"], f["label"]) for f in logged[two["id"]]["feedback"]] == [(1, "stayed")]
        assert logged[v2["id"]]["route"] == "v2/infer" and logged[v2["id"]]["feedback"][0]["label"] == "stayed"
        text = process.request("GET", "/metrics").body.decode()
        assert scraped(text, "mlpack_feedback_total", outcome="stored") == 3
        assert scraped(text, "mlpack_feedback_total", outcome="unknown") == 2
        assert process.stop() == 0


FEEDBACK_MISTAKES = [
    ({"label": "stayed"}, "id"),
    ({"id": 5, "label": "stayed"}, "id"),
    ({"id": "x" * 65, "label": "stayed"}, "id"),
    ({"id": "abc"}, "label"),
    ({"id": "abc", "label": None}, "label"),
    ({"id": "abc", "label": ["a"]}, "label"),
    # Not a class of the model (its classes are "churned" and "stayed"): it was taken (202), and the next
    # build trained on feedback stopped on it (exit 1), or monitor scored it as a class of its own.
    ({"id": "abc", "label": "maybe"}, "label"),
    ({"id": "abc", "label": True}, "label"),
    ({"id": "abc", "label": 1}, "label"),
    ({"id": "abc", "label": "a", "index": -1}, "index"),
    ({"id": "abc", "label": "a", "index": "0"}, "index"),
    ({"id": "abc", "label": "a", "index": True}, "index"),
]


def test_feedback_without_the_inference_log_says_so(server: ServerProcess) -> None:
    answer = server.request("POST", "/predict", RECORDS[0]).json()
    refused = server.request("POST", "/feedback", {"id": answer["id"], "label": "stayed"})
    assert refused.status == 501 and "inference log" in refused.json()["error"]
    assert server.request("POST", "/feedback", [1]).status == 422


def v2_inputs(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [
        {
            "name": "tenure_months",
            "datatype": "FP32",
            "shape": [len(records)],
            "data": [r["tenure_months"] for r in records],
        },
        {
            "name": "billing.monthly_charges",
            "datatype": "FP32",
            "shape": [len(records)],
            "data": [r["billing"]["monthly_charges"] for r in records],
        },
        {
            "name": "support_calls",
            "datatype": "FP32",
            "shape": [len(records)],
            "data": [r["support_calls"] for r in records],
        },
        {"name": "contract", "datatype": "BYTES", "shape": [len(records)], "data": [r["contract"] for r in records]},
        {
            "name": "billing.method",
            "datatype": "BYTES",
            "shape": [len(records)],
            "data": [r["billing"]["method"] for r in records],
        },
    ]
