"""[features].ordinal: a categorical's position in a declared order, computed in the graph.

The converter is checked against its scikit-learn reference; builds check parity on every row.
"""

from __future__ import annotations

import json
import random
from typing import Any

import numpy as np
import onnxruntime
import pytest
from pymongo import MongoClient
from skl2onnx import convert_sklearn
from skl2onnx.common.data_types import StringTensorType

from mlpack.config import parse_config
from mlpack.errors import ConfigError, DataError
from mlpack.features.converters import register
from mlpack.features.ordinal import OrdinalCategories
from mlpack.runtime import MISSING_CATEGORY
from tests.helpers.cli import assert_clean_error
from tests.helpers.projects import Project
from tests.helpers.training import export, runtime_model

CUTS = ["Fair", "Good", "Very Good", "Premium", "Ideal"]
CLARITY = ["I1", "SI2", "SI1", "VS2", "VS1", "VVS2", "VVS1", "IF"]
COLOURS = ["D", "E", "F", "G", "H", "I", "J"]


def diamonds(n: int = 400, seed: int = 1) -> list[dict[str, Any]]:
    rng = random.Random(seed)
    documents = []
    for index in range(n):
        carat = round(rng.uniform(0.2, 2.5), 2)
        cut, clarity, colour = rng.randrange(5), rng.randrange(8), rng.randrange(7)
        price = carat * 4000 * (1 + 0.08 * cut) * (1 + 0.1 * clarity) * (1 - 0.04 * colour) + rng.gauss(0, 150)
        document: dict[str, Any] = {
            "_id": index + 1,
            "carat": carat,
            "cut": CUTS[cut],
            "clarity": CLARITY[clarity],
            "color": COLOURS[colour],
            "price": round(price, 2),
        }
        if index % 31 == 7:
            document["cut"] = None  # missing: imputed as a position
        documents.append(document)
    return documents


def config(estimator: str, **features: Any) -> Any:
    return parse_config(
        {
            "model": {"name": "diamonds", "version": "1.0.0", "task": "regression"},
            "source": {"database": "db", "collection": "diamonds"},
            "features": {
                "numeric": ["carat"],
                "categorical": ["cut", "clarity", "color"],
                "ordinal": {"cut": CUTS, "clarity": CLARITY},
                "target": "price",
                **features,
            },
            "estimator": {"class": estimator, "params": {"random_state": 0} if "Forest" in estimator else {}},
        }
    )


def test_the_converter_computes_what_the_transformer_does() -> None:
    register()
    columns = np.array(
        [["Good", "IF"], ["Ideal", "I1"], [MISSING_CATEGORY, "VS2"], ["Excellent", ""], ["Fair", "SI1"]], dtype=object
    )
    model = OrdinalCategories([CUTS, CLARITY]).fit(columns)
    reference = model.transform(columns)
    assert reference[0].tolist() == [1.0, 7.0] and reference[1].tolist() == [4.0, 0.0]
    assert np.isnan(reference[2, 0]) and np.isnan(reference[3]).all()  # missing and unlisted: NaN
    onnx = convert_sklearn(model, initial_types=[("x", StringTensorType([None, 2]))], target_opset=17)
    session = onnxruntime.InferenceSession(onnx.SerializeToString(), providers=["CPUExecutionProvider"])
    (graph,) = session.run(None, {"x": columns})
    assert graph.dtype == np.float32
    np.testing.assert_array_equal(graph, reference)  # NaN where the reference has NaN, equal elsewhere


@pytest.mark.parametrize("estimator", ["sklearn.ensemble.RandomForestRegressor", "sklearn.linear_model.Ridge"])
def test_ordinal_features_build_with_parity_and_one_column_each(estimator: str) -> None:
    documents = diamonds()
    exported = export(config(estimator), documents)  # parity on every training and test row, or this raises
    assert exported.metadata["parity"]["within_tolerance"]
    names = exported.trained.pipeline.named_steps["features"].get_feature_names_out().tolist()
    assert sum("cut" in n for n in names) == 1 and sum("clarity" in n for n in names) == 1
    assert sum("color" in n for n in names) == 7  # the unordered one stays one-hot
    model = runtime_model(exported)
    diamond = {"carat": 1.0, "clarity": "VS1", "color": "G"}
    assert model.predict({**diamond, "cut": "Excellent"}) == model.predict({**diamond, "cut": None})  # unlisted
    if "Ridge" in estimator:  # the order is used: a better cut is worth more, step by step
        prices = [model.predict({**diamond, "cut": cut}) for cut in CUTS]
        assert prices == sorted(prices)
        assert exported.metadata["metrics"]["r2"] > 0.8
    with pytest.raises(ValueError, match=r"field 'cut': category 'Excellent' was not seen in training"):
        model.predict({**diamond, "cut": "Excellent"}, strict=True)


def test_ordinal_mistakes_are_config_or_data_errors() -> None:
    with pytest.raises(
        ConfigError, match=r"\[features\].ordinal names 'shape': list it under \[features\].categorical"
    ):
        config("sklearn.linear_model.Ridge", ordinal={"shape": ["round"]})
    with pytest.raises(ConfigError, match=r"\[features\].ordinal.cut must list each category once"):
        config("sklearn.linear_model.Ridge", ordinal={"cut": ["Good", "Good"]})
    with pytest.raises(ConfigError, match=r"\[features\].ordinal.cut\[1\] must be a string"):
        config("sklearn.linear_model.Ridge", ordinal={"cut": ["Good", 3]})
    documents = diamonds()
    documents[9]["cut"] = "Very good"
    with pytest.raises(DataError) as error:
        export(config("sklearn.linear_model.Ridge"), documents)
    assert "ordinal feature 'cut': 1 value(s) not in its order ('Very good'), e.g. _id 10; the order is 'Fair'" in str(
        error.value.details
    )


ORDINAL_CONFIG = """
[model]
name = "diamond-model"
version = "1.0.0"
task = "regression"

[source]
uri_env = "MLPACK_TEST_URI"
database = "{database}"
collection = "diamonds"

[features]
numeric = ["carat"]
categorical = ["cut", "clarity", "color"]
target = "price"

[features.ordinal]  # lowest first
cut = ["Fair", "Good", "Very Good", "Premium", "Ideal"]
clarity = ["I1", "SI2", "SI1", "VS2", "VS1", "VVS2", "VVS1", "IF"]

[estimator]
class = "sklearn.ensemble.GradientBoostingRegressor"
params = {{ n_estimators = 60, random_state = 0 }}

[evaluation]
gates = {{ r2 = 0.8 }}
"""


def test_ordinal_build_against_mongodb(churn_project: Project, run, mongo_client: MongoClient[Any]) -> None:
    mongo_client[churn_project.database]["diamonds"].insert_many(diamonds(500, seed=4))
    churn_project.write_config(ORDINAL_CONFIG)
    built = run("build", churn_project.path, "--json")
    assert built.code == 0, built.err
    report = json.loads(built.out)
    assert report["parity"]["within_tolerance"] and report["metrics"]["r2"] > 0.8
    assert [entry["path"] for entry in report["inputs"]] == ["carat", "cut", "clarity", "color"]
    churn_project.edit('"Very Good", ', "")
    refused = run("build", churn_project.path, "--version", "1.0.1")
    assert_clean_error(refused, 1, "ordinal feature 'cut':", "value(s) not in its order ('Very Good')")
