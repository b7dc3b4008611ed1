"""The order path killed between two of its writes (engine/trading/orders.py), in process: the emulator behind the
real alpaca-py clients, real SQLite, a manual clock. What one step of the order path means must commit in one
transaction, or a kill between the writes leaves a state no later run repairs."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timezone
from pathlib import Path

import pytest

from engine.brokers.emulator import Fault
from engine.core import failpoints
from engine.core.store import StateStore
from engine.trading import fillprice
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
