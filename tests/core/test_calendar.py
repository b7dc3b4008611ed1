"""The exchange calendar: NYSE's holidays, early closes, weekends and DST changes, answered without asking again."""

from __future__ import annotations

import subprocess
import sys
from datetime import date, datetime, timedelta, timezone
from typing import Any

import pytest

from engine.core.calendar import NEW_YORK, MarketCalendar, Session, market_calendar
from engine.paths import PROJECT_ROOT


def ny(year: int, month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0, micro: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, second, micro, tzinfo=NEW_YORK)


def utc(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=timezone.utc)


@pytest.fixture(scope="module")
def calendar() -> MarketCalendar:
    return MarketCalendar(start=date(2025, 1, 1), end=date(2027, 12, 31))


def test_thanksgiving_2026_is_closed_all_day(calendar: MarketCalendar) -> None:
    assert not calendar.is_open(ny(2026, 11, 26, 12, 0))
    assert calendar.session(date(2026, 11, 26)) is None and not calendar.is_trading_day(date(2026, 11, 26))
    assert date(2026, 11, 26) in calendar.holidays(date(2026, 11, 1), date(2026, 11, 30))
    assert calendar.next_open(ny(2026, 11, 25, 17, 0)) == ny(2026, 11, 27, 9, 30)


def test_the_day_after_thanksgiving_closes_at_13_00(calendar: MarketCalendar) -> None:
    session = calendar.session(date(2026, 11, 27))
    assert session == Session(date(2026, 11, 27), utc(2026, 11, 27, 14, 30), utc(2026, 11, 27, 18, 0), early_close=True)
    assert calendar.is_open(ny(2026, 11, 27, 12, 59, 59))
    assert not calendar.is_open(ny(2026, 11, 27, 13, 0))
    assert calendar.next_close(ny(2026, 11, 27, 10, 0)) == ny(2026, 11, 27, 13, 0)
    assert calendar.session(date(2026, 11, 25)).early_close is False  # type: ignore[union-attr]


def test_a_session_is_open_from_its_open_included_to_its_close_excluded(calendar: MarketCalendar) -> None:
    assert not calendar.is_open(ny(2026, 11, 23, 9, 29, 59, 999999))
    assert calendar.is_open(ny(2026, 11, 23, 9, 30))
    assert calendar.is_open(ny(2026, 11, 23, 15, 59, 59, 999999))
    assert not calendar.is_open(ny(2026, 11, 23, 16, 0))
    assert calendar.session_at(ny(2026, 11, 23, 12, 0)) == calendar.session(date(2026, 11, 23))
    assert calendar.session_at(ny(2026, 11, 23, 16, 0)) is None


def test_weekends_are_closed_and_the_next_open_is_monday(calendar: MarketCalendar) -> None:
    saturday = ny(2026, 11, 28, 12, 0)
    assert not calendar.is_open(saturday) and not calendar.is_open(ny(2026, 11, 29, 12, 0))
    assert calendar.next_open(saturday) == ny(2026, 11, 30, 9, 30)
    assert calendar.next_close(saturday) == ny(2026, 11, 30, 16, 0)
    assert calendar.previous_close(saturday) == ny(2026, 11, 27, 13, 0)
    assert calendar.holidays(date(2026, 11, 28), date(2026, 11, 29)) == []  # a weekend is not a holiday


def test_while_open_the_next_open_is_the_next_sessions_as_alpacas_clock_says(calendar: MarketCalendar) -> None:
    assert calendar.next_open(ny(2026, 11, 23, 10, 0)) == ny(2026, 11, 24, 9, 30)
    assert calendar.next_close(ny(2026, 11, 23, 10, 0)) == ny(2026, 11, 23, 16, 0)
    assert calendar.next_open(ny(2026, 11, 23, 9, 30)) == ny(2026, 11, 24, 9, 30)  # the open itself is not "next"


