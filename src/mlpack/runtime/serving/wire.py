"""What every layer of the server shares: requests, answers, client errors, JSON in and out.

The bottom of the `serving` package: it imports nothing from the rest of it, so the HTTP framing
(`http.py`) and the routes (`app.py`) can both use it without importing each other. The limits are
`..settings.Limits`, re-exported here.
"""

from __future__ import annotations

import json
import json.decoder
import json.encoder
import json.scanner
import math
from collections.abc import Callable, Mapping
from http import HTTPStatus
from typing import TYPE_CHECKING, Any, Dict, Optional, Tuple, Union

import numpy as np

from ..settings import Limits

if TYPE_CHECKING:
    import asyncio

JSON = "application/json"


class ClientError(Exception):
    """A request the client must change: answered with `status` and a JSON error body."""

    def __init__(self, status: int, message: str, headers: Tuple[Tuple[str, str], ...] = ()) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers


class Request:
    """One parsed request. A plain class with slots, not a frozen dataclass: two of these objects are
    made per request, and a frozen dataclass's `__init__` (object.__setattr__ per field) cost 4x."""

    __slots__ = ("method", "path", "query", "headers", "body")

    def __init__(self, method: str, path: str, query: str, headers: Mapping[str, str], body: Optional[bytes]) -> None:
        self.method = method
        self.path = path
        self.query = query
        self.headers = headers  # names in lower case
        self.body = body  # None: the request had no Content-Length

    def __repr__(self) -> str:
        return f"Request({self.method!r}, {self.path!r}, {self.query!r}, {self.headers!r}, {self.body!r})"


class Response:
    """One answer: status, body, its content type and extra headers, and the records it predicted."""

    __slots__ = ("status", "body", "content_type", "headers", "predictions")

    def __init__(
        self,
        status: int,
        body: bytes,
        content_type: str = JSON,
        headers: Tuple[Tuple[str, str], ...] = (),
        predictions: int = 0,  # records predicted, for mlpack_predictions_total
    ) -> None:
        self.status = status
        self.body = body
        self.content_type = content_type
        self.headers = headers
        self.predictions = predictions

    def __eq__(self, other: object) -> bool:
        if type(other) is not Response:
            return NotImplemented
        return all(getattr(self, name) == getattr(other, name) for name in Response.__slots__)

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"Response({self.status}, {self.body[:80]!r}, {self.content_type!r}, {self.headers!r})"

    @classmethod
    def error(cls, status: int, message: str, headers: Tuple[Tuple[str, str], ...] = ()) -> Response:
        return cls(status, dump_json({"error": message}), JSON, headers)


# What the app answers a request with: the response, or (a prediction queued in a batch) its future.
Answer = Union[Response, "asyncio.Future[Response]"]


# -- answers as bytes ---------------------------------------------------------------------------
KEEP_ALIVE = b"\r\nConnection: keep-alive\r\n\r\n"
CLOSE = b"\r\nConnection: close\r\n\r\n"
_HEADS: Dict[Tuple[int, str], bytes] = {}  # (status, content type) → the head up to the length's digits


def _head(status: int, content_type: str) -> bytes:
    head = _HEADS.get((status, content_type))
    if head is None:
        head = (
            f"HTTP/1.1 {status} {HTTPStatus(status).phrase}\r\nServer: mlpack\r\n"
            f"Content-Type: {content_type}\r\nContent-Length: "
        ).encode("latin-1")
        if len(_HEADS) < 512:  # statuses and content types are the app's own: a few dozen in all
            _HEADS[(status, content_type)] = head
    return head


def render(answer: Response, close: bool, head_only: bool = False) -> bytes:
    """The answer's bytes: a head made once per status and type, the length, its own headers, the body."""
    body = answer.body
    extra = b""
    if answer.headers or answer.status == 503:
        headers = list(answer.headers)
        if answer.status == 503 and all(name != "Retry-After" for name, _ in headers):
            headers.append(("Retry-After", "1"))
        extra = "".join(f"\r\n{name}: {value}" for name, value in headers).encode("latin-1")
    return b"".join(
        (
            _head(answer.status, answer.content_type),
            str(len(body)).encode(),
            extra,
            CLOSE if close else KEEP_ALIVE,
            b"" if head_only else body,  # HEAD: the length, no body
        )
    )


# A size in a header has at most this many digits (10**18 bytes is an exabyte): int() of a longer one
# costs time and raises past 4,300 digits (a 5,000-digit Content-Length once killed its connection's task).
MAX_DIGITS = 18


def header_size(text: str) -> Optional[int]:
    """A header's byte count as an int; None when it is not ASCII digits or has more than MAX_DIGITS."""
    if not (text.isascii() and text.isdigit()):
        return None
    digits = text.lstrip("0")  # leading zeros are allowed and say nothing
    return int(digits or "0") if len(digits) <= MAX_DIGITS else None


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


_scan = json.scanner.make_scanner(json.JSONDecoder())  # type: ignore[arg-type]  # json.loads' own (C) scanner
_space = json.decoder.WHITESPACE.match  # type: ignore[attr-defined]


