"""Time, injected: the engine never calls `datetime.now()` itself, so tests and the simulator control the clock.

All datetimes are timezone-aware. Wall-clock windows (HH:MM) are read in the configured time zone.
"""

from __future__ import annotations

import re
from datetime import date, datetime, time, timedelta, timezone
from typing import Protocol

_HHMM = re.compile(r"^([01][0-9]|2[0-3]):([0-5][0-9])$")


def parse_hhmm(text: str) -> time:
    """`"06:35"` -> `time(6, 35)`; raises ValueError for anything that is not a time of day."""
    match = _HHMM.match(text)
    if not match:
        raise ValueError(f"{text!r} is not a time of day (HH:MM)")
    return time(int(match.group(1)), int(match.group(2)))


class Clock(Protocol):
    def now(self) -> datetime:
        """The current instant, timezone-aware."""
        ...


class SystemClock:
    """Real time, in UTC."""

    def now(self) -> datetime:
        return datetime.now(timezone.utc)


class ManualClock:
    """A clock that moves only when told to: the simulator's and the tests'."""

    def __init__(self, start: datetime):
        if start.tzinfo is None:
            raise ValueError("ManualClock needs a timezone-aware start")
        self._now = start

    def now(self) -> datetime:
        return self._now

    def advance(self, seconds: float) -> datetime:
        self._now += timedelta(seconds=seconds)
        return self._now

    def set(self, when: datetime) -> None:
        if when.tzinfo is None:
            raise ValueError("ManualClock needs timezone-aware datetimes")
        self._now = when


class FollowingClock:
    """Real time, shifted to start at `start`: the standalone emulator's clock (a session at any hour)."""

    def __init__(self, start: datetime):
        if start.tzinfo is None:
            raise ValueError("FollowingClock needs a timezone-aware start")
        self._start = start
        self._launched = datetime.now(timezone.utc)

    def now(self) -> datetime:
        return self._start + (datetime.now(timezone.utc) - self._launched)


def default_sim_start(today: date) -> datetime:
    """The open (New York time) of the first session on or after `today`, by the exchange calendar: the simulator
    keeps it, so a simulated day started on a weekend or a holiday would find the market shut."""
    from engine.core.calendar import NEW_YORK, market_calendar  # imported here: `--validate` needs no calendar

    midnight = datetime.combine(today, time(0, 0), NEW_YORK)
    return market_calendar().next_open(midnight).astimezone(NEW_YORK)


def parse_start(text: str) -> datetime:
    """An ISO 8601 datetime with an offset; raises ValueError for a naive or malformed one."""
    value = datetime.fromisoformat(text)
    if value.tzinfo is None:
        raise ValueError(f"'{text}' has no UTC offset (write e.g. 2026-11-23T09:30:00-05:00)")
    return value
