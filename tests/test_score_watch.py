"""`mlpack score --watch`: a change stream scored as documents arrive, resumed after a kill."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from pymongo import MongoClient

from mlpack.scoring.command import ScoreRequest
from mlpack.scoring.watch import watch
from tests.helpers.cli import assert_clean_error
from tests.helpers.documents import subscribers
from tests.helpers.projects import Project


def _scorer(project: Project, *extra: str) -> subprocess.Popen[str]:
    command = [sys.executable, "-m", "mlpack", "score", str(project.path), "--into", "scored", "--watch", *extra]
    return subprocess.Popen(command, env=dict(os.environ), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


@contextmanager
def _watching(request: ScoreRequest) -> Iterator[list[Any]]:
    """`watch` on a thread; on the way out it is stopped and joined, and the list holds its result."""
    stop = threading.Event()
    done: list[Any] = []
    scorer = threading.Thread(target=lambda: done.append(watch(request, stop=stop)))
    scorer.start()
    try:
        yield done
    finally:
        stop.set()
        scorer.join(timeout=10)


def _wait_for(predicate: Any, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.1)


def test_killed_twice_and_restarted_every_document_has_one_result(
    churn_project: Project, run: Any, mongo_client: MongoClient[Any]
) -> None:
    assert run("build", churn_project.path, "-q").code == 0
    database = mongo_client[churn_project.database]
    source, results = database["customers"], database["scored"]
    arriving = [{**document, "_id": 1000 + i} for i, document in enumerate(subscribers(600, seed=3))]

    def insert() -> None:
        for start in range(0, len(arriving), 20):
            source.insert_many(arriving[start : start + 20])
            if start % 100 == 0:  # and some updates of documents scored already
                source.update_many({"_id": {"$lte": start // 10 + 5}}, {"$inc": {"support_calls": 1}})
            time.sleep(0.15)

    scorer = _scorer(churn_project, "--batch-size", "50")
    _wait_for(lambda: database["scored.resume"].count_documents({}) == 1)  # the first pass is done
    assert results.count_documents({}) == 240
    inserter = threading.Thread(target=insert)
    inserter.start()
    kills = 0
    for delay in (1.0, 1.5):
        time.sleep(delay)
        scorer.kill()
        scorer.wait()
        kills += 1
        during = results.count_documents({})
        assert 240 <= during < 840
        scorer = _scorer(churn_project, "--batch-size", "50")
    inserter.join()
    _wait_for(lambda: results.count_documents({}) == source.count_documents({}) == 840)
    time.sleep(1.5)  # anything still to come would show now
    scorer.send_signal(signal.SIGTERM)
    out, err = scorer.communicate(timeout=30)
    assert scorer.returncode == 0, err
    assert kills == 2 and "resumed from the token in" in out and "Traceback" not in err
    assert sorted(r["_id"] for r in results.find({}, {"_id": 1})) == sorted(
        d["_id"] for d in source.find({}, {"_id": 1})
    )
    assert results.count_documents({"model.version": "1.0.0", "prediction": {"$exists": True}}) == 840
    state = database["scored.resume"].find_one({"_id": "customers"})
    assert state["token"] and state["model"] == {"name": "churn-model", "version": "1.0.0"}


def test_watch_with_a_filter_stops_cleanly_and_says_what_it_did(
    churn_project: Project, run: Any, mongo_client: MongoClient[Any]
) -> None:
    assert run("build", churn_project.path, "-q").code == 0
    database = mongo_client[churn_project.database]
    request = ScoreRequest(project=churn_project.path, into="only_long", filter='{"contract": "yearly"}')
    with _watching(request) as done:
        _wait_for(lambda: database["only_long.resume"].count_documents({}) == 1)
        first = database["only_long"].count_documents({})
        assert first == database["customers"].count_documents({"contract": "yearly"}) > 0
        new = [{**document, "_id": 5000 + i} for i, document in enumerate(subscribers(60, seed=5))]
        database["customers"].insert_many(new)
        wanted = first + sum(d["contract"] == "yearly" for d in new)
        _wait_for(lambda: database["only_long"].count_documents({}) == wanted)
    summary = done[0].summary()
    assert summary["initial"] == first and summary["written"] == wanted and summary["resumed"] is False
    assert summary["events"] == wanted - first and summary["skipped"] == 0
    json.dumps(summary)


def test_watch_mistakes_are_one_line(churn_project: Project, run: Any, mongo_client: MongoClient[Any]) -> None:
    assert run("build", churn_project.path, "-q").code == 0
    base = ("score", churn_project.path, "--into", "scored", "--watch")
    assert_clean_error(run(*base, "--engine", "spark"), 2, "--watch scores with --engine local")
    assert_clean_error(run(*base, "--filter", '{"$where": "true"}'), 2, "$where at the top level")
    assert_clean_error(run(*base, "--into", "customers"), 2, "is the source collection")
    mongo_client[churn_project.database]["scored.resume"].insert_one({"_id": "customers", "token": {"_data": "00"}})
    assert_clean_error(run(*base), 3, "cannot resume from the token saved in", "to start over")


def test_a_document_updated_to_a_bad_value_loses_its_earlier_result(
    churn_project: Project, run: Any, mongo_client: MongoClient[Any]
) -> None:
    """Its old prediction describes a document that no longer exists: removed, the error named."""
    assert run("build", churn_project.path, "-q").code == 0
    database = mongo_client[churn_project.database]
    request = ScoreRequest(project=churn_project.path, into="scored", on_error="skip")
    with _watching(request) as done:
        _wait_for(lambda: database["scored.resume"].count_documents({}) == 1)
        assert database["scored"].count_documents({"_id": 7}) == 1
        database["customers"].update_one({"_id": 7}, {"$set": {"tenure_months": "a decade"}})
        database["customers"].update_one({"_id": 8}, {"$inc": {"support_calls": 1}})  # still scorable
        _wait_for(lambda: database["scored"].count_documents({"_id": 7}) == 0, timeout=30)
    summary = done[0].summary()
    assert summary["skipped"] == summary["removed"] == 1 and summary["events"] == 2, summary
    ((error,),) = [[e for e in summary["errors"] if e["_id"] == "7"]]
    assert "tenure_months" in error["message"], error
    assert database["scored"].count_documents({}) == 239


def test_a_scorer_run_as_a_service_names_each_document_it_could_not_score(
    churn_project: Project, run: Any, mongo_client: MongoClient[Any]
) -> None:
    """stderr not a terminal (systemd, a container, a log file): the skipped documents were named only on
    the progress channel, which is off there, so the log said "1 skipped" and never which one."""
    assert run("build", churn_project.path, "-q").code == 0
    database = mongo_client[churn_project.database]
    scorer = _scorer(churn_project, "--on-error", "skip")
    try:
        _wait_for(lambda: database["scored.resume"].count_documents({}) == 1)
        database["customers"].update_one({"_id": 7}, {"$set": {"tenure_months": "a decade"}})
        _wait_for(lambda: database["scored"].count_documents({"_id": 7}) == 0, timeout=30)
    finally:
        scorer.send_signal(signal.SIGTERM)
        out, err = scorer.communicate(timeout=30)
    assert scorer.returncode == 0, err
    assert "1 skipped" in out
    lines = [line for line in err.splitlines() if "_id 7" in line]
    assert len(lines) == 1, err
    assert lines[0].startswith("mlpack: warning: _id 7 not scored (any earlier result of it removed): ")
    assert "tenure_months" in lines[0] and "a decade" in lines[0], lines
    assert "Traceback" not in err
