"""The memory a model's server really uses: started from the wheel as the image starts it, asked for one
prediction, and its resident and peak memory read from /proc. `mlpack k8s` sizes its requests and
limits from this measurement instead of a guess.
"""

from __future__ import annotations

import json
import math
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mlpack.errors import ExternalError
from mlpack.runtime import Metadata
from mlpack.runtime.serving.inference_log import MAX_QUEUE_BYTES, MEMORY_SHARE, MIN_QUEUE_BYTES

MIB = 1024 * 1024
START_TIMEOUT_S = 60


def round_up(value: float, step: int) -> int:
    return int(math.ceil(value / step) * step)


@dataclass(frozen=True)
class Footprint:
    """What one serving process measured: resident memory after a prediction, and its peak."""

    model_bytes: int
    rss_bytes: int
    peak_bytes: int
    # What requests in flight may hold at once, from the server's own limits (Limits.worst_case_bytes).
    requests_bytes: int = 64 * MIB

    @property
    def memory_request(self) -> str:
        return f"{round_up(self.rss_bytes * 1.25, 16 * MIB) // MIB}Mi"

    @property
    def memory_limit(self) -> str:
        # Peak (session creation copies the model) plus the most that requests in flight can hold:
        # with the default limits two 10 MiB bodies, their copies and parses (150 MiB), so no request
        # can take a replica past its limit (a 3 MiB nested body once reached 240 MB against 208 MiB).
        headroom = max(self.peak_bytes * 1.5, self.rss_bytes * 2) + 4 * self.model_bytes + self.requests_bytes
        # The inference log's queue takes a sixteenth of the limit by default (4 to 64 MiB): on top.
        headroom += min(MAX_QUEUE_BYTES, max(MIN_QUEUE_BYTES, headroom / (MEMORY_SHARE - 1)))
        return f"{round_up(headroom, 16 * MIB) // MIB}Mi"


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _example_record(metadata: Metadata) -> dict[str, Any]:
    record: dict[str, Any] = {}
    for feature in metadata["features"]:
        *parents, leaf = feature["name"].split(".")
        node = record
        for parent in parents:
            node = node.setdefault(parent, {})
        node[leaf] = 1.0 if feature["kind"] == "numeric" else None  # None: a missing category, always valid
    return record


def _memory(pid: int) -> tuple[int, int]:
    status = Path(f"/proc/{pid}/status").read_text(encoding="utf-8")
    fields = dict(re.findall(r"^(VmRSS|VmHWM):\s+(\d+) kB", status, re.MULTILINE))
    return int(fields["VmRSS"]) * 1024, int(fields["VmHWM"]) * 1024


def _without_log(metadata: Metadata) -> dict[str, str]:
    """This environment, less the inference log's connection: the measuring request's 32 made-up records went
    into the production log when it was set here, and `mlpack monitor` counted them as live traffic. A model
    whose [serve] logs gets a log that reaches nothing (a loopback port with no listener), so what the log
    costs a pod, pymongo and its threads (~9 MiB), is measured and nothing is written."""
    serve = metadata.get("serve") or {}
    variable = serve.get("inference_log_uri_env") or "MLPACK_INFERENCE_LOG_URI"
    env = {k: v for k, v in os.environ.items() if k not in ("MLPACK_INFERENCE_LOG_URI", variable)}
    if serve.get("inference_log"):
        env[variable] = f"mongodb://127.0.0.1:{_free_port()}/?serverSelectionTimeoutMS=500&connectTimeoutMS=500"
    return env


def measure(artifact: Path, metadata: Metadata) -> Footprint:
    """Start the model's server as the image does (`python -m NAME serve`), predict once, read its memory."""
    with tempfile.TemporaryDirectory(prefix="mlpack-k8s-") as folder:
        if artifact.suffix == ".whl":
            with zipfile.ZipFile(artifact) as archive:
                archive.extractall(folder)
                model_bytes = archive.getinfo(f"{metadata['import_name']}/model.onnx").file_size
            command = [sys.executable, "-m", metadata["import_name"], "serve"]
        else:
            model_bytes = artifact.stat().st_size
            command = [sys.executable, "-m", "mlpack", "serve", str(artifact)]
        port = _free_port()
        env = {**_without_log(metadata), "PYTHONPATH": folder, "MLPACK_THREADS": "1", "PYTHONDONTWRITEBYTECODE": "1"}
        server = subprocess.Popen(
            [*command, "--host", "127.0.0.1", "--port", str(port)],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            start_new_session=True,
        )
        try:
            _wait_ready(server, port)
            request = urllib.request.Request(
                f"http://127.0.0.1:{port}/predict",
                data=json.dumps([_example_record(metadata)] * 32).encode(),
                headers={"Content-Type": "application/json"},
            )
            with urllib.request.urlopen(request, timeout=30) as answer:
                answer.read()
            rss, peak = _memory(server.pid)
        except (OSError, urllib.error.URLError) as exc:
            raise ExternalError(f"could not measure the model's server ({' '.join(command[1:3])}): {exc}") from None
        finally:
            os.killpg(server.pid, signal.SIGTERM)
            try:
                server.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(server.pid, signal.SIGKILL)
                server.wait()
            if server.stderr:
                server.stderr.close()
    return Footprint(model_bytes=model_bytes, rss_bytes=rss, peak_bytes=peak, requests_bytes=_requests_bytes(metadata))


def _requests_bytes(metadata: Metadata) -> int:
    """The server's worst case for requests in flight with the limits baked into the model ([serve])."""
    from mlpack.runtime.settings import Limits

    body = metadata.get("serve", {}).get("max_body_bytes")
    limits = Limits(max_body_bytes=int(body)) if isinstance(body, int) and body > 0 else Limits()
    return limits.worst_case_bytes


def _wait_ready(server: subprocess.Popen[bytes], port: int) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if server.poll() is not None:
            error = server.stderr.read().decode(errors="replace")[-500:] if server.stderr else ""
            raise ExternalError(f"the model's server exited before it was ready: {error.strip()}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=2) as answer:
                if answer.status == 200:
                    return
        except (OSError, urllib.error.URLError):
            time.sleep(0.1)
    raise ExternalError(f"the model's server was not ready within {START_TIMEOUT_S} s")
