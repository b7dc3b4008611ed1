"""The order path under broker faults: the emulator behind the real alpaca-py clients, real SQLite, a manual
clock. Whatever the broker does, an order it holds is one the engine accounts for, and no id is POSTed twice."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timezone
from pathlib import Path

import pytest

from engine.brokers.base import BrokerError, DataNeeds, OrderRequest
from engine.brokers.emulator import Fault
from engine.core.store import OrderRow
from engine.trading.exitbot import unexplained
from engine.trading.orders import RESEND_WITHIN, OrderManager, request_of
from tests.brokers.conftest import OPEN
from tests.desk import Desk as BaseDesk
from tests.desk import open_desk
from tests.trading.conftest import Rig

NOT_FOUND = '{"code":40410000,"message":"order not found"}'


class Desk(BaseDesk):
    def intent(self, qty: float = 10.0, order_type: str = "market", limit: float | None = None) -> OrderRow:
        day = self.clock.now().date()
        cid = self.orders.next_client_order_id("b1", day)
        request = OrderRequest("AAPL", "buy", cid, order_type, "day", qty=qty, limit_price=limit)  # type: ignore[arg-type]
        with self.store.transaction():
            return self.orders.record_intent("b1", day, "entry", request, "test")

    def posts(self, cid: str) -> int:
        return sum(1 for r in self.emulator.requests if r.method == "POST" and r.body.get("client_order_id") == cid)

    def unexplained(self) -> list[str]:
        return unexplained(self.store, self.orders.broker.snapshot(DataNeeds()))



@pytest.fixture
def desk(tmp_path: Path) -> Iterator[Desk]:
    with open_desk(Desk, tmp_path, OPEN, timezone.utc) as opened:
        yield opened


def test_a_duplicate_id_refusal_is_an_order_that_exists_not_a_rejection(desk: Desk) -> None:
    row = desk.intent()
    desk.exchange.submit(OrderRequest("AAPL", "buy", row.client_order_id, "market", "day", qty=10.0))  # an attempt landed
    desk.emulator.faults.extend(Fault(status=404, body=NOT_FOUND, path_prefix="/v2/orders:by_client_order_id") for _ in range(21))
    desk.orders.send_pending()  # 422 "client_order_id must be unique", and the lookup does not find it (yet)
    assert desk.status(row.client_order_id) == "unknown"  # was `rejected`: its fill then belonged to no bot
    for _ in range(20):  # 100 s of lookups answering 404: it exists, so it never ends `not_sent`
        desk.tick()
    assert desk.status(row.client_order_id) == "unknown"
    desk.tick()
    assert desk.status(row.client_order_id) == "filled" and desk.posts(row.client_order_id) == 1
    assert [p.qty for p in desk.store.positions("b1")] == [10.0] and desk.unexplained() == []


def test_a_duplicate_id_refusal_keeps_its_mark_when_the_lookup_after_it_fails(desk: Desk) -> None:
    """The lookup right after the 422 fails (503): the row still says the broker has the id, so 404s after it
    never conclude `not_sent`, which the broker had already contradicted."""
    row = desk.intent()
    desk.exchange.submit(OrderRequest("AAPL", "buy", row.client_order_id, "market", "day", qty=10.0))  # an attempt landed
    desk.emulator.faults.append(Fault(status=503, path_prefix="/v2/orders:by_client_order_id"))
    desk.emulator.faults.extend(Fault(status=404, body=NOT_FOUND, path_prefix="/v2/orders:by_client_order_id") for _ in range(20))
    desk.orders.send_pending()
    for _ in range(20):  # 100 s of lookups answering 404, past RESEND_WITHIN
        desk.tick()
    assert desk.status(row.client_order_id) == "unknown"
    desk.tick()
    assert desk.status(row.client_order_id) == "filled" and desk.posts(row.client_order_id) == 1


def test_a_duplicate_id_the_broker_never_shows_is_reported_after_a_while(desk: Desk) -> None:
    """A 422 "must be unique" for an order that never landed (a broker answering wrongly): it is looked up, never
    resent, and after EXISTS_PATIENCE it is an answer we cannot read (which halts): its bot waits on it."""
    from engine.trading.orders import EXISTS_PATIENCE

    row = desk.intent()
    refusal = '{"code":42210000,"message":"client_order_id must be unique"}'
    desk.emulator.faults.append(Fault(status=422, body=refusal, path_prefix="/v2/orders", method="POST"))
    desk.orders.send_pending()
    desk.tick()
    assert desk.status(row.client_order_id) == "unknown"
    assert [f.kind for f in desk.failures] == ["rejected"]  # the 422 itself, counted as every failure is
    desk.tick(EXISTS_PATIENCE.total_seconds())
    assert desk.status(row.client_order_id) == "unknown" and desk.posts(row.client_order_id) == 1
    [failure] = [f for f in desk.failures if f.kind == "bad_response"]
    assert row.client_order_id in failure.message and "duplicate id" in failure.message


def test_an_order_concluded_never_sent_that_filled_after_all_is_adopted(desk: Desk) -> None:
    row = desk.intent()
    desk.emulator.faults.append(Fault(status=504, after=True, path_prefix="/v2/orders", method="POST"))  # accepted, then 504
    desk.emulator.faults.append(Fault(status=404, body=NOT_FOUND, path_prefix="/v2/orders:by_client_order_id", times=0))
    desk.orders.send_pending()
    for _ in range(int(RESEND_WITHIN.total_seconds() // 5) + 4):
        desk.tick()
    assert desk.status(row.client_order_id) == "not_sent"  # what lookups said, for longer than RESEND_WITHIN
    desk.emulator.faults.clear()
    desk.tick()  # the lookup answers again: the broker holds 10 AAPL the bots do not, so the unsent order is asked for
    assert desk.status(row.client_order_id) == "filled" and desk.posts(row.client_order_id) == 1
    assert [p.qty for p in desk.store.positions("b1")] == [10.0] and desk.unexplained() == []


def test_an_order_concluded_never_sent_that_turns_up_open_is_adopted(desk: Desk) -> None:
    row = desk.intent(order_type="limit", limit=1.0)  # far below the market: it stays open
    desk.emulator.faults.append(Fault(status=503, path_prefix="/v2/orders", method="POST"))
    desk.orders.send_pending()
    desk.tick(RESEND_WITHIN.total_seconds() + 1)
    desk.tick()  # the third lookup to answer 404 (NOT_FOUND_LOOKS), over a minute after the first
    assert desk.status(row.client_order_id) == "not_sent"  # it really was not there
    # the POST that seemed lost lands late (a request stuck between us and the broker)
    desk.exchange.submit(OrderRequest("AAPL", "buy", row.client_order_id, "limit", "day", qty=10.0, limit_price=1.0))
    desk.tick()
    assert desk.status(row.client_order_id) in ("new", "accepted", "pending_new")
    assert desk.unexplained() == []


def test_a_lost_post_is_not_concluded_unsent_on_one_lookup(desk: Desk) -> None:
    """The POST's answer is lost after the broker took the order, and the order listing lags it: the lookup right
    after the POST and the first one of the sync a minute later both answer 404. The second was taken for proof
    that the order never left (`not_sent`: its bot free to enter again under a new id, while the order had filled)."""
    row = desk.intent()
    desk.emulator.faults.append(Fault(status=504, after=True, path_prefix="/v2/orders", method="POST"))
    desk.emulator.faults.extend(Fault(status=404, body=NOT_FOUND, path_prefix="/v2/orders:by_client_order_id") for _ in range(2))
    desk.orders.send_pending()
    desk.tick(RESEND_WITHIN.total_seconds() + 1)
    # was concluded `not_sent` on the sync's one 404 (then adopted by the same sync, once a lookup found its fill)
    assert desk.status(row.client_order_id) == "unknown"
    desk.tick()
    assert desk.status(row.client_order_id) == "filled" and desk.posts(row.client_order_id) == 1
    assert [p.qty for p in desk.store.positions("b1")] == [10.0] and desk.unexplained() == []


def _restarted(desk: Desk) -> OrderManager:
    """The desk's order manager as a new process has it: the same state file and broker, nothing in memory."""
    old = desk.orders
    return OrderManager(old.store, old.broker, old.journal, old.clock, old.on_failure, old.zone)


