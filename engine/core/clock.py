"""Time, injected: the engine never calls `datetime.now()` itself, so tests and the simulator control the clock.

All datetimes are timezone-aware. Wall-clock windows (HH:MM) are read in the configured time zone.
"""

from __future__ import annotations

import re
from datetime import datetime, time, timedelta, timezone
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
