"""Hand-written SVG charts for the model card: no plotting library, no network, deterministic text.

Every number is formatted with a fixed precision, so the same data gives the same bytes (the card is
an artifact, byte-identical under SOURCE_DATE_EPOCH like the others). Charts are small on purpose:
an axis frame, lines, points, bars and a heat map cover what the card shows. Ticks sit on round
numbers, or on calendar dates for a date axis (ticks.py).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from html import escape

from mlpack.card.ticks import date_ticks, nice_ticks, tick_text

PALETTE = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f")
WIDTH, HEIGHT = 360, 280
MARGIN_LEFT, MARGIN_RIGHT, MARGIN_TOP, MARGIN_BOTTOM = 56, 16, 28, 44


def _n(value: float) -> str:
    """Coordinates: two decimals, no '-0.00'."""
    text = f"{value:.2f}"
    return "0.00" if text == "-0.00" else text


def _ticks(low: float, high: float, *, dates: bool = False) -> list[tuple[float, str]]:
    """(value, label) of each tick between `low` and `high`: round numbers, or calendar dates (ms since 1970)."""
    if dates:
        return date_ticks(low, high)
    values = nice_ticks(low, high)
    step = values[1] - values[0] if len(values) > 1 else abs(values[0]) if values and values[0] else 1.0
    return [(value, tick_text(value, step)) for value in values]


@dataclass(frozen=True)
class Axes:
    """A linear mapping of data ranges onto the plot area of a WIDTH × HEIGHT picture."""

    x_min: float
    x_max: float
    y_min: float
    y_max: float

    @classmethod
    def around(cls, xs: Sequence[float], ys: Sequence[float], *, pad: float = 0.05) -> Axes:
        x_lo, x_hi = _span(xs, pad)
        y_lo, y_hi = _span(ys, pad)
        return cls(x_lo, x_hi, y_lo, y_hi)

    def x(self, value: float) -> float:
        width = WIDTH - MARGIN_LEFT - MARGIN_RIGHT
        return MARGIN_LEFT + (value - self.x_min) / (self.x_max - self.x_min) * width

    def y(self, value: float) -> float:
        height = HEIGHT - MARGIN_TOP - MARGIN_BOTTOM
        return HEIGHT - MARGIN_BOTTOM - (value - self.y_min) / (self.y_max - self.y_min) * height


def _span(values: Sequence[float], pad: float) -> tuple[float, float]:
    finite = [v for v in values if math.isfinite(v)]
    if not finite:
        return 0.0, 1.0
    low, high = min(finite), max(finite)
    if high == low:
        return low - 1.0, high + 1.0
    margin = (high - low) * pad
    return low - margin, high + margin


def _open(title: str, width: float = WIDTH, height: float = HEIGHT) -> list[str]:
    """The picture's root element, its accessible title and the visible heading."""
    label = escape(title)
    return [
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width:.0f} {height:.0f}" width="{width:.0f}" '
        f'height="{height:.0f}" role="img" aria-label="{label}" font-family="sans-serif" font-size="11">',
        f"<title>{label}</title>",
        f'<text x="{width / 2:.0f}" y="16" text-anchor="middle" font-size="13" font-weight="bold">{label}</text>',
    ]


def _frame(axes: Axes, x_label: str, y_label: str, *, x_ticks: bool = True, x_dates: bool = False) -> list[str]:
    left, right = MARGIN_LEFT, WIDTH - MARGIN_RIGHT
    top, bottom = MARGIN_TOP, HEIGHT - MARGIN_BOTTOM
    parts = [f'<rect x="{left}" y="{top}" width="{right - left}" height="{bottom - top}" fill="none" stroke="#999"/>']
    for value, label in _ticks(axes.y_min, axes.y_max):
        y = _n(axes.y(value))
        parts.append(f'<line x1="{left - 4}" y1="{y}" x2="{left}" y2="{y}" stroke="#999"/>')
        parts.append(f'<text x="{left - 6}" y="{y}" text-anchor="end" dominant-baseline="middle">{label}</text>')
    if x_ticks:
        for value, label in _ticks(axes.x_min, axes.x_max, dates=x_dates):
            x = _n(axes.x(value))
            parts.append(f'<line x1="{x}" y1="{bottom}" x2="{x}" y2="{bottom + 4}" stroke="#999"/>')
            parts.append(f'<text x="{x}" y="{bottom + 15}" text-anchor="middle">{escape(label)}</text>')
    parts.append(f'<text x="{(left + right) / 2:.0f}" y="{HEIGHT - 6}" text-anchor="middle">{escape(x_label)}</text>')
    middle = (top + bottom) / 2
    parts.append(
        f'<text x="12" y="{middle:.0f}" text-anchor="middle" transform="rotate(-90 12 {middle:.0f})">'
        f"{escape(y_label)}</text>"
    )
    return parts


