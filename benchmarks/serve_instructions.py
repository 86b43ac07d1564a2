"""Instructions per request of the HTTP servers, counted by callgrind: figures the machine's load cannot move.

`serve.py` measures req/s and CPU time, which on a shared 2-CPU machine move by more than the
effects in question (its A/A pair has differed by 5-10 %). This counts the instructions a server
executes per single-record `POST /predict`, user space only (the kernel's part, sockets and epoll,
is not counted), which is repeatable to well under 1 % whatever else runs:

    mlpack unbatched          `mlpack serve --batch-max-records 1`, drift tracking on (as it ships)
    mlpack unbatched, no drift the same with MLPACK_DRIFT_WINDOW=0: what drift tracking costs
    control                   a second "mlpack unbatched": the A/A pair
    starlette+uvicorn         the same runtime behind Starlette on uvicorn with uvloop and httptools

Each server runs under `valgrind --tool=callgrind`, is warmed, then its counters are zeroed
(`callgrind_control -z`), N requests are sent over C keep-alive connections (each connection one
request at a time, as wrk does), and the counters are dumped. The model, record and Starlette app
are serve.py's. Batched serving is left out: under valgrind's slowdown requests gather into
batches differently from a real run. Instructions are not time (memory stalls are not counted, and
the model's call runs colder between requests than back to back), so this complements serve.py's
req/s; it does not replace it.

    python benchmarks/serve_instructions.py [--requests 1000] [--connections 1 64]
"""

from __future__ import annotations

import argparse
import asyncio
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from benchmarks.serve import Server, servers, wait_for  # noqa: E402

WARM_REQUESTS = 200


async def _one_connection(port: int, request: bytes, count: int) -> int:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    answered = 0
    for _ in range(count):
        writer.write(request)
        head = await reader.readuntil(b"\r\n\r\n")
        length = next(
            int(line.split(b":")[1]) for line in head.split(b"\r\n") if line.lower().startswith(b"content-length:")
        )
        await reader.readexactly(length)
        answered += head.startswith(b"HTTP/1.1 200")
    writer.close()
    return answered


def send(url: str, body: str, connections: int, requests: int) -> int:
    """`requests` POSTs over `connections` connections; how many were answered 200."""
    port = int(re.search(r":(\d+)/", url).group(1))
    path = url.split(str(port), 1)[1]
    data = body.encode()
    request = (
        f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(data)}\r\n\r\n"
    ).encode() + data

    async def run() -> int:
        each = requests // connections
        done = await asyncio.gather(*(_one_connection(port, request, each) for _ in range(connections)))
        return sum(done)

    return asyncio.run(run())


def _summary(path: Path) -> int:
    match = re.search(r"^summary: (\d+)", path.read_text(errors="replace"), re.M)
    if match is None:
        raise RuntimeError(f"no summary line in {path}")
    return int(match.group(1))


def count(server: Server, levels: list[int], requests: int, scratch: Path) -> dict[int, float]:
    """Instructions per request at each number of connections."""
    out = scratch / f"callgrind.{re.sub(r'[^a-z0-9]+', '-', server.name)}"
    log = out.with_suffix(".log")
    command = ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}", *server.command]
    with log.open("w") as sink:
        proc = subprocess.Popen(command, stdout=sink, stderr=subprocess.STDOUT, env=server_env(server), cwd=scratch)
    try:
        wait_for(server.ready_url, proc, log, timeout=900)
        figures: dict[int, float] = {}
        for part, connections in enumerate(levels, start=1):
            send(server.url, server.body, connections, WARM_REQUESTS)
            subprocess.run(["callgrind_control", "-z", str(proc.pid)], check=True, capture_output=True)
            total = (requests // connections) * connections
            answered = send(server.url, server.body, connections, total)
            if answered != total:
                raise RuntimeError(f"{server.name}: {total - answered} of {total} requests were not answered 200")
            subprocess.run(["callgrind_control", "-d", str(proc.pid)], check=True, capture_output=True)
            dump = Path(f"{out}.{part}")
            for _ in range(100):  # the dump is written by the server's next turn
                if dump.is_file() and "summary:" in dump.read_text(errors="replace"):
                    break
                time.sleep(0.2)
            figures[connections] = _summary(dump) / total
        return figures
    finally:
        proc.terminate()
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def server_env(server: Server) -> dict[str, str]:
    import os

    return {**os.environ, **server.env}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--requests", type=int, default=1000, help="requests counted at each level (default 1000)")
    parser.add_argument("--connections", type=int, nargs="+", default=[1, 64])
    args = parser.parse_args()
    for tool in ("valgrind", "callgrind_control"):
        if shutil.which(tool) is None:
            print(f"{tool} is not installed (Debian: apt-get install valgrind)", file=sys.stderr)
            return 2
    with tempfile.TemporaryDirectory(prefix="mlpack-serve-instructions-") as folder:
        scratch = Path(folder)
        chosen = servers(
            argparse.Namespace(only_drift=False, baseline=None, no_bentoml=True, mlflow_python="", bentoml_venv=""),
            scratch,
        )
        by_name = {server.name: server for server in chosen}
        unbatched = by_name["mlpack unbatched"]
        plan = [
            unbatched,
            Server(
                "mlpack unbatched, no drift",
                unbatched.command,
                unbatched.ready_url,
                unbatched.url,
                unbatched.body,
                {**unbatched.env, "MLPACK_DRIFT_WINDOW": "0"},
            ),
            Server("control", unbatched.command, unbatched.ready_url, unbatched.url, unbatched.body, unbatched.env),
        ]
        if "starlette+uvicorn" in by_name:
            plan.append(by_name["starlette+uvicorn"])
        results: dict[str, dict[int, float]] = {}
        for server in plan:
            results[server.name] = count(server, args.connections, args.requests, scratch)
            print(
                f"{server.name:28}"
                + "".join(f"  {c:>3} conns: {v / 1000:7.1f}k" for c, v in results[server.name].items())
            )
        print("\nratios (instructions per request; lower is cheaper):")
        for connections in args.connections:
            ours = results["mlpack unbatched"][connections]
            line = [f"{connections:>3} conns:", f"A/A {results['control'][connections] / ours:.3f}x"]
            line.append(f"drift on/off {ours / results['mlpack unbatched, no drift'][connections]:.3f}x")
            if "starlette+uvicorn" in results:
                line.append(f"mlpack/starlette {ours / results['starlette+uvicorn'][connections]:.3f}x")
            print("  ".join(line))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
