"""Quotes through the engine (issue 14, items 1 and 2): a quote with a side at 0, crossed or too wide is no
price, and staleness is judged per symbol for the bots and per open market for the kill switch. On the
simulated exchange, and through the real alpaca-py clients against the emulator where the wire's shape matters
(`bp: 0`, each quote's own `t`)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta, timezone

import pytest

from engine.brokers.emulator import Emulator
from engine.brokers.sim.exchange import QuoteMode, SimExchange
from engine.brokers.snapshot import SnapshotBroker
from engine.core.clock import ManualClock
from engine.core.store import SYSTEM_SCOPE
from tests.brokers.conftest import KEY, SECRET, make_api
from tests.conftest import ProjectCopy
from tests.trading.conftest import Rig, make_rig

STOCKS = ("AAPL", "SPY", "QQQ")


def failed_checks(rig: Rig, bot: str) -> set[str]:
    return {c for e in rig.events("preflight") if e["bot"] == bot for c in e["failed"]}


def entries(rig: Rig, bot: str) -> list[str]:
    return [r.symbol for r in rig.store.orders(bot_id=bot) if r.purpose == "entry"]


def halts(rig: Rig) -> list[str]:
    return [h.reason for h in rig.store.halts(SYSTEM_SCOPE)]


@contextmanager
def emulated_rig(project: ProjectCopy, clock: ManualClock) -> Iterator[Rig]:
    """An engine speaking to the emulator through the real alpaca-py clients."""
    exchange = SimExchange(clock, seed=7)
    with Emulator(exchange, key=KEY, secret=SECRET) as emulator:
        yield make_rig(project, clock, broker=SnapshotBroker(make_api(emulator, clock), clock), exchange=exchange)


# --- item 1: a quote that is not a price ----------------------------------------------------------------------


@pytest.mark.parametrize("mode", [QuoteMode(no_bid=True), QuoteMode(no_ask=True), QuoteMode(crossed=True)])
def test_a_quote_that_is_not_a_price_blocks_its_bot_and_enters_no_history(rig: Rig, mode: QuoteMode) -> None:
    rig.exchange.set_quote_mode("AAPL", mode)
    rig.ticks(240)  # 09:30 to 09:50 New York: mom_AAPL's window opened at 09:35
    assert "quotes_usable" in failed_checks(rig, "mom_AAPL") and entries(rig, "mom_AAPL") == []
    assert "AAPL" not in rig.engine._history  # no mid was computed from it
    assert "quotes_usable" not in failed_checks(rig, "crypto_core") and entries(rig, "crypto_core")  # the others trade
    assert halts(rig) == []


def test_when_the_bid_comes_back_no_move_is_seen(rig: Rig) -> None:
    """Alpaca's `bp: 0` made the mid half the ask; when the bid came back the +100 % 'move' fired an entry."""
    rig.ticks(60)
    rig.exchange.set_quote_mode("AAPL", QuoteMode(no_bid=True))
    rig.ticks(30)
    rig.exchange.set_quote_mode("AAPL", None)
    rig.ticks(2)
    mid = rig.exchange.quote("AAPL").ask
    assert all(abs(price / mid - 1) < 0.02 for price in rig.engine._history["AAPL"])


def test_a_spread_beyond_health_max_spread_pct_is_not_a_price(project: ProjectCopy, clock: ManualClock) -> None:
    # the simulated stocks trade 0.02 % wide, the coins 0.05 %: a 0.03 % limit leaves only the stocks usable
    project.replace("config/settings.yaml", "max_spread_pct: 1.0", "max_spread_pct: 0.03")
    rig = make_rig(project, clock)
    rig.ticks(240)
    assert "quotes_usable" in failed_checks(rig, "crypto_core") and entries(rig, "crypto_core") == []
    assert "BTC/USD" not in rig.engine._history and "AAPL" in rig.engine._history
    assert "quotes_usable" not in failed_checks(rig, "mom_AAPL")