def _legend(labels: Sequence[str], *, bottom: float) -> list[str]:
    """Stacked upwards from `bottom` at the right edge of the plot, where curves and bars rarely are."""
    parts = []
    for i, label in enumerate(labels):
        y = bottom - 6 - (len(labels) - 1 - i) * 14
        x = WIDTH - MARGIN_RIGHT - 124
        parts.append(f'<rect x="{x}" y="{y - 8}" width="10" height="10" fill="{PALETTE[i % len(PALETTE)]}"/>')
        parts.append(f'<text x="{x + 14}" y="{y}">{escape(label[:18])}</text>')
    return parts


def lines(
    title: str,
    series: Sequence[tuple[str, Sequence[float], Sequence[float]]],
    *,
    x_label: str,
    y_label: str,
    unit_square: bool = False,
    diagonal: bool = False,
    points: bool = False,
    marker: tuple[float, str] | None = None,
) -> str:
    """Curves (ROC, precision-recall, calibration, metrics by threshold): one polyline per (label, xs, ys);
    `points` also dots each vertex, `marker` = (x, label) draws a labelled vertical line there."""
    if unit_square:
        axes = Axes(0.0, 1.0, 0.0, 1.0)
    else:
        axes = Axes.around([x for _, xs, _ in series for x in xs], [y for _, _, ys in series for y in ys])
    parts = _open(title) + _frame(axes, x_label, y_label)
    if diagonal:
        parts.append(
            f'<line x1="{_n(axes.x(0))}" y1="{_n(axes.y(0))}" x2="{_n(axes.x(1))}" y2="{_n(axes.y(1))}" '
            'stroke="#bbb" stroke-dasharray="4 3"/>'
        )
    if marker is not None:
        x = _n(axes.x(marker[0]))
        parts.append(
            f'<line x1="{x}" y1="{MARGIN_TOP}" x2="{x}" y2="{HEIGHT - MARGIN_BOTTOM}" stroke="#333" '
            'stroke-dasharray="2 2"/>'
        )
        parts.append(f'<text x="{_n(axes.x(marker[0]) + 3)}" y="{MARGIN_TOP + 11}">{escape(marker[1])}</text>')
    for i, (_, xs, ys) in enumerate(series):
        color = PALETTE[i % len(PALETTE)]
        vertices = " ".join(f"{_n(axes.x(x))},{_n(axes.y(y))}" for x, y in zip(xs, ys))
        parts.append(f'<polyline points="{vertices}" fill="none" stroke="{color}" stroke-width="2"/>')
        if points:
            parts += [
                f'<circle cx="{_n(axes.x(x))}" cy="{_n(axes.y(y))}" r="3" fill="{color}"/>' for x, y in zip(xs, ys)
            ]
    if len(series) > 1 or series[0][0]:
        parts += _legend([label for label, _, _ in series], bottom=HEIGHT - MARGIN_BOTTOM)
    return "\n".join([*parts, "</svg>"])


