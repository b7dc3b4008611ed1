"""Time, injected: the engine never calls `datetime.now()` itself, so tests and the simulator control the clock.

All datetimes are timezone-aware, and every clock answers in UTC. Python adds a timedelta to an aware datetime
on its wall clock: in America/New_York, 01:59:55 plus five seconds on the night clocks fall back is 02:00 EST, an
hour and five seconds later, and on the night they spring forward 02:59:55 plus five seconds is 03:00 EDT, the same
instant as 02:00 EST, an hour earlier. Two datetimes of one zone also subtract on the wall clock. A clock kept in
UTC moves by exactly the seconds it is told and its differences are elapsed time, whatever the start's zone.
Wall-clock windows (HH:MM) are read in the configured time zone.
"""

from __future__ import annotations

import re
from datetime import date, datetime, time, timedelta, timezone, tzinfo
from typing import Protocol

# The instants a run may start at (`parse_start`): the span every reader of the project's times accepts (the
# recorder, the backtest, the report read 1900..2199), well inside what the exchange calendar can answer
# (pandas' nanosecond timestamps end in 2262).
FIRST_START = datetime(1900, 1, 1, tzinfo=timezone.utc)
LAST_START = datetime(2200, 1, 1, tzinfo=timezone.utc)

_HHMM = re.compile(r"^([01][0-9]|2[0-3]):([0-5][0-9])$")  # fullmatch: `$` matches before a final newline


def parse_hhmm(text: str) -> time:
    """`"06:35"` -> `time(6, 35)`; raises ValueError for anything that is not a time of day."""
    match = _HHMM.fullmatch(text)
    if not match:
        raise ValueError(f"{text!r} is not a time of day (HH:MM)")
    return time(int(match.group(1)), int(match.group(2)))


def wall_clock(now: datetime, zone: tzinfo) -> datetime:
    """`now` on the wall clock of `zone`, as the bots' windows (trade_start, trade_end, manage_until) read it: a
    clock that never goes back within a day. Where the clocks fall back, an hour of wall-clock times comes twice
    (01:00-02:00 on the first Sunday of November in America/Los_Angeles); read as it is, a window that had ended
    in the first pass (trade 00:00-01:30, manage until 01:45) began again in the second: the bot armed at 01:00 and
    traded a second session on the same day. Through the second pass the wall clock stands at the last instant of
    the first (01:59:59.999999), where every time of the repeated hour has passed once: what was open stays open,
    what ended stays ended. A span that would carry the date across midnight is read as it is (no zone does that)."""
    local = now.astimezone(zone)
    if not local.fold:
        return local
    first = local.replace(fold=0)  # the same wall time in the first pass, an earlier instant
    before, after = first.utcoffset(), local.utcoffset()
    if before is None or after is None or before <= after:
        return local
    key = (zone, local.date(), before, after)
    stood = _FIRST_PASS_ENDS.get(key)
    if stood is None:
        # the last instant on the first pass's offset: between the first pass's reading of this wall time and now
        lo, hi = first.astimezone(timezone.utc), now.astimezone(timezone.utc)
        while hi - lo > timedelta(microseconds=1):
            mid = lo + (hi - lo) / 2
            if mid.astimezone(zone).utcoffset() == before:
                lo = mid
            else:
                hi = mid
        stood = lo.astimezone(zone)
        if len(_FIRST_PASS_ENDS) >= _FIRST_PASS_ENDS_KEPT:
            _FIRST_PASS_ENDS.clear()
        _FIRST_PASS_ENDS[key] = stood
    return stood if stood.date() == local.date() else local


# Where each repeated hour's first pass ended (`wall_clock`), by (zone, date, offset before, offset after): one
# search for the instant (about 40 readings of the zone, 0.14 ms) per repeated hour, not one on every tick of it
# (the view reads the wall clock each tick, whose budget for ten bots is under a millisecond). The instant the
# clocks go back depends on the zone and the day alone, so every tick of the hour finds the same one.
_FIRST_PASS_ENDS: dict[tuple[tzinfo, date, timedelta, timedelta], datetime] = {}
_FIRST_PASS_ENDS_KEPT = 64


class Clock(Protocol):
    def now(self) -> datetime:
        """The current instant, timezone-aware."""
        ...


class SystemClock:
    """Real time, in UTC."""

    def now(self) -> datetime:
        return datetime.now(timezone.utc)


def _utc(when: datetime, who: str) -> datetime:
    if when.tzinfo is None or when.utcoffset() is None:
        raise ValueError(f"{who} needs timezone-aware datetimes")
    return when.astimezone(timezone.utc)


class ManualClock:
    """A clock that moves only when told to: the simulator's and the tests'. Kept in UTC (see the module's
    docstring): a start given in a zone with summer time would otherwise skip or repeat an hour at the change."""

    def __init__(self, start: datetime):
        self._now = _utc(start, "ManualClock")

    def now(self) -> datetime:
        return self._now

    def advance(self, seconds: float) -> datetime:
        self._now += timedelta(seconds=seconds)
        return self._now

    def set(self, when: datetime) -> None:
        self._now = _utc(when, "ManualClock")


class FollowingClock:
    """Real time, shifted to start at `start`: the standalone emulator's clock (a session at any hour)."""

    def __init__(self, start: datetime):
        self._start = _utc(start, "FollowingClock")  # in UTC, as ManualClock: elapsed time, not wall-clock time
        self._launched = datetime.now(timezone.utc)

    def now(self) -> datetime:
        return self._start + (datetime.now(timezone.utc) - self._launched)


def default_sim_start(today: date, zone: tzinfo | None = None) -> datetime:
    """The open (New York time) of the first session that opens on or after `today` in `zone` (system.timezone;
    New York when not given), by the exchange calendar: the simulator keeps it, so a simulated day started on a
    weekend or a holiday would find the market shut. Counted from New York's midnight of that date, a zone ahead
    of New York skipped its own day's session: in Pacific/Auckland Tuesday's session is Monday's in New York
    (03:30-10:00 Tuesday there), and a first run on Tuesday started at Wednesday's."""
    from engine.core.calendar import NEW_YORK, market_calendar  # imported here: `--validate` needs no calendar

    midnight = datetime.combine(today, time(0, 0), zone or NEW_YORK)
    return market_calendar().next_open(midnight).astimezone(NEW_YORK)


def parse_start(text: str) -> datetime:
    """An ISO 8601 datetime with an offset, from 1900 to 2199 (`FIRST_START`, `LAST_START`); raises ValueError for
    a naive or malformed one, or one outside those years (the exchange calendar cannot say when the market opens
    in year 1 or 2300: such a start was a traceback in the first tick)."""
    value = datetime.fromisoformat(text)
    if value.tzinfo is None:
        raise ValueError(f"'{text}' has no UTC offset (write e.g. 2026-11-23T09:30:00-05:00)")
    try:
        inside = FIRST_START <= value < LAST_START
    except OverflowError:  # 0001-01-01 with a positive offset is before year 1 in UTC
        inside = False
    if not inside:
        # the years are UTC's: a time written inside them whose offset carries it out (2199-12-31T20:00-05:00 is
        # 2200 in UTC) is told so, not refused as if its own year were outside them
        years = f"the years {FIRST_START.year} to {LAST_START.year - 1}"
        try:
            utc = value.astimezone(timezone.utc)
        except OverflowError:
            utc = value
        if utc.year != value.year:
            raise ValueError(f"'{text}' is {utc.isoformat()} in UTC, outside {years} (counted in UTC)")
        raise ValueError(f"'{text}' is outside {years}")
    return value
