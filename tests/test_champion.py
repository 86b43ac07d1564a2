"""Challenger vs champion: [evaluation].champion scores the aliased version on the same test split."""

from __future__ import annotations

import json
import os
import random
import re
import subprocess
import sys
import tracemalloc
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
from bson import ObjectId
from pymongo import MongoClient

from mlpack.errors import QualityGateError
from mlpack.source.columns import Column
from mlpack.training import champion, seen
from tests.helpers.documents import subscribers
from tests.helpers.projects import Project

GATE = "gates = { accuracy = 0.6 }"
CHAMPION = 'gates = { accuracy = 0.5 }\nchampion = "production"\nchampion_margin = 0.01\n'


def _version(project: Project, version: str) -> None:
    text = project.config.read_text(encoding="utf-8")
    project.config.write_text(
        "\n".join(f'version = "{version}"' if line.startswith("version = ") else line for line in text.splitlines())
        + "\n",
        encoding="utf-8",
    )


def _gate_scores(reason: str) -> tuple[float, float]:
    """(challenger, champion) from the champion gate's reason."""
    found = re.search(r"accuracy ([0-9.]+) does not beat .* accuracy ([0-9.]+) by", reason)
    assert found is not None, reason
    return float(found.group(1)), float(found.group(2))


def _weak(project: Project) -> None:
    project.edit("params = { n_estimators = 30, random_state = 0 }", "params = { n_estimators = 1, max_depth = 1 }")


def test_a_worse_challenger_is_refused_and_a_better_one_reports_both(
    churn_project: Project, run: Any, mongo_client: MongoClient[Any]
) -> None:
    # 1.0.0 is a weak model (one stump): the champion. 1.0.1, the full forest, beats it.
    _weak(churn_project)
    churn_project.edit(GATE, "gates = { accuracy = 0.5 }")
    assert run("build", churn_project.path, "-q").code == 0
    config = ("--config", churn_project.path)
    assert run("promote", "churn-model", "1.0.0", "--alias", "production", *config).code == 0
    churn_project.edit("gates = { accuracy = 0.5 }", CHAMPION)
    churn_project.edit(
        "params = { n_estimators = 1, max_depth = 1 }", "params = { n_estimators = 30, random_state = 0 }"
    )
    _version(churn_project, "1.0.1")
    better = run("build", churn_project.path, "--json")
    assert better.code == 0, better.err
    report = json.loads(better.out)
    entry = report["champion"]
    assert entry["alias"] == "production" and entry["version"] == "1.0.0" and entry["metric"] == "accuracy"
    assert set(entry["metrics"]) == set(report["metrics"]) == set(entry["challenger"])
    # Both scored on the test rows the champion's filter does not hold (the same split: only its false positives).
    assert entry["rows"] + entry["left_out"] == len(_predictions(churn_project, "1.0.1")) and entry["left_out"] <= 3
    for name, value in entry["challenger"].items():
        assert abs(entry["difference"][name] - round(value - entry["metrics"][name], 6)) < 1e-9
    if not entry["left_out"]:
        assert entry["challenger"] == report["metrics"]
    assert entry["challenger"]["accuracy"] >= entry["metrics"]["accuracy"] + 0.01
    card = (churn_project.path / "dist" / "churn-model-1.0.1.html").read_text(encoding="utf-8")
    assert "Against the champion, production (1.0.0)" in card
    print("champion 1.0.0 accuracy", entry["metrics"]["accuracy"], "challenger 1.0.1", report["metrics"]["accuracy"])

    # Promote the forest; a stump challenger does not beat it: refused, recorded as rejected with both scores.
    assert run("promote", "churn-model", "1.0.1", "--alias", "production", *config).code == 0
    _weak(churn_project)
    _version(churn_project, "1.0.2")
    worse = run("build", churn_project.path)
    assert worse.code == 1, worse.err
    assert "champion gate: accuracy" in worse.err and "production (1.0.1)" in worse.err
    record = mongo_client[churn_project.database]["mlpack_models"].find_one({"version": "1.0.2"})
    assert record["status"] == "rejected"
    # The gate's figures are both models' on the test rows 1.0.1 did not train on (its filter's false
    # positives aside, the whole split: the same seed and documents).
    ours, theirs = _gate_scores(record["reason"])
    assert ours < theirs and abs(theirs - report["metrics"]["accuracy"]) < 0.05
    assert "test rows" in record["details"]
    print("rejected:", record["reason"])
    assert not (churn_project.path / "dist" / "churn-model-1.0.2.onnx").exists()


