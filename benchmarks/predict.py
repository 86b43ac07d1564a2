"""Prediction speed: the model wheel's runtime vs raw onnxruntime vs the scikit-learn pipeline.

Same model (random forest, 100 trees, 5 features incl. 2 categoricals and nested fields), same
onnxruntime session settings (1 intra-op thread) for the runtime and the raw baseline. Raw feeds
are prepared outside the clock, so the ratio is the whole cost of taking records as users give them.

    python benchmarks/predict.py            # prints medians and ratios; exit 1 if a target is missed
"""

from __future__ import annotations

import os
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("MLPACK_THREADS", "1")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.documents import subscribers  # noqa: E402
from tests.test_runtime import sklearn_frame  # noqa: E402
from tests.training import config_for, export, runtime_model  # noqa: E402

TARGETS = {"1 record vs raw": 2.0, "20k records vs raw": 1.5}
MIN_SPEEDUP_VS_SKLEARN = 50.0


def median_seconds(call, repeat: int) -> float:
    call()  # warm-up
    samples = []
    for _ in range(repeat):
        started = time.perf_counter()
        call()
        samples.append(time.perf_counter() - started)
    return statistics.median(samples)


def main() -> int:
    config = config_for(
        "sklearn.ensemble.RandomForestClassifier", "classification", {"n_estimators": 100, "random_state": 0}
    )
    exported = export(config, subscribers(400))
    model = runtime_model(exported).load()
    session = model.session
    pipeline = exported.trained.pipeline

    one = subscribers(1, seed=3, absent=False)[0]
    many = subscribers(20_000, seed=4, absent=False)
    one_feeds, _ = model.feeds(one)
    many_feeds, _ = model.feeds(many)
    one_frame, many_frame = sklearn_frame(exported, [one]), sklearn_frame(exported, many)
    assert model.predict(many) == pipeline.predict(many_frame).tolist()

    results = {
        "1 record": {
            "runtime": median_seconds(lambda: model.predict(one), 3000),
            "raw onnxruntime": median_seconds(lambda: session.run(None, one_feeds), 3000),
            "scikit-learn": median_seconds(lambda: pipeline.predict(one_frame), 200),
        },
        "20k records": {
            "runtime": median_seconds(lambda: model.predict(many), 15),
            "raw onnxruntime": median_seconds(lambda: session.run(None, many_feeds), 15),
            "scikit-learn": median_seconds(lambda: pipeline.predict(many_frame), 7),
        },
    }
    failed = False
    for case, timings in results.items():
        print(f"{case}:")
        for name, seconds in timings.items():
            print(f"  {name:<16} {seconds * 1e6:>12.1f} µs")
        vs_raw = timings["runtime"] / timings["raw onnxruntime"]
        vs_sklearn = timings["scikit-learn"] / timings["runtime"]
        target = TARGETS[f"{case} vs raw"]
        print(f"  runtime / raw onnxruntime = {vs_raw:.2f}x (target <= {target}x)")
        print(f"  scikit-learn / runtime    = {vs_sklearn:.1f}x faster")
        failed |= vs_raw > target
        if case == "1 record":
            print(f"  (target: >= {MIN_SPEEDUP_VS_SKLEARN:.0f}x faster than scikit-learn)")
            failed |= vs_sklearn < MIN_SPEEDUP_VS_SKLEARN
    print("targets:", "MISSED" if failed else "met")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
