"""Time as data: the core never reads the clock; callers pass `now`."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta


def iso(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse(text: str) -> datetime:
    return datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)


def seconds_since(text: str | None, now: datetime) -> float:
    """Seconds from an ISO time to now; infinity when the time was never set."""
    return float("inf") if text is None else (now - parse(text)).total_seconds()


def later(now: datetime, seconds: float) -> str:
    return iso(now + timedelta(seconds=seconds))
