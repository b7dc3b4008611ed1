"""The replay exchange: the fill model on bars and quotes, commissions and fees, the calendar's hours, prices' age."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from engine.brokers.base import OrderRequest
from engine.brokers.sim.exchange import SimReject
from engine.core.calendar import market_calendar
from engine.core.clock import ManualClock
from engine.data.dataset import DataSet
from engine.data.files import write_bars, write_quotes
from engine.data.records import Bar, Quote
from engine.replay.exchange import ReplayExchange
from engine.replay.feed import FramePrices
from engine.replay.fills import FillModel
from tests.replay.conftest import MONDAY_OPEN

MINUTE = timedelta(minutes=1)


class Rig:
    def __init__(self, folder: Path, model: FillModel | None = None, cash: float = 100_000.0):
        data = DataSet.open(folder)
        self.frames = data.frames(bars_known_after=MINUTE)
        self.feed = FramePrices(MINUTE, calendar=market_calendar())
        first = next(self.frames)
        self.feed.advance(first)
        self.clock = ManualClock(first.at)
        self.exchange = ReplayExchange(self.clock, starting_cash=cash, prices=self.feed, fill_model=model or FillModel())

    def step(self) -> None:
        frame = next(self.frames)
        self.feed.advance(frame)
        self.clock.set(frame.at)
        self.exchange.process()

    def order(self, cid: str, side: str = "buy", **fields: object) -> str:
        request = OrderRequest("AAPL", side, cid, **fields)  # type: ignore[arg-type]
        return self.exchange.submit(request).id


def bars(folder: Path, symbol: str = "AAPL", start: datetime = MONDAY_OPEN) -> None:
    rows = [Bar(start, 100.0, 100.5, 99.5, 100.2, 1e4), Bar(start + MINUTE, 100.4, 101.0, 99.0, 100.8, 1e4),
            Bar(start + 2 * MINUTE, 100.9, 101.2, 100.1, 101.0, 1e4), Bar(start + 3 * MINUTE, 101.0, 101.4, 98.0, 98.5, 1e4)]  # fmt: skip
    write_bars(folder, symbol, rows, fsync=False)


def test_a_market_order_fills_at_the_next_bar_open_with_slippage(tmp_path: Path) -> None:
    bars(tmp_path)
    rig = Rig(tmp_path, FillModel(slippage_bps=10, commission_per_share=0.01))
    order_id = rig.order("buy-1", qty=10)  # at 09:31, knowing the 09:30 bar (close 100.2)
    assert rig.exchange.find(order_id).status == "pending_new"  # answered, not filled
    rig.step()  # 09:32: the 09:31 bar, which opened at 100.4
    filled = rig.exchange.find(order_id)
    assert filled.status == "filled" and filled.filled_avg_price == pytest.approx(100.4 * 1.001)
    assert rig.exchange.cash == pytest.approx(100_000 - 10 * 100.4 * 1.001 - 0.10)
    assert rig.exchange.fees["buy-1"] == pytest.approx(0.10)


def test_a_limit_order_fills_when_the_bar_range_reaches_it(tmp_path: Path) -> None:
    bars(tmp_path)
    rig = Rig(tmp_path)
    low = rig.order("buy-low", qty=5, order_type="limit", limit_price=98.5)
    through = rig.order("buy-through", qty=5, order_type="limit", limit_price=101.0)
    rig.step()  # the 09:31 bar: 100.4 to 101.0, low 99.0
    assert rig.exchange.find(low).status == "new"  # its range never reached 98.5
    assert rig.exchange.find(through).filled_avg_price == 100.4  # it opened below the limit: the open, no slippage
    rig.step()
    rig.step()  # the 09:33 bar's low is 98.0
    assert rig.exchange.find(low).filled_avg_price == 98.5  # at the limit


def test_an_option_limit_priced_from_its_underlying_never_fills_above_its_limit(tmp_path: Path) -> None:
    """The OptionsBot's entry is a limit at the ask it was sized at (entries.plan_entry): a contract with no data of
    its own trades at the simulator's quote, and only within the limit, never slipped past it."""
    bars(tmp_path)
    rig = Rig(tmp_path, FillModel(slippage_bps=50))
    occ = "AAPL261218C00100000"
    ask = rig.exchange.quote(occ).ask
    under = rig.exchange.submit(OrderRequest(occ, "buy", "under", "limit", "day", qty=1, limit_price=round(ask * 0.5, 2))).id
    at = rig.exchange.submit(OrderRequest(occ, "buy", "at", "limit", "day", qty=1, limit_price=round(ask + 1.0, 2))).id
    rig.step()  # AAPL's next bar: the contract's quote moves with it
    assert rig.exchange.find(under).status == "new"
    filled = rig.exchange.find(at)
    assert filled.status == "filled" and filled.filled_avg_price is not None
    assert filled.filled_avg_price == rig.exchange.quote(occ).ask <= round(ask + 1.0, 2)  # the ask, no slippage


def test_submit_timing_fills_at_the_standing_quote_as_the_simulator(tmp_path: Path) -> None:
    write_quotes(tmp_path, "AAPL", [Quote(MONDAY_OPEN, 99.9, 100.1), Quote(MONDAY_OPEN + MINUTE, 100.9, 101.1)], fsync=False)
    rig = Rig(tmp_path, FillModel(timing="submit", slippage_bps=0))
    assert rig.exchange.find(rig.order("now", qty=1)).filled_avg_price == 100.1
    nxt = Rig(tmp_path, FillModel(timing="next", slippage_bps=0))
    waiting = nxt.order("next", qty=1)
    nxt.step()
    assert nxt.exchange.find(waiting).filled_avg_price == 101.1  # the next quote's ask


