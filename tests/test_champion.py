"""Challenger vs champion: [evaluation].champion scores the aliased version on the same test split."""

from __future__ import annotations

import json
import random
from typing import Any

from pymongo import MongoClient

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
    assert set(entry["metrics"]) == set(report["metrics"])
    for name, value in report["metrics"].items():
        assert abs(entry["difference"][name] - round(value - entry["metrics"][name], 6)) < 1e-9
    assert report["metrics"]["accuracy"] >= entry["metrics"]["accuracy"] + 0.01
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
    ours, theirs = f"{record['metrics']['accuracy']:.4f}", f"{report['metrics']['accuracy']:.4f}"
    assert ours in record["reason"] and theirs in record["reason"] and ours != theirs
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
    assert f"{champion_accuracy:.4f}" in record["reason"] and f"{record['metrics']['accuracy']:.4f}" in record["reason"]
    assert not (churn_project.path / "dist" / "churn-model-1.0.1.onnx").exists()
    print(f"clean {champion_accuracy:.4f}, trained on 35% wrong labels {record['metrics']['accuracy']:.4f}: refused")
