"""engine/core/clock.py's wall clock: the time of day the bots' windows are read at, which never goes back within a
day, though the clocks fall back."""

from __future__ import annotations

import itertools
from datetime import date, datetime, time, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest

from engine.core.clock import default_sim_start, parse_hhmm, wall_clock

LOS_ANGELES = ZoneInfo("America/Los_Angeles")
FALL_BACK = datetime(2026, 11, 1, 8, 0, tzinfo=timezone.utc)  # 01:00 PDT: 01:00-02:00 comes twice in Los Angeles


@pytest.mark.parametrize(
    ("zone", "first"),
    [
        ("America/Los_Angeles", FALL_BACK),
        ("Europe/London", datetime(2026, 10, 25, 0, 0, tzinfo=timezone.utc)),  # 01:00 BST: 01:00-02:00 twice
        ("Africa/Cairo", datetime(2026, 10, 29, 20, 0, tzinfo=timezone.utc)),  # 23:00: 23:00-24:00 twice, at midnight
    ],
)
def test_the_hour_the_clocks_repeat_stands_at_the_end_of_its_first_pass(zone: str, first: datetime) -> None:
    """Read as it is, the second pass went back an hour: a bot's window that had ended in the first (trade until
    01:30, manage until 01:45) began again, and the bot traded a second session on the same day."""
    tz = ZoneInfo(zone)
    readings = [wall_clock(first + timedelta(minutes=m), tz) for m in range(0, 181)]
    times = [(r.date(), r.time()) for r in readings]
    assert all(earlier <= later for earlier, later in itertools.pairwise(times))  # never back
    end_of_first = first.astimezone(tz).replace(minute=59, second=59, microsecond=999999)
    for m in (60, 61, 90, 119):  # the second pass
        assert wall_clock(first + timedelta(minutes=m), tz).time() == end_of_first.time()
        assert wall_clock(first + timedelta(minutes=m), tz).date() == first.astimezone(tz).date()
    assert wall_clock(first + timedelta(minutes=120), tz) == (first + timedelta(minutes=120)).astimezone(tz)


def test_any_other_instant_is_the_zones_own_reading() -> None:
    for hours in range(-30, 30):  # the day before, the night the clocks spring forward, ordinary hours
        at = datetime(2026, 3, 8, 10, 0, tzinfo=timezone.utc) + timedelta(hours=hours)
        assert wall_clock(at, LOS_ANGELES) == at.astimezone(LOS_ANGELES)
    assert wall_clock(FALL_BACK + timedelta(minutes=30), LOS_ANGELES).time() == time(1, 30)  # the first pass


@pytest.mark.parametrize(
    ("zone", "today", "opens"),
    [
        # Tuesday in Auckland holds New York's Monday session (03:30-10:00 there): it was skipped for Wednesday's
        ("Pacific/Auckland", date(2026, 11, 24), datetime(2026, 11, 23, 14, 30, tzinfo=timezone.utc)),
        ("Pacific/Auckland", date(2026, 11, 28), datetime(2026, 11, 27, 14, 30, tzinfo=timezone.utc)),  # Friday's
        ("Pacific/Auckland", date(2026, 11, 29), datetime(2026, 11, 30, 14, 30, tzinfo=timezone.utc)),  # a Sunday
        ("America/Los_Angeles", date(2026, 11, 23), datetime(2026, 11, 23, 14, 30, tzinfo=timezone.utc)),
        ("Asia/Tokyo", date(2026, 11, 24), datetime(2026, 11, 24, 14, 30, tzinfo=timezone.utc)),  # 23:30 there
    ],
)
def test_a_first_simulated_day_is_the_session_that_opens_on_today_in_the_zone(zone: str, today: date,
                                                                              opens: datetime) -> None:  # fmt: skip
    assert default_sim_start(today, ZoneInfo(zone)) == opens


class _CountingZone(ZoneInfo):
    """A zone that counts how often its offset is read: what `wall_clock` costs, without timing anything."""

    readings = 0

    def utcoffset(self, dt: datetime | None) -> timedelta | None:
        type(self).readings += 1
        return super().utcoffset(dt)


def test_the_end_of_a_repeated_hours_first_pass_is_searched_for_once_not_every_tick() -> None:
    """The view reads the wall clock every tick (a budget under a millisecond for ten bots). Through the hour the
    clocks repeat, each reading searched again for the instant the first pass ended: about 40 readings of the zone,
    0.14 ms a tick, for an instant that depends on the zone and the day alone. Found once, each later tick of that
    hour reads the zone a few times, as any other tick does."""
    zone = _CountingZone("America/Los_Angeles")
    first_tick = wall_clock(FALL_BACK + timedelta(minutes=60), zone)
    for minutes in (61, 75, 90, 119):
        _CountingZone.readings = 0
        assert wall_clock(FALL_BACK + timedelta(minutes=minutes), zone) == first_tick
        assert _CountingZone.readings <= 4


def test_a_time_of_day_ending_in_a_line_break_is_not_one() -> None:
    """`$` matches before a final newline: "06:35\n" (a `|` block in YAML) was read as 06:35."""
    assert parse_hhmm("06:35") == time(6, 35)
    for text in ("06:35\n", "06:35 ", "6:35"):
        with pytest.raises(ValueError, match="is not a time of day"):
            parse_hhmm(text)
