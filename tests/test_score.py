"""`mlpack score` against the real wire server: local and Spark engines, upserts, ranges, bad input.

One model is built once for the module; each test scores into collections of its own.
"""

from __future__ import annotations

import datetime
import json
import os
import random
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from bson import ObjectId
from pymongo import MongoClient

from mlpack.artifacts.read import open_model
from mlpack.build import build
from mlpack.scoring.partition import id_ranges
from tests.helpers.cli import assert_clean_error, run_process
from tests.helpers.documents import subscribers
from tests.helpers.projects import CHURN_CONFIG, Project

WHEEL = "churn_model-1.0.0-py3-none-any.whl"


@pytest.fixture(scope="module")
def scored_project(
    tmp_path_factory: pytest.TempPathFactory, mongo_uri: str, mongo_client: MongoClient[Any]
) -> Iterator[Project]:
    """The churn project built once: 300 subscribers, some with null or absent fields, a few with no
    billing sub-document at all (absent fields are missing values, imputed as in training)."""
    database = f"mlpack_score_{os.getpid()}"
    documents = subscribers(300, seed=11)
    for document in documents[::50]:
        del document["billing"]
    mongo_client[database]["customers"].insert_many(documents)
    project = Project(tmp_path_factory.mktemp("score") / "churn", database, mongo_uri)
    project.path.mkdir()
    project.write_config(CHURN_CONFIG)
    os.environ["MLPACK_TEST_URI"] = mongo_uri
    build(project.path)
    yield project
    mongo_client.drop_database(database)


def expected_results(project: Project, client: MongoClient[Any], query: dict[str, Any] | None = None) -> list[Any]:
    """What the wheel's model predicts for each source document, read independently of `score`.

    With one onnxruntime thread, as scoring runs: multi-threaded tree sums vary with the batch.
    """
    model = open_model(project.path / "dist" / WHEEL)
    os.environ["MLPACK_THREADS"] = "1"
    try:
        model.load()
    finally:
        del os.environ["MLPACK_THREADS"]
    documents = list(client[project.database]["customers"].find(query or {}, sort=[("_id", 1)]))
    labels = model.predict(documents)
    probabilities = model.predict_proba(documents)
    return [
        {
            "_id": document["_id"],
            "prediction": label,
            "probabilities": dict(zip(model.classes or [], row)),
            "model": {"name": "churn-model", "version": "1.0.0"},
        }
        for document, label, row in zip(documents, labels, probabilities)
    ]


def results(client: MongoClient[Any], project: Project, into: str) -> list[Any]:
    """The written results without their `scored_at`, checked to be a recent time of day in UTC."""
    found = list(client[project.database][into].find(sort=[("_id", 1)]))
    for document in found:
        scored_at = document.pop("scored_at")
        assert isinstance(scored_at, datetime.datetime)
        now = datetime.datetime.now(datetime.UTC).replace(tzinfo=None)  # pymongo reads naive UTC
        assert abs(now - scored_at) < datetime.timedelta(hours=1)
    return found


def test_local_engine_writes_the_wheels_predictions_and_a_rerun_adds_nothing(
    scored_project: Project, mongo_client: MongoClient[Any], run
) -> None:
    expected = expected_results(scored_project, mongo_client)
    first = run("score", scored_project.path, "--into", "scores", "--batch-size", "64", "--json", "-v")
    assert first.code == 0, first.err
    summary = json.loads(first.out)
    assert summary["matched"] == summary["written"] == 300 and summary["skipped"] == 0
    assert summary["model"] == {"name": "churn-model", "version": "1.0.0"} and summary["engine"] == "local"
    assert set(summary["stage_seconds"]) == {"read", "predict", "write"}
    assert all(spent > 0 for spent in summary["stage_seconds"].values())
    assert results(mongo_client, scored_project, "scores") == expected
    assert {row["prediction"] for row in expected} == {"churned", "stayed"}  # the model tells them apart

    # A rerun after an interrupted one: stale and half-done results are replaced, nothing is duplicated.
    target = mongo_client[scored_project.database]["scores"]
    target.delete_many({"_id": {"$gt": 200}})
    target.update_many({"_id": {"$lt": 20}}, {"$set": {"prediction": "stale", "extra": 1}})
    again = run("score", scored_project.path, "--into", "scores", "-v")
    assert again.code == 0, again.err
    assert "mlpack: scored 300 of 300 documents" in again.err  # progress (-v: also when not on a terminal)
    assert again.out.startswith(f"scored 300 of 300 documents of {scored_project.database}.customers into ")
    assert target.count_documents({}) == 300
    assert results(mongo_client, scored_project, "scores") == expected


def test_filter_scores_only_the_matching_documents(
    scored_project: Project, mongo_client: MongoClient[Any], run
) -> None:
    query = {"contract": "monthly", "support_calls": {"$gte": 2}}
    result = run("score", scored_project.path, "--into", "monthly", "--filter", json.dumps(query), "--json")
    assert result.code == 0, result.err
    expected = expected_results(scored_project, mongo_client, query)
    assert 0 < len(expected) < 300 and json.loads(result.out)["written"] == len(expected)
    assert results(mongo_client, scored_project, "monthly") == expected