def test_no_production_alias_is_a_warning(churn_project: Project, run: Any) -> None:
    churn_project.edit(GATE, CHAMPION)
    first = run("build", churn_project.path)
    assert first.code == 0, first.err
    assert "warning: champion churn-model@production: no model named 'churn-model' in the registry" in first.err
    assert "vs production" not in first.out
    # The model is in the registry now, but nothing was promoted to production.
    churn_project.edit('version = "1.0.0"', 'version = "1.0.1"')
    built = run("build", churn_project.path)
    assert built.code == 0, built.err
    assert "warning: champion churn-model@production" in built.err and "no alias 'production'" in built.err
    assert "vs production" not in built.out


def test_a_champion_reading_other_fields_is_a_warning(churn_project: Project, run: Any) -> None:
    assert run("build", churn_project.path, "-q").code == 0
    assert run("promote", "churn-model", "1.0.0", "--alias", "production", "--config", churn_project.path).code == 0
    churn_project.edit(GATE, CHAMPION)
    churn_project.edit('categorical = ["contract", "billing.method"]', 'categorical = ["contract"]')
    _version(churn_project, "1.0.1")
    built = run("build", churn_project.path, "--json")
    assert built.code == 0, built.err
    report = json.loads(built.out)
    assert "cannot be scored on these test rows" in report["champion_warning"]
    assert "billing.method" in report["champion_warning"] and "champion" not in report


def test_champion_keys_are_checked(churn_project: Project, run: Any) -> None:
    churn_project.edit(GATE, "champion_margin = 0.01")
    result = run("build", churn_project.path)
    assert result.code == 2 and "champion_margin needs champion" in result.err
    churn_project.edit("champion_margin = 0.01", 'champion = "production"\nchampion_metric = "rmse"')
    result = run("build", churn_project.path)
    assert result.code == 2 and "rmse" in result.err


def test_a_challenger_trained_on_worse_data_is_refused_and_recorded(
    churn_project: Project, run: Any, mongo_client: MongoClient[Any]
) -> None:
    """Same estimator, same clean test documents; the challenger's training labels are a third wrong."""
    database = mongo_client[churn_project.database]
    documents = list(database["customers"].find({}, sort=[("_id", 1)]))
    for document in documents:
        document["holdout"] = document["_id"] % 4 == 0  # the test split of both versions ([evaluation] filter)
    database["customers"].drop()
    database["customers"].insert_many(documents)
    rng = random.Random(5)
    noisy = [
        {**d, "label": ("stayed" if d["label"] == "churned" else "churned")}
        if not d["holdout"] and rng.random() < 0.35
        else d
        for d in documents
    ]
    assert sum(a["label"] != b["label"] for a, b in zip(documents, noisy)) > 40
    database["customers_noisy"].insert_many(noisy)
    split = 'split = "filter"\ntest_filter = { holdout = true }\n'
    churn_project.edit(GATE, "gates = { accuracy = 0.3 }\n" + split)
    clean = run("build", churn_project.path, "--json")
    assert clean.code == 0, clean.err
    assert run("promote", "churn-model", "1.0.0", "--alias", "production", "--config", churn_project.path).code == 0

    churn_project.edit('collection = "customers"', 'collection = "customers_noisy"')
    churn_project.edit(split, split + 'champion = "production"\nchampion_margin = 0.0\n')
    _version(churn_project, "1.0.1")
    worse = run("build", churn_project.path)
    assert worse.code == 1, worse.out
    assert "champion gate: accuracy" in worse.err and "does not beat production (1.0.0)" in worse.err
    record = database["mlpack_models"].find_one({"version": "1.0.1"})
    assert record["status"] == "rejected" and record["data"]["collection"] == "customers_noisy"
    champion_accuracy = json.loads(clean.out)["metrics"]["accuracy"]
    assert record["metrics"]["accuracy"] < champion_accuracy
    ours, theirs = _gate_scores(record["reason"])  # on the holdout rows the champion's filter does not hold
    assert ours < theirs and abs(theirs - champion_accuracy) < 0.05 and abs(ours - record["metrics"]["accuracy"]) < 0.05
    assert not (churn_project.path / "dist" / "churn-model-1.0.1.onnx").exists()
    print(f"clean {champion_accuracy:.4f}, trained on 35% wrong labels {record['metrics']['accuracy']:.4f}: refused")


