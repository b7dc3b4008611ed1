"""The order path killed between two of its writes (engine/trading/orders.py), in process: the emulator behind the
real alpaca-py clients, real SQLite, a manual clock. What one step of the order path means must commit in one
transaction, or a kill between the writes leaves a state no later run repairs."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta, timezone
from pathlib import Path

import pytest

from engine.brokers.base import BrokerError, DataNeeds, OrderRequest
from engine.brokers.emulator import Fault
from engine.core import failpoints
from engine.core.journal import Journal
from engine.core.store import OrderRow, StateStore
from engine.trading import fillprice
from engine.trading.orders import OrderManager
from engine.trading.runner import operator_resume
from tests.brokers.conftest import OPEN
from tests.trading.conftest import Rig
from tests.trading.test_order_faults import Desk, open_desk


class Crash(BaseException):
    """The process dies here (kill -9, power loss): nothing after this point runs, no `except Exception` sees it."""


@pytest.fixture
def desk(tmp_path: Path) -> Iterator[Desk]:
    with open_desk(Desk, tmp_path, OPEN, timezone.utc) as opened:
        yield opened


def _die_at_the_first_commit_after_the_post(monkeypatch: pytest.MonkeyPatch) -> None:
    """Arm the crash: the first transaction committed after an order's POST left (`state_committed`) is the
    last thing the process does."""
    posted: list[bool] = []

    def reach(name: str) -> None:
        if name == "before_post":
            posted.append(True)
        elif name == "state_committed" and posted:
            raise Crash(name)

    monkeypatch.setattr(failpoints, "reach", reach)


@pytest.mark.parametrize(
    ("body", "counter"),
    [
        ('{"code":42210000,"message":"qty must be a whole number"}', "rejections"),
        ('{"code":40310000,"message":"insufficient buying power"}', "refused:insufficient_funds"),
    ],
)
def test_a_refusal_and_its_count_survive_a_kill_together(
    desk: Desk, monkeypatch: pytest.MonkeyPatch, body: str, counter: str
) -> None:
    """The broker refuses an entry; the process dies at the first commit after the POST. Whatever that commit
    held, the order's refusal is never on disk without its count: the ExitBot's repeated-rejections anomaly and
    the refusals' pause read the counts, and a refusal missing from them (the two used to commit apart) was one
    the next run never counted."""
    row = desk.intent()
    status = 422 if body.startswith('{"code":422') else 403
    desk.emulator.faults.append(Fault(status=status, body=body, path_prefix="/v2/orders", method="POST"))
    _die_at_the_first_commit_after_the_post(monkeypatch)
    with pytest.raises(Crash):
        desk.orders.send_pending()
    restarted = StateStore(desk.store.path)  # what the next run reads
    try:
        saved = restarted.order(row.client_order_id)
        assert saved is not None
        counted = restarted.counter(row.trading_date, "b1", counter)
        assert (saved.status, counted) in (("pending", 0), ("rejected", 1)), (saved.status, saved.error, counted)
        assert saved.status == "rejected"  # this commit is the refusal's: the kill came after it
    finally:
        restarted.close()


def test_a_rolled_back_ticks_intents_leave_nothing_keyed_by_them_in_memory(rig: Rig) -> None:
    """A tick whose transaction rolls back after recording an entry (here its last write, `on_persist`, fails) loses
    the intent's row: the OrderManager must lose what it keeps of it too. Its fill-price watch (`_seen`) was kept and
    walked every tick for the rest of the run, and the next intent, given the same sequence number back and so the
    same client_order_id, took it over: its fills were held to the quotes of the decision rolled back. Every map of
    the manager keyed by an order holds only orders the state file has."""
    failed: list[str] = []

    def fail_once() -> None:
        pending = [r for r in rig.store.orders(statuses=("pending",)) if r.purpose == "entry"]
        if pending and not failed:
            failed.extend(r.client_order_id for r in pending)
            raise RuntimeError("the tick's last write failed")

    rig.engine.on_persist = fail_once
    rig.until(lambda r: bool(failed), limit=400)
    orders = rig.engine.orders
    assert all(rig.store.order(cid) is None for cid in failed)  # rolled back with the tick
    for cid in failed:
        assert cid not in orders._seen and cid not in orders._mine, cid
    watched: list[tuple[fillprice.Seen, tuple[float, float] | None]] = []

    def reused() -> None:  # the same id given back to the next intent: its watch starts at its own tick's quote
        for row in rig.store.orders(statuses=("pending",)):
            if row.client_order_id in failed and not watched and orders._quotes is not None:
                watched.append((orders._seen[row.client_order_id], fillprice.quote_of(orders._quotes, row.symbol)))

    rig.engine.on_persist = reused
    operator_resume(rig.store, rig.engine.journal, rig.clock.now())  # the anomaly's halt ended: the bot enters again
    rig.until(lambda r: bool(watched), limit=400)
    [(seen, quote)] = watched
    assert quote is not None and (seen.low, seen.high) == quote, (seen, quote)  # not the quotes since the rollback
    known = {row.client_order_id for row in rig.store.orders()}
    assert set(orders._seen) <= known and orders._mine <= known


def _second_state_file(desk: Desk, folder: Path) -> tuple[StateStore, OrderManager, list[BrokerError]]:
    """Another state file on the same account (the same emulator): its own ids counted from 0001 again."""
    folder.mkdir()
    store = StateStore(folder / "state.db")
    failures: list[BrokerError] = []
    journal = Journal(folder / "app.jsonl", desk.clock)
    return store, OrderManager(store, desk.orders.broker, journal, desk.clock, failures.append, timezone.utc), failures


def _intent(orders: OrderManager, store: StateStore, desk: Desk, qty: float = 10.0) -> OrderRow:
    day = desk.clock.now().date()
    request = OrderRequest("AAPL", "buy", orders.next_client_order_id("b1", day), "market", "day", qty=qty)
    with store.transaction():
        return orders.record_intent("b1", day, "entry", request, "test")


def _foreign_reported(failures: list[BrokerError], cid: str) -> bool:
    return any(f.kind == "bad_response" and cid in f.message and "another engine or state file" in f.message for f in failures)


def test_another_state_files_order_under_our_id_is_never_booked_after_a_duplicate_refusal(desk: Desk, tmp_path: Path) -> None:
    """Two state files on one account give the same client_order_id (bot-YYYYMMDD-0001). The second file's POST is
    refused as a duplicate and the lookup finds the first file's order, created a minute before the second file
    recorded its intent: it cannot be our earlier try. Taken as ours, both files booked the one fill (each bot would
    then sell it: a double exit, a short). It is never booked, and it is reported as an answer that cannot be read
    (the engine halts the system on it), naming the id and another engine or state file."""
    first = desk.intent()
    desk.orders.send_pending()
    desk.tick(60)
    assert [p.qty for p in desk.store.positions("b1")] == [10.0]
    store, orders, failures = _second_state_file(desk, tmp_path / "b")
    try:
        row = _intent(orders, store, desk)
        assert row.client_order_id == first.client_order_id
        orders.send_pending()
        orders.sync(desk.orders.broker.snapshot(DataNeeds(stocks=("AAPL",))))
        saved = store.order(row.client_order_id)
        assert saved is not None and saved.status == "unknown" and saved.broker_order_id is None
        assert store.positions("b1") == []
        assert _foreign_reported(failures, row.client_order_id), failures
    finally:
        store.close()


def test_another_state_files_order_under_our_id_is_never_adopted_at_a_restart(desk: Desk, tmp_path: Path) -> None:
    """The same at a restart: an intent a run that ended left pending is looked up by client_order_id
    (`recover_pending`); the order found there was created before the intent was recorded, by another state file:
    not adopted, reported."""
    desk.intent()
    desk.orders.send_pending()
    desk.tick(60)
    store, orders, failures = _second_state_file(desk, tmp_path / "b")
    try:
        row = _intent(orders, store, desk)
        desk.clock.advance(5)
        restarted = OrderManager(store, desk.orders.broker, orders.journal, desk.clock, failures.append, timezone.utc)
        restarted.recover_pending(desk.orders.broker.snapshot(DataNeeds(stocks=("AAPL",))).positions or [])
        saved = store.order(row.client_order_id)
        assert saved is not None and saved.broker_order_id is None and saved.filled_qty == 0.0
        assert store.positions("b1") == []
        assert _foreign_reported(failures, row.client_order_id), failures
    finally:
        store.close()


def test_another_state_files_order_unlike_ours_is_named_as_theirs_after_a_duplicate_refusal(desk: Desk, tmp_path: Path) -> None:
    """The same, with the other file's order unlike ours (10 shares, ours 5): the lookup after the 422 was refused by
    the adapter as an answer that could not be read ("was sent with qty 5, the broker has 10"), before the engine could
    judge it, and the halt sent the trader looking for a broker fault. It names the id and the other engine, and the
    order is never booked."""
    first = desk.intent()
    desk.orders.send_pending()
    desk.tick(60)
    store, orders, failures = _second_state_file(desk, tmp_path / "b")
    try:
        row = _intent(orders, store, desk, qty=5.0)
        assert row.client_order_id == first.client_order_id
        orders.send_pending()
        orders.sync(desk.orders.broker.snapshot(DataNeeds(stocks=("AAPL",))))
        saved = store.order(row.client_order_id)
        assert saved is not None and saved.status == "unknown" and saved.broker_order_id is None
        assert store.positions("b1") == []
        assert _foreign_reported(failures, row.client_order_id), failures
        assert all("another engine or state file" in f.message for f in failures if f.kind == "bad_response"), failures
    finally:
        store.close()


def test_another_state_files_order_unlike_ours_made_after_our_intent_is_named_as_theirs_at_a_restart(
    desk: Desk, tmp_path: Path
) -> None:
    """At a restart the order found under our id was made after our intent (the other file sent it meanwhile), so
    its time does not give it away, but it is not the order our row records (10 shares, ours 5): it was said only as
    "recorded with qty 5, the broker's answer has 10". It is the other engine's, and said so; never adopted."""
    store, orders, failures = _second_state_file(desk, tmp_path / "b")
    try:
        row = _intent(orders, store, desk, qty=5.0)
        desk.clock.advance(10)
        first = desk.intent()  # the other file's, under the same id, made after our intent
        assert first.client_order_id == row.client_order_id
        desk.orders.send_pending()
        desk.tick(60)
        restarted = OrderManager(store, desk.orders.broker, orders.journal, desk.clock, failures.append, timezone.utc)
        restarted.recover_pending(desk.orders.broker.snapshot(DataNeeds(stocks=("AAPL",))).positions or [])
        saved = store.order(row.client_order_id)
        assert saved is not None and saved.broker_order_id is None and saved.filled_qty == 0.0
        assert store.positions("b1") == []
        assert _foreign_reported(failures, row.client_order_id), failures
    finally:
        store.close()


