"""Several bots on one symbol, at the order desk: what crosses what when two bots' orders on one symbol meet at
the broker (engine/trading/orders.py), through the real alpaca-py clients against the emulator on 127.0.0.1."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timezone
from pathlib import Path

import pytest

from engine.brokers.base import DataNeeds, OrderRequest
from engine.brokers.emulator import Fault
from engine.core.store import OrderRow
from engine.trading.orders import OrderManager
from tests.brokers.conftest import OPEN
from tests.desk import Desk as BaseDesk
from tests.desk import open_desk

FAST, SLOW = "mom_AAPL_fast", "mom_AAPL_slow"


class Desk(BaseDesk):
    def record(self, bot: str, purpose: str, side: str, qty: float, limit: float | None = None) -> OrderRow:
        """One order of `bot` on AAPL committed as an intent (not sent): a limit order when `limit` is given."""
        day = self.clock.now().date()
        kind = "market" if limit is None else "limit"
        request = OrderRequest("AAPL", side, self.orders.next_client_order_id(bot, day), kind, "day", qty=qty, limit_price=limit)  # type: ignore[arg-type]
        with self.store.transaction():
            return self.orders.record_intent(bot, day, purpose, request, "test")

    def posted(self, cid: str) -> bool:
        return any(r.method == "POST" and r.body.get("client_order_id") == cid for r in self.emulator.requests)

    def exit_behind_an_entry(self) -> tuple[OrderRow, OrderRow]:
        """SLOW holds 5 AAPL; FAST's limit entry works far below the market; SLOW's exit, recorded and sent after
        it, would cross it. Fills come at a later step, as Alpaca's do. Returns (FAST's entry, SLOW's exit)."""
        self.exchange.fill_at_submit = False
        self.exchange.set_position("AAPL", 5, 100.0)
        entry = self.record(FAST, "entry", "buy", 1, limit=1.0)
        self.orders.send_pending()
        assert self.status(entry.client_order_id) in {"pending_new", "accepted", "new"}
        exit_ = self.record(SLOW, "exit", "sell", 5)
        self.orders.send_pending()
        return entry, exit_


@pytest.fixture
def desk(tmp_path: Path) -> Iterator[Desk]:
    with open_desk(Desk, tmp_path, OPEN, timezone.utc) as opened:
        yield opened


def test_an_order_whose_send_is_in_doubt_holds_back_the_other_bot_s_opposite_order(desk: Desk) -> None:
    """FAST's entry reached the broker, but the answer to its POST was lost and so was the lookup after it: its row
    is `unknown`, and the order works at the broker. SLOW's exit on AAPL, a tick later, would cross it. Before, only
    the rows known to work held an order back: the exit was POSTed, refused as a wash trade (422), counted against
    SLOW as a refusal and not tried again for a minute. Now an order whose send is in doubt holds it back too."""
    desk.exchange.set_position("AAPL", 5, 100.0)
    entry = desk.record(FAST, "entry", "buy", 1, limit=1.0)  # far below the market: it works
    desk.emulator.faults.append(Fault(status=504, after=True, path_prefix="/v2/orders", method="POST"))
    desk.emulator.faults.append(Fault(status=503, path_prefix="/v2/orders:by_client_order_id"))
    desk.orders.send_pending()
    assert desk.status(entry.client_order_id) == "unknown"
    assert [o.client_order_id for o in desk.exchange.open_orders()] == [entry.client_order_id]  # it is there

    desk.emulator.faults.append(Fault(status=503, path_prefix="/v2/orders", method="GET", times=0))
    desk.tick()  # the next tick's read of the open orders fails too: nothing is concluded from it
    desk.emulator.faults.clear()
    assert desk.status(entry.client_order_id) == "unknown"
    exit_ = desk.record(SLOW, "exit", "sell", 5)
    desk.orders.send_pending()
    assert not desk.posted(exit_.client_order_id)  # held, never sent to be refused
    assert desk.status(exit_.client_order_id) == "pending"
    assert desk.store.counters(desk.clock.now().date()).get(SLOW, {}).get("refused:wash_trade") is None


