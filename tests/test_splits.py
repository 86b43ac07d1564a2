"""[evaluation].split: random, time (by a date field), group (by a field) and filter (a MongoDB query).

The test split, the cross-validation folds and the metadata follow the chosen rule; the filter
evaluated on loaded documents agrees with the real server's own reading of the same query.
"""

from __future__ import annotations

import json
import random
from datetime import UTC, date, datetime, timedelta
from typing import Any

import numpy as np
import pytest
from pymongo import MongoClient

from mlpack import filters
from mlpack.config import parse_config
from mlpack.errors import ConfigError, DataError
from mlpack.source import collect
from mlpack.training import splits
from mlpack.training.experiments import _folds
from mlpack.training.recipe import settle
from mlpack.training.train import split
from mlpack.validate import validate
from tests.helpers.cli import assert_clean_error
from tests.helpers.documents import subscribers
from tests.helpers.projects import Project
from tests.helpers.training import config_for, export

START = datetime(2023, 1, 1)
REGIONS = ["north", "south", "east", "west"]


def dated(n: int = 300, seed: int = 7) -> list[dict[str, Any]]:
    """Subscribers with a signup date (one a day, shuffled), an account (2-6 documents each) and a region."""
    rng = random.Random(seed)
    documents = subscribers(n, seed=seed, absent=False)
    days = list(range(n))
    rng.shuffle(days)
    account = 0
    for index, document in enumerate(documents):
        document["signup"] = START + timedelta(days=days[index], hours=rng.randint(0, 23))
        if index == 0 or rng.random() < 0.3:
            account += 1
        document["account"] = f"a{account:04d}"
        document["region"] = rng.choice(REGIONS)
    return documents


def churn(**evaluation: Any) -> Any:
    return config_for("sklearn.linear_model.LogisticRegression", "classification", evaluation=evaluation)


def dataset_of(config: Any, documents: list[dict[str, Any]]) -> Any:
    raw = collect(documents, config.features.loaded)
    return validate(raw, config.features, config.model.task)


def test_a_time_split_holds_out_the_newest_documents_and_folds_follow_time() -> None:
    documents = dated()
    config = churn(split="time", split_field="signup", test_size=0.25, cv=3)
    dataset = dataset_of(config, documents)
    rows = split(settle(config), dataset)
    keys = splits.split_keys("time", "signup", dataset.split_values, dataset.ids)
    test = keys >= np.sort(keys)[len(keys) - 75]
    assert len(rows.test_target) == 75 == int(test.sum()) and len(rows.train_target) == 225
    assert rows.train_keys is not None and rows.train_keys.max() < keys[test].min()  # train is older than test
    newest = sorted(d["signup"] for d in documents)[-75:]
    assert datetime.fromtimestamp(keys[test].min() / 1000, UTC).replace(tzinfo=None) == newest[0]

    folds = _folds(settle(config), settle(config).plan, rows.train_target, rows.train_keys)  # type: ignore[arg-type]
    assert len(folds) == 3
    for fit, check in folds:  # each fold validates on documents newer than every one it trains on
        assert rows.train_keys[fit].max() < rows.train_keys[check].min()

    exported = export(config, documents)  # trains, cross-validates, exports; parity on every row
    assert exported.metadata["evaluation"] == {"test_size": 0.25, "seed": 0, "split": "time", "split_field": "signup"}
    assert exported.metadata["parity"]["test_rows"] == 75 and exported.metadata["cv"]["folds"] == 3
    assert "signup" not in [entry["path"] for entry in exported.metadata["inputs"]]  # read, never a model input


def test_a_group_split_keeps_every_group_in_one_split_and_in_one_fold() -> None:
    documents = dated(seed=3)
    config = churn(split="group", split_field="account", test_size=0.2, cv=4)
    dataset = dataset_of(config, documents)
    rows = split(settle(config), dataset)
    keys = splits.split_keys("group", "account", dataset.split_values, dataset.ids)
    assert rows.train_keys is not None
    train_groups = set(rows.train_keys.tolist())
    test_groups = set(keys.tolist()) - train_groups
    assert train_groups.isdisjoint(test_groups) and test_groups
    assert len(rows.train_target) + len(rows.test_target) == 300
    assert sum(1 for k in keys.tolist() if k in test_groups) == len(rows.test_target)
    folds = _folds(settle(config), settle(config).plan, rows.train_target, rows.train_keys)  # type: ignore[arg-type]
    seen: set[str] = set()
    for _, check in folds:
        groups = set(rows.train_keys[check].tolist())
        assert seen.isdisjoint(groups)
        seen |= groups
    assert seen == train_groups
    assert export(config, documents).metadata["evaluation"]["split"] == "group"


def test_a_filter_split_holds_out_exactly_the_matching_documents() -> None:
    documents = dated(seed=5)
    query = {"region": {"$in": ["north", "east"]}, "signup": {"$gte": date(2023, 6, 1)}}
    config = churn(split="filter", test_filter=query)
    dataset = dataset_of(config, documents)
    rows = split(settle(config), dataset)
    expected = [d for d in documents if d["region"] in ("north", "east") and d["signup"] >= datetime(2023, 6, 1)]
    assert len(rows.test_target) == len(expected) and len(rows.train_target) == 300 - len(expected)
    metadata = export(config, documents).metadata
    assert metadata["evaluation"]["split"] == "filter"
    assert metadata["evaluation"]["test_filter"] == {
        "region": {"$in": ["north", "east"]},
        "signup": {"$gte": {"$date": "2023-06-01T00:00:00Z"}},
    }