def test_a_quote_with_bp_0_through_alpaca_py_is_not_a_price(project: ProjectCopy, clock: ManualClock) -> None:
    with emulated_rig(project, clock) as rig:
        rig.exchange.set_quote_mode("AAPL", QuoteMode(no_bid=True))
        rig.ticks(100)
        assert "quotes_usable" in failed_checks(rig, "mom_AAPL") and entries(rig, "mom_AAPL") == []
        assert "AAPL" not in rig.engine._history and "SPY" in rig.engine._history


# --- item 2: staleness per symbol, per market ----------------------------------------------------------------


def test_one_thin_ticker_blocks_its_own_bot_and_halts_nothing(rig: Rig, clock: ManualClock) -> None:
    rig.exchange.set_quote_mode("AAPL", QuoteMode(frozen_at=clock.now() - timedelta(minutes=5)))
    rig.ticks(240)
    assert halts(rig) == [] and rig.engine.system.state == "armed"
    assert "quotes_fresh" in failed_checks(rig, "mom_AAPL") and entries(rig, "mom_AAPL") == []
    assert "quotes_fresh" not in failed_checks(rig, "opt_core") and entries(rig, "opt_core")


def test_a_stale_stock_feed_in_an_open_market_halts(rig: Rig, clock: ManualClock) -> None:
    rig.ticks(2)
    for symbol in STOCKS:
        rig.exchange.set_quote_mode(symbol, QuoteMode(frozen_at=clock.now()))
    rig.ticks(5)  # 20 s later: older than the 15 s limit
    assert halts(rig) == ["kill condition: data_stale_halt (stale_markets 1: stocks)"]


def test_stock_quotes_going_stale_after_the_close_do_not_halt_crypto(project: ProjectCopy) -> None:
    clock = ManualClock(datetime(2026, 11, 23, 20, 50, tzinfo=timezone.utc))  # 15:50 New York
    rig = make_rig(project, clock)
    rig.ticks(120)  # to 16:00
    for symbol in STOCKS:
        rig.exchange.set_quote_mode(symbol, QuoteMode(frozen_at=clock.now()))
    rig.ticks(720)  # an hour after the close
    assert halts(rig) == [] and rig.engine.system.state == "armed"
    assert [r for r in rig.store.orders(bot_id="crypto_core") if r.created_at > clock.now() - timedelta(minutes=60)]


def test_a_reference_symbol_judges_the_stock_feed(project: ProjectCopy, clock: ManualClock) -> None:
    project.replace("config/settings.yaml", "  # reference_symbols: {stocks: SPY}", "  reference_symbols: {stocks: IWM}")
    rig = make_rig(project, clock)
    assert "IWM" in rig.engine.needs.stocks  # quoted every tick although no bot trades it
    for symbol in ("AAPL", "QQQ"):  # thin: stale, but the reference is fresh
        rig.exchange.set_quote_mode(symbol, QuoteMode(frozen_at=clock.now() - timedelta(minutes=5)))
    rig.ticks(20)
    assert halts(rig) == []
    rig.exchange.set_quote_mode("IWM", QuoteMode(frozen_at=clock.now()))
    rig.ticks(5)
    assert halts(rig) == ["kill condition: data_stale_halt (stale_markets 1: stocks)"]


def test_a_thin_ticker_through_alpaca_py_halts_nothing(project: ProjectCopy, clock: ManualClock) -> None:
    with emulated_rig(project, clock) as rig:
        rig.exchange.set_quote_mode("QQQ", QuoteMode(frozen_at=clock.now() - timedelta(minutes=5)))  # its own `t`
        rig.ticks(130)  # 09:40:50: opt_core's window is open
        assert halts(rig) == [] and rig.engine.system.state == "armed"
        assert "quotes_fresh" in failed_checks(rig, "opt_core")  # QQQ is one of its underlyings
        assert "quotes_fresh" not in failed_checks(rig, "mom_AAPL")
