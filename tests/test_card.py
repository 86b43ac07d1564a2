"""The model card: NAME-VERSION.html with its plots, self-contained,
deterministic, the same numbers as tables in the wheel's README, and rendered by a real browser."""

from __future__ import annotations

import dataclasses
import os
import re
import shutil
import subprocess
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from sklearn import metrics as skm

from mlpack.build import BuildResult, write_artifacts
from tests.helpers.documents import subscribers
from tests.helpers.training import config_for, export

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


def build(tmp: Path, estimator: str, task: str, **sections: Any) -> BuildResult:
    tmp.mkdir(parents=True, exist_ok=True)
    (tmp / "mlpack.toml").write_text("# test\n", encoding="utf-8")
    config = config_for(estimator, task, {"random_state": 0, "n_estimators": 15}, **sections)
    config = dataclasses.replace(config, path=tmp / "mlpack.toml")
    return write_artifacts(config, export(config, subscribers(200)), tmp / "dist")


@pytest.fixture(scope="module")
def classifier(tmp_path_factory: pytest.TempPathFactory) -> BuildResult:
    return build(
        tmp_path_factory.mktemp("card-c"),
        "sklearn.ensemble.RandomForestClassifier",
        "classification",
        search={"params": {"max_depth": [3, 8]}, "cv": 3},
    )


@pytest.fixture(scope="module")
def regressor(tmp_path_factory: pytest.TempPathFactory) -> BuildResult:
    return build(tmp_path_factory.mktemp("card-r"), "sklearn.ensemble.RandomForestRegressor", "regression")


def readme_of(result: BuildResult) -> str:
    with zipfile.ZipFile(result.artifacts["wheel"]) as wheel:
        name = next(n for n in wheel.namelist() if n.endswith(".dist-info/METADATA"))
        return wheel.read(name).decode()


def svg_titles(html: str) -> list[str]:
    return re.findall(r'<svg [^>]*aria-label="([^"]+)"', html)


def assert_self_contained(html: str) -> None:
    """Nothing to fetch: no scripts, stylesheets, images or fonts by address; the only URL is SVG's namespace."""
    assert "<script" not in html and "<link" not in html and "<img" not in html and "@import" not in html
    addresses = set(re.findall(r"https?://[^\s\"'<>)]+", html))
    assert addresses <= {"http://www.w3.org/2000/svg"}, addresses


def test_classification_card_has_its_plots_and_the_right_numbers(classifier: BuildResult) -> None:
    path = classifier.artifacts["card"]
    assert path.name == "test-model-1.0.0.html" and classifier.report["artifacts"]["card"]["file"] == path.name
    html = path.read_text(encoding="utf-8")
    assert_self_contained(html)
    titles = svg_titles(html)
    for expected in ("Confusion matrix", "ROC curve", "Precision-recall curve", "Class balance"):
        assert expected in titles
    assert "Permutation importance" in titles
    # One distribution per feature (numeric histogram or category bars).
    assert {"tenure_months", "billing.monthly_charges", "support_calls", "contract", "billing.method"} <= set(titles)

    # The confusion matrix is scikit-learn's on the test split, cell by cell.
    from mlpack import card

    exported_rows = classifier.metadata["parity"]["test_rows"]
    matrix_cells = re.search(r'aria-label="Confusion matrix".*?</svg>', html, re.S)
    assert matrix_cells is not None
    counts = [
        int(v) for v in re.findall(r'dominant-baseline="middle" fill="#[0-9a-f]{3}">(\d+)<', matrix_cells.group())
    ]
    assert sum(counts) == exported_rows and len(counts) == 4

    # The search summary: space, trials, best params, CV mean/std.
    search = classifier.metadata["search"]
    assert "Cross-validation and search" in html and "{&quot;max_depth&quot;: [3, 8]}" in html
    best = f"{search['results'][0]['mean']:.4f}"
    assert re.search(r'<tr class="best"><td>' + str(search["best_trial"]) + r"</td>.*?" + best, html)
    assert card.IMPORTANCE_REPEATS == 5


