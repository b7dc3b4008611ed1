"""An answer about an order that is not about the order its row records is never booked, whichever broker gave it
(the Alpaca adapter holds answers to what it sent this run; after a restart, and for any broker, the row is the
record): it halts, and the order is never sent again."""

from __future__ import annotations

import dataclasses
from typing import Any

from engine.brokers.base import Order, OrderRequest
from tests.trading.conftest import Rig, working_entry


def test_a_send_answered_with_another_quantity_books_nothing_and_is_not_sent_again(rig: Rig) -> None:
    rig.ticks(3)  # reconciled and armed
    orders, day = rig.engine.orders, rig.engine.trading_date(rig.clock.now())
    with rig.store.transaction():
        request = OrderRequest("AAPL", "buy", orders.next_client_order_id("mom_AAPL", day), "market", "day", qty=1)
        orders.record_intent("mom_AAPL", day, "entry", request, "test")
    broker = rig.engine.orders.broker
    real_submit = broker.submit_order
    posted: list[str] = []

    def submit(request: OrderRequest, *args: Any, **kwargs: Any) -> Order:
        posted.append(request.client_order_id)
        return dataclasses.replace(real_submit(request, *args, **kwargs), qty=100.0)  # an answer about another order

    broker.submit_order = submit  # type: ignore[method-assign]
    orders.send_pending()
    row = rig.store.order(request.client_order_id)
    assert row is not None and row.status == "unknown" and "qty 1, the broker's answer has 100" in (row.error or "")
    assert [e["detail"] for e in rig.events("order") if e.get("action") == "contradicted"]
    rig.ticks(3)
    assert posted == [request.client_order_id]  # never sent again
    assert rig.engine.system.state == "halted"


def _answered_with_id(rig: Rig, order_id: str) -> None:
    """The broker's answers to sends name `order_id` as the order's id, whatever id it gave the order."""
    broker = rig.engine.orders.broker
    real_submit = broker.submit_order

    def submit(request: OrderRequest, *args: Any, **kwargs: Any) -> Order:
        return dataclasses.replace(real_submit(request, *args, **kwargs), id=order_id)

    broker.submit_order = submit  # type: ignore[method-assign]


def _send_limit_entry(rig: Rig, bot_id: str, symbol: str) -> OrderRequest:
    """`bot_id`'s limit entry far from the market, recorded and sent (the engine armed)."""
    orders, day = rig.engine.orders, rig.engine.trading_date(rig.clock.now())
    with rig.store.transaction():
        entry = OrderRequest(symbol, "buy", orders.next_client_order_id(bot_id, day), "limit", "day", qty=1, limit_price=1.0)
        orders.record_intent(bot_id, day, "entry", entry, "test")
    orders.send_pending()
    return entry


def test_a_send_answered_with_a_wrong_id_is_put_right_once_the_listing_and_a_lookup_agree_and_halts_once(rig: Rig) -> None:
    """A send's answer named an id the order does not have (found by tools/answerfuzz.py, seed 106). Before, every
    sync after found the order contradicting its row and halted again for good, and its cancel went out under the
    wrong id (a 404, or another order's cancel). Now the listing and a lookup by our client_order_id, agreeing on
    the broker's id, put the row right: one halt for the broker's contradiction, said in the log, then nothing more."""
    rig.ticks(3)
    _answered_with_id(rig, "00000000-0000-4000-8000-00000000dead")
    entry = _send_limit_entry(rig, "mom_AAPL", "AAPL")
    recorded = rig.store.order(entry.client_order_id)
    assert recorded is not None and recorded.broker_order_id == "00000000-0000-4000-8000-00000000dead"
    rig.ticks(1)
    row = rig.store.order(entry.client_order_id)
    real = rig.engine.orders.broker.get_order_by_client_id(entry.client_order_id)
    assert real is not None and row is not None and row.broker_order_id == real.id != "00000000-0000-4000-8000-00000000dead"
    [said] = [e for e in rig.events("order") if e.get("action") == "id_corrected"]
    assert said["recorded"].endswith("dead") and said["broker"] == real.id
    assert rig.engine.system.state == "halted"  # the broker contradicted itself: halted, as for any unreadable answer
    rig.ticks(5)
    assert not [e for e in rig.events("order") if e.get("action") == "contradicted"]
    assert rig.engine.orders.cancel_entries([row]) == 1  # under the broker's id, which the broker takes
    rig.ticks(2)
    ended = rig.store.order(entry.client_order_id)
    assert ended is not None and ended.status == "canceled"


def test_a_send_answered_with_the_id_of_another_working_order_of_ours_is_not_recorded(rig: Rig) -> None:
    """Recorded, that id would send this order's cancel to the other order (an exit, maybe): the answer is not
    about this order, nothing of it is booked, and the order is never sent again."""
    first = working_entry(rig)
    other = rig.store.order(first.client_order_id)
    assert other is not None and other.broker_order_id and other.status in ("new", "accepted")
    _answered_with_id(rig, other.broker_order_id)
    second = _send_limit_entry(rig, "mom_MSFT", "MSFT")
    row = rig.store.order(second.client_order_id)
    assert row is not None and row.status == "unknown" and row.broker_order_id is None
    assert f"the id of our working {first.client_order_id}" in (row.error or "")


def test_an_id_put_right_is_never_one_another_working_order_of_ours_has(rig: Rig) -> None:
    """The listing and a lookup agreeing on the id of another of our working orders do not put the row right: with
    that id, this order's cancel would cancel the other (an exit, maybe). As a send's answer naming it is refused
    (above), the row keeps its id and the answer is refused as a contradiction while the other order works."""
    first = working_entry(rig)
    other = rig.store.order(first.client_order_id)
    assert other is not None and other.broker_order_id
    taken = other.broker_order_id
    _answered_with_id(rig, "00000000-0000-4000-8000-00000000dead")
    second = _send_limit_entry(rig, "mom_MSFT", "MSFT")
    broker = rig.engine.orders.broker
    real_snapshot, real_lookup = broker.snapshot, broker.get_order_by_client_id

    def as_taken(order: Order) -> Order:
        return dataclasses.replace(order, id=taken) if order.client_order_id == second.client_order_id else order

    def snapshot(needs: Any) -> Any:
        taken_now = real_snapshot(needs)
        listed = None if taken_now.open_orders is None else tuple(as_taken(o) for o in taken_now.open_orders)
        return dataclasses.replace(taken_now, open_orders=listed)

    broker.snapshot = snapshot  # type: ignore[method-assign]
    broker.get_order_by_client_id = lambda client_order_id: None if (found := real_lookup(client_order_id)) is None else as_taken(found)  # type: ignore[method-assign]
    rig.ticks(1)  # (the halt then cancels the entries: the other's id is then no working order's)
    row = rig.store.order(second.client_order_id)
    assert row is not None and row.broker_order_id == "00000000-0000-4000-8000-00000000dead"
    assert not [e for e in rig.events("order") if e.get("action") == "id_corrected"]
    assert [e for e in rig.events("order") if e.get("action") == "contradicted"]
