"""A throwaway local MongoDB-compatible server for demos and builds without a database.

SecantusDB (GPL-2.0) speaks the MongoDB wire protocol; it is started as a separate process and
never imported, so mlpack's own licence is unaffected.
"""

from __future__ import annotations

import contextlib
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from mlpack.errors import ExternalError
from mlpack.redaction import child_environment
from mlpack.runtime.lifetime import parent_death_signal

SERVER_COMMAND = "secantusd-py"
START_TIMEOUT_S = 30.0


def find_server_executable() -> str | None:
    # A venv's scripts are not on PATH unless it is activated; look beside the interpreter too.
    beside = Path(sys.executable).parent / SERVER_COMMAND
    if beside.is_file():
        return str(beside)
    return shutil.which(SERVER_COMMAND)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait_until_listening(proc: subprocess.Popen[bytes], port: int, log: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            tail = log.read_text(errors="replace")[-2000:]
            raise ExternalError(f"the embedded MongoDB server exited at start (code {proc.returncode})", details=tail)
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return
        time.sleep(0.1)
    stop_process(proc)
    raise ExternalError(f"the embedded MongoDB server did not listen on port {port} within {START_TIMEOUT_S:.0f} s")


def stop_process(proc: subprocess.Popen[bytes], timeout: float = 10.0) -> None:
    if proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


@contextlib.contextmanager
def embedded_server(storage: str = ":memory:", *, extra_args: tuple[str, ...] = ()) -> Iterator[str]:
    """Start a local server, yield its connection string, stop it (SIGTERM) afterwards."""
    executable = find_server_executable()
    if executable is None:
        raise ExternalError(
            "embedded = true needs the SecantusDB server, which is not installed: "
            "pip install 'mlpack-onnx[embedded]' (or set the uri_env variable to a MongoDB server)"
        )
    port = free_port()
    with tempfile.TemporaryDirectory(prefix="mlpack-embedded-") as scratch:
        log = Path(scratch) / "server.log"
        with log.open("wb") as log_file:
            proc = subprocess.Popen(
                [
                    executable,
                    "--host",
                    "127.0.0.1",
                    "--port",
                    str(port),
                    "--storage-path",
                    storage,
                    "--log-level",
                    "WARNING",
                    *extra_args,
                ],
                stdout=log_file,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                cwd=scratch,
                preexec_fn=parent_death_signal(),  # killed with the build: it has nothing to save
                env=child_environment({"PYTHONWARNINGS": "ignore"}),  # no secret a config names
            )
        try:
            _wait_until_listening(proc, port, log)
            yield f"mongodb://127.0.0.1:{port}/"
        finally:
            stop_process(proc)
