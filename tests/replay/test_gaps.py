"""with_gap_ticks: the instants a live run ticks at in a hole of the data, and only those (a data set without a
hole ticks as before: the bench's figures and every earlier backtest's trades depend on that)."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from engine.core.calendar import market_calendar
from engine.data.dataset import Frame, FrameRows
from engine.replay.gaps import markets_traded, with_gap_ticks

MINUTE = timedelta(minutes=1)
OPEN = datetime(2026, 11, 23, 14, 30, tzinfo=timezone.utc)  # Monday 09:30 New York


def frame(at: datetime) -> Frame:
    return Frame(at, FrameRows({}), FrameRows({}), ("AAPL",), ())


def ticked(instants: list[datetime], *, crypto: bool = False, stocks: bool = True) -> list[datetime]:
    frames = with_gap_ticks(iter([frame(at) for at in instants]), MINUTE, crypto=crypto, stocks=stocks,
                            calendar=market_calendar())  # fmt: skip
    return [f.at for f in frames]


def session(day_open: datetime, minutes: int = 390) -> list[datetime]:
    return [day_open + MINUTE * (i + 1) for i in range(minutes)]  # each bar known a minute after its stamp


def test_data_without_a_hole_ticks_as_before() -> None:
    """Two whole sessions: nothing added, not at 09:30 (the first bar is known at 09:31), not after the close,
    not overnight."""
    instants = session(OPEN) + session(OPEN + timedelta(days=1))
    assert ticked(instants) == instants


def test_a_hole_inside_the_session_is_ticked_through() -> None:
    instants = session(OPEN)
    holed = instants[:60] + instants[80:]
    frames = with_gap_ticks(iter([frame(at) for at in holed]), MINUTE, crypto=False, stocks=True, calendar=market_calendar())
    out = list(frames)
    assert [f.at for f in out] == instants
    added = [f for f in out if f.at not in holed]
    assert len(added) == 20 and all(not f.new_bars and not f.new_quotes for f in added)
    assert frames.added == 20 and frames.first_added == instants[60]


def test_a_missing_session_ticks_from_one_bar_after_its_open_to_its_close() -> None:
    """Monday, then Wednesday: Tuesday's session is ticked as a live run would have (and halts there), from 09:31
    to 15:59, the close's own instant excluded as at every close."""
    monday, wednesday = session(OPEN), session(OPEN + timedelta(days=2))
    out = ticked(monday + wednesday)
    tuesday = session(OPEN + timedelta(days=1))[:-1]
    assert out == monday + tuesday + wednesday


def test_a_hole_over_a_closed_market_adds_nothing_for_stocks_and_every_minute_for_coins() -> None:
    saturday = datetime(2026, 11, 28, 12, 0, tzinfo=timezone.utc)
    instants = [saturday, saturday + 10 * MINUTE]
    assert ticked(instants) == instants
    assert ticked(instants, crypto=True) == [saturday + i * MINUTE for i in range(11)]
    assert ticked(instants, crypto=False, stocks=False) == instants


def test_the_markets_of_the_bots_symbols() -> None:
    assert markets_traded(["AAPL"]) == (False, True)
    assert markets_traded(["BTC/USD"]) == (True, False)
    assert markets_traded(["BTC/USD", "SPY261120C00500000"]) == (True, True)
