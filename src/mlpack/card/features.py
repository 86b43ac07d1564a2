"""The card's picture of each feature on the training split: numbers and derived features as
histograms, dates on a calendar axis, text as the length of its values and the vocabulary's most
frequent terms, categories as bars of the categories the model tells apart.

What reaches the card is what the model itself holds: bins and counts, the categories it keeps and
the vocabulary in its graph. No single value of a rarer category, and no text, is ever shown.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from sklearn.compose import ColumnTransformer

from mlpack.runtime import MISSING_CATEGORY, MISSING_DATE, Metadata
from mlpack.training.train import TrainedModel

TOP_CATEGORIES = 12
TOP_TERMS = 12
BINS = 20


@dataclass
class Distribution:
    feature: str
    kind: str  # "numeric" | "categorical" | "datetime" | "text" | "derived"
    missing: int
    rows: int
    edges: list[float] = field(default_factory=list)  # histogram (dates: ms since 1970; text: characters)
    counts: list[int] = field(default_factory=list)
    stats: dict[str, float] = field(default_factory=dict)  # min, median, mean, max (text: of the lengths)
    categories: list[tuple[str, int]] = field(default_factory=list)  # categorical: most frequent first
    terms: list[tuple[str, int]] = field(default_factory=list)  # text: vocabulary terms by documents holding them
    expression: str = ""  # derived: the expression it is computed by


def distributions(trained: TrainedModel, metadata: Metadata) -> list[Distribution]:
    """One entry per listed feature, then one per derived feature, in the order of the metadata."""
    columns = trained.train_columns
    out = []
    for feature in metadata["features"]:
        values = columns.get(feature["name"])
        if values is None:
            continue
        kind = feature["kind"]
        if kind == "numeric":
            out.append(_histogram(feature["name"], "numeric", np.asarray(values, dtype=np.float64)))
        elif kind == "datetime":
            dates = np.asarray(values, dtype=np.int64)
            present = dates != MISSING_DATE
            numbers = np.where(present, dates.astype(np.float64), np.nan)
            out.append(_histogram(feature["name"], "datetime", numbers))
        elif kind == "text":
            out.append(_text(feature["name"], values, _vectorizer(trained, feature["input"])))
        elif kind == "categorical":
            # Only the categories the model tells apart (the metadata's list): no rarer value of the
            # training data (an id, a name) reaches the card.
            counted = Counter(str(v) for v in values)
            missing = counted.pop(MISSING_CATEGORY, 0)
            known = feature.get("categories", {})
            top = sorted(((k, n) for k, n in counted.items() if k in known), key=lambda item: (-item[1], item[0]))
            out.append(
                Distribution(feature["name"], "categorical", missing, len(values), categories=top[:TOP_CATEGORIES])
            )
    out += _derived(trained, metadata)
    return out


def _histogram(name: str, kind: str, numbers: np.ndarray) -> Distribution:
    present = numbers[~np.isnan(numbers)]
    entry = Distribution(name, kind, int(len(numbers) - len(present)), len(numbers))
    if len(present):
        low, high = float(present.min()), float(present.max())
        if np.all(present == np.round(present)) and high - low < BINS:  # whole numbers: one bar per value
            counts, edges = np.histogram(present, bins=np.arange(low - 0.5, high + 1.0))
        else:
            counts, edges = np.histogram(present, bins=BINS)
        entry.counts, entry.edges = counts.tolist(), [round(float(e), 6) for e in edges]
        entry.stats = {
            "min": round(float(present.min()), 6),
            "median": round(float(np.median(present)), 6),
            "mean": round(float(present.mean()), 6),
            "max": round(float(present.max()), 6),
        }
    return entry


def _text(name: str, values: Any, vectorizer: Any) -> Distribution:
    """Lengths in characters of the texts present (an empty text is missing, as the graph reads it),
    and the vocabulary's terms by how many training documents hold them."""
    texts = [v if isinstance(v, str) else "" for v in np.asarray(values, dtype=object).tolist()]
    lengths = np.array([len(t) if t else np.nan for t in texts], dtype=np.float64)
    entry = _histogram(name, "text", lengths)
    if vectorizer is not None:
        present = [t for t in texts if t]
        if present:
            held = np.asarray((vectorizer.transform(present) > 0).sum(axis=0)).ravel()
            terms = vectorizer.get_feature_names_out()
            ranked = sorted(
                ((str(term), int(n)) for term, n in zip(terms, held.tolist()) if n),
                key=lambda item: (-item[1], item[0]),
            )
            entry.terms = ranked[:TOP_TERMS]
    return entry


def _vectorizer(trained: TrainedModel, input_name: str) -> Any:
    """The fitted TF-IDF vectorizer of one text input, inside the graph's preprocessing."""
    transformer = _column_transformer(trained)
    if transformer is None:
        return None
    for name, fitted, _ in transformer.transformers_:
        if name == f"text_{input_name}":
            return getattr(fitted, "vectorizer_", None)
    return None


def _column_transformer(trained: TrainedModel) -> ColumnTransformer | None:
    preprocessing = getattr(trained.pipeline.named_steps.get("features"), "preprocessing_", None)
    if preprocessing is None:
        return None
    step = preprocessing.steps[-1][1]
    return step if isinstance(step, ColumnTransformer) else None


def _derived(trained: TrainedModel, metadata: Metadata) -> list[Distribution]:
    """Each derived feature's training values, computed by the fitted expressions (as the graph does)."""
    entries = metadata.get("derived") or []
    preprocessing = getattr(trained.pipeline.named_steps.get("features"), "preprocessing_", None)
    if not entries or preprocessing is None or "derive" not in preprocessing.named_steps:
        return []
    derive = preprocessing.named_steps["derive"]
    values = derive.transform(trained.train_frame)
    out = []
    for entry in entries:
        column = derive.outputs_.get(entry["name"], entry["name"])
        if column not in values:
            continue
        distribution = _histogram(entry["name"], "derived", np.asarray(values[column], dtype=np.float64))
        distribution.expression = entry["expression"]
        out.append(distribution)
    return out
