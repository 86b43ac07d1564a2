"""The card explains the model (issue 19, item 8): a linear model's coefficients, each class's precision
and recall, the calibration curve, the threshold's effect, dates on a calendar axis, text as lengths and
top terms, derived features with their expressions, round ticks; and the test split's predictions as
JSON Lines with `_id`s. Every figure is checked against scikit-learn computing it on its own."""

from __future__ import annotations

import dataclasses
import json
import math
import random
import re
import zipfile
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from bson import ObjectId
from sklearn import metrics as skm
from sklearn.calibration import calibration_curve

from mlpack import card
from mlpack.build import BuildResult, write_artifacts
from mlpack.card.ticks import date_ticks, nice_ticks, tick_text
from mlpack.runtime import Model
from tests.helpers.training import config_for, export

WORDS = ["late payment", "asked about the price", "happy customer", "price too high", "late again", "moving away"]


def messy_subscribers(n: int = 320, seed: int = 11) -> list[dict[str, Any]]:
    """Subscribers as a CRM holds them: numbers as text (" 54 ", "NA"), nulls, absent fields, dates as
    BSON dates and ISO strings, empty and missing notes, ObjectId _ids."""
    rng = random.Random(seed)
    documents = []
    for index in range(n):
        tenure = rng.randint(0, 72)
        charges = round(rng.uniform(20, 120), 2)
        contract = rng.choice(["monthly", "yearly", "two_year"])
        risk = (contract == "monthly") * 1.5 - tenure * 0.04 + (charges > 90) * 0.8
        churned = risk + rng.gauss(0, 0.6) > 0.5
        signup = datetime(2019, 3, 1, tzinfo=UTC) + timedelta(days=rng.randint(0, 1500), hours=rng.randint(0, 23))
        document: dict[str, Any] = {
            "_id": ObjectId(f"{index:024x}"),
            "tenure_months": f" {tenure} " if index % 7 == 0 else tenure,
            "charges": "NA" if index % 13 == 0 else charges,
            "contract": contract,
            "signup": signup.strftime("%Y-%m-%dT%H:%M:%SZ") if index % 5 == 0 else signup.replace(tzinfo=None),
            "note": rng.choice(WORDS) + (" " + rng.choice(WORDS) if churned and rng.random() < 0.5 else ""),
            "label": "churned" if churned else "stayed",
            "value": round(charges * tenure * 0.9 + rng.gauss(0, 25), 2),
        }
        if index % 11 == 3:
            document["note"] = "" if index % 2 else None
        if index % 17 == 4:
            del document["signup"]
        documents.append(document)
    return documents


FEATURES = {
    "numeric": ["tenure_months", "charges"],
    "categorical": ["contract"],
    "datetime": ["signup"],
    "text": ["note"],
    "derived": {"charge_per_month": "charges / (tenure_months + 1)"},
}


def configured(estimator: str, task: str, params: dict[str, Any] | None = None, **sections: Any) -> Any:
    target = "label" if task == "classification" else "value"
    config = config_for(estimator, task, params, **sections)
    features = dataclasses.replace(config.features, target=target, **FEATURES)  # type: ignore[arg-type]
    return dataclasses.replace(config, features=features)


def build(tmp: Path, config: Any, documents: list[dict[str, Any]]) -> BuildResult:
    tmp.mkdir(parents=True, exist_ok=True)
    (tmp / "mlpack.toml").write_text("# test\n", encoding="utf-8")
    return write_artifacts(
        dataclasses.replace(config, path=tmp / "mlpack.toml"), export(config, documents), tmp / "dist"
    )


@pytest.fixture(scope="module")
def logistic(tmp_path_factory: pytest.TempPathFactory) -> BuildResult:
    config = configured("sklearn.linear_model.LogisticRegression", "classification")
    return build(tmp_path_factory.mktemp("card-lr"), config, messy_subscribers())


def svg_of(html: str, title: str) -> str:
    found = re.search(r'<svg [^>]*aria-label="' + re.escape(title) + r'".*?</svg>', html, re.S)
    assert found is not None, f"no chart {title!r}"
    return found.group()


