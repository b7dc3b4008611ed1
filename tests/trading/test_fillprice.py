"""A fill at a price nobody could have traded the order at (tools/answerfuzz.py `--meaning`, `fill far`) is not booked
as it came, on the simulated exchange (the default broker): its quantity is booked, at the last quote seen, and the
system halts naming the order, the price and the band. Booked as it came, a buy at a tenth of its price was a +900 %
gain for the take profit, and one at ten times a loss that stopped out and counted against the daily loss limit.
A price that moved a lot between two ticks, with the quotes since, is a fill like any other."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from typing import Any, Literal

import pytest

from engine.brokers.base import Order, OrderRequest, Quote, Snapshot
from engine.core.store import PositionRow
from engine.trading import fillprice
from tests.trading.conftest import Rig

BOT = "mom_AAPL"


def _quote(rig: Rig) -> Quote:
    return rig.exchange.quote("AAPL")


def _send(rig: Rig, side: Literal["buy", "sell"] = "buy", qty: float = 1, limit: float | None = None) -> OrderRequest:
    """mom_AAPL's order, recorded and sent (market unless `limit`)."""
    orders, day = rig.engine.orders, rig.engine.trading_date(rig.clock.now())
    kind: Literal["market", "limit"] = "limit" if limit is not None else "market"
    purpose = "entry" if side == "buy" else "exit"
    with rig.store.transaction():
        request = OrderRequest("AAPL", side, orders.next_client_order_id(BOT, day), kind, "day", qty=qty, limit_price=limit)
        orders.record_intent(BOT, day, purpose, request, "test")
    orders.send_pending()
    return request


def _answers(rig: Rig, change: Callable[[Order], Order]) -> None:
    """The broker's answers to sends and lookups, changed by `change` (the simulated exchange's own, otherwise)."""
    broker = rig.engine.orders.broker
    real_submit, real_lookup = broker.submit_order, broker.get_order_by_client_id

    def submit(request: OrderRequest) -> Order:
        return change(real_submit(request))

    def lookup(client_order_id: str) -> Order | None:
        found = real_lookup(client_order_id)
        return None if found is None else change(found)

    broker.submit_order = submit  # type: ignore[method-assign]
    broker.get_order_by_client_id = lookup  # type: ignore[method-assign]


def _priced(price: Callable[[float], float]) -> Callable[[Order], Order]:
    def change(order: Order) -> Order:
        if order.filled_avg_price is None:
            return order
        return dataclasses.replace(order, filled_avg_price=price(order.filled_avg_price))

    return change


def _owned(rig: Rig) -> PositionRow:
    [position] = [p for p in rig.store.positions(BOT) if p.symbol == "AAPL"]
    return position


def _halted_for(rig: Rig, request: OrderRequest) -> str:
    """The system's halt that names the order: its reason (the halt record's, which the `halt` event says too)."""
    assert rig.engine.system.state == "halted"
    [halt] = [h for h in rig.store.halts(open_only=True) if request.client_order_id in h.reason]
    assert [e for e in rig.events("halt") if e["reason"] == halt.reason]
    return halt.reason


@pytest.mark.parametrize("factor", [0.1, 0.5, 2.0, 10.0])
def test_a_market_buy_filled_far_from_its_quote_halts_and_is_booked_at_the_quote(rig: Rig, factor: float) -> None:
    rig.ticks(3)  # reconciled and armed
    quote = _quote(rig)
    _answers(rig, _priced(lambda price: round(price * factor, 2)))
    request = _send(rig)
    position = _owned(rig)
    assert position.qty == 1  # the broker's quantity is what is held: booked
    assert quote.bid * 0.99 <= position.avg_entry_price <= quote.ask * 1.01  # not the broker's price
    reason = _halted_for(rig, request)
    assert "outside the band" in reason and "unverified" in reason
    [fill] = [e for e in rig.events("fill") if e["client_order_id"] == request.client_order_id]
    assert fill["price_unverified"] is True and fill["broker_price"] != fill["price"]
    [said] = [e for e in rig.events("order") if e.get("action") == "fill_price_unverified"]
    low, high = said["band"]
    assert low < quote.bid and high > quote.ask and not low <= said["broker_price"] <= high


@pytest.mark.parametrize("price", [0.0, math.nan, 1e12])
def test_a_fill_at_no_price_halts_and_its_quantity_is_booked_at_the_quote(rig: Rig, price: float) -> None:
    rig.ticks(3)
    quote = _quote(rig)
    _answers(rig, _priced(lambda _: price))
    request = _send(rig)
    position = _owned(rig)
    assert position.qty == 1 and quote.bid * 0.99 <= position.avg_entry_price <= quote.ask * 1.01
    assert ("outside the band" if price == 1e12 else "which is no price") in _halted_for(rig, request)