def _exit_intent(desk: Desk) -> OrderRow:
    desk.exchange.set_position("AAPL", 10, 100.0)
    day = desk.clock.now().date()
    request = OrderRequest("AAPL", "sell", desk.orders.next_client_order_id("b1", day), "limit", "day", qty=10.0,
                           limit_price=10_000.0)  # fmt: skip  # far above the market: it stays open
    with desk.store.transaction():
        return desk.orders.record_intent("b1", day, "exit", request, "test")


def _orders_under(desk: Desk, client_order_id: str) -> int:
    """How many orders the emulator's exchange holds under one client_order_id."""
    return sum(1 for order in desk.exchange.orders.values() if order.request.client_order_id == client_order_id)


def test_a_restarts_exit_that_landed_is_not_doubled_by_its_resend(desk: Desk) -> None:
    """A run died after its exit's POST left; the order listing lags, so the restart's first lookup answers 404.
    The exit is sent again at once under its own id (an exit waiting on lookups left the position unprotected), and
    the broker's refusal of a second order with that id (422 "must be unique") is read as the first having landed:
    one order, looked up until found."""
    row = _exit_intent(desk)
    desk.exchange.submit(request_of(row))  # the POST of the run that died landed
    restarted = _restarted(desk)
    desk.emulator.faults.append(Fault(status=404, body=NOT_FOUND, path_prefix="/v2/orders:by_client_order_id"))
    positions = desk.orders.broker.snapshot(DataNeeds()).positions or ()
    restarted.recover_pending(positions)  # 404, then the POST's 422, then a lookup that finds it
    assert [str(f) for f in desk.failures] == ["submit_order: rejected (422): client_order_id must be unique"]
    assert desk.posts(row.client_order_id) == 1 and desk.status(row.client_order_id) in ("new", "pending_new")
    assert _orders_under(desk, row.client_order_id) == 1
    desk.clock.advance(5)
    restarted.recover_pending(positions)
    assert desk.posts(row.client_order_id) == 1 and desk.status(row.client_order_id) in ("new", "pending_new")
    assert _orders_under(desk, row.client_order_id) == 1