def readme_of(result: BuildResult) -> str:
    with zipfile.ZipFile(result.artifacts["wheel"]) as wheel:
        name = next(n for n in wheel.namelist() if n.endswith(".dist-info/METADATA"))
        return wheel.read(name).decode()


def test_linear_coefficients_are_the_models_own_named_as_the_config_says(logistic: BuildResult) -> None:
    config = configured("sklearn.linear_model.LogisticRegression", "classification")
    exported = export(config, messy_subscribers())
    assert exported.rows is not None
    data = card.card_data(exported.trained, exported.rows, exported.metadata)
    assert data.coefficients is not None
    model = exported.trained.pipeline.steps[-1][1]
    assert data.coefficients.total == model.coef_.shape[1] == len(model.coef_[0])
    largest = float(np.max(np.abs(model.coef_[0])))
    assert abs(data.coefficients.rows[0][1][0]) == pytest.approx(largest, abs=1e-6)
    assert data.coefficients.intercept == [pytest.approx(float(model.intercept_[0]), abs=1e-6)]
    assert data.coefficients.columns == ["coefficient (stayed)"] and data.coefficients.scaled == "standard"
    names = {name for name, _ in data.coefficients.rows}
    everything = set(card.coefficients.readable_names(exported.trained, exported.metadata, data.coefficients.total))
    # Each column as the config names it: a number, a category, a date part, a word, a derived feature.
    assert {"tenure_months", "charges", "contract = monthly", "signup (year)", "charge_per_month"} <= everything
    assert any(re.fullmatch(r'note: "[a-z ]+"', name) for name in everything) and names <= everything

    html = logistic.artifacts["card"].read_text(encoding="utf-8")
    assert "Coefficients" in re.findall(r'aria-label="([^"]+)"', html)
    assert "per standard deviation" in html and "(intercept)" in html
    assert "### Coefficients" in readme_of(logistic)


def test_trees_have_no_coefficients() -> None:
    config = configured("sklearn.ensemble.RandomForestClassifier", "classification", {"n_estimators": 10})
    exported = export(config, messy_subscribers(200))
    assert exported.rows is not None
    assert card.card_data(exported.trained, exported.rows, exported.metadata).coefficients is None


def test_per_class_precision_recall_calibration_and_threshold_match_scikit_learn() -> None:
    config = configured("sklearn.linear_model.LogisticRegression", "classification")
    exported = export(config, messy_subscribers())
    assert exported.rows is not None
    trained = exported.trained
    data = card.card_data(trained, exported.rows, exported.metadata)
    truth = trained.test_target
    predicted = trained.pipeline.predict(trained.test_frame)
    proba = trained.pipeline.predict_proba(trained.test_frame)[:, 1]
    report = skm.classification_report(truth, predicted, output_dict=True, zero_division=0)
    for scores in data.per_class:
        assert scores.precision == pytest.approx(report[scores.label]["precision"], abs=1e-6)
        assert scores.recall == pytest.approx(report[scores.label]["recall"], abs=1e-6)
        assert scores.support == report[scores.label]["support"]
    (curve,) = data.calibration
    observed, mean_predicted = calibration_curve(truth == "stayed", proba, n_bins=10)
    assert curve.label == "stayed" and curve.observed == pytest.approx(observed.tolist(), abs=1e-6)
    assert curve.predicted == pytest.approx(mean_predicted.tolist(), abs=1e-6)
    assert sum(curve.counts) == len(truth)
    assert curve.brier == pytest.approx(skm.brier_score_loss(truth == "stayed", proba), abs=1e-6)
    view = data.threshold
    assert view is not None and view.chosen == 0.5 and len(view.curve) == 101
    assert view.at_default is not None
    assert view.at_default.precision == pytest.approx(skm.precision_score(truth, predicted, pos_label="stayed"))
    assert view.at_default.recall == pytest.approx(skm.recall_score(truth, predicted, pos_label="stayed"))
    recalls = [p.recall for p in view.curve]
    assert recalls == sorted(recalls, reverse=True) and recalls[0] == 1.0  # a higher bar finds fewer


