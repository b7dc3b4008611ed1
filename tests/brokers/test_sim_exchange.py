"""The simulated exchange: the server-side rules, fills, partial fills, expiry, determinism, the chain."""

from __future__ import annotations

import dataclasses
import math
import random
from datetime import datetime, timedelta, timezone

import pytest

from engine.brokers.base import OrderRequest
from engine.brokers.sim import prices
from engine.brokers.sim.exchange import SimExchange, SimReject
from engine.brokers.sim.prices import PricePaths
from engine.brokers.symbols import normalize, occ_symbol, parse_occ
from engine.core.calendar import market_calendar
from engine.core.clock import ManualClock

MONDAY_10AM = datetime(2026, 11, 23, 15, 0, tzinfo=timezone.utc)


def test_prices_are_deterministic_and_independent_of_asking_order() -> None:
    a, b = PricePaths(7, MONDAY_10AM), PricePaths(7, MONDAY_10AM)
    later = MONDAY_10AM + timedelta(hours=2)
    first = a.price("AAPL", later)
    b.price("TSLA", later)
    assert b.price("AAPL", later) == first
    assert PricePaths(8, MONDAY_10AM).price("AAPL", later) != first


def test_paths_trend_enough_for_momentum_signals() -> None:
    paths = PricePaths(7, MONDAY_10AM)
    prices = paths.history("AAPL", MONDAY_10AM + timedelta(hours=6), 6 * 720)
    minute_moves = [abs(prices[i + 12] / prices[i] - 1) * 100 for i in range(0, len(prices) - 12, 12)]
    assert max(minute_moves) > 0.15  # the placeholder's default threshold is 0.10 % a minute


@pytest.mark.parametrize(
    ("request_", "status"),
    [
        (OrderRequest("AAPL", "buy", "x", "limit", "day", notional=100, limit_price=1.0), 422),  # notional stock: market only
        (OrderRequest("AAPL", "buy", "x", "market", "gtc", qty=0.5), 422),  # fractional: day only
        (OrderRequest("BTC/USD", "buy", "x", "market", "day", qty=0.01), 422),  # crypto: gtc/ioc only
        (OrderRequest("AAPL", "buy", "x", qty=1, notional=10), 422),  # both qty and notional
        (OrderRequest("AAPL", "sell", "x", qty=1), 403),  # nothing to sell: no shorting
        (OrderRequest("AAPL", "buy", "x", qty=100_000), 403),  # buying power
    ],
)
def test_server_side_rules(request_: OrderRequest, status: int) -> None:
    exchange = SimExchange(ManualClock(MONDAY_10AM))
    with pytest.raises(SimReject) as caught:
        exchange.submit(request_)
    assert caught.value.status == status


def test_market_order_fills_at_the_ask_and_moves_cash() -> None:
    exchange = SimExchange(ManualClock(MONDAY_10AM))
    ask = exchange.quote("AAPL").ask
    order = exchange.submit(OrderRequest("AAPL", "buy", "a", qty=10))
    assert order.status == "filled" and order.filled_avg_price == pytest.approx(ask)
    assert exchange.cash == pytest.approx(100_000 - 10 * ask)
    assert exchange.position_views()[0].qty == 10


def test_large_order_fills_partially_over_steps() -> None:
    clock = ManualClock(MONDAY_10AM)
    exchange = SimExchange(clock, starting_cash=10_000_000)
    order = exchange.submit(OrderRequest("AAPL", "buy", "big", qty=5_000))
    assert (order.status, order.filled_qty) == ("partially_filled", 2_000)
    clock.advance(5)
    assert exchange.find(order.id).filled_qty == 4_000
    clock.advance(5)
    assert exchange.find(order.id).status == "filled"


def test_orders_wait_for_the_open_and_day_orders_expire_at_the_close() -> None:
    clock = ManualClock(MONDAY_10AM.replace(hour=13))  # 08:00 in New York
    exchange = SimExchange(clock)
    order = exchange.submit(OrderRequest("AAPL", "buy", "early", "limit", "day", qty=1, limit_price=1.0))
    assert order.status == "accepted"
    crypto = exchange.submit(OrderRequest("BTC/USD", "buy", "night", "market", "gtc", notional=50))
    assert crypto.status == "filled"  # crypto trades around the clock
    clock.set(MONDAY_10AM.replace(hour=21, minute=1))  # 16:01 in New York
    assert exchange.find(order.id).status == "expired"


