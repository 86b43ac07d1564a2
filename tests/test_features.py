"""mlpack's feature transformers: the numpy reference against plain Python, and the registered
skl2onnx converters against the numpy reference, run with onnxruntime alone."""

from __future__ import annotations

import datetime as dt
import math
from typing import Any

import numpy as np
import onnxruntime as ort
import pandas as pd
import pytest
from skl2onnx import convert_sklearn
from skl2onnx.common.data_types import FloatTensorType, Int64TensorType, StringTensorType
from sklearn.compose import ColumnTransformer
from sklearn.linear_model import LinearRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder

from mlpack.config import parse_config
from mlpack.errors import ConfigError
from mlpack.features.categories import RareCategories
from mlpack.features.converters import register
from mlpack.features.date_parts import DateParts
from mlpack.features.dates import DATE_PARTS
from mlpack.features.derived import DerivedFeatures
from mlpack.features.expressions import evaluate, parse_derived
from mlpack.features.target import TRANSFORMS, TransformedTarget
from mlpack.features.text import NoWordsError, TextWords
from mlpack.runtime import MISSING_DATE, date_milliseconds

register()

KINDS: dict[str, Any] = {"contract": "category", "signup": "date", "opened": "date"}
ONNX_TYPES = {"number": FloatTensorType, "category": StringTensorType, "date": Int64TensorType}


def _columns(rows: int = 400, seed: int = 0) -> dict[str, np.ndarray]:
    """Raw inputs as the graph receives them, with missing values of every kind and awkward numbers."""
    rng = np.random.default_rng(seed)
    price = rng.uniform(-20, 100, rows).astype(np.float32)
    price[::13] = np.nan
    price[5] = 0
    carat = rng.uniform(0, 3, rows).astype(np.float32)
    carat[::7] = 0  # division by zero
    signup = rng.integers(-2_000_000_000_000, 4_000_000_000_000, rows)
    opened = signup + rng.integers(-(10**9), 10**10, rows)
    signup[::11] = MISSING_DATE
    opened[::17] = MISSING_DATE
    contract = rng.choice(["monthly", "two_year", "__missing__", "one_year"], rows).astype(object)
    return {"price": price, "carat": carat, "signup": signup, "opened": opened, "contract": contract}


def _graph_values(expressions: dict[str, str], columns: dict[str, np.ndarray]) -> np.ndarray:
    """The derived columns as computed by the ONNX graph of DerivedFeatures, with onnxruntime."""
    kinds = {path: KINDS.get(path, "number") for path in columns}
    frame = pd.DataFrame(columns)
    derive = DerivedFeatures(expressions, {p: k for p, k in kinds.items() if k != "number"}, {})
    pipeline = Pipeline(
        [("derive", derive), ("out", ColumnTransformer([("d", "passthrough", list(expressions))]))]
    ).fit(frame)
    types = [(path, ONNX_TYPES[kinds[path]]([None, 1])) for path in columns]
    model = convert_sklearn(pipeline, initial_types=types, target_opset=17)
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    feeds = {path: values.reshape(-1, 1) for path, values in columns.items()}
    return np.asarray(session.run(None, feeds)[0])


EXPRESSIONS = {
    "ratio": "price / carat",
    "log_price": "log(price)",
    "log1p_price": "log1p(price)",
    "power": "carat ** 2 - -price",
    "root": "sqrt(price) + exp(carat) + abs(price) + floor(carat) + ceil(carat)",
    "compare": "(price > 10) + (price <= 5) * 2 + (carat == 0) * 4 + (carat != 1)",
    "logic": "price > 10 and carat < 1 or not carat",
    "chained": "0 < price < 50",
    "extremes": "min(price, carat, 3) + max(price, 1) + clip(price, 0, 10)",
    "choose": "where(carat > 1, price, -price)",
    "missing": "isnull(price) + isnull(contract) * 2 + isnull(signup) * 4",
    "category": "(contract == 'two_year') + (contract != 'monthly') * 2 + ('one_year' == contract) * 4",
    "parts": "year(signup) * 10000 + month(signup) * 100 + day(signup)",
    "week_hour": "dayofweek(opened) * 100 + hour(opened)",
    "between": "days_between(signup, opened)",
    "chain": "ratio * 2 + log1p_price",
}


