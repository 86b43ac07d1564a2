"""HTTP serving: mlpack's server, batched and not, vs Starlette on uvicorn[standard], BentoML and MLflow.

The same random forest (100 trees; 5 features, 2 of them categorical, nested fields) behind each
server, single-record `POST` requests, measured with wrk on loopback at 1, 8 and 64 connections;
one worker process each, onnxruntime on one thread. Servers (benchmarks/serve_peers.py):

    mlpack              `mlpack serve` as it ships: adaptive batching on, drift tracking on
    mlpack unbatched    the same with --batch-max-records 1: one onnxruntime call per request
    mlpack (drift off)  batched, MLPACK_DRIFT_WINDOW=0; and "control", a second one (an A/A pair)
    mlpack@REV          with --baseline REV: the server of an older commit (git archive), e.g. the
                        one before a change, so "N x today's" is measured in the same run; and
                        "mlpack@REV unbatched", its unbatched server, for the unbatched path's before
    starlette+uvicorn   the same runtime behind Starlette on uvicorn with uvloop and httptools
                        (`pip install 'mlpack-onnx[bench]'`; missing: skipped)
    bentoml             BentoML 1.x, adaptive batching on (a batchable API), the same runtime and
                        .onnx. Its own venv, made on first use at --bentoml-venv (pip, once):
                            python benchmarks/serve.py --bentoml-venv /tmp/mlpack-bench-bentoml
                        --no-bentoml skips it
    mlflow              `mlflow models serve` of the scikit-learn pipeline, if --mlflow-python names
                        an interpreter with MLflow (its own venv: python3 -m venv /tmp/mlflow-venv &&
                        /tmp/mlflow-venv/bin/pip install mlflow scikit-learn==1.9.1, then
                        /tmp/mlflow-venv/bin/pip install --no-deps -e .)

Every level of connections starts every server afresh (BentoML's batching adapts to what it has
seen, over minutes) and warms each for a second at that level; then `--rounds` rounds run each
server once, in an order that rotates round by round, so the machine's speed drifting during the
run favours none of them. Ratios are the medians of the per-round ratios of two servers.

    python benchmarks/serve.py [--seconds 5] [--rounds 3] [--baseline REV] [--only-drift]
"""

from __future__ import annotations

import argparse
import json
import os
import pickle
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from benchmarks.serve_peers import MLFLOW_SAVE, STARLETTE_APP, bentoml_service, bentoml_venv  # noqa: E402
from mlpack.source.embedded import free_port  # noqa: E402
from tests.helpers.documents import subscribers  # noqa: E402
from tests.helpers.training import config_for, export  # noqa: E402

CONCURRENCY = (1, 8, 64)
# With two or more CPUs the servers run on CPU 0 and wrk on the rest, so that the load generator and
# the server under test do not take turns on one core: on a 2-core VM that contention alone moved
# one server's CPU per request by +-30 % from run to run, more than any effect measured here.
CPUS = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []
SERVER_CPUS, CLIENT_CPUS = (CPUS[:1], CPUS[1:]) if len(CPUS) >= 2 else (CPUS, CPUS)
WARM_SECONDS = 1


@dataclass
class Server:
    name: str
    command: list[str]
    ready_url: str
    url: str
    body: str
    env: dict[str, str] = field(default_factory=dict)
    proc: subprocess.Popen | None = None


def wait_for(url: str, proc: subprocess.Popen, log: Path, timeout: float = 180) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited: {log.read_text()[-2000:]}")
        try:
            urllib.request.urlopen(url, timeout=1).close()
            return
        except OSError:
            time.sleep(0.3)
    raise RuntimeError(f"{url} did not answer")


