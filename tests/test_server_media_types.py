"""What a body says it is (README: "The HTTP server"): JSON routes take JSON, or a body that says nothing.

A `text/plain` body (fetch() with a string), a form (`curl -d`) or any other type was read as JSON and
answered as if it were: a client that sent the wrong thing learnt nothing. Now it is a 415 naming the
type it sent and the one the route takes, with `Accept: application/json`. No Content-Type at all is
still read as JSON (tritonclient sends none; FastAPI reads such a body as JSON too).
"""

from __future__ import annotations

import json
import socket
import struct
from collections.abc import Iterator
from typing import Any

import pytest

from mlpack.build import BuildResult
from tests.helpers.documents import subscribers
from tests.helpers.http_client import ServerProcess

RECORD = subscribers(1, seed=3, absent=False)[0]
BODY = json.dumps(RECORD).encode()
V2 = "/v2/models/test-model/infer"
NUMERIC, CATEGORICAL = ["tenure_months", "billing.monthly_charges", "support_calls"], ["contract", "billing.method"]
V2_BODY = json.dumps(
    {
        "inputs": [{"name": n, "shape": [1, 1], "datatype": "FP32", "data": [3]} for n in NUMERIC]
        + [{"name": n, "shape": [1, 1], "datatype": "BYTES", "data": ["x"]} for n in CATEGORICAL]
    }
)


@pytest.fixture(scope="module")
def server(built_model: BuildResult) -> Iterator[ServerProcess]:
    process = ServerProcess.mlpack(built_model.artifacts["wheel"])
    yield process
    assert process.stop() == 0
    assert "Traceback" not in process.output()


REFUSED = [
    ("/predict", "text/plain", "Content-Type 'text/plain' is not taken: send the body as application/json"),
    ("/predict", "text/plain;charset=UTF-8", "Content-Type 'text/plain' is not taken"),  # fetch() with a string
    (
        "/predict",
        "application/x-www-form-urlencoded",  # curl -d
        "send the body as application/json (curl: -H 'Content-Type: application/json')",
    ),
    ("/predict", "multipart/form-data; boundary=x", "Content-Type 'multipart/form-data' is not taken"),
    ("/predict", "application/octet-stream", "Content-Type 'application/octet-stream' is not taken"),
    ("/predict", "application/jsonx", "Content-Type 'application/jsonx' is not taken"),
    ("/feedback", "text/plain", "Content-Type 'text/plain' is not taken: send the body as application/json"),
    (V2, "text/plain", "Content-Type 'text/plain' is not taken: send the body as application/json"),
]


@pytest.mark.parametrize(("path", "media_type", "message"), REFUSED, ids=[f"{p} {t}" for p, t, _ in REFUSED])
def test_a_body_that_says_it_is_not_json_is_a_415_naming_both_types(
    server: ServerProcess, path: str, media_type: str, message: str
) -> None:
    body = V2_BODY.encode() if path == V2 else b'{"id": "x", "label": "churned"}' if path == "/feedback" else BODY
    answer = server.request("POST", path, raw=body, headers={"Content-Type": media_type})
    assert answer.status == 415, answer.body
    assert answer.headers["content-type"] == "application/json" and answer.headers["accept"] == "application/json"
    assert answer.json() == {"error": message} or message in answer.json()["error"]


ACCEPTED = ["application/json", "application/json; charset=utf-8", "Application/JSON", "application/problem+json"]


@pytest.mark.parametrize("media_type", ACCEPTED)
def test_json_and_its_structured_suffix_are_taken_with_any_parameters(server: ServerProcess, media_type: str) -> None:
    assert server.request("POST", "/predict", raw=BODY, headers={"Content-Type": media_type}).status == 200
    assert server.request("POST", V2, raw=V2_BODY.encode(), headers={"Content-Type": media_type}).status == 200


def _exchange(server: ServerProcess, head: str, body: bytes) -> tuple[int, dict[str, Any]]:
    """A request as written, without the helper's Content-Type: status and the JSON answer."""
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.sendall(head.encode() + f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode() + body)
        received = b""
        while chunk := sock.recv(65536):
            received += chunk
    status_line, _, rest = received.partition(b"\r\n")
    return int(status_line.split()[1]), json.loads(rest.partition(b"\r\n\r\n")[2])


def test_a_body_that_says_nothing_is_read_as_json(server: ServerProcess) -> None:
    status, answer = _exchange(server, "POST /predict HTTP/1.1\r\nHost: x\r\n", BODY)
    assert status == 200 and answer["predictions"] in (["churned"], ["stayed"])
    status, _ = _exchange(server, "POST /predict HTTP/1.1\r\nHost: x\r\nContent-Type: \r\n", BODY)
    assert status == 200  # an empty value says nothing either


def test_the_binary_extension_is_taken_as_octet_stream(server: ServerProcess) -> None:
    """Triton's own example of the extension sends application/octet-stream; only with its header."""
    binary = {"parameters": {"binary_data_size": 4}, "shape": [1, 1]}
    tensors = [{"name": n, "datatype": "FP32", **binary} for n in NUMERIC]
    tensors += [{"name": n, "datatype": "BYTES", **binary, "parameters": {"binary_data_size": 5}} for n in CATEGORICAL]
    header = json.dumps({"inputs": tensors}).encode()
    body = header + struct.pack("<fff", 12.0, 70.5, 1.0) + (struct.pack("<I", 1) + b"x") * 2
    head = f"POST {V2} HTTP/1.1\r\nHost: x\r\nContent-Type: application/octet-stream\r\n"
    status, answer = _exchange(server, head + f"Inference-Header-Content-Length: {len(header)}\r\n", body)
    assert status == 200, answer
    status, answer = _exchange(server, head, V2_BODY.encode())
    assert status == 415 and "(or application/octet-stream with Inference-Header-Content-Length)" not in str(answer)
    assert answer["error"] == "Content-Type 'application/octet-stream' is not taken: send the body as application/json"


def test_a_large_body_is_refused_the_same_and_the_connection_goes_on(server: ServerProcess) -> None:
    """Bodies over 64 KiB are parsed on a thread: the same rule there; and a 415 leaves the connection open."""
    large = json.dumps([RECORD] * 400).encode()
    assert len(large) > 64 * 1024
    conn = server.connection()
    try:
        refused = server.request("POST", "/predict", raw=large, headers={"Content-Type": "text/plain"}, connection=conn)
        assert refused.status == 415 and "text/plain" in refused.json()["error"]
        again = server.request("POST", "/predict", raw=BODY, connection=conn)
        assert again.status == 200
    finally:
        conn.close()


def test_the_openapi_document_lists_the_415(server: ServerProcess) -> None:
    paths = server.request("GET", "/openapi.json").json()["paths"]
    for path in ("/predict", "/feedback"):
        assert "application/json" in paths[path]["post"]["responses"]["415"]["description"]
