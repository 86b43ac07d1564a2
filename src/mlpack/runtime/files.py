"""Input files (JSON Lines, JSON, CSV), streamed in batches, and `predict_file`."""

from __future__ import annotations

import csv
import functools
import json
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Optional, TextIO

from .model import Model
from .values import ABSENT, lookup, to_number

# -- reading input files, streamed ---------------------------------------------------------------
BATCH_RECORDS = 2_000  # records predicted at once from a file: bounded memory, most of the batch speed


@dataclass
class Item:
    """One record of an input file: where it was (line), and the record or why it could not be read."""

    line: int
    record: Any = None
    error: Optional[str] = None


def iter_records(
    stream: TextIO, fmt: str, model: Model, warn: Optional[Callable[[str], None]] = None
) -> Iterator[Item]:
    """Records one at a time from JSON Lines or CSV (streamed), or a JSON document (read whole).

    A CSV header with none of the model's fields is an InputFileError; one that lacks some of them is
    said once to `warn` (those fields are missing in every row)."""
    if fmt == "jsonl":
        return _jsonl_items(stream)
    if fmt == "csv":
        return _csv_items(stream, model, warn)
    if fmt == "json":
        return _json_items(stream)
    raise ValueError(f"unknown input format {fmt!r}: use jsonl, json or csv")


def _jsonl_items(stream: TextIO) -> Iterator[Item]:
    for number, line in enumerate(stream, 1):
        if not line.strip():
            continue
        try:
            yield Item(number, json.loads(line))
        except RecursionError:
            yield Item(number, error="the record is nested too deeply")
        except ValueError as exc:
            yield Item(number, error=f"not valid JSON: {getattr(exc, 'msg', exc)}")


def _json_items(stream: TextIO) -> Iterator[Item]:
    try:
        document = json.load(stream)
    except RecursionError:
        raise InputFileError("JSON nested too deeply to be records") from None
    except ValueError as exc:
        where = f" (line {exc.lineno})" if isinstance(exc, json.JSONDecodeError) else ""
        raise InputFileError(f"not valid JSON: {getattr(exc, 'msg', exc)}{where}") from None
    if isinstance(document, Mapping) and "instances" in document:
        document = document["instances"]
    if isinstance(document, Mapping):
        document = [document]
    if not isinstance(document, list):
        raise InputFileError('expected a record, a list of records or {"instances": [...]}')
    for index, record in enumerate(document):
        yield Item(index + 1, record)  # "line" is the record's position in the document here


def _csv_items(stream: TextIO, model: Model, warn: Optional[Callable[[str], None]]) -> Iterator[Item]:
    numeric = {f.name for f in model.features if f.kind == "numeric"}
    reader = csv.DictReader(stream)
    try:
        header = reader.fieldnames  # reads the header line
    except csv.Error as exc:
        raise InputFileError(f"not a readable CSV file (line {reader.line_num}): {exc}") from None
    if header is not None:  # an empty file has no header, and no rows to predict
        _check_header(model, list(header), warn)
    while True:
        try:
            row = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:  # e.g. a field over the csv module's 128 KiB limit
            raise InputFileError(f"not a readable CSV file (line {reader.line_num}): {exc}") from None
        number = reader.line_num
        record: Dict[str, Any] = {}
        error = None
        for key, text in row.items():
            if key is None:  # more cells than header names
                error = "more values than columns in the header"
                break
            if text is None:  # fewer cells (a cut-off row): its last fields would silently read as missing
                given = sum(value is not None for value in row.values())
                error = f"fewer values ({given}) than columns in the header ({len(row)})"
                break
            if key in numeric:  # the one reading of a number: "NA" and "" are missing, " 54 " is 54
                try:
                    record[key] = to_number(text)
                except ValueError as exc:
                    error = f"field '{key}': {exc}"
                    break
            else:
                record[key] = None if text in ("", None) else text
        yield Item(number, None if error else record, error)


def _check_header(model: Model, header: List[str], warn: Optional[Callable[[str], None]]) -> None:
    """A CSV column is read as the field of its name (a dotted path for a nested field): a header
    naming none of the model's fields would predict every row from imputed values alone."""
    columns = set(header)
    missing = [feature.name for feature in model.features if feature.name not in columns]
    if len(missing) == len(model.features):
        raise InputFileError(
            f"no column of the header is a field the model reads: it reads {_some(missing)}; "
            f"the header has {_some(header)}"
        )
    if missing and warn is not None:
        warn(
            f"the CSV header has no column for {len(missing)} of the model's {len(model.features)} fields, "
            f"read as missing in every row: {_some(missing, 10)}"
        )


def _some(names: Sequence[str], shown: int = 5) -> str:
    """A few names for a message: "a, b, c and 10 more"."""
    # A name that is empty, has spaces around it or invisible characters in it is shown quoted.
    quoted = [name if name and name == name.strip() and name.isprintable() else repr(name) for name in names[:shown]]
    text = ", ".join(quoted)
    return text + (f" and {len(names) - shown} more" if len(names) > shown else "") if names else "no fields"


def _check_shared(model: Model, chunk: List[Item], whole: bool) -> None:
    """Refuse a file whose records share no field with the model (the first batch judges: nothing has
    been written yet). One record without any of them is a record of missing values, predicted as the
    server predicts it; a whole file of them is the wrong file."""
    records = [item.record for item in chunk if item.error is None and isinstance(item.record, Mapping)]
    features = [(feature.name, feature.parts) for feature in model.features]
    for record in records:
        if any(lookup(record, name, parts) is not ABSENT for name, parts in features):
            return
    if not records:  # nothing readable to judge by: each bad record is reported as such
        return
    keys = list(dict.fromkeys(str(key) for record in records[:100] for key in record))
    which = "no record has" if whole else f"none of the first {len(chunk):,} records has"
    raise InputFileError(
        f"{which} a field the model reads: it reads {_some([name for name, _ in features])}; "
        f"the records have {_some(keys)}"
    )