def test_card_numbers_match_a_direct_computation() -> None:
    """confusion matrix, ROC AUC and importances recomputed from the fitted pipeline directly."""
    from mlpack import card

    config = config_for("sklearn.linear_model.LogisticRegression", "classification")
    exported = export(config, subscribers(200))
    assert exported.rows is not None
    data = card.card_data(exported.trained, exported.rows, exported.metadata)
    trained = exported.trained
    predicted = trained.pipeline.predict(trained.test_frame)
    assert data.confusion == skm.confusion_matrix(trained.test_target, predicted, labels=trained.classes).tolist()
    assert data.classes == ["churned", "stayed"]
    proba = trained.pipeline.predict_proba(trained.test_frame)[:, 1]
    auc = skm.roc_auc_score(trained.test_target == "stayed", proba)
    assert data.roc[0].area == pytest.approx(auc, abs=1e-6) and data.roc[0].label == "stayed"
    assert data.roc[0].area == pytest.approx(exported.metadata["metrics"]["roc_auc"], abs=1e-6)
    # Every feature has an importance; shuffling tenure (the strongest driver of churn here) costs most.
    assert {i.feature for i in data.importances} == {f["name"] for f in exported.metadata["features"]}
    assert data.importances[0].feature in ("tenure_months", "contract", "support_calls")
    assert data.importances[0].mean > 0.02
    assert data.balance["train"]["churned"] + data.balance["test"]["churned"] == sum(
        1 for d in subscribers(200) if d["label"] == "churned"
    )
    numeric = next(d for d in data.distributions if d.feature == "tenure_months")
    assert sum(numeric.counts) + numeric.missing == numeric.rows == trained.train_rows
    assert numeric.missing == int(np.isnan(exported.rows.train_columns["tenure_months"]).sum()) > 0


def test_multiclass_card_draws_one_curve_per_class() -> None:
    from mlpack import card

    documents = [{**d, "label": d["contract"]} for d in subscribers(180)]
    config = config_for("sklearn.tree.DecisionTreeClassifier", "classification", {"max_depth": 4, "random_state": 0})
    config = dataclasses.replace(config, features=dataclasses.replace(config.features, categorical=["billing.method"]))
    exported = export(config, documents)
    assert exported.rows is not None
    data = card.card_data(exported.trained, exported.rows, exported.metadata)
    assert [c.label for c in data.roc] == ["monthly", "two_year", "yearly"] and len(data.confusion) == 3
    html = card.render_html(data, exported.metadata)
    assert html.count("<polyline") == 9  # three ROC curves, three precision-recall curves, three calibration curves


def test_regression_card_and_readme_tables(regressor: BuildResult) -> None:
    html = regressor.artifacts["card"].read_text(encoding="utf-8")
    assert_self_contained(html)
    titles = svg_titles(html)
    assert {"Predicted vs actual", "Residuals", "Permutation importance"} <= set(titles)
    assert "Confusion matrix" not in titles and "ROC curve" not in titles
    points = re.search(r'aria-label="Predicted vs actual".*?</svg>', html, re.S)
    assert points is not None and points.group().count("<circle") == regressor.metadata["parity"]["test_rows"]

    readme = readme_of(regressor)
    assert "### Residuals (test split, actual − predicted)" in readme
    assert "### Permutation importance (test split, r2, 5 repeats)" in readme
    assert "| `tenure_months` |" in readme and "### Numeric features (training split)" in readme


def test_readme_carries_the_same_numbers_as_the_card(classifier: BuildResult) -> None:
    from mlpack import card

    readme = readme_of(classifier)
    html = classifier.artifacts["card"].read_text(encoding="utf-8")
    assert "### Confusion matrix (test split)" in readme and "| actual \\ predicted | churned | stayed |" in readme
    assert "### Hyper-parameter search" in readme and "### Class balance" in readme
    # Importances: every value in the README's table is the one the card's bar carries.
    table = re.findall(r"\| `([^`]+)` \| (-?\d+\.\d{4}) \| (\d+\.\d{4}) \|", readme.split("### Permutation")[1])
    assert len(table) == 5
    for feature, mean, _ in table:
        bar = re.search(r"<title>" + re.escape(feature) + r": (-?[\d.e-]+)</title>", html)
        assert bar is not None and float(bar.group(1)) == pytest.approx(float(mean), abs=1e-4)
    assert card.render_markdown  # the README tables come from the same CardData as the page


def test_card_is_deterministic(tmp_path: Path) -> None:
    one = build(tmp_path / "one", "sklearn.ensemble.RandomForestRegressor", "regression")
    two = build(tmp_path / "two", "sklearn.ensemble.RandomForestRegressor", "regression")
    assert one.artifacts["card"].read_bytes() == two.artifacts["card"].read_bytes()
    assert one.artifacts["wheel"].read_bytes() == two.artifacts["wheel"].read_bytes()


# -- a real browser ----------------------------------------------------------------------------
def chromium(*args: str, profile: Path) -> subprocess.CompletedProcess[str]:
    # Flags from the machine notes: no background networking; any address the page asked for would
    # fail to resolve (the page must not need one).
    flags = [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--host-resolver-rules=MAP * ~NOTFOUND",
        f"--user-data-dir={profile}",
    ]
    assert CHROMIUM is not None
    return subprocess.run([CHROMIUM, *flags, *args], capture_output=True, text=True, timeout=120, check=False)


