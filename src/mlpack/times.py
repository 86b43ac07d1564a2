"""Moments and windows as the commands take them: ISO 8601, or a duration before now (30m, 24h, 7d, 2w)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from mlpack.errors import ConfigError

_RELATIVE = re.compile(r"^(\d+(?:\.\d+)?)\s*(s|m|min|h|d|w)$")
_UNITS = {"s": "seconds", "m": "minutes", "min": "minutes", "h": "hours", "d": "days", "w": "weeks"}


def parse_time(text: str, *, flag: str, now: datetime) -> datetime:
    """An ISO 8601 date or time (UTC unless it says otherwise), or a duration before now: 30m, 24h, 7d, 2w."""
    value = text.strip()
    relative = _RELATIVE.match(value.lower())
    if relative:
        amount, unit = float(relative.group(1)), relative.group(2)
        return now - timedelta(**{_UNITS[unit]: amount})
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        shown = repr(text) if len(text) <= 60 else repr(text[:57] + "...")
        raise ConfigError(
            f"{flag} {shown} is not a time: use ISO 8601 (2026-11-27, 2026-11-27T15:00Z) or a duration (30m, 24h, 7d)"
        ) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC)


def stamp(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def epoch_of(stamped: str) -> int:
    """A `stamp` (the metadata's `created`) as seconds since 1970: the wheel's and the image's file times."""
    return int(datetime.strptime(stamped, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC).timestamp())


@dataclass(frozen=True)
class Window:
    since: datetime | None
    until: datetime | None  # None: no end (the monitor's is always now or given)

    @classmethod
    def parse(
        cls,
        since: str | None,
        until: str | None,
        *,
        now: datetime | None = None,
        flags: tuple[str, str] = ("--since", "--until"),
        open_ended: bool = False,
    ) -> Window:
        """`open_ended`: without `until` the window has no end (else it ends now)."""
        now = now or datetime.now(tz=UTC)
        start = parse_time(since, flag=flags[0], now=now) if since else None
        end = parse_time(until, flag=flags[1], now=now) if until else None if open_ended else now
        if start is not None and end is not None and start >= end:
            raise ConfigError(f"{flags[0]} ({stamp(start)}) must be before {flags[1]} ({stamp(end)})")
        return cls(start, end)

    def query(self, key: str = "at") -> dict[str, Any]:
        # MongoDB stores times to the millisecond without a zone: compare naive UTC.
        bounds: dict[str, Any] = {}
        if self.until is not None:
            bounds["$lt"] = self.until.replace(tzinfo=None)
        if self.since is not None:
            bounds["$gte"] = self.since.replace(tzinfo=None)
        return {key: bounds} if bounds else {}
