"""Random rows for an ONNX graph's inputs and its answers as comparable values: what the tests of the
export's graph rewrites compare a rewritten graph with the graph as converted by."""

from __future__ import annotations

from typing import Any

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto


def session(model: bytes) -> ort.InferenceSession:
    """onnxruntime on one intra-op thread, as the server runs a model."""
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    return ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])


def random_feeds(model: onnx.ModelProto, rows: int, texts: np.ndarray) -> dict[str, np.ndarray]:
    """Rows of every input, each column drawn on its own (so a column taken for another shows): strings
    from `texts`, numbers with 15 % NaN among them, dates (int64 milliseconds) over 2014 to 2026."""
    rng = np.random.default_rng(0)
    made: dict[str, np.ndarray] = {}
    for entry in model.graph.input:
        kind = entry.type.tensor_type.elem_type
        if kind == TensorProto.STRING:
            made[entry.name] = texts[rng.integers(0, len(texts), (rows, 1))].astype(object)
        elif kind == TensorProto.INT64:
            made[entry.name] = rng.integers(1_390_000_000_000, 1_790_000_000_000, (rows, 1), dtype=np.int64)
        else:
            numbers = rng.normal(40, 30, (rows, 1)).astype(np.float32)
            numbers[rng.random((rows, 1)) < 0.15] = np.nan
            made[entry.name] = numbers
    return made


def answers(model: onnx.ModelProto, rows: dict[str, np.ndarray]) -> list[Any]:
    """Every output, as its dtype, shape and bytes (numbers) or as the values themselves (strings)."""
    out = session(model.SerializeToString()).run(None, rows)
    return [
        value.tolist() if value.dtype == object else (value.dtype.str, value.shape, value.tobytes()) for value in out
    ]
