"""The wheel's runtime: every input shape, bad input named, answers equal to scikit-learn."""

from __future__ import annotations

import copy
import json
import threading
from datetime import datetime
from typing import Any

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mlpack.build import ExportedModel
from mlpack.runtime import Model
from tests.helpers.documents import distinct_records, fuzzed_subscriber, subscribers
from tests.helpers.training import config_for, export, runtime_model, sklearn_frame

# Predictions need every field present (null is fine); training tolerates absent ones.
DOCUMENTS = subscribers(240, absent=False)


@pytest.fixture(scope="module")
def exported() -> ExportedModel:
    config = config_for(
        "sklearn.ensemble.RandomForestClassifier", "classification", {"n_estimators": 25, "random_state": 0}
    )
    return export(config, DOCUMENTS)


@pytest.fixture
def model(exported: ExportedModel) -> Model:
    return runtime_model(exported)


def test_labels_and_probabilities_equal_scikit_learn_on_whole_documents(exported: ExportedModel, model: Model) -> None:
    frame = sklearn_frame(exported, DOCUMENTS)
    assert model.predict(DOCUMENTS) == exported.trained.pipeline.predict(frame).tolist()
    np.testing.assert_allclose(
        model.predict_proba(DOCUMENTS), exported.trained.pipeline.predict_proba(frame), atol=1e-5
    )


def test_one_record_gives_one_label(model: Model) -> None:
    label = model.predict(DOCUMENTS[0])
    assert label in ("churned", "stayed")
    proba = model.predict_proba(DOCUMENTS[0])
    assert len(proba) == 2 and abs(sum(proba) - 1) < 1e-5
    assert model.classes == ["churned", "stayed"]


def dotted(record: dict[str, Any]) -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in record.items():
        if isinstance(value, dict):
            flat.update({f"{key}.{k}": v for k, v in value.items()})
        else:
            flat[key] = value
    return flat


def test_nested_dotted_columns_and_dataframe_inputs_agree(model: Model) -> None:
    records = DOCUMENTS[:40]
    expected = model.predict(records)
    flat = [dotted(r) for r in records]
    assert model.predict(flat) == expected
    columns = {key: [r.get(key) for r in flat] for key in flat[0]}
    assert model.predict(columns) == expected
    assert model.predict(pd.DataFrame(flat)) == expected
    assert model.predict(tuple(records)) == expected


def test_fields_the_model_does_not_use_are_ignored(model: Model) -> None:
    record = copy.deepcopy(DOCUMENTS[3])
    plain = model.predict(record)
    record.update({"notes": {"free": "text"}, "tags": ["a", "b"], "_id": "x"})
    assert model.predict(record) == plain


def test_none_and_nan_are_imputed_as_in_training(exported: ExportedModel, model: Model) -> None:
    record = copy.deepcopy(DOCUMENTS[0])
    record["tenure_months"] = None
    record["billing"]["monthly_charges"] = float("nan")
    record["contract"] = None
    expected = exported.trained.pipeline.predict_proba(sklearn_frame(exported, [record]))[0]
    np.testing.assert_allclose(model.predict_proba(record), expected, atol=1e-5)


def test_unknown_category_is_ignored_not_an_error(model: Model) -> None:
    record = copy.deepcopy(DOCUMENTS[0])
    record["contract"] = "lifetime"
    assert model.predict(record) in ("churned", "stayed")


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({**DOCUMENTS[0], "tenure_months": "twelve"}, "field 'tenure_months': expected a number, got 'twelve'"),
        ({**DOCUMENTS[0], "support_calls": "3 calls"}, "field 'support_calls': expected a number, got '3 calls'"),
        ({**DOCUMENTS[0], "support_calls": [1, 2]}, "field 'support_calls': expected a number, got [1, 2]"),
        ({**DOCUMENTS[0], "tenure_months": [1, 2]}, "field 'tenure_months': expected a number, got [1, 2]"),
        ([DOCUMENTS[0], {**DOCUMENTS[1], "support_calls": "x"}], "record 1: field 'support_calls': expected a number"),
        ({**DOCUMENTS[0], "support_calls": True}, "field 'support_calls': expected a number, got True"),
        ({**DOCUMENTS[0], "support_calls": float("inf")}, "field 'support_calls': inf is not a finite number"),
        ({**DOCUMENTS[0], "support_calls": 1e39}, "field 'support_calls': 1e+39 is not a finite number"),
        ({**DOCUMENTS[0], "contract": datetime(2024, 1, 1)}, "field 'contract': a date is not a category"),
        ({**DOCUMENTS[0], "contract": datetime(2024, 1, 1)}, "[features].datetime"),
        ({**DOCUMENTS[0], "contract": {"kind": "monthly"}}, "field 'contract': expected a category"),
        ([DOCUMENTS[0], "not a record"], "record 1 is a str"),
        ({**DOCUMENTS[0], "support_calls": 10**400}, "field 'support_calls': 10000000000000000000... is too large"),
        ({**DOCUMENTS[0], "contract": 10**5000}, "field 'contract': the value is too long for a category"),
        ([], "no records given"),
        ("tenure_months=3", "expected a record"),
        (
            {
                "tenure_months": [1, 2],
                "support_calls": [1],
                "contract": ["a", "b"],
                "billing.monthly_charges": [1, 2],
                "billing.method": ["card", "bank"],
            },
            "column 'support_calls' has 1 values, expected 2",
        ),
    ],
)
def test_bad_input_raises_value_error_naming_the_field(model: Model, data: Any, message: str) -> None:
    with pytest.raises(ValueError, match=None) as error:
        model.predict(data)
    assert message in str(error.value)


