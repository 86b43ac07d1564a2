"""Every estimator mlpack claims converts with the pinned versions and agrees with scikit-learn.

Data: synthetic subscribers with nested fields, categoricals and missing values in both kinds.
"""

from __future__ import annotations

import pytest
from skl2onnx import convert_sklearn
from skl2onnx.common.data_types import FloatTensorType

from mlpack.config import EstimatorSection
from mlpack.errors import ConfigError
from mlpack.estimators import KNOWN_BROKEN, SUPPORTED, make_estimator, spec_for
from tests.documents import subscribers
from tests.training import config_for, export, runtime_model

DOCUMENTS = subscribers(300)


@pytest.mark.parametrize("class_path", sorted(SUPPORTED))
def test_supported_estimator_converts_with_parity(class_path: str) -> None:
    spec = SUPPORTED[class_path]
    params = (
        {"random_state": 0}
        if "random_state" in make_estimator(EstimatorSection(class_path), spec.task)[0].get_params()
        else {}
    )
    exported = export(config_for(class_path, spec.task, params), DOCUMENTS)
    parity = exported.metadata["parity"]
    assert parity["within_tolerance"], parity
    assert parity["rows"] == 60  # test_size 0.2 of 300
    if spec.task == "classification":
        assert parity["label_disagreements"] == 0
        assert parity["label_agreement"] >= 0.98  # ties may round either way in float32
        assert exported.metadata["classes"] == ["churned", "stayed"]
    # The exported file predicts through the runtime, with the metadata read back from the file itself.
    model = runtime_model(exported)
    assert len(model.predict(DOCUMENTS[:10])) == 10
    scaler_present = (
        "scale" in exported.trained.pipeline.named_steps["preprocess"].named_transformers_["numeric"].named_steps
    )
    assert scaler_present == spec.scaled


@pytest.mark.parametrize("class_path", sorted(KNOWN_BROKEN))
def test_known_broken_estimators_really_fail_to_convert(class_path: str) -> None:
    """Why they are refused: if a new skl2onnx fixes them, this test says so and they can be supported."""
    import importlib

    import numpy as np

    module, name = class_path.rsplit(".", 1)
    estimator = getattr(importlib.import_module(module), name)()
    rng = np.random.default_rng(0)
    x = rng.normal(size=(60, 3)).astype(np.float32)
    y = (x[:, 0] > 0).astype(int) if "Classifier" in name else x[:, 0]
    estimator.fit(x, y)
    with pytest.raises(Exception):  # noqa: B017 - the converter raises assorted types
        convert_sklearn(estimator, initial_types=[("x", FloatTensorType([None, 3]))], target_opset=17)
    with pytest.raises(ConfigError, match="is not supported"):
        spec_for(class_path, "classification")


def test_unknown_estimator_names_it_and_suggests() -> None:
    with pytest.raises(ConfigError, match=r"sklearn.ensemble.RandomForest is not a supported estimator"):
        spec_for("sklearn.ensemble.RandomForest", "classification")
    with pytest.raises(ConfigError, match=r"did you mean sklearn.ensemble.RandomForestClassifier"):
        spec_for("RandomForestClassifier", "classification")


def test_estimator_of_the_wrong_task_is_refused() -> None:
    with pytest.raises(ConfigError, match="is a regression estimator but \\[model\\].task is classification"):
        spec_for("sklearn.linear_model.Ridge", "classification")


def test_unknown_param_is_named_with_a_suggestion() -> None:
    section = EstimatorSection("sklearn.ensemble.RandomForestClassifier", {"n_estimator": 10})
    with pytest.raises(
        ConfigError,
        match=r"params.n_estimator is not a parameter of RandomForestClassifier \(did you mean 'n_estimators'",
    ):
        make_estimator(section, "classification")


def test_invalid_param_value_is_a_config_error() -> None:
    config = config_for("sklearn.ensemble.RandomForestClassifier", "classification", {"n_estimators": -3})
    with pytest.raises(ConfigError, match="n_estimators"):
        export(config, DOCUMENTS)
