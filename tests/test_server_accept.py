"""Accepting under load: a burst of new connections is taken from the backlog at once.

The accept loop once took one connection per turn of the event loop and set it up before taking the
next, a few turns each; on a busy loop (every turn answering dozens of requests) wrk's 64 new
connections waited ~1 s for their first answer, and those first requests made the p99 of the run
(1.3 s against 0.2 s). Counted in turns of the loop, not in seconds, so the test does not depend on
the machine's speed.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading

from mlpack.runtime.serving import HttpServer, Limits, Request, Response


class Idle:
    """A handler that is never asked anything: the connections send no request."""

    limits = Limits()
    draining = threading.Event()

    def load(self) -> None:
        pass

    def respond(self, request: Request) -> Response:
        raise AssertionError("no request was sent")

    def refuse(self, status: int, message: str) -> Response:
        raise AssertionError("no request was sent")


def connected_after(turns: int, burst: int, limits: Limits | None = None) -> int:
    """Connections the server has set up `turns` turns of the loop after `burst` came in at once."""

    async def main() -> int:
        handler = Idle()
        handler.limits = limits or Limits()
        server = HttpServer(handler)
        with socket.create_server(("127.0.0.1", 0), backlog=512) as listener:
            clients = [socket.create_connection(listener.getsockname()) for _ in range(burst)]
            acceptor = asyncio.get_running_loop().create_task(server.accept(listener))
            try:
                for _ in range(turns):
                    await asyncio.sleep(0)
                return len(server.connections)
            finally:
                acceptor.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await acceptor
                for connection in list(server.connections):
                    connection.abort()
                for client in clients:
                    client.close()
                await asyncio.sleep(0)

    return asyncio.run(main())


def test_a_burst_of_connections_is_set_up_within_a_few_turns_of_the_loop() -> None:
    assert connected_after(turns=10, burst=100) == 100


def test_a_burst_takes_no_more_places_than_max_connections() -> None:
    assert connected_after(turns=10, burst=100, limits=Limits(max_connections=40)) <= 40
