"""What every layer of the server shares: requests, answers, client errors, JSON in and out, limits.

The bottom of the `_serving` package: it imports nothing from the rest of it, so the HTTP framing
(`http.py`) and the routes (`app.py`) can both use it without importing each other.
"""

from __future__ import annotations

import json
import math
import os
import sys
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any, Dict, Optional, Tuple

import numpy as np

DEFAULT_MAX_BODY_BYTES = 10 * 1024 * 1024
# A JSON value costs Python ~25-80 bytes however short its text ("{}," is 3 bytes, a dict 64): a body
# may hold at most this many values per allowed record, counted (by its commas) before it is parsed.
VALUES_PER_RECORD = 100
JSON = "application/json"
# The most one counted element (container, string, comma or colon) was measured to cost once parsed:
# 250,000 {"a":1} took 52.6 MiB for their 1,000,000 elements; 1,000,000 floats 49.8 MiB; lists 40.
VALUE_BYTES = 56
# Bodies up to 64 KiB are parsed on the event loop, one at a time: 64 KiB of "[]," is 44,000 lists.
INLINE_PARSE_BYTES = 4 * 1024 * 1024


class ClientError(Exception):
    """A request the client must change: answered with `status` and a JSON error body."""

    def __init__(self, status: int, message: str, headers: Tuple[Tuple[str, str], ...] = ()) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers


@dataclass(frozen=True)
class Request:
    method: str
    path: str
    query: str
    headers: Mapping[str, str]  # names in lower case
    body: Optional[bytes]  # None: the request had no Content-Length


@dataclass(frozen=True)
class Response:
    status: int
    body: bytes
    content_type: str = JSON
    headers: Tuple[Tuple[str, str], ...] = field(default=())
    predictions: int = 0  # records predicted, for mlpack_predictions_total

    @classmethod
    def error(cls, status: int, message: str, headers: Tuple[Tuple[str, str], ...] = ()) -> Response:
        return cls(status, dump_json({"error": message}), JSON, headers)


@dataclass(frozen=True)
class Limits:
    """What one server process allows; each from the CLI, else the environment, else [serve], else here."""

    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
    max_records: int = 10_000  # records (or v2 rows) in one request
    large_bodies: int = 2  # bodies over 64 KiB read and parsed at once: bounds memory, not requests
    max_connections: int = 4096  # open connections; more wait in the listen backlog
    idle_timeout: float = 60.0  # s: for a request's head or body, or the next request on keep-alive
    write_timeout: float = 30.0  # s: for a client to take an answer (one that never reads is cut off)
    drain_timeout: float = 8.0  # s: SIGTERM waits this long for requests in flight; docker stop waits 10
    log_queue_bytes: int = 0  # the inference log's queue; 0: 1/16 of the memory limit, 4 to 64 MiB

    @property
    def max_values(self) -> int:
        return self.max_records * VALUES_PER_RECORD

    @property
    def worst_case_bytes(self) -> int:
        """The most requests in flight can hold at once beyond the idle process: each large body, its
        copy while it is read, and its parse (VALUE_BYTES per element), plus one inline body's parse."""
        large = 2 * self.max_body_bytes + VALUE_BYTES * self.max_values
        return self.large_bodies * large + INLINE_PARSE_BYTES

    @classmethod
    def resolve(cls, settings: Mapping[str, Any], overrides: Mapping[str, Any]) -> Limits:
        values: Dict[str, Any] = {}
        for spec in fields(cls):
            kind = int if spec.type in ("int", int) else float
            env = f"MLPACK_{spec.name.upper()}"
            for source, raw in (
                (f"--{spec.name.replace('_', '-')}", overrides.get(spec.name)),
                (env, os.environ.get(env) or None),
                (f"[serve].{spec.name}", settings.get(spec.name)),
            ):
                if raw is None:
                    continue
                try:
                    value = kind(raw)
                except (TypeError, ValueError):
                    value = 0
                if not value > 0:  # also NaN
                    print(f"error: {source} must be a positive {kind.__name__}, got {raw!r}", file=sys.stderr)
                    raise SystemExit(2)
                values[spec.name] = value
                break
        return cls(**values)


# A size in a header has at most this many digits (10**18 bytes is an exabyte): int() of a longer one
# costs time and raises past 4,300 digits (a 5,000-digit Content-Length once killed its connection's task).
MAX_DIGITS = 18


def header_size(text: str) -> Optional[int]:
    """A header's byte count as an int; None when it is not ASCII digits or has more than MAX_DIGITS."""
    if not (text.isascii() and text.isdigit()):
        return None
    digits = text.lstrip("0")  # leading zeros are allowed and say nothing
    return int(digits or "0") if len(digits) <= MAX_DIGITS else None


def new_id() -> str:
    """A prediction id: random, so ids from several workers or restarts never collide."""
    return uuid.uuid4().hex


