"""A fill at a price nobody could have traded the order at, on the Alpaca path: the real alpaca-py clients against the
emulator on loopback, the answers changed on their way out (`Fault`), the engine's own order path (OrderManager,
real SQLite) holding every fill to the quotes it read since the order was sent (engine/trading/fillprice.py).

Every field of such an answer reads well, so the adapter takes it; booked as it came (tools/answerfuzz.py
`--meaning`, `fill far`), the bot's entry price carried a tenth or ten times the market. Now its quantity is booked
at the last quote, and the failure reported (the engine halts on it) names the order, the price and the band; a
price that moved with the quotes since is booked as it came.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import timezone
from pathlib import Path
from typing import Any

import pytest

from engine.brokers.base import DataNeeds, OrderRequest
from engine.brokers.emulator import Fault
from engine.core.store import OrderRow, PositionRow
from tests.brokers.conftest import OPEN
from tests.desk import Desk as BaseDesk
from tests.desk import open_desk

ORDERS, LOOKUP, QUOTES = "/v2/orders", "/v2/orders:by_client_order_id", "/v2/stocks/quotes/latest"
RESTING_LIMIT = 150.0  # a buy limit below AAPL's price (about 190 here): it works and never fills by itself


class Desk(BaseDesk):
    def tick(self, seconds: float = 5.0) -> None:
        """A sync on a snapshot that quotes AAPL, as the engine's does for a bot trading it."""
        self.clock.advance(seconds)
        self.orders.sync(self.orders.broker.snapshot(DataNeeds(stocks=("AAPL",))))

    def send(self, qty: float = 1.0, limit: float | None = None) -> OrderRow:
        day = self.clock.now().date()
        cid = self.orders.next_client_order_id("b1", day)
        request = (
            OrderRequest("AAPL", "buy", cid, "limit", "day", qty=qty, limit_price=limit)
            if limit is not None
            else OrderRequest("AAPL", "buy", cid, "market", "day", qty=qty)
        )
        with self.store.transaction():
            row = self.orders.record_intent("b1", day, "entry", request, "test")
        self.orders.send_pending()
        return row

    def owned(self) -> PositionRow:
        [position] = self.store.positions("b1")
        return position

    def doubts(self, row: OrderRow) -> list[str]:
        return [f.message for f in self.failures if f.kind == "bad_response" and row.client_order_id in f.message]


@pytest.fixture
def desk(tmp_path: Path) -> Iterator[Desk]:
    with open_desk(Desk, tmp_path, OPEN, timezone.utc) as opened:
        opened.tick()  # the quotes an order sent now is held to
        yield opened


def _fills_priced(price: float) -> Fault:
    """Every order answer (a send's, a lookup's, the listing) with something filled says it filled at `price`."""

    def rewrite(status: int, answer: Any) -> tuple[int, str]:
        for order in answer if isinstance(answer, list) else [answer]:
            if isinstance(order, dict) and float(order.get("filled_qty") or 0) > 0:
                order["filled_avg_price"] = f"{price:.4f}"
        return status, json.dumps(answer)

    return Fault(path_prefix=ORDERS, rewrite=rewrite, times=0)


@pytest.mark.parametrize("factor", [0.1, 10.0])
def test_a_fill_far_from_the_quotes_is_booked_at_the_quote_and_reported(desk: Desk, factor: float) -> None:
    quote = desk.exchange.quote("AAPL")
    desk.emulator.faults.append(_fills_priced(quote.ask * factor))
    row = desk.send()
    desk.tick()
    position = desk.owned()
    assert position.qty == 1 and quote.bid * 0.99 <= position.avg_entry_price <= quote.ask * 1.01
    [said] = desk.doubts(row)
    assert "outside the band" in said and f"{quote.ask * factor:g}"[:4] in said


def test_partial_fills_whose_average_leaves_the_band_are_booked_at_the_quote(desk: Desk) -> None:
    """The market (its quotes, as read) at 147-148, under a resting buy limit at 150: 5 fill at 148, then the order
    says 10 at an average of 138, which puts the second 5 at 128, outside the band (132.3 and up)."""
    desk.emulator.faults.append(Fault(path_prefix=QUOTES, patch={"quotes.AAPL.bp": 147.0, "quotes.AAPL.ap": 148.0}, times=0))
    desk.tick()
    desk.exchange.fill_at_submit = False
    row = desk.send(qty=10, limit=RESTING_LIMIT)
    partial = {"*.status": "partially_filled", "*.filled_qty": "5", "*.filled_avg_price": "148"}
    desk.emulator.faults.append(Fault(path_prefix=ORDERS, method="GET", patch=partial))
    desk.tick()
    assert desk.owned().qty == 5 and desk.owned().avg_entry_price == 148 and not desk.doubts(row)
    more = {"*.status": "partially_filled", "*.filled_qty": "10", "*.filled_avg_price": "138"}
    desk.emulator.faults.append(Fault(path_prefix=ORDERS, method="GET", patch=more))
    desk.tick()
    position = desk.owned()
    assert position.qty == 10 and position.avg_entry_price == pytest.approx((148 * 5 + 147.5 * 5) / 10)
    [said] = desk.doubts(row)
    assert "filled at 128" in said and "132.3" in said


def test_a_gap_between_ticks_that_the_quotes_since_show_is_booked_as_it_came(desk: Desk) -> None:
    """Sent at about 190; before its fill is read, the quotes jump 30 %, and it filled there: a fill like any other."""
    quote = desk.exchange.quote("AAPL")
    hidden = {"status": "accepted", "filled_qty": "0", "filled_avg_price": None}
    desk.emulator.faults.append(Fault(path_prefix=ORDERS, method="POST", patch=hidden))
    row = desk.send()
    gapped = {"quotes.AAPL.bp": round(quote.bid * 1.3, 2), "quotes.AAPL.ap": round(quote.ask * 1.3, 2)}
    desk.emulator.faults.append(Fault(path_prefix=QUOTES, patch=gapped, times=0))
    price = round(quote.ask * 1.3, 2)
    desk.emulator.faults.append(Fault(path_prefix=LOOKUP, patch={"filled_avg_price": f"{price}"}, times=0))
    desk.tick()
    position = desk.owned()
    assert position.qty == 1 and position.avg_entry_price == pytest.approx(price)
    assert not desk.doubts(row) and not desk.failures
