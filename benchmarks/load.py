"""Loading training data: mlpack's projected, streamed columns vs the usual pandas route.

Same collection, same fields. The pandas route is what notebooks do: `find()` whole documents,
`pd.json_normalize` them, pick the columns. Measured: wall time and peak Python memory
(tracemalloc) of each. Uses MONGODB_URI, or starts the embedded server.

    python benchmarks/load.py [--documents 20000]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import pandas as pd  # noqa: E402
from pymongo import MongoClient  # noqa: E402

from mlpack.source import load_columns  # noqa: E402
from mlpack.source.embedded import embedded_server  # noqa: E402
from tests.helpers.documents import CATEGORICAL, NUMERIC, subscribers  # noqa: E402

PATHS = [*NUMERIC, *CATEGORICAL, "label"]


def measure(action: Callable[[], Any]) -> tuple[float, float, Any]:
    tracemalloc.start()
    started = time.perf_counter()
    result = action()
    seconds = time.perf_counter() - started
    peak = tracemalloc.get_traced_memory()[1] / 2**20
    tracemalloc.stop()
    return seconds, peak, result


def run(uri: str, documents: int) -> None:
    client: MongoClient[dict[str, Any]] = MongoClient(uri)
    collection = client["mlpack_bench"]["subscribers"]
    collection.drop()
    # Heavier documents than the model needs, as real ones are: notes and history ride along.
    padding = {"notes": "x" * 400, "history": [{"month": m, "paid": True} for m in range(12)]}
    collection.insert_many([{**d, **padding} for d in subscribers(documents, absent=False)])

    def with_pandas() -> pd.DataFrame:
        frame = pd.json_normalize(list(collection.find({})))
        return frame[PATHS]

    ours_s, ours_mb, columns = measure(lambda: load_columns(collection, PATHS))
    pandas_s, pandas_mb, frame = measure(with_pandas)
    assert columns.rows == len(frame) == documents
    print(f"{documents} documents, {len(PATHS)} fields used of ~20")
    print(f"  mlpack load_columns : {ours_s:6.2f} s, peak {ours_mb:7.1f} MiB")
    print(f"  find + json_normalize: {pandas_s:6.2f} s, peak {pandas_mb:7.1f} MiB")
    print(f"  ratio: {pandas_s / ours_s:.1f}x faster, {pandas_mb / ours_mb:.1f}x less memory")
    collection.drop()
    client.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--documents", type=int, default=20_000)
    args = parser.parse_args()
    uri = os.environ.get("MONGODB_URI")
    if uri:
        run(uri, args.documents)
    else:
        with embedded_server() as started:
            run(started, args.documents)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