def test_a_restarts_exit_never_sent_is_sent_at_once_and_once(desk: Desk) -> None:
    """The run died before its exit's POST: the restart's lookup does not find it, and it is sent at once, under its
    own id, once."""
    row = _exit_intent(desk)
    restarted = _restarted(desk)
    positions = desk.orders.broker.snapshot(DataNeeds()).positions or ()
    restarted.recover_pending(positions)
    assert desk.posts(row.client_order_id) == 1 and desk.status(row.client_order_id) in ("new", "pending_new")
    desk.clock.advance(5)
    restarted.recover_pending(positions)
    assert desk.posts(row.client_order_id) == 1 and _orders_under(desk, row.client_order_id) == 1


def test_a_broker_contradiction_halts_without_stopping_the_other_orders(desk: Desk) -> None:
    first, second = desk.intent(), desk.intent(order_type="limit", limit=1.0)
    desk.orders.send_pending()
    desk.tick()
    assert desk.status(first.client_order_id) == "filled"
    # the broker now shows the filled order open again, and the other one is cancelled at the same time
    order = desk.exchange.orders[desk.exchange.by_client_id[first.client_order_id]]
    order.status = "new"
    desk.exchange._working[order.id] = order
    desk.exchange.cancel(desk.exchange.by_client_id[second.client_order_id])
    desk.tick(60)
    assert [f.kind for f in desk.failures] == ["bad_response"]  # the engine halts at once on a bad_response
    assert "'filled' cannot become 'new'" in desk.failures[0].message
    assert desk.status(first.client_order_id) == "filled" and desk.status(second.client_order_id) == "canceled"


def test_a_working_order_the_broker_says_nothing_new_about_costs_no_transaction(rig: Rig) -> None:
    """Every working order is synced every tick: when nothing changed, no BEGIN IMMEDIATE / COMMIT (SQLite's write
    lock, a few µs each, a thousand resting orders a tick)."""
    rig.ticks(3)
    orders, day = rig.engine.orders, rig.engine.trading_date(rig.clock.now())
    with rig.store.transaction():
        resting = OrderRequest("AAPL", "buy", orders.next_client_order_id("mom_AAPL", day), "limit", "day", qty=1, limit_price=1.0)
        orders.record_intent("mom_AAPL", day, "entry", resting, "test")
    orders.send_pending()
    snapshot = rig.engine.broker.snapshot(rig.engine.needs)
    orders.sync(snapshot)  # the first sync may record the broker's status
    begun: list[str] = []
    rig.store._conn.set_trace_callback(lambda sql: begun.append(sql) if sql.startswith("BEGIN") else None)
    try:
        orders.sync(snapshot)
    finally:
        rig.store._conn.set_trace_callback(None)
    assert begun == []


def test_a_replacement_read_after_the_snapshot_is_not_a_contradiction_of_its_older_list(rig: Rig) -> None:
    """The snapshot lists the replacement open; by the time the replaced order is followed to it, it has filled.
    The list is older than that read: filled-then-new there is not the broker contradicting itself."""
    rig.ticks(3)
    rig.exchange.fill_at_submit = False  # orders rest until the exchange next steps, as at Alpaca
    orders, day = rig.engine.orders, rig.engine.trading_date(rig.clock.now())
    with rig.store.transaction():
        entry = OrderRequest("AAPL", "buy", orders.next_client_order_id("mom_AAPL", day), "market", "day", qty=1)
        orders.record_intent("mom_AAPL", day, "entry", entry, "test")
    orders.send_pending()
    new_id = rig.exchange.replace_order(rig.exchange.by_client_id[entry.client_order_id])
    snapshot = rig.engine.broker.snapshot(rig.engine.needs)  # the replacement listed open
    rig.clock.advance(5)
    rig.exchange.process()  # ...and filled since
    failures: list[BrokerError] = []
    orders.on_failure = failures.append
    orders.sync(snapshot)
    replacement = rig.store.order(rig.exchange.orders[new_id].request.client_order_id)
    assert replacement is not None and replacement.status == "filled" and failures == []