def read_records(stream: TextIO, fmt: str, model: Model) -> List[Any]:
    """Every record of a file at once (small files; predict_file streams instead)."""
    records = []
    for item in iter_records(stream, fmt, model):
        if item.error is not None:
            raise ValueError(f"line {item.line}: {item.error}")
        records.append(item.record)
    return records


def format_of(path: str) -> str:
    suffix = Path(path).suffix.lower()
    return {".jsonl": "jsonl", ".ndjson": "jsonl", ".json": "json", ".csv": "csv"}.get(suffix, "jsonl")


@dataclass
class PredictSummary:
    records: int = 0
    skipped: int = 0


class InputFileError(ValueError):
    """The input file as a whole cannot be read (not UTF-8, broken CSV, a .json document that does not
    parse, is nested too deeply or holds no records): exit 2. A bad record of a readable file is exit 1."""


class RecordError(ValueError):
    """A record of an input file that cannot be predicted: its line and why (the field is named)."""

    def __init__(self, line: int, reason: str) -> None:
        super().__init__(f"line {line}: {reason}")
        self.line, self.reason = line, reason


def predict_file(
    model: Model,
    source: TextIO,
    fmt: str,
    out: TextIO,
    *,
    on_error: str = "fail",
    errors: Optional[TextIO] = None,
    strict: bool = False,
    batch: int = BATCH_RECORDS,
    warn: Optional[Callable[[str], None]] = None,
) -> PredictSummary:
    """One JSON line per input record: the prediction (and probabilities for classifiers), streamed.

    The file is read and predicted `batch` records at a time, so memory stays bounded whatever its
    size. `on_error="fail"` stops at the first bad record (RecordError naming line and field);
    "skip" writes `{"line": N, "error": ...}` in its place (so output line k is still input record k),
    reports it on `errors`, and predicts every other record. A file that shares no field with the model
    is an InputFileError before anything is written; a CSV header lacking some fields is said to `warn`
    (default: a `warning:` line on `errors`).
    """
    if on_error not in ("fail", "skip"):
        raise ValueError(f"on_error must be 'fail' or 'skip', got {on_error!r}")
    summary = PredictSummary()
    if warn is None:
        warn = functools.partial(_warning_line, errors)

    for chunk in _batches(iter_records(source, fmt, model, warn), batch):
        if summary.records == 0 and fmt != "csv":  # a CSV's header was checked before its first row
            _check_shared(model, chunk, whole=len(chunk) < batch)
        for line in _predict_chunk(model, chunk, on_error, strict):
            if "error" in line:
                summary.skipped += 1
                if errors is not None:
                    print(f"line {line['line']}: {line['error']}", file=errors)
            out.write(json.dumps(line) + "\n")
        summary.records += len(chunk)
    return summary


def _warning_line(errors: Optional[TextIO], message: str) -> None:
    if errors is not None:
        print(f"warning: {message}", file=errors)


def _batches(items: Iterable[Item], size: int) -> Iterator[List[Item]]:
    chunk: List[Item] = []
    for item in items:
        chunk.append(item)
        if len(chunk) >= size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def _predict_chunk(model: Model, chunk: List[Item], on_error: str, strict: bool) -> List[Dict[str, Any]]:
    readable = [item for item in chunk if item.error is None and isinstance(item.record, Mapping)]
    if len(readable) == len(chunk):
        try:
            return _answer_lines(model, [item.record for item in chunk], strict)
        except ValueError as exc:
            if on_error == "fail":
                raise _located(exc, chunk) from None
    # Some record is bad: predict one by one to tell the bad from the good (only for this chunk).
    lines = []
    for item in chunk:
        reason = item.error
        if reason is None and not isinstance(item.record, Mapping):
            reason = f"expected an object of fields, got {type(item.record).__name__}"
        if reason is None:
            try:
                lines.extend(_answer_lines(model, [item.record], strict))
                continue
            except ValueError as exc:
                reason = str(exc)
        if on_error == "fail":
            raise RecordError(item.line, reason)
        failed: Dict[str, Any] = {"line": item.line, "error": reason}
        if isinstance(item.record, Mapping) and "_id" in item.record:
            failed["_id"] = item.record["_id"]
        lines.append(failed)
    return lines


def _located(exc: ValueError, chunk: List[Item]) -> RecordError:
    """A batch error says "record i: ..."; the user wants the file's line."""
    text = str(exc)
    if text.startswith("record "):
        head, _, rest = text.partition(": ")
        try:
            return RecordError(chunk[int(head.split()[1])].line, rest)
        except (ValueError, IndexError):
            pass
    return RecordError(chunk[0].line, text)


def _answer_lines(model: Model, records: List[Any], strict: bool) -> List[Dict[str, Any]]:
    labels, probabilities, _ = model.run(records, strict=strict)
    class_names = [str(c) for c in model.classes or []]
    lines = []
    for index, label in enumerate(labels):
        line: Dict[str, Any] = {"prediction": label}
        record = records[index]
        if isinstance(record, Mapping) and "_id" in record:  # the record's key, as read: joins answers back
            line = {"_id": record["_id"], **line}
        if probabilities is not None:
            line["probabilities"] = dict(zip(class_names, probabilities[index]))
        lines.append(line)
    return lines
