"""HTTP/1.1 on asyncio: connections, framing, limits and the server's life cycle.

It takes a `Handler` (the app) and never imports one: a request is parsed here into a `wire.Request`,
the handler turns it into a `wire.Response`, and this module writes it. Why not an ASGI stack: the
wheel stays onnxruntime + numpy, and on the measured workload (`benchmarks/serve.py`, one-record
POSTs) this loop reaches 0.6-0.9x the req/s of Starlette on uvicorn[standard] (httptools and uvloop
are C) with a 6x lower p99 at 64 connections, because one asyncio loop serves connections in turn.
uvloop under this server: +24 % req/s at one connection, 19x the p99 at 64 (not used). A thread per
connection (`http.server`) was tried first: p99 345 ms at 64 connections.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import math
import signal
import socket
import sys
import threading
import time
from collections.abc import Awaitable, Callable, Coroutine
from http import HTTPStatus
from typing import Any, Dict, List, Optional, Set, TypeVar

from .bodies import ByteBudget, SlowBody, read_body
from .framing import FramingError, Incoming, body_length, parse_head
from .wire import Answer, Limits, Request, Response

try:
    from typing import Protocol
except ImportError:  # pragma: no cover
    Protocol = object  # type: ignore[assignment]

log = logging.getLogger("mlpack.server")
T = TypeVar("T")

if sys.version_info >= (3, 11):

    async def within(awaitable: Awaitable[T], seconds: float) -> T:
        """`asyncio.wait_for` without its cost on the request path: wait_for wraps the awaitable in
        a task of its own before 3.12 (two of them per request took ~3 extra loop turns each);
        `asyncio.timeout` cancels the current task instead. Raises TimeoutError when the time is up."""
        async with asyncio.timeout(seconds):
            return await awaitable

else:  # Python 3.9 and 3.10, which the model wheels still support
    within = asyncio.wait_for


class Handler(Protocol):
    """What the HTTP layer needs from the application."""

    limits: Limits
    draining: threading.Event

    def load(self) -> None:
        """Get ready to answer (load the model); called once, before connections are accepted."""

    def respond(self, request: Request) -> Answer:
        """Answer one request (a future: a prediction queued in a batch; on the loop only); never raises."""
        raise NotImplementedError

    def refuse(self, status: int, message: str) -> Response:
        """The answer to a request turned away by the HTTP layer itself (counted by the handler)."""
        raise NotImplementedError


class HttpServer:
    """A compact HTTP/1.1 server: keep-alive, Content-Length bodies, one event loop.

    One loop serves every connection in turn, so answers stay fair under many connections. A
    one-record prediction (~30 µs) runs inline; large bodies go to a thread so /healthz stays quick,
    at most `Limits.large_bodies` at once. Bodies being read hold at most `large_bodies ×
    max_body_bytes` between them (bodies.py); the others wait, unread, in their sockets' buffers.
    At `max_connections`, the connection that has waited longest for its next head is closed to
    make room: 6,000 slowloris connections once kept /healthz from an answer for 40-50 s.
    """

    INLINE_BODY_BYTES = 64 * 1024
    MAX_HEAD_BYTES = 64 * 1024
    LARGE_BODY_WAIT_S = 2.0  # then 503 with Retry-After: the client retries rather than queueing forever
    ACCEPT_LOG_INTERVAL_S = 10.0
    LINGER_S = 2.0  # reading and dropping the rest of a refused body, at most

    def __init__(self, handler: Handler) -> None:
        self.handler = handler
        self.limits = handler.limits
        self.in_flight = 0
        self.idle = asyncio.Event()
        self.idle.set()
        self.connections: Dict[asyncio.StreamWriter, asyncio.Task[None]] = {}
        self.open = 0  # sockets accepted and not yet closed, counted at accept: a burst is no exception
        self._waiting: Dict[asyncio.StreamWriter, None] = {}  # waiting for a head, the longest first
        self._evicted: Set[asyncio.StreamWriter] = set()  # closed to make room, their tasks not yet done
        self._room = asyncio.Event()  # set while there is room for another connection
        self._room.set()
        self._large = asyncio.Semaphore(self.limits.large_bodies)  # parsed and predicted at once
        self._reading = ByteBudget(self.limits.large_bodies * self.limits.max_body_bytes)

    # -- connections ----------------------------------------------------------------------------
    async def accept(self, sock: socket.socket) -> None:
        """Accept connections until cancelled; out of file descriptors, back off and say so rarely.

        asyncio's own accept loop logged a traceback for every refused accept (147 MB of log in 30 s
        once the process ran out of descriptors); clients wait in the backlog meanwhile.
        """
        loop = asyncio.get_running_loop()
        sock.setblocking(False)
        backoff, refused, last_logged = 0.0, 0, -math.inf
        while True:
            await self._room.wait()
            try:
                conn, _ = await loop.sock_accept(sock)
            except OSError as exc:
                if exc.errno not in (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM):
                    continue  # the client gave up before we took it (ECONNABORTED and kin)
                refused += 1
                now = time.monotonic()
                if now - last_logged >= self.ACCEPT_LOG_INTERVAL_S:
                    log.warning("cannot accept connections (%s): backing off; %d refused so far", exc.strerror, refused)
                    last_logged = now
                backoff = min(1.0, backoff * 2 or 0.01)
                await asyncio.sleep(backoff)
                continue
            backoff = 0.0
            self.open += 1
            if self.open >= self.limits.max_connections:
                self._room.clear()
                self._make_room()
            loop.create_task(self._serve_socket(conn))  # held in self.connections while it runs

    def _make_room(self) -> None:
        """At max_connections: close the connection idle the longest, unless one is closing already.

        Called at accept and whenever a connection starts waiting for a head while there is no
        room, so that a burst of idle connections (accepted before any of their tasks ran) churns
        through in milliseconds instead of holding every place until the idle timeout."""
        if self._evicted or not self._waiting:
            return
        oldest = next(iter(self._waiting))
        del self._waiting[oldest]
        self._evicted.add(oldest)
        oldest.transport.abort()  # its task ends on the lost connection and gives its place back

    async def _serve_socket(self, conn: socket.socket) -> None:
        try:
            try:
                reader, writer = await asyncio.open_connection(sock=conn, limit=self.MAX_HEAD_BYTES)
            except OSError:
                conn.close()
                return
            await self.handle_connection(reader, writer)
        finally:
            self.open -= 1
            if self.open < self.limits.max_connections:
                self._room.set()

    async def handle_connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        sock = writer.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # no 40 ms delayed-ACK stalls
        task = asyncio.current_task()
        assert task is not None
        self.connections[writer] = task
        incoming = Incoming(reader)
        try:
            while not self.handler.draining.is_set():
                self._waiting[writer] = None
                if not self._room.is_set():
                    self._make_room()
                try:
                    head = await within(incoming.head(self.MAX_HEAD_BYTES), self.limits.idle_timeout)
                except (asyncio.IncompleteReadError, asyncio.TimeoutError, ConnectionError):
                    return
                except FramingError as error:
                    await self._write(writer, self.handler.refuse(error.status, error.message), close=True)
                    return
                finally:
                    self._waiting.pop(writer, None)
                self._enter()
                try:
                    keep_open = await self._exchange(head, incoming, writer)
                finally:
                    self._leave()
                if not keep_open:
                    return
        except ConnectionError:
            return
        except Exception:  # a bug: one line and a traceback in the log, not "Task exception was never retrieved"
            log.exception("unexpected error on a connection: closed")
        finally:
            del self.connections[writer]
            self._waiting.pop(writer, None)
            self._evicted.discard(writer)
            writer.transport.abort()  # close now: nothing more will be written, and nothing waits for it

    async def _exchange(self, head: List[str], reader: Incoming, writer: asyncio.StreamWriter) -> bool:
        """Read one request's body, answer it; whether the connection may carry another."""
        try:
            method, target, version, headers = parse_head(head)
            length = body_length(headers)
        except FramingError as error:
            await self._write(writer, self.handler.refuse(error.status, error.message), close=True)
            return False
        connection = headers.get("connection", "").lower()
        keep_alive = connection != "close" and (version == "HTTP/1.1" or connection == "keep-alive")
        path, _, query = target.partition("?")
        if length is not None and length > self.limits.max_body_bytes:
            # The body is left unread, so the connection cannot carry another request.
            message = f"body of {length} bytes is over the limit of {self.limits.max_body_bytes}"
            await self._refuse(reader, writer, self.handler.refuse(413, message))
            return False
        if length is not None and length > self.INLINE_BODY_BYTES:
            return await self._large_exchange(method, path, query, version, headers, length, keep_alive, reader, writer)
        body = None
        if length is not None:
            body = await self._read_body(version, headers, length, reader, writer)
            if body is None:
                return False
        answer = self.handler.respond(Request(method, path, query, headers, body))
        if not isinstance(answer, Response):  # a prediction in a batch: answered once its call has run
            answer = await answer
        return await self._answer(writer, answer, keep_alive, head_only=method == "HEAD")

    async def _large_exchange(
        self,
        method: str,
        path: str,
        query: str,
        version: str,
        headers: Dict[str, str],
        length: int,
        keep_alive: bool,
        reader: Incoming,
        writer: asyncio.StreamWriter,
    ) -> bool:
        """A body over 64 KiB: read only within the byte budget, so bodies in memory are bounded whatever
        clients do; parsed and predicted only `large_bodies` at a time, by complete bodies alone."""
        try:
            await asyncio.wait_for(self._reading.acquire(length), self.LARGE_BODY_WAIT_S)
        except asyncio.TimeoutError:
            busy = self.handler.refuse(503, "the server is busy with other large requests: retry shortly")
            await self._refuse(reader, writer, busy)
            return False
        try:
            body = await self._read_body(version, headers, length, reader, writer)
            if body is None:
                return False
            request = Request(method, path, query, headers, body)
            del body
            async with self._large:
                answer = await asyncio.get_running_loop().run_in_executor(None, self.handler.respond, request)
            assert isinstance(answer, Response)  # off the event loop nothing is queued in a batch
            del request
        finally:
            await self._reading.release(length)
        return await self._answer(writer, answer, keep_alive)

    async def _read_body(
        self,
        version: str,
        headers: Dict[str, str],
        length: int,
        reader: Incoming,
        writer: asyncio.StreamWriter,
    ) -> Optional[bytes]:
        if headers.get("expect", "").lower() == "100-continue" and version == "HTTP/1.1":
            # curl asks before sending bodies over 1 KiB and would otherwise wait a second.
            writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
            await self._drain(writer)
        try:
            return await read_body(reader, length, self.limits.idle_timeout)
        except (asyncio.IncompleteReadError, asyncio.TimeoutError):
            refused = self.handler.refuse(400, "the body ended before Content-Length bytes")
        except SlowBody as slow:
            refused = self.handler.refuse(408, str(slow))
        await self._write(writer, refused, close=True)
        return None

    async def _refuse(self, reader: Incoming, writer: asyncio.StreamWriter, answer: Response) -> None:
        """Answer a request whose body stays unread, then read and drop what the client still sends.

        Closing at once would reset the connection while the client is still sending, and it would
        never see the answer; so linger a little, as nginx does, keeping nothing of what comes.
        """
        await self._write(writer, answer, close=True)
        with contextlib.suppress(Exception):
            writer.write_eof()
        deadline = time.monotonic() + self.LINGER_S
        with contextlib.suppress(asyncio.TimeoutError, ConnectionError):
            while (left := deadline - time.monotonic()) > 0:
                if not await asyncio.wait_for(reader.read(self.MAX_HEAD_BYTES), left):
                    break

    async def _answer(
        self, writer: asyncio.StreamWriter, answer: Response, keep_alive: bool, head_only: bool = False
    ) -> bool:
        keep_alive = keep_alive and not self.handler.draining.is_set()
        await self._write(writer, answer, close=not keep_alive, head_only=head_only)
        return keep_alive

    async def _write(
        self, writer: asyncio.StreamWriter, answer: Response, *, close: bool, head_only: bool = False
    ) -> None:
        extra = "".join(f"{name}: {value}\r\n" for name, value in answer.headers)
        if answer.status == 503 and "Retry-After" not in extra:
            extra += "Retry-After: 1\r\n"
        head = (
            f"HTTP/1.1 {answer.status} {HTTPStatus(answer.status).phrase}\r\nServer: mlpack\r\n"
            f"Content-Type: {answer.content_type}\r\nContent-Length: {len(answer.body)}\r\n{extra}"
            f"{'Connection: close' if close else 'Connection: keep-alive'}\r\n\r\n"
        )
        writer.write(head.encode("latin-1") + (b"" if head_only else answer.body))  # HEAD: the length, no body
        await self._drain(writer)

    async def _drain(self, writer: asyncio.StreamWriter) -> None:
        """Wait for the client to take what was written, but not forever (a client that never reads)."""
        if writer.transport.get_write_buffer_size() == 0:
            return  # the usual case: the kernel took it all at once
        try:
            await within(writer.drain(), self.limits.write_timeout)
        except asyncio.TimeoutError:
            raise ConnectionResetError("the client did not read the answer in time") from None

    def _enter(self) -> None:
        self.in_flight += 1
        self.idle.clear()

    def _leave(self) -> None:
        self.in_flight -= 1
        if self.in_flight == 0:
            self.idle.set()

    # -- life cycle -----------------------------------------------------------------------------
    async def run(
        self,
        sock: socket.socket,
        banner: str,
        on_stop: Optional[Callable[[], object]] = None,
        watch: Optional[Callable[[asyncio.Event], Coroutine[Any, Any, None]]] = None,
    ) -> None:
        """Serve until SIGTERM/SIGINT (or until `watch` sets the stop event), then drain."""
        loop = asyncio.get_running_loop()
        stop = asyncio.Event()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, stop.set)
        watcher = loop.create_task(watch(stop)) if watch is not None else None
        # Load before accepting: the socket already listens, so early clients wait in its backlog
        # instead of meeting a 503, and with --workers no process takes requests it cannot answer.
        await loop.run_in_executor(None, self.handler.load)
        acceptor = loop.create_task(self.accept(sock))
        log.info("%s", banner)
        await stop.wait()
        self.handler.draining.set()
        if on_stop is not None:
            on_stop()
        acceptor.cancel()  # no new connections; requests in flight carry on
        if watcher is not None:
            watcher.cancel()
        try:
            await asyncio.wait_for(self.idle.wait(), self.limits.drain_timeout)
            drained = True
        except asyncio.TimeoutError:
            drained = False
        tasks = list(self.connections.values())
        for writer in list(self.connections):  # idle keep-alive connections, and any still stuck
            writer.transport.abort()
        for task in tasks:
            task.cancel()
        await asyncio.gather(acceptor, *tasks, return_exceptions=True)  # their cancellation is expected
        cut = f" ({self.in_flight} requests cut off after {self.limits.drain_timeout:g} s)"
        log.info("stopped%s", "" if drained else cut)


__all__ = ["Handler", "HttpServer"]
