"""Time that does not flow as it should: a clock set back (an NTP step, a VM restored from a snapshot) halts the
system until it has caught up; a clock in a zone with summer time moves by elapsed seconds, never wall-clock
hours; a start the exchange calendar cannot place is refused."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from itertools import pairwise
from zoneinfo import ZoneInfo

import pytest

from engine.core.clock import FollowingClock, ManualClock, parse_start
from engine.core.store import SYSTEM_SCOPE
from tests.trading.conftest import Rig

NEW_YORK = ZoneInfo("America/New_York")


def clock_events(rig: Rig) -> list[dict[str, object]]:
    return [e for e in rig.events("anomaly") if e.get("what") == "clock_backwards"]


def test_a_clock_set_back_halts_until_it_has_caught_up(rig: Rig) -> None:
    rig.ticks(20)
    assert rig.engine.system.state == "armed"
    latest = rig.clock.now() - timedelta(seconds=5)  # the last tick's time
    rig.clock.set(latest - timedelta(seconds=12))  # within the quotes' staleness limit: only the clock is wrong
    rig.ticks(1)
    assert rig.engine.system.state == "halted"
    [halt] = rig.store.halts(SYSTEM_SCOPE)
    assert halt.conditions == ("clock_backwards",) and halt.until == latest
    assert halt.reason.startswith("the clock went back 12.0 s")
    assert [e["behind_s"] for e in clock_events(rig)] == [12.0]
    rig.ticks(1)  # still behind: the anomaly logged once, the halt written once, no entry
    assert len(clock_events(rig)) == 1 and len(rig.store.halts(SYSTEM_SCOPE)) == 1
    rig.until(lambda r: r.engine.system.state == "armed", limit=20)  # caught up: the halt ends, preflight re-arms
    assert rig.clock.now() < latest + timedelta(minutes=1)  # seconds, not a kill switch's cooloff of hours
    assert rig.store.halts(SYSTEM_SCOPE)[0].ended_at is not None


def test_a_clock_set_far_back_halts_and_sends_no_entry_while_behind(rig: Rig) -> None:
    """Ten minutes back: the clock's own halt, and the quotes now stamped ahead of it are stale too."""
    rig.ticks(20)
    latest = rig.clock.now() - timedelta(seconds=5)
    rig.clock.set(latest - timedelta(minutes=10))
    rig.ticks(1)
    assert rig.engine.system.state == "halted"
    assert "clock_backwards" in {c for h in rig.store.halts(SYSTEM_SCOPE) for c in h.conditions}
    sent = len(rig.store.orders())
    rig.ticks(100)  # still behind: no entry goes out, the anomaly is logged once
    assert len(clock_events(rig)) == 1
    assert all(r.purpose == "exit" for r in rig.store.orders()[sent:])
    assert rig.engine.exitbot.clock_behind(latest + timedelta(seconds=1)) is None  # caught up


def test_a_small_step_back_is_tolerated(rig: Rig) -> None:
    rig.ticks(5)
    rig.clock.advance(-5.9)  # the next tick 0.9 s before the last one
    rig.ticks(5)
    assert rig.engine.system.state == "armed" and clock_events(rig) == []


def test_a_clock_behind_the_state_files_last_tick_is_seen_after_a_restart(rig: Rig) -> None:
    rig.ticks(10)
    rig.clock.advance(-3600)
    restarted = rig.restart()
    restarted.ticks(1)
    assert restarted.engine.system.state == "halted"
    assert [e["behind_s"] for e in clock_events(restarted)] == [3595.0]


def test_a_position_opened_after_the_clock_halts_after_a_restart(rig: Rig) -> None:
    """A fill is written at its tick's time, so no position opens after the last tick. One dated a year ahead (a
    hand edit, a clock set back between two runs) had a negative age, and its time stop never fired: it counts as
    the latest time the file holds, and the clock behind it halts the system as behind the last tick does."""
    rig.ticks(10)
    ahead = rig.clock.now() + timedelta(days=365)
    rig.store.set_position("mom_AAPL", "AAPL", 1.0, 100.0, ahead)
    restarted = rig.restart()
    assert restarted.engine.exitbot.clock_behind(restarted.clock.now()) is not None
    restarted.ticks(1)
    [halt] = [h for h in restarted.store.halts(SYSTEM_SCOPE) if "clock_backwards" in h.conditions]
    assert halt.until == ahead and halt.ended_at is None