def test_a_fill_at_a_negative_price_is_refused_whole_and_halts(rig: Rig) -> None:
    """A negative value filled is a fill going back (`orders._contradicts`): the answer is not booked at all, as the
    adapter refuses it too, and the order is looked up until an answer can be read."""
    rig.ticks(3)
    _answers(rig, _priced(lambda _: -5.0))
    request = _send(rig)
    assert not [p for p in rig.store.positions(BOT) if p.symbol == "AAPL"]
    _halted_for(rig, request)


def test_a_buy_limit_filled_above_its_limit_halts_though_the_price_is_near_the_quote(rig: Rig) -> None:
    """Within the band of the quotes, and still a price the order could not fill at."""
    rig.ticks(3)
    limit = round(_quote(rig).ask * 1.01, 2)
    _answers(rig, _priced(lambda _: round(limit * 1.03, 2)))
    request = _send(rig, limit=limit)
    assert _owned(rig).avg_entry_price <= limit
    assert "worse than its limit" in _halted_for(rig, request)


def test_a_sell_limit_filled_below_its_limit_halts_and_books_no_loss_it_did_not_take(rig: Rig) -> None:
    rig.ticks(3)
    _send(rig, qty=2)  # a clean buy first
    bought = _owned(rig)
    assert rig.engine.system.state != "halted"
    limit = round(_quote(rig).bid * 0.99, 2)
    _answers(rig, _priced(lambda _: round(limit * 0.95, 2)))
    request = _send(rig, side="sell", qty=2, limit=limit)
    assert "worse than its limit" in _halted_for(rig, request)
    [trade] = [e for e in rig.events("trade") if e["bot"] == BOT]
    assert trade["exit_price"] >= limit and trade["pnl"] >= round(2 * (limit - bought.avg_entry_price), 2) - 0.01


def test_partial_fills_whose_average_goes_far_from_the_quotes_halt(rig: Rig) -> None:
    """The first part at the market, the order's average then halved: the part added between the answers is priced
    at nothing like the market, and is booked at the quote."""
    rig.ticks(3)
    answers = iter([lambda o: dataclasses.replace(o, status="partially_filled", filled_qty=1.0)])

    def change(order: Order) -> Order:
        step = next(answers, None)
        if step is not None:
            return step(order)
        assert order.filled_avg_price is not None
        return dataclasses.replace(order, filled_avg_price=round(order.filled_avg_price / 2, 2))

    _answers(rig, change)
    quote = _quote(rig)
    request = _send(rig, qty=2)
    assert _owned(rig).qty == 1 and rig.engine.system.state != "halted"
    rig.ticks(1)  # the lookup: 2 filled, at half the average
    position = _owned(rig)
    assert position.qty == 2 and position.avg_entry_price >= quote.bid * 0.9
    assert "outside the band" in _halted_for(rig, request)


def test_a_price_that_gapped_between_ticks_with_the_quotes_since_is_booked_as_it_came(rig: Rig) -> None:
    """The market moved 30 % between the tick that sent the order and the one that read its fill, and the quotes
    read since moved with it: a fill like any other, no halt."""
    rig.ticks(3)
    broker = rig.engine.broker
    real_snapshot = broker.snapshot
    gap = {"factor": 1.0}

    def snapshot(*args: Any, **kwargs: Any) -> Snapshot:
        taken = real_snapshot(*args, **kwargs)
        quotes = dict(taken.quotes)
        if "AAPL" in quotes:
            q = quotes["AAPL"]
            quotes["AAPL"] = dataclasses.replace(q, bid=q.bid * gap["factor"], ask=q.ask * gap["factor"])
        return dataclasses.replace(taken, quotes=quotes)

    def change(order: Order) -> Order:
        if gap["factor"] == 1.0:  # the send's answer: taken, not filled yet
            return dataclasses.replace(order, status="accepted", filled_qty=0.0, filled_avg_price=None)
        return dataclasses.replace(order, filled_avg_price=round(_quote(rig).ask * gap["factor"], 2))

    broker.snapshot = snapshot  # type: ignore[method-assign]
    _answers(rig, change)
    request = _send(rig)
    gap["factor"] = 1.3
    rig.ticks(1)
    position = _owned(rig)
    assert position.qty == 1 and position.avg_entry_price == pytest.approx(_quote(rig).ask * 1.3, rel=0.01)
    assert not [h for h in rig.store.halts() if request.client_order_id in h.reason]
    assert not [e for e in rig.events("order") if e.get("action") == "fill_price_unverified"]