def scatter(
    title: str,
    xs: Sequence[float],
    ys: Sequence[float],
    *,
    x_label: str,
    y_label: str,
    reference: str = "",  # "identity" (y = x) or "zero" (y = 0)
) -> str:
    """Points, e.g. predicted vs actual (with y = x) or residuals (with y = 0)."""
    if reference == "identity":
        both = [*xs, *ys]
        axes = Axes.around(both, both)
    else:
        axes = Axes.around(xs, [*ys, 0.0] if reference == "zero" else ys)
    parts = _open(title) + _frame(axes, x_label, y_label)
    if reference == "identity":
        low, high = max(axes.x_min, axes.y_min), min(axes.x_max, axes.y_max)
        parts.append(
            f'<line x1="{_n(axes.x(low))}" y1="{_n(axes.y(low))}" x2="{_n(axes.x(high))}" y2="{_n(axes.y(high))}" '
            'stroke="#d62728" stroke-dasharray="4 3"/>'
        )
    elif reference == "zero":
        parts.append(
            f'<line x1="{_n(axes.x(axes.x_min))}" y1="{_n(axes.y(0))}" x2="{_n(axes.x(axes.x_max))}" '
            f'y2="{_n(axes.y(0))}" stroke="#d62728" stroke-dasharray="4 3"/>'
        )
    parts += [
        f'<circle cx="{_n(axes.x(x))}" cy="{_n(axes.y(y))}" r="2.5" fill="{PALETTE[0]}" fill-opacity="0.6"/>'
        for x, y in zip(xs, ys)
    ]
    return "\n".join([*parts, "</svg>"])


def bars(
    title: str,
    labels: Sequence[str],
    values: Sequence[float],
    *,
    errors: Sequence[float] | None = None,
    value_label: str = "",
    groups: Sequence[tuple[str, Sequence[float]]] | None = None,
) -> str:
    """Horizontal bars with labels on the left (importances, categories, class counts).

    `groups` draws several values per label side by side (e.g. train and test counts).
    """
    series = list(groups) if groups else [("", values)]
    top_value = max([0.0, *(v + (errors[i] if errors else 0.0) for _, vs in series for i, v in enumerate(vs))])
    low_value = min([0.0, *(v - (errors[i] if errors else 0.0) for _, vs in series for i, v in enumerate(vs))])
    top = MARGIN_TOP + (18 if groups else 0)  # room for the legend's row under the title
    height = max(HEIGHT, top + MARGIN_BOTTOM + 18 * len(labels) * len(series))
    left, right = 140, WIDTH - MARGIN_RIGHT
    span = (top_value - low_value) or 1.0

    def x(value: float) -> float:
        return left + (value - low_value) / span * (right - left)

    row = (height - top - MARGIN_BOTTOM) / max(1, len(labels))
    bar = row * 0.7 / len(series)
    parts = [
        *_open(title, WIDTH, height),
        f'<line x1="{_n(x(0))}" y1="{top}" x2="{_n(x(0))}" y2="{height - MARGIN_BOTTOM:.0f}" stroke="#999"/>',
    ]
    for i, label in enumerate(labels):
        y0 = top + i * row + row * 0.15
        parts.append(
            f'<text x="{left - 6}" y="{_n(y0 + row * 0.35)}" text-anchor="end" dominant-baseline="middle">'
            f"{escape(label[:24])}</text>"
        )
        for g, (_, vs) in enumerate(series):
            value = vs[i]
            start, end = sorted((x(0), x(value)))
            y = y0 + g * bar
            color = PALETTE[g % len(PALETTE)]
            parts.append(
                f'<rect x="{_n(start)}" y="{_n(y)}" width="{_n(max(end - start, 0.5))}" height="{_n(bar)}" '
                f'fill="{color}"><title>{escape(label)}: {value:.4g}</title></rect>'
            )
            if errors:
                mid = _n(y + bar / 2)
                parts.append(
                    f'<line x1="{_n(x(value - errors[i]))}" y1="{mid}" x2="{_n(x(value + errors[i]))}" '
                    f'y2="{mid}" stroke="#333"/>'
                )
    for value, text in _ticks(low_value, low_value + span):
        parts.append(
            f'<text x="{_n(x(value))}" y="{height - MARGIN_BOTTOM + 15:.0f}" text-anchor="middle">{text}</text>'
        )
    parts.append(
        f'<text x="{(left + right) / 2:.0f}" y="{height - 6:.0f}" text-anchor="middle">{escape(value_label)}</text>'
    )
    if groups:
        for g, (name, _) in enumerate(series):  # one row under the title
            x0 = left + g * 80
            color = PALETTE[g % len(PALETTE)]
            parts.append(f'<rect x="{x0}" y="{MARGIN_TOP - 2}" width="10" height="10" fill="{color}"/>')
            parts.append(f'<text x="{x0 + 14}" y="{MARGIN_TOP + 7}">{escape(name[:10])}</text>')
    return "\n".join([*parts, "</svg>"])


