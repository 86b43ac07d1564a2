"""HTTP/1.1 request heads by RFC 9112: read whole, checked as strictly as h11.

A test feeds h11 and this module thousands of mutated requests: every one h11 refuses is refused
here too (each a 4xx/5xx naming the problem, and the connection closed).
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Awaitable, Callable
from typing import Any, Dict, List, NamedTuple, Optional, Tuple

from .wire import MAX_DIGITS, header_size


class FramingError(Exception):
    """The request cannot be read as HTTP/1.1: answered, then the connection is closed."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


# RFC 9110/9112 grammar, as strict as h11 (a test feeds both the same mutated requests).
_TOKEN = re.compile(r"[-!#$%&'*+.^_`|~0-9A-Za-z]+")
_VERSION = re.compile(r"HTTP/([0-9])\.([0-9])")
_TARGET = re.compile(r"[\x21-\x7e]+")  # visible ASCII only
_BAD_VALUE = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")  # control characters other than HTAB
MAX_TARGET_BYTES = 8 * 1024
MAX_HEADERS = 100


def take_head(buffer: bytearray, scanned: int, limit: int) -> Tuple[Optional[List[str]], int]:
    """The next request's head from the start of `buffer`, taken out of it: its request line and header
    lines, each without its CRLF. `(None, scanned)` while the head is incomplete; pass `scanned` back
    when more has arrived, so that a head sent a byte at a time costs O(n), not O(n²).

    Found whole with one search for the blank line, instead of one `readuntil` per line: that cost
    ~3.5 us a line, more than the rest of the parsing. Line ends are checked on everything received so
    far, so a request with bare LF line ends is refused at once rather than waited on until the timeout.
    """
    if buffer.startswith(b"\r\n"):
        # RFC 9112 2.2 lets a server skip empty lines before a request; h11 refuses them, and so
        # do we: a stray CRLF after a body is what a miscounted Content-Length leaves behind.
        raise FramingError(400, "an empty line where a request line belongs")
    end = buffer.find(b"\r\n\r\n", max(0, scanned - 3))
    # Up to the blank line; else all received so far but a last CR, whose LF may come next.
    seen = end + 2 if end >= 0 else len(buffer) - buffer.endswith(b"\r")
    if (end + 4 if end >= 0 else len(buffer)) > limit:  # the blank line counts
        raise FramingError(431, "request headers are too large")
    crlf = buffer.count(b"\r\n", scanned, seen)
    if buffer.count(b"\n", scanned, seen) != crlf or buffer.count(b"\r", scanned, seen) != crlf:
        raise FramingError(400, "a request line ends with CRLF, and holds no other CR or LF")
    if end < 0:
        return None, seen
    lines = buffer[:end].decode("latin-1").split("\r\n")
    del buffer[: end + 4]
    if len(lines) > MAX_HEADERS + 1:
        raise FramingError(431, f"more than {MAX_HEADERS} header lines")
    return lines, 0


class Incoming:
    """What a connection has sent that no request has taken yet, for a coroutine that reads it: heads
    and bodies over a buffer shared with whoever fills it.

    `fill()` waits until more has been appended to `buffer` and says whether anything came (False at
    the end of the stream). Given a StreamReader instead, it reads from that into its own buffer.
    """

    CHUNK = 64 * 1024

    def __init__(
        self,
        reader: Optional[asyncio.StreamReader] = None,
        *,
        buffer: Optional[bytearray] = None,
        fill: Optional[Callable[[], Awaitable[bool]]] = None,
    ) -> None:
        self.buffer = bytearray() if buffer is None else buffer
        if fill is None:
            assert reader is not None
            fill = self._reader_fill(reader)
        self.fill = fill

    def _reader_fill(self, reader: asyncio.StreamReader) -> Callable[[], Awaitable[bool]]:
        async def fill() -> bool:
            chunk = await reader.read(self.CHUNK)
            self.buffer += chunk
            return bool(chunk)

        return fill

    async def head(self, limit: int) -> List[str]:
        """The request line and header lines of the next request, each without its CRLF."""
        scanned = 0
        while True:
            lines, scanned = take_head(self.buffer, scanned, limit)
            if lines is not None:
                return lines
            if not await self.fill():
                raise asyncio.IncompleteReadError(bytes(self.buffer), None)

    async def readexactly(self, count: int) -> bytes:
        """The next `count` bytes (a body); IncompleteReadError if the connection ends first."""
        buffer = self.buffer
        while len(buffer) < count:
            if not await self.fill():
                taken = bytes(buffer)
                buffer.clear()
                raise asyncio.IncompleteReadError(taken, count)
        data = bytes(buffer[:count])
        del buffer[:count]
        return data

    async def read(self, count: int) -> bytes:
        """Up to `count` bytes, as soon as any are there; b"" at the end of the stream."""
        buffer = self.buffer
        if not buffer and not await self.fill():
            return b""
        data = bytes(buffer[:count])
        del buffer[:count]
        return data