def test_graph_computes_what_the_numpy_reference_computes() -> None:
    columns = _columns()
    expected = evaluate(parse_derived(EXPRESSIONS, KINDS), columns)
    got = _graph_values(EXPRESSIONS, columns)
    for index, name in enumerate(EXPRESSIONS):
        np.testing.assert_allclose(got[:, index], expected[name], rtol=2e-7, atol=0, equal_nan=True, err_msg=name)
        assert np.all(np.isfinite(expected[name]) | np.isnan(expected[name])), name  # never ±inf


def test_reference_matches_plain_python_row_by_row() -> None:
    columns = _columns(rows=120, seed=1)
    values = evaluate(parse_derived(EXPRESSIONS, KINDS), columns)

    def date(ms: int) -> dt.datetime | None:
        return None if ms == MISSING_DATE else dt.datetime(1970, 1, 1) + dt.timedelta(milliseconds=int(ms))

    def same(got: float, want: float | None) -> bool:
        if want is None or not math.isfinite(want):
            return math.isnan(got)
        return math.isclose(got, want, rel_tol=1e-5, abs_tol=1e-5)

    for row in range(120):
        price, carat = float(columns["price"][row]), float(columns["carat"][row])
        missing = math.isnan(price)
        signup, opened = date(columns["signup"][row]), date(columns["opened"][row])
        ratio = None if missing or carat == 0 else price / carat
        assert same(values["ratio"][row], ratio)
        assert same(values["log_price"][row], None if missing or price <= 0 else math.log(price))
        logic = None if missing else float((price > 10 and carat < 1) or not carat)
        assert same(values["logic"][row], logic)
        choose = None if missing else (price if carat > 1 else -price)
        assert same(values["choose"][row], choose)
        contract = columns["contract"][row]
        assert same(values["missing"][row], float(missing) + 2 * (contract == "__missing__") + 4 * (signup is None))
        assert same(
            values["category"][row],
            float(contract == "two_year") + 2 * (contract != "monthly") + 4 * (contract == "one_year"),
        )
        assert same(
            values["parts"][row], None if signup is None else signup.year * 10000 + signup.month * 100 + signup.day
        )
        week_hour = None if opened is None else opened.weekday() * 100 + opened.hour
        assert same(values["week_hour"][row], week_hour)
        between = None if signup is None or opened is None else (opened - signup) / dt.timedelta(days=1)
        assert same(values["between"][row], between)


def test_date_parts_against_python_datetime_and_the_graph() -> None:
    rng = np.random.default_rng(2)
    ms = rng.integers(-6_000_000_000_000, 9_000_000_000_000, 3000)  # 1779 to 2255
    ms[:4] = [0, -1, MISSING_DATE, 951_782_400_000]  # epoch, a millisecond before it, missing, 2000-02-29
    frame = pd.DataFrame({"a": ms, "b": ms[::-1].copy()})
    parts = DateParts().fit(frame)
    expected = parts.transform(frame)
    for row in [0, 1, *range(3, 3000)]:
        moment = dt.datetime(1970, 1, 1) + dt.timedelta(milliseconds=int(ms[row]))
        want = [
            moment.year,
            moment.month,
            moment.day,
            moment.weekday(),
            moment.hour,
            (moment.date() - dt.date(1970, 1, 1)).days,
        ]
        assert expected[row, : len(DATE_PARTS)].tolist() == want, moment
    assert np.isnan(expected[2, : len(DATE_PARTS)]).all()
    pipeline = Pipeline([("dates", ColumnTransformer([("d", DateParts(), ["a", "b"])]))]).fit(frame)
    model = convert_sklearn(
        pipeline, initial_types=[("a", Int64TensorType([None, 1])), ("b", Int64TensorType([None, 1]))]
    )
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    got = session.run(None, {"a": ms.reshape(-1, 1), "b": ms[::-1].reshape(-1, 1).copy()})[0]
    np.testing.assert_array_equal(got, expected.astype(np.float32))


