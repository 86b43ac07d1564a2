"""The model card: the numbers a reviewer asks for, as a self-contained HTML page with
inline SVG plots (`NAME-VERSION.html`) and as Markdown tables in the model wheel's README.

Numbers come from the test split (confusion matrix, ROC/PR, residuals, permutation importance) and
the training split (class balance, per-feature distributions). Everything is seeded and formatted
at fixed precision, so the page is byte-identical across rebuilds under SOURCE_DATE_EPOCH. It needs
no network to view: no scripts, no fonts, no links to fetch.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mlpack.card.data import IMPORTANCE_REPEATS, MAX_CURVE_POINTS, MAX_POINTS, CardData, card_data
from mlpack.card.html import render_html
from mlpack.card.predictions import write_predictions
from mlpack.card.readme import render_markdown
from mlpack.runtime import Metadata, Model
from mlpack.training.train import Split, TrainedModel


def write_card(
    folder: Path,
    stem: str,
    trained: TrainedModel,
    rows: Split | None,
    metadata: Metadata,
    onnx_bytes: bytes,
    champion: dict[str, Any] | None = None,
) -> tuple[dict[str, Path], str]:
    """`STEM.html` (the card) and `STEM.predictions.jsonl` (the test split's predictions by the ONNX model)
    in `folder`, by artifact kind, and the card's numbers as Markdown tables for the wheel's README."""
    if rows is None:
        return {}, ""
    data = card_data(trained, rows, metadata)
    data.champion = champion
    page = folder / f"{stem}.html"
    page.write_text(render_html(data, metadata), encoding="utf-8")
    predictions = write_predictions(folder / f"{stem}.predictions.jsonl", Model(onnx_bytes, metadata), rows, metadata)
    return {"card": page, "predictions": predictions}, render_markdown(data, metadata)


__all__ = [
    "IMPORTANCE_REPEATS",
    "MAX_CURVE_POINTS",
    "MAX_POINTS",
    "CardData",
    "card_data",
    "render_html",
    "render_markdown",
    "write_card",
]