@pytest.mark.parametrize(("before", "after", "before_utc", "after_utc"), [
    (date(2026, 3, 6), date(2026, 3, 9), 14, 13),  # DST starts Sunday 2026-03-08: 09:30 New York is an hour earlier in UTC
    (date(2026, 10, 30), date(2026, 11, 2), 13, 14),  # DST ends Sunday 2026-11-01
])
def test_the_open_stays_at_09_30_new_york_across_a_dst_change(calendar: MarketCalendar, before: date, after: date,
                                                               before_utc: int, after_utc: int) -> None:
    first, second = calendar.session(before), calendar.session(after)
    assert first is not None and second is not None
    assert (first.open.hour, second.open.hour) == (before_utc, after_utc)
    assert first.open.astimezone(NEW_YORK).time() == second.open.astimezone(NEW_YORK).time() == datetime(1, 1, 1, 9, 30).time()
    assert calendar.next_open(ny(before.year, before.month, before.day, 17)) == ny(after.year, after.month, after.day, 9, 30)
    assert calendar.is_open(utc(after.year, after.month, after.day, after_utc, 30))
    assert not calendar.is_open(utc(after.year, after.month, after.day, after_utc, 29))


def test_trading_days_and_holidays_of_a_range(calendar: MarketCalendar) -> None:
    november = calendar.trading_days(date(2026, 11, 1), date(2026, 11, 30))
    assert len(november) == 20 and november[0] == date(2026, 11, 2) and november[-1] == date(2026, 11, 30)
    assert [s.day for s in calendar.sessions(date(2026, 11, 25), date(2026, 11, 30))] == [date(2026, 11, 25), date(2026, 11, 27),
                                                                                          date(2026, 11, 30)]
    assert calendar.holidays(date(2026, 1, 1), date(2026, 12, 31)) == [
        date(2026, 1, 1), date(2026, 1, 19), date(2026, 2, 16), date(2026, 4, 3), date(2026, 5, 25),
        date(2026, 6, 19), date(2026, 7, 3), date(2026, 9, 7), date(2026, 11, 26), date(2026, 12, 25),
    ]


def test_naive_instants_are_refused(calendar: MarketCalendar) -> None:
    with pytest.raises(ValueError, match="naive"):
        calendar.is_open(datetime(2026, 11, 23, 12, 0))
    with pytest.raises(ValueError, match="naive"):
        calendar.next_open(datetime(2026, 11, 23, 12, 0))


def test_each_tick_is_answered_from_the_precomputed_span(calendar: MarketCalendar, monkeypatch: pytest.MonkeyPatch) -> None:
    calendar.is_open(ny(2026, 11, 23, 12, 0))

    def never(*_: object) -> None:
        raise AssertionError("exchange-calendars asked again")

    monkeypatch.setattr(calendar, "_read", never)
    start = ny(2026, 1, 2, 0, 0)
    instants = [start + timedelta(minutes=m) for m in range(0, 60 * 24 * 364, 7)]
    opened = [at for at in instants if calendar.is_open(at)]
    by_day = {s.day: s for s in calendar.sessions(date(2026, 1, 2), date(2026, 12, 31))}
    assert opened == [at for at in instants if (s := by_day.get(at.date())) is not None and s.open <= at < s.close]
    assert 13_000 < len(opened) < 14_100  # about 250 sessions of 390 minutes, sampled every 7 minutes


def test_a_question_outside_the_span_widens_it_once(monkeypatch: pytest.MonkeyPatch) -> None:
    calendar = MarketCalendar(start=date(2026, 11, 1), end=date(2026, 12, 31))
    reads: list[tuple[date, date]] = []
    read = calendar._read

    def counted(first: date, last: date) -> Any:
        reads.append((first, last))
        return read(first, last)

    monkeypatch.setattr(calendar, "_read", counted)
    assert calendar.is_open(ny(2026, 11, 23, 12, 0)) and reads == []
    assert calendar.is_open(ny(2001, 9, 10, 12, 0)) and not calendar.is_open(ny(2001, 9, 11, 12, 0))  # closed after 9/11
    assert len(reads) == 1
    assert not calendar.is_open(ny(2001, 9, 14, 12, 0)) and calendar.is_open(ny(2026, 11, 24, 12, 0)) and len(reads) == 1
    assert calendar.next_open(ny(2026, 11, 30, 17, 0)) == ny(2026, 12, 1, 9, 30) and len(reads) == 1


