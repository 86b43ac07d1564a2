"""The test split's predictions, for error analysis: `NAME-VERSION.predictions.jsonl`.

One JSON line per test document, in the order the split holds them: its `_id` (Extended JSON, as
mongoexport writes it, so `{"_id": ...}` finds the document again), the true value, the prediction
and, for a classifier with probabilities, the probability of each class. The predictions are the
exported ONNX model's, run through the runtime the wheel ships. Nothing else of the training data is
written: the `_id` is what leads back to a document, in the database that holds it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
from bson import json_util

from mlpack.runtime import Metadata, Model
from mlpack.training.train import Split

_ID_OPTIONS = json_util.JSONOptions(json_mode=json_util.JSONMode.RELAXED, tz_aware=True)


def plain_id(value: Any) -> Any:
    """An `_id` as relaxed Extended JSON: 7 stays 7, an ObjectId is {"$oid": ...}, a date {"$date": ...}."""
    return json.loads(json_util.dumps(value, json_options=_ID_OPTIONS))


def _shortest(value: Any) -> float:
    """A float32 the graph computed, written with the fewest digits that read back as it (0.82, not 0.8199...)."""
    return float(str(np.float32(value)))


def prediction_lines(model: Model, rows: Split, metadata: Metadata) -> list[str]:
    labels, probabilities, _ = model.run(rows.test_columns)
    names = dict(zip(metadata.get("class_codes", []), metadata.get("classes", [])))
    classes = list(metadata.get("classes", []))
    lines = []
    for index, document_id in enumerate(rows.test_ids):
        truth = rows.test_target[index]
        record: dict[str, Any] = {"_id": plain_id(document_id)}
        if metadata["task"] == "classification":
            record["truth"] = names.get(_python(truth), _python(truth))
            record["prediction"] = _python(labels[index])
            if probabilities is not None:
                record["probabilities"] = {
                    json.dumps(name) if not isinstance(name, str) else name: _shortest(p)
                    for name, p in zip(classes, probabilities[index])
                }
        else:
            record["truth"] = float(truth)
            record["prediction"] = _shortest(labels[index])
        lines.append(json.dumps(record, ensure_ascii=False, allow_nan=False))
    return lines


def _python(value: Any) -> Any:
    return value.item() if isinstance(value, np.generic) else value


def write_predictions(path: Path, model: Model, rows: Split, metadata: Metadata) -> Path:
    lines = prediction_lines(model, rows, metadata)
    path.write_text("".join(f"{line}\n" for line in lines), encoding="utf-8")
    return path
