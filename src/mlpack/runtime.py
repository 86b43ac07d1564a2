"""The model runtime: records → ONNX feeds → predictions, with onnxruntime and numpy only.

This file is copied verbatim into every model wheel (as `_runtime.py`), so it imports nothing
from mlpack and nothing beyond the standard library, numpy and onnxruntime. mlpack itself uses it
for `mlpack predict` and for the parity check, so the code that is verified at build time is the
code that runs in production.

Hot path: plain lists and one `np.array` per input; no pandas, no per-value Python checks unless
numpy's own conversion shows the values need them.
"""

from __future__ import annotations

import argparse
import csv
import datetime as _dt
import json
import math
import os
import re
import sys
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

import numpy as np

MISSING_CATEGORY = "__missing__"  # what a missing categorical becomes, in training and here alike
_ABSENT = object()
_NUMERIC_KINDS = frozenset("fiu")
_FLOAT32_MAX = float(np.finfo(np.float32).max)


@dataclass(frozen=True)
class Feature:
    name: str  # the document path, e.g. "billing.monthly_charges"
    input: str  # the ONNX input it feeds, e.g. "billing_monthly_charges"
    kind: str  # "numeric" or "categorical"
    parts: tuple[str, ...]

    @classmethod
    def from_metadata(cls, entry: Mapping[str, Any]) -> Feature:
        return cls(entry["name"], entry["input"], entry["kind"], tuple(entry["name"].split(".")))

    @classmethod
    def from_input(cls, entry: Mapping[str, Any]) -> Feature:
        """An entry of the metadata's `inputs`: {"name": ONNX input, "path": document path, "type", "kind"}."""
        return cls(entry["path"], entry["name"], entry["kind"], tuple(entry["path"].split(".")))


def _lookup(record: Mapping[str, Any], feature: Feature) -> Any:
    """A field by dotted key ("billing.method") or by nested path ({"billing": {"method": ...}})."""
    value = record.get(feature.name, _ABSENT)
    if value is not _ABSENT or len(feature.parts) == 1:
        return value
    value = record
    for part in feature.parts:
        if not isinstance(value, Mapping):
            return _ABSENT
        value = value.get(part, _ABSENT)
        if value is _ABSENT:
            return _ABSENT
    return value


def _record_values(records: Sequence[Mapping[str, Any]], feature: Feature) -> list[Any]:
    """One feature's values across records; the comprehensions are the fast path for 20k records."""
    parts = feature.parts
    try:
        if len(parts) == 1:
            return [record[feature.name] for record in records]
        if len(parts) == 2:
            outer, inner = parts
            return [record[outer][inner] for record in records]
    except (KeyError, TypeError, IndexError):
        pass  # dotted keys, gaps or odd shapes: the careful path below sorts them out
    values = [_lookup(record, feature) for record in records]
    if _ABSENT in values:
        index = values.index(_ABSENT)
        where = f"record {index}: " if len(records) > 1 else ""
        raise ValueError(f"{where}missing field '{feature.name}'")
    return values


def _is_listlike(value: Any) -> bool:
    return isinstance(value, (list, tuple)) or (isinstance(value, np.ndarray) and value.ndim == 1)


def _numeric_input(feature: Feature, values: Sequence[Any]) -> np.ndarray:
    try:
        array = np.asarray(values)
    except (ValueError, TypeError):  # ragged nesting, e.g. a list among numbers
        array = np.empty(0, dtype=object)
    if (
        array.dtype.kind not in _NUMERIC_KINDS
        or array.ndim != 1
        or len(array) != len(values)
        or bool((np.abs(array) > _FLOAT32_MAX).any())  # inf, or past float32; NaN compares False: missing
        or bool in map(type, values)  # True/False are not numbers, even among numbers (np.asarray says 1.0)
    ):
        # Rare path: None mixed with numbers (imputed), or a real mistake to name.
        converted = []
        for index, value in enumerate(values):
            where = f" (record {index})" if len(values) > 1 else ""
            if value is None:
                converted.append(math.nan)
            elif isinstance(value, (int, float, np.number)) and not isinstance(value, (bool, np.bool_, np.str_)):
                try:
                    number = float(value)
                except OverflowError:
                    raise ValueError(f"field '{feature.name}': {str(value)[:20]}... is too large a number") from None
                if abs(number) > _FLOAT32_MAX:
                    raise ValueError(f"field '{feature.name}'{where}: {value!r} is not a finite float32 number")
                converted.append(number)
            else:
                raise ValueError(f"field '{feature.name}'{where}: expected a number, got {value!r}")
        array = np.array(converted)
    return array.astype(np.float32, copy=False).reshape(-1, 1)


