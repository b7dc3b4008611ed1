"""The replay's quotes for many symbols at once are, value for value, what it answers one symbol at a time."""

from __future__ import annotations

import random
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from engine.brokers.base import Quote
from engine.brokers.sim.exchange import SimExchange, SimReject
from engine.core.calendar import market_calendar
from engine.core.clock import ManualClock
from engine.data.dataset import DataSet, Frame, FrameRows
from engine.data.files import write_bars, write_quotes
from engine.data.records import Bar
from engine.data.records import Quote as Row
from engine.replay.exchange import ReplayExchange
from engine.replay.feed import FramePrices
from tests.replay.conftest import MONDAY_OPEN

MINUTE = timedelta(minutes=1)


def thin_bars(rng: random.Random, start: datetime, minutes: int, keep: float) -> list[Bar]:
    """A bar in `keep` of the minutes: a thin symbol's gaps make its price stale now and then."""
    bars, price = [], rng.uniform(20, 400)
    for m in range(minutes):
        close = round(price * (1 + rng.gauss(0, 0.002)), 2)
        if rng.random() < keep:
            bars.append(Bar(start + m * MINUTE, price, max(price, close), min(price, close), close, 100.0))
        price = close
    return bars


def one_at_a_time(exchange: SimExchange, symbol: str) -> Quote:
    """The quote as `SimExchange.quote` made it before quotes came many at a time."""
    now = exchange.clock.now()
    sides = exchange.paths.quote_sides(symbol, now)
    assert sides is not None
    return Quote(symbol, sides[0], sides[1], exchange.paths.price_time(symbol, now))


def test_bulk_quotes_match_single_quotes_through_sessions_gaps_and_nights(tmp_path: Path) -> None:
    rng = random.Random(5)
    start = MONDAY_OPEN - timedelta(hours=2)  # before the open, over the close, into the night
    minutes = 9 * 60
    for n, keep in enumerate((1.0, 0.5, 0.1, 0.02)):
        write_bars(tmp_path, f"S{chr(65 + n)}", thin_bars(rng, start, minutes, keep), fsync=False)
    write_bars(tmp_path, "BTC/USD", thin_bars(rng, start, minutes, 0.3), fsync=False)
    stamps = sorted(rng.sample(range(minutes * 60), 400))
    write_quotes(tmp_path, "QQ", [Row(start + timedelta(seconds=t), 10.0 + i / 100, 10.02 + i / 100) for i, t in enumerate(stamps)],
                 fsync=False)  # fmt: skip
    data = DataSet.open(tmp_path)
    feed = FramePrices(MINUTE, calendar=market_calendar())
    frames = data.frames(bars_known_after=MINUTE)
    first = next(frames)
    feed.advance(first)
    clock = ManualClock(first.at)
    exchange = ReplayExchange(clock, prices=feed)
    checked = stale = 0
    for frame in frames:
        feed.advance(frame)
        clock.set(frame.at)
        symbols = [s for s in data.symbols if feed.has(s)]
        expected = [one_at_a_time(exchange, s) for s in symbols]
        assert list(exchange.quotes(symbols).values()) == expected
        checked += len(symbols)
        stale += sum(q.timestamp != frame.at for q in expected)
    assert checked > 5000 and stale > 500  # both branches of a bar's age were met


def test_bulk_quotes_of_the_simulator_match_its_one_symbol_formula() -> None:
    clock = ManualClock(datetime(2026, 11, 23, 14, 30, 2, tzinfo=timezone.utc))
    exchange = SimExchange(clock, seed=11)
    few = ["AAPL", "BTC/USD", "SPY"]
    many = [f"X{i:03d}" for i in range(200)] + ["ETH/USD"]  # the vectorised path
    for _ in range(150):
        clock.advance(5)
        for symbols in (few, many):
            got = exchange.quotes(symbols)
            now = clock.now()
            for symbol in symbols:
                mid = exchange.paths.price(symbol, now)
                half = mid * (0.0005 if "/" in symbol else 0.0002) / 2
                assert got[symbol] == Quote(symbol, round(mid - half, 4), round(mid + half, 4), exchange.paths.price_time(symbol, now))


def test_an_earlier_instant_is_answered_from_the_frame_current_then_or_refused(tmp_path: Path) -> None:
    """The exchange asks prices at a session's close after it: the feed answered with its present frame whatever
    the instant asked. It keeps the frame current at the latest close; an instant before that it cannot know is
    an error, never the present price."""
    closing = MONDAY_OPEN + timedelta(hours=6, minutes=28)  # 15:58 New York: known at 15:59
    write_quotes(tmp_path, "QQ", [Row(closing - MINUTE, 9.0, 9.0), Row(closing, 10.0, 10.02),
                                  Row(closing + 3 * MINUTE, 20.0, 20.02)], fsync=False)  # fmt: skip
    write_bars(tmp_path, "AAPL", [Bar(closing, 200.0, 200.0, 200.0, 200.0, 1.0),
                                  Bar(closing + 5 * MINUTE, 150.0, 150.0, 150.0, 150.0, 1.0)], fsync=False)  # fmt: skip
    feed = FramePrices(MINUTE, calendar=market_calendar())
    for frame in DataSet.open(tmp_path).frames(bars_known_after=MINUTE):
        feed.advance(frame)
    close = MONDAY_OPEN + timedelta(hours=6, minutes=30)
    assert feed.at == close + 4 * MINUTE
    assert (feed.price("QQ", close), feed.quote_sides("QQ", close)) == (10.01, (10.0, 10.02))
    assert feed.price("AAPL", close) == 200.0 and feed.price("AAPL", feed.at) == 150.0
    assert feed.quote_sides("QQ", feed.at) == (20.0, 20.02)
    with pytest.raises(SimReject, match="no price is kept for 2026-11-23T20:57:00Z"):
        feed.price("QQ", closing - MINUTE)


def test_an_order_fill_step_is_a_frame_that_brings_a_row_not_every_tick() -> None:
    """A recording's frames are its run's ticks; a tick between two of the simulator's 5-second quotes brought no row.
    Counted a step a frame, the rest of an order the run filled over two quote steps filled a tick early in the
    replay (ticks of 2.5 s), which then made other transitions than the run."""
    feed = FramePrices(MINUTE, calendar=market_calendar())
    steps = []
    for seconds, new in ((0.0, ("AAPL",)), (2.5, ()), (5.0, ("AAPL",)), (7.5, ()), (10.0, ("AAPL",))):
        at = MONDAY_OPEN + timedelta(seconds=seconds)
        feed.advance(Frame(at, FrameRows({}), FrameRows({}), new_bars=(), new_quotes=new))
        steps.append(feed.step_of(at))
    assert steps == [0, 0, 1, 1, 2]
