"""HTTP/1.1 framing by RFC 9112 (issue 11): every case the audit sent by raw socket, and h11 as an oracle.

Each bad request is a 4xx/5xx JSON error naming the problem; where the stream can no longer be
trusted the connection is closed; the server never logs an unhandled exception.
"""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Iterator
from typing import Any

import h11
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mlpack.build import BuildResult
from tests.helpers.documents import subscribers
from tests.helpers.http_client import ServerProcess


@pytest.fixture(scope="module")
def server(built_model: BuildResult) -> Iterator[ServerProcess]:
    process = ServerProcess.mlpack(built_model.artifacts["wheel"])
    yield process
    assert process.stop() == 0
    output = process.output()
    assert "Traceback" not in output and "Unhandled" not in output and "exception" not in output.lower(), output


def exchange(port: int, data: bytes, *, timeout: float = 5) -> bytes:
    """Send, half-close, read until the server closes: everything it answered."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(data)
        sock.shutdown(socket.SHUT_WR)
        chunks = []
        try:
            while chunk := sock.recv(65536):
                chunks.append(chunk)
        except ConnectionResetError:
            pass
    return b"".join(chunks)


def answers(raw: bytes) -> list[tuple[int, dict[str, str], bytes]]:
    """Every response in a byte stream (interim 1xx included), as (status, headers, body)."""
    out = []
    while raw:
        head, _, rest = raw.partition(b"\r\n\r\n")
        status_line, *lines = head.decode("latin-1").split("\r\n")
        headers = {}
        for line in lines:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        length = int(headers.get("content-length", "0"))
        out.append((int(status_line.split()[1]), headers, rest[:length]))
        raw = rest[length:]
    return out


BODY = json.dumps({"tenure_months": 3, "support_calls": 1, "contract": "monthly"}).encode()
REQUEST = "POST /predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"

# (name, bytes sent, status, fragment of the error, connection must close)
CASES: list[tuple[str, bytes, int, str, bool]] = [
    (
        "two Content-Length headers",
        (
            REQUEST + "Content-Length: 2\r\nContent-Length: 40\r\n\r\n{}GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"
        ).encode(),
        400,
        "conflicting Content-Length",
        True,
    ),
    ("Content-Length: ²", (REQUEST + "Content-Length: ²\r\n\r\n{}").encode("utf-8"), 400, "bad Content-Length", True),
    ("Content-Length: +2", (REQUEST + "Content-Length: +2\r\n\r\n{}").encode(), 400, "bad Content-Length", True),
    (
        "header line without a colon",
        (REQUEST + "NoColonHere\r\nContent-Length: 2\r\n\r\n{}").encode(),
        400,
        "malformed header",
        True,
    ),
    ("space before the colon", (REQUEST + "Content-Length : 2\r\n\r\n{}").encode(), 400, "malformed header", True),
    (
        "Transfer-Encoding gzip with Content-Length",
        (REQUEST + "Transfer-Encoding: gzip\r\nContent-Length: 2\r\n\r\n{}").encode(),
        400,
        "both Transfer-Encoding and Content-Length",
        True,
    ),
    (
        "Transfer-Encoding identity with Content-Length",
        (REQUEST + "Transfer-Encoding: identity\r\nContent-Length: 2\r\n\r\n{}").encode(),
        400,
        "both Transfer-Encoding and Content-Length",
        True,
    ),
    ("Transfer-Encoding gzip", (REQUEST + "Transfer-Encoding: gzip\r\n\r\n").encode(), 501, "not supported", True),
    (
        "chunked",
        (REQUEST + "Transfer-Encoding: chunked\r\n\r\n2\r\n{}\r\n0\r\n\r\n").encode(),
        411,
        "Content-Length",
        True,
    ),
    ("HTTP/1.1 without Host", b"GET /healthz HTTP/1.1\r\n\r\n", 400, "needs a Host header", True),
    ("two Host headers", b"GET /healthz HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400, "more than one Host", True),
    ("HTTP/1.9", b"GET /healthz HTTP/1.9\r\nHost: x\r\n\r\n", 505, "HTTP/1.9 is not supported", True),
    ("HTTP/2.0", b"GET /healthz HTTP/2.0\r\nHost: x\r\n\r\n", 505, "not supported", True),
    ("version garbage", b"GET /healthz HTTQ/1.1\r\nHost: x\r\n\r\n", 400, "malformed HTTP version", True),
    ("bare LF", b"GET /healthz HTTP/1.1\nHost: x\n\n", 400, "CRLF", True),
    ("bare LF in a header", b"GET /healthz HTTP/1.1\r\nHost: x\nX: y\r\n\r\n", 400, "CRLF", True),
    (
        "obsolete line folding",
        b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-A: b\r\n  folded\r\n\r\n",
        400,
        "line folding",
        True,
    ),
    ("NUL in a header", b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-A: a\x00b\r\n\r\n", 400, "control character", True),
    ("bare CR in a header", b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-A: a\rb\r\n\r\n", 400, "CRLF", True),
    ("target over 8 KiB", b"GET /" + b"a" * 9000 + b" HTTP/1.1\r\nHost: x\r\n\r\n", 414, "over 8192 bytes", True),
    (
        "more than 100 headers",
        b"GET /healthz HTTP/1.1\r\nHost: x\r\n" + b"".join(b"X-%d: y\r\n" % n for n in range(101)) + b"\r\n",
        431,
        "more than 100 header lines",
        True,
    ),
    ("space in the target", b"GET /hea lthz HTTP/1.1\r\nHost: x\r\n\r\n", 400, "malformed request line", True),
    ("non-ASCII target", "GET /é HTTP/1.1\r\nHost: x\r\n\r\n".encode(), 400, "malformed request target", True),
    ("method not a token", b'G"ET /healthz HTTP/1.1\r\nHost: x\r\n\r\n', 400, "malformed request line", True),
    ("unknown method", b"FROB /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", 501, "unknown method", True),
    ("short body", (REQUEST + "Content-Length: 100\r\n\r\n{}").encode(), 400, "body ended", True),
]


@pytest.mark.parametrize(("name", "sent", "status", "fragment", "closes"), CASES, ids=[c[0] for c in CASES])
def test_framing_case(server: ServerProcess, name: str, sent: bytes, status: int, fragment: str, closes: bool) -> None:
    started = time.monotonic()
    raw = exchange(server.port, sent)
    assert time.monotonic() - started < 3, "answered only at a timeout"
    got = answers(raw)
    assert got, f"no answer to {name}"
    code, headers, body = got[0]
    assert code == status, raw[:300]
    assert headers["content-type"] == "application/json" and fragment in json.loads(body)["error"]
    if closes:
        assert headers["connection"] == "close"
        assert len(got) == 1, "a request smuggled behind a bad one was answered"


def test_http_1_0_gets_no_100_continue(server: ServerProcess) -> None:
    raw = exchange(
        server.port,
        b"POST /predict HTTP/1.0\r\nExpect: 100-continue\r\nContent-Length: %d\r\n\r\n" % len(BODY) + BODY,
    )
    statuses = [status for status, _, _ in answers(raw)]
    assert len(statuses) == 1 and statuses[0] in (200, 422)  # the answer alone, no 100 before it


def test_head_is_get_without_a_body(server: ServerProcess) -> None:
    get = answers(exchange(server.port, b"GET /metadata HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"))[0]
    raw = exchange(server.port, b"HEAD /metadata HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    head, _, rest = raw.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200") and rest == b""
    assert f"Content-Length: {len(get[2])}".encode() in head


def test_405_names_the_allowed_methods(server: ServerProcess) -> None:
    status, headers, body = answers(exchange(server.port, b"DELETE /metadata HTTP/1.1\r\nHost: x\r\n\r\n"))[0]
    assert status == 405 and headers["allow"] == "GET, HEAD"
    status, headers, _ = answers(exchange(server.port, b"GET /predict HTTP/1.1\r\nHost: x\r\n\r\n"))[0]
    assert status == 405 and headers["allow"] == "POST"


def test_absolute_form_targets_are_served(server: ServerProcess) -> None:
    raw = exchange(server.port, b"GET http://model.example:8080/healthz HTTP/1.1\r\nHost: model.example\r\n\r\n")
    assert answers(raw)[0][0] == 200


def test_keep_alive_and_pipelining_still_work(server: ServerProcess) -> None:
    one = b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"
    raw = exchange(server.port, one + one + b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    assert [status for status, _, _ in answers(raw)] == [200, 200, 200]
    stray = answers(exchange(server.port, one + b"\r\n" + one))  # h11 refuses the empty line too
    assert [status for status, _, _ in stray] == [200, 400]


def test_half_sent_requests_do_not_delay_healthz(server: ServerProcess) -> None:
    """Issue 11 acceptance: 150 half-sent requests; /healthz still answers within 2 s."""
    stuck = []
    try:
        for n in range(150):
            sock = socket.create_connection(("127.0.0.1", server.port), timeout=5)
            sock.sendall(b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n" if n % 2 else b"GET /hea")
            stuck.append(sock)
        started = time.monotonic()
        assert server.request("GET", "/healthz").status == 200
        assert time.monotonic() - started < 2
    finally:
        for sock in stuck:
            sock.close()


# -- h11 as the oracle -------------------------------------------------------------------------
def h11_accepts(data: bytes) -> bool:
    """Whether h11 reads a whole first request (head and body) from `data` followed by EOF."""
    conn = h11.Connection(h11.SERVER)
    conn.receive_data(data)
    conn.receive_data(b"")
    try:
        while True:
            event = conn.next_event()
            if isinstance(event, h11.EndOfMessage):
                return True
            if event in (h11.NEED_DATA, h11.PAUSED) or isinstance(event, h11.ConnectionClosed):
                return False
    except h11.RemoteProtocolError:
        return False


PIECES = [
    b" ", b"\t", b"\r", b"\n", b"\r\n", b":", b"\x00", b"\x01", b",", b"0", b"9", b"-", b"+", b"\xb2", b"\xff", b"\x7f",
    b"Content-Length: 3\r\n", b"Content-Length: 2\r\n",
    b"Transfer-Encoding: chunked\r\n", b"Transfer-Encoding: gzip\r\n",
    b"Host: y\r\n", b"HTTP/1.0", b"HTTP/1.9", b"GET", b"HEAD", b"http://h/healthz", b"Expect: 100-continue\r\n",
    b"/predict", b"/healthz", b"X-Y: z\r\n", b" a\r\n", b"\r\n\r\n", b"{}", b"a" * 9000,
]  # fmt: skip
RECORD = json.dumps(subscribers(1, seed=3, absent=False)[0]).encode()
BASES = [  # requests the server answers 200: a mutation that h11 refuses must turn that into a refusal
    b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s"
    % (len(RECORD), RECORD),
    b"GET /healthz HTTP/1.1\r\nHost: x\r\nAccept: */*\r\nConnection: close\r\n\r\n",
]


def boundaries(data: bytearray) -> list[int]:
    """Offsets where mutations matter most: around colons, spaces, line ends and digits."""
    return [i + d for i, byte in enumerate(data) if byte in b": \r\n0123456789" for d in (0, 1)] or [0]


@st.composite
def mutated_requests(draw: Any) -> bytes:
    data = bytearray(draw(st.sampled_from(BASES)))
    for _ in range(draw(st.integers(1, 4))):
        at = draw(st.sampled_from(boundaries(data)) | st.integers(0, len(data)))
        op = draw(st.sampled_from(["insert", "delete", "replace", "repeat line"]))
        piece = draw(st.sampled_from(PIECES))
        if op == "insert":
            data[at:at] = piece
        elif op == "delete":
            del data[at : at + draw(st.integers(1, 8))]
        elif op == "replace":
            data[at : at + len(piece)] = piece
        else:  # a header line again, as smuggling attempts do
            start = data.rfind(b"\n", 0, at) + 1
            end = data.find(b"\n", at) + 1 or len(data)
            data[end:end] = data[start:end]
    return bytes(data)


def test_the_oracle_starts_from_requests_both_accept(server: ServerProcess) -> None:
    for base in BASES:
        assert h11_accepts(base) and answers(exchange(server.port, base))[0][0] == 200


@settings(max_examples=2000, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=mutated_requests())
def test_every_request_h11_rejects_mlpack_rejects(server: ServerProcess, data: bytes) -> None:
    if h11_accepts(data):
        return
    got = answers(exchange(server.port, data))
    assert not got or got[0][0] >= 400 or got[0][0] == 100 and (len(got) == 1 or got[1][0] >= 400), (data, got)


# -- the connection's buffer, without a server ----------------------------------------------------
def _head_of(*pieces: bytes, eof: bool = True, then: Any = None) -> Any:
    """Run `Incoming.head` (then `then(incoming)`) on a stream fed `pieces` one chunk per loop turn."""
    import asyncio

    from mlpack.runtime.serving.framing import Incoming

    async def main() -> Any:
        reader = asyncio.StreamReader(limit=64 * 1024)

        async def feed() -> None:
            for piece in pieces:
                reader.feed_data(piece)
                await asyncio.sleep(0)  # the reader takes each piece as its own chunk
            if eof:
                reader.feed_eof()

        feeding = asyncio.ensure_future(feed())
        incoming = Incoming(reader)
        try:
            head = await asyncio.wait_for(incoming.head(64 * 1024), 5)
            return head if then is None else (head, *(await then(incoming)))
        finally:
            feeding.cancel()

    return asyncio.run(main())


def test_pipelined_requests_and_split_bodies_are_read_in_order() -> None:
    first = b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\n0123456789"
    second = b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"

    async def body_then_next(incoming: Any) -> tuple[bytes, list[str]]:
        return await incoming.readexactly(10), await incoming.head(64 * 1024)

    head, body, following = _head_of(first[:60], first[60:] + second[:5], second[5:], then=body_then_next)
    assert head == ["POST /predict HTTP/1.1", "Host: x", "Content-Length: 10"]
    assert body == b"0123456789"  # split across two chunks
    assert following == ["GET /healthz HTTP/1.1", "Host: x"]  # its start arrived with the body


def test_a_head_sent_a_byte_at_a_time_is_read_in_linear_time() -> None:
    head = b"GET /healthz HTTP/1.1\r\n" + b"".join(b"X-%d: %s\r\n" % (i, b"v" * 500) for i in range(100)) + b"\r\n"
    started = time.perf_counter()
    lines = _head_of(*(head[i : i + 1] for i in range(len(head))))
    assert len(lines) == 101 and lines[-1].startswith("X-99: v")
    assert time.perf_counter() - started < 3  # rescanning the whole buffer for each byte is quadratic


def test_bare_line_feeds_are_refused_before_the_head_is_complete() -> None:
    from mlpack.runtime.serving.framing import FramingError

    for sent in (b"GET / HTTP/1.1\nHost: x\n", b"GET / HTTP/1.1\r\nHost: x\nX-A", b"GET / HTTP/1.1\r\nX: a\rb"):
        with pytest.raises(FramingError, match="CRLF"):
            _head_of(sent, eof=False)  # the stream stays open: refused without waiting for more
    # A CR at the very end may be the first half of a CRLF: wait for the rest.
    assert _head_of(b"GET / HTTP/1.1\r", b"\nHost: x\r\n\r\n") == ["GET / HTTP/1.1", "Host: x"]


def test_a_line_read_before_is_read_the_same_again() -> None:
    """Lines already checked are remembered: a remembered line must be read as it was the first time,
    a request line never taken for a header line or back, and a bad line refused every time."""
    from mlpack.runtime.serving.framing import FramingError, parse_head

    request_like = "GET http://x/a HTTP/1.1"  # a valid request line that is not a valid header line
    for _ in range(2):
        assert parse_head([request_like, "Host: x", "X-A:  1 "]) == ("GET", "/a", "HTTP/1.1", {"host": "x", "x-a": "1"})
        with pytest.raises(FramingError, match="malformed header line"):
            parse_head(["GET / HTTP/1.1", "Host: x", request_like])
        with pytest.raises(FramingError, match="malformed request line"):
            parse_head(["Host: x", "Host: x"])
        with pytest.raises(FramingError, match="more than one Host"):
            parse_head(["GET / HTTP/1.1", "Host: x", "Host: x"])
        assert parse_head(["GET / HTTP/1.1", "Host: x", "X-A: 1", "X-A: 2"])[3]["x-a"] == "1, 2"
    for index in range(2000):  # many distinct lines: remembered ones are forgotten, never read wrong
        assert parse_head(["GET / HTTP/1.1", "Host: x", f"X-{index}: {index}"])[3][f"x-{index}"] == str(index)