def _category(feature: Feature, value: Any) -> str:
    if value is None or (isinstance(value, float) and value != value):
        return MISSING_CATEGORY
    if isinstance(value, (Mapping, list, tuple, np.ndarray)):
        raise ValueError(f"field '{feature.name}': expected a category (string or number), got {value!r}")
    try:
        return str(value)
    except ValueError:  # an integer too long to print (Python's int_max_str_digits)
        raise ValueError(f"field '{feature.name}': the value is too long for a category") from None


def _categorical_input(feature: Feature, values: Sequence[Any]) -> np.ndarray:
    strings = [value if type(value) is str else _category(feature, value) for value in values]
    return np.array(strings, dtype=object).reshape(-1, 1)


def _date_input(feature: Feature, values: Sequence[Any]) -> np.ndarray:
    """Dates as int64 milliseconds since 1970 UTC, the graph's date input (MISSING_DATE = missing)."""
    if isinstance(values, np.ndarray) and values.dtype == np.int64:  # columns already in the graph's form
        return values.reshape(-1, 1)
    milliseconds = []
    for index, value in enumerate(values):
        try:
            milliseconds.append(date_milliseconds(value))
        except ValueError as exc:
            where = f" (record {index})" if len(values) > 1 else ""
            raise ValueError(f"field '{feature.name}'{where}: {exc}") from None
    return np.array(milliseconds, dtype=np.int64).reshape(-1, 1)


def _text_input(feature: Feature, values: Sequence[Any]) -> np.ndarray:
    texts = []
    for index, value in enumerate(values):
        if value is None or (isinstance(value, float) and value != value):
            texts.append("")
        elif isinstance(value, str):
            texts.append(value)
        else:
            where = f" (record {index})" if len(values) > 1 else ""
            raise ValueError(f"field '{feature.name}'{where}: expected text, got {value!r}")
    return np.array(texts, dtype=object).reshape(-1, 1)


_INPUTS = {
    "numeric": _numeric_input,
    "categorical": _categorical_input,
    "datetime": _date_input,
    "text": _text_input,
}