def test_crypto_pays_the_maker_or_taker_fee_of_the_model(tmp_path: Path) -> None:
    start = datetime(2026, 11, 22, 3, 0, tzinfo=timezone.utc)  # a Sunday night: crypto trades, stocks do not
    write_bars(tmp_path, "BTC/USD", [Bar(start + i * MINUTE, 60_000.0, 60_100.0, 59_900.0, 60_000.0, 1.0) for i in range(3)],
               fsync=False)  # fmt: skip
    rig = Rig(tmp_path, FillModel(slippage_bps=0, crypto_taker_fee=0.01))
    order = rig.exchange.submit(OrderRequest("BTC/USD", "buy", "coin", "market", "gtc", notional=1_000.0))
    rig.step()
    filled = rig.exchange.find(order.id)
    assert filled.status == "filled" and rig.exchange.positions["BTC/USD"].qty == pytest.approx(filled.filled_qty * 0.99)
    assert filled.filled_avg_price == 60_000.0  # the next bar's open, no slippage
    assert rig.exchange.fees["coin"] == pytest.approx(0.01 * filled.filled_qty * 60_000.0)  # the taker fee, in dollars
    assert not rig.exchange.market_clock().is_open


def test_market_hours_come_from_the_calendar(tmp_path: Path) -> None:
    thanksgiving = datetime(2026, 11, 26, 15, 0, tzinfo=timezone.utc)
    bars(tmp_path, start=thanksgiving)
    rig = Rig(tmp_path)
    clock = rig.exchange.market_clock()
    assert not clock.is_open and clock.next_open == datetime(2026, 11, 27, 14, 30, tzinfo=timezone.utc)
    assert clock.next_close == datetime(2026, 11, 27, 18, 0, tzinfo=timezone.utc)  # the day after closes at 13:00
    order_id = rig.order("holiday", qty=1)
    rig.step()
    assert rig.exchange.find(order_id).status == "accepted"  # the market is closed: no fill


def test_prices_and_their_age(tmp_path: Path) -> None:
    bars(tmp_path)
    write_bars(tmp_path, "MSFT", [Bar(MONDAY_OPEN + i * MINUTE, 400.0, 400.0, 400.0, 400.0, 1.0) for i in range(12)], fsync=False)
    rig = Rig(tmp_path)
    quote = rig.exchange.quote("AAPL")
    assert (quote.bid, quote.ask) == (round(100.2 * (1 - 0.0001), 4), round(100.2 * (1 + 0.0001), 4))  # the sim's spread
    assert quote.timestamp == MONDAY_OPEN + MINUTE
    for _ in range(8):
        rig.step()  # AAPL's last bar (09:33) is known at 09:34; at 09:39 it is 5 minutes old, then older
    assert rig.clock.now() == MONDAY_OPEN + 9 * MINUTE
    assert rig.exchange.quote("AAPL").timestamp == rig.clock.now()
    rig.step()
    assert rig.exchange.quote("AAPL").timestamp == MONDAY_OPEN + 4 * MINUTE  # stale: the engine sees its age
    # an option with no data of its own is priced from its underlying; a symbol with no data is not listed
    assert rig.exchange.listed("AAPL261218C00100000") and not rig.exchange.listed("TSLA")
    with pytest.raises(SimReject, match="no data for TSLA"):
        rig.feed.price("TSLA", rig.clock.now())


def test_the_fill_model_refuses_nonsense() -> None:
    with pytest.raises(ValueError, match="slippage_bps"):
        FillModel(slippage_bps=-1)
    with pytest.raises(ValueError, match="timing"):
        FillModel(timing="later")  # type: ignore[arg-type]


@pytest.mark.parametrize("after_hours", [True, False], ids=["after-hours-bar", "next-open"])
def test_the_close_is_valued_at_the_last_price_at_or_before_it(tmp_path: Path, after_hours: bool) -> None:
    """Alpaca's last_equity is the equity at 16:00 New York, the daily P&L's basis. The exchange values positions
    at the close at the first step after it, asking the price at the close; the replay answered with its present
    frame: an after-hours bar's price (16:10, at 150) or the next morning's (120), not the 200 AAPL closed at.
    The next day's P&L then read from the wrong basis (the daily-loss kill switch's input)."""
    closing = MONDAY_OPEN + timedelta(hours=6, minutes=20)  # 15:50 New York
    rows = [Bar(closing + i * MINUTE, 200.0, 200.0, 200.0, 200.0, 1e4) for i in range(9)]  # the last known at 15:59
    if after_hours:
        rows.append(Bar(closing + 20 * MINUTE, 150.0, 150.0, 150.0, 150.0, 1e4))  # 16:10, after the close
    tuesday = MONDAY_OPEN + timedelta(days=1)
    rows += [Bar(tuesday, 120.0, 120.0, 120.0, 120.0, 1e4), Bar(tuesday + MINUTE, 120.0, 120.0, 120.0, 120.0, 1e4)]
    write_bars(tmp_path, "AAPL", rows, fsync=False)
    rig = Rig(tmp_path, FillModel(slippage_bps=0))
    rig.order("hold", qty=10)
    rig.step()  # 15:52: filled at 200
    assert rig.exchange.positions["AAPL"].qty == 10
    cash = rig.exchange.cash
    while rig.clock.now() < tuesday + MINUTE:
        rig.step()
    account = rig.exchange.account()
    assert account.last_equity == pytest.approx(cash + 10 * 200.0)  # Monday's close, at 200
    assert account.equity - account.last_equity == pytest.approx(10 * (120.0 - 200.0))  # Tuesday's P&L from it
