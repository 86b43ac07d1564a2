"""The card as a self-contained HTML page with its SVG plots."""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from html import escape

from mlpack import charts
from mlpack.card.data import IMPORTANCE_REPEATS, CardData, champion_rows
from mlpack.card.readme import _params_text
from mlpack.runtime import Metadata

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


def _champion_html(data: CardData, metadata: Metadata) -> list[str]:
    rows = champion_rows(data, metadata["metrics"])
    if not rows or data.champion is None:
        return []
    them = f"{data.champion['alias']} ({data.champion['version']})"
    return [
        f"<p>Against the champion, {escape(them)}, on the same test split:</p>",
        _html_table(("metric", "this model", them, "difference"), rows),
    ]


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
        *_champion_html(data, metadata),
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
