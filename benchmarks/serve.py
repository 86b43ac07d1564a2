"""HTTP serving: mlpack's server vs Starlette on uvicorn[standard] (same runtime) vs `mlflow models serve`.

The same random forest (100 trees; 5 features, 2 of them categorical, nested fields) behind each
server, single-record `POST` requests, measured with wrk on loopback at concurrency 1, 8 and 64
(bounded: a few seconds per run). All servers run with one worker process.

    python benchmarks/serve.py [--mlflow-python /path/to/venv/bin/python] [--seconds 5]

MLflow needs its own environment (it pins its own stack):
    python3 -m venv /tmp/mlflow-venv && /tmp/mlflow-venv/bin/pip install mlflow scikit-learn==1.9.1
    /tmp/mlflow-venv/bin/pip install --no-deps -e .   # the pipeline pickles mlpack's feature transformers
The peer is Starlette on uvicorn[standard], i.e. with uvloop and httptools (`pip install
'mlpack-onnx[bench]'`): plain uvicorn (asyncio + h11) flattered mlpack about 2x. Missing: skipped.
"""

from __future__ import annotations

import argparse
import itertools
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
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from mlpack.source.embedded import free_port  # noqa: E402
from tests.documents import subscribers  # noqa: E402
from tests.training import config_for, export  # noqa: E402

CONCURRENCY = (1, 8, 64)
# With two or more CPUs the servers run on CPU 0 and wrk on the rest, so that the load generator and
# the server under test do not take turns on one core: on a 2-core VM that contention alone moved
# one server's CPU per request by +-30 % from run to run, more than any effect measured here.
CPUS = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []
SERVER_CPUS, CLIENT_CPUS = (CPUS[:1], CPUS[1:]) if len(CPUS) >= 2 else (CPUS, CPUS)

STARLETTE_APP = """
import json, sys
from starlette.applications import Starlette
from starlette.responses import JSONResponse
from starlette.routing import Route
sys.path.insert(0, {src!r})
from mlpack.runtime import Model
model = Model({onnx!r}, json.load(open({meta!r}))).load()

async def predict(request):
    try:
        body = await request.json()
        labels, probabilities, _ = model.run(body)
    except ValueError as exc:
        return JSONResponse({{"error": str(exc)}}, status_code=422)
    return JSONResponse({{"predictions": labels, "probabilities": probabilities,
                         "model": {{"name": model.name, "version": model.version}}}})

async def ready(request):
    return JSONResponse({{"ready": True}})

app = Starlette(routes=[Route("/predict", predict, methods=["POST"]), Route("/readyz", ready)])
"""

MLFLOW_SAVE = """
import pickle, sys, mlflow.sklearn
pipeline = pickle.load(open(sys.argv[1], "rb"))
mlflow.sklearn.save_model(pipeline, sys.argv[2], serialization_format="cloudpickle")
"""