def _predictions(project: Project, version: str) -> list[dict[str, Any]]:
    path = project.path / "dist" / f"churn-model-{version}.predictions.jsonl"
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def test_the_champion_is_compared_on_test_rows_it_did_not_train_on(
    churn_project: Project, run: Any, mongo_client: MongoClient[Any]
) -> None:
    """The trial's case in small: 1.0.0 built on 240 documents and promoted, 120 more inserted, 1.0.1 built
    with a random split: some of its test rows are 1.0.0's training rows, and are left out of the comparison."""
    database = mongo_client[churn_project.database]
    assert run("build", churn_project.path, "-q").code == 0
    assert run("promote", "churn-model", "1.0.0", "--alias", "production", "--config", churn_project.path).code == 0
    first_test = {row["_id"] for row in _predictions(churn_project, "1.0.0")}
    trained_on = set(range(1, 241)) - first_test  # what 1.0.0 really trained on: every document not in its test split
    database["customers"].insert_many(subscribers(360)[240:])
    churn_project.edit(GATE, 'gates = { accuracy = 0.5 }\nchampion = "production"\n')
    _version(churn_project, "1.0.1")
    built = run("build", churn_project.path)
    assert built.code == 0, built.err
    report = json.loads((churn_project.path / "dist" / "churn-model-1.0.1.json").read_text(encoding="utf-8"))
    entry = report["champion"]

    # The registry's record of 1.0.0 holds its training rows' filter: none of them is missing from it.
    record = database["mlpack_models"].find_one({"version": "1.0.0"})
    recorded = seen.read(record["trained_on"])
    assert recorded is not None and recorded.ids == len(trained_on) == 180
    assert recorded.contains(sorted(trained_on)).all()
    assert (
        "trained_on" not in json.dumps(report)
        and b"bloom" not in (churn_project.path / "dist").joinpath("churn-model-1.0.0.onnx").read_bytes()
    )

    rows = _predictions(churn_project, "1.0.1")
    overlap = [row for row in rows if row["_id"] in trained_on]
    held = recorded.contains([row["_id"] for row in rows])
    false_positives = int(held.sum()) - len(overlap)
    assert len(overlap) >= 20 and 0 <= false_positives <= 3
    assert entry["left_out"] == len(overlap) + false_positives and entry["rows"] == len(rows) - entry["left_out"]
    kept = [row for row, hold in zip(rows, held) if not hold]
    assert not {row["_id"] for row in kept} & trained_on
    # The challenger's figures in the comparison are its own on the kept rows (its report's: the whole split).
    accuracy = sum(row["truth"] == row["prediction"] for row in kept) / len(kept)
    assert entry["challenger"]["accuracy"] == pytest.approx(accuracy, abs=1e-6)
    assert report["metrics"]["accuracy"] == pytest.approx(
        sum(row["truth"] == row["prediction"] for row in rows) / len(rows), abs=1e-6
    )
    line = (
        f"vs production 1.0.0 on {entry['rows']} of {len(rows)} test rows ({entry['left_out']} it trained on left out)"
    )
    assert line in built.out
    assert "champion_warning" not in report


def test_a_champion_without_recorded_training_rows_is_compared_on_the_whole_split_with_a_warning(
    churn_project: Project, run: Any, mongo_client: MongoClient[Any]
) -> None:
    assert run("build", churn_project.path, "-q").code == 0
    assert run("promote", "churn-model", "1.0.0", "--alias", "production", "--config", churn_project.path).code == 0
    registry = mongo_client[churn_project.database]["mlpack_models"]
    registry.update_one({"version": "1.0.0"}, {"$unset": {"trained_on": ""}})  # as a build before the filter was
    churn_project.edit(GATE, 'gates = { accuracy = 0.5 }\nchampion = "production"\n')
    _version(churn_project, "1.0.1")
    built = run("build", churn_project.path, "--json")
    assert built.code == 0, built.err
    report = json.loads(built.out)
    entry = report["champion"]
    assert entry["left_out"] == 0 and entry["rows"] == len(_predictions(churn_project, "1.0.1"))
    assert entry["challenger"] == report["metrics"]
    assert "did not record its training rows" in report["champion_warning"]
    assert "did not record its training rows" in built.err


