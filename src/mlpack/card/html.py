"""The card as a self-contained HTML page with its SVG plots."""

from __future__ import annotations

import json
import math
from html import escape
from typing import Any

from mlpack.card import charts
from mlpack.card.data import IMPORTANCE_REPEATS, CardData, champion_rows
from mlpack.card.readme import _params_text
from mlpack.card.sections import (
    coefficients_html,
    derived_html,
    distribution_figures,
    explanation_figures,
    figure,
    html_table,
    per_class_html,
    threshold_html,
)
from mlpack.runtime import Metadata
from mlpack.training.champion import compared_rows

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


_html_table = html_table
_figure = figure


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
    figures += explanation_figures(data)
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


def _champion_html(data: CardData, metadata: Metadata) -> list[str]:
    rows = champion_rows(data, metadata["metrics"])
    if not rows or data.champion is None:
        return []
    them = f"{data.champion['alias']} ({data.champion['version']})"
    return [
        f"<p>Against the champion, {escape(them)}, on the same {escape(compared_rows(data.champion))}:</p>",
        _html_table(("metric", "this model", them, "difference"), rows),
    ]


def _subtitle(metadata: Metadata) -> str:
    """The subtitle: "DESCRIPTION — a TASK model built ... by mlpack ...", with no dash when there is no description."""
    built = f"a {metadata['task']} model built {metadata['created']} by mlpack {metadata['versions']['mlpack']}"
    description = (metadata.get("description") or "").strip()
    return f"{description} — {built}" if description else built[0].upper() + built[1:]


def _weighted(metadata: Metadata) -> str:
    """', weighted by account_weight' when [features].weight weighs the metrics."""
    weight = metadata.get("evaluation", {}).get("weighted_by", "")
    return f", metrics weighted by {weight}" if weight else ""


def _parity_text(metadata: Metadata) -> str:
    """The parity check in a sentence; label agreement only means something for a classifier."""
    parity = metadata.get("parity", {})
    text = (
        f"ONNX vs scikit-learn on every document, {parity.get('train_rows', '?')} of training and "
        f"{parity.get('test_rows', '?')} of test: max difference {parity.get('max_abs_diff', math.nan):.3g}"
    )
    if metadata["task"] == "classification":
        text += f", label agreement {parity.get('label_agreement', math.nan):.2%}"
    return text + "."


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
        f'<p class="sub">{escape(_subtitle(metadata))}</p>',
        "<h2>Evaluation</h2>",
        f"<p>Held-out test split ({parity.get('test_rows', parity.get('rows', '?'))} documents"
        f"{escape(_weighted(metadata))}):</p>",
        _html_table(("metric", "value"), metrics),
        *per_class_html(data, _weighted(metadata)),
        *threshold_html(data),
        *_champion_html(data, metadata),
        f"<p>{escape(_parity_text(metadata))}</p>",
        '<div class="plots">',
        *_plots(data),
        "</div>",
    ]
    if search:
        sections += ["<h2>Cross-validation and search</h2>", search]
    sections += [
        "<h2>Features</h2>",
        *derived_html(data),
        '<div class="plots">',
        *distribution_figures(data),
        "</div>",
        *coefficients_html(data),
        "<h2>Training data and estimator</h2>",
        f"<p>MongoDB <code>{escape(source['database'])}.{escape(source['collection'])}</code>, filter "
        f"<code>{escape(json.dumps(source['filter'], sort_keys=True))}</code>, {source['rows']} documents, "
        f"sha256 <code>{escape(source['sha256'])}</code>.</p>",
        *_feedback_html(source.get("feedback")),
        f"<p><code>{escape(estimator['class'])}</code> with <code>"
        f"{escape(json.dumps(estimator['params'], sort_keys=True))}</code>.</p>",
        "<p>Versions: " + escape(", ".join(f"{k} {v}" for k, v in metadata["versions"].items())) + ".</p>",
        "</body></html>",
    ]
    return "\n".join(sections) + "\n"


def _feedback_html(fed: Any) -> list[str]:
    """[source.feedback]: how many of the documents are served records a client told the outcome of."""
    if not fed:
        return []
    where = escape(f"{fed['database']}.{fed['collection']}")
    window = escape(f"{fed['since'] or 'the start'} to {fed['until'] or 'the build'}")
    return [
        f"<p>Of these, {fed['rows']} are served requests logged in <code>{where}</code> ({window}) whose true "
        f"outcome came back through <code>POST /feedback</code>; their sha256 <code>{escape(fed['sha256'])}</code>.</p>"
    ]