def test_the_band_follows_the_quotes_and_the_stand_in_keeps_to_the_limit() -> None:
    """The rules alone: the band is the quotes seen widened by FILL_BAND_PCT; the stand-in price is the last mid, no
    worse than the order's limit."""
    seen = fillprice.Seen("AAPL", 100.0, 100.2, 100.1).add(130.0, 130.2)
    low, high = seen.band()
    assert low == pytest.approx(90.0) and high == pytest.approx(130.2 * 1.1)
    assert seen.last == pytest.approx(130.1)
    contract = fillprice.Seen("SPY261204C00500000", 2.0, 2.2, 2.1)
    assert contract.band() == pytest.approx((1.2, 2.2 * 1.4))


@pytest.mark.parametrize("unusable", ["one-sided", "missing", "frozen"])
def test_a_fill_after_a_gap_read_while_its_quote_is_unusable_is_booked_at_the_brokers_price(rig: Rig, unusable: str) -> None:
    """The band is worked out only with a usable quote of the market at the fill's tick. Made of the earlier quotes
    alone (the feed one-sided or down as the fill is read: a day order filled at the next open; or frozen, read at
    the tick and saying the price before the gap by a time past health.max_price_staleness_seconds), a true fill
    after a 30 % gap halted the system and was booked for good at the price before the gap: P&L and exits off by
    the whole gap."""
    rig.ticks(3)
    broker = rig.engine.broker
    real_snapshot, gapped = broker.snapshot, {"on": False}
    before = _quote(rig)
    limit_s = rig.engine.config.settings.health.max_price_staleness_seconds

    def snapshot(needs: Any) -> Snapshot:
        taken = real_snapshot(needs)
        if not gapped["on"]:
            return taken
        quotes = dict(taken.quotes)
        if unusable == "missing":
            del quotes["AAPL"]
        elif unusable == "frozen":
            quotes["AAPL"] = before
            assert (taken.taken_at - before.timestamp).total_seconds() > limit_s
        else:
            quotes["AAPL"] = dataclasses.replace(quotes["AAPL"], bid=0.0)
        return dataclasses.replace(taken, quotes=quotes)

    broker.snapshot = snapshot  # type: ignore[method-assign]
    price = round(_quote(rig).ask * 1.3, 2)

    def answered(order: Order) -> Order:
        if not gapped["on"]:
            return dataclasses.replace(order, status="accepted", filled_qty=0.0, filled_avg_price=None)
        return dataclasses.replace(order, filled_avg_price=price)

    _answers(rig, answered)
    request = _send(rig)
    gapped["on"] = True
    if unusable == "frozen":
        rig.clock.advance(limit_s + 1)  # the feed stood still since the send
    rig.ticks(1)
    assert _owned(rig).avg_entry_price == price
    assert not [e for e in rig.events("order") if e.get("action") == "fill_price_unverified"]
    assert not [h for h in rig.store.halts(open_only=True) if request.client_order_id in h.reason]


def test_a_replacements_fill_is_held_to_the_quotes_its_order_was_sent_on(rig: Rig) -> None:
    """An order the broker replaces (a corporate action) is the same order to the market: its replacement's first
    answer, filled at twice the market, was booked as it came with no halt (the replacement had no quotes to be held
    to), and its stop loss then sold at the market for a loss of half the position against the daily limit."""
    rig.ticks(3)
    rig.exchange.fill_at_submit = False
    request = _send(rig, limit=1.0)  # rests
    rig.exchange.fill_at_submit = True  # the replacement fills as it is made
    rig.exchange.replace_order(rig.exchange.by_client_id[request.client_order_id], limit_price=500.0)
    broker = rig.engine.broker
    doubled = _priced(lambda price: round(price * 2, 2))
    for name in ("get_order", "get_order_by_client_id"):
        real = getattr(broker, name)
        setattr(broker, name, lambda key, real=real: None if (found := real(key)) is None else doubled(found))
    real_snapshot = broker.snapshot

    def snapshot(needs: Any) -> Snapshot:
        taken = real_snapshot(needs)
        orders = None if taken.open_orders is None else tuple(doubled(o) for o in taken.open_orders)
        return dataclasses.replace(taken, open_orders=orders)

    broker.snapshot = snapshot  # type: ignore[method-assign]
    rig.ticks(1)
    [unverified] = [e for e in rig.events("order") if e.get("action") == "fill_price_unverified"]
    assert unverified["client_order_id"] != request.client_order_id  # the replacement's
    assert rig.engine.system.state == "halted"
    assert _owned(rig).avg_entry_price < _quote(rig).ask * 1.2