def test_an_exit_and_another_bot_s_entry_on_one_tick_send_the_exit_and_hold_the_entry(desk: Desk) -> None:
    """In one tick FAST's entry signal fires and SLOW's stop is hit, both on AAPL. The two cross, so one must wait
    for the other. Before, they went in creation order, the client_order_id breaking the tie: FAST's entry
    (mom_AAPL_fast sorts first) was POSTed and SLOW's exit, which only reduces risk, was held behind it until the
    entry ended. Now the exits of a send go first, and the entry waits (at most RESEND_WITHIN)."""
    desk.exchange.fill_at_submit = False  # as Alpaca: answered now, filled at a later step
    desk.exchange.set_position("AAPL", 5, 100.0)
    with desk.store.transaction():  # the one tick's intents
        entry = desk.record(FAST, "entry", "buy", 1)  # a MomentumBot's: at the market
        exit_ = desk.record(SLOW, "exit", "sell", 5)
    desk.orders.send_pending()
    assert desk.posted(exit_.client_order_id) and not desk.posted(entry.client_order_id)
    assert desk.status(entry.client_order_id) == "pending"
    desk.tick()  # the exit filled
    assert desk.status(exit_.client_order_id) == "filled"
    desk.orders.send_pending()
    assert desk.posted(entry.client_order_id)  # then the entry went


def test_an_exit_held_behind_another_bot_s_working_entry_cancels_it_and_goes_the_next_tick(desk: Desk) -> None:
    """SLOW's stop is hit on AAPL while FAST's limit entry works below the market: the exit would cross it, so it is
    held. Before, only an entry of the exit's own bot was cancelled: FAST's worked on until its machine's timeout
    (two minutes as shipped) or its window's end, and the stop loss waited behind it all that time, the price free
    to fall. Now any entry in an exit's way is cancelled at once; the exit goes as soon as the cancel is done."""
    entry, exit_ = desk.exit_behind_an_entry()
    assert not desk.posted(exit_.client_order_id)  # never sent to be refused as a wash trade
    assert any(r.method == "DELETE" for r in desk.emulator.requests)  # FAST's entry: its cancel asked at once
    desk.tick()  # the cancel is done
    assert desk.status(entry.client_order_id) == "canceled"
    desk.orders.send_pending()
    assert desk.posted(exit_.client_order_id)
    desk.tick()
    assert desk.status(exit_.client_order_id) == "filled"
    assert desk.failures == []


def test_an_exit_held_behind_one_entry_is_not_overtaken_by_another_bot_s_entry(desk: Desk) -> None:
    """SLOW's exit on AAPL is held behind FAST's working limit entry (they would cross). Meanwhile a third bot's
    entry on AAPL comes. Before, it went out at once (it crosses no working order: the held exit was only `pending`),
    and when FAST's entry ended the exit was held again, now behind it: each new entry on the symbol (a limit works
    up to its machine's timeout) put the stop loss further back. An exit waiting on a symbol holds the entries that
    would cross it too, so it goes out as soon as what was in its way is done."""
    first, exit_ = desk.exit_behind_an_entry()
    assert desk.status(exit_.client_order_id) == "pending"  # held behind FAST's entry
    third = desk.record("mom_AAPL_third", "entry", "buy", 1)
    desk.orders.send_pending()
    assert not desk.posted(third.client_order_id)  # held behind the exit waiting on AAPL
    assert desk.status(third.client_order_id) == "pending"
    desk.tick()  # FAST's entry is cancelled (the held exit asked for it)
    assert desk.status(first.client_order_id) == "canceled"
    desk.orders.send_pending()
    assert desk.posted(exit_.client_order_id) and not desk.posted(third.client_order_id)
    assert desk.failures == []


def test_an_exit_held_at_a_restart_stays_held_instead_of_being_refused_as_a_wash_trade(desk: Desk) -> None:
    """SLOW's exit on AAPL is held behind FAST's working entry when the engine restarts. The new run's recovery
    found the exit not at the broker and sent it again at once, without looking at what works on the other side:
    Alpaca refused it as a potential wash trade (422), the exit ended `rejected`, counted against SLOW, and the next
    waited a minute. Now it is held as before the restart, and goes out once FAST's entry is done."""
    entry, exit_ = desk.exit_behind_an_entry()
    assert desk.status(exit_.client_order_id) == "pending"  # held behind FAST's entry
    old = desk.orders
    desk.orders = OrderManager(old.store, old.broker, old.journal, old.clock, old.on_failure, old.zone)  # a restart
    positions = desk.orders.broker.snapshot(DataNeeds()).positions
    assert positions is not None
    desk.orders.recover_pending(positions)
    assert not desk.posted(exit_.client_order_id) and desk.status(exit_.client_order_id) == "pending"
    desk.tick()  # FAST's entry is cancelled (the exit, held again, asked for it)
    assert desk.status(entry.client_order_id) == "canceled"
    desk.orders.send_pending()
    assert desk.posted(exit_.client_order_id) and desk.status(exit_.client_order_id) != "rejected"
    assert desk.failures == []
