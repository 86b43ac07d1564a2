"""Open Inference Protocol v2 with NVIDIA's own client (issue 11 item 1): binary tensor data and JSON."""

from __future__ import annotations

import json
import struct
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
import tritonclient.http as triton

from mlpack.artifacts.read import open_model
from mlpack.build import BuildResult
from tests.helpers.documents import subscribers
from tests.helpers.http_client import ServerProcess

# BYTES tensors cannot carry a null: records whose categories are all present.
RECORDS = [r for r in subscribers(40, seed=17, absent=False) if None not in (r["contract"], r["billing"]["method"])]
NUMERIC = {
    "tenure_months": lambda r: r["tenure_months"],
    "billing.monthly_charges": lambda r: r["billing"]["monthly_charges"],
    "support_calls": lambda r: r["support_calls"],
}
CATEGORICAL = {"contract": lambda r: r["contract"], "billing.method": lambda r: r["billing"]["method"]}


@pytest.fixture(scope="module")
def server(built_model: BuildResult) -> Iterator[ServerProcess]:
    process = ServerProcess.mlpack(built_model.artifacts["wheel"])
    yield process
    assert process.stop() == 0
    assert "Traceback" not in process.output()


@pytest.fixture(scope="module")
def expected(built_model: BuildResult) -> Any:
    return open_model(built_model.artifacts["wheel"])


def triton_inputs(records: list[dict[str, Any]], *, binary: bool) -> list[Any]:
    inputs = []
    for name, get in NUMERIC.items():
        tensor = triton.InferInput(name, [len(records), 1], "FP32")
        tensor.set_data_from_numpy(np.array([[get(r)] for r in records], dtype=np.float32), binary_data=binary)
        inputs.append(tensor)
    for name, get in CATEGORICAL.items():
        tensor = triton.InferInput(name, [len(records), 1], "BYTES")
        tensor.set_data_from_numpy(np.array([[get(r)] for r in records], dtype=object), binary_data=binary)
        inputs.append(tensor)
    return inputs


@pytest.mark.parametrize("binary", [True, False], ids=["binary", "json"])
def test_tritonclient_infers(server: ServerProcess, expected: Any, binary: bool) -> None:
    client = triton.InferenceServerClient(f"127.0.0.1:{server.port}")
    try:
        assert client.is_server_ready() and client.is_model_ready("test-model")
        assert "binary_tensor_data" in client.get_server_metadata()["extensions"]
        outputs = [triton.InferRequestedOutput(n, binary_data=binary) for n in ("label", "probabilities")]
        result = client.infer("test-model", triton_inputs(RECORDS, binary=binary), outputs=outputs, request_id="r-7")
        labels = [v.decode() if isinstance(v, bytes) else v for v in result.as_numpy("label").tolist()]
        assert labels == expected.predict(RECORDS)
        np.testing.assert_allclose(result.as_numpy("probabilities"), expected.predict_proba(RECORDS), atol=1e-6)
        assert result.get_response()["id"] == "r-7"
        # tritonclient's default (no outputs named): every output in binary.
        default = client.infer("test-model", triton_inputs(RECORDS[:3], binary=binary))
        assert [v.decode() for v in default.as_numpy("label").tolist()] == expected.predict(RECORDS[:3])
        assert default.as_numpy("probabilities").shape == (3, 2)
    finally:
        client.close()


def binary_request(header: dict[str, Any], data: bytes, declared: int | None = None) -> tuple[bytes, dict[str, str]]:
    text = json.dumps(header).encode()
    return text + data, {"Inference-Header-Content-Length": str(len(text) if declared is None else declared)}


def fp32(*values: float) -> bytes:
    return struct.pack(f"<{len(values)}f", *values)


def strings(*values: bytes) -> bytes:
    return b"".join(struct.pack("<I", len(v)) + v for v in values)


def full_header(overrides: dict[str, Any]) -> dict[str, Any]:
    inputs = [
        {"name": n, "datatype": "FP32", "shape": [1, 1], "parameters": {"binary_data_size": 4}} for n in NUMERIC
    ] + [
        {"name": n, "datatype": "BYTES", "shape": [1], "data": ["monthly" if n == "contract" else "card"]}
        for n in CATEGORICAL
    ]
    for tensor in inputs:
        tensor.update(overrides.get(tensor["name"], {}))
    return {"inputs": inputs}


GOOD = fp32(12) + fp32(70.5) + fp32(1)
BAD_BINARY = [
    ("header length past the body", full_header({}), GOOD, 10_000, "does not fit the body"),
    ("header length not a number", full_header({}), GOOD, -1, "does not fit the body"),
    ("sizes past the data", full_header({}), GOOD[:8], None, "binary_data_size does not fit"),
    ("bytes left over", full_header({}), GOOD + b"xx", None, "2 bytes of binary data belong to no input"),
    (
        "FP32 byte count",
        full_header({"support_calls": {"parameters": {"binary_data_size": 3}}}),
        fp32(12) + fp32(70.5) + b"\x00\x00\x00",
        None,
        "3 bytes of data for 1 FP32 values",
    ),
    (
        "BYTES element past the data",
        full_header({"contract": {"parameters": {"binary_data_size": 6}, "data": None}}),
        GOOD + struct.pack("<I", 50) + b"ab",
        None,
        "runs past the data",
    ),
    (
        "BYTES not UTF-8",
        full_header({"contract": {"parameters": {"binary_data_size": 6}, "data": None}}),
        GOOD + strings(b"\xff\xfe"),
        None,
        "not UTF-8",
    ),
    (
        "unknown datatype",
        full_header({"support_calls": {"datatype": "FP8"}}),
        GOOD,
        None,
        "datatype 'FP8' is not supported",
    ),
    ("bad shape", full_header({"support_calls": {"shape": [-1]}}), GOOD, None, "shape must be a list of sizes"),
]


@pytest.mark.parametrize(("name", "header", "data", "declared", "fragment"), BAD_BINARY, ids=[c[0] for c in BAD_BINARY])
def test_bad_binary_requests_are_400_naming_the_problem(
    server: ServerProcess, name: str, header: dict[str, Any], data: bytes, declared: int | None, fragment: str
) -> None:
    body, headers = binary_request(header, data, -1 if declared == -1 else declared)
    if declared == -1:
        headers["Inference-Header-Content-Length"] = "²"
    answer = server.request("POST", "/v2/models/test-model/infer", raw=body, headers=headers)
    assert answer.status == 400, answer.body[:300]
    assert fragment in answer.json()["error"]


def test_binary_request_with_json_answer_and_bytes_input(server: ServerProcess, expected: Any) -> None:
    header = full_header({"contract": {"parameters": {"binary_data_size": 11}, "data": None}})
    body, headers = binary_request(header, GOOD + strings(b"monthly"))
    answer = server.request("POST", "/v2/models/test-model/infer", raw=body, headers=headers)
    assert answer.status == 200 and answer.headers["content-type"] == "application/json"
    label = next(o for o in answer.json()["outputs"] if o["name"] == "label")
    record = {
        "tenure_months": 12,
        "support_calls": 1,
        "contract": "monthly",
        "billing": {"monthly_charges": 70.5, "method": "card"},
    }
    assert label["data"] == [expected.predict(record)]
    unknown = server.request(
        "POST", "/v2/models/test-model/infer", {**header, "outputs": [{"name": "nope"}]}, headers=headers
    )
    assert unknown.status == 400
