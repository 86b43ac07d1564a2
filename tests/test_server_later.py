"""Answers made in one turn of the event loop leave together at its end (HttpServer.later).

Each answer written on loopback wakes the client's thread waiting for it, and the kernel does that
wake-up inside the server's `send`: 13 us of a 180 us request at 64 connections. So an answer made
while other connections' requests wait on the same turn is held until the turn ends (or LATER_S
has passed), then all are written. These tests drive `Connection`s on a real event loop with
transports that record what is written: the bytes are those written at once, in the same order;
a lone request is written at once; a client that does not read is still stalled and cut off at the
write timeout; an answer held back goes out before its connection closes.
"""

from __future__ import annotations

import asyncio
import json
import re
import socket
import threading
from typing import Any

import pytest

from mlpack.build import BuildResult
from mlpack.runtime.serving import HttpServer, Limits, Request, Response, http
from mlpack.runtime.serving.connection import Connection
from mlpack.runtime.serving.wire import render
from tests.helpers.documents import distinct_records
from tests.helpers.http_client import ServerProcess

Log = list[tuple[str, int]]


class Echo:
    """A handler whose answer is the request's body; it logs whom it answered."""

    def __init__(self, log: Log, limits: Limits | None = None) -> None:
        self.limits = limits or Limits()
        self.draining = threading.Event()
        self.log = log

    def load(self) -> None:
        pass

    def respond(self, request: Request) -> Response:
        self.log.append(("answered", int(request.headers["x-client"])))
        return Response(200, request.body or b"", "text/plain")

    def refuse(self, status: int, message: str) -> Response:
        return Response.error(status, message)


class Recorder(asyncio.Transport):
    """A transport that keeps what is written; `full`: the client reads nothing (writing pauses)."""

    def __init__(self, client: int, log: Log, full: bool = False) -> None:
        super().__init__()
        self.client, self.log, self.full = client, log, full
        self.written = bytearray()
        self.protocol: Connection | None = None
        self.closed = self.aborted = self.reading_paused = False

    def write(self, data: Any) -> None:
        self.log.append(("written", self.client))
        self.written += data
        if self.full and self.protocol is not None:
            self.protocol.pause_writing()

    def get_write_buffer_size(self) -> int:
        return len(self.written) if self.full else 0

    def pause_reading(self) -> None:
        self.reading_paused = True

    def resume_reading(self) -> None:
        self.reading_paused = False

    def close(self) -> None:
        self.closed = True

    def abort(self) -> None:
        self.aborted = True


def request(client: int, body: bytes, close: bool = False) -> bytes:
    connection = b"Connection: close\r\n" if close else b""
    return b"POST /echo HTTP/1.1\r\nHost: x\r\nX-Client: %d\r\n%sContent-Length: %d\r\n\r\n%s" % (
        client,
        connection,
        len(body),
        body,
    )


def expected(body: bytes, close: bool = False) -> bytes:
    return render(Response(200, body, "text/plain"), close)


async def connect(server: HttpServer, clients: int, log: Log, full: tuple[int, ...] = ()) -> list[Connection]:
    connections = []
    for client in range(clients):
        connection = Connection(server)
        transport = Recorder(client, log, full=client in full)
        transport.protocol = connection
        connection.connection_made(transport)
        connections.append(connection)
    return connections


async def one_turn(connections: list[Connection], data: list[bytes]) -> None:
    """Every connection's bytes arrive in the same turn of the loop, as from one poll of the sockets."""
    loop = asyncio.get_running_loop()
    for connection, chunk in zip(connections, data):
        loop.call_soon(connection.data_received, chunk)
    for _ in range(3):  # that turn, and the one that writes what it held back
        await asyncio.sleep(0)


def written(connection: Connection) -> bytes:
    transport = connection.transport
    assert isinstance(transport, Recorder)
    return bytes(transport.written)


def _one_turn_of(clients: int, body: bytes) -> Log:
    """`clients` connections each send a request (`body % client`) in one turn of the loop; each gets
    the bytes a lone connection gets; the log says when each answer was made and written."""

    async def main() -> Log:
        log: Log = []
        connections = await connect(HttpServer(Echo(log)), clients, log)
        await one_turn(connections, [request(client, body % client) for client in range(clients)])
        for client, connection in enumerate(connections):
            assert written(connection) == expected(body % client)
        return log

    return asyncio.run(main())


