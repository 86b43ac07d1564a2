"""Large builds run the preprocessing graph and the parity check a chunk of rows at a time (issue 23).

A million rows would otherwise hold the graph's float32 output and its float64 copy, and both
sides' predictions of every row, at once. These tests hold the chunked runs to the whole ones, bit
for bit: the features the estimator trains on, and so the exported model and its parity figures,
on the shop's documents (derived expressions with log1p, dates, a category, free text).
"""

from __future__ import annotations

import tomllib
from typing import Any

import numpy as np
import pytest
from sklearn.base import clone
from sklearn.compose import ColumnTransformer
from sklearn.preprocessing import OneHotEncoder, StandardScaler

import mlpack.export.parity as parity
import mlpack.features.graph as graph
from mlpack.config import parse_config
from mlpack.exported import ExportedModel
from mlpack.features.text import TextWords
from tests.helpers.shop import CONFIG, orders
from tests.helpers.training import export

DOCUMENTS = orders(3_000, seed=4)
ESTIMATORS = ["sklearn.linear_model.LinearRegression", "sklearn.ensemble.HistGradientBoostingRegressor"]


def exported_with(monkeypatch: pytest.MonkeyPatch, estimator: str, chunk: int) -> ExportedModel:
    monkeypatch.setattr(graph, "TRANSFORM_CHUNK", chunk)
    monkeypatch.setattr(parity, "PARITY_CHUNK", chunk)
    raw: dict[str, Any] = tomllib.loads(CONFIG.format(database="db"))
    raw["estimator"] = {"class": estimator, "params": {"max_iter": 30} if "Hist" in estimator else {}}
    raw["evaluation"]["gates"] = {}
    return export(parse_config(raw), DOCUMENTS)


@pytest.mark.parametrize("estimator", ESTIMATORS, ids=["linear", "hist-gradient-boosting"])
def test_a_model_made_in_chunks_is_the_model_made_whole(monkeypatch: pytest.MonkeyPatch, estimator: str) -> None:
    whole = exported_with(monkeypatch, estimator, 10**9)
    # 2,250 training rows: 700, 700, 850 (a short tail joins the last chunk)
    chunked = exported_with(monkeypatch, estimator, 700)
    assert chunked.onnx_bytes == whole.onnx_bytes
    assert chunked.metadata == whole.metadata  # the parity figures among them
    assert chunked.metadata["parity"]["rows"] == len(DOCUMENTS)


def test_the_graph_gives_each_row_the_same_bits_whatever_the_chunk(monkeypatch: pytest.MonkeyPatch) -> None:
    model = exported_with(monkeypatch, ESTIMATORS[0], 10**9)
    features = model.trained.pipeline.steps[0][1]
    frame = model.trained.train_frame
    whole = features.transform(frame)
    for chunk in (1_000, 2_000, 5_000):
        monkeypatch.setattr(graph, "TRANSFORM_CHUNK", chunk)
        chunked = features.transform(frame)
        assert chunked.dtype == np.float64 and chunked.tobytes() == whole.tobytes(), chunk


def test_the_graph_is_fitted_without_stacking_scikit_learns_features(monkeypatch: pytest.MonkeyPatch) -> None:
    """ColumnTransformer's fit stacks every transformer's output into a matrix of the training rows
    that nothing reads (the estimator trains on the graph's features): it is not made, and the graph
    and its features are those of the fit that made it."""
    model = exported_with(monkeypatch, ESTIMATORS[0], 10**9)
    features = model.trained.pipeline.steps[0][1]
    frame, target = model.trained.train_frame, model.trained.train_target
    stacked: list[int] = []
    stack = ColumnTransformer._hstack
    monkeypatch.setattr(
        ColumnTransformer,
        "_hstack",
        lambda self, Xs, *, n_samples: stacked.append(1) or stack(self, Xs, n_samples=n_samples),
    )
    reference = clone(features)
    reference._fit(frame, target, features=True)  # as it was fitted before: scikit-learn's features made
    assert stacked == [1]
    ours = clone(features)
    trained_on = ours.fit_transform(frame, target)
    assert stacked == [1]  # not stacked again
    assert "_hstack" not in vars(ours.preprocessing_.steps[-1][1])  # nothing of the fit left on the fitted step
    assert ours.onnx_ == reference.onnx_
    assert trained_on.tobytes() == reference.transform(frame).tobytes()


def test_no_part_of_the_preprocessing_computes_its_features_of_the_training_rows(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """ColumnTransformer's fit would compute every part's features of the training rows and hold them
    all until the last part is fitted: each part is fitted without them (a pipeline's last step is
    fitted, not applied), and the fitted preprocessing is the one fit_transform leaves."""
    model = exported_with(monkeypatch, ESTIMATORS[0], 10**9)
    features = model.trained.pipeline.steps[0][1]
    frame, target = model.trained.train_frame, model.trained.train_target
    reference = clone(features)
    reference._fit(frame, target, features=True)
    applied: list[str] = []
    for last in (StandardScaler, OneHotEncoder, TextWords):  # the shop's parts end in these
        original = last.transform

        def spied(self: Any, X: Any, *args: Any, _original: Any = original, **kwargs: Any) -> Any:
            if len(X) == len(frame):
                applied.append(type(self).__name__)
            return _original(self, X, *args, **kwargs)

        monkeypatch.setattr(last, "transform", spied)
    ours = clone(features)
    ours._fit(frame, target, features=False)
    assert applied == []
    fitted, expected = ours.preprocessing_.steps[-1][1], reference.preprocessing_.steps[-1][1]
    assert [type(part) for _, part, _ in fitted.transformers_] == [type(part) for _, part, _ in expected.transformers_]
    assert fitted.output_indices_ == expected.output_indices_
    given = features.preprocessing.steps[-1][1].transformers
    assert [type(part) for _, part, _ in fitted.transformers] == [type(part) for _, part, _ in given]  # as given
    assert ours.onnx_ == reference.onnx_
    monkeypatch.undo()
    assert ours.transform(frame).tobytes() == reference.transform(frame).tobytes()
    assert ours.preprocessing_.transform(frame).tobytes() == reference.preprocessing_.transform(frame).tobytes()


def test_the_training_frame_shares_the_split_columns_strings_too() -> None:
    """pandas 3 would copy a string column into its own string dtype, and every chunk the graph ran
    would make a Python string per row of the whole column again: the frame keeps the arrays."""
    from mlpack.features.pipeline import frame

    plans = np.array(["basic", "pro", "basic"], dtype=object)
    ages = np.array([31.0, np.nan, 47.0])
    made = frame({"plan": plans, "age": ages}, {"plan": "plan", "age": "age"})
    assert made["plan"].dtype == object and np.shares_memory(made["plan"].to_numpy(), plans)
    assert np.shares_memory(made["age"].to_numpy(), ages)
    assert made["plan"].tolist() == ["basic", "pro", "basic"]