def test_an_order_the_broker_took_and_then_cannot_find_is_reported_after_a_while(desk: Desk) -> None:
    """From the chaos run: a working order the broker gave an id, then neither listed nor found (a lookup
    answering 404), was looked up every tick without a word; its bot waited on it for ever (an exit of a
    position is never sent twice). A moment's lag is waited out; past EXISTS_PATIENCE it is an answer we cannot
    read, which halts."""
    from engine.trading.orders import EXISTS_PATIENCE

    row = desk.intent(order_type="limit", limit=1.0)  # rests: working at the broker
    desk.orders.send_pending()
    desk.tick()
    working = desk.store.order(row.client_order_id)
    assert working is not None and working.broker_order_id and working.status in ("new", "accepted")
    desk.exchange._working.pop(working.broker_order_id)  # the broker lists it open no more,
    desk.exchange.by_client_id.pop(row.client_order_id)  # and does not find it when asked
    for _ in range(10):
        desk.tick()
    assert not [f for f in desk.failures if f.kind == "bad_response"]  # a moment's lag is waited out
    desk.tick(EXISTS_PATIENCE.total_seconds())
    [failure] = [f for f in desk.failures if f.kind == "bad_response"]
    assert row.client_order_id in failure.message and "neither listed nor found since 2026-11-23T15:00:10" in failure.message


def test_an_old_resting_order_missed_once_is_not_reported_at_once(desk: Desk) -> None:
    """From review: the patience ran from the order's last update, so an order resting unchanged for more than
    EXISTS_PATIENCE halted the system on its first miss. It runs from the first miss, and a sighting ends it."""
    from engine.trading.orders import EXISTS_PATIENCE

    row = desk.intent(order_type="limit", limit=1.0)
    desk.orders.send_pending()
    desk.tick()
    desk.tick(EXISTS_PATIENCE.total_seconds() + 60)  # rests, unchanged, longer than the patience
    working = desk.store.order(row.client_order_id)
    assert working is not None and working.broker_order_id
    hidden = desk.exchange._working.pop(working.broker_order_id)
    desk.exchange.by_client_id.pop(row.client_order_id)
    desk.tick()  # missed once
    assert not [f for f in desk.failures if f.kind == "bad_response"]
    desk.exchange._working[working.broker_order_id] = hidden  # seen again: the wait is over
    desk.exchange.by_client_id[row.client_order_id] = working.broker_order_id
    desk.tick()
    assert not [f for f in desk.failures if f.kind == "bad_response"]


def test_a_replacement_the_broker_never_finds_is_reported_after_a_while(desk: Desk) -> None:
    """A working order the broker says it replaced (`replaced_by`), whose replacement it answers 404 for and does
    not list: the replaced order was followed every tick without a word, its row working for ever and its bot
    waiting on it (its cancel goes to an order that is no longer cancellable). A moment's lag is waited out; past
    EXISTS_PATIENCE it is an answer we cannot read, which halts."""
    from engine.trading.orders import EXISTS_PATIENCE

    desk.exchange.fill_at_submit = False
    row = desk.intent(order_type="limit", limit=1.0)
    desk.orders.send_pending()
    desk.tick()
    working = desk.store.order(row.client_order_id)
    assert working is not None and working.broker_order_id
    new_id = desk.exchange.replace_order(working.broker_order_id, limit_price=1.5)
    assert new_id is not None
    desk.emulator.faults.append(Fault(status=404, body=NOT_FOUND, path_prefix=f"/v2/orders/{new_id}", times=0))
    desk.emulator.faults.append(Fault(path_prefix="/v2/orders", method="GET", drop=["0"], times=0))  # nor listed
    for _ in range(10):
        desk.tick()
    assert not [f for f in desk.failures if f.kind == "bad_response"]  # a moment's lag is waited out
    desk.tick(EXISTS_PATIENCE.total_seconds())
    [failure] = [f for f in desk.failures if f.kind == "bad_response"]
    assert row.client_order_id in failure.message and new_id in failure.message
    desk.emulator.faults.clear()
    desk.tick()  # the replacement readable again: adopted, and the wait is over
    assert [r.limit_price for r in desk.store.orders() if r.client_order_id != row.client_order_id] == [1.5]
    desk.tick(EXISTS_PATIENCE.total_seconds())
    assert len([f for f in desk.failures if f.kind == "bad_response"]) == 1
