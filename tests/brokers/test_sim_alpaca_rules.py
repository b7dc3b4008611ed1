"""Issue 14 on the in-process sim: the engine's own simulated exchange enforces Alpaca's rules too (wash trades,
the crypto minimum, the asynchronous cancel), and its refusals reach the engine classified as through Alpaca."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest

from engine.brokers.base import BrokerError, DataNeeds, OrderRequest
from engine.brokers.sim.api import SimAPI
from engine.brokers.sim.exchange import SimExchange, SimReject
from engine.brokers.snapshot import SnapshotBroker
from engine.core.clock import ManualClock

MONDAY_10AM = datetime(2026, 11, 23, 15, 0, tzinfo=timezone.utc)


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(MONDAY_10AM)


@pytest.fixture
def exchange(clock: ManualClock) -> SimExchange:
    return SimExchange(clock)


@pytest.fixture
def sim(exchange: SimExchange, clock: ManualClock) -> SnapshotBroker:
    return SnapshotBroker(SimAPI(exchange), clock)


def refusal(sim: SnapshotBroker, request: OrderRequest) -> BrokerError:
    with pytest.raises(BrokerError) as caught:
        sim.submit_order(request)
    return caught.value


def test_a_crypto_buy_under_ten_dollars_is_refused(sim: SnapshotBroker, exchange: SimExchange) -> None:
    error = refusal(sim, OrderRequest("BTC/USD", "buy", "c-1", "limit", "gtc", notional=5, limit_price=70_000))
    assert (error.status, error.code, error.reason) == (403, 40310000, "below_minimum")
    assert error.message == "cost basis must be >= minimal amount of order 10"
    qty_error = refusal(sim, OrderRequest("BTC/USD", "buy", "c-2", "market", "gtc", qty=0.0001))  # about $6
    assert qty_error.reason == "below_minimum"
    assert sim.submit_order(OrderRequest("BTC/USD", "buy", "c-3", "market", "gtc", notional=10)).status == "filled"
    exchange.set_position("ETH/USD", 1, 3_000)
    # selling is not held to the minimum (ccxt PR #30101: it applies to USD-quoted buys)
    assert sim.submit_order(OrderRequest("ETH/USD", "sell", "e-1", "market", "gtc", qty=0.001)).status == "filled"


def test_a_wash_trade_is_refused(sim: SnapshotBroker, exchange: SimExchange) -> None:
    exchange.set_position("AAPL", 10, 190.0)
    bid = exchange.quote("AAPL").bid
    resting = sim.submit_order(OrderRequest("AAPL", "buy", "b-1", "limit", "day", qty=1, limit_price=round(bid * 0.99, 2)))
    assert resting.status == "new"
    error = refusal(sim, OrderRequest("AAPL", "sell", "s-1", qty=5))  # a market sell would hit our own buy
    assert (error.status, error.code, error.reason) == (422, 42210000, "wash_trade")
    above = round(bid * 1.02, 2)  # a sell limit above our buy cannot trade with it
    assert sim.submit_order(OrderRequest("AAPL", "sell", "s-2", "limit", "day", qty=5, limit_price=above)).status == "new"
    assert refusal(sim, OrderRequest("AAPL", "buy", "b-2", "limit", "day", qty=1, limit_price=above)).reason == "wash_trade"
    assert sim.submit_order(OrderRequest("MSFT", "buy", "m-1", qty=1)).status == "filled"  # other symbol


def test_cancel_is_asynchronous_on_sim(sim: SnapshotBroker, exchange: SimExchange, clock: ManualClock) -> None:
    order = sim.submit_order(OrderRequest("AAPL", "buy", "b-1", "limit", "day", qty=1, limit_price=1.0))
    sim.cancel_order(order.id)
    assert [o.status for o in sim.snapshot(DataNeeds()).open_orders or ()] == ["pending_cancel"]
    sim.cancel_order(order.id)  # asked again while pending: nothing more happens
    clock.advance(5)
    assert sim.snapshot(DataNeeds()).open_orders == () and exchange.find(order.id).status == "canceled"
    with pytest.raises(BrokerError) as caught:
        sim.cancel_order(order.id)  # ended: not cancelable
    assert (caught.value.status, caught.value.kind, caught.value.reason) == (422, "rejected", "invalid")


def test_a_fill_can_beat_the_cancel_on_sim(exchange: SimExchange, clock: ManualClock) -> None:
    clock.set(MONDAY_10AM.replace(hour=14))  # 09:00 in New York: the order waits for the open
    order = exchange.submit(OrderRequest("AAPL", "buy", "b-1", "limit", "day", qty=1, limit_price=1_000.0))
    assert order.status == "accepted"
    exchange.cancel(order.id)
    clock.set(MONDAY_10AM.replace(hour=14, minute=31))  # the open: marketable before the cancel lands
    assert exchange.find(order.id).status == "filled"


def test_cancel_all_and_close_all_answer_per_item_on_sim(sim: SnapshotBroker, exchange: SimExchange) -> None:
    first = sim.submit_order(OrderRequest("AAPL", "buy", "b-1", "limit", "day", qty=1, limit_price=1.0))
    assert [(r.target, r.status) for r in sim.cancel_all_orders()] == [(first.id, 200)]
    exchange.set_position("TSLA", 2, 250.0)
    exchange.set_position("BTC/USD", 0.01, 60_000.0)
    exchange.set_asset("TSLA", tradable=False)
    results = {r.target: r for r in sim.close_all_positions()}
    assert results["BTC/USD"].ok and results["BTC/USD"].order is not None and results["BTC/USD"].order.side == "sell"
    assert results["TSLA"].status == 422 and results["TSLA"].error is not None


def test_quote_sides_and_the_empty_side_never_fills(exchange: SimExchange, clock: ManualClock) -> None:
    from engine.brokers.sim.exchange import QuoteMode

    exchange.set_quote_mode("AAPL", QuoteMode(no_ask=True))
    order = exchange.submit(OrderRequest("AAPL", "buy", "b-1", qty=1))
    assert order.status == "new" and exchange.quote("AAPL").ask == 0  # nothing to buy from
    exchange.set_quote_mode("AAPL", None)
    clock.advance(5)
    assert exchange.find(order.id).status == "filled"


def test_unknown_symbols_are_left_out_of_quotes_and_refused_as_orders(sim: SnapshotBroker, exchange: SimExchange) -> None:
    exchange.set_asset("ZZZQ", exists=False)
    snap = sim.snapshot(DataNeeds(stocks=("AAPL", "ZZZQ")))
    assert set(snap.quotes) == {"AAPL"} and snap.missing_quotes == ("ZZZQ",)
    assert refusal(sim, OrderRequest("ZZZQ", "buy", "z-1", qty=1)).status == 422
    assert sim.get_asset("ZZZQ") is None and sim.get_asset("AAPL") is not None


def test_account_flags_refuse_orders_by_meaning(sim: SnapshotBroker, exchange: SimExchange) -> None:
    import dataclasses

    exchange.flags = dataclasses.replace(exchange.flags, options_trading_level=1)
    call = exchange.option_chain("SPY", 7, 45)[0].symbol
    assert refusal(sim, OrderRequest(call, "buy", "o-1", qty=1)).reason == "forbidden"
    exchange.flags = dataclasses.replace(exchange.flags, trading_blocked=True)
    assert refusal(sim, OrderRequest("AAPL", "buy", "a-1", qty=1)).reason == "forbidden"


def test_cash_movements_survive_a_restart(exchange: SimExchange, clock: ManualClock) -> None:
    exchange.move_cash(-250, "CSW")
    restored = SimExchange.from_state(exchange.to_state(), clock)
    assert restored.account().non_trade_cash_today == -250 and restored.cash == exchange.cash


def test_a_short_by_hand_is_covered_by_a_buy(exchange: SimExchange) -> None:
    exchange.set_position("AAPL", -5, 190.0)
    assert exchange.position_views()[0].qty == -5
    exchange.submit(OrderRequest("AAPL", "buy", "cover-1", qty=5))
    assert exchange.positions == {}


def test_a_refusal_carries_alpacas_extra_fields(exchange: SimExchange) -> None:
    exchange.set_position("AAPL", 3, 190.0)
    with pytest.raises(SimReject) as caught:
        exchange.submit(OrderRequest("AAPL", "sell", "s-1", qty=5))
    assert caught.value.body() == {
        "code": 40310000,
        "message": "insufficient qty available for order (requested: 5, available: 3)",
        "available": "3",
        "existing_qty": "3",
        "held_for_orders": "0",
        "symbol": "AAPL",
    }