OPTIONS_BOT = "opt_core"


def _option_filled(rig: Rig, *, fill_times_ask: float, wait_s: float = 0.0) -> tuple[OrderRequest, float, Snapshot]:
    """opt_core's buy of an SPY call near the money, a limit at three times its ask, answered taken and unfilled at
    its send, then filled at `fill_times_ask` its ask as the next tick reads it, `wait_s` later than the loop's
    interval: (the order, the price it filled at, the snapshot of the tick that read the fill)."""
    rig.ticks(3)  # reconciled and armed
    calls = [c for c in rig.exchange.option_chain("SPY", 7, 45) if c.option_type == "call" and 0.4 <= c.delta <= 0.6]
    contract = min(calls, key=lambda c: c.expiry)
    price = round(contract.ask * fill_times_ask, 2)
    broker, taken, filled = rig.engine.broker, [], {"on": False}
    real_snapshot = broker.snapshot

    def snapshot(needs: Any) -> Snapshot:
        taken.append(real_snapshot(needs))
        return taken[-1]

    def answered(order: Order) -> Order:
        if not filled["on"]:
            return dataclasses.replace(order, status="accepted", filled_qty=0.0, filled_avg_price=None)
        return dataclasses.replace(order, status="filled", filled_qty=1.0, filled_avg_price=price)

    broker.snapshot = snapshot  # type: ignore[method-assign]
    _answers(rig, answered)
    orders, day = rig.engine.orders, rig.engine.trading_date(rig.clock.now())
    with rig.store.transaction():
        request = OrderRequest(contract.symbol, "buy", orders.next_client_order_id(OPTIONS_BOT, day), "limit", "day",
                               qty=1, limit_price=round(contract.ask * 3, 2))  # fmt: skip
        orders.record_intent(OPTIONS_BOT, day, "entry", request, "test")
    orders.send_pending()
    filled["on"] = True
    rig.clock.advance(wait_s)
    rig.ticks(1)
    return request, price, taken[-1]


def _owned_contract(rig: Rig, request: OrderRequest) -> PositionRow:
    [position] = [p for p in rig.store.positions(OPTIONS_BOT) if p.symbol == request.symbol]
    return position


def test_an_option_fill_far_from_a_cached_chain_quote_is_booked_at_the_brokers_price(rig: Rig) -> None:
    """The band is made of quotes read at their tick, and a chain the snapshot reuses from its cache
    (broker.option_chain_cache_seconds, 60 s) was not: a 0DTE contract fell by a third within the minute, and its
    stop's true fills, held to the cached quote, were refused, halted the system for the rest of the day and were
    booked at the old quote (a loss of 1,638 booked as a gain of 812). With no chain read at the fill's tick the fill
    is held to its limit and to being a price: booked as the broker said it."""
    request, price, snapshot = _option_filled(rig, fill_times_ask=0.5)
    assert snapshot.option_chains["SPY"] and not snapshot.chain_read_now("SPY")  # the cached chain, at the cached ask
    assert _owned_contract(rig, request).avg_entry_price == price
    assert not [e for e in rig.events("order") if e.get("action") == "fill_price_unverified"]
    assert not [h for h in rig.store.halts() if request.client_order_id in h.reason]


def test_an_option_fill_worse_than_its_limit_is_still_refused_with_the_chain_cached(rig: Rig) -> None:
    """No band, and still its limit: a buy filled above it is no fill the order could have had."""
    request, _, snapshot = _option_filled(rig, fill_times_ask=3.3)
    assert not snapshot.chain_read_now("SPY")
    assert _owned_contract(rig, request).avg_entry_price == request.limit_price
    assert "worse than its limit" in _halted_for(rig, request)


def test_an_option_fill_far_from_the_chain_read_at_its_tick_is_refused(rig: Rig) -> None:
    """A chain read at the fill's tick is the market then: a fill at a tenth of it is held to the band."""
    request, price, snapshot = _option_filled(rig, fill_times_ask=0.1, wait_s=61)
    assert snapshot.chain_read_now("SPY")
    assert _owned_contract(rig, request).avg_entry_price > price
    assert "outside the band" in _halted_for(rig, request)