def test_dates_are_drawn_on_a_calendar_and_text_as_lengths_and_vocabulary(logistic: BuildResult) -> None:
    html = logistic.artifacts["card"].read_text(encoding="utf-8")
    signup = svg_of(html, "signup")
    ticks = re.findall(r'text-anchor="middle">([^<]+)</text>', signup)
    assert {"2020", "2021", "2022", "2023"} <= set(ticks), ticks  # years, not milliseconds since 1970
    assert not any(re.fullmatch(r"[\d.e+]{10,}", t) for t in ticks)
    assert "2019-03-" in signup  # a bar's tooltip says its dates
    lengths = svg_of(html, "note: length")
    assert "characters" in lengths
    terms = svg_of(html, "note: top terms")
    shown = re.findall(r"<title>([^:<]+): \d+</title>", terms)
    vocabulary = set(" ".join(WORDS).split())
    assert shown and all(set(term.split()) <= vocabulary for term in shown)
    assert "Derived: charge_per_month = charges / (tenure_months + 1)" in html
    readme = readme_of(logistic)
    assert "### Date features (training split, UTC)" in readme and "| `signup` | 2019-03-" in readme
    assert "### Text features (training split)" in readme and "### Derived features (computed in the graph)" in readme
    assert "`charges / (tenure_months + 1)`" in readme


def test_axes_tick_at_round_numbers() -> None:
    assert nice_ticks(29.9, 119.8) == [50.0, 75.0, 100.0]
    assert nice_ticks(0.0, 1.0) == [0.0, 0.25, 0.5, 0.75, 1.0]
    assert [tick_text(v, 0.25) for v in nice_ticks(0.0, 1.0)] == ["0.00", "0.25", "0.50", "0.75", "1.00"]
    assert [tick_text(v, 1e5) for v in nice_ticks(1_000.0, 250_000.0)] == ["100k", "200k"]
    assert [tick_text(v, 2) for v in nice_ticks(-3.3, 2.1)] == ["-2", "0", "2"]

    def ms(*parts: int) -> float:
        return datetime(*parts, tzinfo=UTC).timestamp() * 1000

    assert [label for _, label in date_ticks(ms(2015, 3, 4), ms(2024, 6, 1))] == [
        "2016",
        "2018",
        "2020",
        "2022",
        "2024",
    ]
    assert [label for _, label in date_ticks(ms(2024, 1, 15), ms(2024, 9, 3))] == [
        "2024-03",
        "2024-05",
        "2024-07",
        "2024-09",
    ]
    assert [label for _, label in date_ticks(ms(2024, 5, 1), ms(2024, 5, 20))] == [
        "2024-05-06",
        "2024-05-13",
        "2024-05-20",
    ]


def test_every_tick_of_the_card_is_a_round_number(logistic: BuildResult) -> None:
    html = logistic.artifacts["card"].read_text(encoding="utf-8")
    for chart in re.findall(r"<svg .*?</svg>", html, re.S):
        if 'aria-label="signup"' in chart or "Confusion" in chart:
            continue
        labels = re.findall(
            r'<text x="[\d.]+" y="[\d.]+" text-anchor="(?:end|middle)"[^>]*>(-?[\d.]+[kM]?)</text>', chart
        )
        for label in labels:
            value = float(label.rstrip("kM"))
            mantissa = abs(value) / 10 ** math.floor(math.log10(abs(value))) if value else 1.0
            assert round(mantissa, 6) in (1.0, 1.5, 2.0, 2.5, 3.0, 4.0, 5.0, 6.0, 7.0, 7.5, 8.0, 9.0), (
                label,
                chart[:80],
            )


