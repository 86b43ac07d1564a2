"""The wheel's `predict_batches`: pandas frames in and out, as Spark's mapInPandas (tested for real)
and Dask's map_partitions want them."""

from __future__ import annotations

import importlib
import shutil
import sys
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from mlpack.scoring.worker import load_wheel
from tests.helpers.documents import subscribers
from tests.helpers.training import config_for, export, runtime_model

DOCUMENTS = subscribers(40, seed=9, absent=False)


@pytest.fixture(scope="module")
def package(built_model: Any) -> Any:
    return load_wheel(built_model.artifacts["wheel"])


def dotted_frame(documents: list[dict[str, Any]]) -> pd.DataFrame:
    return pd.json_normalize(documents)  # billing.monthly_charges, billing.method as dotted columns


def test_frames_in_frames_out_with_predictions_and_probabilities(package: Any) -> None:
    frames = [dotted_frame(DOCUMENTS[:25]), dotted_frame(DOCUMENTS[25:])]
    out = list(package.predict_batches(iter(frames)))
    assert len(out) == 2
    for frame, result in zip(frames, out):
        assert list(result.columns) == [*frame.columns, "prediction", "probabilities"]
        pd.testing.assert_frame_equal(result[frame.columns], frame)  # the input columns, untouched
    assert pd.concat(out)["prediction"].tolist() == package.predict(DOCUMENTS)
    assert pd.concat(out)["probabilities"].tolist() == package.predict_proba(DOCUMENTS)
    assert frames[0].columns[-1] != "prediction"  # the caller's frame is not modified

    # Sub-documents in one column (how Spark hands over structs) read like nested records.
    nested = pd.DataFrame(DOCUMENTS[:10])
    assert next(package.predict_batches([nested]))["prediction"].tolist() == package.predict(DOCUMENTS[:10])

    # Empty batches (Spark sends them) keep their shape.
    empty = next(package.predict_batches([dotted_frame(DOCUMENTS).iloc[:0]]))
    assert len(empty) == 0 and {"prediction", "probabilities"} <= set(empty.columns)
    # A missing column is a column of missing values, as an absent field is (issue 8).
    without = dotted_frame(DOCUMENTS).drop(columns=["contract"])
    expected = package.predict([{k: v for k, v in d.items() if k != "contract"} for d in DOCUMENTS])
    assert next(package.predict_batches([without]))["prediction"].tolist() == expected
    with pytest.raises(ValueError, match="tenure_months"):
        next(package.predict_batches([dotted_frame(DOCUMENTS).assign(tenure_months="many")]))


def test_regression_frames_get_values_and_no_probabilities() -> None:
    config = config_for("sklearn.linear_model.LinearRegression", "regression")
    model = runtime_model(export(config, subscribers(120)))
    (result,) = model.predict_batches([dotted_frame(DOCUMENTS)])
    assert "probabilities" not in result.columns
    assert result["prediction"].tolist() == model.predict(DOCUMENTS)


def test_spark_map_in_pandas_with_the_wheel_shipped_as_a_zip(built_model: Any, spark: Any, tmp_path: Path) -> None:
    pytest.importorskip("pyarrow")
    from pyspark.sql.types import ArrayType, DoubleType, StringType, StructField, StructType

    # The wheel itself, under a name addPyFile puts on every Python worker's path (zip import).
    shipped = tmp_path / "test_model.zip"
    shutil.copyfile(built_model.artifacts["wheel"], shipped)
    spark.sparkContext.addPyFile(str(shipped))
    sys.modules.pop("test_model", None)
    test_model = importlib.import_module("test_model")
    assert test_model.__file__ is not None and "test_model.zip" in test_model.__file__

    schema = StructType(
        [
            StructField("_id", DoubleType()),
            StructField("tenure_months", DoubleType()),
            StructField("support_calls", DoubleType()),
            StructField("contract", StringType()),
            StructField(
                "billing",
                StructType([StructField("monthly_charges", DoubleType()), StructField("method", StringType())]),
            ),
        ]
    )
    rows = [
        (
            float(d["_id"]),
            None if d["tenure_months"] is None else float(d["tenure_months"]),
            float(d["support_calls"]),
            d["contract"],
            (d["billing"]["monthly_charges"], d["billing"]["method"]),
        )
        for d in DOCUMENTS
    ]
    frame = spark.createDataFrame(rows, schema).repartition(3)
    out_schema = StructType(
        [*schema.fields, StructField("prediction", StringType()), StructField("probabilities", ArrayType(DoubleType()))]
    )
    try:
        scored = frame.mapInPandas(test_model.predict_batches, out_schema).orderBy("_id").collect()
    finally:  # addPyFile also put the zip on this process's path: leave no trace for other tests
        sys.modules.pop("test_model", None)
        sys.path[:] = [entry for entry in sys.path if not entry.endswith("test_model.zip")]
    assert [row["prediction"] for row in scored] == test_model.predict(DOCUMENTS)
    probabilities = test_model.predict_proba(DOCUMENTS)
    for row, expected in zip(scored, probabilities):
        assert row["probabilities"] == pytest.approx(expected, abs=1e-6)