class Model:
    """One ONNX model with its mlpack metadata; the onnxruntime session is created on first use."""

    def __init__(self, model: bytes | str | os.PathLike[str], metadata: Mapping[str, Any]) -> None:
        self._model = model if isinstance(model, bytes) else os.fspath(model)
        self.metadata: dict[str, Any] = dict(metadata)
        self.name: str = self.metadata["name"]
        self.version: str = self.metadata["version"]
        self.task: str = self.metadata["task"]
        self.classes: list[Any] | None = self.metadata.get("classes")
        # A classifier without class probabilities (LinearSVC) says so; older models always had them.
        self.probabilities: bool = self.task == "classification" and self.metadata.get("probabilities", True)
        # What the graph is fed: every input (derived features' fields, dates, text), or for models
        # built before `inputs` existed, the features.
        inputs = self.metadata.get("inputs")
        if inputs:
            self.features = [Feature.from_input(entry) for entry in inputs]
        else:
            self.features = [Feature.from_metadata(entry) for entry in self.metadata["features"]]
        self._session: Any = None
        self._lock = threading.Lock()

    @property
    def session(self) -> Any:
        if self._session is None:
            with self._lock:  # many threads may ask at once; only one session is ever built
                if self._session is None:
                    self._session = _new_session(self._model)
        return self._session

    def load(self) -> Model:
        """Create the session now rather than on the first prediction (servers call this at start)."""
        _ = self.session
        return self

    # -- inputs ---------------------------------------------------------------------------------
    def feeds(self, data: Any) -> tuple[dict[str, np.ndarray], bool]:
        """ONNX feeds for one record, a list of records, a dict of columns or a DataFrame.

        Returns the feeds and whether a single record was given (its answer is then not a list).
        """
        columns, single = self._columns(data)
        feeds: dict[str, np.ndarray] = {}
        for feature in self.features:
            values = columns[feature.name]
            feeds[feature.input] = _INPUTS[feature.kind](feature, values)
        return feeds, single

    def _columns(self, data: Any) -> tuple[dict[str, Sequence[Any]], bool]:
        if hasattr(data, "iloc") and hasattr(data, "columns"):  # a pandas DataFrame, without importing pandas
            return self._dataframe_columns(data), False
        if isinstance(data, Mapping):
            if _is_listlike(_lookup(data, self.features[0])):
                return self._column_dict(data), False
            return self._record_columns([data]), True
        if isinstance(data, (list, tuple)):
            if not data:
                raise ValueError("no records given")
            return self._record_columns(data), False
        raise ValueError(f"expected a record (dict), a list of records or a dict of columns, got {type(data).__name__}")

    def _record_columns(self, records: Sequence[Any]) -> dict[str, Sequence[Any]]:
        for index, record in enumerate(records):
            if not isinstance(record, Mapping):
                raise ValueError(f"record {index} is a {type(record).__name__}, not an object of fields")
        return {feature.name: _record_values(records, feature) for feature in self.features}

    def _column_dict(self, data: Mapping[str, Any]) -> dict[str, Sequence[Any]]:
        columns: dict[str, Sequence[Any]] = {}
        length = None
        for feature in self.features:
            values = _lookup(data, feature)
            if values is _ABSENT:
                raise ValueError(f"missing column '{feature.name}'")
            if not _is_listlike(values):
                raise ValueError(f"column '{feature.name}' must be a list of values, got {values!r}")
            if length is None:
                length = len(values)
            elif len(values) != length:
                raise ValueError(f"column '{feature.name}' has {len(values)} values, expected {length}")
            columns[feature.name] = values
        if not length:
            raise ValueError("no records given")
        return columns

    def _dataframe_columns(self, frame: Any) -> dict[str, Sequence[Any]]:
        if len(frame) == 0:
            raise ValueError("no records given")
        columns: dict[str, Sequence[Any]] = {}
        for feature in self.features:
            if feature.name not in frame.columns:
                raise ValueError(f"missing column '{feature.name}'")
            values = frame[feature.name].tolist()
            columns[feature.name] = values
        return columns

    # -- outputs --------------------------------------------------------------------------------
    def run(
        self, data: Any, observe: Callable[[dict[str, np.ndarray], list[Any]], object] | None = None
    ) -> tuple[list[Any], list[list[float]] | None, bool]:
        """Labels (or values), class probabilities (classification) and whether one record came in.

        `observe(feeds, labels)`, when given, sees the inputs exactly as the model read them (the
        server's drift window counts them there rather than reading the records a second time).
        """
        feeds, single = self.feeds(data)
        outputs = self.session.run(None, feeds)
        if self.task == "classification":
            labels, probabilities = outputs[0].tolist(), outputs[1].tolist() if self.probabilities else None
        else:
            labels, probabilities = outputs[0].ravel().tolist(), None
        if observe is not None:
            observe(feeds, labels)
        return labels, probabilities, single

    def predict(self, data: Any) -> Any:
        """One label (or value) for one record; a list for records, columns or a DataFrame."""
        labels, _, single = self.run(data)
        return labels[0] if single else labels

    def predict_batches(self, frames: Iterable[Any]) -> Iterator[Any]:
        """pandas DataFrames in, each with `prediction` (and `probabilities`) columns added, out.

        The shape of Spark's `mapInPandas` and, one frame at a time, Dask's `map_partitions`. A
        feature is read from its dotted column ("billing.method") or from a column of sub-documents
        ("billing", as Spark hands over structs). Frames are never concatenated: memory stays one batch.
        """
        for frame in frames:
            if len(frame) == 0:  # Spark sends empty batches; they keep their shape
                empty: dict[str, list[Any]] = {"prediction": []}
                if self.task == "classification":
                    empty["probabilities"] = []
                yield frame.assign(**empty)
                continue
            labels, probabilities, _ = self.run(self._frame_columns(frame))
            added: dict[str, list[Any]] = {"prediction": labels}
            if probabilities is not None:
                added["probabilities"] = probabilities
            yield frame.assign(**added)

    def _frame_columns(self, frame: Any) -> dict[str, Sequence[Any]]:
        columns: dict[str, Sequence[Any]] = {}
        for feature in self.features:
            if feature.name in frame.columns:
                columns[feature.name] = frame[feature.name].tolist()
            elif feature.parts[0] in frame.columns:
                rest = Feature(".".join(feature.parts[1:]), feature.input, feature.kind, feature.parts[1:])
                outer = frame[feature.parts[0]].tolist()
                columns[feature.name] = [None if v is None else _lookup(v, rest) for v in outer]
                if _ABSENT in columns[feature.name]:
                    raise ValueError(f"missing field '{feature.name}'")
            else:
                raise ValueError(f"missing column '{feature.name}'")
        return columns

    def predict_proba(self, data: Any) -> Any:
        """Class probabilities in the order of `classes`: one row per record."""
        if self.task != "classification":
            raise ValueError(f"{self.name} is a regression model: it has no class probabilities")
        if not self.probabilities:
            estimator = self.metadata.get("estimator", {}).get("class", "its estimator")
            raise ValueError(f"{self.name} gives labels only: {estimator} has no class probabilities")
        _, probabilities, single = self.run(data)
        assert probabilities is not None
        return probabilities[0] if single else probabilities