def test_unique_client_order_id() -> None:
    exchange = SimExchange(ManualClock(MONDAY_10AM))
    exchange.submit(OrderRequest("AAPL", "buy", "same", qty=1))
    with pytest.raises(SimReject) as caught:
        exchange.submit(OrderRequest("AAPL", "buy", "same", qty=1))
    assert (caught.value.status, caught.value.code) == (422, 40010001)


def test_option_chain_has_occ_symbols_and_sane_greeks() -> None:
    exchange = SimExchange(ManualClock(MONDAY_10AM))
    chain = exchange.option_chain("SPY", 7, 45)
    assert chain
    for contract in chain:
        assert parse_occ(contract.symbol) == ("SPY", contract.expiry, contract.option_type, contract.strike)
        assert 7 <= (contract.expiry - MONDAY_10AM.date()).days <= 45
        # a Friday, or the week's last trading day when its Friday is a holiday (Christmas 2026: Thursday 12-24)
        later = [contract.expiry + timedelta(days=n) for n in range(1, 5 - contract.expiry.weekday())]
        assert market_calendar().is_trading_day(contract.expiry) and not any(map(market_calendar().is_trading_day, later))
        assert (0 < contract.delta < 1) if contract.option_type == "call" else (-1 < contract.delta < 0)
        assert contract.gamma > 0 and contract.vega > 0 and contract.ask > contract.bid > 0
        if contract.option_type == "call":  # a deep in-the-money European put may gain with time when rates are positive
            assert contract.theta < 0


def test_option_position_value_follows_the_underlying() -> None:
    clock = ManualClock(MONDAY_10AM)
    exchange = SimExchange(clock)
    call = next(c for c in exchange.option_chain("SPY", 7, 45) if c.option_type == "call" and 0.4 < c.delta < 0.6)
    exchange.submit(OrderRequest(call.symbol, "buy", "opt", qty=1))
    spot_before, value_before = exchange.paths.price("SPY", clock.now()), exchange.position_views()[0].market_value
    clock.advance(3600)
    spot_after, value_after = exchange.paths.price("SPY", clock.now()), exchange.position_views()[0].market_value
    assert (value_after - value_before) * (spot_after - spot_before) > 0


def test_symbols() -> None:
    assert normalize("BTCUSD", "crypto") == "BTC/USD" and normalize("AAPL", "us_equity") == "AAPL"
    assert occ_symbol("SPY", datetime(2026, 12, 4).date(), "call", 500) == "SPY261204C00500000"
    assert parse_occ("AAPL") is None


def test_crypto_fees_come_out_of_what_is_received() -> None:
    exchange = SimExchange(ManualClock(MONDAY_10AM))
    order = exchange.submit(OrderRequest("BTC/USD", "buy", "c1", "market", "gtc", qty=0.01))
    assert order.filled_qty == 0.01  # the order reports the gross quantity, as Alpaca's does
    assert exchange.position_views()[0].qty == pytest.approx(0.01 * (1 - 0.0025))


def test_answers_built_without_init_are_the_dataclasses_their_constructors_make() -> None:
    # The account, positions, orders, quotes and the clock are made as pickle restores them (engine/brokers/sim/exchange.py
    # `make`): each must hold every field, and equal what the class's own constructor makes of the same values.
    clock = ManualClock(MONDAY_10AM)
    exchange = SimExchange(clock)
    exchange.submit(OrderRequest("AAPL", "buy", "a", qty=3))
    exchange.submit(OrderRequest("SPY", "buy", "b", "limit", "day", qty=2, limit_price=1.0))
    exchange.move_cash(25.0)
    answers = [exchange.account(), *exchange.position_views(), *exchange.open_orders(), exchange.find_by_client_id("a"),
               *exchange.quotes(["AAPL", "BTC/USD"]).values(), exchange.market_clock()]  # fmt: skip
    assert {type(a).__name__ for a in answers} == {"Account", "Position", "Order", "Quote", "MarketClock"}
    for answer in answers:
        assert dataclasses.is_dataclass(answer) and not isinstance(answer, type)
        fields = {f.name: getattr(answer, f.name) for f in dataclasses.fields(answer)}
        assert set(vars(answer)) == set(fields)
        assert type(answer)(**fields) == answer