@pytest.mark.parametrize(
    ("evaluation", "message"),
    [
        ({"split": "time"}, 'split = "time" needs split_field: a date field'),
        ({"split": "group"}, 'split = "group" needs split_field: a field to group by'),
        ({"split": "filter"}, 'split = "filter" needs test_filter'),
        ({"split": "weekly"}, "[evaluation].split must be one of 'random', 'time', 'group', 'filter'"),
        ({"split_field": "signup"}, 'split_field is for split = "time" or "group", not "random"'),
        ({"test_filter": {"region": "north"}}, 'test_filter needs split = "filter"'),
        ({"split": "time", "split_field": "a..b"}, "split_field 'a..b' is not a valid dotted path"),
        ({"split": "filter", "test_filter": {"$where": "1"}}, "$where is not supported here"),
        ({"split": "filter", "test_filter": {"x": {"$near": [0, 0]}}}, "'x': $near is not supported here"),
        ({"split": "filter", "test_filter": {"x": {"$in": 3}}}, "'x': $in takes a list"),
        ({"split": "time", "split_field": "signup", "test_filter": {"x": 1}}, 'test_filter is for split = "filter"'),
    ],
)
def test_split_mistakes_are_config_errors(evaluation: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError) as error:
        churn(**evaluation)
    assert message in error.value.message


def test_documents_the_split_cannot_place_are_data_errors() -> None:
    documents = dated()
    documents[4]["signup"] = None
    with pytest.raises(DataError, match=r"split_field 'signup' is missing in 1 document\(s\), e\.g\. _id 5"):
        config = churn(split="time", split_field="signup")
        split(settle(config), dataset_of(config, documents))
    documents[4]["signup"] = "last tuesday"
    config = churn(split="time", split_field="signup")
    with pytest.raises(DataError, match=r"split_field 'signup': _id 5: expected a date, got 'last tuesday'"):
        split(settle(config), dataset_of(config, documents))
    one_group = [{**d, "account": "same"} for d in dated()]
    config = churn(split="group", split_field="account")
    with pytest.raises(DataError, match="at least 2 distinct values to split by group"):
        split(settle(config), dataset_of(config, one_group))
    config = churn(split="filter", test_filter={"region": "nowhere"})
    with pytest.raises(DataError, match='split = "filter" leaves the test split empty'):
        split(settle(config), dataset_of(config, dated()))


QUERIES: list[dict[str, Any]] = [
    {"region": "north"},
    {"region": {"$ne": "north"}, "support_calls": {"$gt": 3}},
    {"$or": [{"contract": "monthly"}, {"tenure_months": {"$lte": 6}}]},
    {"signup": {"$lt": datetime(2023, 4, 1, tzinfo=UTC)}},
    {"billing.method": {"$nin": ["card", "bank"]}},
    {"account": {"$regex": "^a00[0-4]"}},
    {"tenure_months": {"$not": {"$gte": 12}}},
    {"$nor": [{"region": "south"}, {"billing.monthly_charges": {"$gte": 60.5}}]},
    {"account": {"$exists": True}, "region": {"$in": ["east", "west"]}},
    {"holdout": {"$exists": False}, "contract": {"$ne": "yearly"}},
]


def test_the_filter_matches_what_the_server_matches(mongo_client: MongoClient[Any], database_name: str) -> None:
    documents = dated(seed=9)
    collection = mongo_client[database_name]["customers"]
    collection.insert_many(documents)
    stored = list(collection.find(sort=[("_id", 1)]))
    paths = ["region", "support_calls", "contract", "tenure_months", "signup", "billing.method", "account", "holdout"]
    raw = collect(stored, paths + ["billing.monthly_charges"])
    for query in QUERIES:
        found = filters.matching(query, raw.values, raw.rows)
        ids = {d["_id"] for d in collection.find(query, {"_id": 1})}
        assert {raw.ids[i] for i in np.flatnonzero(found)} == ids, query
    # The one difference, documented: a loaded null is not told from an absent field, so $exists
    # leaves out the documents that hold null (MongoDB counts them as having the field).
    nulls = {d["_id"] for d in stored if d["tenure_months"] is None}
    exists = filters.matching({"tenure_months": {"$exists": True}}, raw.values, raw.rows)
    assert nulls and {raw.ids[i] for i in np.flatnonzero(~exists)} == nulls