def _loads(body: bytes) -> Any:
    """`json.loads(body)`: the same value, the same errors. A body that starts with `{` or `[` and
    another byte than NUL is UTF-8 to json.loads (no BOM, not UTF-16/32), so it is decoded and
    scanned here without the Python steps around json's scanner (detect_encoding, decode, raw_decode:
    half of the cost of a one-record body, 3.3 instead of 6.4 us); any other body goes to json.loads."""
    if body[:1] not in (b"{", b"[") or body[1:2] == b"\x00":
        return json.loads(body)
    text = body.decode("utf-8", "surrogatepass")
    try:
        value, end = _scan(text, 0)
    except StopIteration as stop:
        raise json.JSONDecodeError("Expecting value", text, stop.value) from None
    end = _space(text, end).end()
    if end != len(text):
        raise json.JSONDecodeError("Extra data", text, end)
    return value


# -- what a body says it is ---------------------------------------------------------------------------
BINARY = "application/octet-stream"  # the Open Inference Protocol's binary extension (Triton's own examples)
_MEDIA_TYPES: Dict[str, bool] = {}  # Content-Type value -> JSON or not: a client sends the same one each time


def require_json(headers: Mapping[str, str], binary: bool = False) -> None:
    """415 for a body that says it is not JSON: `application/json` or any `application/*+json`, with
    any parameters (`; charset=utf-8`), is; so is a body that says nothing (what tritonclient sends,
    and FastAPI reads such a body as JSON too). `binary`: the body is a JSON header and tensor bytes,
    which the protocol sends as application/octet-stream. curl -d says application/x-www-form-urlencoded
    and fetch() with a string says text/plain: both named in the answer, rather than read as if JSON."""
    value = headers.get("content-type")
    if not value:
        return
    taken = _MEDIA_TYPES.get(value)
    if taken is None:
        kind = value.partition(";")[0].strip().lower()
        taken = kind == "application/json" or (kind.startswith("application/") and kind.endswith("+json"))
        if len(value) <= 256:  # short values only, and never more than 64: the memory stays a few KiB
            if len(_MEDIA_TYPES) >= 64:
                _MEDIA_TYPES.clear()
            _MEDIA_TYPES[value] = taken
    if taken or (binary and value.partition(";")[0].strip().lower() == BINARY):
        return
    got = value.partition(";")[0].strip()[:60] or value[:60]
    wanted = f"{JSON} (or {BINARY} with Inference-Header-Content-Length)" if binary else JSON
    hint = " (curl: -H 'Content-Type: application/json')" if got.lower() == "application/x-www-form-urlencoded" else ""
    raise ClientError(415, f"Content-Type {got!r} is not taken: send the body as {wanted}{hint}", (("Accept", JSON),))


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
    # Each element counted is a byte of its own (a string two), so a body of fewer bytes than
    # max_values holds fewer elements: the usual one-record body skips three of the five passes.
    if len(body) >= max_values:
        strings = body.count(b'"') // 2  # a string costs 50 B or more, whatever its text ("ab" takes 51)
        if openers + strings + body.count(b",") + body.count(b":") >= max_values:
            raise ClientError(413, f"the body holds more than {max_values} JSON values (limit: max_records x 100)")
    if openers > MAX_DEPTH and nesting(body) > MAX_DEPTH:  # fewer openers cannot nest deeper
        raise ClientError(400, f"the body is nested too deeply: arrays and objects more than {MAX_DEPTH} levels")
    try:
        try:
            return _loads(body)
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


def _encoder() -> Callable[[Any], str]:
    """`json.JSONEncoder(allow_nan=False).encode`, the same text. json.dumps with an argument off the
    defaults makes an encoder per call, and `encode` itself makes its C encoder (and a closure) per
    call: that one, made once, writes the same text for less (a one-record answer's labels and
    probabilities: 0.4 and 2.0 us instead of 2.2 and 3.7). No check for circular references: what
    is encoded here comes from json.loads, the runtime's `tolist()` or the app's own dicts."""
    make = getattr(json.encoder, "c_make_encoder", None)
    if make is None:  # pragma: no cover - a Python without the _json accelerator
        return json.JSONEncoder(allow_nan=False).encode
    chunks = make(
        None, json.JSONEncoder().default, json.encoder.encode_basestring_ascii, None, ": ", ", ", False, False, False
    )
    join = "".join
    return lambda document: join(chunks(document, 0))


_encode = _encoder()


def dump_json_text(document: Any) -> str:
    try:
        return _encode(document)  # type: ignore[no-any-return]
    except ValueError:
        return _encode(json_safe(document))  # type: ignore[no-any-return]


def dump_json(document: Any) -> bytes:
    return dump_json_text(document).encode()


__all__ = [
    "Answer",
    "ClientError",
    "Limits",
    "Request",
    "Response",
    "dump_json",
    "dump_json_text",
    "json_safe",
    "header_size",
    "parse_json",
    "render",
    "require_json",
]