@pytest.mark.parametrize(
    "value",
    [
        dt.datetime(2024, 1, 5, 10, 30, 0, 250_000),
        dt.datetime(2024, 1, 5, 11, 30, 0, 250_000, tzinfo=dt.timezone(dt.timedelta(hours=1))),
        "2024-01-05T10:30:00.25Z",
        "2024-01-05T10:30:00.250+00:00",
        "2024-01-05 12:30:00.25+02:00",
        {"$date": "2024-01-05T10:30:00.250Z"},
        {"$date": {"$numberLong": "1704450600250"}},
        {"$date": 1704450600250},
    ],
)
def test_every_date_form_is_the_same_milliseconds(value: Any) -> None:
    assert date_milliseconds(value) == 1704450600250


@pytest.mark.parametrize("value", ["yesterday", "2024-02-30", 1704450600250, True, {"$date": "soon"}, ["2024-01-01"]])
def test_values_that_are_not_dates_are_refused(value: Any) -> None:
    with pytest.raises(ValueError, match="expected a date"):
        date_milliseconds(value)


@pytest.mark.parametrize(
    ("expression", "problem", "column"),
    [
        ("price / contract", "'contract' is a category: it cannot be used in arithmetic ('/')", 9),
        ("log(price) + lg(carat)", "unknown function 'lg'", 14),
        ("price * (carat", "syntax error", 9),
        ("price % 2", "operator not supported", 7),
        ("year(price)", "year() needs a date, got a number", 6),
        ("year(signup) + signup", "'signup' is a date: it cannot be used in arithmetic", 16),
        ("signup < opened", "dates cannot be compared directly", 1),
        ("contract", "the result must be a number, not a category", 1),
        ("contract < 'b'", "'<' needs numbers", 1),
        ("contract == 2", "compare a category with a 'string'", 13),
        ("price == 'x'", "cannot compare a number with a string", 10),
        ("price.__class__()", "only the functions of the expression language", 1),
        ("__import__('os')", "unknown function '__import__'", 1),
        ("price[0]", "is not part of the expression language", 1),
        ("lambda: 1", "is not part of the expression language", 1),
        ("log", "'log' is a function", 1),
        ("True + price", "True is not a number", 1),
        ("min(price)", "min() takes at least 2 argument(s)", 1),
        ("clip(price, 1)", "clip() takes 3 argument(s)", 1),
        ("log(x=price)", "no keyword arguments", 7),
        ("1 + 2", "reads no field", 3),
        ("", "empty", 1),
        ("year(when) + when", "field 'when' is used as a number here but as a date at column 6", 14),
        ("subject + 1", "'subject' is a text field: it cannot be used in arithmetic ('+') (read it with length()", 1),
    ],
)
def test_wrong_expressions_are_config_errors_pointing_at_the_place(expression: str, problem: str, column: int) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_derived({"feature_x": expression}, {**KINDS, "price": "number", "subject": "text"})
    error = caught.value
    assert error.exit_code == 2
    assert error.message.startswith("[features.derived].feature_x: ")
    assert problem in error.message
    assert f"(column {column})" in error.message
    line, pointer = error.details.splitlines()
    assert line == f"    {expression}"
    assert pointer == "    " + " " * (column - 1) + "^"


def test_derived_features_may_not_refer_to_each_other_in_a_circle() -> None:
    with pytest.raises(ConfigError, match="in a circle: a -> b -> a"):
        parse_derived({"a": "b + price", "b": "a * 2"}, {})
    with pytest.raises(ConfigError, match="plain name"):
        parse_derived({"log": "price"}, {})


def test_fields_get_their_kind_from_how_they_are_used() -> None:
    (expression,) = parse_derived({"x": "days_between(a.start, b) + (plan == 'gold') + isnull(c) + d"}, {})
    assert expression.fields == {"a.start": "date", "b": "date", "plan": "category", "c": "number", "d": "number"}


@pytest.mark.parametrize("func", list(TRANSFORMS))
def test_target_transform_inverse_is_in_the_graph(func: str) -> None:
    rng = np.random.default_rng(3)
    X = rng.uniform(0, 5, (200, 3))
    linear = X @ [0.3, 0.2, 0.1] + 0.5
    y = {"log1p": np.expm1(linear), "log": np.exp(linear), "sqrt": linear**2}[func]
    model = TransformedTarget(LinearRegression(), func).fit(X, y)
    # Exact functions of the inputs after the transform: the fit is perfect in the target's own units.
    np.testing.assert_allclose(model.predict(X), y, rtol=1e-4)
    onnx_model = convert_sklearn(model, initial_types=[("X", FloatTensorType([None, 3]))], target_opset=17)
    session = ort.InferenceSession(onnx_model.SerializeToString(), providers=["CPUExecutionProvider"])
    got = session.run(None, {"X": X.astype(np.float32)})[0].ravel()
    np.testing.assert_allclose(got, model.predict(X), rtol=1e-5)