def wrk(url: str, body: str, connections: int, seconds: int, scratch: Path) -> dict[str, float]:
    script = scratch / "post.lua"
    script.write_text(
        'wrk.method = "POST"\nwrk.headers["Content-Type"] = "application/json"\n'
        f"wrk.body = {json.dumps(body)}\n"
        "done = function(summary, latency, requests)\n"
        '  io.write(string.format("P50 %d\\nP99 %d\\nERR %d\\n", latency:percentile(50), latency:percentile(99),'
        " summary.errors.status + summary.errors.connect + summary.errors.read"
        " + summary.errors.write + summary.errors.timeout))\n"
        "end\n"
    )
    threads = min(connections, 2)
    command = ["wrk", "-t", str(threads), "-c", str(connections), "-d", f"{seconds}s", "--latency", "-s", str(script)]
    out = subprocess.run([*_pinned(CLIENT_CPUS), *command, url], capture_output=True, text=True, check=True).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    p50 = int(re.search(r"^P50 (\d+)", out, re.M).group(1)) / 1000
    p99 = int(re.search(r"^P99 (\d+)", out, re.M).group(1)) / 1000
    errors = int(re.search(r"^ERR (\d+)", out, re.M).group(1))
    return {"rps": rps, "p50_ms": p50, "p99_ms": p99, "errors": errors}


