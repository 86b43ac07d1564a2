"""Cross-validation, hyper-parameter search and sample weights, against a
real MongoDB wire server: every trial is a document in `mlpack_experiments` the moment it finishes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from pymongo import MongoClient

from mlpack.build import make_model
from mlpack.config import parse_config
from mlpack.training.pipeline import build_pipeline, frame
from mlpack.training.recipe import plan, settle
from mlpack.training.train import split
from tests.helpers.cli import artifacts_in, assert_clean_error
from tests.helpers.projects import Project
from tests.helpers.training import config_for, export

GRID = """
[search]
method = "grid"
params = { max_depth = [2, 6], min_samples_leaf = [1, 8] }
scoring = "f1_macro"
cv = 3
"""


def append(project: Project, text: str) -> None:
    project.config.write_text(project.config.read_text(encoding="utf-8") + text, encoding="utf-8")


def trials_of(client: MongoClient[Any], project: Project) -> list[dict[str, Any]]:
    return list(client[project.database]["mlpack_experiments"].find({}, projection={"_id": 0}).sort("trial", 1))


def test_grid_search_logs_every_trial_refits_the_best_and_lists_them(
    churn_project: Project, run, mongo_client: MongoClient[Any]
) -> None:
    append(churn_project, GRID)
    result = run("build", churn_project.path, "--json")
    assert result.code == 0, result.err
    report = json.loads(result.out)

    trials = trials_of(mongo_client, churn_project)
    assert len(trials) == 4
    assert [t["params"] for t in trials] == [
        {"max_depth": 2, "min_samples_leaf": 1},
        {"max_depth": 2, "min_samples_leaf": 8},
        {"max_depth": 6, "min_samples_leaf": 1},
        {"max_depth": 6, "min_samples_leaf": 8},
    ]
    for trial in trials:
        assert (trial["name"], trial["version"], trial["status"]) == ("churn-model", "1.0.0", "ok")
        assert len(trial["folds"]) == 3 and set(trial["folds"][0]) == {"accuracy", "f1_macro", "roc_auc"}
        f1 = [fold["f1_macro"] for fold in trial["folds"]]
        assert trial["scores"]["f1_macro"]["mean"] == pytest.approx(np.mean(f1), abs=1e-6)
        assert trial["scores"]["f1_macro"]["std"] == pytest.approx(np.std(f1), abs=1e-6)
        assert trial["score"] == trial["scores"]["f1_macro"]["mean"] and trial["scoring"] == "f1_macro"
        assert trial["fit_seconds"] > 0 and len(trial["fold_fit_seconds"]) == 3
        assert trial["estimator"]["params"] == {"n_estimators": 30, "random_state": 0, **trial["params"]}
    best = max(trials, key=lambda t: (t["score"], -t["trial"]))
    assert [t["trial"] for t in trials if t.get("best")] == [best["trial"]]

    # The best point is refit on the whole training split and is what the artifacts carry.
    assert report["estimator"]["params"] == best["estimator"]["params"]
    search = report["search"]
    assert search["method"] == "grid" and search["trials"] == 4 and search["failed"] == 0
    assert search["space"] == {"max_depth": [2, 6], "min_samples_leaf": [1, 8]}
    assert search["best_params"] == best["params"] and search["folds"] == 3
    assert [r["trial"] for r in search["results"]][0] == best["trial"]
    assert report["cv"]["scores"] == best["scores"] and report["cv"]["folds"] == 3
    assert [t["trial"] for t in report["timings"]["trials"]] == [0, 1, 2, 3]

    # `mlpack experiments`: best first, as JSON and as a table.
    listing = run("experiments", "churn-model", "--config", churn_project.path, "--json")
    assert listing.code == 0, listing.err
    rows = json.loads(listing.out)
    scores = [row["score"] for row in rows]
    assert scores == sorted(scores, reverse=True) and rows[0]["trial"] == best["trial"]
    table = run("experiments", "--config", churn_project.path, "--version", "1.0.0")
    assert table.code == 0 and table.out.splitlines()[0].split()[:4] == ["name", "version", "run", "trial"]
    assert f"{best['trial']}*" in table.out.splitlines()[1]
    assert_clean_error(run("experiments", "no-such-model", "--config", churn_project.path), 2, "known models: churn")
    assert_clean_error(
        run("experiments", "churn-model", "--version", "9.9.9", "--config", churn_project.path),
        2,
        "known versions: 1.0.0",
    )


def test_a_build_killed_after_the_search_leaves_its_trials(
    churn_project: Project, mongo_client: MongoClient[Any]
) -> None:
    """The acceptance test of issue #10: a real `python -m mlpack build` process, SIGKILLed."""
    append(churn_project, GRID)
    experiments = mongo_client[churn_project.database]["mlpack_experiments"]
    process = subprocess.Popen(
        [sys.executable, "-m", "mlpack", "build", str(churn_project.path), "-q"],
        env={**os.environ, "MLPACK_TEST_URI": churn_project.uri},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 120
        while experiments.count_documents({}) < 4:
            assert process.poll() is None, process.stderr.read() if process.stderr else ""
            assert time.monotonic() < deadline, "the search did not finish"
            time.sleep(0.02)
        process.send_signal(signal.SIGKILL)  # refit, export and packaging (seconds) are still ahead
        assert process.wait(timeout=30) == -signal.SIGKILL
    finally:
        if process.poll() is None:
            process.kill()
        if process.stderr:
            process.stderr.close()
    trials = list(experiments.find({}))
    assert len(trials) == 4 and all(t["status"] == "ok" and len(t["folds"]) == 3 for t in trials)
    assert len({t["run"] for t in trials}) == 1
    # The killed build registered nothing and left no artifact under a final name.
    assert mongo_client[churn_project.database]["mlpack_models"].count_documents({"status": "built"}) == 0
    finals = [name for name in artifacts_in(churn_project.path / "dist") if not name.startswith(".")]
    assert finals == []


def test_a_build_killed_during_the_search_keeps_the_trials_that_finished(
    churn_project: Project, mongo_client: MongoClient[Any]
) -> None:
    """Trials are written one by one, not at the end: kill as soon as the first one lands."""
    churn_project.edit("n_estimators = 30", "n_estimators = 150")  # slower trials: a window to kill in
    append(churn_project, GRID)
    experiments = mongo_client[churn_project.database]["mlpack_experiments"]
    process = subprocess.Popen(
        [sys.executable, "-m", "mlpack", "build", str(churn_project.path), "-q"],
        env={**os.environ, "MLPACK_TEST_URI": churn_project.uri},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 120
        while experiments.count_documents({}) < 1:
            assert process.poll() is None and time.monotonic() < deadline
            time.sleep(0.01)
        process.send_signal(signal.SIGKILL)
        assert process.wait(timeout=30) == -signal.SIGKILL
    finally:
        if process.poll() is None:
            process.kill()
    trials = list(experiments.find({}))
    assert 1 <= len(trials) < 4, len(trials)
    assert all(t["status"] == "ok" and len(t["folds"]) == 3 for t in trials)  # whole trials, never partial


def test_cross_validation_alone_is_one_logged_trial_with_mean_and_std_of_every_metric(
    churn_project: Project, run, mongo_client: MongoClient[Any]
) -> None:
    churn_project.edit("seed = 0", "seed = 0\ncv = 4")
    result = run("build", churn_project.path, "--json")
    assert result.code == 0, result.err
    report = json.loads(result.out)
    assert "search" not in report
    assert report["cv"]["folds"] == 4 and set(report["cv"]["scores"]) == {"accuracy", "f1_macro", "roc_auc"}
    (trial,) = trials_of(mongo_client, churn_project)
    assert trial["kind"] == "cv" and trial["params"] == {} and len(trial["folds"]) == 4 and trial["best"]
    assert trial["scores"] == report["cv"]["scores"]
    assert 0.5 < report["cv"]["scores"]["accuracy"]["mean"] <= 1 and report["cv"]["scores"]["accuracy"]["std"] >= 0


def test_random_search_is_seeded_and_samples_n_iter_points() -> None:
    search = {"method": "random", "params": {"max_depth": [2, 3, 4, 5, 6], "min_samples_leaf": [1, 2, 4]}}
    config = config_for("sklearn.ensemble.RandomForestClassifier", "classification", search={**search, "n_iter": 4})
    first, second = plan(config), plan(config)
    assert first is not None and second is not None
    assert len(first.points) == 4 and first.points == second.points
    assert len({json.dumps(p, sort_keys=True) for p in first.points}) == 4
    other = plan(config_for("sklearn.ensemble.RandomForestClassifier", "classification", search={**search, "seed": 1}))
    assert (
        other is not None
        and other.points
        != plan(config_for("sklearn.ensemble.RandomForestClassifier", "classification", search=search)).points
    )  # type: ignore[union-attr]
    small = config_for(
        "sklearn.ensemble.RandomForestClassifier",
        "classification",
        search={"method": "random", "params": {"max_depth": [2, 3]}, "n_iter": 50},
    )
    assert len(plan(small).points) == 2  # type: ignore[union-attr]  # never more points than the space holds


def test_a_failing_point_is_logged_as_failed_said_and_the_others_still_win() -> None:
    from tests.helpers.documents import subscribers

    # Each value is one the estimator takes; together they are not (lbfgs has no l1 penalty): that is
    # only found by fitting, so the point fails as a trial.
    config = config_for(
        "sklearn.linear_model.LogisticRegression",
        "classification",
        {"max_iter": 500},
        search={"params": {"l1_ratio": [0.0, 1.0]}, "cv": 3},
    )
    said: list[str] = []
    exported = export(config, subscribers(120), warn=said.append)
    assert exported.experiment is not None
    statuses = {t.params["l1_ratio"]: t.status for t in exported.experiment.trials}
    assert statuses == {0.0: "ok", 1.0: "failed"}
    failed = next(t for t in exported.experiment.trials if t.status == "failed")
    assert "l1 penalty" in failed.error
    assert exported.metadata["search"]["failed"] == 1 and exported.metadata["estimator"]["params"]["l1_ratio"] == 0.0
    assert any(
        w.startswith("trial 2 of 2 (l1_ratio = 1.0) failed to train and is left out of the ranking: ValueError")
        for w in said
    ), said


def test_a_value_the_estimator_refuses_is_exit_2_before_any_data(churn_project: Project, run) -> None:
    append(churn_project, "\n[search]\nparams = { max_depth = [3, -1] }\n")
    assert_clean_error(run("build", churn_project.path), 2, "[search].params.max_depth = -1: The 'max_depth' parameter")


@pytest.mark.parametrize(
    ("extra", "needles"),
    [
        ("[search]\nparams = { max_dept = [2, 4] }", ["[search].params.max_dept", "did you mean 'max_depth'"]),
        ("[search]\nparams = { max_depth = [] }", ["[search].params.max_depth is an empty list"]),
        ("[search]\nparams = { max_depth = 4 }", ["[search].params.max_depth must be a list"]),
        ("[search]\nparams = { max_depth = [2] }\nscoring = 'rmse'", ["[search].scoring 'rmse'", "accuracy"]),
        ("[search]\nparams = { max_depth = [2] }\ncv = 1", ["[search].cv must be at least 2"]),
        ("[search]\nparams = { max_depth = [2] }\nmethod = 'bayes'", ["[search].method must be one of"]),
        ("[search]\nparams = { max_depth = [2] }\nn_iter = 0", ["[search].n_iter must be at least 1"]),
        ("[search]\nparams = { max_depth = [2] }\ncvv = 3", ["unknown key [search].cvv", "did you mean 'cv'"]),
        ("[search]\nmethod = 'grid'", ["missing required key [search].params"]),
    ],
)
def test_bad_search_config_is_exit_2_naming_the_key_before_any_data(
    churn_project: Project, run, mongo_client: MongoClient[Any], extra: str, needles: list[str]
) -> None:
    append(churn_project, "\n" + extra + "\n")
    assert_clean_error(run("build", churn_project.path), 2, *needles)
    assert trials_of(mongo_client, churn_project) == []


def test_bad_cv_is_exit_2(churn_project: Project, run) -> None:
    churn_project.edit("seed = 0", "seed = 0\ncv = 1")
    assert_clean_error(run("build", churn_project.path), 2, "[evaluation].cv must be 0")


def test_more_folds_than_a_class_has_rows_is_a_data_error(churn_project: Project, run) -> None:
    churn_project.edit("seed = 0", "seed = 0\ncv = 150")
    assert_clean_error(run("build", churn_project.path), 1, "cannot cross-validate", "150 folds")


# -- [features].weight ------------------------------------------------------------------------------
def weighted(documents: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Churned subscribers count five times: the class imbalance answer of issue #10."""
    return [{**d, "account_weight": 5.0 if d["label"] == "churned" else 1.0} for d in documents]


def test_sample_weights_reach_the_fit_and_are_not_a_model_input() -> None:
    from tests.helpers.documents import subscribers

    documents = weighted(subscribers(200))
    estimator = "sklearn.linear_model.LogisticRegression"
    plain = config_for(estimator, "classification")
    config = config_for(estimator, "classification", features={"weight": "account_weight"})
    exported = export(config, documents)
    unweighted = export(plain, documents)

    # The same split, fitted by hand with the same weights: the same model; without them: another.
    from mlpack.source import collect
    from mlpack.validate import validate

    raw = collect(documents, [*config.features.inputs, config.features.target, "account_weight"])
    dataset = validate(raw, config.features, "classification")
    recipe = settle(config)
    rows = split(recipe, dataset)
    assert rows.train_weight is not None and set(rows.train_weight.tolist()) == {1.0, 5.0}
    names = recipe.input_names
    from sklearn.linear_model import LogisticRegression

    by_hand = build_pipeline(recipe, LogisticRegression())
    by_hand.fit(frame(rows.train_columns, names), rows.train_target, estimator__sample_weight=rows.train_weight)
    coefficients = exported.trained.pipeline[-1].coef_
    np.testing.assert_allclose(coefficients, by_hand[-1].coef_, rtol=1e-6)
    assert not np.allclose(coefficients, unweighted.trained.pipeline[-1].coef_, rtol=1e-3)
    churned = exported.trained.classes.index("churned")  # type: ignore[union-attr]
    weighted_share = (exported.trained.pipeline.predict(exported.trained.test_frame) == "churned").mean()
    plain_share = (unweighted.trained.pipeline.predict(unweighted.trained.test_frame) == "churned").mean()
    assert churned >= 0 and weighted_share > plain_share  # weighting a class up predicts it more often

    # Not an input of the graph or the metadata; records without it predict.
    assert "account_weight" not in [f["name"] for f in exported.metadata["features"]]
    assert exported.metadata["parity"]["within_tolerance"]
    assert dataset.fingerprint != validate(raw, plain.features, "classification").fingerprint


def test_class_weight_keys_are_matched_to_the_classes() -> None:
    from tests.helpers.documents import subscribers

    config = config_for(
        "sklearn.linear_model.LogisticRegression", "classification", {"class_weight": {"churned": 4.0, "stayed": 1.0}}
    )
    exported = export(config, subscribers(160))
    assert exported.trained.pipeline[-1].class_weight == {"churned": 4.0, "stayed": 1.0}
    assert exported.metadata["estimator"]["params"] == {"class_weight": {"churned": 4.0, "stayed": 1.0}}

    integer_labels = [{**d, "label": int(d["churned"])} for d in subscribers(160)]
    config = config_for("sklearn.tree.DecisionTreeClassifier", "classification", {"class_weight": {"1": 3.0, "0": 1.0}})
    assert export(config, integer_labels).trained.pipeline[-1].class_weight == {1: 3.0, 0: 1.0}

    from mlpack.errors import ConfigError

    config = config_for("sklearn.tree.DecisionTreeClassifier", "classification", {"class_weight": {"leaves": 3.0}})
    with pytest.raises(ConfigError, match="class_weight names 'leaves'.*classes: churned, stayed"):
        export(config, subscribers(160))


def test_class_weight_keys_by_label_name_work_in_the_search_as_in_the_final_fit() -> None:
    """[features].labels names are class_weight keys for the trials too (they once failed as "not a class")."""
    from mlpack.errors import ConfigError
    from tests.helpers.documents import subscribers

    documents = [{**d, "label": int(d["churned"])} for d in subscribers(160)]
    weights = {"class_weight": {"gone": 3.0, "kept": 1.0}}
    labels = {"labels": {"1": "gone", "0": "kept"}}
    tree = "sklearn.tree.DecisionTreeClassifier"
    plain = export(config_for(tree, "classification", weights, features=labels), documents)
    assert plain.trained.pipeline[-1].class_weight == {1: 3.0, 0: 1.0}
    searched = config_for(
        "sklearn.tree.DecisionTreeClassifier",
        "classification",
        weights,
        features=labels,
        search={"params": {"max_depth": [2, 3], "class_weight": [{"gone": 5.0, "kept": 1.0}, "balanced"]}, "cv": 3},
    )
    exported = export(searched, documents)
    assert exported.experiment is not None
    assert [t.status for t in exported.experiment.trials] == ["ok"] * 4
    assert exported.experiment.best.params["class_weight"] in ({"gone": 5.0, "kept": 1.0}, "balanced")
    assert exported.trained.pipeline[-1].class_weight in ({1: 5.0, 0: 1.0}, "balanced")
    bad = config_for(
        "sklearn.tree.DecisionTreeClassifier",
        "classification",
        {},
        features=labels,
        search={"params": {"class_weight": [{"left": 5.0}]}, "cv": 3},
    )
    with pytest.raises(ConfigError, match="class_weight names 'left'.*classes: 0, 1, kept, gone"):
        export(bad, documents)


def test_weight_build_end_to_end_and_its_bad_inputs(
    churn_project: Project, run, mongo_client: MongoClient[Any]
) -> None:
    collection = mongo_client[churn_project.database]["customers"]
    for document in collection.find({}, projection={"label": 1}):
        collection.update_one(
            {"_id": document["_id"]}, {"$set": {"account_weight": 3 if document["label"] == "churned" else 1}}
        )
    churn_project.edit('target = "label"', 'target = "label"\nweight = "account_weight"')
    result = run("build", churn_project.path, "--json")
    assert result.code == 0, result.err
    assert "account_weight" not in [f["name"] for f in json.loads(result.out)["features"]]

    collection.update_one({"_id": 3}, {"$set": {"account_weight": -1}})
    collection.update_one({"_id": 4}, {"$unset": {"account_weight": ""}})
    collection.update_one({"_id": 5}, {"$set": {"account_weight": "heavy"}})
    bad = run("build", churn_project.path, "--force")
    assert_clean_error(bad, 1, "weight 'account_weight': 3 document(s) without a finite, non-negative number")

    churn_project.edit("sklearn.ensemble.RandomForestClassifier", "sklearn.neighbors.KNeighborsClassifier")
    churn_project.edit("params = { n_estimators = 30, random_state = 0 }", "params = {}")
    # (KNeighborsClassifier, which takes no sample weights, is refused before that: its parity fails on ties.)
    assert_clean_error(run("build", churn_project.path, "--force"), 2, "KNeighborsClassifier is not supported")
    churn_project.edit('weight = "account_weight"', 'weight = "contract"')
    assert_clean_error(run("build", churn_project.path, "--force"), 2, "'contract' is listed twice")


def test_make_model_without_a_log_still_searches() -> None:
    """The in-process path (no database) runs the same search; nothing is logged."""
    from tests.helpers.documents import subscribers

    raw_config = parse_config(
        {
            "model": {"name": "m", "version": "1.0.0", "task": "regression"},
            "source": {"database": "d", "collection": "c"},
            "features": {"numeric": ["tenure_months", "support_calls"], "target": "lifetime_value"},
            "estimator": {"class": "sklearn.linear_model.Ridge"},
            "search": {"params": {"alpha": [0.1, 10.0]}},
        },
        path=Path("mlpack.toml"),
    )
    from datetime import UTC, datetime

    from mlpack.source import collect
    from mlpack.validate import validate

    raw = collect(subscribers(120), ["tenure_months", "support_calls", "lifetime_value"])
    dataset = validate(raw, raw_config.features, "regression")
    exported = make_model(
        raw_config, dataset, recipe=settle(raw_config), version="1.0.0", created=datetime(2026, 1, 1, tzinfo=UTC)
    )
    assert exported.metadata["search"]["scoring"] == "r2" and exported.metadata["search"]["trials"] == 2
    assert exported.metadata["search"]["folds"] == 3


def test_an_error_metric_ranks_lowest_first() -> None:
    from tests.helpers.documents import subscribers

    config = config_for(
        "sklearn.linear_model.Ridge",
        "regression",
        search={"params": {"alpha": [0.01, 1e6]}, "scoring": "rmse", "cv": 3},
    )
    exported = export(config, subscribers(150))
    assert exported.experiment is not None
    by_alpha = {t.params["alpha"]: t.score("rmse") for t in exported.experiment.trials}
    assert by_alpha[0.01] < by_alpha[1e6]  # a huge penalty fits worse
    assert exported.metadata["search"]["best_params"] == {"alpha": 0.01}
    assert [r["params"]["alpha"] for r in exported.metadata["search"]["results"]] == [0.01, 1e6]


def test_disabled_registry_logs_nothing_and_the_summary_is_printed(
    churn_project: Project, run, mongo_client: MongoClient[Any]
) -> None:
    append(churn_project, "\n[registry]\nenabled = false\n" + GRID.replace("min_samples_leaf = [1, 8]", "n_jobs = [1]"))
    result = run("build", churn_project.path, "-v")
    assert result.code == 0, result.err
    assert "search: 2 trials, best {" in result.out and "3-fold CV f1_macro" in result.out
    assert "trial 1/2" in result.err  # progress names each trial
    assert trials_of(mongo_client, churn_project) == []


def test_a_scoring_metric_outside_the_reported_ones_is_still_computed_and_ranks() -> None:
    from tests.helpers.documents import subscribers

    config = config_for(
        "sklearn.tree.DecisionTreeClassifier",
        "classification",
        {"random_state": 0},
        evaluation={"metrics": ["accuracy"]},
        search={"params": {"max_depth": [1, 4]}, "scoring": "balanced_accuracy", "cv": 3},
    )
    exported = export(config, subscribers(160))
    assert exported.experiment is not None
    scores = {t.params["max_depth"]: t.score("balanced_accuracy") for t in exported.experiment.trials}
    assert all(not np.isnan(v) for v in scores.values())
    assert exported.metadata["search"]["best_params"] == {"max_depth": max(scores, key=lambda d: scores[d])}


def test_none_in_a_search_space_is_written_at_none_and_a_bare_none_gets_that_spelling(
    churn_project: Project, run, mongo_client: MongoClient[Any]
) -> None:
    text = churn_project.config.read_text(encoding="utf-8")
    append(churn_project, '\n[search]\nparams = { max_depth = [3, "none"] }\ncv = 3\n')
    assert_clean_error(
        run("build", churn_project.path), 2, "[search].params.max_depth = 'none'", 'write "@none" for None'
    )
    churn_project.config.write_text(text, encoding="utf-8")
    append(
        churn_project,
        '\n[search]\nparams = { max_depth = [3, "@none"], class_weight = ["balanced", "@none"] }\ncv = 3\n',
    )
    result = run("build", churn_project.path, "--json")
    assert result.code == 0, result.err
    search = json.loads(result.out)["search"]
    assert search["space"] == {"max_depth": [3, None], "class_weight": ["balanced", None]}
    assert search["trials"] == 4 and search["failed"] == 0
    logged = trials_of(mongo_client, churn_project)
    assert sorted(((t["params"]["max_depth"] or 0), t["params"]["class_weight"] or "") for t in logged) == [
        (0, ""),
        (0, "balanced"),
        (3, ""),
        (3, "balanced"),
    ]
    assert all(t["status"] == "ok" for t in logged)
