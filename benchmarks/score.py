"""Batch scoring: `mlpack score --engine local`, `--engine spark` on local[2], and the loop people write.

Same collection, same model wheel, same target collection (dropped before each run). The loop is
what a notebook does: `find()` whole documents, the wheel's `predict` and `predict_proba`, then
`insert_many`. Each run reports documents/second and the share of its time spent reading,
predicting and writing (for Spark, summed over its tasks, which overlap). Spark is timed twice:
with the session start (a cold `spark-submit`) and on an already running session.
Uses MONGODB_URI, or starts the embedded server (single-threaded: the database is the bottleneck).

    python benchmarks/score.py [--documents 20000] [--batch-size 1000]
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from pymongo import MongoClient  # noqa: E402

from mlpack.build import build  # noqa: E402
from mlpack.scoring.command import ScoreRequest, score  # noqa: E402
from mlpack.scoring.worker import load_wheel  # noqa: E402
from mlpack.source.embedded import embedded_server  # noqa: E402
from tests.helpers.documents import subscribers  # noqa: E402

CONFIG = """
[model]
name = "bench-model"
version = "1.0.0"
task = "classification"

[source]
uri_env = "MLPACK_BENCH_URI"
database = "mlpack_bench"
collection = "subscribers"
limit = 3000

[features]
numeric = ["tenure_months", "billing.monthly_charges", "support_calls"]
categorical = ["contract", "billing.method"]
target = "label"

[estimator]
class = "sklearn.ensemble.RandomForestClassifier"
params = { n_estimators = 50, random_state = 0 }

[registry]
enabled = false
"""


def shares(seconds: dict[str, float]) -> str:
    total = sum(seconds.values()) or 1.0
    return ", ".join(f"{stage} {100 * spent / total:4.1f}%" for stage, spent in seconds.items())


def plain_loop(client: MongoClient[dict[str, Any]], wheel: Path, batch_size: int) -> tuple[float, dict[str, float]]:
    package = load_wheel(wheel)
    database = client["mlpack_bench"]
    database["scored_plain"].drop()
    seconds = dict.fromkeys(("read", "predict", "write"), 0.0)
    started = clock = time.perf_counter()
    cursor = database["subscribers"].find({}, batch_size=batch_size)
    while True:
        batch = [document for _, document in zip(range(batch_size), cursor)]
        if not batch:
            break
        read_at = time.perf_counter()
        labels = package.predict(batch)
        probabilities = package.predict_proba(batch)
        classes = [str(c) for c in package.classes]
        stamp = {"name": package.metadata["name"], "version": package.metadata["version"]}
        results = [
            {"_id": d["_id"], "prediction": label, "probabilities": dict(zip(classes, row)), "model": stamp}
            for d, label, row in zip(batch, labels, probabilities)
        ]
        predicted_at = time.perf_counter()
        database["scored_plain"].insert_many(results, ordered=False)
        now = time.perf_counter()
        seconds["read"] += read_at - clock
        seconds["predict"] += predicted_at - read_at
        seconds["write"] += now - predicted_at
        clock = now
    return time.perf_counter() - started, seconds


def run(uri: str, documents: int, batch_size: int) -> None:
    os.environ["MLPACK_BENCH_URI"] = uri
    client: MongoClient[dict[str, Any]] = MongoClient(uri)
    collection = client["mlpack_bench"]["subscribers"]
    collection.drop()
    # Heavier documents than the model reads, as real ones are: notes and history ride along.
    padding = {"notes": "x" * 400, "history": [{"month": m, "paid": True} for m in range(12)]}
    collection.insert_many([{**d, **padding} for d in subscribers(documents, absent=False)])
    project = Path(tempfile.mkdtemp(prefix="mlpack-bench-score-"))
    (project / "mlpack.toml").write_text(CONFIG, encoding="utf-8")
    wheel = build(project).artifacts["wheel"]

    rows: list[tuple[str, float, dict[str, float]]] = []
    plain_s, plain_stages = plain_loop(client, wheel, batch_size)
    rows.append(("find + predict + insert_many", plain_s, plain_stages))

    def scored(into: str, **options: Any) -> tuple[float, dict[str, float]]:
        client["mlpack_bench"][into].drop()
        started = time.perf_counter()
        result = score(ScoreRequest(project=project, into=into, batch_size=batch_size, **options))
        assert result.written == documents, result.summary()
        return time.perf_counter() - started, result.stage_seconds

    rows.append(("mlpack score --engine local", *scored("scored_local")))
    spark_cold = scored("scored_spark", engine="spark", master="local[2]")  # starts and stops its session
    rows.append(("mlpack score --engine spark (incl. start)", *spark_cold))

    from pyspark.sql import SparkSession

    session = SparkSession.builder.master("local[2]").config("spark.ui.enabled", "false").getOrCreate()
    session.sparkContext.setLogLevel("ERROR")
    try:
        scored("scored_spark", engine="spark")  # warm the Python workers once
        rows.append(("mlpack score --engine spark (session up)", *scored("scored_spark", engine="spark")))
    finally:
        session.stop()

    local = client["mlpack_bench"]["scored_local"]
    spark = client["mlpack_bench"]["scored_spark"]
    same = all(a == b for a, b in zip(local.find(sort=[("_id", 1)]), spark.find(sort=[("_id", 1)])))
    print(f"{documents} documents (~20 fields, 5 read by the model), batches of {batch_size}, 2 cores")
    for label, seconds, stages in rows:
        rate = documents / seconds
        print(
            f"  {label:<42} {seconds:7.2f} s {rate:9,.0f} docs/s  {rate / (documents / plain_s):5.2f}x loop"
            f"   [{shares(stages)}]"
        )
    print(f"  local and spark results identical: {same}")
    shutil.rmtree(project, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--documents", type=int, default=20_000)
    parser.add_argument("--batch-size", type=int, default=1_000)
    args = parser.parse_args()
    uri = os.environ.get("MONGODB_URI")
    if uri:
        run(uri, args.documents, args.batch_size)
        return
    with embedded_server() as started:
        run(started, args.documents, args.batch_size)


if __name__ == "__main__":
    main()
