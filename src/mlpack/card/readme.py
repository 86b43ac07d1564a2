"""The card as Markdown, for the model wheel's README."""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from typing import Any

from mlpack import markdown
from mlpack.card.data import IMPORTANCE_REPEATS, CardData, champion_rows
from mlpack.runtime import Metadata


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
    compared = champion_rows(data, metadata.get("metrics", {}))
    if compared and data.champion is not None:
        them = markdown.text(f"{data.champion['alias']} ({data.champion['version']})")
        parts.append(
            f"### Against the champion, {them} (same test split)\n\n"
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
