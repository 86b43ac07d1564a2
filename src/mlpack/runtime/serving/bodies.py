"""Request bodies within the server's limits: a byte budget for bodies in memory, and a minimum rate.

A client must not be able to hold what others need by sending slowly. Large bodies once each took
one of two slots for as long as they arrived (up to the 60 s deadline), so two connections that sent
`Content-Length: 100000` and then a byte now and then made every other body over 64 KiB a 503. Now
a body reserves only its own length from a budget of `large_bodies × max_body_bytes` (a 100 KB body
takes 1 % of the default 20 MiB), and every body must keep up MIN_BODY_RATE after a short grace, as
Apache's mod_reqtimeout asks (nginx's client_body_timeout bounds only the gap between two reads).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import List

from .framing import Incoming

# Bytes per second a body must average after BODY_GRACE_S: a 10 MiB body within 162 s (the 60 s
# body deadline asks 170 KiB/s of one that large anyway); a byte every 0.5 s is cut off at ~2 s.
MIN_BODY_RATE = 64 * 1024
BODY_GRACE_S = 2.0
CHUNK = 64 * 1024


class SlowBody(Exception):
    """The body came slower than MIN_BODY_RATE: answered 408, then the connection is closed."""


class ByteBudget:
    """A semaphore counted in bytes: what bodies being read or waiting to be parsed may hold together."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self.used = 0
        self._changed = asyncio.Condition()

    async def acquire(self, size: int) -> None:
        async with self._changed:
            await self._changed.wait_for(lambda: self.used + size <= self.capacity)
            self.used += size

    async def release(self, size: int) -> None:
        async with self._changed:
            self.used -= size
            self._changed.notify_all()


async def read_body(incoming: Incoming, length: int, timeout: float) -> bytes:
    """The next `length` bytes, within `timeout` seconds in all and at MIN_BODY_RATE after the grace.

    Raises asyncio.IncompleteReadError (the connection ended), asyncio.TimeoutError (the whole-body
    deadline) or SlowBody.
    """
    buffered = incoming.buffer
    if len(buffered) >= length:  # the usual small body: it came with its head
        data = bytes(buffered[:length])
        del buffered[:length]
        return data
    loop = asyncio.get_running_loop()
    started = loop.time()
    end = started + timeout
    chunks: List[bytes] = []
    received = 0
    while received < length:
        due = started + BODY_GRACE_S + received / MIN_BODY_RATE  # by then, more than `received` bytes
        deadline = min(end, due)
        try:
            chunk = await asyncio.wait_for(incoming.read(min(CHUNK, length - received)), deadline - loop.time())
        except asyncio.TimeoutError:
            if due < end:
                raise SlowBody(f"the body came slower than {MIN_BODY_RATE // 1024} KiB/s") from None
            raise
        if not chunk:
            raise asyncio.IncompleteReadError(b"".join(chunks), length)
        chunks.append(chunk)
        received += len(chunk)
    return b"".join(chunks)


async def drop_for(incoming: Incoming, seconds: float) -> None:
    """Read and drop what the client sends, for `seconds` at most or until its end (a refused body)."""
    deadline = time.monotonic() + seconds
    with contextlib.suppress(asyncio.TimeoutError, ConnectionError):
        while (left := deadline - time.monotonic()) > 0:
            incoming.buffer.clear()
            if not await asyncio.wait_for(incoming.fill(), left):
                break
    incoming.buffer.clear()


__all__ = ["BODY_GRACE_S", "MIN_BODY_RATE", "ByteBudget", "SlowBody", "drop_for", "read_body"]
