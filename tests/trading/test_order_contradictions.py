"""An answer about an order that is not about the order its row records is never booked, whichever broker gave it
(the Alpaca adapter holds answers to what it sent this run; after a restart, and for any broker, the row is the
record): it halts, and the order is never sent again."""

from __future__ import annotations

import dataclasses
from typing import Any

from engine.brokers.base import Order, OrderRequest
from tests.trading.conftest import Rig


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
