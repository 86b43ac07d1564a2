"""The numbers' imputer finds SimpleImputer's medians while holding one column at a time.

`MedianImputer` replaces SimpleImputer's masked-array median (which sorted a copy of the whole
matrix beside an argsort of it). Its statistics, its imputed rows and its ONNX graph must be
SimpleImputer's, on every row, NaNs included; and fitting it must hold less than SimpleImputer did.
"""

from __future__ import annotations

import tracemalloc
import warnings
from typing import Any

import numpy as np
import onnxruntime
import pandas as pd
import pytest
from skl2onnx import to_onnx
from sklearn.impute import SimpleImputer

from mlpack.features import converters, pipeline
from mlpack.features.impute import MedianImputer
from tests.helpers.documents import subscribers
from tests.helpers.training import config_for, export


def _matrix(rows: int, dtype: Any, seed: int = 4) -> np.ndarray:
    """Columns with every shape of missing: none, some, most, all but one, all; repeated values; an odd
    and an even count of present values; a huge value whose double overflows."""
    rng = np.random.default_rng(seed)
    x = rng.normal(scale=50, size=(rows, 8)).round(1).astype(dtype)
    x[:, 1] = rng.integers(0, 4, size=rows)  # many ties
    x[rng.random(rows) < 0.3, 2] = np.nan
    x[rng.random(rows) < 0.97, 3] = np.nan
    x[1:, 4] = np.nan  # one value present
    x[:, 5] = np.nan  # none present
    x[: rows // 2, 6] = np.nan
    x[:, 7] = np.finfo(dtype).max / 1.5  # the middle value added to itself is inf, as in np.ma.median
    x[::3, 7] = np.nan
    return x


@pytest.mark.filterwarnings("ignore:Skipping features without any observed values")
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("rows", [1, 2, 7, 10, 1_001])
@pytest.mark.parametrize("keep_empty_features", [False, True])
def test_the_medians_and_every_imputed_row_are_simple_imputers(
    dtype: Any, rows: int, keep_empty_features: bool
) -> None:
    x = _matrix(rows, dtype)
    ours = MedianImputer(strategy="median", keep_empty_features=keep_empty_features)
    reference = SimpleImputer(strategy="median", keep_empty_features=keep_empty_features)
    with np.errstate(over="ignore"):
        ours.fit(x)
        reference.fit(x)
    assert ours.statistics_.dtype == reference.statistics_.dtype
    np.testing.assert_array_equal(ours.statistics_, reference.statistics_)  # NaN where SimpleImputer has NaN
    other = _matrix(rows, dtype, seed=9)
    np.testing.assert_array_equal(ours.transform(other), reference.transform(other))


@pytest.mark.parametrize("strategy", ["mean", "most_frequent", "constant"])
def test_the_other_strategies_are_simple_imputers_own(strategy: str) -> None:
    x = _matrix(50, np.float64)[:, :5]
    ours = MedianImputer(strategy=strategy, fill_value=-1.0).fit(x)
    reference = SimpleImputer(strategy=strategy, fill_value=-1.0).fit(x)
    np.testing.assert_array_equal(ours.statistics_, reference.statistics_)


def test_the_onnx_graph_imputes_as_simple_imputers_graph() -> None:
    converters.register()
    x = _matrix(200, np.float32)[:, :5]
    ours = MedianImputer(strategy="median").fit(x)
    reference = SimpleImputer(strategy="median").fit(x)
    rows = _matrix(200, np.float32, seed=11)[:, :5]
    answers = []
    for fitted in (ours, reference):
        graph = to_onnx(fitted, x[:1], target_opset=17)
        session = onnxruntime.InferenceSession(graph.SerializeToString(), providers=["CPUExecutionProvider"])
        answers.append(session.run(None, {session.get_inputs()[0].name: rows})[0])
    np.testing.assert_array_equal(answers[0], answers[1])
    np.testing.assert_array_equal(answers[0], ours.transform(rows))


def test_a_builds_onnx_file_is_the_one_simple_imputer_gave(monkeypatch: pytest.MonkeyPatch) -> None:
    config = config_for("sklearn.linear_model.LogisticRegression", "classification")
    documents = subscribers(300)  # billing.method is sometimes absent, the numbers sometimes null
    ours = export(config, documents).onnx_bytes
    monkeypatch.setattr(pipeline, "MedianImputer", SimpleImputer)
    assert export(config, documents).onnx_bytes == ours


def _fit_peak(imputer: Any, x: np.ndarray) -> int:
    tracemalloc.start()
    try:
        imputer.fit(x)
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_fitting_holds_a_column_not_copies_of_the_matrix() -> None:
    x = _matrix(100_000, np.float64)[:, :4].copy()
    ours, reference = _fit_peak(MedianImputer(strategy="median"), x), _fit_peak(SimpleImputer(strategy="median"), x)
    # SimpleImputer's copy of its input (copy=True), the mask (a byte a value) and one column's present values.
    assert ours < 2 * x.nbytes, (ours, x.nbytes)
    assert reference > 3.5 * x.nbytes, (reference, x.nbytes)  # and besides them: an argsort, filled and sorted copies


def _peak(call: Any) -> tuple[Any, int]:
    tracemalloc.start()
    try:
        result = call()
        return result, tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_a_frame_of_columns_is_copied_once_in_fit_and_in_transform() -> None:
    """As the pipeline gives it the numbers: a DataFrame of separate columns. SimpleImputer's validation
    converted it twice at once (np.asarray, then np.may_share_memory to learn whether they share memory)."""
    x = _matrix(100_000, np.float64)
    x = x[:, ~np.isnan(x).all(axis=0)]  # (a column with no value is dropped: a copy, in both paths alike)
    frame = pd.DataFrame({f"n{i}": np.ascontiguousarray(x[:, i]) for i in range(x.shape[1])}, copy=False)
    ours, reference = MedianImputer(strategy="median"), SimpleImputer(strategy="median")
    # The peaks from an array, which SimpleImputer copies once (copy=True): from the frame, no more.
    on_array = MedianImputer(strategy="median")
    _, array_fit_peak = _peak(lambda: on_array.fit(x))
    _, array_peak = _peak(lambda: on_array.transform(x))
    _, fit_peak = _peak(lambda: ours.fit(frame))
    assert fit_peak < array_fit_peak + 0.25 * x.nbytes, (fit_peak, array_fit_peak, x.nbytes)
    with warnings.catch_warnings():
        warnings.filterwarnings("error", message=".*feature names")  # no "X does not have valid feature names"
        imputed, peak = _peak(lambda: ours.transform(frame))
    assert peak < array_peak + 0.25 * x.nbytes, (peak, array_peak, x.nbytes)
    reference.fit(frame)
    expected = reference.transform(frame)
    assert imputed.tobytes() == expected.tobytes() and imputed.shape == expected.shape
    assert ours.statistics_.tobytes() == reference.statistics_.tobytes()
    assert list(ours.feature_names_in_) == list(reference.feature_names_in_) == list(frame.columns)
    assert list(ours.get_feature_names_out()) == list(reference.get_feature_names_out())
    with pytest.warns(UserWarning, match="feature names"):  # as SimpleImputer warns: fitted with names, given none
        ours.transform(x)
