"""The card as Markdown, for the model wheel's README."""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from mlpack.artifacts import markdown
from mlpack.card.data import IMPORTANCE_REPEATS, CardData, champion_rows
from mlpack.card.sections import THRESHOLD_HEADER, coefficients_caption, threshold_rows
from mlpack.runtime import Metadata
from mlpack.training.champion import compared_rows


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


def _classes_markdown(data: CardData) -> list[str]:
    """Per class precision and recall, calibration (Brier score) and the decision threshold's effect."""
    parts = []
    if data.per_class:
        rows = [
            (markdown.text(c.label), f"{c.precision:.4f}", f"{c.recall:.4f}", f"{c.f1:.4f}", f"{c.support:g}")
            for c in data.per_class
        ]
        parts.append("### Per class (test split)\n\n" + _table(("class", "precision", "recall", "F1", "support"), rows))
    if data.calibration:
        bins = [
            (
                markdown.text(c.label),
                f"{c.brier:.4f}",
                ", ".join(f"{p:.2f}→{o:.2f}" for p, o in zip(c.predicted, c.observed)),
            )
            for c in data.calibration
        ]
        parts.append(
            "### Calibration (test split)\n\n"
            "Per bin of the predicted probability: its mean → the share of the class.\n\n"
            + _table(("class", "Brier score", "bins"), bins)
        )
    view = data.threshold
    if view is not None and view.at_default is not None and view.at_chosen is not None:
        points = [("default", view.at_default)] + ([("the model's", view.at_chosen)] if view.chosen != 0.5 else [])
        parts.append(
            f"### Decision threshold (test split)\n\nThe model predicts {markdown.code(view.positive)} when its "
            f"probability is at least {view.chosen:.4g}.\n\n" + _table(THRESHOLD_HEADER, threshold_rows(points))
        )
    return parts


def _coefficients_markdown(data: CardData) -> list[str]:
    coefficients = data.coefficients
    if coefficients is None:
        return []
    rows = [(markdown.code(name), *(f"{v:+.4f}" for v in values)) for name, values in coefficients.rows]
    if coefficients.intercept:
        rows.append(("(intercept)", *(f"{v:+.4f}" for v in coefficients.intercept)))
    header = ("feature", *map(markdown.text, coefficients.columns))
    return [
        f"### Coefficients\n\nThe linear model's coefficients, {coefficients_caption(data)}.\n\n" + _table(header, rows)
    ]


def _other_features_markdown(data: CardData) -> list[str]:
    """Dates (first, median, last), text (length, top terms) and the derived features' expressions."""
    parts = []
    dates = [
        (markdown.code(d.feature), *(_date(d.stats[k]) for k in ("min", "median", "max")), str(d.missing))
        for d in data.distributions
        if d.kind == "datetime" and d.stats
    ]
    if dates:
        parts.append(
            "### Date features (training split, UTC)\n\n"
            + _table(("feature", "first", "median", "last", "missing"), dates)
        )
    texts = [
        (
            markdown.code(d.feature),
            f"{d.stats.get('median', math.nan):.4g}",
            ", ".join(f"{markdown.text(t)} ({n})" for t, n in d.terms[:8]),
            str(d.missing),
        )
        for d in data.distributions
        if d.kind == "text"
    ]
    if texts:
        parts.append(
            "### Text features (training split)\n\n"
            + _table(("feature", "median length", "top terms (documents)", "missing"), texts)
        )
    derived = [
        (markdown.code(d.feature), markdown.code(d.expression)) for d in data.distributions if d.kind == "derived"
    ]
    if derived:
        parts.append("### Derived features (computed in the graph)\n\n" + _table(("feature", "expression"), derived))
    return parts


def _date(ms: float) -> str:
    return f"{datetime(1970, 1, 1, tzinfo=UTC) + timedelta(milliseconds=ms):%Y-%m-%d %H:%M}"


def render_markdown(data: CardData, metadata: Metadata) -> str:
    """The card's numbers as Markdown tables, for the wheel's README."""
    parts = []
    weight = metadata.get("evaluation", {}).get("weighted_by")
    if weight:
        parts.append(f"Every metric below is weighted by each document's {markdown.code(weight)} ([features].weight).")
    search = _search_markdown(metadata)
    if search:
        parts.append(search)
    compared = champion_rows(data, metadata.get("metrics", {}))
    if compared and data.champion is not None:
        them = markdown.text(f"{data.champion['alias']} ({data.champion['version']})")
        parts.append(
            f"### Against the champion, {them} (same {markdown.text(compared_rows(data.champion))})\n\n"
            + _table(("metric", "this model", them, "difference"), compared)
        )
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
        parts += _classes_markdown(data)
        balance = [
            (markdown.text(c), str(data.balance["train"][c]), str(data.balance["test"][c])) for c in data.classes
        ]
        parts.append("### Class balance\n\n" + _table(("class", "train", "test"), balance))
    if data.residuals:
        rows = [(name, f"{value:.4g}") for name, value in data.residuals.items()]
        parts.append("### Residuals (test split, actual − predicted)\n\n" + _table(("statistic", "value"), rows))
    parts += _coefficients_markdown(data)
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
        if d.kind in ("numeric", "derived")
    ]
    if numeric:
        parts.append(
            "### Numeric features (training split)\n\n"
            + _table(("feature", "min", "median", "mean", "max", "missing"), numeric)
        )
    parts += _other_features_markdown(data)
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