def test_answers_made_in_one_turn_are_written_at_its_end_with_the_same_bytes(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(http, "LATER_S", 60.0)  # however slow this machine is now

    log = _one_turn_of(8, b"record %d")
    # Each finds others ready on the loop (the last, the callback that writes them): all go together.
    assert log == [("answered", client) for client in range(8)] + [("written", client) for client in range(8)]


def test_a_lone_request_is_written_at_once() -> None:
    async def main() -> None:
        log: Log = []
        (connection,) = await connect(HttpServer(Echo(log)), 1, log)
        connection.data_received(request(0, b"alone"))
        assert log == [("answered", 0), ("written", 0)]  # within data_received: no turn waited for
        assert written(connection) == expected(b"alone")

    asyncio.run(main())


def test_pipelined_and_closing_answers_keep_their_order() -> None:
    """A connection with more requests in its buffer is answered at once, request by request, and one
    whose answer is held back writes it before its connection closes."""

    async def main() -> None:
        log: Log = []
        connections = await connect(HttpServer(Echo(log)), 3, log)
        pipelined = request(1, b"first") + request(1, b"second") + request(1, b"last", close=True)
        await one_turn(connections, [request(0, b"zero"), pipelined, request(2, b"two")])
        assert written(connections[0]) == expected(b"zero")
        assert written(connections[1]) == expected(b"first") + expected(b"second") + expected(b"last", close=True)
        assert connections[1].closed and written(connections[2]) == expected(b"two")

        # Connections closed (the client's end of stream) or aborted (closed to make room for another)
        # while their answers are held back: the answers go first, as they did when written at once.
        loop = asyncio.get_running_loop()
        fresh = await connect(HttpServer(Echo(log)), 3, log)
        for client, connection in enumerate(fresh):
            loop.call_soon(connection.data_received, request(client, b"held %d" % client))
        loop.call_soon(fresh[0].close)
        loop.call_soon(fresh[1].abort)
        for _ in range(3):
            await asyncio.sleep(0)
        closed, aborted = fresh[0].transport, fresh[1].transport
        assert isinstance(closed, Recorder) and closed.closed and isinstance(aborted, Recorder) and aborted.aborted
        for client, connection in enumerate(fresh):
            assert written(connection) == expected(b"held %d" % client)

    asyncio.run(main())


def test_a_client_that_does_not_read_a_held_answer_is_stalled_then_cut_off() -> None:
    async def main() -> None:
        log: Log = []
        server = HttpServer(Echo(log, Limits(write_timeout=0.05)))
        connections = await connect(server, 3, log, full=(1,))
        await one_turn(connections, [request(client, b"x" * 100) for client in range(3)])
        stuck = connections[1]
        transport = stuck.transport
        assert isinstance(transport, Recorder)
        assert stuck.stalled and transport.reading_paused and server.in_flight == 1
        assert stuck not in server.waiting  # reads no head, so the idle sweep does not time it
        stuck.data_received(request(1, b"more"))  # not answered while the last answer is not taken
        assert log.count(("answered", 1)) == 1
        await asyncio.sleep(0.2)
        assert transport.aborted  # the write timeout
        assert not connections[0].stalled and not connections[2].stalled

    asyncio.run(main())


def test_answers_wait_no_longer_than_later_s(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(http, "LATER_S", 0.0)

    log = _one_turn_of(4, b"%d")
    # With no time to wait, the second answer held back sends both at once; the third waits again.
    assert log[:4] == [("answered", 0), ("answered", 1), ("written", 0), ("written", 1)]
    assert log[4:] == [("answered", 2), ("answered", 3), ("written", 2), ("written", 3)]


# -- a real server, unbatched -------------------------------------------------------------------------
ID = re.compile(rb'"id": "[0-9a-f]{32}"')


def read_answer(sock: socket.socket) -> bytes:
    """One whole answer (head and Content-Length body) from a blocking socket."""
    data = b""
    while b"\r\n\r\n" not in data:
        data += sock.recv(65536) or pytest.fail(f"closed after {data!r}")
    head, _, body = data.partition(b"\r\n\r\n")
    length = int(re.search(rb"Content-Length: (\d+)", head).group(1))  # type: ignore[union-attr]
    while len(body) < length:
        body += sock.recv(65536) or pytest.fail("closed within a body")
    assert len(body) == length, "more than one answer to one request"
    return ID.sub(b'"id": ""', head + b"\r\n\r\n" + body)


def test_concurrent_unbatched_answers_are_the_bytes_of_a_lone_connection(built_model: BuildResult) -> None:
    """32 connections send at once, round after round, so that their requests meet in the server's
    turns: each answer (its random id aside) is byte for byte what the same record gets alone."""
    records = distinct_records(640, seed=4)
    server = ServerProcess.mlpack(built_model.artifacts["wheel"], "--batch-max-records", "1")
    try:
        with socket.create_connection(("127.0.0.1", server.port), timeout=30) as lone:
            expected_answers = []
            for record in records:
                lone.sendall(post(record))
                expected_answers.append(read_answer(lone))
        sockets = [socket.create_connection(("127.0.0.1", server.port), timeout=30) for _ in range(32)]
        try:
            answers = []
            for start in range(0, len(records), len(sockets)):
                batch = records[start : start + len(sockets)]
                for sock, record in zip(sockets, batch):
                    sock.sendall(post(record))
                answers += [read_answer(sock) for sock in sockets[: len(batch)]]
        finally:
            for sock in sockets:
                sock.close()
        assert answers == expected_answers
        assert all(b"HTTP/1.1 200 OK" in answer for answer in answers)
    finally:
        assert server.stop() == 0
    assert "Traceback" not in server.output()


def post(record: dict[str, Any]) -> bytes:
    body = json.dumps(record).encode()
    return b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s" % (
        len(body),
        body,
    )
