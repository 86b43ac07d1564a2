"""`serve`: one process, or forked workers sharing the listening socket, until SIGTERM.

SIGTERM stops accepting, lets requests in flight finish (up to `Limits.drain_timeout`), then exits 0.
Every setting comes from `ServeSettings`, read once in `serve_args` before anything listens.
With `--workers N` the socket is bound once and shared; each process loads its own onnxruntime
session after the fork, counts into its own row of the shared metrics, and exits if the parent dies.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket
import sys
from collections.abc import Callable
from dataclasses import fields
from typing import Any, List, Optional

from ..lifetime import parent_death_signal
from ..settings import (
    DEFAULT_BATCH_MAX_RECORDS,
    DEFAULT_BATCH_WAIT_US,
    DEFAULT_DRIFT_WINDOW,
    Limits,
    ServeSettings,
    SettingsError,
)
from .app import App
from .batching import Batcher, BatchStats
from .drift_tracking import DriftTracking
from .http import HttpServer
from .inference_log import InferenceLog
from .metrics import Metrics
from .served import ServedModel

log = logging.getLogger("mlpack.server")


def serve(model: ServedModel, settings: Optional[ServeSettings] = None) -> int:
    """Serve until SIGTERM or SIGINT; drain in-flight requests; return the exit code (0).

    `settings`: read once, before anything listens (default: `ServeSettings.read` of the model's
    [serve] and the environment); a bad value has already been a `SettingsError` by then."""
    if settings is None:
        settings = ServeSettings.read(model.metadata.get("serve", {}), {})
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    limits, workers = settings.limits, settings.workers
    try:
        sock = socket.create_server((settings.host, settings.port), reuse_port=False, backlog=1024)
    except OSError as exc:  # in use, not an address of this machine, a privileged port
        why = os.strerror(exc.errno) if exc.errno else str(exc)  # create_server's strerror repeats the address
        raise SettingsError(f"cannot listen on {settings.host}:{settings.port}: {why}") from None
    # Made before the fork: every worker counts into the same shared memory, each in its own row.
    drift = DriftTracking.for_model(model, settings.drift_window, workers)
    batches = BatchStats.for_settings(settings)  # None: batching off
    routes = list(App(model, limits=limits).allowed)
    metrics = Metrics(routes, workers, [drift] if drift else [], [batches] if batches else [])
    if settings.inference_log is not None:
        InferenceLog.check(model, settings.inference_log)  # once, here: not one error line per worker
    if settings.inference_log_missing:
        log.warning("inference log is on in the config but %s is not set: not logging", settings.inference_log_missing)
    parent = os.getpid()
    children: List[int] = []
    # SIGTERM when the parent dies, at once rather than at the next watchdog tick (Linux; elsewhere the
    # watchdog alone does it). Looked up before the forks: a forked child should not import.
    die_with_parent = parent_death_signal(signal.SIGTERM)
    for slot in range(1, workers):
        pid = os.fork()
        if pid == 0:
            if die_with_parent is not None:
                die_with_parent()
            ready = f"worker {os.getpid()} ready"
            try:
                code = _run_process(model, settings, metrics, batches, slot, sock, ready, parent=parent)
            except SettingsError as exc:  # a worker's own start (its inference log), said as the parent would
                code = _said(exc)
            os._exit(code)
        children.append(pid)

    def stop_children() -> None:
        for pid in children:
            with contextlib.suppress(ProcessLookupError):  # a worker that already exited
                os.kill(pid, signal.SIGTERM)

    where = f"http://{settings.host}:{sock.getsockname()[1]}"
    banner = f"serving {model.name} {model.version} on {where}" + (f" with {workers} workers" if workers > 1 else "")
    code = _run_process(model, settings, metrics, batches, 0, sock, banner, stop_children)
    for pid in children:
        os.waitpid(pid, 0)
    return code


def serve_args(model: ServedModel, args: Any) -> int:
    """`serve` with the options `add_serve_arguments` put on the command line; a bad setting (flag,
    variable or [serve]) is one line on stderr and exit code 2."""
    flags = {name: getattr(args, name, None) for name in FLAGS}
    try:
        return serve(model, ServeSettings.read(model.metadata.get("serve", {}), flags))
    except SettingsError as exc:  # StartFailure too: what the server found it cannot use as it starts
        return _said(exc)


def _said(exc: SettingsError) -> int:
    """A setting's or a start's error as its one line on stderr; the exit code it carries."""
    print(f"error: {exc.message}", file=sys.stderr, flush=True)
    return exc.exit_code


def _run_process(
    model: ServedModel,
    settings: ServeSettings,
    metrics: Metrics,
    batches: Optional[BatchStats],
    slot: int,
    sock: socket.socket,
    banner: str,
    on_stop: Optional[Callable[[], object]] = None,
    parent: Optional[int] = None,
) -> int:
    metrics.attach(slot)
    app = App(model, limits=settings.limits, metrics=metrics)
    if settings.inference_log is not None:
        app.inference_log = InferenceLog.connect(
            model,
            settings.inference_log,
            metrics.count_log,
            max_bytes=settings.limits.log_queue_bytes or None,
            gauge=metrics.log_queue_bytes,
        )
    if batches is not None:
        observe = metrics.observe_feeds if metrics.observers else None
        app.batcher = Batcher(model, settings.batch_max_records, settings.batch_wait_us, observe, batches)
    watch = (lambda stop: _watch_parent(parent, stop)) if parent is not None else None
    try:
        asyncio.run(HttpServer(app).run(sock, banner, on_stop, watch))
    finally:
        sock.close()
        if app.inference_log is not None:
            app.inference_log.close()
    return 0


async def _watch_parent(parent: int, stop: asyncio.Event) -> None:
    """A worker whose parent died (even by SIGKILL) stops too, instead of serving on unsupervised."""
    while os.getppid() == parent:
        await asyncio.sleep(1.0)
    log.warning("the parent process %d is gone: stopping", parent)
    stop.set()


def add_serve_arguments(parser: Any) -> None:
    """The serve options; none reads the environment here (ServeSettings does, once, when serving):
    a bad MLPACK_PORT must not break `--help` or another command."""
    parser.add_argument("--host", default=None, help="address to listen on (default: MLPACK_HOST or 127.0.0.1)")
    parser.add_argument("--port", type=int, default=None, help="port to listen on (default: MLPACK_PORT or 8080)")
    parser.add_argument(
        "--workers", type=int, default=None, help="processes sharing the port (default: MLPACK_WORKERS or 1)"
    )
    parser.add_argument(
        "--drift-window",
        type=int,
        default=None,
        help="recent records per worker that /metrics' drift figures cover, 0 = off "
        f"(default: MLPACK_DRIFT_WINDOW, [serve].drift_window or {DEFAULT_DRIFT_WINDOW})",
    )
    parser.add_argument(
        "--batch-max-records",
        type=int,
        default=None,
        help="records in one onnxruntime call of concurrent requests, 1 = each request alone (default: "
        f"MLPACK_BATCH_MAX_RECORDS, [serve].batch_max_records or {DEFAULT_BATCH_MAX_RECORDS})",
    )
    parser.add_argument(
        "--batch-wait-us",
        type=int,
        default=None,
        help="microseconds a request may wait for others to join its call (default: MLPACK_BATCH_WAIT_US, "
        f"[serve].batch_wait_us or {DEFAULT_BATCH_WAIT_US})",
    )
    defaults = Limits()
    helps = {
        "max_body_bytes": "request body limit in bytes",
        "max_records": "records (or v2 rows) per request",
        "large_bodies": "bodies over 64 KiB read and parsed at once (bounds memory)",
        "max_connections": "open connections (more wait in the backlog)",
        "idle_timeout": "seconds to wait for a request's head or body, or the next request",
        "write_timeout": "seconds a client may take to read an answer",
        "drain_timeout": "seconds SIGTERM waits for requests in flight",
        "log_queue_bytes": "bytes the inference log may queue while the database is slow or down",
    }
    shown = {"log_queue_bytes": "1/16 of the memory limit, 4-64 MiB"}
    for spec in fields(Limits):
        parser.add_argument(
            f"--{spec.name.replace('_', '-')}",
            type=int if spec.type in ("int", int) else float,
            default=None,
            help=f"{helps.get(spec.name, spec.name.replace('_', ' '))} (default: MLPACK_{spec.name.upper()} or "
            f"{shown.get(spec.name, getattr(defaults, spec.name))})",
        )


# Every option above, by its name in the parsed arguments: what serve_args hands to ServeSettings.
FLAGS = (
    "host",
    "port",
    "workers",
    "drift_window",
    "batch_max_records",
    "batch_wait_us",
    *(spec.name for spec in fields(Limits)),
)


__all__ = ["add_serve_arguments", "serve", "serve_args"]