def wait_for(url: str, proc: subprocess.Popen, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited: {proc.stdout.read() if proc.stdout else ''}")
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
    out = subprocess.run(
        [
            *_pinned(CLIENT_CPUS),
            "wrk",
            "-t",
            str(threads),
            "-c",
            str(connections),
            "-d",
            f"{seconds}s",
            "--latency",
            "-s",
            str(script),
            url,
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    p50 = int(re.search(r"^P50 (\d+)", out, re.M).group(1)) / 1000
    p99 = int(re.search(r"^P99 (\d+)", out, re.M).group(1)) / 1000
    errors = int(re.search(r"^ERR (\d+)", out, re.M).group(1))
    return {"rps": rps, "p50_ms": p50, "p99_ms": p99, "errors": errors}


def cpu_seconds(pid: int) -> float:
    """User + system CPU time so far of a process and its live descendants (Linux /proc), all threads
    included: `mlflow models serve` answers from a child process."""
    stats: dict[int, list[str]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stats[int(entry.name)] = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:  # gone meanwhile
                continue
    family, total = {pid}, 0.0
    for _ in range(8):  # a few generations deep is plenty
        family |= {child for child, fields in stats.items() if int(fields[1]) in family}
    for member in family & stats.keys():
        fields = stats[member]
        total += int(fields[11]) + int(fields[12])
    return total / os.sysconf("SC_CLK_TCK")


def _pinned(cpus: list[int]) -> list[str]:
    return ["taskset", "-c", ",".join(map(str, cpus))] if cpus and shutil.which("taskset") else []


def start(command: list[str], ready_url: str, env: dict[str, str] | None = None) -> subprocess.Popen:
    proc = subprocess.Popen(
        [*_pinned(SERVER_CPUS), *command],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, **(env or {})},
    )
    wait_for(ready_url, proc)
    return proc


def stop(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(20)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mlflow-python", default="/tmp/mlflow-venv/bin/python")
    parser.add_argument("--seconds", type=int, default=5)
    parser.add_argument(
        "--drift-rounds",
        type=int,
        default=3,
        help="pairs of runs with drift tracking on and off (median of the ratios)",
    )
    parser.add_argument("--only-drift", action="store_true", help="only the drift tracking on/off comparison")
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        sys.exit("wrk is needed: apt-get install wrk")

    scratch = Path(tempfile.mkdtemp(prefix="mlpack-bench-"))
    config = config_for(
        "sklearn.ensemble.RandomForestClassifier", "classification", {"n_estimators": 100, "random_state": 0}
    )
    exported = export(config, subscribers(400))
    onnx_path, meta_path = scratch / "model.onnx", scratch / "metadata.json"
    onnx_path.write_bytes(exported.onnx_bytes)
    meta_path.write_text(json.dumps(exported.metadata))
    record = subscribers(1, seed=3, absent=False)[0]
    names = {f["name"]: f["input"] for f in exported.metadata["features"]}
    flat = {
        names["tenure_months"]: record["tenure_months"],
        names["support_calls"]: record["support_calls"],
        names["contract"]: record["contract"],
        names["billing.monthly_charges"]: record["billing"]["monthly_charges"],
        names["billing.method"]: record["billing"]["method"],
    }

    def mlpack_server(env: dict[str, str]) -> tuple[list[str], str, str, str, dict[str, str]]:
        port = free_port()
        return (
            [sys.executable, "-m", "mlpack", "serve", str(onnx_path), "--port", str(port)],
            f"http://127.0.0.1:{port}/readyz",
            f"http://127.0.0.1:{port}/predict",
            json.dumps(record),
            {"MLPACK_THREADS": "1", **env},
        )

    servers: dict[str, tuple[list[str], str, str, str, dict[str, str]]] = {}
    servers["mlpack"] = mlpack_server({})
    # The same server with drift tracking off (the /metrics drift figures): what tracking costs.
    servers["mlpack (drift off)"] = mlpack_server({"MLPACK_DRIFT_WINDOW": "0"})
    try:
        import httptools  # noqa: F401
        import starlette  # noqa: F401
        import uvicorn  # noqa: F401
        import uvloop  # noqa: F401

        app_file = scratch / "starlette_app.py"
        app_file.write_text(STARLETTE_APP.format(src=str(REPO / "src"), onnx=str(onnx_path), meta=str(meta_path)))
        port = free_port()
        servers["starlette+uvicorn"] = (
            [
                sys.executable,
                "-m",
                "uvicorn",
                "starlette_app:app",
                "--port",
                str(port),
                "--log-level",
                "warning",
                "--app-dir",
                str(scratch),
                "--no-access-log",
                "--loop",
                "uvloop",
                "--http",
                "httptools",
            ],
            f"http://127.0.0.1:{port}/readyz",
            f"http://127.0.0.1:{port}/predict",
            json.dumps(record),
            {"MLPACK_THREADS": "1"},
        )
    except ImportError:
        print("starlette / uvicorn[standard] (uvloop, httptools) not installed: skipped")
    if Path(args.mlflow_python).is_file():
        pickled = scratch / "pipeline.pkl"
        pickled.write_bytes(pickle.dumps(exported.trained.pipeline))
        subprocess.run(
            [args.mlflow_python, "-c", MLFLOW_SAVE, str(pickled), str(scratch / "mlflow-model")],
            check=True,
            capture_output=True,
        )
        port = free_port()
        mlflow = str(Path(args.mlflow_python).parent / "mlflow")
        servers["mlflow"] = (
            [
                mlflow,
                "models",
                "serve",
                "-m",
                str(scratch / "mlflow-model"),
                "-p",
                str(port),
                "--env-manager",
                "local",
                "--workers",
                "1",
            ],
            f"http://127.0.0.1:{port}/ping",
            f"http://127.0.0.1:{port}/invocations",
            json.dumps({"dataframe_records": [flat]}),
            {"PATH": f"{Path(args.mlflow_python).parent}{os.pathsep}{os.environ.get('PATH', '')}"},
        )
    else:
        print(f"no MLflow at {args.mlflow_python}: skipped")

    results: dict[str, dict[int, dict[str, float]]] = {}
    # Drift tracking on vs off: the servers up at once and measured in back-to-back runs, the
    # order cycling through every permutation round by round, so that the machine's speed drifting
    # during the run favours none of them; each round gives one on/off ratio, and the medians of
    # the ratios are compared. A second drift-off server is the control: its ratio to the first
    # (an A/A comparison, 1.00x in a perfect world) shows how far this machine's noise reaches.
    on, off = servers.pop("mlpack"), servers.pop("mlpack (drift off)")
    if args.only_drift:
        servers.clear()
    specs = {"mlpack": on, "mlpack (drift off)": off, "control": mlpack_server({"MLPACK_DRIFT_WINDOW": "0"})}
    procs = {name: start(spec[0], spec[1], spec[4]) for name, spec in specs.items()}
    ratios: dict[str, dict[int, list[dict[str, float]]]] = {"drift tracking on vs off": {}, "control (A/A)": {}}
    try:
        runs: dict[str, dict[int, list[dict[str, float]]]] = {name: {} for name in specs}
        orders = list(itertools.permutations(specs))
        for conc in CONCURRENCY:
            for round_ in range(max(1, args.drift_rounds)):
                measured: dict[str, dict[str, float]] = {}
                for name in orders[round_ % len(orders)]:
                    spec, proc = specs[name], procs[name]
                    before = cpu_seconds(proc.pid)
                    run = wrk(spec[2], spec[3], conc, args.seconds, scratch)
                    # CPU the server spent per request (all its threads): steadier than req/s on a busy machine.
                    run["cpu_us"] = 1e6 * (cpu_seconds(proc.pid) - before) / max(1.0, run["rps"] * args.seconds)
                    runs[name].setdefault(conc, []).append(run)
                    measured[name] = run
                base = measured["mlpack (drift off)"]
                for label, name in (("drift tracking on vs off", "mlpack"), ("control (A/A)", "control")):
                    ratio = {key: measured[name][key] / base[key] for key in ("rps", "p99_ms", "cpu_us")}
                    ratios[label].setdefault(conc, []).append(ratio)
        for name, by_conc in runs.items():
            if name != "control":
                results[name] = {
                    conc: {key: statistics.median(run[key] for run in rounds) for key in rounds[0]}
                    for conc, rounds in by_conc.items()
                }
    finally:
        for proc in procs.values():
            stop(proc)
    for name, (command, ready, url, body, env) in servers.items():
        proc = start(command, ready, env)
        try:
            check = urllib.request.Request(url, data=body.encode(), headers={"Content-Type": "application/json"})
            print(f"{name}: {urllib.request.urlopen(check, timeout=30).read()[:120]!r}")
            results[name] = {}
            for conc in CONCURRENCY:
                before = cpu_seconds(proc.pid)
                run = wrk(url, body, conc, args.seconds, scratch)
                run["cpu_us"] = 1e6 * (cpu_seconds(proc.pid) - before) / max(1.0, run["rps"] * args.seconds)
                results[name][conc] = run
        finally:
            stop(proc)

    print(f"\nsingle-record POST, {args.seconds} s per run, 1 worker each (wrk on loopback)")
    print(f"{'server':<20}{'conns':>6}{'req/s':>10}{'p50 ms':>10}{'p99 ms':>10}{'errors':>8}")
    for name, by_conc in results.items():
        for conc, r in by_conc.items():
            print(f"{name:<20}{conc:>6}{r['rps']:>10.0f}{r['p50_ms']:>10.2f}{r['p99_ms']:>10.2f}{r['errors']:>8.0f}")
    failed = False
    for other in ("starlette+uvicorn", "mlflow"):
        if other in results and "mlpack" in results:
            for conc in CONCURRENCY:
                ours, theirs = results["mlpack"][conc], results[other][conc]
                ratio = ours["rps"] / theirs["rps"]
                p99 = f"p99 {ours['p99_ms']:.2f} vs {theirs['p99_ms']:.2f} ms"
                cpu = f"server CPU per request {ours['cpu_us']:.0f} vs {theirs['cpu_us']:.0f} us"
                print(f"mlpack vs {other} @ {conc}: {ratio:.1f}x req/s, {p99}, {cpu}")
                if other == "mlflow":
                    failed |= ratio < 2 or ours["p99_ms"] >= theirs["p99_ms"]
    if "mlflow" in results:
        print("target (>= 2x MLflow req/s with a lower p99):", "MISSED" if failed else "met")
    within = True
    for label, by_conc in ratios.items():
        for conc, rounds in by_conc.items():
            middle = {key: statistics.median(r[key] for r in rounds) for key in rounds[0]}
            low = {key: min(r[key] for r in rounds) for key in rounds[0]}
            high = {key: max(r[key] for r in rounds) for key in rounds[0]}
            print(
                f"{label} @ {conc}: {middle['rps']:.2f}x req/s ({low['rps']:.2f}-{high['rps']:.2f}), "
                f"{middle['p99_ms']:.2f}x p99 ({low['p99_ms']:.2f}-{high['p99_ms']:.2f}), "
                f"{middle['cpu_us']:.2f}x server CPU per request ({low['cpu_us']:.2f}-{high['cpu_us']:.2f})"
            )
            if label.startswith("drift"):
                within &= middle["rps"] >= 0.9 and middle["p99_ms"] <= 1.1
    print(f"(median of {max(1, args.drift_rounds)} rounds each, range in brackets)")
    print("target (drift tracking within 10% of req/s and p99):", "met" if within else "MISSED")
    shutil.rmtree(scratch, ignore_errors=True)
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
