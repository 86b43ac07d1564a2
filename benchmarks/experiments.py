"""Hyper-parameter search: mlpack's logged search vs scikit-learn's own GridSearchCV, same grid.

Same training split, same pipeline, same folds (StratifiedKFold, shuffled, same seed), same metrics
(GridSearchCV gets every metric mlpack computes as a multi-metric `scoring`, refit off: the refit is
measured by neither). Three timings, each the median of --repeats runs:

  sklearn   GridSearchCV(n_jobs=None)
  unlogged  mlpack's search with logging off
  logged    mlpack's search writing each trial to MongoDB as it finishes (MONGODB_URI, or the
            embedded server)

Prints logged/sklearn (the whole search against the alternative) and logged/unlogged - 1 (what the
logging costs; the target is under 5 %).

    python benchmarks/experiments.py [--documents 2000] [--trees 40] [--repeats 5]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from pymongo import MongoClient  # noqa: E402
from sklearn.model_selection import GridSearchCV, StratifiedKFold  # noqa: E402

from mlpack.estimators import make_estimator  # noqa: E402
from mlpack.source import collect  # noqa: E402
from mlpack.source.embedded import embedded_server  # noqa: E402
from mlpack.training import experiments  # noqa: E402
from mlpack.training.pipeline import build_pipeline, frame  # noqa: E402
from mlpack.training.recipe import settle  # noqa: E402
from mlpack.training.train import split  # noqa: E402
from mlpack.validate import validate  # noqa: E402
from tests.helpers.documents import subscribers  # noqa: E402
from tests.helpers.training import config_for  # noqa: E402

GRID = {"max_depth": [4, 8, None], "min_samples_leaf": [1, 5]}
FOLDS = 3


def median_seconds(action: Callable[[], Any], repeats: int) -> float:
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        action()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--documents", type=int, default=2000)
    parser.add_argument("--trees", type=int, default=40)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()

    config = config_for(
        "sklearn.ensemble.RandomForestClassifier",
        "classification",
        {"n_estimators": args.trees, "random_state": 0},
        search={"params": GRID, "cv": FOLDS},
    )
    raw = collect(subscribers(args.documents, seed=3), config.features.loaded)
    dataset = validate(raw, config.features, "classification")
    recipe = settle(config)
    rows = split(recipe, dataset)
    names = recipe.input_names
    metrics = list(recipe.metrics)

    def sklearn_search() -> None:
        estimator, spec = make_estimator(config.estimator, "classification")
        search = GridSearchCV(
            build_pipeline(recipe, estimator),
            {f"estimator__{k}": v for k, v in GRID.items()},
            scoring={"accuracy": "accuracy", "f1_macro": "f1_macro", "roc_auc": "roc_auc"},
            cv=StratifiedKFold(FOLDS, shuffle=True, random_state=config.evaluation.seed),
            refit=False,
        )
        search.fit(frame(rows.train_columns, names), rows.train_target)

    def mlpack_search(log: experiments.TrialLog) -> None:
        experiments.run(recipe, rows, log)

    uri = os.environ.get("MONGODB_URI")
    with embedded_server() if not uri else _given(uri) as server_uri:
        client: MongoClient[dict[str, Any]] = MongoClient(server_uri)
        collection = client["mlpack_bench"]["mlpack_experiments"]
        collection.drop()

        write_seconds: list[float] = []

        def logged() -> None:
            spent = [0.0]
            mlpack_search(timed_log(collection, spent))
            write_seconds.append(spent[0])

        def unlogged() -> None:
            mlpack_search(experiments.TrialLog(None, name="bench", version="1.0.0", estimator="rf"))

        sklearn_search()  # warm imports and caches once
        # Interleaved rounds so that a noisy neighbour on the shared machine hits all three alike.
        timings: dict[str, list[float]] = {"sklearn": [], "unlogged": [], "logged": []}
        for _ in range(args.repeats):
            for label, action in (("sklearn", sklearn_search), ("unlogged", unlogged), ("logged", logged)):
                timings[label].append(median_seconds(action, 1))
        trials = collection.count_documents({})
        client["mlpack_bench"].command("dropDatabase")
        client.close()

    sk, plain, with_log = (statistics.median(timings[k]) for k in ("sklearn", "unlogged", "logged"))
    points = len(GRID["max_depth"]) * len(GRID["min_samples_leaf"])
    print(
        f"grid of {points} points x {FOLDS} folds, {len(rows.train_target)} training rows, "
        f"RandomForest {args.trees} trees, metrics {', '.join(metrics)}; median of {args.repeats}"
    )
    print(f"  scikit-learn GridSearchCV     {sk:7.3f} s")
    print(f"  mlpack search, no logging     {plain:7.3f} s   ({plain / sk:.3f}x GridSearchCV)")
    print(f"  mlpack search, logged         {with_log:7.3f} s   ({with_log / sk:.3f}x GridSearchCV)")
    print(f"  logging cost: {100 * (with_log / plain - 1):+.2f} % of wall time (noise included)")
    spent = statistics.median(write_seconds)
    print(
        f"  time inside the trial writes: {1000 * spent:.1f} ms per search = {100 * spent / with_log:.3f} % "
        f"({trials} trial documents over {args.repeats} searches; {1000 * spent / (points + 1):.2f} ms per write)"
    )


def timed_log(collection: Any, spent: list[float]) -> experiments.TrialLog:
    """The real log, with a stopwatch around each write and the best-trial mark (adding to `spent[0]`)."""
    log = experiments.TrialLog(collection, name="bench", version="1.0.0", estimator="rf")

    def stopwatch(call: Any) -> Any:
        def timed(*args: Any) -> None:
            started = time.perf_counter()
            call(*args)
            spent[0] += time.perf_counter() - started

        return timed

    log.write = stopwatch(log.write)  # type: ignore[method-assign]
    log.mark_best = stopwatch(log.mark_best)  # type: ignore[method-assign]
    return log


class _given:
    """A context manager that yields an already running server's URI."""

    def __init__(self, uri: str) -> None:
        self.uri = uri

    def __enter__(self) -> str:
        return self.uri

    def __exit__(self, *_: object) -> None:
        return None


if __name__ == "__main__":
    main()