def test_the_simulated_day_does_not_roll_back(rig: Rig) -> None:
    """A simulated clock set back over midnight New York must not start the day again: `last_equity` (the base
    of the daily P&L and its loss limit) would be reset from the equity of the moment."""
    rig.ticks(1)
    exchange = rig.exchange
    exchange.last_equity = 123_456.0
    day = exchange._day
    rig.clock.set(rig.clock.now() - timedelta(days=1))
    exchange.process()
    assert exchange._day == day and exchange.last_equity == 123_456.0
    rig.clock.set(rig.clock.now() + timedelta(days=2))
    exchange.process()
    assert exchange._day == day + timedelta(days=1) and exchange.last_equity != 123_456.0


@pytest.mark.parametrize(
    ("start", "elapsed"),
    [
        (datetime(2027, 3, 14, 1, 59, 55, tzinfo=NEW_YORK), 3600),  # springs forward at 02:00
        (datetime(2026, 11, 1, 1, 59, 55, tzinfo=NEW_YORK), 3600),  # falls back at 02:00
    ],
)
def test_a_manual_clock_moves_by_elapsed_seconds_over_a_change_of_summer_time(start: datetime, elapsed: int) -> None:
    clock = ManualClock(start)
    instants = [clock.now()]
    for _ in range(elapsed // 5):
        instants.append(clock.advance(5))
    steps = {(b - a).total_seconds() for a, b in pairwise(instants)}
    assert steps == {5.0}
    assert clock.now().timestamp() - start.timestamp() == elapsed
    assert clock.now().utcoffset() == timedelta(0)


def test_a_following_clock_starts_where_it_is_told_in_utc() -> None:
    start = datetime(2027, 3, 14, 1, 59, 55, tzinfo=NEW_YORK)
    now = FollowingClock(start).now()
    assert now.tzinfo == timezone.utc and 0 <= (now - start).total_seconds() < 60


def test_a_manual_clock_refuses_a_naive_time() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        ManualClock(datetime(2026, 11, 23, 9, 30))
    clock = ManualClock(datetime(2026, 11, 23, 14, 30, tzinfo=timezone.utc))
    with pytest.raises(ValueError, match="timezone-aware"):
        clock.set(datetime(2026, 11, 23, 9, 30))


@pytest.mark.parametrize(
    "text",
    ["0001-01-01T00:00:00+05:00", "1899-12-31T23:59:59+00:00", "2200-01-01T00:00:00+00:00", "9999-12-31T23:59:59-05:00"],
)
def test_a_start_the_calendar_cannot_place_is_refused(text: str) -> None:
    with pytest.raises(ValueError, match="outside the years 1900 to 2199"):
        parse_start(text)


@pytest.mark.parametrize(
    ("text", "utc"),
    [("2199-12-31T20:00:00-05:00", "2200-01-01T01:00:00+00:00"), ("1900-01-01T00:30:00+01:00", "1899-12-31T23:30:00+00:00")],
)
def test_a_start_whose_offset_carries_it_out_of_the_years_says_so(text: str, utc: str) -> None:
    """Written in 2199 (or 1900), refused as 'outside the years 1900 to 2199': the years are counted in UTC, and
    the message now says where the time falls there."""
    with pytest.raises(ValueError, match="outside the years 1900 to 2199") as caught:
        parse_start(text)
    assert f"is {utc} in UTC, outside the years 1900 to 2199 (counted in UTC)" in str(caught.value)


def test_a_start_inside_the_years_is_taken_as_given() -> None:
    assert parse_start("2040-06-04T09:30:00-04:00") == datetime(2040, 6, 4, 13, 30, tzinfo=timezone.utc)
    assert parse_start("1990-01-03T09:30:00-05:00").utcoffset() == timedelta(hours=-5)
