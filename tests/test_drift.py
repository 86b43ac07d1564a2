"""The training baseline and PSI (mlpack.drift), checked against a plain numpy reference written apart from it."""

from __future__ import annotations

import math
import random
from typing import Any

import numpy as np
import pytest

from mlpack import runtime
from mlpack.runtime.drift import (
    Profile,
    baseline_of,
    categorical_profile,
    numeric_profile,
    psi,
)
from mlpack.runtime.serving.drift_window import PREDICTIONS, DriftWindow
from tests.helpers.documents import subscribers
from tests.helpers.drift import reference_categorical_psi, reference_numeric_psi


def _numbers(n: int, seed: int, shift: float = 0.0, scale: float = 1.0, missing: float = 0.0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    values = rng.normal(50 + shift, 10 * scale, n).round(2)
    values[rng.random(n) < missing] = np.nan
    return values


@pytest.mark.parametrize(
    ("shift", "scale", "missing"),
    [(0.0, 1.0, 0.0), (3.0, 1.0, 0.0), (10.0, 1.0, 0.1), (0.0, 2.5, 0.3), (-25.0, 0.5, 0.0)],
)
def test_numeric_psi_agrees_with_the_reference(shift: float, scale: float, missing: float) -> None:
    train = _numbers(2000, 1, missing=0.05)
    live = _numbers(700, 2, shift, scale, missing)
    profile = Profile(numeric_profile(train))
    ours = profile.psi(profile.counts_of(live))
    assert ours is not None
    assert ours == pytest.approx(reference_numeric_psi(train, live), rel=1e-5, abs=1e-6)


def test_categorical_psi_agrees_with_the_reference_including_unknown_categories() -> None:
    rng = random.Random(3)
    train = rng.choices(["monthly", "yearly", "two_year", "__missing__"], weights=[5, 3, 2, 1], k=1500)
    for live in (
        rng.choices(["monthly", "yearly", "two_year"], weights=[5, 3, 2], k=500),
        rng.choices(["monthly", "yearly", "two_year"], weights=[1, 3, 6], k=500),
        rng.choices(["monthly", "yearly", "weekly", "__missing__"], weights=[4, 3, 3, 2], k=500),
    ):
        profile = Profile(categorical_profile(train))
        ours = profile.psi(profile.counts_of(live))
        assert ours == pytest.approx(reference_categorical_psi(train, live), rel=1e-5, abs=1e-6)


def test_like_data_has_small_psi_and_shifted_data_large() -> None:
    profile = Profile(numeric_profile(_numbers(3000, 1)))
    same = profile.psi(profile.counts_of(_numbers(1000, 9)))
    shifted = profile.psi(profile.counts_of(_numbers(1000, 9, shift=8)))
    assert same is not None and shifted is not None
    assert same < 0.05 < 0.2 < shifted


def test_numeric_profile_edges_shares_and_missing_rate() -> None:
    values = np.array([float(v) for v in range(1, 101)] + [math.nan] * 25)
    profile = numeric_profile(values)
    assert profile["missing"] == pytest.approx(0.2)
    assert len(profile["edges"]) == 9 and profile["edges"] == sorted(profile["edges"])
    assert sum(profile["shares"]) == pytest.approx(1.0)
    assert all(share == pytest.approx(0.1) for share in profile["shares"])


def test_repeated_values_give_fewer_bins_not_empty_ones() -> None:
    profile = numeric_profile(np.array([0.0] * 50 + [1.0] * 30 + [2.0] * 20))
    assert profile["edges"] == [0.0, 1.0]
    assert profile["shares"] == [0.5, 0.3, 0.2]
    live = Profile(profile)
    assert live.bin_of(0.0) == 0 and live.bin_of(1.0) == 1 and live.bin_of(1.5) == 2 and live.bin_of(7.0) == 2


def test_a_value_on_an_edge_is_binned_alike_one_by_one_and_in_bulk() -> None:
    train = _numbers(500, 4)
    profile = Profile(numeric_profile(train))
    probes = np.array([*profile.edges, *(np.float32(e) for e in profile.edges), -1e9, 1e9, math.nan])
    one_by_one = [profile.bin_of(float(v)) for v in probes]
    assert one_by_one == profile.bins_of(probes).tolist()


def test_categories_beyond_the_cap_share_one_other_bin() -> None:
    values = ["a"] * 5 + ["b"] * 3 + ["c", "d"]
    profile = categorical_profile(values, max_categories=2)
    assert profile["categories"] == ["a", "b"] and profile["other"] is True
    assert profile["shares"] == [0.5, 0.3, 0.2]
    live = Profile(profile)
    assert live.bin_of("c") == live.bin_of("zzz") == 2  # rare and unseen cannot be told apart past the cap


def test_one_value_at_a_time_bins_as_numpy_does_for_every_kind() -> None:
    """The server bins one-record requests value by value (`binner`, also `bin_of`) and larger ones
    with numpy (`bins_of`): both must put each value in the same bin — edges, NaN, missing dates."""
    from mlpack.runtime.drift import MISSING_DATE, datetime_profile

    numeric = Profile(numeric_profile(_numbers(500, 4)))
    numbers = [*numeric.edges, -1e9, 1e9, math.nan, 0.0]
    dates = Profile(datetime_profile(np.arange(1_700_000_000_000, 1_700_000_000_000 + 86_400_000 * 50, 86_400_000)))
    moments = [int(e) for e in dates.edges] + [MISSING_DATE, 1_600_000_000_000, 1_800_000_000_000]
    empty = Profile(numeric_profile(np.array([math.nan, math.nan])))
    for profile, values, dtype in [
        (numeric, numbers, np.float32),
        (dates, moments, np.int64),
        (empty, [1.0, math.nan], np.float32),
    ]:
        one_by_one = [profile.binner()(v) for v in values]
        assert one_by_one == profile.bins_of(np.array(values, dtype=dtype)).tolist(), profile.kind
    assert numeric.binner()(math.nan) == numeric.missing_bin and dates.binner()(MISSING_DATE) == dates.missing_bin


def test_categories_bin_by_frequency_then_other_unknown_and_missing() -> None:
    from mlpack.runtime.drift import MISSING_CATEGORY

    plain = Profile(categorical_profile(["a", "b", "b"]))  # b is the more frequent: bin 0
    capped = Profile(categorical_profile(["a"] * 5 + ["b"] * 3 + ["c"], max_categories=2))
    texts = ["a", "b", "c", "zzz", "", MISSING_CATEGORY, None]
    assert [plain.binner()(t) for t in texts] == [1, 0, 2, 2, 2, 3, 3]  # unknown 2, missing 3
    assert [capped.binner()(t) for t in texts] == [0, 1, 2, 2, 2, 4, 4]  # other 2 (unknown 3 unused), missing 4
    assert plain.bins_of(np.array(texts, dtype=object)).tolist() == [1, 0, 2, 2, 2, 3, 3]
    labels = Profile(categorical_profile(["true", "false", "1"]))
    assert [labels.label_binner()(v) for v in (True, False, 1, "1", "true", 2)] == [
        labels.bin_of(t) for t in ("true", "false", "1", "1", "true", "2")
    ]


def test_free_text_drifts_by_its_length() -> None:
    from mlpack.runtime.drift import text_profile

    rng = random.Random(4)
    words = ["late", "delivery", "great", "service", "refund", "broken"]
    short = [" ".join(rng.choices(words, k=rng.randint(1, 6))) for _ in range(600)] + [None, ""] * 50
    entry = text_profile(short)
    assert entry["kind"] == "text" and entry["missing"] == pytest.approx(100 / 700)
    profile = Profile(entry)
    like = [" ".join(rng.choices(words, k=rng.randint(1, 6))) for _ in range(400)]
    pasted = [" ".join(rng.choices(words, k=rng.randint(30, 60))) for _ in range(400)]
    assert profile.psi(profile.counts_of(like)) < 0.1
    assert profile.psi(profile.counts_of(pasted)) > 1.0  # documents pasted into a subject line
    lengths = [float(len(t)) if t else math.nan for t in short]
    assert profile.psi(profile.counts_of(pasted)) == pytest.approx(
        reference_numeric_psi(np.array(lengths), np.array([float(len(t)) for t in pasted])), rel=1e-5
    )
    values = ["", None, "a", *like[:20], *pasted[:5]]
    assert [profile.binner()(v) for v in values] == profile.bins_of(np.array(values, dtype=object)).tolist()
    assert profile.binner()("") == profile.binner()(None) == profile.missing_bin


def test_the_window_counts_text_features_like_the_others() -> None:
    from mlpack.runtime.drift import text_profile

    baseline = baseline_of(
        {"note": ("text", ["ok", "fine thanks", "", "late delivery again"] * 50)},
        ["a", "b"] * 100,
        "classification",
        rows=200,
    )
    assert baseline["features"]["note"] == text_profile(["ok", "fine thanks", "", "late delivery again"] * 50)
    single, batched = DriftWindow(baseline, {"note": "note"}), DriftWindow(baseline, {"note": "note"})
    notes = ["ok", "", "a much longer note than any seen in training"] * 10
    for note in notes:
        single.observe({"note": np.array([[note]], dtype=object)}, ["a"])
    batched.observe({"note": np.array(notes, dtype=object).reshape(-1, 1)}, ["a"] * len(notes))
    assert np.array_equal(single.buffer, batched.buffer)
    summary = single.summary()["note"]
    assert summary["values"] == 30 and summary["missing"] == 10 and summary["psi"] > 1.0


def test_psi_of_nothing_is_none_and_bins_must_match() -> None:
    assert psi([0.5, 0.5], [0, 0]) is None
    assert psi([0, 0], [1, 1]) is None
    with pytest.raises(ValueError, match="same bins"):
        psi([0.5, 0.5], [1, 1, 1])
    assert psi([0.2, 0.8], [0.2, 0.8]) == 0.0


def test_baseline_of_profiles_known_kinds_and_the_predictions() -> None:
    baseline = baseline_of(
        {
            "age": ("numeric", _numbers(100, 1)),
            "plan": ("categorical", np.array(["a", "b", "a", "__missing__"] * 25, dtype=object)),
            "notes": ("text", ["free text"] * 100),
            "photo": ("image", [b"..."] * 100),  # a kind with no profile is left out
        },
        [True, False, True, True] * 25,
        "classification",
        rows=100,
    )
    assert set(baseline["features"]) == {"age", "plan", "notes"}
    assert baseline["features"]["notes"] == {"kind": "text", "edges": [], "shares": [1.0], "missing": 0.0}
    assert baseline["features"]["plan"] == {
        "kind": "categorical",
        "categories": ["a", "b"],
        "shares": [pytest.approx(2 / 3, abs=1e-6), pytest.approx(1 / 3, abs=1e-6)],
        "missing": 0.25,
    }
    assert baseline["predictions"]["categories"] == ["true", "false"]
    assert baseline["predictions"]["shares"] == [0.75, 0.25]
    regression = baseline_of({}, list(np.linspace(0, 1, 50)), "regression", rows=50)
    assert regression["predictions"]["kind"] == "numeric" and len(regression["predictions"]["edges"]) == 9


# -- the server's window ------------------------------------------------------------------------------
def _window(size: int = 100) -> DriftWindow:
    baseline = baseline_of(
        {
            "x": ("numeric", _numbers(1000, 1)),
            "c.kind": ("categorical", np.array(["a", "b"] * 500, dtype=object)),
        },
        ["yes", "no"] * 500,
        "classification",
        rows=1000,
    )
    return DriftWindow(baseline, {"x": "x", "c.kind": "c_kind"}, size=size)


def _feeds(xs: list[float], kinds: list[str]) -> dict[str, np.ndarray]:
    return {
        "x": np.array(xs, dtype=np.float32).reshape(-1, 1),
        "c_kind": np.array(kinds, dtype=object).reshape(-1, 1),
    }


def test_window_counts_the_same_one_by_one_as_in_batches() -> None:
    rng = np.random.default_rng(5)
    xs = [float(v) for v in rng.normal(55, 10, 250)] + [math.nan] * 10
    kinds = [rng.choice(["a", "b", "z", "__missing__"]) for _ in xs]
    labels = [rng.choice(["yes", "no"]) for _ in xs]
    single, batched = _window(), _window()
    for x, kind, label in zip(xs, kinds, labels):
        single.observe(_feeds([x], [kind]), [label])
    for start in range(0, len(xs), 37):
        batched.observe(_feeds(xs[start : start + 37], kinds[start : start + 37]), labels[start : start + 37])
    assert np.array_equal(single.buffer, batched.buffer)  # value by value or numpy: the same bins
    summary = single.summary()
    assert summary["x"]["values"] == 260 and summary["x"]["missing"] == 10
    assert summary["c.kind"]["unknown"] == kinds.count("z")
    assert summary["c.kind"]["missing"] == kinds.count("__missing__")
    # The window holds the last 100 records only; its PSI is that of those records.
    assert summary["x"]["window"] == 100
    profile = single.profiles["x"]
    assert summary["x"]["psi"] == pytest.approx(profile.psi(profile.counts_of(np.array(xs[-100:]))))


def test_every_request_is_counted_before_observe_returns() -> None:
    # Nothing is queued: a scrape right after a request sees it, in either path.
    window = _window()
    window.observe(_feeds([40.0], ["a"]), ["yes"])
    assert window.summary()["x"]["values"] == 1
    many = DriftWindow.SMALL + 1
    window.observe(_feeds([40.0] * many, ["a"] * many), ["yes"] * many)
    assert window.summary()["x"]["values"] == 1 + many
    assert window.summary()[PREDICTIONS]["window"] == 1 + many


def test_small_and_large_requests_share_one_window() -> None:
    # The window slides across both paths: 8 single records, then a batch that overflows it.
    window = _window(size=10)
    for _ in range(8):
        window.observe(_feeds([1000.0], ["a"]), ["yes"])
    window.observe(_feeds([0.0] * 20, ["b"] * 20), ["no"] * 20)
    window.observe(_feeds([1000.0], ["a"]), ["yes"])
    profile = window.profiles["x"]
    expected = profile.counts_of(np.array([0.0] * 9 + [1000.0]))
    assert list(window.tally()["x"][0]) == list(expected)
    assert window.summary()["c.kind"]["window"] == 10


def test_a_batch_larger_than_the_window_keeps_its_newest_records() -> None:
    window = _window(size=10)
    xs = [1000.0] * 15 + [0.0] * 10
    window.observe(_feeds(xs, ["a"] * 25), ["yes"] * 25)
    profile = window.profiles["x"]
    assert list(window.tally()["x"][0]) == list(profile.counts_of(np.zeros(10)))


def test_worker_buffers_add_up() -> None:
    first, second = _window(), _window()
    first.observe(_feeds([40.0, 60.0], ["a", "z"]), ["yes", "no"])
    second.observe(_feeds([math.nan], ["b"]), ["no"])
    total = first.summary(first.tally([first.buffer, second.buffer]))
    assert total["x"]["values"] == 3 and total["x"]["missing"] == 1
    assert total["c.kind"]["unknown"] == 1


def test_prometheus_lines_name_each_feature() -> None:
    window = _window()
    window.observe(_feeds([40.0, math.nan], ["a", "zz"]), ["yes", "no"])
    text = "\n".join(window.prometheus())
    assert 'mlpack_feature_missing_total{feature="x"} 1' in text
    assert 'mlpack_feature_unknown_category_total{feature="c.kind"} 1' in text
    assert 'mlpack_feature_drift_psi{feature="x"}' in text
    assert "mlpack_prediction_drift_psi " in text
    assert 'mlpack_drift_window_values{feature="x"} 1' in text


# -- the baseline a build stores ----------------------------------------------------------------------
def test_the_build_stores_a_baseline_of_its_data_and_predictions(built_model: Any) -> None:
    documents = subscribers(200)
    baseline = built_model.metadata["baseline"]
    assert baseline["rows"] == 200 and baseline["bins"] == 10
    tenure = baseline["features"]["tenure_months"]
    assert tenure["missing"] == pytest.approx(sum(d["tenure_months"] is None for d in documents) / 200)
    present = np.array([d["tenure_months"] for d in documents if d["tenure_months"] is not None], dtype=float)
    assert tenure["shares"] == pytest.approx(
        (
            np.bincount(np.searchsorted(tenure["edges"], present), minlength=len(tenure["edges"]) + 1) / len(present)
        ).tolist(),
        abs=1e-6,
    )
    method = baseline["features"]["billing.method"]
    methods = [d["billing"].get("method") for d in documents]
    assert method["missing"] == pytest.approx(methods.count(None) / 200)
    assert dict(zip(method["categories"], method["shares"])) == {
        m: pytest.approx(methods.count(m) / (200 - methods.count(None)), abs=1e-6) for m in ("card", "bank", "check")
    }
    # The predictions' distribution is the model's own, over the same documents.
    same_with_nulls = subscribers(200, absent=False)
    labels = runtime.Model(built_model.artifacts["onnx"], built_model.metadata).predict(same_with_nulls)
    predicted = baseline["predictions"]
    assert dict(zip(predicted["categories"], predicted["shares"])) == {
        label: pytest.approx(labels.count(label) / 200, abs=1e-6) for label in set(labels)
    }
    # The same baseline travels in the ONNX file's metadata.
    assert runtime.read_onnx_metadata(built_model.artifacts["onnx"])["baseline"] == baseline


def test_dates_are_binned_as_the_graph_takes_them() -> None:
    """int64 milliseconds since 1970, the smallest int64 for a missing date."""
    from mlpack.runtime import MISSING_DATE as RUNTIME_MISSING_DATE
    from mlpack.runtime.drift import MISSING_DATE, datetime_profile

    assert MISSING_DATE == RUNTIME_MISSING_DATE
    rng = np.random.default_rng(8)
    start = 1_700_000_000_000
    train = (start + rng.integers(0, 365 * 86_400_000, 800)).astype(np.int64)
    train[::20] = MISSING_DATE
    live = (start + 200 * 86_400_000 + rng.integers(0, 365 * 86_400_000, 300)).astype(np.int64)
    live[::7] = MISSING_DATE
    entry = datetime_profile(train)
    assert entry["kind"] == "datetime" and entry["missing"] == pytest.approx(40 / 800)
    profile = Profile(entry)
    assert profile.labels[0].startswith("(-inf, 2023-") and profile.labels[-1].endswith(", +inf]")
    counts = profile.counts_of(live)
    assert counts[profile.missing_bin] == len(live[::7])
    as_float = lambda a: np.where(a == MISSING_DATE, np.nan, a.astype(np.float64))  # noqa: E731
    assert profile.psi(counts) == pytest.approx(reference_numeric_psi(as_float(train), as_float(live)), rel=1e-5)
    probes = np.array([int(e) for e in profile.edges] + [MISSING_DATE, start], dtype=np.int64)
    assert [profile.bin_of(int(v)) for v in probes] == profile.bins_of(probes).tolist()