def test_our_own_order_found_after_a_lost_answer_is_still_adopted(desk: Desk) -> None:
    """The other side of the check: an order the broker created after our intent (here our own POST, whose answer
    was lost and then refused as a duplicate) is ours, and booked."""
    row = desk.intent()
    desk.clock.advance(2)
    desk.exchange.submit(OrderRequest("AAPL", "buy", row.client_order_id, "market", "day", qty=10.0))
    desk.orders.send_pending()
    desk.tick()
    assert desk.status(row.client_order_id) == "filled"
    assert [p.qty for p in desk.store.positions("b1")] == [10.0] and desk.failures[1:] == []


def test_our_own_posts_answer_is_booked_though_the_host_clock_runs_ahead_of_the_brokers(desk: Desk) -> None:
    """The answer to our own POST is the order that request made (a duplicate id is answered 422, never with an
    order): it is booked even when the broker's created_at is before the row's, as with a host clock 30 s ahead of
    the broker's. Held to `_foreign` like an order found under our id, every order of such a host halted the system."""
    row = desk.intent()
    ahead = (row.created_at + timedelta(seconds=30)).astimezone(timezone.utc).isoformat()
    with desk.store.transaction():
        desk.store.update_order(row.client_order_id, desk.clock.now(), created_at=ahead)
    desk.orders.send_pending()
    desk.tick()
    assert desk.status(row.client_order_id) == "filled"
    assert [p.qty for p in desk.store.positions("b1")] == [10.0] and desk.failures == []