def test_spark_engine_writes_the_same_documents_as_the_local_engine(
    scored_project: Project, mongo_client: MongoClient[Any], run, spark: Any
) -> None:
    local = run("score", scored_project.path, "--into", "by_local", "--batch-size", "100")
    assert local.code == 0, local.err
    args = ("score", scored_project.path, "--into", "by_spark", "--engine", "spark", "--master", "local[2]")
    first = run(*args, "--partitions", "5", "--batch-size", "25", "--json")
    assert first.code == 0, first.err
    summary = json.loads(first.out)
    assert summary["engine"] == "spark" and summary["ranges"] == 5 and summary["written"] == 300
    assert summary["stage_seconds"]["predict"] > 0  # added up over the tasks
    by_spark = results(mongo_client, scored_project, "by_spark")
    assert by_spark == results(mongo_client, scored_project, "by_local")
    assert by_spark == expected_results(scored_project, mongo_client)

    # Task retries and reruns are upserts: the same count, the same documents.
    mongo_client[scored_project.database]["by_spark"].delete_many({"_id": {"$mod": [3, 0]}})
    again = run(*args, "--json")
    assert again.code == 0, again.err
    assert json.loads(again.out)["ranges"] == 4  # default: two per core of local[2]
    assert results(mongo_client, scored_project, "by_spark") == by_spark


def test_a_spark_run_says_what_it_did_and_nothing_of_sparks_start_up_in_a_log(
    scored_project: Project, mongo_client: MongoClient[Any]
) -> None:
    """In its own process, so mlpack starts the session (the other Spark tests share the suite's), with
    stderr a pipe as in CI. It held 10 lines of Spark's start-up (the default log4j profile's banner twice,
    the shell's log level notice, Hadoop's missing native library, the loopback host name) and the
    progress bar's carriage-return frames; now one line of the JVM's own and mlpack's warnings."""
    pytest.importorskip("pyspark.sql").SparkSession  # noqa: B018 - needs pyspark (and marks the test `spark`)
    args = ("score", scored_project.path, "--into", "spark_quiet", "--engine", "spark", "--master", "local[1]")
    done = run_process(*args, timeout=600)
    assert done.code == 0, done.err
    assert done.out.startswith("scored 300 of 300 documents") and "\r" not in done.err
    for noise in ("[Stage", "log4j", "Setting default log level", "NativeCodeLoader", "loopback address"):
        assert noise not in done.err, (noise, done.err)
    lines = [line for line in done.err.splitlines() if not line.startswith("mlpack: warning: ")]
    assert all(line.startswith("WARNING: Using incubator modules") for line in lines), lines  # the JVM's own
    assert mongo_client[scored_project.database]["spark_quiet"].count_documents({}) == 300


def test_spark_engine_with_a_filter_and_skipped_documents(
    scored_project: Project, mongo_client: MongoClient[Any], run, spark: Any
) -> None:
    source = mongo_client[scored_project.database]["customers"]
    source.insert_one(
        {
            "_id": 1000,
            "contract": "monthly",
            "tenure_months": "ten",
            "support_calls": 3,
            "billing": {"monthly_charges": 50.0, "method": "card"},
        }
    )
    try:
        query = json.dumps({"contract": "monthly"})
        args = ("score", scored_project.path, "--into", "spark_monthly", "--engine", "spark", "--filter", query)
        failed = run(*args)
        assert_clean_error(failed, 1, "could not be scored", "_id 1000", "tenure_months", "--on-error skip")
        skipped = run(*args, "--on-error", "skip", "--json")
        assert skipped.code == 0, skipped.err
        summary = json.loads(skipped.out)
        assert summary["skipped"] == 1 and summary["errors"][0]["_id"] == 1000
        expected = expected_results(scored_project, mongo_client, {"contract": "monthly", "_id": {"$ne": 1000}})
        assert summary["written"] == len(expected)
        assert results(mongo_client, scored_project, "spark_monthly") == expected
    finally:
        source.delete_one({"_id": 1000})


def test_id_ranges_cover_every_document_once(mongo_client: MongoClient[Any], database_name: str) -> None:
    rng = random.Random(3)
    plain = mongo_client[database_name]["plain"]
    plain.insert_many([{"_id": ObjectId(), "n": i} for i in range(500)])
    mixed = mongo_client[database_name]["mixed"]  # numbers, strings, ObjectIds, a date: MongoDB's brackets
    ids: list[Any] = [*range(0, 120, 3), *(i + 0.5 for i in range(40)), *(f"k{i:03d}" for i in range(50))]
    ids += [ObjectId() for _ in range(60)]
    rng.shuffle(ids)
    mixed.insert_many([{"_id": i, "even": n % 2 == 0} for n, i in enumerate(ids)])
    for collection, query in [(plain, {}), (plain, {"n": {"$lt": 137}}), (mixed, {}), (mixed, {"even": True})]:
        count = collection.count_documents(query)
        for parts in (1, 2, 7):
            ranges = id_ranges(collection, query, count, parts)
            assert len(ranges) <= parts
            seen: list[Any] = []
            for id_range in ranges:
                seen += [d["_id"] for d in collection.find({"$and": [query, id_range]}, {"_id": 1})]
            assert len(seen) == count, (collection.name, query, parts)
            assert {repr(i) for i in seen} == {repr(d["_id"]) for d in collection.find(query, {"_id": 1})}
        if collection is plain and not query:
            sizes = [collection.count_documents(r) for r in id_ranges(collection, query, count, 5)]
            assert len(sizes) == 5 and min(sizes) >= 30  # sampled boundaries: roughly equal ranges