def test_text_words_load_without_the_en_us_locale_and_match_scikit_learn() -> None:
    texts = np.array(["Late delivery again", "great service", "", "bad support, late delivery", "GREAT great"] * 8)
    frame = pd.DataFrame({"subject": texts.astype(object)})
    # A vocabulary of 6 from 13 n-grams: skl2onnx gets a bigram wrong unless its words are kept too.
    pipeline = Pipeline([("text", ColumnTransformer([("t", TextWords(max_words=6), "subject")]))]).fit(frame)
    vocabulary = pipeline[0].named_transformers_["t"].vectorizer_.vocabulary_
    assert len(vocabulary) == 6
    assert all(word in vocabulary for term in vocabulary for word in term.split(" "))
    model = convert_sklearn(pipeline, initial_types=[("subject", StringTensorType([None, 1]))])
    assert {a.s.decode() for n in model.graph.node for a in n.attribute if a.name == "locale"} == {"C.UTF-8"}
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    got = session.run(None, {"subject": texts.astype(object).reshape(-1, 1)})[0]
    np.testing.assert_allclose(got, pipeline.transform(frame), atol=1e-6)
    unseen = np.array([["late again, GREAT delivery"], ["nothing known"]], dtype=object)
    np.testing.assert_allclose(
        session.run(None, {"subject": unseen})[0],
        pipeline.transform(pd.DataFrame({"subject": unseen[:, 0]})),
        atol=1e-6,
    )


@pytest.mark.parametrize("max_words", [1, 2, 3, 50])
def test_any_vocabulary_cap_gives_a_graph_that_loads_and_matches(max_words: int) -> None:
    texts = np.array(["red apple pie", "green apple", "red red wine", "pie", ""] * 4, dtype=object)
    frame = pd.DataFrame({"t": texts})
    pipeline = Pipeline([("c", ColumnTransformer([("t", TextWords(max_words=max_words), "t")]))]).fit(frame)
    model = convert_sklearn(pipeline, initial_types=[("t", StringTensorType([None, 1]))])
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    got = session.run(None, {"t": texts.reshape(-1, 1)})[0]
    assert got.shape[1] == min(max_words, 10)  # 5 words + 5 phrases here
    np.testing.assert_allclose(got, pipeline.transform(frame), atol=1e-6)


def test_a_text_field_without_words_is_refused() -> None:
    with pytest.raises(NoWordsError):
        TextWords().fit(pd.DataFrame({"t": ["", "_", None, "!", "— …"]}))  # one letter ("a") is a word


def test_rare_and_unseen_categories_share_one_other_column_in_the_graph_too() -> None:
    values = ["a"] * 10 + ["b"] * 6 + ["c"] * 2 + ["d"] + ["__missing__"] * 3
    frame = pd.DataFrame({"x": values, "y": ["p", "q"] * 11})
    encode = Pipeline([("rare", RareCategories(max_categories=3)), ("onehot", OneHotEncoder(handle_unknown="ignore"))])
    pipeline = Pipeline([("c", ColumnTransformer([("c", encode, ["x", "y"])], sparse_threshold=0.0))]).fit(frame)
    assert pipeline[0].named_transformers_["c"][0].kept_ == [["a", "b"], ["p", "q"]]  # 2 kept + "other" = 3
    model = convert_sklearn(
        pipeline, initial_types=[("x", StringTensorType([None, 1])), ("y", StringTensorType([None, 1]))]
    )
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    new = pd.DataFrame({"x": ["a", "c", "never seen", "__missing__", "b"], "y": ["q", "p", "zz", "p", "q"]})
    feeds = {name: new[name].to_numpy(dtype=object).reshape(-1, 1) for name in new}
    got = session.run(None, feeds)[0]
    expected = pipeline.transform(new)
    np.testing.assert_array_equal(got, expected)
    assert expected.shape[1] == 3 + 2  # x: a, b, other; y: p, q (no rare value in training: no other)
    assert got[1, :3].tolist() == got[2, :3].tolist() == [1, 0, 0]  # rare 'c' and unseen: __other__, a, b
    assert got[2, 3:].tolist() == [0, 0]  # y never had an other: an unseen value is all zeros


