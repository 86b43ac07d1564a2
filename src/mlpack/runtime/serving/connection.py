"""One HTTP/1.1 connection as an `asyncio.Protocol`: requests parsed from its buffer, answers written.

The usual request (a small one whose head and body came in together) is answered inside
`data_received`, where asyncio hands over the bytes: one parse of the buffer, one `write`, and no
task, future or stream object (if others are answered in the same turn of the loop, it is written
with theirs at its end: `HttpServer.later`). A request that needs to wait (its body still on its way,
a body over 64 KiB, `Expect: 100-continue`, a refusal that must linger) is handed to a coroutine,
`slow`, that owns the connection until the request is answered and reads the same buffer (`Incoming`).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from typing import TYPE_CHECKING, Dict, Optional

from .bodies import SlowBody, drop_for, read_body
from .framing import FramingError, Incoming, Waiting, next_head
from .wire import Request, Response, render

if TYPE_CHECKING:
    from .http import HttpServer

log = logging.getLogger("mlpack.server")

INLINE_BODY_BYTES = 64 * 1024  # larger bodies are read within the byte budget and answered on a thread
MAX_HEAD_BYTES = 64 * 1024
READ_AHEAD_BYTES = 2 * 64 * 1024  # buffered beyond what a waiting coroutine asked for, then reading pauses
LARGE_BODY_WAIT_S = 2.0  # then 503 with Retry-After: the client retries rather than queueing forever
LINGER_S = 2.0  # reading and dropping the rest of a refused body, at most


class Connection(asyncio.Protocol):
    """One client connection; `HttpServer` holds the limits and the shared state."""

    def __init__(self, server: HttpServer) -> None:
        self.server = server
        self.handler = server.handler
        self.loop = asyncio.get_running_loop()
        self.transport: Optional[asyncio.Transport] = None
        self.buffer = bytearray()  # received and not yet taken by a request
        self.scanned = 0  # bytes of an incomplete head already checked
        self.since = 0.0  # when it began waiting for its current head (the idle timeout runs from here)
        self.busy = False  # a coroutine (`slow`) owns the connection
        self.eof = False
        self.closed = False
        self.write_paused = False  # the transport holds more than its high-water mark
        self.stalled = False  # an answer written inline is not yet taken: counted in flight, reading paused
        self.awaiting = False  # a batched prediction is not yet answered: counted in flight, reading paused
        self.reading_paused = False
        self._waiter: Optional[asyncio.Future[None]] = None  # a coroutine waiting for bytes
        self._drained: Optional[asyncio.Future[None]] = None  # a coroutine waiting for the client to read
        self._timer: Optional[asyncio.TimerHandle] = None  # the write timeout of a stalled answer
        self.unsent: Optional[bytes] = None  # an answer written at the end of this turn (HttpServer.later)
        self.incoming = Incoming(buffer=self.buffer, fill=self.fill)

    # -- asyncio's callbacks ------------------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        self.server.connections.add(self)
        self.wait_for_head()

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        if self.busy:  # a coroutine reads this connection: wake it, and keep what is buffered bounded
            self._wake()
            if len(self.buffer) > READ_AHEAD_BYTES and not self.reading_paused:
                self.reading_paused = True
                self.transport.pause_reading()  # type: ignore[union-attr]
            return
        if not (self.stalled or self.awaiting):
            self.process()
        elif len(self.buffer) > READ_AHEAD_BYTES:  # pipelined behind an answer not yet written: bounded
            self._pause_reading()

    def eof_received(self) -> bool:
        self.eof = True
        self._wake()
        return self.busy or self.stalled or self.awaiting  # True keeps the transport open for the answer

    def connection_lost(self, exc: Optional[Exception]) -> None:
        self.closed = True
        self.server.forget(self)
        if self._timer is not None:
            self._timer.cancel()
        if self.stalled or self.awaiting:
            self.stalled = self.awaiting = False
            self.server.leave()
        self._wake()
        drained = self._drained
        if drained is not None and not drained.done():
            drained.set_exception(ConnectionResetError("the connection was lost"))

    def pause_writing(self) -> None:
        self.write_paused = True

    def resume_writing(self) -> None:
        self.write_paused = False
        drained = self._drained
        if drained is not None and not drained.done():
            drained.set_result(None)
        if self.stalled:
            self.stalled = False
            if self._timer is not None:
                self._timer.cancel()
            self.server.leave()
            self._resume_reading()
            self.loop.call_soon(self.next_request)

    # -- the usual request, inline ------------------------------------------------------------------
    def wait_for_head(self) -> None:
        server = self.server
        self.since = self.loop.time()
        server.waiting[self] = None
        if not server.room.is_set():
            server.make_room()

    def next_request(self) -> None:
        """Back to answering inline, after a coroutine's request or an answer the client was slow to take."""
        if not self.closed:
            self._resume_reading()
            self.wait_for_head()
            self.process()

    def process(self) -> None:
        """Answer every complete request in the buffer, as long as the client takes the answers."""
        try:
            self._process()
        except Exception:  # a bug: one line and a traceback in the log, and the connection closed
            log.exception("unexpected error on a connection: closed")
            self.abort()

    def _process(self) -> None:
        server, handler, buffer = self.server, self.handler, self.buffer
        while buffer and not (self.busy or self.stalled or self.awaiting or self.closed):
            try:
                head, self.scanned = next_head(buffer, self.scanned, MAX_HEAD_BYTES)
                if head is None:
                    return  # the rest of the head is still to come
                server.waiting.pop(self, None)
                method, target, version, headers, length = head
            except FramingError as error:
                server.waiting.pop(self, None)
                self.write(handler.refuse(error.status, error.message), close=True)
                return
            connection = headers.get("connection")
            if connection is None:
                keep_alive = version == "HTTP/1.1"
            else:
                connection = connection.lower()
                keep_alive = connection != "close" and (version == "HTTP/1.1" or connection == "keep-alive")
            path, _, query = target.partition("?")
            body = None
            if length is not None:
                if (
                    len(buffer) < length
                    or length > INLINE_BODY_BYTES
                    or length > server.limits.max_body_bytes
                    or "expect" in headers
                ):
                    self.busy = True
                    server.start(self.slow(Waiting(method, path, query, version, headers, length, keep_alive)))
                    return
                body = bytes(buffer[:length])
                del buffer[:length]
            answer = handler.respond(Request(method, path, query, headers, body))
            head_only = method == "HEAD"
            if not isinstance(answer, Response):  # a prediction queued in a batch: written once its call has run
                if answer.done() and not answer.cancelled():
                    answer = answer.result()  # its batch ran at once (the request came alone)
                else:  # reading goes on (not two epoll_ctl per request): pipelined bytes are only buffered
                    self.awaiting = True
                    server.enter()
                    done = functools.partial(self._answered, keep_alive=keep_alive, head_only=head_only)
                    answer.add_done_callback(done)
                    return
            if not self._deliver(answer, keep_alive, head_only):
                return
            self.wait_for_head()
        if self.eof and not (self.busy or self.stalled or self.awaiting or self.closed):
            self.close()

    def _deliver(self, answer: Response, keep_alive: bool, head_only: bool) -> bool:
        """Write an answer made inline; whether the next request may be read now. With other callbacks
        ready on the loop (CPython's asyncio keeps them in `_ready`: other connections' requests, in
        this turn) and nothing more in the buffer, it leaves with theirs (`HttpServer.later`)."""
        close = not keep_alive or self.handler.draining.is_set()
        if not (close or self.buffer or self.closed) and getattr(self.loop, "_ready", None):
            self.server.later(self, render(answer, False, head_only))
            return True
        if not self.write(answer, close=close, head_only=head_only):
            return False
        if self.write_paused:
            self.stall()
            return False
        return True

    def stall(self) -> None:
        """The client is not reading: no more requests until it takes the answer (or the write timeout)."""
        self.stalled = True
        self.server.enter()
        self._pause_reading()
        self._timer = self.loop.call_later(self.server.limits.write_timeout, self.abort)

    def _answered(self, done: asyncio.Future[Response], *, keep_alive: bool, head_only: bool) -> None:
        """A batched prediction's answer is ready: write it, then go on with the requests behind it."""
        if not self.awaiting:
            return  # the connection was lost meanwhile (and counted out of flight there)
        self.awaiting = False
        self.server.leave()
        if done.cancelled() or done.exception() is not None:  # the server stopping; never the client's doing
            self.abort()
            return
        self._resume_reading()
        if self._deliver(done.result(), keep_alive, head_only):
            self.wait_for_head()
            self.process()

    def write(self, answer: Response, *, close: bool, head_only: bool = False) -> bool:
        """Write one answer; whether the connection carries another request (False: closed after it)."""
        if not self.closed:
            if self.unsent is not None:
                self.server.send_unsent(self)  # what was written first leaves first
            self.transport.write(render(answer, close, head_only))  # type: ignore[union-attr]
            if not close:
                return True
            self.close()
        return False

    # -- closing --------------------------------------------------------------------------------------
    def close(self) -> None:
        """No more requests: close once the answers written are out (or after the write timeout)."""
        if self.closed:
            return
        self.server.send_unsent(self)
        self.closed = True
        self.server.waiting.pop(self, None)
        transport = self.transport
        assert transport is not None
        transport.close()
        if transport.get_write_buffer_size():
            if self._timer is not None:
                self._timer.cancel()
            self._timer = self.loop.call_later(self.server.limits.write_timeout, transport.abort)

    def abort(self) -> None:
        """Close now, dropping whatever is not yet written (an answer held back goes first, as before)."""
        self.server.send_unsent(self)
        self.closed = True
        if self.transport is not None:
            self.transport.abort()

    # -- a request that must wait, in a coroutine -----------------------------------------------------
    async def fill(self) -> bool:
        """Wait for more bytes in the buffer; False when none will come (the end of the stream)."""
        if self.eof or self.closed:
            return False
        size = len(self.buffer)
        self._resume_reading()
        self._waiter = self.loop.create_future()
        try:
            await self._waiter
        finally:
            self._waiter = None
        return len(self.buffer) > size

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def _pause_reading(self) -> None:
        if not self.reading_paused and not self.closed:
            self.reading_paused = True
            self.transport.pause_reading()  # type: ignore[union-attr]

    def _resume_reading(self) -> None:
        if self.reading_paused and not self.closed:
            self.reading_paused = False
            self.transport.resume_reading()  # type: ignore[union-attr]

    async def drain(self) -> None:
        """Wait for the client to take what was written, but not forever (a client that never reads)."""
        if not self.write_paused:
            return  # the usual case: the kernel took it all at once
        self._drained = self.loop.create_future()
        try:
            await asyncio.wait_for(self._drained, self.server.limits.write_timeout)
        except asyncio.TimeoutError:
            raise ConnectionResetError("the client did not read the answer in time") from None
        finally:
            self._drained = None

    async def send(self, answer: Response, *, close: bool, head_only: bool = False) -> bool:
        """`write`, then wait for the client to take it; whether the connection carries another request."""
        keep = self.write(answer, close=close, head_only=head_only)
        await self.drain()
        return keep

    async def slow(self, head: Waiting) -> None:
        """One request whose body has to be waited for; then back to answering inline."""
        server = self.server
        server.enter()
        keep = False
        try:
            keep = await self._exchange(head)
        except ConnectionError:
            pass
        except Exception:  # a bug: one line and a traceback in the log, not "Task exception was never retrieved"
            log.exception("unexpected error on a connection: closed")
        finally:
            server.leave()
            self.busy = False
        if keep:
            self.next_request()
        elif not self.closed:
            self.abort()

    async def _exchange(self, head: Waiting) -> bool:
        method, path, query, version, headers, length, keep_alive = head
        limits = self.server.limits
        if length > limits.max_body_bytes:
            # The body is left unread, so the connection cannot carry another request.
            message = f"body of {length} bytes is over the limit of {limits.max_body_bytes}"
            await self._refuse(self.handler.refuse(413, message))
            return False
        if length > INLINE_BODY_BYTES:
            return await self._large_exchange(head)
        body = await self._read_body(version, headers, length)
        if body is None:
            return False
        answer = self.handler.respond(Request(method, path, query, headers, body))
        if not isinstance(answer, Response):  # a prediction in a batch: answered once its call has run
            answer = await answer
        return await self._answer(answer, keep_alive, head_only=method == "HEAD")

    async def _large_exchange(self, head: Waiting) -> bool:
        """A body over 64 KiB: read only within the byte budget, so bodies in memory are bounded whatever
        clients do; parsed and predicted only `large_bodies` at a time, by complete bodies alone."""
        method, path, query, version, headers, length, keep_alive = head
        server = self.server
        self._pause_reading()  # until the budget has room for it, the body waits in the socket
        try:
            await asyncio.wait_for(server.reading.acquire(length), LARGE_BODY_WAIT_S)
        except asyncio.TimeoutError:
            busy = self.handler.refuse(503, "the server is busy with other large requests: retry shortly")
            await self._refuse(busy)
            return False
        try:
            body = await self._read_body(version, headers, length)
            if body is None:
                return False
            request = Request(method, path, query, headers, body)
            del body
            async with server.large:
                answer = await self.loop.run_in_executor(None, self.handler.respond, request)
            assert isinstance(answer, Response)  # off the event loop nothing is queued in a batch
            del request
        finally:
            await server.reading.release(length)
        return await self._answer(answer, keep_alive)

    async def _read_body(self, version: str, headers: Dict[str, str], length: int) -> Optional[bytes]:
        if headers.get("expect", "").lower() == "100-continue" and version == "HTTP/1.1":
            # curl asks before sending bodies over 1 KiB and would otherwise wait a second.
            self.transport.write(b"HTTP/1.1 100 Continue\r\n\r\n")  # type: ignore[union-attr]
            await self.drain()
        try:
            return await read_body(self.incoming, length, self.server.limits.idle_timeout)
        except (asyncio.IncompleteReadError, asyncio.TimeoutError):
            refused = self.handler.refuse(400, "the body ended before Content-Length bytes")
        except SlowBody as slow:
            refused = self.handler.refuse(408, str(slow))
        await self.send(refused, close=True)
        return None

    async def _refuse(self, answer: Response) -> None:
        """Answer a request whose body stays unread, then read and drop what the client still sends.

        Closing at once would reset the connection while the client is still sending, and it would
        never see the answer; so linger a little, as nginx does, keeping nothing of what comes.
        """
        if self.closed:
            return
        self.transport.write(render(answer, close=True))  # type: ignore[union-attr]
        await self.drain()
        with contextlib.suppress(Exception):
            self.transport.write_eof()  # type: ignore[union-attr]
        await drop_for(self.incoming, LINGER_S)

    async def _answer(self, answer: Response, keep_alive: bool, head_only: bool = False) -> bool:
        keep_alive = keep_alive and not self.handler.draining.is_set()
        return await self.send(answer, close=not keep_alive, head_only=head_only)


__all__ = ["Connection"]