def test_bad_requests_are_named_and_write_nothing(
    scored_project: Project, mongo_client: MongoClient[Any], run, tmp_path: Path
) -> None:
    project = scored_project.path
    cases = [
        (("--into", "customers"), 2, "is the source collection"),
        (("--into", "bad$name"), 2, "not a valid collection name"),
        (("--into", "x", "--filter", "{not json"), 2, "--filter is not valid"),
        (("--into", "x", "--filter", "[1, 2]"), 2, "must be a JSON object"),
        (("--into", "x", "--filter", '{"$bogus": 1}'), 2, "rejected --filter"),
        (("--into", "x", "--batch-size", "0"), 2, "--batch-size must be a positive integer"),
        (("--into", "x", "--master", "local[2]"), 2, "--master and --partitions are for --engine spark"),
        (("--into", "x", "--version", "9.9.9"), 2, "no build of churn-model 9.9.9"),
        (("--into", "x", "--dist", tmp_path), 2, "no build of churn-model 1.0.0"),
    ]
    for args, code, message in cases:
        assert_clean_error(run("score", project, *args), code, message)
    assert_clean_error(run("score", tmp_path / "nowhere", "--into", "x"), 2, "project folder not found")
    with pytest.MonkeyPatch.context() as patch:
        patch.setitem(sys.modules, "pyspark", None)  # as if the [spark] extra were not installed
        assert_clean_error(
            run("score", project, "--into", "x", "--engine", "spark"), 2, "pip install 'mlpack-onnx[spark]'"
        )
    assert "x" not in mongo_client[scored_project.database].list_collection_names()


def test_a_changed_wheel_and_an_unreachable_database_are_refused(scored_project: Project, tmp_path: Path) -> None:
    dist = tmp_path / "dist"
    dist.mkdir()
    for name in (WHEEL, "churn-model-1.0.0.json"):
        (dist / name).write_bytes((scored_project.path / "dist" / name).read_bytes())
    with (dist / WHEEL).open("ab") as wheel:
        wheel.write(b"tampered")
    result = run_process("score", scored_project.path, "--into", "x", "--dist", dist)
    assert_clean_error(result, 2, "does not match its build report")

    env = {"MLPACK_TEST_URI": "mongodb://127.0.0.1:1/?serverSelectionTimeoutMS=300"}
    result = run_process("score", scored_project.path, "--into", "x", env=env)
    assert_clean_error(result, 3, "unreachable")


def test_a_source_collection_that_does_not_exist_is_named(
    scored_project: Project, mongo_client: MongoClient[Any], run, tmp_path: Path
) -> None:
    """A typo in [source].collection scored "0 of 0 documents" and exited 0: MongoDB reads it as empty."""
    config = tmp_path / "mlpack.toml"
    text = (scored_project.path / "mlpack.toml").read_text(encoding="utf-8")
    config.write_text(text.replace('collection = "customers"', 'collection = "custmers"'), encoding="utf-8")
    dist = scored_project.path / "dist"
    result = run("score", config, "--into", "typo_scores", "--dist", dist)
    assert_clean_error(result, 2, "[source].collection 'custmers' is not a collection", "did you mean 'customers'?")
    # An existing collection that the filter matches none of is no mistake: nothing to score, exit 0.
    nothing = run("score", scored_project.path, "--into", "typo_scores", "--filter", '{"tenure_months": -1}')
    assert nothing.code == 0 and "scored 0 of 0 documents" in nothing.out, nothing.err
    assert "typo_scores" not in mongo_client[scored_project.database].list_collection_names()


def test_skipped_documents_are_listed_as_a_failed_run_lists_them(
    scored_project: Project, mongo_client: MongoClient[Any], run
) -> None:
    """`--on-error skip` listed `_id ObjectId('...')` (Python's repr) where a failed run says `_id "..."`."""
    collection = mongo_client[scored_project.database]["customers"]
    bad = collection.insert_one({"tenure_months": "soon", "support_calls": 1}).inserted_id
    try:
        query = json.dumps({"_id": {"$oid": str(bad)}})
        failed = run("score", scored_project.path, "--into", "skip_scores", "--filter", query)
        assert_clean_error(failed, 1, f"_id \"{bad}\": field 'tenure_months'")
        skipped = run("score", scored_project.path, "--into", "skip_scores", "--filter", query, "--on-error", "skip")
        assert skipped.code == 0, skipped.err
        assert f"\n  _id \"{bad}\": field 'tenure_months': expected a number, got 'soon'\n" in skipped.out
    finally:
        collection.delete_one({"_id": bad})
