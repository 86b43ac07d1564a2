"""Messy documents and the per-document reading they are held to (tests/test_columns.py, test_id_order.py).

The old loader read each document with the runtime's `lookup` and kept Python lists; the columnar loader
must give the same columns, value for value and bit for bit.
"""

from __future__ import annotations

import datetime as dt
import math
import random
import struct
from typing import Any

from bson import ObjectId
from bson.decimal128 import Decimal128
from bson.int64 import Int64

from mlpack.config import FeaturesSection
from mlpack.errors import DataError
from mlpack.runtime import ABSENT, lookup
from mlpack.source import RawColumns
from mlpack.source.columns import Column
from mlpack.validate import Dataset, validate

UTC = dt.UTC
PATHS = ["n", "f", "c", "when", "label", "a.b", "a.c.d", "dotted.key", "text", "gone"]


def old_columns(documents: list[dict[str, Any]], paths: list[str]) -> RawColumns:
    """The reading before columns: `lookup` per document and path, into plain lists."""
    raw = RawColumns(values={p: [] for p in paths}, present=dict.fromkeys(paths, 0))  # type: ignore[misc]
    for document in documents:
        raw.ids.append(document.get("_id"))
        for path in paths:
            value = lookup(document, path, tuple(path.split(".")))
            raw.present[path] += value is not ABSENT
            raw.values[path].append(None if value is ABSENT else value)
    return raw


def same(a: Any, b: Any) -> bool:
    """Equal as values, of the same type, and for floats with the same bits (NaN, -0.0)."""
    if type(a) is not type(b):
        return False
    if isinstance(a, float):
        return struct.pack("<d", a) == struct.pack("<d", b)
    if isinstance(a, dt.datetime):
        return a == b and a.tzinfo == b.tzinfo
    return bool(a == b) if not isinstance(a, (list, dict)) else repr(a) == repr(b)


def messy(n: int, seed: int = 11, *, storable: bool = False) -> list[dict[str, Any]]:
    """`storable`: no int past int64, which BSON cannot hold."""
    rng = random.Random(seed)
    naive = dt.datetime(1969, 12, 31, 23, 59, 59, 999000)
    numbers: list[Any] = [
        3,
        -7,
        2.5,
        -0.0,
        math.nan,
        None,
        Int64(2**40),
        Int64(2**62) if storable else 2**70,
        True,
        " 54 ",
        "NA",
        "",
        "1e3",
    ]
    numbers += [{"$numberInt": "3"}, {"$numberDouble": "NaN"}, {"$numberLong": "12"}, Decimal128("4.5"), "abc"]
    categories: list[Any] = ["x", "y", None, 4, 4.0, "4", True, Int64(9), 1.5, math.nan, ObjectId(b"abcdefghijkl")]
    dates: list[Any] = [naive, naive.replace(tzinfo=UTC), dt.datetime(2024, 5, 1, 12), None, "2024-05-01T12:00:00Z"]
    documents = []
    for index in range(n):
        # runs of one type (a batch of them is typed) broken by the odd mixed stretch
        run = (index // 700) % 5
        document: dict[str, Any] = {"_id": index if index % 3 else ObjectId(index.to_bytes(12, "big"))}
        document["n"] = [rng.randint(-5, 5), rng.random(), None, rng.choice(numbers), rng.randint(0, 9)][run]
        document["f"] = rng.choice([rng.gauss(0, 1e6), math.nan, None, -0.0, 1e300 if run == 3 else 1.0])
        document["c"] = [rng.choice("pqr"), rng.randint(0, 40), rng.choice(categories), None, rng.choice("st")][run]
        document["when"] = [naive + dt.timedelta(days=rng.randint(-900, 900)), rng.choice(dates), None][run % 3]
        document["label"] = [rng.random() < 0.5, rng.choice("ab"), rng.randint(0, 2), rng.choice([True, None])][run % 4]
        document["a"] = rng.choice([{"b": rng.random(), "c": {"d": rng.choice(["u", "v"])}}, {"b": None}, 5, None, []])
        if index % 97 == 1:
            document["dotted.key"] = "literal"
        elif run == 2:
            document["dotted"] = {"key": rng.choice(["k1", "k2", None])}
        document["text"] = rng.choice(["free text", None, "more text", 7] if run == 4 else ["t", None])
        if index % 13 == 4:
            del document["n"]
        documents.append(document)
    return documents


def assert_same_columns(new: RawColumns, old: RawColumns) -> None:
    assert new.rows == old.rows
    assert new.present == old.present
    assert all(same(a, b) for a, b in zip(new.ids, old.ids, strict=True))
    for path, values in old.values.items():
        column = new.values[path]
        assert isinstance(column, Column)
        assert len(column) == len(values)
        mismatched = [i for i, (a, b) in enumerate(zip(column, values, strict=True)) if not same(a, b)]
        assert not mismatched, (path, mismatched[:3], [column[i] for i in mismatched[:3]])
        assert all(same(column[i], values[i]) for i in range(0, len(values), 37))  # indexing, across batches


def dataset_fields(dataset: Dataset) -> dict[str, Any]:
    """What a validated dataset holds, comparable with ==."""
    return {
        "numeric": {k: v.tobytes() for k, v in dataset.numeric.items()},
        "categorical": {k: v.tolist() for k, v in dataset.categorical.items()},
        "dates": {k: v.tolist() for k, v in dataset.dates.items()},
        "texts": {k: v.tolist() for k, v in dataset.texts.items()},
        "target": (dataset.target.dtype, dataset.target.tolist(), dataset.target_kind),
        "fingerprint": dataset.fingerprint,
        "warnings": dataset.warnings,
    }


def validation_outcome(raw: RawColumns, features: FeaturesSection, task: str) -> Any:
    """The dataset validation makes of the columns, or the error it raises."""
    try:
        return dataset_fields(validate(raw, features, task))  # type: ignore[arg-type]
    except DataError as exc:
        return ("DataError", exc.message, exc.details)