def _new_session(model: bytes | str) -> Any:
    import onnxruntime  # imported here so `import model_package` stays cheap until the first prediction

    options = onnxruntime.SessionOptions()
    threads = os.environ.get("MLPACK_THREADS")
    if threads:
        options.intra_op_num_threads = int(threads)
    options.log_severity_level = 3
    return onnxruntime.InferenceSession(model, options, providers=["CPUExecutionProvider"])


def read_onnx_metadata(model: bytes | str | os.PathLike[str]) -> dict[str, Any]:
    """The mlpack metadata stored in an ONNX file's metadata_props (each value JSON-encoded)."""
    session = _new_session(model if isinstance(model, bytes) else os.fspath(model))
    props = session.get_modelmeta().custom_metadata_map
    if "mlpack.metadata" not in props:
        raise ValueError("this ONNX file has no mlpack metadata (was it built by mlpack?)")
    return dict(json.loads(props["mlpack.metadata"]))


# -- reading input files ------------------------------------------------------------------------
def read_records(stream: TextIO, fmt: str, model: Model) -> list[Any]:
    """Records from JSON Lines, a JSON document (record, list, or {"instances": [...]}) or CSV."""
    if fmt == "jsonl":
        records = []
        for number, line in enumerate(stream, 1):
            if line.strip():
                try:
                    records.append(json.loads(line))
                except json.JSONDecodeError as exc:
                    raise ValueError(f"line {number}: not valid JSON: {exc.msg}") from None
        return records
    if fmt == "json":
        try:
            document = json.load(stream)
        except json.JSONDecodeError as exc:
            raise ValueError(f"not valid JSON: {exc.msg} (line {exc.lineno})") from None
        if isinstance(document, Mapping) and "instances" in document:
            document = document["instances"]
        if isinstance(document, Mapping):
            return [dict(document)]
        if not isinstance(document, list):
            raise ValueError('expected a record, a list of records or {"instances": [...]}')
        return document
    if fmt == "csv":
        return _csv_records(stream, model)
    raise ValueError(f"unknown input format {fmt!r}: use jsonl, json or csv")


def _csv_records(stream: TextIO, model: Model) -> list[dict[str, Any]]:
    numeric = {f.name for f in model.features if f.kind == "numeric"}
    records = []
    for number, row in enumerate(csv.DictReader(stream), 2):
        record: dict[str, Any] = {}
        for key, text in row.items():
            if key in numeric:
                try:
                    record[key] = float(text) if text not in ("", None) else None
                except ValueError:
                    raise ValueError(f"line {number}: field '{key}': expected a number, got {text!r}") from None
            else:
                record[key] = None if text == "" else text
        records.append(record)
    return records


def format_of(path: str) -> str:
    suffix = Path(path).suffix.lower()
    return {".jsonl": "jsonl", ".ndjson": "jsonl", ".json": "json", ".csv": "csv"}.get(suffix, "jsonl")


def predict_file(model: Model, source: TextIO, fmt: str, out: TextIO, *, batch: int = 10_000) -> int:
    """Write one JSON line per input record: the prediction, and probabilities for classifiers."""
    records = read_records(source, fmt, model)
    for start in range(0, len(records), batch):
        chunk = records[start : start + batch]
        labels, probabilities, _ = model.run(chunk)
        for index, label in enumerate(labels):
            line: dict[str, Any] = {"prediction": label}
            if probabilities is not None:
                line["probabilities"] = dict(zip(map(str, model.classes or []), probabilities[index]))
            out.write(json.dumps(line) + "\n")
    return len(records)