class _Runs:
    """A champion's model that answers `labels` by row id (the test column `x` holds each row's id)."""

    def __init__(self, labels: dict[int, str]) -> None:
        self.labels = labels
        self.classes = ["a", "b"]
        self.metadata = {"name": "m", "version": "1.0.0", "task": "classification", "target": "y", "inputs": []}
        self.metadata["features"] = [{"name": "x", "kind": "number"}]

    def run(self, columns: dict[str, np.ndarray]) -> tuple[list[str], None, None]:
        return [self.labels[int(x)] for x in columns["x"]], None, None


def _evaluate(champion_right: set[int], challenger_right: set[int], trained: list[int], margin: float) -> Any:
    """Ten test rows (ids 0..9, true label "a"), each model right on the rows given; the champion trained
    on the ids `trained` (none: no filter recorded)."""
    ids = list(range(10))
    filter_ = seen.of(ids, np.asarray(trained, dtype=np.int64)) if trained else None
    defending = champion.Champion("production", "1.0.0", Path("unused.onnx"), filter_)
    defending.__dict__["model"] = _Runs({i: "a" if i in champion_right else "b" for i in ids})
    predicted = np.array(["a" if i in challenger_right else "b" for i in ids], dtype=object)
    target = np.array(["a"] * 10, dtype=object)
    trained_model = SimpleNamespace(
        test_columns={"x": np.arange(10, dtype=np.float64)},
        test_target=target,
        test_weight=None,
        test_predicted=predicted,
        test_probabilities=None,
        classes=["a", "b"],
        pipeline=SimpleNamespace(classes_=np.array(["a", "b"], dtype=object)),
        metrics={"accuracy": round(float((predicted == target).mean()), 6)},
    )
    metadata = {"task": "classification", "target": "y", "inputs": [{"path": "x", "kind": "number"}], "classes": []}
    said: list[str] = []
    result = champion.evaluate(
        defending,
        trained_model,
        metadata,
        said.append,
        metric="accuracy",
        margin=margin,
        test_ids=ids,  # type: ignore[arg-type]
    )
    return result, said


def test_the_margin_gate_decides_on_the_rows_the_champion_did_not_train_on() -> None:
    # On the whole split both score 0.7 (refused by a margin of 0.1); on rows 4..9, the champion's unseen
    # ones, the champion scores 3/6 and the challenger 5/6: it passes.
    champion_right, challenger_right = {0, 1, 2, 3, 4, 5, 6}, {0, 1, 4, 5, 6, 7, 8}
    (entry, warning), said = _evaluate(champion_right, challenger_right, [0, 1, 2, 3], margin=0.1)
    assert warning == ""
    assert entry["rows"] == 6 and entry["left_out"] == 4
    assert entry["metrics"]["accuracy"] == 0.5 and entry["challenger"]["accuracy"] == pytest.approx(5 / 6, abs=1e-6)
    assert said == [
        "champion: vs production 1.0.0 on 6 of 10 test rows (4 it trained on left out): accuracy 0.5000 (+0.3333)"
    ]
    # The other way round: on the whole split the challenger wins by 0.2 (0.9 vs 0.7); on the 8 rows the
    # champion did not train on both score 7/8: refused.
    with pytest.raises(QualityGateError) as refused:
        _evaluate({0, 1, 4, 5, 6, 7, 8}, {0, 1, 2, 3, 4, 5, 6, 7, 8}, [2, 3], margin=0.1)
    assert "accuracy 0.8750 does not beat production (1.0.0) accuracy 0.8750" in refused.value.message
    assert "8 of 10 test rows (2 it trained on left out)" in refused.value.details


def test_too_few_unseen_test_rows_is_a_warning_not_a_comparison() -> None:
    (entry, warning), said = _evaluate(set(range(10)), set(range(10)), list(range(6)), margin=0.1)
    assert entry is None and said == []
    assert "trained on 6 of the 10 test rows: the 4 left are fewer than 5, not compared" in warning