@pytest.mark.skipif(
    CHROMIUM is None and not os.environ.get("MLPACK_REQUIRE_BROWSER"),
    reason="no chromium (apt-get install chromium); .ci/run installs it and sets MLPACK_REQUIRE_BROWSER",
)
def test_the_card_renders_in_headless_chromium(classifier: BuildResult, tmp_path: Path) -> None:
    from PIL import Image

    assert CHROMIUM is not None, "MLPACK_REQUIRE_BROWSER is set but chromium is not installed"
    page = classifier.artifacts["card"].resolve().as_uri()
    dom = chromium("--dump-dom", page, profile=tmp_path / "profile-dom")
    assert dom.returncode == 0, dom.stderr[-2000:]
    assert dom.stdout.count("<svg") == classifier.artifacts["card"].read_text().count("<svg") >= 10

    shot = tmp_path / "card.png"
    result = chromium(
        "--hide-scrollbars", "--window-size=1280,2000", f"--screenshot={shot}", page, profile=tmp_path / "profile-png"
    )
    assert result.returncode == 0 and shot.is_file(), result.stderr[-2000:]
    image = Image.open(shot).convert("RGB")
    assert image.size == (1280, 2000)
    colours = image.getcolors(maxcolors=1 << 20) or []
    # The bars and curves are drawn: the palette's blue and orange cover real areas of the screenshot.
    blue = sum(n for n, rgb in colours if rgb == (0x1F, 0x77, 0xB4))
    orange = sum(n for n, rgb in colours if rgb == (0xFF, 0x7F, 0x0E))
    assert blue > 5_000 and orange > 1_000, (blue, orange)
    # Copied next to the build for a human to look at (the issue asks us to; see the notes).
    if os.environ.get("MLPACK_KEEP_SCREENSHOT"):
        shutil.copyfile(shot, os.environ["MLPACK_KEEP_SCREENSHOT"])


def test_search_and_card_with_derived_features_dates_and_text(shop: Any, run) -> None:  # noqa: F811
    """Issue #9's feature kinds go through the search's folds and the card like plain columns do."""
    import json

    shop.edit('class = "sklearn.linear_model.LinearRegression"', 'class = "sklearn.linear_model.Ridge"')
    shop.config.write_text(
        shop.config.read_text() + "\n[search]\nparams = { alpha = [0.0001, 30.0] }\ncv = 3\n", encoding="utf-8"
    )
    result = run("build", shop.path, "--json")
    assert result.code == 0, result.err
    report = json.loads(result.out)
    assert report["search"]["best_params"] == {"alpha": 0.0001} and report["metrics"]["r2"] >= 0.999
    html = (shop.path / "dist" / "shop-model-1.0.0.html").read_text(encoding="utf-8")
    assert_self_contained(html)
    assert {"Predicted vs actual", "Residuals", "Permutation importance", "contract"} <= set(svg_titles(html))
    for feature in ("signup", "subject", "contract"):
        assert f"<title>{feature}: " in html  # each input has its importance bar


def test_large_test_splits_are_thinned_for_the_picture_not_for_the_numbers() -> None:
    from mlpack import card

    config = config_for("sklearn.linear_model.LogisticRegression", "classification", evaluation={"test_size": 0.3})
    exported = export(config, subscribers(20000, missing_every=0))
    assert exported.rows is not None and len(exported.trained.test_target) == 6000
    data = card.card_data(exported.trained, exported.rows, exported.metadata)
    assert len(data.roc[0].xs) <= card.MAX_CURVE_POINTS and len(data.pr[0].xs) <= card.MAX_CURVE_POINTS
    assert data.roc[0].area == pytest.approx(exported.metadata["metrics"]["roc_auc"], abs=1e-6)  # the full curve's
    assert data.roc[0].xs[0] == 0.0 and data.roc[0].xs[-1] == 1.0  # the ends are kept
    assert sum(map(sum, data.confusion)) == 6000

    config = config_for(
        "sklearn.linear_model.Ridge", "regression", evaluation={"test_size": 0.3}, export={"parity_tolerance": 1e-3}
    )
    exported = export(config, subscribers(8000, missing_every=0))
    assert exported.rows is not None
    data = card.card_data(exported.trained, exported.rows, exported.metadata)
    assert len(data.actual) == card.MAX_POINTS == len(data.predicted)
    html = card.render_html(data, exported.metadata)
    assert html.count("<circle") == 2 * card.MAX_POINTS  # predicted-vs-actual and residuals