def test_time_split_build_against_mongodb(churn_project: Project, run, mongo_client: MongoClient[Any]) -> None:
    collection = mongo_client[churn_project.database]["customers"]
    collection.delete_many({})
    collection.insert_many(dated(240, seed=2))
    churn_project.edit("test_size = 0.25", 'test_size = 0.25\nsplit = "time"\nsplit_field = "signup"\ncv = 3')
    built = run("build", churn_project.path, "--json")
    assert built.code == 0, built.err
    report = json.loads(built.out)
    assert report["evaluation"]["split"] == "time" and report["evaluation"]["split_field"] == "signup"
    assert report["parity"]["test_rows"] == 60 and report["parity"]["train_rows"] == 180
    assert report["data"]["rows"] == 240 and report["parity"]["within_tolerance"]

    churn_project.edit('split = "time"\nsplit_field = "signup"', 'split = "group"\nsplit_field = "acount"')
    absent = run("build", churn_project.path, "--version", "1.0.1")
    assert_clean_error(absent, 1, "field 'acount' is absent from all 240 documents (did you mean 'account'?)")
    churn_project.edit('split_field = "acount"', 'split_field = "account"')
    grouped = run("build", churn_project.path, "--json", "--version", "1.0.1")
    assert grouped.code == 0, grouped.err
    assert json.loads(grouped.out)["evaluation"]["split"] == "group"
    assert "is also a model input" not in grouped.err  # account is no feature

    churn_project.edit(
        'split = "group"\nsplit_field = "account"', 'split = "filter"\ntest_filter = { region = "north" }'
    )
    filtered = run("build", churn_project.path, "--json", "--version", "1.0.2")
    assert filtered.code == 0, filtered.err
    assert json.loads(filtered.out)["parity"]["test_rows"] == collection.count_documents({"region": "north"})
    churn_project.edit('test_filter = { region = "north" }', 'test_filter = { region = { "$where" = "x" } }')
    assert_clean_error(run("build", churn_project.path, "--version", "1.0.3"), 2, "$where is not supported here")


def test_random_is_the_default_and_says_so() -> None:
    config = parse_config(
        {
            "model": {"name": "m", "task": "regression"},
            "source": {"database": "d", "collection": "c"},
            "features": {"numeric": ["tenure_months"], "target": "lifetime_value"},
            "estimator": {"class": "sklearn.linear_model.LinearRegression"},
        }
    )
    assert config.evaluation.split == "random" and config.features.split_fields == ()
    metadata = export(config, subscribers(100)).metadata
    assert metadata["evaluation"] == {"test_size": 0.2, "seed": 0, "split": "random"}


def test_the_wheels_model_card_says_how_the_test_split_was_chosen() -> None:
    from mlpack.artifacts.wheel import packaging_dir, render_model_card

    template = (packaging_dir() / "wheel" / "README.md.in").read_text(encoding="utf-8")
    documents = dated(seed=4)
    cards = {
        "random": churn(),
        "time": churn(split="time", split_field="signup"),
        "group": churn(split="group", split_field="account"),
        "filter": churn(split="filter", test_filter={"region": "north"}),
    }
    said = {kind: render_model_card(export(c, documents).metadata, template) for kind, c in cards.items()}
    assert "Measured on a held-out 20% of the data" in said["random"]
    assert '`"NA"`, `""`' in said["random"] and '{"$numberDouble": "0.5"}' in said["random"]  # the reading of text
    assert "Measured on a held-out newest 20% (by `signup`) of the data" in said["time"]
    assert "Measured on a held-out 20% of the `account` groups of the data" in said["group"]
    assert 'Measured on a held-out part (`{"region": "north"}`) of the data' in said["filter"]


def test_a_test_filter_on_the_parent_of_a_feature_builds(
    churn_project: Project, run, mongo_client: MongoClient[Any]
) -> None:
    """The test filter reads `billing`, a feature reads `billing.method`: the loader's projection named
    both, which MongoDB refuses ("Path collision at billing", exit 2); the parent alone brings both."""
    collection = mongo_client[churn_project.database]["customers"]
    test_filter = 'test_filter = { billing = { "$exists" = true }, support_calls = { "$gte" = 6 } }'
    churn_project.edit("test_size = 0.25", f'test_size = 0.25\nsplit = "filter"\n{test_filter}')
    built = run("build", churn_project.path, "--json")
    assert built.code == 0, built.err
    parity = json.loads(built.out)["parity"]
    expected = collection.count_documents({"billing": {"$exists": True}, "support_calls": {"$gte": 6}})
    assert 5 <= parity["test_rows"] == expected and parity["train_rows"] + parity["test_rows"] == 240


def test_grouping_by_a_feature_warns_that_the_test_groups_are_unseen(
    churn_project: Project, run, mongo_client: MongoClient[Any]
) -> None:
    """Grouped by `region`, a categorical feature: the model never sees the test split's regions (strict
    prediction refuses them), which the build did not say."""
    collection = mongo_client[churn_project.database]["customers"]
    collection.delete_many({})
    collection.insert_many(dated(240, seed=2))
    churn_project.edit('categorical = ["contract"', 'categorical = ["region", "contract"')
    churn_project.edit("test_size = 0.25", 'test_size = 0.25\nsplit = "group"\nsplit_field = "region"')
    built = run("build", churn_project.path)
    assert built.code == 0, built.err
    assert (
        "mlpack: warning: [evaluation].split_field 'region' is also a model input: with split = \"group\" no "
        "value of it in the test split is seen in training"
    ) in built.err
