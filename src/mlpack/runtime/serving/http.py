"""HTTP/1.1 on asyncio's Protocol: connections, framing, limits and the server's life cycle.

It takes a `Handler` (the app) and never imports one: a request is parsed here into a `wire.Request`,
the handler turns it into a `wire.Response`, and this module writes it. Why not an ASGI stack: the
wheel stays onnxruntime + numpy.

The usual request, a small one whose head and body came in together, is answered inside
`data_received`, the callback asyncio makes when bytes arrive: no task, no future, no stream object,
one parse of the connection's buffer and one `write`. Everything else (a body still on its way, one
over 64 KiB, `Expect: 100-continue`, a refusal that must linger) is handed to a coroutine that owns
the connection until that request is done (`Connection.slow`), with the limits and
timeouts of the stream-based server this replaced. Connections waiting for a head are timed by one
sweep over them in the order they began waiting, not by a timer per request. The answers made in one
turn of the loop leave together at its end (`HttpServer.later`).
"""

from __future__ import annotations

import asyncio
import errno
import gc
import logging
import math
import signal
import socket
import threading
import time
from collections.abc import Callable, Coroutine
from typing import Any, Dict, List, Optional, Set

from ..settings import Limits
from .bodies import ByteBudget
from .connection import Connection
from .wire import Answer, Request, Response

try:
    from typing import Protocol
except ImportError:  # pragma: no cover
    Protocol = object  # type: ignore[assignment]

log = logging.getLogger("mlpack.server")

# The longest an answer made inline waits for the others of its turn of the loop: then they all go.
LATER_S = 0.001


