"""The report as text for the terminal and as a self-contained HTML page."""

from __future__ import annotations

import html
import os
from pathlib import Path

from mlpack.errors import ConfigError
from mlpack.monitor.analysis import Bin, Report

FEW_RECORDS = 100  # below this, a window's PSI is mostly noise (README: "PSI is noisy on few values")


# -- output --------------------------------------------------------------------------------------
def _percent(value: float | None) -> str:
    return "-" if value is None else f"{value:.1%}"


def _metric(value: float | None) -> str:
    """A build metric, or "-" where the build did not compute it (never "nan")."""
    return "-" if value is None or value != value else f"{value:.4f}"


def _psi_text(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


def render_text(report: Report) -> str:
    span = f"{report.since or 'the start'} to {report.until}"
    lines = [
        f"{report.model} {report.version}: {report.records} records in {report.requests} logged requests, {span}",
    ]
    if not report.records:  # a table of 0.0% missing rates and "no PSI above the threshold" would read as a pass
        lines.append("  nothing to compare with the training baseline: no record of this version was logged then")
        return "\n".join(lines)
    if report.records < FEW_RECORDS:  # 3 records put every feature's PSI above 4: say why before the table
        lines.append(
            f"  (only {report.records} records: PSI over 10 bins needs a few hundred values before 0.2 means anything)"
        )
    if report.unreadable:
        lines.append(
            f"  ({report.unreadable} logged requests could not be read by this model version and were skipped)"
        )
    rows = [("", "PSI", "missing", "training missing", "unknown categories")]
    for row in [*report.features, *([report.predictions] if report.predictions else [])]:
        flag = " !" if row.drifted else ""
        feature = row is not report.predictions
        rows.append(
            (
                row.name if feature else "(predictions)",
                _psi_text(row.psi) + flag,
                _percent(row.missing_rate) + (" !" if row.missing_jump else "") if feature else "-",
                _percent(row.training_missing_rate) if feature else "-",
                _percent(row.unknown_rate) + (" !" if row.unknown_jump else "")
                if row.kind == "categorical" and feature
                else "-",
            )
        )
    widths = [max(len(cells[i]) for cells in rows) for i in range(len(rows[0]))]
    for cells in rows:
        lines.append("  " + "  ".join(cell.ljust(width) for cell, width in zip(cells, widths)).rstrip())
    feedback = report.feedback
    if feedback.labels:
        metrics = ", ".join(
            f"{name} {value:.4f}"
            + (f" (build {feedback.build_metrics[name]:.4f})" if name in feedback.build_metrics else "")
            for name, value in feedback.metrics.items()
        )
        lines.append(f"live metrics on {feedback.labels} feedback labels: {metrics or 'none computable'}")
    else:
        lines.append("live metrics: no feedback labels in this window (POST /feedback sends them)")
    if report.drifted:
        names = ", ".join(f"{row.name} ({row.psi:.3f})" for row in report.drifted if row.psi is not None)
        lines.append(f"drift above the threshold {report.threshold:g}: {names}")
    else:
        lines.append(f"no PSI above the threshold {report.threshold:g}")
    if report.missing_jumps:
        names = ", ".join(
            f"{r.name} ({r.training_missing_rate:.1%} -> {r.missing_rate:.1%})" for r in report.missing_jumps
        )
        lines.append(f"missing rate up by more than {report.missing_threshold:.1%}: {names}")
    if report.unknown_jumps:
        names = ", ".join(f"{row.name} ({row.unknown_rate or 0.0:.1%})" for row in report.unknown_jumps)
        lines.append(f"unknown categories above {report.unknown_threshold:.1%}: {names}")
    return "\n".join(lines)


def render_html(report: Report) -> str:
    """A self-contained page (no scripts, no network): the table, and per feature its bins as bars."""
    rows = []
    sections = []
    for row in [*report.features, *([report.predictions] if report.predictions else [])]:
        css = ' class="drift"' if row.drifted or row.missing_jump or row.unknown_jump else ""
        rows.append(
            f"<tr{css}><td>{html.escape(row.name)}</td><td>{row.kind}</td><td>{_psi_text(row.psi)}</td>"
            f"<td>{_percent(row.missing_rate)}</td><td>{_percent(row.training_missing_rate)}</td>"
            f"<td>{_percent(row.unknown_rate)}</td></tr>"
        )
        sections.append(f"<h3>{html.escape(row.name)} — PSI {_psi_text(row.psi)}</h3>{_bars(row.bins)}")
    feedback = report.feedback
    live = (
        "".join(
            f"<tr><td>{name}</td><td>{value:.4f}</td><td>{_metric(feedback.build_metrics.get(name))}</td></tr>"
            for name, value in feedback.metrics.items()
        )
        or '<tr><td colspan="3">no feedback labels in this window</td></tr>'
    )
    title = html.escape(f"{report.model} {report.version}: drift and live quality")
    drifted = ", ".join(html.escape(row.name) for row in report.drifted) or "none"
    jumped = ", ".join(html.escape(row.name) for row in report.missing_jumps) or "none"
    unknown = ", ".join(html.escape(row.name) for row in report.unknown_jumps) or "none"
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{title}</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 2em; color: #222; }}
table {{ border-collapse: collapse; margin: 1em 0; }}
td, th {{ border: 1px solid #ccc; padding: 4px 10px; text-align: left; }}
tr.drift td {{ background: #fde2e1; }}
.legend span {{ display: inline-block; width: 12px; height: 12px; margin: 0 4px 0 12px; }}
</style></head><body>
<h1>{title}</h1>
<p>{report.records} records in {report.requests} logged requests, from {report.since or "the start"} to {report.until}.
PSI threshold {report.threshold:g}; above it: <strong>{drifted}</strong>. Missing rate up by more than
{report.missing_threshold:.1%}: <strong>{jumped}</strong>. Unknown categories above {report.unknown_threshold:.1%}:
<strong>{unknown}</strong>.</p>
<table><tr><th>feature</th><th>kind</th><th>PSI</th><th>missing</th><th>training missing</th>
<th>unknown categories</th></tr>
{"".join(rows)}
</table>
<h2>Live metrics ({feedback.labels} feedback labels)</h2>
<table><tr><th>metric</th><th>live</th><th>build (test split)</th></tr>{live}</table>
<h2>Distributions</h2>
<p class="legend"><span style="background:#8da0cb"></span>training<span style="background:#fc8d62"></span>logged</p>
{"".join(sections)}
</body></html>
"""


def _bars(bins: list[Bin]) -> str:
    """Training and logged shares per bin as horizontal bars in inline SVG."""
    height, width = 18, 260
    parts = []
    for index, item in enumerate(bins):
        y = index * height * 2
        parts.append(
            f'<text x="0" y="{y + 13}" font-size="11">{html.escape(item.label[:28])}</text>'
            f'<rect x="190" y="{y}" width="{item.expected * width:.1f}" height="{height - 3}" fill="#8da0cb"/>'
            f'<rect x="190" y="{y + height - 3}" width="{item.actual * width:.1f}" height="{height - 3}"'
            ' fill="#fc8d62"/>'
            f'<text x="{195 + max(item.expected, item.actual) * width:.1f}" y="{y + 13}" font-size="11">'
            f"{item.expected:.1%} / {item.actual:.1%}</text>"
        )
    total = max(1, len(bins)) * height * 2
    return f'<svg xmlns="http://www.w3.org/2000/svg" width="560" height="{total}">{"".join(parts)}</svg>'


def write_html(report: Report, path: str | Path) -> Path:
    """Written next to its final name, then renamed: never a half-written page."""
    target = Path(path)
    if target.is_dir():
        raise ConfigError(f"--html {target} is a folder: name a file")
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        staged = target.with_name(f".{target.name}.tmp")
        staged.write_text(render_html(report), encoding="utf-8")
        os.replace(staged, target)
    except OSError as exc:
        raise ConfigError(f"cannot write --html {target}: {exc.strerror}") from None
    return target