def test_a_flat_account_is_answered_again_until_a_figure_it_holds_moves() -> None:
    """A backtest reads the account every tick; while nothing is held or working, no price enters it, so the last
    answer (frozen) is handed out again instead of being rebuilt. Every input it holds must still show at once:
    cash moved (by an activity, or set directly), the flags, a position, a working order, the next day's
    last_equity. Each answer is compared with one built afresh."""
    clock = ManualClock(MONDAY_10AM)
    exchange = SimExchange(clock)
    first = exchange.account()
    clock.advance(60)
    assert exchange.account() is first  # flat and unchanged: the same answer
    with pytest.raises(dataclasses.FrozenInstanceError):
        first.cash = 1.0  # type: ignore[misc]

    def fresh() -> object:
        return exchange._account()

    exchange.move_cash(25.0)
    assert exchange.account() == fresh() and exchange.account().cash == first.cash + 25.0
    exchange.cash += 10.0  # set directly, without `changed()`
    assert exchange.account() == fresh() and exchange.account().cash == first.cash + 35.0
    moved = exchange.account()
    exchange.activities[-1] = dataclasses.replace(exchange.activities[-1], created_at=exchange.last_equity_close)
    assert exchange.account() == fresh() and exchange.account().non_trade_cash_today != moved.non_trade_cash_today
    exchange.flags = dataclasses.replace(exchange.flags, trading_blocked=True)
    assert exchange.account() == fresh() and exchange.account().trading_blocked is True
    exchange.flags = dataclasses.replace(exchange.flags, trading_blocked=False)
    assert exchange.account() == fresh() and exchange.account().trading_blocked is False
    exchange.submit(OrderRequest("SPY", "buy", "w", "limit", "day", qty=2, limit_price=1.0))  # working, not filled
    working = exchange.account()
    assert working == fresh() and working.buying_power < working.cash
    exchange.submit(OrderRequest("AAPL", "buy", "a", qty=3))
    clock.advance(60)
    held = exchange.account()
    assert held == fresh() and held.equity != held.cash
    clock.advance(86_400)  # the next day: the limit order expired, last_equity from the close
    exchange.close_position("AAPL")
    clock.advance(60)
    assert not exchange.positions and not exchange.open_orders()
    flat = exchange.account()
    assert flat == fresh() and flat.last_equity != first.last_equity
    assert exchange.account() is flat


def test_listed_symbols_are_remembered_until_an_asset_changes() -> None:
    exchange = SimExchange(ManualClock(MONDAY_10AM))
    assert exchange.answerable(["AAPL", "ZZZZ"]) == ["AAPL", "ZZZZ"]
    exchange.set_asset("ZZZZ", exists=False)
    assert exchange.answerable(["AAPL", "ZZZZ"]) == ["AAPL"]
    with pytest.raises(SimReject, match="invalid symbol: bad!"):
        exchange.answerable(["AAPL", "bad!"])


def test_paths_are_the_random_walk_drawn_with_random_gauss() -> None:
    # _extend inlines random.Random.gauss for speed: the path must stay the one gauss itself draws, bit for bit,
    # across regime changes and however the path is extended.
    paths = PricePaths(7, MONDAY_10AM)
    for symbol in ("AAPL", "BTC/USD", "QWE"):
        got = [paths.price(symbol, MONDAY_10AM + timedelta(seconds=5 * step)) for step in range(0, 3000, 37)]
        rng = random.Random(f"7:path:{symbol}")
        sigma = prices.SIGMA * (1.5 if "/" in symbol else 1.0)
        walk, drift, last = [paths.base_price(symbol)], None, paths.base_price(symbol)
        for step in range(1, 3000):
            if step % prices.REGIME_STEPS == 1 or drift is None:
                drift = rng.choice(prices.DRIFTS)
            last *= math.exp(rng.gauss(drift, sigma))
            walk.append(last)
        assert got == [walk[step] for step in range(0, 3000, 37)]