def histogram(title: str, edges: Sequence[float], counts: Sequence[int], *, x_label: str, dates: bool = False) -> str:
    """Vertical bars over bin edges (a numeric feature's, a text's length, or dates: ms since 1970)."""
    axes = Axes(edges[0], edges[-1], 0.0, max([1, *counts]) * 1.05)
    if axes.x_max == axes.x_min:
        axes = Axes(axes.x_min - 1, axes.x_max + 1, axes.y_min, axes.y_max)
    parts = _open(title) + _frame(axes, x_label, "documents", x_dates=dates)
    width = (edges[-1] - edges[0]) or 1.0
    for low, high, count in zip(edges, edges[1:], counts):
        x0, x1 = axes.x(low), axes.x(high)
        y = axes.y(count)
        span = _date_span(low, high) if dates else f"{tick_text(low, width)} to {tick_text(high, width)}"
        parts.append(
            f'<rect x="{_n(x0)}" y="{_n(y)}" width="{_n(max(x1 - x0 - 1, 0.5))}" height="{_n(axes.y(0) - y)}" '
            f'fill="{PALETTE[0]}"><title>{escape(span)}: {count}</title></rect>'
        )
    return "\n".join([*parts, "</svg>"])


def _date_span(low: float, high: float) -> str:
    from datetime import UTC, datetime, timedelta

    def day(ms: float) -> str:
        return f"{datetime(1970, 1, 1, tzinfo=UTC) + timedelta(milliseconds=ms):%Y-%m-%d %H:%M}"

    return f"{day(low)} to {day(high)}"


def heatmap(title: str, matrix: Sequence[Sequence[int]], labels: Sequence[str], *, x_label: str, y_label: str) -> str:
    """A confusion matrix: counts in cells, darker for more."""
    size = len(labels)
    cell = min(60.0, (min(WIDTH, HEIGHT) - 90) / max(1, size))
    left, top = 110.0, 40.0
    width = left + cell * size + 20
    height = top + cell * size + 50
    peak = max([1, *(v for row in matrix for v in row)])
    parts = _open(title, width, height)
    for i, row in enumerate(matrix):
        parts.append(
            f'<text x="{left - 6:.0f}" y="{_n(top + (i + 0.5) * cell)}" text-anchor="end" dominant-baseline="middle">'
            f"{escape(labels[i][:16])}</text>"
        )
        for j, value in enumerate(row):
            shade = value / peak
            fill = f"rgb({255 - int(shade * 224)},{255 - int(shade * 160)},{255 - int(shade * 75)})"
            ink = "#fff" if shade > 0.55 else "#000"
            x, y = left + j * cell, top + i * cell
            parts.append(
                f'<rect x="{_n(x)}" y="{_n(y)}" width="{_n(cell)}" height="{_n(cell)}" fill="{fill}" stroke="#fff"/>'
            )
            parts.append(
                f'<text x="{_n(x + cell / 2)}" y="{_n(y + cell / 2)}" text-anchor="middle" '
                f'dominant-baseline="middle" fill="{ink}">{value}</text>'
            )
    for j, label in enumerate(labels):
        parts.append(
            f'<text x="{_n(left + (j + 0.5) * cell)}" y="{_n(top + size * cell + 14)}" text-anchor="middle">'
            f"{escape(label[:10])}</text>"
        )
    parts.append(
        f'<text x="{_n(left + size * cell / 2)}" y="{height - 8:.0f}" text-anchor="middle">{escape(x_label)}</text>'
    )
    parts.append(f'<text x="12" y="{top - 10:.0f}">{escape(y_label)}</text>')
    return "\n".join([*parts, "</svg>"])