def test_one_calendar_per_exchange_for_the_process() -> None:
    assert market_calendar() is market_calendar("XNYS")


def test_validation_imports_neither_the_calendar_nor_pyarrow() -> None:
    run = subprocess.run([sys.executable, "-X", "importtime", "-m", "engine", "--validate"], cwd=PROJECT_ROOT,
                         capture_output=True, text=True, timeout=60, check=False)
    assert run.returncode == 0, run.stdout + run.stderr
    imported = {line.rsplit("|", 1)[-1].strip() for line in run.stderr.splitlines() if line.startswith("import time:")}
    assert "engine.config" in imported  # the list is real
    assert not {name for name in imported if name.split(".")[0] in ("pyarrow", "exchange_calendars", "pandas")}


def test_the_shipped_xnys_table_is_exchange_calendars_own_answer() -> None:
    # The table (engine/core/xnys_sessions.py) stands in for exchange-calendars inside its years; it must give
    # every session, hour and early close that the installed exchange-calendars gives. When this fails after an
    # upgrade, run tools/make_xnys_sessions.py.
    from engine.core import xnys_sessions as table

    from_table = MarketCalendar(start=table.FIRST, end=table.LAST)
    from_library = MarketCalendar(start=table.FIRST, end=table.LAST, table=False)
    first, last = table.FIRST + timedelta(days=1), table.LAST - timedelta(days=1)  # inside: nothing is read again
    sessions = from_table.sessions(first, last)
    assert from_table._table and not from_library._table
    assert sessions == from_library.sessions(first, last) and len(sessions) > 9000


def test_a_span_past_the_table_is_read_from_exchange_calendars() -> None:
    from engine.core import xnys_sessions as table

    beyond = table.LAST + timedelta(days=400)
    calendar = MarketCalendar(start=table.LAST - timedelta(days=30), end=beyond)
    sessions = calendar.sessions(table.LAST - timedelta(days=30), beyond)
    assert sessions[-1].day > table.LAST and all(s.day.weekday() < 5 for s in sessions)


@pytest.mark.parametrize(
    ("today", "opens"),
    [
        (date(2026, 11, 23), ny(2026, 11, 23, 9, 30)),  # a Monday: its own open
        (date(2026, 11, 28), ny(2026, 11, 30, 9, 30)),  # a Saturday: Monday's
        (date(2026, 11, 26), ny(2026, 11, 27, 9, 30)),  # Thanksgiving: the next day's (which closes at 13:00)
        (date(2026, 12, 25), ny(2026, 12, 28, 9, 30)),  # Christmas, a Friday: the Monday after
    ],
)
def test_a_simulated_day_starts_at_the_first_session_on_or_after_today(today: date, opens: datetime) -> None:
    from engine.core.clock import default_sim_start

    assert default_sim_start(today) == opens


@pytest.mark.parametrize("year", [1, 9999, 2300])
def test_an_instant_the_calendar_cannot_cover_is_a_value_error_naming_the_span(year: int) -> None:
    """Near year 1 or 9999 the span's margins left the dates Python has (an OverflowError, a traceback at the CLI);
    past 2262 pandas cannot hold the sessions. Each is the one error a caller handles: ValueError."""
    with pytest.raises(ValueError, match="calendar cannot cover"):
        MarketCalendar(table=False).is_open(datetime(year, 6, 1, tzinfo=timezone.utc))