@pytest.mark.parametrize(
    "ids",
    [
        [ObjectId() for _ in range(20_000)],
        list(range(-10_000, 10_000)),
        [f"customer-{i}" for i in range(20_000)],
        [{"a": i} for i in range(2_000)] + [float(i) + 0.5 for i in range(2_000)] + [True, False],
    ],
    ids=["objectid", "int", "str", "other"],
)
def test_the_filter_holds_every_id_it_was_given_and_few_others(ids: list[Any]) -> None:
    half = np.arange(0, len(ids), 2)
    filter_ = seen.of(Column(ids) if not isinstance(ids[0], dict) else ids, half)
    assert filter_.contains([ids[i] for i in half.tolist()]).all()  # no false negative
    others = filter_.contains([ids[i] for i in range(1, len(ids), 2)])
    assert others.mean() < 0.02 and filter_.rate == pytest.approx(seen.TARGET_RATE, rel=0.2)
    assert bytes(filter_.document()["bloom"]) == seen.read(filter_.document()).data  # type: ignore[union-attr]


def test_the_filter_keeps_types_apart_and_is_capped() -> None:
    # The int 7 and the string "7" are different _ids: the filter of the ints does not hold the strings.
    ints = seen.of(list(range(2000)), np.arange(2000))
    assert ints.contains([str(i) for i in range(2000)]).mean() < 0.05
    assert seen.canonical(ObjectId(b"1" * 12)) != seen.canonical(b"1" * 12)
    bits, hashes = seen.sized(50_000_000)
    assert bits == seen.MAX_BYTES * 8 and hashes >= 1
    assert seen.read({"scheme": "other", "bloom": b"", "bits": 8, "hashes": 1}) is None


@pytest.mark.parametrize("kind", ["int", "ObjectId", "str"])
def test_the_filter_holds_a_chunk_of_ids_at_a_time_and_sets_the_scheme_s_bits(kind: str) -> None:
    """A build records the filter of its training rows beside the dataset and its split (issue 23: a million
    documents): a Python object for every row at once (`tolist()`) and every row's positions were that
    moment's peak, above the build's."""
    make = {"int": int, "ObjectId": lambda i: ObjectId(i.to_bytes(12, "big")), "str": lambda i: f"k{i}"}[kind]
    values = [make(i) for i in range(250_000)]
    ids = Column(values) if kind != "str" else values
    rows = np.flatnonzero(np.arange(len(values)) % 5 != 0)  # the training rows of a split, 200,000
    tracemalloc.start()
    try:
        filter_ = seen.of(ids, rows)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    # At these 200,000 rows the peak was 27.0 / 19.9 / 25.0 MiB (ints, ObjectIds, strings), now 7.5 / 5.0 /
    # 5.3 MiB; at 800,000 it was 57.0 / 27.5 / 48.5 MiB, now 14.6 / 5.7 / 6.0 (an int column's int64 array).
    assert peak < 12 * 2**20, peak
    # The scheme's bits, set from every id at once: the same filter.
    expected = np.zeros(filter_.bits // 8, dtype=np.uint8)
    positions = (
        seen.Seen(b"", filter_.bits, filter_.hashes, 0, 0.0)
        ._positions([seen.canonical(values[row]) for row in rows.tolist()])
        .ravel()
    )
    np.bitwise_or.at(expected, positions >> np.uint64(3), np.left_shift(1, positions & np.uint64(7)).astype(np.uint8))
    assert filter_.data == expected.tobytes()


def test_the_filter_bytes_are_the_same_in_every_process(tmp_path: Path) -> None:
    script = (
        "import hashlib, numpy as np\n"
        "from bson import ObjectId\n"
        "from mlpack.training import seen\n"
        "ids = [ObjectId(bytes(range(i % 200, i % 200 + 12))) for i in range(3000)] + list(range(3000)) + "
        "[f'd{i}' for i in range(3000)]\n"
        "print(hashlib.sha256(seen.of(ids, np.arange(0, len(ids), 3)).data).hexdigest())\n"
    )
    digests = set()
    for hash_seed in ("1", "2", "random"):
        done = subprocess.run(
            [sys.executable, "-c", script],
            capture_output=True,
            text=True,
            env={**os.environ, "PYTHONHASHSEED": hash_seed},
        )
        assert done.returncode == 0, done.stderr
        digests.add(done.stdout.strip())
    assert len(digests) == 1
