"""Tick positions and labels people read at a glance: round numbers (Heckbert's "nice numbers") and calendar dates."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta

_STEPS = (1.0, 2.0, 2.5, 5.0, 10.0)


def nice_step(span: float, count: int) -> float:
    """The round step (1, 2, 2.5 or 5 × 10^k) that cuts `span` into about `count` intervals."""
    raw = span / max(1, count)
    power = 10.0 ** math.floor(math.log10(raw))
    return next(s * power for s in _STEPS if s * power >= raw * (1 - 1e-9))


def nice_ticks(low: float, high: float, count: int = 4) -> list[float]:
    """Round values from `low` to `high` (both inside), e.g. 0, 25, 50, 75, 100 for 3.2 .. 99.8."""
    if not (math.isfinite(low) and math.isfinite(high)) or high <= low:
        return [low] if math.isfinite(low) else []
    step = nice_step(high - low, count)
    first = math.ceil(low / step - 1e-9)
    last = math.floor(high / step + 1e-9)
    return [round(k * step, 12) + 0.0 for k in range(first, last + 1)]


def tick_text(value: float, step: float) -> str:
    """A tick label with just the decimals its step needs: 0.25 steps give 0.25, 0.5, 0.75; 1e6 gives 1M."""
    magnitude = abs(value)
    if magnitude >= 1e6 and step >= 1e5:
        return _compact(value, 1e6, "M", step)
    if magnitude >= 1e4 and step >= 1e3:
        return _compact(value, 1e3, "k", step)
    if magnitude >= 1e15:
        return f"{value:.3g}"
    decimals = _decimals(step)
    if magnitude and magnitude < 1e-4 and step < 1e-4:  # 0.00001 reads worse than 1e-05
        return f"{value:.{max(0, decimals + math.floor(math.log10(magnitude)))}e}"
    text = f"{value:.{min(decimals, 12)}f}"
    return text[1:] if text.startswith("-") and float(text) == 0 else text


def _decimals(step: float) -> int:
    """The digits after the point that a step of 1, 2, 2.5 or 5 × 10^k needs."""
    decimals = max(0, -math.floor(math.log10(step) + 1e-9))
    if round(step * 10**decimals, 6) % 1:  # 2.5 × 10^k: one more
        decimals += 1
    return decimals


def _compact(value: float, unit: float, suffix: str, step: float) -> str:
    return f"{value / unit:.{_decimals(step / unit)}f}{suffix}"


_DAY_MS = 86_400_000


def date_ticks(low_ms: float, high_ms: float, count: int = 4) -> list[tuple[float, str]]:
    """Calendar ticks between two times (ms since 1970, UTC): years, months, days or hours, as the span needs."""
    if not (math.isfinite(low_ms) and math.isfinite(high_ms)) or high_ms <= low_ms:
        return []
    low, high = _moment(low_ms), _moment(high_ms)
    days = (high_ms - low_ms) / _DAY_MS
    if days >= 365 * 2:
        years = days / 365.25
        step = next((s for s in (1, 2, 5, 10, 20, 50, 100, 200, 500) if years / s <= count + 2), 1000)
        starts = range(math.ceil(_year_fraction(low) / step) * step, high.year + 1, step)
        return [(_ms(datetime(y, 1, 1, tzinfo=UTC)), str(y)) for y in starts if low <= datetime(y, 1, 1, tzinfo=UTC)]
    if days >= 60:
        step = next(s for s in (1, 2, 3, 6, 12) if days / 30.44 / s <= count + 1)
        first_of_month = low.day == 1 and low.time() == datetime.min.time()
        month = low.year * 12 + low.month - 1 + (0 if first_of_month else 1)  # the first month start >= low
        month = math.ceil(month / step) * step
        ticks: list[tuple[float, str]] = []
        while True:
            moment = datetime(month // 12, month % 12 + 1, 1, tzinfo=UTC)
            if moment > high:
                return ticks
            ticks.append((_ms(moment), f"{moment:%Y-%m}"))
            month += step
    if days >= 2:
        step = next(s for s in (1, 2, 7, 14) if days / s <= count + 1)
        start = datetime(low.year, low.month, low.day, tzinfo=UTC)
        start += timedelta(days=1) if start < low else timedelta(0)
        if step == 7:
            start += timedelta(days=(7 - start.weekday()) % 7)  # Mondays
        ticks = []
        while start <= high:
            ticks.append((_ms(start), f"{start:%Y-%m-%d}"))
            start += timedelta(days=step)
        return ticks
    hours = days * 24
    step = next((s for s in (1, 2, 3, 6, 12) if hours / s <= count + 1), 24)
    start = datetime(low.year, low.month, low.day, low.hour, tzinfo=UTC)
    start += timedelta(hours=1) if start < low else timedelta(0)
    start += timedelta(hours=(-start.hour) % step)
    ticks = []
    while start <= high:
        ticks.append((_ms(start), f"{start:%m-%d %H:%M}"))
        start += timedelta(hours=step)
    return ticks


def _moment(ms: float) -> datetime:
    return datetime(1970, 1, 1, tzinfo=UTC) + timedelta(milliseconds=ms)


def _ms(moment: datetime) -> float:
    return (moment - datetime(1970, 1, 1, tzinfo=UTC)) / timedelta(milliseconds=1)


def _year_fraction(moment: datetime) -> int:
    return moment.year + (0 if moment == datetime(moment.year, 1, 1, tzinfo=UTC) else 1)