def _random_expressions() -> Any:
    """Well-typed expressions of every construct, nested, as text."""
    from hypothesis import strategies as st

    leaves = st.one_of(
        st.sampled_from(["price", "carat", "-price", "2", "0.5", "0", "1e3"]),
        st.sampled_from(["year(signup)", "month(opened)", "hour(signup)", "dayofweek(opened)", "day(signup)"]),
        st.sampled_from(["days_between(signup, opened)", "(contract == 'monthly')", "isnull(signup)"]),
    )

    def extend(inner: Any) -> Any:
        unary = st.sampled_from(["log", "log1p", "exp", "sqrt", "abs", "floor", "ceil", "-", "not ", "isnull"])
        binary = st.sampled_from(["+", "-", "*", "/", "**", "<", "<=", ">", ">=", "==", "!=", "and", "or"])
        pair = st.sampled_from(["min", "max"])
        return st.one_of(
            st.builds(lambda f, a: f"({f}({a}))", unary, inner),
            st.builds(lambda a, op, b: f"({a} {op} {b})", inner, binary, inner),
            st.builds(lambda f, a, b: f"{f}({a}, {b})", pair, inner, inner),
            st.builds(lambda c, a, b: f"where({c}, {a}, {b})", inner, inner, inner),
            st.builds(lambda a, b, c: f"clip({a}, {b}, {c})", inner, inner, inner),
        )

    return st.recursive(leaves, extend, max_leaves=8)


def test_random_expressions_compute_the_same_in_the_graph_and_in_numpy() -> None:
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    columns = _columns(rows=60, seed=4)

    @settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(st.lists(_random_expressions(), min_size=1, max_size=4))
    def check(texts: list[str]) -> None:
        expressions = {f"e{i}": f"{text} + 0 * price" for i, text in enumerate(texts)}  # always reads a field
        expected = evaluate(parse_derived(expressions, KINDS), columns)
        got = _graph_values(expressions, columns)
        for index, name in enumerate(expressions):
            np.testing.assert_allclose(
                got[:, index], expected[name], rtol=1e-5, atol=1e-6, equal_nan=True, err_msg=expressions[name]
            )

    check()


@pytest.mark.parametrize(
    ("change", "needle"),
    [
        ({"features": {"target_transform": "log"}}, "[features].target_transform is for regression"),
        ({"features": {"target_transform": "cube"}}, "[features].target_transform must be one of"),
        ({"preprocessing": {"max_categories": 1}}, "[preprocessing].max_categories must be at least 2"),
        ({"preprocessing": {"text_max_words": 0}}, "[preprocessing].text_max_words must be at least 1"),
        ({"preprocessing": {"scale": "minmax"}}, "[preprocessing].scale must be one of"),
        ({"preprocessing": {"numeric_imput": "mean"}}, "did you mean 'numeric_impute'"),
        ({"features": {"derived": {"leak": "label == 'x'"}}}, "must not read the target 'label'"),
        ({"features": {"derived": {"x": "log(tenure"}}}, "[features.derived].x: syntax error"),
        ({"features": {"derived": {"contract": "tenure * 2"}}}, "already a field listed in [features]"),
    ],
)
def test_feature_engineering_config_mistakes_are_exit_2_before_any_data(change: dict[str, Any], needle: str) -> None:
    raw: dict[str, Any] = {
        "model": {"name": "m", "version": "1.0.0", "task": "classification"},
        "source": {"database": "db", "collection": "c"},
        "features": {"numeric": ["tenure"], "categorical": ["contract"], "target": "label"},
        "estimator": {"class": "sklearn.linear_model.LogisticRegression"},
    }
    for section, values in change.items():
        raw.setdefault(section, {}).update(values)
    with pytest.raises(ConfigError) as caught:
        parse_config(raw)
    assert needle in caught.value.message
