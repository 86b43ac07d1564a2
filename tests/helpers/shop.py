"""The shop fixture: orders with nested fields, dates, free text and derived features, in MongoDB."""

from __future__ import annotations

import datetime as dt
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from pymongo import MongoClient

from tests.helpers.projects import Project

WORDS = ["late", "delivery", "great", "service", "refund", "broken", "screen", "thanks"]


EPOCH = dt.datetime(1970, 1, 1)


CONFIG = """
[model]
name = "shop-model"
version = "1.0.0"
task = "regression"

[source]
uri_env = "MLPACK_TEST_URI"
database = "{database}"
collection = "orders"

[features]
categorical = ["contract"]
datetime = ["signup"]
text = ["subject"]
target = "y"

[features.derived]
ratio = "price / carat"
log_tenure = "log1p(tenure)"
long_contract = "contract == 'two_year'"
days_open = "days_between(signup, last.opened)"

[estimator]
class = "sklearn.linear_model.LinearRegression"

[evaluation]
test_size = 0.25
gates = {{ r2 = 0.999 }}
"""


def formula(doc: dict[str, Any]) -> float:
    """The exact function of derived features and date parts every target is made by."""
    signup, opened = doc["signup"], doc["last"]["opened"]
    return (
        2.0 * doc["price"] / doc["carat"]
        + 3.0 * math.log1p(doc["tenure"])
        + 4.0 * (doc["contract"] == "two_year")
        + 0.05 * ((opened - signup) / dt.timedelta(days=1))
        + 0.5 * signup.month
        + 0.25 * signup.hour
        - 0.3 * signup.weekday()
    )


def orders(n: int, seed: int = 0) -> list[dict[str, Any]]:
    rng = np.random.default_rng(seed)
    docs = []
    for index in range(n):
        # Whole milliseconds: what BSON stores.
        signup = dt.datetime(2015, 1, 1) + dt.timedelta(milliseconds=int(rng.integers(0, 9 * 365 * 86_400_000)))
        doc = {
            "_id": index,
            "price": round(float(rng.uniform(1, 20)), 2),
            "carat": round(float(rng.uniform(0.5, 3)), 2),
            "tenure": int(rng.integers(0, 72)),
            "contract": str(rng.choice(["monthly", "one_year", "two_year"])),
            "signup": signup,
            "last": {"opened": signup + dt.timedelta(milliseconds=int(rng.integers(0, 400 * 86_400_000)))},
            "subject": " ".join(rng.choice(WORDS, int(rng.integers(1, 5)))),
        }
        doc["y"] = formula(doc)
        docs.append(doc)
    return docs


@pytest.fixture
def shop(
    tmp_path: Path, mongo_uri: str, mongo_client: MongoClient[Any], database_name: str, monkeypatch: Any
) -> Project:
    mongo_client[database_name]["orders"].insert_many(orders(160))
    project = Project(tmp_path / "shop", database_name, mongo_uri)
    project.path.mkdir()
    project.write_config(CONFIG)
    monkeypatch.setenv("MLPACK_TEST_URI", mongo_uri)
    return project
