"""The model card: the numbers a reviewer asks for, as a self-contained HTML page with
inline SVG plots (`NAME-VERSION.html`) and as Markdown tables in the model wheel's README.

Numbers come from the test split (confusion matrix, ROC/PR, residuals, permutation importance) and
the training split (class balance, per-feature distributions). Everything is seeded and formatted
at fixed precision, so the page is byte-identical across rebuilds under SOURCE_DATE_EPOCH. It needs
no network to view: no scripts, no fonts, no links to fetch.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from html import escape
from typing import Any

import numpy as np
from sklearn import metrics as skm
from sklearn.inspection import permutation_importance

from mlpack import charts, markdown
from mlpack.estimators import has_probabilities
from mlpack.runtime import Metadata
from mlpack.train import METRICS, Split, TrainedModel

IMPORTANCE_REPEATS = 5
MAX_POINTS = 2000  # scatter plots of larger test splits show an even sample of this many points
MAX_CURVE_POINTS = 500  # ROC/PR curves of large test splits keep an even sample of their vertices
MAX_IMPORTANCE_ROWS = 5000  # permutation importance on an even sample of larger test splits (time)
TOP_CATEGORIES = 12
BINS = 20


@dataclass
class Importance:
    feature: str
    mean: float  # the drop of the score when the feature's column is shuffled (higher = more important)
    std: float


@dataclass
class Distribution:
    feature: str
    kind: str  # "numeric" | "categorical"
    missing: int
    rows: int
    edges: list[float] = field(default_factory=list)  # numeric: histogram
    counts: list[int] = field(default_factory=list)
    stats: dict[str, float] = field(default_factory=dict)  # numeric: min, median, mean, max
    categories: list[tuple[str, int]] = field(default_factory=list)  # categorical: most frequent first


@dataclass
class Curve:
    label: str
    xs: list[float]
    ys: list[float]
    area: float


@dataclass
class CardData:
    task: str
    scoring: str  # the metric permutation importance is measured with
    importances: list[Importance]
    distributions: list[Distribution]
    classes: list[str] = field(default_factory=list)
    confusion: list[list[int]] = field(default_factory=list)
    roc: list[Curve] = field(default_factory=list)
    pr: list[Curve] = field(default_factory=list)
    balance: dict[str, dict[str, int]] = field(default_factory=dict)  # split → class → documents
    actual: list[float] = field(default_factory=list)
    predicted: list[float] = field(default_factory=list)
    residuals: dict[str, float] = field(default_factory=dict)


def card_data(trained: TrainedModel, rows: Split, metadata: Metadata) -> CardData:
    """Everything the card shows, computed once (the HTML and the README render the same numbers)."""
    scoring = next(iter(metadata["metrics"]))
    seed = int(metadata.get("evaluation", {}).get("seed", 0))
    data = CardData(
        task=metadata["task"],
        scoring=scoring,
        importances=_importances(trained, metadata, scoring, seed),
        distributions=_distributions(rows, metadata),
    )
    if trained.classes is not None:
        _classification(data, trained, rows)
    else:
        _regression(data, trained)
    return data


def _importances(trained: TrainedModel, metadata: Metadata, scoring: str, seed: int) -> list[Importance]:
    metric = METRICS[scoring]
    classes = trained.classes or []
    sign = 1.0 if metric.higher_is_better else -1.0  # an error that grows is a score that drops

    def score(estimator: Any, x: Any, y: np.ndarray) -> float:
        proba = estimator.predict_proba(x) if metric.uses_probabilities else None
        value = metric.score(y, estimator.predict(x), proba, classes)
        return sign * value if math.isfinite(value) else 0.0

    keep = _even_sample(len(trained.test_target), MAX_IMPORTANCE_ROWS)
    result = permutation_importance(
        trained.pipeline,
        trained.test_frame.iloc[keep],
        trained.test_target[keep],
        scoring=score,
        n_repeats=IMPORTANCE_REPEATS,
        random_state=seed,
    )
    by_input = {f["input"]: f["name"] for f in metadata["features"]}
    found = [
        Importance(by_input.get(str(column), str(column)), round(float(mean), 6), round(float(std), 6))
        for column, mean, std in zip(trained.test_frame.columns, result.importances_mean, result.importances_std)
    ]
    return sorted(found, key=lambda i: (-i.mean, i.feature))


def _distributions(rows: Split, metadata: Metadata) -> list[Distribution]:
    out = []
    for feature in metadata["features"]:
        values = rows.train_columns.get(feature["name"])
        if values is None:
            continue
        if feature["kind"] == "numeric":
            numbers = np.asarray(values, dtype=np.float64)
            present = numbers[~np.isnan(numbers)]
            entry = Distribution(feature["name"], "numeric", int(len(numbers) - len(present)), len(numbers))
            if len(present):
                counts, edges = np.histogram(present, bins=BINS)
                entry.counts, entry.edges = counts.tolist(), [round(float(e), 6) for e in edges]
                entry.stats = {
                    "min": round(float(present.min()), 6),
                    "median": round(float(np.median(present)), 6),
                    "mean": round(float(present.mean()), 6),
                    "max": round(float(present.max()), 6),
                }
            out.append(entry)
        elif feature["kind"] == "categorical":
            # Only the categories the model tells apart (metadata's list): no rarer value of the training
            # data (an id, a name) reaches the card. Text fields have no values chart, for the same reason.
            from mlpack.runtime import MISSING_CATEGORY

            counted = Counter(str(v) for v in values)
            missing = counted.pop(MISSING_CATEGORY, 0)
            known = feature.get("categories", {})
            top = sorted(((k, n) for k, n in counted.items() if k in known), key=lambda item: (-item[1], item[0]))
            out.append(
                Distribution(feature["name"], "categorical", missing, len(values), categories=top[:TOP_CATEGORIES])
            )
    return out


def _classification(data: CardData, trained: TrainedModel, rows: Split) -> None:
    classes = trained.classes or []
    data.classes = [str(c) for c in classes]
    predicted = trained.pipeline.predict(trained.test_frame)
    data.confusion = skm.confusion_matrix(trained.test_target, predicted, labels=classes).tolist()
    # Binary: the curves of the second class (scikit-learn's positive class); more: one vs rest each.
    # A classifier without probabilities (LinearSVC) has no curves to draw.
    positives = [1] if len(classes) == 2 else list(range(len(classes)))
    if not has_probabilities(trained.pipeline):
        positives = []
    else:
        proba = trained.pipeline.predict_proba(trained.test_frame)
    for index in positives:
        truth = np.asarray(trained.test_target == classes[index])
        if truth.all() or not truth.any():
            continue  # a class absent from the test split has no curve
        fpr, tpr, _ = skm.roc_curve(truth, proba[:, index])
        precision, recall, _ = skm.precision_recall_curve(truth, proba[:, index])
        label = str(classes[index])
        area = round(float(skm.auc(fpr, tpr)), 6)  # from the full curve, before thinning it for the picture
        roc_keep, pr_keep = _even_sample(len(fpr), MAX_CURVE_POINTS), _even_sample(len(recall), MAX_CURVE_POINTS)
        data.roc.append(Curve(label, _rounded(fpr[roc_keep]), _rounded(tpr[roc_keep]), area))
        average = float(skm.average_precision_score(truth, proba[:, index]))
        data.pr.append(Curve(label, _rounded(recall[pr_keep]), _rounded(precision[pr_keep]), round(average, 6)))
    for name, target in (("train", rows.train_target), ("test", rows.test_target)):
        counted = Counter(target.tolist())
        data.balance[name] = {str(c): int(counted.get(c, 0)) for c in classes}


def _regression(data: CardData, trained: TrainedModel) -> None:
    actual = np.asarray(trained.test_target, dtype=np.float64)
    predicted = np.asarray(trained.pipeline.predict(trained.test_frame), dtype=np.float64)
    residuals = actual - predicted
    data.residuals = {
        "mean": round(float(residuals.mean()), 6),
        "std": round(float(residuals.std()), 6),
        "mae": round(float(np.abs(residuals).mean()), 6),
        "max_abs": round(float(np.abs(residuals).max()), 6),
    }
    keep = _even_sample(len(actual))
    data.actual = _rounded(actual[keep])
    data.predicted = _rounded(predicted[keep])


def _even_sample(n: int, most: int = MAX_POINTS) -> np.ndarray:
    """Row indexes: all of them, or `most` spread evenly (first and last included), deterministically."""
    if n <= most:
        return np.arange(n)
    return np.unique(np.linspace(0, n - 1, most).round().astype(int))


def _rounded(values: Any) -> list[float]:
    return [round(float(v), 6) for v in values]


# -- Markdown (the wheel's README) ---------------------------------------------------------------
def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(cell.replace("|", "\\|") for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def _params_text(params: dict[str, Any]) -> str:
    return json.dumps(params, sort_keys=True) if params else "(configured)"


def _search_markdown(metadata: Metadata) -> str:
    search, cv = metadata.get("search"), metadata.get("cv")
    parts = []
    if search:
        parts.append(
            f"### Hyper-parameter search\n\n{search['method'].capitalize()} search over "
            f"`{json.dumps(search['space'], sort_keys=True)}`: {search['trials']} trials "
            f"({search['failed']} failed), {search['folds']}-fold cross-validation on the training split, "
            f"ranked by {search['scoring']}. Best: `{_params_text(search['best_params'])}`, refit on the whole "
            "training split.\n"
        )
        rows = [
            (
                str(r["trial"]),
                _params_text(r["params"]),
                r["status"],
                "-" if r["mean"] is None else f"{r['mean']:.4f}",
                "-" if r["std"] is None else f"{r['std']:.4f}",
            )
            for r in search["results"]
        ]
        parts.append(_table(("trial", "params", "status", f"{search['scoring']} mean", "std"), rows))
    if cv:
        cv_rows = [(name, f"{s['mean']:.4f}", f"{s['std']:.4f}") for name, s in cv["scores"].items()]
        title = "Cross-validation of the best parameters" if search else "Cross-validation"
        parts.append(f"### {title}\n\n{cv['folds']} folds on the training split.\n")
        parts.append(_table(("metric", "mean", "std"), cv_rows))
    return "\n\n".join(parts)


def render_markdown(data: CardData, metadata: Metadata) -> str:
    """The card's numbers as Markdown tables, for the wheel's README."""
    parts = []
    search = _search_markdown(metadata)
    if search:
        parts.append(search)
    if data.confusion:
        header = ("actual \\ predicted", *map(markdown.text, data.classes))
        rows = [(markdown.text(label), *map(str, row)) for label, row in zip(data.classes, data.confusion)]
        parts.append("### Confusion matrix (test split)\n\n" + _table(header, rows))
        if data.roc:
            curves = [(markdown.text(c.label), f"{c.area:.4f}", f"{p.area:.4f}") for c, p in zip(data.roc, data.pr)]
            parts.append(
                "### ROC and precision-recall (test split)\n\n"
                + _table(("class", "ROC AUC", "average precision"), curves)
            )
        balance = [
            (markdown.text(c), str(data.balance["train"][c]), str(data.balance["test"][c])) for c in data.classes
        ]
        parts.append("### Class balance\n\n" + _table(("class", "train", "test"), balance))
    if data.residuals:
        rows = [(name, f"{value:.4g}") for name, value in data.residuals.items()]
        parts.append("### Residuals (test split, actual − predicted)\n\n" + _table(("statistic", "value"), rows))
    rows = [(markdown.code(i.feature), f"{i.mean:.4f}", f"{i.std:.4f}") for i in data.importances]
    parts.append(
        f"### Permutation importance (test split, {data.scoring}, {IMPORTANCE_REPEATS} repeats)\n\n"
        f"The drop in {data.scoring} when one feature's values are shuffled.\n\n"
        + _table(("feature", "mean drop", "std"), rows)
    )
    numeric = [
        (
            markdown.code(d.feature),
            *(f"{d.stats.get(k, math.nan):.4g}" for k in ("min", "median", "mean", "max")),
            str(d.missing),
        )
        for d in data.distributions
        if d.kind == "numeric"
    ]
    if numeric:
        parts.append(
            "### Numeric features (training split)\n\n"
            + _table(("feature", "min", "median", "mean", "max", "missing"), numeric)
        )
    categorical = [
        (
            markdown.code(d.feature),
            ", ".join(f"{markdown.text(name)} ({n})" for name, n in d.categories[:6]),
            str(d.missing),
        )
        for d in data.distributions
        if d.kind == "categorical"
    ]
    if categorical:
        parts.append(
            "### Categorical features (training split)\n\n"
            + _table(("feature", "most frequent (documents)", "missing"), categorical)
        )
    return "\n\n".join(parts) + "\n"


# -- HTML ----------------------------------------------------------------------------------------
STYLE = """
body { font-family: sans-serif; margin: 2em auto; max-width: 1180px; color: #222; }
h1 { margin-bottom: 0.1em; } h2 { border-bottom: 1px solid #ddd; padding-bottom: 0.2em; margin-top: 1.6em; }
.sub { color: #666; margin-top: 0; }
table { border-collapse: collapse; margin: 0.6em 0; } th, td { border: 1px solid #ddd; padding: 3px 8px; }
th { background: #f4f4f4; text-align: left; } td.n { text-align: right; font-variant-numeric: tabular-nums; }
.plots { display: flex; flex-wrap: wrap; gap: 12px; } figure { margin: 0; border: 1px solid #eee; padding: 4px; }
figcaption { font-size: 12px; color: #555; max-width: 360px; } code { background: #f6f6f6; padding: 0 3px; }
tr.best td { font-weight: bold; }
"""


def _html_table(header: Sequence[str], rows: Sequence[Sequence[str]], *, numeric_from: int = 1) -> str:
    head = "".join(f"<th>{escape(h)}</th>" for h in header)
    body = []
    for row in rows:
        cells = "".join(
            f'<td class="n">{escape(c)}</td>' if i >= numeric_from else f"<td>{escape(c)}</td>"
            for i, c in enumerate(row)
        )
        body.append(f"<tr>{cells}</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def _figure(svg: str, caption: str) -> str:
    return f"<figure>{svg}<figcaption>{escape(caption)}</figcaption></figure>"


def _plots(data: CardData) -> list[str]:
    figures = []
    if data.confusion:
        figures.append(
            _figure(
                charts.heatmap("Confusion matrix", data.confusion, data.classes, x_label="predicted", y_label="actual"),
                "Test split: rows are the true classes, columns the predicted ones.",
            )
        )
        if data.roc:
            figures.append(
                _figure(
                    charts.lines(
                        "ROC curve",
                        [(f"{c.label} (AUC {c.area:.3f})", c.xs, c.ys) for c in data.roc],
                        x_label="false positive rate",
                        y_label="true positive rate",
                        unit_square=True,
                        diagonal=True,
                    ),
                    "Test split; the dashed line is a random guess.",
                )
            )
            figures.append(
                _figure(
                    charts.lines(
                        "Precision-recall curve",
                        [(f"{c.label} (AP {c.area:.3f})", c.xs, c.ys) for c in data.pr],
                        x_label="recall",
                        y_label="precision",
                        unit_square=True,
                    ),
                    "Test split.",
                )
            )
        figures.append(
            _figure(
                charts.bars(
                    "Class balance",
                    data.classes,
                    [],
                    groups=[(name, [data.balance[name][c] for c in data.classes]) for name in ("train", "test")],
                    value_label="documents",
                ),
                "Documents per class in the training and test splits.",
            )
        )
    if data.actual:
        figures.append(
            _figure(
                charts.scatter(
                    "Predicted vs actual",
                    data.actual,
                    data.predicted,
                    x_label="actual",
                    y_label="predicted",
                    reference="identity",
                ),
                "Test split; the dashed line is a perfect prediction.",
            )
        )
        residuals = [a - p for a, p in zip(data.actual, data.predicted)]
        figures.append(
            _figure(
                charts.scatter(
                    "Residuals",
                    data.predicted,
                    residuals,
                    x_label="predicted",
                    y_label="actual − predicted",
                    reference="zero",
                ),
                "Test split; a pattern here is something the model missed.",
            )
        )
    figures.append(
        _figure(
            charts.bars(
                "Permutation importance",
                [i.feature for i in data.importances],
                [i.mean for i in data.importances],
                errors=[i.std for i in data.importances],
                value_label=f"drop in {data.scoring}",
            ),
            f"Test split, {IMPORTANCE_REPEATS} shuffles per feature (bar: mean, line: ± std).",
        )
    )
    return figures


def _distribution_plots(data: CardData) -> list[str]:
    figures = []
    for d in data.distributions:
        missing = f"{d.missing} of {d.rows} missing" if d.missing else f"{d.rows} documents, none missing"
        if d.kind == "numeric" and d.counts:
            svg = charts.histogram(d.feature, d.edges, d.counts, x_label=d.feature)
            figures.append(_figure(svg, f"Training split; {missing}."))
        elif d.categories:
            svg = charts.bars(
                d.feature, [c for c, _ in d.categories], [n for _, n in d.categories], value_label="documents"
            )
            figures.append(_figure(svg, f"Training split, most frequent {len(d.categories)}; {missing}."))
    return figures


def _search_html(metadata: Metadata) -> str:
    search, cv = metadata.get("search"), metadata.get("cv")
    parts = []
    if search:
        parts.append(
            f"<p>{escape(search['method'].capitalize())} search over <code>"
            f"{escape(json.dumps(search['space'], sort_keys=True))}</code>: {search['trials']} trials "
            f"({search['failed']} failed), {search['folds']}-fold cross-validation on the training split, ranked by "
            f"{escape(search['scoring'])}. Best parameters <code>{escape(_params_text(search['best_params']))}</code>"
            ", refit on the whole training split.</p>"
        )
        rows = []
        for r in search["results"]:
            mean = "-" if r["mean"] is None else f"{r['mean']:.4f}"
            std = "-" if r["std"] is None else f"{r['std']:.4f}"
            rows.append((str(r["trial"]), _params_text(r["params"]), r["status"], mean, std))
        table = _html_table(("trial", "params", "status", f"{search['scoring']} mean", "std"), rows, numeric_from=3)
        parts.append(table.replace("<tbody><tr>", '<tbody><tr class="best">', 1))
    if cv:
        cv_rows = [(name, f"{s['mean']:.4f}", f"{s['std']:.4f}") for name, s in cv["scores"].items()]
        parts.append(
            f"<p>{cv['folds']}-fold cross-validation on the training split"
            + (" (best parameters)" if search else "")
            + ":</p>"
        )
        parts.append(_html_table(("metric", "mean", "std"), cv_rows))
    return "\n".join(parts)


def render_html(data: CardData, metadata: Metadata) -> str:
    name, version = metadata["name"], metadata["version"]
    parity = metadata.get("parity", {})
    source = metadata["data"]
    metrics = [(k, f"{v:.4f}") for k, v in metadata["metrics"].items()]
    estimator = metadata["estimator"]
    search = _search_html(metadata)
    sections = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{escape(name)} {escape(version)} — model card</title>",
        f"<style>{STYLE}</style></head><body>",
        f"<h1>{escape(name)} {escape(version)}</h1>",
        f'<p class="sub">{escape(metadata.get("description") or "")} — a {escape(metadata["task"])} model built '
        f"{escape(metadata['created'])} by mlpack {escape(str(metadata['versions']['mlpack']))}</p>",
        "<h2>Evaluation</h2>",
        f"<p>Held-out test split ({parity.get('test_rows', parity.get('rows', '?'))} documents):</p>",
        _html_table(("metric", "value"), metrics),
        f"<p>ONNX vs scikit-learn on every document, {parity.get('train_rows', '?')} of training and "
        f"{parity.get('test_rows', '?')} of test: max difference {parity.get('max_abs_diff', math.nan):.3g}, "
        f"label agreement {parity.get('label_agreement', math.nan):.2%}.</p>",
        '<div class="plots">',
        *_plots(data),
        "</div>",
    ]
    if search:
        sections += ["<h2>Cross-validation and search</h2>", search]
    sections += [
        "<h2>Features</h2>",
        '<div class="plots">',
        *_distribution_plots(data),
        "</div>",
        "<h2>Training data and estimator</h2>",
        f"<p>MongoDB <code>{escape(source['database'])}.{escape(source['collection'])}</code>, filter "
        f"<code>{escape(json.dumps(source['filter'], sort_keys=True))}</code>, {source['rows']} documents, "
        f"sha256 <code>{escape(source['sha256'])}</code>.</p>",
        f"<p><code>{escape(estimator['class'])}</code> with <code>"
        f"{escape(json.dumps(estimator['params'], sort_keys=True))}</code>.</p>",
        "<p>Versions: " + escape(", ".join(f"{k} {v}" for k, v in metadata["versions"].items())) + ".</p>",
        "</body></html>",
    ]
    return "\n".join(sections) + "\n"


__all__ = ["CardData", "card_data", "render_html", "render_markdown"]