def cpu_seconds(pid: int) -> tuple[float, float]:
    """User and system CPU time so far of a process and its live descendants (Linux /proc), all
    threads included: `mlflow models serve` and `bentoml serve` answer from child processes."""
    stats: dict[int, list[str]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stats[int(entry.name)] = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:  # gone meanwhile
                continue
    family, user, system = {pid}, 0, 0
    for _ in range(8):  # a few generations deep is plenty
        family |= {child for child, fields in stats.items() if int(fields[1]) in family}
    for member in family & stats.keys():
        fields = stats[member]
        user, system = user + int(fields[11]), system + int(fields[12])
    tick = os.sysconf("SC_CLK_TCK")
    return user / tick, system / tick


def _pinned(cpus: list[int]) -> list[str]:
    return ["taskset", "-c", ",".join(map(str, cpus))] if cpus and shutil.which("taskset") else []


def start(server: Server, scratch: Path) -> None:
    log = scratch / f"{re.sub(r'[^a-z0-9]+', '-', server.name)}.log"
    with log.open("w") as out:  # a file, not a pipe nobody reads: a full pipe would stall the server
        server.proc = subprocess.Popen(
            [*_pinned(SERVER_CPUS), *server.command],
            stdout=out,
            stderr=subprocess.STDOUT,
            env={**os.environ, **server.env},
            cwd=scratch,
        )
    wait_for(server.ready_url, server.proc, log)


def stop(server: Server) -> None:
    if server.proc is None:
        return
    server.proc.terminate()
    try:
        server.proc.wait(30)
    except subprocess.TimeoutExpired:
        server.proc.kill()
        server.proc.wait()
    server.proc = None


def measure(server: Server, connections: int, seconds: int, scratch: Path) -> dict[str, float]:
    assert server.proc is not None
    user, system = cpu_seconds(server.proc.pid)
    run = wrk(server.url, server.body, connections, seconds, scratch)
    # CPU the server spent per request (all its processes and threads): steadier than req/s on a busy
    # machine; and the kernel's part of it (system time: sockets, epoll, scheduling).
    user_after, system_after = cpu_seconds(server.proc.pid)
    requests = max(1.0, run["rps"] * seconds)
    run["cpu_us"] = 1e6 * (user_after - user + system_after - system) / requests
    run["sys_us"] = 1e6 * (system_after - system) / requests
    return run


def servers(args: argparse.Namespace, scratch: Path) -> list[Server]:
    config = config_for(
        "sklearn.ensemble.RandomForestClassifier", "classification", {"n_estimators": 100, "random_state": 0}
    )
    exported = export(config, subscribers(400))
    onnx, meta = scratch / "model.onnx", scratch / "metadata.json"
    onnx.write_bytes(exported.onnx_bytes)
    meta.write_text(json.dumps(exported.metadata))
    record = subscribers(1, seed=3, absent=False)[0]
    body = json.dumps(record)
    one = {"MLPACK_THREADS": "1"}

    def mlpack(name: str, env: dict[str, str], python_path: str = "") -> Server:
        port = free_port()
        command = [sys.executable, "-m", "mlpack", "serve", str(onnx), "--port", str(port)]
        env = {**one, **env, **({"PYTHONPATH": python_path} if python_path else {})}
        return Server(name, command, f"http://127.0.0.1:{port}/readyz", f"http://127.0.0.1:{port}/predict", body, env)

    chosen = [
        mlpack("mlpack", {}),
        mlpack("mlpack (drift off)", {"MLPACK_DRIFT_WINDOW": "0"}),
        mlpack("control", {"MLPACK_DRIFT_WINDOW": "0"}),
    ]
    if args.only_drift:
        return chosen
    chosen.insert(1, mlpack("mlpack unbatched", {"MLPACK_BATCH_MAX_RECORDS": "1"}))
    if args.baseline:
        folder = scratch / "baseline"
        folder.mkdir()
        archive = subprocess.run(
            ["git", "-C", str(REPO), "archive", args.baseline, "src"], capture_output=True, check=True
        )
        subprocess.run(["tar", "-x", "-C", str(folder)], input=archive.stdout, check=True)
        if "batch_max_records" in (folder / "src/mlpack/runtime/settings.py").read_text():
            chosen.append(mlpack(f"mlpack@{args.baseline}", {}, str(folder / "src")))
        # And unbatched (a server from before batching ignores the variable: only that one is run).
        unbatched = {"MLPACK_BATCH_MAX_RECORDS": "1"}
        chosen.append(mlpack(f"mlpack@{args.baseline} unbatched", unbatched, str(folder / "src")))
    try:
        import httptools  # noqa: F401
        import starlette  # noqa: F401
        import uvicorn  # noqa: F401
        import uvloop  # noqa: F401

        (scratch / "starlette_app.py").write_text(
            STARLETTE_APP.format(src=str(REPO / "src"), onnx=str(onnx), meta=str(meta))
        )
        port = free_port()
        command = [sys.executable, "-m", "uvicorn", "starlette_app:app", "--port", str(port), "--log-level", "warning"]
        command += ["--app-dir", str(scratch), "--no-access-log", "--loop", "uvloop", "--http", "httptools"]
        url = f"http://127.0.0.1:{port}"
        chosen.append(Server("starlette+uvicorn", command, f"{url}/readyz", f"{url}/predict", body, one))
    except ImportError:
        print("starlette / uvicorn[standard] (uvloop, httptools) not installed: skipped")
    if not args.no_bentoml:
        bentoml = bentoml_venv(Path(args.bentoml_venv))
        bentoml_service(scratch / "bento", REPO / "src", onnx, meta)
        port = free_port()
        command = [str(bentoml), "serve", "service:Churn", "--port", str(port), "--working-dir", str(scratch / "bento")]
        env = {**one, "BENTOML_DO_NOT_TRACK": "True", "BENTOML_HOME": str(scratch / "bentoml-home")}
        url = f"http://127.0.0.1:{port}"
        # A batchable API takes a batch: each request's body is a list of one record.
        chosen.append(Server("bentoml", command, f"{url}/readyz", f"{url}/predict", json.dumps([record]), env))
    if Path(args.mlflow_python).is_file():
        pickled = scratch / "pipeline.pkl"
        pickled.write_bytes(pickle.dumps(exported.trained.pipeline))
        model_dir = scratch / "mlflow-model"
        subprocess.run(
            [args.mlflow_python, "-c", MLFLOW_SAVE, str(pickled), str(model_dir)], check=True, capture_output=True
        )
        names = {f["name"]: f["input"] for f in exported.metadata["features"]}
        flat = {
            names["tenure_months"]: record["tenure_months"],
            names["support_calls"]: record["support_calls"],
            names["contract"]: record["contract"],
            names["billing.monthly_charges"]: record["billing"]["monthly_charges"],
            names["billing.method"]: record["billing"]["method"],
        }
        port = free_port()
        mlflow = str(Path(args.mlflow_python).parent / "mlflow")
        command = [mlflow, "models", "serve", "-m", str(model_dir), "-p", str(port), "--env-manager", "local"]
        env = {"PATH": f"{Path(args.mlflow_python).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
        url = f"http://127.0.0.1:{port}"
        body = json.dumps({"dataframe_records": [flat]})
        chosen.append(Server("mlflow", [*command, "--workers", "1"], f"{url}/ping", f"{url}/invocations", body, env))
    else:
        print(f"no MLflow at {args.mlflow_python}: skipped")
    return chosen


Runs = dict[str, dict[int, list[dict[str, float]]]]  # server → connections → one run per round


def run_rounds(chosen: list[Server], args: argparse.Namespace, scratch: Path) -> Runs:
    runs: Runs = {server.name: {} for server in chosen}
    for connections in CONCURRENCY:
        try:
            for server in chosen:
                start(server, scratch)
                check = urllib.request.Request(
                    server.url, data=server.body.encode(), headers={"Content-Type": "application/json"}
                )
                answer = urllib.request.urlopen(check, timeout=30).read()
                if connections == CONCURRENCY[0]:
                    print(f"{server.name}: {answer[:100]!r}", flush=True)
                wrk(server.url, server.body, connections, WARM_SECONDS, scratch)
            for round_ in range(max(1, args.rounds)):
                turn = round_ % len(chosen)
                for server in chosen[turn:] + chosen[:turn]:
                    runs[server.name].setdefault(connections, []).append(
                        measure(server, connections, args.seconds, scratch)
                    )
        finally:
            for server in chosen:
                stop(server)
        print(f"{connections} connections: done", flush=True)
    return runs


def ratio(runs: Runs, ours: str, theirs: str, connections: int, key: str) -> tuple[float, float, float]:
    """The median, lowest and highest of the per-round ratios ours / theirs."""
    pairs = zip(runs[ours][connections], runs[theirs][connections])
    values = [a[key] / b[key] if b[key] else float("inf") for a, b in pairs]
    return statistics.median(values), min(values), max(values)


def report(runs: Runs, args: argparse.Namespace) -> bool:
    """The table, the ratios and the targets; whether every target that could be checked was met."""
    print(f"\nsingle-record POST, {args.seconds} s per run, {args.rounds} rounds, 1 worker each (wrk on loopback)")
    columns = f"{'conns':>6}{'req/s':>10}{'p50 ms':>9}{'p99 ms':>9}{'CPU us/req':>12}{'of it sys':>10}{'errors':>8}"
    print(f"{'server':<22}{columns}")
    for name, by_connections in runs.items():
        for connections, rounds in by_connections.items():
            m = {key: statistics.median(run[key] for run in rounds) for key in rounds[0]}
            print(
                f"{name:<22}{connections:>6}{m['rps']:>10.0f}{m['p50_ms']:>9.2f}{m['p99_ms']:>9.2f}"
                f"{m['cpu_us']:>12.0f}{m['sys_us']:>10.0f}{m['errors']:>8.0f}"
            )
    ours = ("mlpack", "mlpack (drift off)", "control")
    pairs = [("mlpack", other) for other in runs if other not in ours and other != "mlpack unbatched"]
    pairs += [("mlpack", "mlpack unbatched")] if "mlpack unbatched" in runs else []
    pairs += [("mlpack unbatched", other) for other in ("starlette+uvicorn", "bentoml") if other in runs]
    pairs += [("mlpack unbatched", other) for other in runs if other.startswith("mlpack@") and "unbatched" in other]
    pairs += [("mlpack", "mlpack (drift off)"), ("control", "mlpack (drift off)")]
    print(f"\nratios (median of {args.rounds} rounds, range in brackets)")
    for ours, theirs in pairs:
        if ours not in runs or theirs not in runs:
            continue
        for connections in CONCURRENCY:
            parts = []
            for key, what in (("rps", "req/s"), ("p99_ms", "p99"), ("cpu_us", "CPU per request")):
                middle, low, high = ratio(runs, ours, theirs, connections, key)
                parts.append(f"{middle:.2f}x {what} ({low:.2f}-{high:.2f})")
            print(f"{ours} vs {theirs} @ {connections}: " + ", ".join(parts))
    return targets(runs)


def targets(runs: Runs) -> bool:
    """Issue 20's acceptance figures (and MLflow's), each checked only where both sides ran."""

    def median(name: str, connections: int, key: str) -> float:
        return statistics.median(run[key] for run in runs[name][connections])

    def rps(ours: str, theirs: str, connections: int) -> float:
        return ratio(runs, ours, theirs, connections, "rps")[0]

    checks: list[tuple[str, bool]] = []
    baseline = next((name for name in runs if name.startswith("mlpack@")), None)
    if "starlette+uvicorn" in runs and "mlpack unbatched" in runs:
        wanted = {1: 1.2, 8: 1.5, 64: 1.5}
        met = all(rps("mlpack unbatched", "starlette+uvicorn", c) >= wanted[c] for c in CONCURRENCY)
        checks.append(("unbatched >= 1.2x / 1.5x / 1.5x Starlette on uvicorn[standard] req/s at 1 / 8 / 64", met))
        checks.append(
            ("unbatched server CPU per request <= 90 us at 64", median("mlpack unbatched", 64, "cpu_us") <= 90)
        )
        checks.append(("batched server CPU per request <= 90 us at 64", median("mlpack", 64, "cpu_us") <= 90))
    # Like with like: the unbatched server's p99 against the baseline's unbatched server, and batching's
    # gain against one onnxruntime call per request (issue 20's "today's" server), which is the
    # baseline's unbatched server too. Against a baseline that batches already, its batched server
    # would make both checks say something else (a p99 of batching, a gain over batching).
    before = f"{baseline} unbatched" if baseline and f"{baseline} unbatched" in runs else baseline
    if before and "mlpack unbatched" in runs:
        worse = median("mlpack unbatched", 64, "p99_ms") > median(before, 64, "p99_ms")
        checks.append((f"unbatched p99 at 64 no worse than {before}'s", not worse))
    if before:
        checks.append((f"batched >= 3x {before}'s req/s at 64", rps("mlpack", before, 64) >= 3))
    if "bentoml" in runs:
        checks.append(
            ("batched ahead of BentoML in req/s at 8 and 64", all(rps("mlpack", "bentoml", c) > 1 for c in (8, 64)))
        )
    if "mlpack (drift off)" in runs:
        met = all(rps("mlpack", "mlpack (drift off)", c) >= 0.95 for c in CONCURRENCY)
        checks.append(("drift tracking costs <= 5% req/s (median ratio, each level)", met))
    if "mlflow" in runs:
        met = all(
            rps("mlpack", "mlflow", c) >= 2 and median("mlpack", c, "p99_ms") < median("mlflow", c, "p99_ms")
            for c in CONCURRENCY
        )
        checks.append((">= 2x MLflow's req/s with a lower p99", met))
    print()
    for text, met in checks:
        print(f"target ({text}): {'met' if met else 'MISSED'}")
    return all(met for _, met in checks)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=int, default=5, help="per run (default 5)")
    parser.add_argument("--rounds", type=int, default=3, help="runs of each server per level (default 3)")
    parser.add_argument(
        "--baseline", help="a git revision whose server to measure too, e.g. the commit before a change"
    )
    parser.add_argument("--bentoml-venv", default="/tmp/mlpack-bench-bentoml", help="BentoML's venv, made if missing")
    parser.add_argument("--no-bentoml", action="store_true", help="skip BentoML")
    parser.add_argument("--mlflow-python", default="/tmp/mlflow-venv/bin/python")
    parser.add_argument("--only-drift", action="store_true", help="only drift tracking on vs off, and the A/A control")
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        sys.exit("wrk is needed: apt-get install wrk")
    scratch = Path(tempfile.mkdtemp(prefix="mlpack-bench-"))
    try:
        met = report(run_rounds(servers(args, scratch), args, scratch), args)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return 0 if met else 1


if __name__ == "__main__":
    raise SystemExit(main())