def test_the_market_keeps_the_exchange_calendar_thanksgiving_and_its_early_close() -> None:
    # XNYS 2026: closed on Thanksgiving (Thursday 26 November), closes at 13:00 New York the day after.
    clock = ManualClock(datetime(2026, 11, 26, 16, 0, tzinfo=timezone.utc))  # 11:00 New York, Thanksgiving
    ex = SimExchange(clock)
    assert not ex.equity_market_open(clock.now()) and ex.tradable("crypto", clock.now())
    market = ex.market_clock()
    assert not market.is_open and market.next_open == datetime(2026, 11, 27, 14, 30, tzinfo=timezone.utc)
    assert market.next_close == datetime(2026, 11, 27, 18, 0, tzinfo=timezone.utc)  # 13:00 New York
    clock.set(datetime(2026, 11, 27, 17, 0, tzinfo=timezone.utc))  # 12:00 New York, open for an hour more
    assert ex.market_clock().is_open
    order = ex.submit(OrderRequest("AAPL", "buy", "day-1", "limit", "day", qty=1, limit_price=1.0))
    clock.set(datetime(2026, 11, 27, 17, 59, tzinfo=timezone.utc))
    assert ex.find(order.id).status != "expired"
    clock.set(datetime(2026, 11, 27, 18, 0, tzinfo=timezone.utc))  # the early close: the day order ends with it
    assert not ex.market_clock().is_open and ex.find(order.id).status == "expired"


def test_a_stock_holds_its_price_while_the_market_is_closed_and_a_coin_walks_on() -> None:
    # Friday 27 November 2026 closes early (13:00 New York); the next session opens Monday 30 November at 9:30.
    # A path stepped through the weekend took QQQ from 430 to over 2,000 by Monday's open.
    friday_close = datetime(2026, 11, 27, 18, 0, tzinfo=timezone.utc)
    monday_open = datetime(2026, 11, 30, 14, 30, tzinfo=timezone.utc)
    clock = ManualClock(MONDAY_10AM)
    exchange = SimExchange(clock)
    clock.set(friday_close)
    last = exchange.quote("QQQ")
    coin = exchange.quote("BTC/USD")
    for at in (friday_close + timedelta(hours=3), friday_close + timedelta(days=1), monday_open - timedelta(seconds=5), monday_open):
        clock.set(at)
        quote = exchange.quote("QQQ")
        assert (quote.bid, quote.ask) == (last.bid, last.ask), at
    assert exchange.quote("BTC/USD").bid != coin.bid  # crypto trades around the clock
    clock.set(monday_open + timedelta(minutes=10))
    assert exchange.quote("QQQ").bid != last.bid  # and the stock walks on from where it stopped
    # A session's path is the one a path started at that session's open draws, from its own first step:
    # Monday's open is Friday's close, whichever of the two the path was begun at.
    paths = PricePaths(7, MONDAY_10AM)
    week = sum(
        (s.close - max(s.open, MONDAY_10AM)).total_seconds() for s in market_calendar().sessions(
            MONDAY_10AM.date(), friday_close.date()
        )
    )
    assert paths.path_step("QQQ", monday_open) == paths.path_step("QQQ", friday_close) == int(week // 5)
    assert paths.path_step("BTC/USD", monday_open) == int((monday_open - MONDAY_10AM).total_seconds() // 5)


def test_a_simulation_continued_for_months_keeps_prices_near_their_base() -> None:
    # The drift regimes' mean is upward (about 8 % a session): continued session after session, AAPL reached 15,800
    # and BTC/USD 3e16 in 90 days. Past BAND from its base a path's regimes now drift back towards it.
    paths = PricePaths(7, MONDAY_10AM)
    for symbol in ("AAPL", "SPY", "QQQ", "BTC/USD", "ETH/USD", "ZZZ"):
        base = paths.base_price(symbol)
        for days in (30, 90, 365):
            price = paths.price(symbol, MONDAY_10AM + timedelta(days=days))
            assert base * 0.7 < price < base * 1.45, (symbol, days, price)


def test_paths_opened_at_start_give_the_prices_drawn_on_demand() -> None:
    # The runner opens the bots' paths before the first tick; prices must not depend on it, nor on chunking.
    opened, lazy = ManualClock(MONDAY_10AM), ManualClock(MONDAY_10AM)
    a, b = SimExchange(opened), SimExchange(lazy)
    symbols = ["AAPL", "MSFT", "BTC/USD", *(f"S{i}" for i in range(50))]
    a.open_paths(symbols)
    for _ in range(200):
        assert a.quotes(symbols) == b.quotes(symbols)
        opened.advance(5)
        lazy.advance(5)