def main(model: Model, argv: Sequence[str] | None = None, prog: str | None = None, server: Any = None) -> int:
    """`python -m MODEL predict --input FILE` (and `serve`, given the server module): the model's CLI."""
    parser = argparse.ArgumentParser(prog=prog or model.name, description=f"{model.name} {model.version}")
    commands = parser.add_subparsers(dest="command", required=True)
    predict = commands.add_parser("predict", help="predict for a JSON Lines, JSON or CSV file ('-' = stdin)")
    predict.add_argument("--input", "-i", required=True)
    predict.add_argument("--format", choices=["jsonl", "json", "csv"], help="default: from the file's suffix")
    predict.add_argument("--output", "-o", default="-", help="JSON Lines output file (default: stdout)")
    commands.add_parser("info", help="print the model's metadata")
    if server is not None:
        serve = commands.add_parser("serve", help="serve predictions over HTTP")
        server.add_serve_arguments(serve)
    args = parser.parse_args(argv)
    if args.command == "serve":
        return int(server.serve_args(model, args))
    if args.command == "info":
        print(json.dumps(model.metadata, indent=2))
        return 0
    fmt = args.format or format_of(args.input)
    try:
        source: TextIO = sys.stdin if args.input == "-" else open(args.input, encoding="utf-8", newline="")
    except OSError as exc:
        print(f"error: cannot read {args.input}: {exc.strerror}", file=sys.stderr)
        return 2
    try:
        with source, _open_output(args.output) as out:
            predict_file(model, source, fmt, out)
    except ValueError as exc:
        print(f"error: {args.input}: {exc}", file=sys.stderr)
        return 1
    return 0


class _open_output:
    def __init__(self, path: str) -> None:
        self.path = path
        self.stream: TextIO | None = None

    def __enter__(self) -> TextIO:
        self.stream = sys.stdout if self.path == "-" else open(self.path, "w", encoding="utf-8")
        return self.stream

    def __exit__(self, *exc: object) -> None:
        if self.stream is not None and self.stream is not sys.stdout:
            self.stream.close()


# -- dates ----------------------------------------------------------------------------------------
# A date enters the graph as int64 milliseconds since 1970 UTC (BSON's own representation); a
# missing one as the smallest int64, since int64 has no NaN.
MISSING_DATE = -(2**63)
_EPOCH = _dt.datetime(1970, 1, 1, tzinfo=_dt.timezone.utc)
_ONE_MS = _dt.timedelta(milliseconds=1)
_ISO_FRACTION = re.compile(r"(\.\d+)")


def date_milliseconds(value: Any) -> int:
    """A date as milliseconds since 1970 UTC: a datetime (naive = UTC), an ISO 8601 string, or
    Extended JSON {"$date": ...}; None or NaN is MISSING_DATE. Anything else is a ValueError."""
    if value is None or (isinstance(value, float) and value != value):
        return MISSING_DATE
    if isinstance(value, _dt.datetime):
        moment = value if value.tzinfo is not None else value.replace(tzinfo=_dt.timezone.utc)
        return (moment - _EPOCH) // _ONE_MS
    if isinstance(value, _dt.date):
        return (_dt.date(value.year, value.month, value.day) - _EPOCH.date()).days * 86_400_000
    if isinstance(value, str):
        return date_milliseconds(_parse_iso(value))
    if isinstance(value, Mapping) and set(value) == {"$date"}:
        inner = value["$date"]
        if isinstance(inner, Mapping) and set(inner) == {"$numberLong"}:  # canonical Extended JSON
            inner = inner["$numberLong"]
            if isinstance(inner, str) and re.fullmatch(r"-?\d+", inner):
                return int(inner)
        elif isinstance(inner, int) and not isinstance(inner, bool):  # legacy Extended JSON
            return inner
        elif isinstance(inner, str):  # relaxed Extended JSON
            return date_milliseconds(_parse_iso(inner))
    raise ValueError(f'expected a date (a datetime, an ISO 8601 string or {{"$date": ...}}), got {value!r}')


def _parse_iso(text: str) -> _dt.datetime:
    """ISO 8601 with Python 3.9's fromisoformat: 'Z' and fractions of any length are normalised first."""
    cleaned = text.strip()
    if cleaned[-1:] in ("Z", "z"):
        cleaned = cleaned[:-1] + "+00:00"
    cleaned = _ISO_FRACTION.sub(lambda m: (m.group(1) + "000000")[:7], cleaned, count=1)
    try:
        if len(cleaned) == 10:
            return _dt.datetime.combine(_dt.date.fromisoformat(cleaned), _dt.time())
        return _dt.datetime.fromisoformat(cleaned)
    except ValueError:
        raise ValueError(f"expected a date, got {text!r} (not ISO 8601, e.g. 2024-05-01T12:00:00Z)") from None


__all__ = [
    "MISSING_CATEGORY",
    "MISSING_DATE",
    "date_milliseconds",
    "Feature",
    "Model",
    "main",
    "predict_file",
    "read_onnx_metadata",
    "read_records",
]
