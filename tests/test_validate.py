"""Validation on its own: every problem in one report, typed columns out."""

from __future__ import annotations

import math

import pytest

from mlpack.config import FeaturesSection
from mlpack.errors import DataError
from mlpack.source import collect
from mlpack.validate import validate

FEATURES = FeaturesSection(target="y", numeric=["a.b"], categorical=["c"])


def columns(documents: list[dict]) -> object:
    return collect(documents, ["a.b", "c", "y"])


def test_typed_columns_and_missing_values() -> None:
    dataset = validate(
        columns(
            [
                {"_id": 1, "a": {"b": 1}, "c": "x", "y": "p"},
                {"_id": 2, "a": {"b": None}, "c": None, "y": "q"},
                {"_id": 3, "a": {}, "c": 5, "y": "p"},
                {"_id": 4, "a": {"b": 2.5}, "c": "x", "y": "q"},
            ]
        ),
        FEATURES,
        "classification",
    )
    assert (
        dataset.numeric["a.b"][0] == 1.0
        and math.isnan(dataset.numeric["a.b"][1])
        and math.isnan(dataset.numeric["a.b"][2])
    )
    assert dataset.categorical["c"].tolist() == ["x", "__missing__", "5", "x"]
    assert dataset.target.tolist() == ["p", "q", "p", "q"]
    assert len(dataset.fingerprint) == 64


def test_fingerprint_changes_with_the_data() -> None:
    docs = [{"_id": i, "a": {"b": i}, "c": "x", "y": i % 2} for i in range(6)]
    first = validate(columns(docs), FEATURES, "classification").fingerprint
    assert validate(columns(docs), FEATURES, "classification").fingerprint == first
    docs[0]["a"]["b"] = 99
    assert validate(columns(docs), FEATURES, "classification").fingerprint != first


def test_all_problems_are_reported_together() -> None:
    with pytest.raises(DataError) as error:
        validate(
            columns(
                [
                    {"_id": "u1", "a": {"b": "high"}, "c": ["x"], "y": "p"},
                    {"_id": "u2", "a": {"b": 1}, "c": "x"},
                    {"_id": "u3", "a": {"b": "low"}, "c": "x", "y": "p"},
                ]
            ),
            FEATURES,
            "classification",
        )
    details = error.value.details
    assert "numeric feature 'a.b': 2 bad value(s), e.g. _id u1: expected a number, got 'high'" in details
    assert "categorical feature 'c': 1 bad value(s), e.g. _id u1: expected a category" in details
    assert "target 'y': missing in 1 document(s), e.g. _id u2" in details
    assert error.value.exit_code == 1


def test_integral_float_labels_become_integers_and_rare_classes_are_named() -> None:
    docs = [{"_id": i, "a": {"b": i}, "c": "x", "y": float(i % 2)} for i in range(6)]
    assert validate(columns(docs), FEATURES, "classification").target.dtype.kind == "i"
    docs.append({"_id": 9, "a": {"b": 1}, "c": "x", "y": 5})
    with pytest.raises(DataError) as error:
        validate(columns(docs), FEATURES, "classification")
    assert "class(es) 5 have fewer than 2 documents" in error.value.details


def test_regression_target_must_be_numeric() -> None:
    docs = [{"_id": i, "a": {"b": i}, "c": "x", "y": i * 1.5} for i in range(5)] + [
        {"_id": 7, "a": {"b": 1}, "c": "x", "y": "big"}
    ]
    with pytest.raises(DataError) as error:
        validate(columns(docs), FEATURES, "regression")
    assert "1 value(s) are not numbers for a regression, e.g. _id 7: expected a number" in error.value.details


def test_labels_of_mixed_kinds_name_an_offender() -> None:
    docs = [{"_id": i, "a": {"b": i}, "c": "x", "y": i % 2} for i in range(4)] + [
        {"_id": "odd", "a": {"b": 1}, "c": "x", "y": {"k": 1}}
    ]
    with pytest.raises(DataError) as error:
        validate(columns(docs), FEATURES, "classification")
    assert "_id odd" in error.value.details


def test_numbers_too_large_for_the_model_are_reported() -> None:
    docs = [{"_id": i, "a": {"b": i}, "c": "x", "y": i % 2} for i in range(4)] + [
        {"_id": "big", "a": {"b": 10**400}, "c": "x", "y": 1}
    ]
    with pytest.raises(DataError) as error:
        validate(columns(docs), FEATURES, "classification")
    assert "numeric feature 'a.b': 1 bad value(s), e.g. _id big: 1000" in error.value.details
    docs = [{"_id": i, "a": {"b": i}, "c": "x", "y": (i % 2) * 10**30} for i in range(4)]
    with pytest.raises(DataError) as error:
        validate(columns(docs), FEATURES, "classification")
    assert "must fit in 64 bits" in error.value.details