def parse_head(lines: List[str]) -> Tuple[str, str, str, Dict[str, str]]:
    """Method, request target, version and headers (names in lower case), checked by RFC 9112.

    A client sends the same request line and header lines request after request; each line checked
    once is remembered (`_SEEN_REQUESTS`, `_SEEN_FIELDS`; short lines only, cleared when full), which takes the regular
    expressions, ~2/3 of this function's cost, off the path of every later request. Only lines that
    passed every check are remembered, and checking is a function of the line alone, so a bad line
    is refused exactly as before, in the same order.
    """
    request = _SEEN_REQUESTS.get(lines[0])
    if request is None:
        request = _request_line(lines[0])
        _remember(_SEEN_REQUESTS, lines[0], request)
    seen = _SEEN_FIELDS
    method, target, version = request
    headers: Dict[str, str] = {}
    for line in lines[1:]:
        field = seen.get(line)
        if field is None:
            field = _header_line(line)
            _remember(seen, line, field)
        key, value = field
        if key in headers:
            if key == "host":
                raise FramingError(400, "more than one Host header")
            value = f"{headers[key]}, {value}"  # RFC 9110 5.3: repeated fields are one list
        headers[key] = value
    if version == "HTTP/1.1" and "host" not in headers:
        raise FramingError(400, "an HTTP/1.1 request needs a Host header")
    return method, target, version, headers


# Line -> what it was read as, for lines that passed the checks; request lines apart from header
# lines, as one text can be both ("GET http://h/ HTTP/1.1" is a valid request line, a bad header line).
_SEEN_REQUESTS: Dict[str, Tuple[str, str, str]] = {}
_SEEN_FIELDS: Dict[str, Tuple[str, str]] = {}
_SEEN_LINES = 512
_SEEN_LINE_CHARS = 256  # longer lines are checked every time: the memory stays ~300 KiB at most


def _remember(seen: Dict[str, Any], line: str, parsed: Tuple[str, ...]) -> None:
    if len(line) <= _SEEN_LINE_CHARS:
        if len(seen) >= _SEEN_LINES:
            seen.clear()  # many distinct lines (e.g. changing cookies): start over rather than grow
        seen[line] = parsed


def _request_line(line: str) -> Tuple[str, str, str]:
    parts = line.split(" ")
    if len(parts) != 3 or not _TOKEN.fullmatch(parts[0]):
        raise FramingError(400, "malformed request line: expected METHOD SP TARGET SP HTTP/1.1")
    method, target, version = parts
    match = _VERSION.fullmatch(version)
    if match is None:
        raise FramingError(400, f"malformed HTTP version {version[:20]!r}")
    if version not in ("HTTP/1.1", "HTTP/1.0"):
        raise FramingError(505, f"{version} is not supported: use HTTP/1.1")
    if len(target) > MAX_TARGET_BYTES:
        raise FramingError(414, f"the request target is over {MAX_TARGET_BYTES} bytes")
    if not _TARGET.fullmatch(target):
        raise FramingError(400, "malformed request target")
    return method, _origin_form(target), version


