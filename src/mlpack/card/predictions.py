"""The test split's predictions, for error analysis: `NAME-VERSION.predictions.jsonl`.

One JSON line per test document, in the order the split holds them: its `_id` (Extended JSON, as
mongoexport writes it, so `{"_id": ...}` finds the document again), the true value, the prediction
and, for a classifier with probabilities, the probability of each class. The predictions are the
exported ONNX model's, run through the runtime the wheel ships. Nothing else of the training data is
written: the `_id` is what leads back to a document, in the database that holds it.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
from bson import json_util

from mlpack.runtime import Metadata, Model
from mlpack.training.train import Split

_ID_OPTIONS = json_util.JSONOptions(json_mode=json_util.JSONMode.RELAXED, tz_aware=True)


def plain_id(value: Any) -> Any:
    """An `_id` as relaxed Extended JSON: 7 stays 7, an ObjectId is {"$oid": ...}, a date {"$date": ...}."""
    if type(value) in _AS_THEMSELVES:  # what relaxed Extended JSON writes as the value itself (the usual _id)
        return value
    return json.loads(json_util.dumps(value, json_options=_ID_OPTIONS))


_AS_THEMSELVES = (int, str)  # not bool, Int64 or float: each has rules of its own in Extended JSON


def _shortest(value: Any) -> float:
    """A float32 the graph computed, written with the fewest digits that read back as it (0.82, not 0.8199...)."""
    return float(str(np.float32(value)))


def _shortest_all(values: Any) -> list[Any]:
    """`_shortest` of every value of an array (numpy's float32 to text is the same shortest form), as lists."""
    texts = np.asarray(values, dtype=np.float32).astype(str)
    return [list(map(float, row)) for row in texts.tolist()] if texts.ndim == 2 else list(map(float, texts.tolist()))


# Test rows converted to text at a time. The whole split at once held a text array and the lines of
# every row together (at a million documents the build's peak was there); a chunk's rows answer as
# they would in one run (a tree reads each row on its own, and the runtime runs one row as two).
CHUNK_ROWS = 8192


def prediction_chunks(model: Model, rows: Split, metadata: Metadata, chunk_rows: int = CHUNK_ROWS) -> Iterator[str]:
    """The artifact's text, `chunk_rows` test rows at a time: a JSON line per row, each ending in a newline."""
    names = dict(zip(metadata.get("class_codes", []), metadata.get("classes", [])))
    classes = list(metadata.get("classes", []))
    keys = [json.dumps(name) if not isinstance(name, str) else name for name in classes]
    encode = json.JSONEncoder(ensure_ascii=False, allow_nan=False).encode  # one encoder for every line
    classification = metadata["task"] == "classification"
    total = len(rows.test_ids)
    for start in range(0, total, chunk_rows):
        stop = min(start + chunk_rows, total)
        columns = {path: values[start:stop] for path, values in rows.test_columns.items()}
        labels, probabilities, _ = model.run(columns)
        truths = np.asarray(rows.test_target[start:stop]).tolist()  # Python values, as .item() gives them
        shortest = _shortest_all(probabilities) if classification and probabilities is not None else None
        values = None if classification else _shortest_all(labels)
        lines = []
        for index, document_id in enumerate(rows.test_ids[start:stop]):
            truth = truths[index]
            record: dict[str, Any] = {"_id": plain_id(document_id)}
            if classification:
                record["truth"] = names.get(truth, truth)
                record["prediction"] = _python(labels[index])
                if shortest is not None:
                    record["probabilities"] = dict(zip(keys, shortest[index]))
            else:
                record["truth"] = float(truth)
                record["prediction"] = values[index] if values is not None else None
            lines.append(encode(record))
            lines.append("\n")
        yield "".join(lines)


def _python(value: Any) -> Any:
    return value.item() if isinstance(value, np.generic) else value


def write_predictions(path: Path, model: Model, rows: Split, metadata: Metadata, chunk_rows: int = CHUNK_ROWS) -> Path:
    with path.open("w", encoding="utf-8") as out:
        for text in prediction_chunks(model, rows, metadata, chunk_rows):
            out.write(text)
    return path
