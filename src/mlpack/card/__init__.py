"""The model card: the numbers a reviewer asks for, as a self-contained HTML page with
inline SVG plots (`NAME-VERSION.html`) and as Markdown tables in the model wheel's README.

Numbers come from the test split (confusion matrix, ROC/PR, residuals, permutation importance) and
the training split (class balance, per-feature distributions). Everything is seeded and formatted
at fixed precision, so the page is byte-identical across rebuilds under SOURCE_DATE_EPOCH. It needs
no network to view: no scripts, no fonts, no links to fetch.
"""

from __future__ import annotations

from mlpack.card.data import IMPORTANCE_REPEATS, MAX_CURVE_POINTS, MAX_POINTS, CardData, card_data
from mlpack.card.html import render_html
from mlpack.card.readme import render_markdown

__all__ = [
    "IMPORTANCE_REPEATS",
    "MAX_CURVE_POINTS",
    "MAX_POINTS",
    "CardData",
    "card_data",
    "render_html",
    "render_markdown",
]