def test_the_subtitle_and_parity_line_say_only_what_is_true(tmp_path: Path) -> None:
    config = configured("sklearn.linear_model.Ridge", "regression")
    result = build(tmp_path, config, messy_subscribers(200))
    html = result.artifacts["card"].read_text(encoding="utf-8")
    subtitle = re.search(r'<p class="sub">([^<]*)</p>', html)
    assert subtitle is not None and subtitle.group(1).startswith("A regression model built"), subtitle.group(1)
    assert "label agreement" not in html and "max difference" in html  # a regression has no labels


def test_the_test_splits_predictions_are_an_artifact_with_ids(logistic: BuildResult, tmp_path: Path) -> None:
    path = logistic.artifacts["predictions"]
    assert path.name == "test-model-1.0.0.predictions.jsonl"
    assert logistic.report["artifacts"]["predictions"]["file"] == path.name
    lines = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
    assert len(lines) == logistic.metadata["parity"]["test_rows"]
    documents = {str(d["_id"]): d for d in messy_subscribers()}
    wheel_model = Model(logistic.artifacts["onnx"].read_bytes(), logistic.metadata)
    for line in lines:
        assert set(line) == {"_id", "truth", "prediction", "probabilities"}  # nothing else of the documents
        document = documents[line["_id"]["$oid"]]  # Extended JSON: the _id finds the document again
        assert line["truth"] == document["label"]
        labels, probabilities, _ = wheel_model.run([document])
        assert line["prediction"] == labels[0]
        assert line["probabilities"] == {
            "churned": pytest.approx(float(probabilities[0][0]), abs=1e-5),
            "stayed": pytest.approx(float(probabilities[0][1]), abs=1e-5),
        }
    accuracy = sum(line["truth"] == line["prediction"] for line in lines) / len(lines)
    assert accuracy == pytest.approx(logistic.metadata["metrics"]["accuracy"], abs=1e-6)

    config = configured("sklearn.linear_model.Ridge", "regression")
    regression = build(tmp_path, config, messy_subscribers(200))
    first = json.loads(regression.artifacts["predictions"].read_text(encoding="utf-8").splitlines()[0])
    assert set(first) == {"_id", "truth", "prediction"} and isinstance(first["prediction"], float)


def test_with_a_weight_every_metric_is_weighted_and_says_so(tmp_path: Path) -> None:
    documents = messy_subscribers()
    for index, document in enumerate(documents):
        document["account_weight"] = 1.0 + (index % 4)  # 1, 2, 3, 4
    config = configured("sklearn.linear_model.LogisticRegression", "classification")
    config = dataclasses.replace(config, features=dataclasses.replace(config.features, weight="account_weight"))
    result = build(tmp_path, config, documents)
    metadata = result.metadata
    assert metadata["evaluation"]["weighted_by"] == "account_weight"
    weights = {str(d["_id"]): d["account_weight"] for d in documents}
    lines = [json.loads(line) for line in result.artifacts["predictions"].read_text(encoding="utf-8").splitlines()]
    w = np.array([weights[line["_id"]["$oid"]] for line in lines])
    truth = np.array([line["truth"] for line in lines], dtype=object)
    predicted = np.array([line["prediction"] for line in lines], dtype=object)
    stayed = np.array([line["probabilities"]["stayed"] for line in lines])
    assert metadata["metrics"]["accuracy"] == pytest.approx(skm.accuracy_score(truth, predicted, sample_weight=w))
    assert metadata["metrics"]["accuracy"] != pytest.approx(skm.accuracy_score(truth, predicted), abs=1e-9)
    assert metadata["metrics"]["f1_macro"] == pytest.approx(
        skm.f1_score(truth, predicted, average="macro", sample_weight=w), abs=1e-6
    )
    assert metadata["metrics"]["roc_auc"] == pytest.approx(
        skm.roc_auc_score(truth == "stayed", stayed, sample_weight=w), abs=1e-5
    )
    html = result.artifacts["card"].read_text(encoding="utf-8")
    assert "metrics weighted by account_weight" in html and "<th>weight</th>" in html
    assert "weighted by each document's `account_weight`" in readme_of(result)
