"""What drift tracking costs a request, measured inside one process where the machine's noise is small.

`serve.py --only-drift` measures the same thing through HTTP with wrk, but on a shared VM its
rounds swing +-30 %, more than the effect. Here two `App`s answer the same request, one with the
drift window (`/metrics` data quality and PSI) and one without; requests alternate between them one
by one (ABBA), so that the machine's speed changes hit both alike. The model and records are
`serve.py`'s: a 100-tree random forest on subscriber documents, here with gaps, nulls and a
category never seen in training.

    python benchmarks/drift_cost.py [--requests 20000]

Prints per-request time (median and mean) with tracking off and on, their ratio, and the same for
a 100-record batch. `serve.py --only-drift` adds the HTTP layer (~250 us of a ~400 us request),
which dilutes these ratios further.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from mlpack.runtime import Model  # noqa: E402
from mlpack.runtime.serving.app import App  # noqa: E402
from mlpack.runtime.serving.drift_tracking import DriftTracking  # noqa: E402
from mlpack.runtime.serving.metrics import Metrics  # noqa: E402
from mlpack.runtime.serving.wire import Request  # noqa: E402
from tests.helpers.documents import subscribers  # noqa: E402
from tests.helpers.training import config_for, export  # noqa: E402


def app_for(model: Model, drift: bool) -> App:
    tracking = DriftTracking(model.metadata, size=1000) if drift else None
    metrics = Metrics(list(App(model).allowed), observers=[tracking] if tracking else [])
    metrics.attach(0)
    app = App(model, metrics=metrics)
    app.load()
    return app


def post(body: object) -> Request:
    data = json.dumps(body).encode()
    return Request("POST", "/predict", "", {"content-type": "application/json"}, data)


def alternate(apps: dict[str, App], requests: list[Request], count: int) -> dict[str, list[float]]:
    """Seconds per request for each app, the apps taking turns request by request (ABBA)."""
    seconds: dict[str, list[float]] = {name: [] for name in apps}
    names = list(apps)
    clock = time.perf_counter
    for index in range(count):
        request = requests[index % len(requests)]
        for name in names if index % 2 == 0 else names[::-1]:
            app = apps[name]
            started = clock()
            answer = app.respond(request)
            seconds[name].append(clock() - started)
            if answer.status != 200:
                raise SystemExit(f"{name}: {answer.status} {answer.body[:200]!r}")
    return seconds


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=20000, help="one-record requests per app")
    args = parser.parse_args()

    config = config_for(
        "sklearn.ensemble.RandomForestClassifier", "classification", {"n_estimators": 100, "random_state": 0}
    )
    exported = export(config, subscribers(400))
    scratch = Path(tempfile.mkdtemp(prefix="mlpack-drift-cost-"))
    (scratch / "model.onnx").write_bytes(exported.onnx_bytes)
    model = Model(str(scratch / "model.onnx"), exported.metadata).load()

    # Realistic records: absent and null fields (every 23rd), and a contract never seen in training.
    records = subscribers(200, seed=11, missing_every=5)
    for record in records[::17]:
        record["contract"] = "quarterly"
    apps = {"off": app_for(model, drift=False), "on": app_for(model, drift=True)}
    cases = [
        ("1 record per request", [post(record) for record in records], args.requests),
        ("16 records per request", [post(records[i : i + 16]) for i in range(0, 192, 16)], args.requests // 8),
        ("100 records per request", [post(records[:100]), post(records[100:])], max(200, args.requests // 50)),
    ]
    print(f"{'':26}{'off median':>12}{'on median':>12}{'ratio':>8}{'off mean':>11}{'on mean':>10}{'ratio':>8}")
    for label, requests, count in cases:
        alternate(apps, requests, min(count, 500))  # warm-up
        seconds = alternate(apps, requests, count)
        median = {name: statistics.median(values) * 1e6 for name, values in seconds.items()}
        mean = {name: statistics.mean(values) * 1e6 for name, values in seconds.items()}
        print(
            f"{label:<26}{median['off']:>10.1f}us{median['on']:>10.1f}us{median['on'] / median['off']:>7.2f}x"
            f"{mean['off']:>9.1f}us{mean['on']:>8.1f}us{mean['on'] / mean['off']:>7.2f}x"
        )
    window = apps["on"].metrics.observers[0].window  # type: ignore[attr-defined]
    counted = window.summary()["contract"]
    print(f"(window check: {counted['values']} contract values counted, {counted['unknown']} unknown)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
