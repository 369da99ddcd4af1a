"""The store's notion of now, injectable so that tests can move time.

The store keeps every timestamp as UTC seconds since the epoch (a float) in
the database and hands out timezone-aware UTC datetimes.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Protocol


class Clock(Protocol):
    """Anything that tells the current time as an aware UTC datetime."""

    def now(self) -> datetime: ...


class SystemClock:
    """The real wall clock."""

    def now(self) -> datetime:
        return datetime.now(UTC)


class FakeClock:
    """A clock that only moves when told to (for tests)."""

    def __init__(self, start: datetime | None = None) -> None:
        self._now = start or datetime(2024, 1, 1, 12, 0, tzinfo=UTC)
        if self._now.tzinfo is None:
            raise ValueError(f"FakeClock needs an aware datetime, got naive {self._now!r}")

    def now(self) -> datetime:
        return self._now

    def advance(self, by: float | timedelta) -> datetime:
        """Move forward by seconds or a timedelta; returns the new now."""
        self._now += by if isinstance(by, timedelta) else timedelta(seconds=by)
        return self._now

    def set(self, to: datetime) -> None:
        if to.tzinfo is None:
            raise ValueError(f"FakeClock needs an aware datetime, got naive {to!r}")
        self._now = to


def to_epoch(moment: datetime) -> float:
    """UTC seconds since the epoch for an aware datetime."""
    return moment.timestamp()


def from_epoch(seconds: float | None) -> datetime | None:
    """The aware UTC datetime for epoch seconds (None stays None)."""
    return None if seconds is None else datetime.fromtimestamp(seconds, UTC)


def next_utc_midnight(epoch: float) -> datetime:
    """The start of the UTC day after the one that contains ``epoch``."""
    day = datetime.fromtimestamp(epoch, UTC).date()
    return datetime(day.year, day.month, day.day, tzinfo=UTC) + timedelta(days=1)


def utc_day(epoch: float) -> int:
    """The UTC day number (days since 1970-01-01) that contains ``epoch``."""
    return int(epoch // 86400)
