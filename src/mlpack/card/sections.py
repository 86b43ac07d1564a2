"""The card's HTML for what explains a model: each class's precision and recall, the calibration
curve, the decision threshold's effect, a linear model's coefficients, and every feature's picture."""

from __future__ import annotations

from collections.abc import Sequence
from html import escape

from mlpack.card import charts
from mlpack.card.classes import ThresholdPoint
from mlpack.card.data import CardData
from mlpack.card.features import Distribution


def html_table(header: Sequence[str], rows: Sequence[Sequence[str]], *, numeric_from: int = 1) -> str:
    head = "".join(f"<th>{escape(h)}</th>" for h in header)
    body = []
    for row in rows:
        cells = "".join(
            f'<td class="n">{escape(c)}</td>' if i >= numeric_from else f"<td>{escape(c)}</td>"
            for i, c in enumerate(row)
        )
        body.append(f"<tr>{cells}</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def figure(svg: str, caption: str) -> str:
    return f"<figure>{svg}<figcaption>{escape(caption)}</figcaption></figure>"


def per_class_html(data: CardData, weighted: str) -> list[str]:
    if not data.per_class:
        return []
    support = "weight" if weighted else "documents"
    rows = [(c.label, f"{c.precision:.4f}", f"{c.recall:.4f}", f"{c.f1:.4f}", f"{c.support:g}") for c in data.per_class]
    return ["<p>Per class, on the test split:</p>", html_table(("class", "precision", "recall", "F1", support), rows)]


def threshold_rows(points: Sequence[tuple[str, ThresholdPoint]]) -> list[tuple[str, ...]]:
    return [
        (
            name,
            f"{p.threshold:.4g}",
            f"{p.precision:.4f}",
            f"{p.recall:.4f}",
            f"{p.f1:.4f}",
            f"{p.accuracy:.4f}",
            f"{p.positives:.2%}",
        )
        for name, p in points
    ]


THRESHOLD_HEADER = ("threshold", "value", "precision", "recall", "F1", "accuracy", "predicted positive")


def threshold_html(data: CardData) -> list[str]:
    view = data.threshold
    if view is None or view.at_default is None or view.at_chosen is None:
        return []
    points = [("default", view.at_default)]
    if view.chosen != 0.5:
        points.append(("the model's", view.at_chosen))
    return [
        f"<p>Decision threshold: the model predicts <code>{escape(view.positive)}</code> when its probability is at "
        f"least {view.chosen:.4g}. Its effect on the test split:</p>",
        html_table(THRESHOLD_HEADER, threshold_rows(points)),
    ]


def explanation_figures(data: CardData) -> list[str]:
    """The calibration curve, the metrics by threshold and the coefficients, as figures."""
    figures = []
    if data.calibration:
        series = [(c.label, c.predicted, c.observed) for c in data.calibration]
        brier = ", ".join(f"{c.label} {c.brier:.4f}" for c in data.calibration)
        figures.append(
            figure(
                charts.lines(
                    "Calibration curve",
                    series,
                    x_label="mean predicted probability",
                    y_label="share of the class",
                    unit_square=True,
                    diagonal=True,
                    points=True,
                ),
                "Test split, 10 bins of the predicted probability; the dashed line is a perfectly calibrated model. "
                f"Brier score: {brier}.",
            )
        )
    view = data.threshold
    if view is not None:
        xs = [p.threshold for p in view.curve]
        figures.append(
            figure(
                charts.lines(
                    f"Threshold: {view.positive}"[:40],
                    [
                        ("precision", xs, [p.precision for p in view.curve]),
                        ("recall", xs, [p.recall for p in view.curve]),
                        ("F1", xs, [p.f1 for p in view.curve]),
                    ],
                    x_label=f"threshold on P({view.positive})"[:48],
                    y_label="test split",
                    unit_square=True,
                    marker=(view.chosen, f"{view.chosen:.3g}"),
                ),
                f"Precision, recall and F1 of {view.positive} on the test split at each threshold; the dotted line is "
                "the model's.",
            )
        )
    coefficients = data.coefficients
    if coefficients is not None and len(coefficients.columns) == 1:
        figures.append(
            figure(
                charts.bars(
                    "Coefficients",
                    [name for name, _ in coefficients.rows],
                    [values[0] for _, values in coefficients.rows],
                    value_label=coefficients.columns[0][:40],
                ),
                f"The linear model's coefficients, {coefficients_caption(data)}.",
            )
        )
    return figures


def coefficients_caption(data: CardData) -> str:
    coefficients = data.coefficients
    assert coefficients is not None
    shown = (
        f"the {len(coefficients.rows)} largest of {coefficients.total}"
        if coefficients.total > len(coefficients.rows)
        else f"all {coefficients.total}"
    )
    scaled = (
        "numbers are standardized, so a coefficient is per standard deviation"
        if coefficients.scaled == "standard"
        else "numbers are scaled by their median and interquartile range"
        if coefficients.scaled == "robust"
        else "numbers are as read (not scaled)"
    )
    return f"{shown}: {scaled}; a category is 0 or 1, a word its TF-IDF weight"


def coefficients_html(data: CardData) -> list[str]:
    coefficients = data.coefficients
    if coefficients is None:
        return []
    rows = [(name, *(f"{v:+.4f}" for v in values)) for name, values in coefficients.rows]
    if coefficients.intercept:
        rows.append(("(intercept)", *(f"{v:+.4f}" for v in coefficients.intercept)))
    return [
        f"<p>The linear model's coefficients, {escape(coefficients_caption(data))}:</p>",
        html_table(("feature", *coefficients.columns), rows),
    ]


def distribution_figures(data: CardData) -> list[str]:
    return [figure for d in data.distributions for figure in _distribution(d)]


def _distribution(d: Distribution) -> list[str]:
    missing = f"{d.missing} of {d.rows} missing" if d.missing else f"{d.rows} documents, none missing"
    if d.kind in ("numeric", "derived") and d.counts:
        caption = f"Training split; {missing}."
        if d.kind == "derived":
            caption = f"Derived: {d.feature} = {d.expression}. {caption}"
        return [figure(charts.histogram(d.feature, d.edges, d.counts, x_label=d.feature), caption)]
    if d.kind == "datetime" and d.counts:
        svg = charts.histogram(d.feature, d.edges, d.counts, x_label=f"{d.feature} (UTC)", dates=True)
        return [figure(svg, f"Training split; {missing}.")]
    if d.kind == "text":
        out = []
        if d.counts:
            svg = charts.histogram(f"{d.feature}: length", d.edges, d.counts, x_label="characters")
            out.append(figure(svg, f"Training split, length of each text; {missing} (empty)."))
        if d.terms:
            svg = charts.bars(
                f"{d.feature}: top terms", [t for t, _ in d.terms], [n for _, n in d.terms], value_label="documents"
            )
            out.append(figure(svg, f"The vocabulary's {len(d.terms)} terms held by the most training documents."))
        return out
    if d.categories:
        svg = charts.bars(
            d.feature, [c for c, _ in d.categories], [n for _, n in d.categories], value_label="documents"
        )
        return [figure(svg, f"Training split, most frequent {len(d.categories)}; {missing}.")]
    return []


def derived_html(data: CardData) -> list[str]:
    derived = [d for d in data.distributions if d.kind == "derived"]
    if not derived:
        return []
    rows = [(d.feature, d.expression, f"{d.stats.get('median', float('nan')):.4g}", str(d.missing)) for d in derived]
    return [
        "<p>Derived features, computed in the graph:</p>",
        html_table(("feature", "expression", "median", "missing"), rows, numeric_from=2),
    ]