# -- JSON in ------------------------------------------------------------------------------------
class _LongInteger:
    """An integer past Python's digit limit: no feature can take it, and the runtime names the field."""

    def __init__(self, text: str) -> None:
        self.digits = len(text.lstrip("-"))

    def __repr__(self) -> str:
        return f"an integer of {self.digits} digits"

    __str__ = __repr__


def _parse_int(text: str) -> Any:
    try:
        return int(text)
    except ValueError:  # more digits than int_max_str_digits (4,300 by default)
        return _LongInteger(text)


# Deeper than any record needs (documents nest a few levels; MongoDB refuses past 100), and shallow
# enough that a body cannot be mostly containers: a chain of 900 arrays cost 57 KB for its 1.8 KB.
MAX_DEPTH = 64
_STRUCTURE = b'"[]{}'
_NOT_STRUCTURE = bytes(byte for byte in range(256) if byte not in _STRUCTURE)
_STEP = np.zeros(256, dtype=np.int8)
_STEP[list(b"[{")], _STEP[list(b"]}")] = 1, -1
_SCAN_CHUNK = 1 << 16  # bytes of structure scanned at once: 1 MB of numpy temporaries (1 MiB chunks took 20 MB)


def nesting(body: bytes) -> int:
    """How deep the body's arrays and objects nest, brackets inside strings not counted; no object built."""
    if b"\\" in body:  # escapes first, so that only real quotes open and close strings
        body = body.replace(b"\\\\", b"").replace(b'\\"', b"")
    structure = body.translate(None, _NOT_STRUCTURE)  # quotes and brackets only: ~5% of a batch's bytes
    deepest, depth, quoted = 0, 0, 0
    view = memoryview(structure)
    for start in range(0, len(structure), _SCAN_CHUNK):
        chars = np.frombuffer(view[start : start + _SCAN_CHUNK], dtype=np.uint8)
        inside = (np.cumsum(chars == 34, dtype=np.int32) + quoted) & 1  # 1 within a string
        levels = np.cumsum(_STEP[chars] * (inside == 0), dtype=np.int32) + depth
        deepest, depth, quoted = max(deepest, int(levels.max())), int(levels[-1]), int(inside[-1])
    return deepest


def parse_json(body: Optional[bytes], max_values: int) -> Any:
    """The body as Python values, once its cost is known to be bounded (README: "What a body may cost").

    Counted before a single object is built: parsed JSON costs Python 10-60x its text in a container
    (56-64 B for "[]," or "{},"), so elements, i.e. containers, commas and colons, are at most
    `max_values`, and nesting at most MAX_DEPTH (a 10 MiB body of arrays 900 deep once took RSS from
    71 to 585 MB; 12 bodies of "[{},{},...]" to 1.8 GB). Brackets and commas in strings count too:
    never fewer elements than there are, so the bound holds whatever the strings hold.
    """
    if body is None:
        raise ClientError(411, "a Content-Length header is required")
    openers = body.count(b"[") + body.count(b"{")
    strings = body.count(b'"') // 2  # a string costs 50 B or more, whatever its text ("ab" takes 51)
    if openers + strings + body.count(b",") + body.count(b":") >= max_values:
        raise ClientError(413, f"the body holds more than {max_values} JSON values (limit: max_records x 100)")
    if openers > MAX_DEPTH and nesting(body) > MAX_DEPTH:  # fewer openers cannot nest deeper
        raise ClientError(400, f"the body is nested too deeply: arrays and objects more than {MAX_DEPTH} levels")
    try:
        try:
            return json.loads(body)
        except ValueError as exc:
            if type(exc) is not ValueError:  # JSONDecodeError, UnicodeDecodeError: the body is bad
                raise
            # An integer too long to convert: parse again, keeping it for the runtime to name the field.
            return json.loads(body, parse_int=_parse_int)
    except ValueError as exc:  # JSONDecodeError or bad UTF-8
        raise ClientError(400, f"the body is not valid JSON: {exc}") from None
    except RecursionError:
        raise ClientError(400, "the body is nested too deeply") from None


# -- JSON out -----------------------------------------------------------------------------------
def json_safe(value: Any) -> Any:
    """Floats that JSON cannot carry (NaN, inf) as null, so every answer is valid JSON."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, list):
        return [json_safe(v) for v in value]
    if isinstance(value, dict):
        return {key: json_safe(item) for key, item in value.items()}
    return value


def dump_json(document: Any) -> bytes:
    try:
        return json.dumps(document, allow_nan=False).encode()
    except ValueError:
        return json.dumps(json_safe(document), allow_nan=False).encode()


__all__ = [
    "ClientError",
    "Limits",
    "Request",
    "Response",
    "dump_json",
    "json_safe",
    "header_size",
    "new_id",
    "parse_json",
]