def test_regression_model_has_no_probabilities() -> None:
    config = config_for("sklearn.linear_model.Ridge", "regression")
    model = runtime_model(export(config, DOCUMENTS))
    value = model.predict(DOCUMENTS[0])
    assert isinstance(value, float)
    with pytest.raises(ValueError, match="regression model"):
        model.predict_proba(DOCUMENTS[0])


def test_one_session_shared_by_threads(exported: ExportedModel) -> None:
    model = runtime_model(exported)
    results: list[Any] = []
    barrier = threading.Barrier(8)

    def worker() -> None:
        barrier.wait()
        results.append((model.predict(DOCUMENTS[:20]), id(model.session)))

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len({session for _, session in results}) == 1
    assert all(labels == results[0][0] for labels, _ in results)


def test_session_is_created_lazily(exported: ExportedModel) -> None:
    model = runtime_model(exported)
    assert model._session is None
    model.predict(DOCUMENTS[0])
    assert model._session is not None


def test_predictions_survive_an_onnxruntime_whose_private_run_changed(exported: ExportedModel, model: Model) -> None:
    """The runtime calls onnxruntime's private compiled `run` for speed; a release whose binding takes
    other arguments (and whose public `run` knows them) must cost speed, never a prediction."""
    expected = model.predict(DOCUMENTS[:7])
    changed = runtime_model(exported)
    session = changed.session
    binding = session._sess

    class NewBinding:
        def run(self, names: Any, feeds: Any, options: Any, new_required_argument: Any) -> Any:
            return binding.run(names, feeds, options)

    session._sess = NewBinding()
    session.run = lambda names, feeds, options=None: session._sess.run(names, feeds, options, "new")
    assert changed.predict(DOCUMENTS[:7]) == expected
    assert changed.predict(DOCUMENTS[:7]) == expected  # and from then on through the public `run`


values = st.one_of(
    st.none(),
    st.integers(-(10**6), 10**6),
    st.floats(allow_nan=True, allow_infinity=False, width=32),
    st.text(max_size=8),
    st.booleans(),
    st.lists(st.integers(), max_size=2),
    st.dictionaries(st.text(max_size=3), st.integers(), max_size=2),
)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(record=fuzzed_subscriber(values))
def test_any_record_gives_a_label_or_a_value_error(model: Model, record: dict[str, Any]) -> None:
    try:
        answer = model.predict(record)
    except ValueError as error:
        # A record whose fields all hold lists reads as a dict of columns: then it may have no rows.
        assert "field '" in str(error) or "column '" in str(error) or str(error) == "no records given"
        return
    labels = answer if isinstance(answer, list) else [answer]
    assert set(labels) <= {"churned", "stayed"}


@pytest.mark.parametrize(
    ("estimator", "task"),
    [
        ("sklearn.linear_model.LogisticRegression", "classification"),  # a one-row product: another kernel
        ("sklearn.linear_model.Ridge", "regression"),
        ("sklearn.ensemble.RandomForestClassifier", "classification"),  # a tree ensemble: no second row
    ],
)
def test_a_record_gets_the_same_bytes_alone_and_in_any_batch(
    estimator: str, task: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What a server's batcher relies on: one record's labels and probabilities do not depend on the
    records run with it (onnxruntime on one thread, as the server runs it)."""
    monkeypatch.setenv("MLPACK_THREADS", "1")
    model = runtime_model(export(config_for(estimator, task), DOCUMENTS))
    records = distinct_records(500)
    alone = [json.dumps(model.run(record)[:2]) for record in records]
    for size in (2, 3, 17, 64, len(records)):
        together = []
        for start in range(0, len(records), size):
            labels, probabilities, _ = model.run(records[start : start + size])
            rows = probabilities or [None] * len(labels)
            together += [json.dumps(([label], None if row is None else [row])) for label, row in zip(labels, rows)]
        assert together == alone, size