class Handler(Protocol):
    """What the HTTP layer needs from the application."""

    limits: Limits
    draining: threading.Event  # set when the server stops: answers close their connections

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
    one-record prediction runs inline; large bodies go to a thread so /healthz stays quick, at most
    `Limits.large_bodies` at once. Bodies being read hold at most `large_bodies × max_body_bytes`
    between them (bodies.py); the others wait, unread, in their sockets' buffers. At
    `max_connections`, the connection that has waited longest for its next head is closed to make
    room: 6,000 slowloris connections once kept /healthz from an answer for 40-50 s.
    """

    ACCEPT_LOG_INTERVAL_S = 10.0
    ACCEPT_AT_ONCE = 128  # connections taken from the backlog in one turn of the loop

    def __init__(self, handler: Handler) -> None:
        self.handler = handler
        self.limits = handler.limits
        self.in_flight = 0  # requests read and not yet answered (or whose answer is not yet taken)
        self.idle = asyncio.Event()
        self.idle.set()
        self.connections: Set[Connection] = set()
        self.open = 0  # sockets accepted and not yet closed, counted at accept: a burst is no exception
        # Waiting for a head, in the order they began to: the longest first, for the idle timeout and
        # for making room. A dict: moving a connection to the end is two O(1) operations per request.
        self.waiting: Dict[Connection, None] = {}
        self._evicted: Set[Connection] = set()  # closed to make room, not yet gone
        self.room = asyncio.Event()  # set while there is room for another connection
        self.room.set()
        self.large = asyncio.Semaphore(self.limits.large_bodies)  # parsed and predicted at once
        self.reading = ByteBudget(self.limits.large_bodies * self.limits.max_body_bytes)
        self.tasks: Set[asyncio.Task[None]] = set()  # exchanges in progress (a reference keeps them alive)
        self.unsent: List[Connection] = []  # holding an answer for the end of this turn of the loop
        self._unsent_since = 0.0
        self._flush_soon = False  # a callback to write them is on the loop

    # -- answers at the end of a turn -------------------------------------------------------------
    def later(self, connection: Connection, data: bytes) -> None:
        """Write `connection`'s answer `data` at the end of this turn of the loop, with the others.

        Each answer written wakes the client's thread that waits for it, on another CPU: on loopback
        that wake-up is the sender's work (the kernel delivers the bytes within `send`), 13 us of a
        180 us request at 64 connections. Written together, one wake-up takes many answers. The turn
        ends sooner than any of its requests would be read again, so no answer waits for the client's
        next request; and none waits longer than LATER_S for the others: then all go at once."""
        connection.unsent = data
        unsent, loop = self.unsent, connection.loop
        unsent.append(connection)
        if len(unsent) == 1:
            self._unsent_since = loop.time()
            if not self._flush_soon:
                self._flush_soon = True
                loop.call_soon(self._flush_later)  # after this turn's callbacks, before the next poll's
        elif loop.time() - self._unsent_since >= LATER_S:
            self.flush()

    def _flush_later(self) -> None:
        self._flush_soon = False
        self.flush()

    def flush(self) -> None:
        """Write every answer `later` holds, in the order they were made."""
        unsent, self.unsent = self.unsent, []
        for connection in unsent:
            self.send_unsent(connection)

    @staticmethod
    def send_unsent(connection: Connection) -> None:
        """Write the answer `later` held back for `connection`, as it would have been (a stall included)."""
        data, connection.unsent = connection.unsent, None
        if data is None or connection.closed:
            return
        connection.transport.write(data)  # type: ignore[union-attr]
        if connection.write_paused and not connection.stalled:
            connection.server.waiting.pop(connection, None)  # it reads no head until the client takes this
            connection.stall()

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
            await self.room.wait()
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
            # Then whatever else the backlog holds, now, each connection set up by a task of its own:
            # one accept and one set-up per turn of a busy loop took ~1 s for wrk's 64 connections,
            # whose first requests made the p99 of the whole run.
            for _ in range(self.ACCEPT_AT_ONCE):
                self.open += 1
                if self.open >= self.limits.max_connections:
                    self.room.clear()
                    self.make_room()
                self.start(self._connect(loop, conn))
                if not self.room.is_set():
                    break
                try:
                    conn, _ = sock.accept()
                except OSError:  # none waiting (BlockingIOError), or an error sock_accept meets next
                    break

    async def _connect(self, loop: asyncio.AbstractEventLoop, conn: socket.socket) -> None:
        try:
            await loop.connect_accepted_socket(lambda: Connection(self), conn)
        except OSError:
            conn.close()
            self.gone()

    def gone(self) -> None:
        """A socket accepted earlier is closed: its place is free again."""
        self.open -= 1
        if self.open < self.limits.max_connections:
            self.room.set()

    def make_room(self) -> None:
        """At max_connections: close the connection idle the longest, unless one is closing already.

        Called at accept and whenever a connection starts waiting for a head while there is no
        room, so that a burst of idle connections (accepted before any of them sent a byte) churns
        through in milliseconds instead of holding every place until the idle timeout."""
        if self._evicted or not self.waiting:
            return
        oldest = next(iter(self.waiting))
        del self.waiting[oldest]
        self._evicted.add(oldest)
        oldest.abort()  # connection_lost gives its place back

    def forget(self, connection: Connection) -> None:
        self.connections.discard(connection)
        self.waiting.pop(connection, None)
        self._evicted.discard(connection)
        self.gone()

    async def sweep(self) -> None:
        """Close connections that waited longer than `idle_timeout` for a head, oldest first."""
        loop = asyncio.get_running_loop()
        timeout = self.limits.idle_timeout
        interval = max(0.05, min(0.5, timeout / 4))
        while True:
            await asyncio.sleep(interval)
            expired = loop.time() - timeout
            for connection in list(self.waiting):
                if connection.since > expired:
                    break  # the rest began waiting later
                del self.waiting[connection]
                connection.abort()

    def enter(self) -> None:
        self.in_flight += 1
        self.idle.clear()

    def leave(self) -> None:
        self.in_flight -= 1
        if self.in_flight == 0:
            self.idle.set()

    def start(self, exchange: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(exchange)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

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
        # What is alive now (the model, its session, the modules) lives as long as the process: out of
        # the collector's sight, a full collection no longer walks it, and forked workers share its pages.
        gc.collect()
        gc.freeze()
        acceptor = loop.create_task(self.accept(sock))
        sweeper = loop.create_task(self.sweep())
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
        sweeper.cancel()
        tasks = list(self.tasks)
        for connection in list(self.connections):  # idle keep-alive connections, and any still stuck
            connection.abort()
        for task in tasks:
            task.cancel()
        await asyncio.gather(acceptor, sweeper, *tasks, return_exceptions=True)  # their cancellation is expected
        cut = f" ({self.in_flight} requests cut off after {self.limits.drain_timeout:g} s)"
        log.info("stopped%s", "" if drained else cut)


__all__ = ["Handler", "HttpServer"]