def _header_line(line: str) -> Tuple[str, str]:
    name, colon, value = line.partition(":")
    if not colon or not _TOKEN.fullmatch(name):
        problem = "obsolete line folding" if line[:1] in (" ", "\t") else "malformed header line"
        raise FramingError(400, problem)
    value = value.strip(" \t")
    if _BAD_VALUE.search(value):
        raise FramingError(400, f"control character in header {name[:40]}")
    return name.lower(), value


def _origin_form(target: str) -> str:
    """`http://host/path?q` (absolute form, which servers must accept) as `/path?q`."""
    if target.startswith(("http://", "https://")):
        rest = target.split("//", 1)[1]
        slash = min((i for i in (rest.find("/"), rest.find("?")) if i >= 0), default=len(rest))
        path = rest[slash:]
        return path if path.startswith("/") else "/" + path
    return target


class Waiting(NamedTuple):
    """A request whose head is read and whose body has to be waited for (connection.py: `Connection.slow`)."""

    method: str
    path: str
    query: str
    version: str
    headers: Dict[str, str]
    length: int
    keep_alive: bool


Head = Tuple[str, str, str, Dict[str, str], Optional[int]]  # method, target, version, headers, Content-Length


def next_head(buffer: bytearray, scanned: int, limit: int) -> Tuple[Optional[Head], int]:
    """`take_head`, `parse_head` and `body_length` in one: the next request's head taken out of
    `buffer` and read, or `(None, scanned)` while it is incomplete; FramingError as they raise it.

    What the three make of a head is a function of its bytes alone (the checks of its line ends, its
    size, each line, the length), and a client sends the same head request after request: so a head
    that came whole and was read before, byte for byte, is taken from `_SEEN_HEADS` (~3 of its 3.5 us;
    short heads only, cleared when full). Only heads that passed every check are remembered, so a bad
    one is refused as before. Their headers dicts are shared: nothing that reads a request changes them.
    """
    key = None
    if scanned == 0:
        end = buffer.find(b"\r\n\r\n", 0, _SEEN_HEAD_BYTES)
        if end > 0 and end + 4 <= limit:
            key = bytes(buffer[: end + 4])
            head = _SEEN_HEADS.get(key)
            if head is not None:
                del buffer[: end + 4]
                return head, 0
    lines, scanned = take_head(buffer, scanned, limit)
    if lines is None:
        return None, scanned
    method, target, version, headers = parse_head(lines)
    head = (method, target, version, headers, body_length(headers))
    if key is not None:
        if len(_SEEN_HEADS) >= _SEEN_LINES:
            _SEEN_HEADS.clear()  # many distinct heads: start over rather than grow
        _SEEN_HEADS[key] = head
    return head, 0


_SEEN_HEADS: Dict[bytes, Head] = {}
_SEEN_HEAD_BYTES = 1024  # longer heads are read every time: the memory stays ~1 MiB at most


def body_length(headers: Dict[str, str]) -> Optional[int]:
    """The body's length from Content-Length (None: no body); Transfer-Encoding is not taken."""
    encoding = headers.get("transfer-encoding")
    if encoding is not None:
        if "content-length" in headers:
            raise FramingError(400, "both Transfer-Encoding and Content-Length: the length is ambiguous")
        if encoding.lower() == "chunked":
            raise FramingError(411, "send the body with a Content-Length, not chunked")
        raise FramingError(501, f"Transfer-Encoding {encoding[:40]!r} is not supported")
    text = headers.get("content-length")
    if text is None:
        return None
    values = {value.strip(" \t") for value in text.split(",")}
    if len(values) != 1:
        raise FramingError(400, "conflicting Content-Length headers")
    value = values.pop()
    length = header_size(value)
    if length is None:
        if value.isascii() and value.isdigit():  # digits, too many: no body is that large
            raise FramingError(400, f"Content-Length of {len(value)} digits: at most {MAX_DIGITS} are taken")
        raise FramingError(400, f"bad Content-Length {value[:40]!r}")
    return length


__all__ = ["FramingError", "Head", "Incoming", "Waiting", "body_length", "next_head", "parse_head", "take_head"]
