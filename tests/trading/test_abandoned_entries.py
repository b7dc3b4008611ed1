"""An entry its bot gave up (the machine's cancel_entry, asked for once as it leaves `entering`) is cancelled even
when the first request does not get through: a GTC entry left working fills, later, for a bot that gave it up."""

from __future__ import annotations

from typing import Any

from engine.brokers.base import BrokerError, OrderRequest
from engine.brokers.emulator import Emulator, Fault
from engine.brokers.sim.exchange import SimExchange
from engine.brokers.snapshot import SnapshotBroker
from engine.core.clock import ManualClock
from tests.brokers.conftest import KEY, SECRET, make_api
from tests.conftest import ProjectCopy
from tests.trading.conftest import Rig, make_rig, working_entry


def _fail_cancels(rig: Rig, times: int) -> list[str]:
    """The broker's DELETE times out `times` times, then works; the ids it was asked for."""
    broker = rig.engine.orders.broker
    real_cancel = broker.cancel_order
    asked: list[str] = []

    def cancel(order_id: str, *args: Any, **kwargs: Any) -> Any:
        asked.append(order_id)
        if len(asked) <= times:
            raise BrokerError("timeout", "read timed out", operation="cancel_order")
        return real_cancel(order_id, *args, **kwargs)

    broker.cancel_order = cancel  # type: ignore[method-assign]
    return asked


def test_a_cancel_that_did_not_get_through_is_asked_again_next_tick(rig: Rig) -> None:
    entry = working_entry(rig)
    row = rig.store.order(entry.client_order_id)
    assert row is not None and row.broker_order_id
    asked = _fail_cancels(rig, times=2)
    rig.engine.orders.cancel_after_commit([row])  # what the machine's cancel_entry asked for in a committed tick
    assert rig.engine.orders.send_cancels() == 1
    assert rig.store.order(entry.client_order_id).status not in ("canceled", "pending_cancel")  # type: ignore[union-attr]
    rig.ticks(3)  # nothing asks for this cancel again but the wish itself
    assert asked == [row.broker_order_id] * 3  # once a tick until it got through, then never again
    assert rig.store.order(entry.client_order_id).status == "canceled"  # type: ignore[union-attr]
    assert rig.engine.system.state == "armed"  # two timeouts are not a halt


def test_an_entry_given_up_before_it_was_sent_is_never_sent(rig: Rig) -> None:
    """An entry still `pending` (held behind an opposite order, Alpaca's wash-trade rule) when its bot gives it up:
    sending it later would buy for a bot that no longer wants it."""
    rig.ticks(3)  # reconciled and armed
    orders, day = rig.engine.orders, rig.engine.trading_date(rig.clock.now())
    with rig.store.transaction():
        entry = OrderRequest("AAPL", "buy", orders.next_client_order_id("mom_AAPL", day), "limit", "day", qty=1, limit_price=1.0)
        row = orders.record_intent("mom_AAPL", day, "entry", entry, "test")
    orders.cancel_after_commit([row])
    orders.send_cancels()
    orders.send_pending()
    after = rig.store.order(entry.client_order_id)
    assert after is not None and after.status == "not_sent" and after.broker_order_id is None
    assert not [o for o in rig.exchange.orders.values() if o.client_order_id == entry.client_order_id]
    [said] = [e for e in rig.events("order") if e.get("action") == "not_sent"]
    assert said["client_order_id"] == entry.client_order_id and said["reason"] == "its bot gave the entry up"


def test_a_held_entry_of_a_halted_bot_ends_naming_the_halt(rig: Rig) -> None:
    """The kill switch cancels a halted bot's entries too: one not yet sent ends `not_sent` with the halt's reason,
    which tells a person more than that the bot gave it up."""
    from engine.core.journal import Journal
    from engine.trading.runner import operator_halt

    rig.ticks(3)
    orders, day = rig.engine.orders, rig.engine.trading_date(rig.clock.now())
    with rig.store.transaction():
        entry = OrderRequest("AAPL", "buy", orders.next_client_order_id("mom_AAPL", day), "limit", "day", qty=1, limit_price=1.0)
        row = orders.record_intent("mom_AAPL", day, "entry", entry, "test")
    operator_halt(rig.store, Journal(rig.log, rig.clock), "news", rig.clock.now())
    orders.cancel_after_commit([row])
    orders.send_cancels()
    orders.send_pending()
    after = rig.store.order(entry.client_order_id)
    assert after is not None and after.status == "not_sent" and after.error == "halted before it was sent: news"


def test_an_entry_abandoned_before_a_crash_is_cancelled_at_restart_even_when_the_first_cancel_fails(rig: Rig) -> None:
    """The restart's cancel was asked once: a 503 to it left the GTC entry working for good (chaos run)."""
    entry = working_entry(rig)
    with rig.store.transaction():  # what the tick committed before the process died: the bot gave the entry up
        rig.store.save_machine_states([("momentum", "mom_AAPL", "idle", rig.clock.now())])
    restarted = rig.restart()
    asked = _fail_cancels(restarted, times=1)
    restarted.ticks(4)
    row = restarted.store.order(entry.client_order_id)
    assert row is not None and row.status == "canceled" and len(asked) == 2


def test_an_entry_of_a_bot_left_halted_at_restart_is_cancelled(rig: Rig) -> None:
    """Halted while entering, the process died before the cancel went out, and the operator resumed meanwhile: no
    halt in force, so the ExitBot cancels nothing, and the machine stays `halted` (it resumes only when flat) with
    its entry working, for ever (chaos run)."""
    entry = working_entry(rig)
    with rig.store.transaction():
        rig.store.save_machine_states([("momentum", "mom_AAPL", "halted", rig.clock.now())])
    restarted = rig.restart()
    restarted.ticks(4)
    row = restarted.store.order(entry.client_order_id)
    assert row is not None and row.status == "canceled"


def test_an_entry_given_up_while_the_broker_replaces_it_has_its_replacement_cancelled(rig: Rig) -> None:
    """A cancel is refused while a replace is pending (Alpaca may replace an order itself, after a corporate action):
    it stays wanted, and the replaced order ends, so the wish must pass to the replacement, which would work on."""
    entry = working_entry(rig)
    row = rig.store.order(entry.client_order_id)
    assert row is not None and row.broker_order_id
    rig.exchange.replace_order(row.broker_order_id, limit_price=1.5, pending=True)
    rig.ticks(1)  # the sync reads pending_replace
    row = rig.store.order(entry.client_order_id)
    assert row is not None and row.status == "pending_replace"
    rig.engine.orders.cancel_after_commit([row])  # the bot gives the entry up
    rig.engine.orders.send_cancels()
    rig.ticks(4)  # the replace completes; the replacement is adopted as the bot's entry
    working = [o for o in rig.exchange.orders.values() if o.status in ("new", "accepted", "partially_filled", "pending_new")]
    assert working == []
    [adopted] = [r for r in rig.store.orders() if r.reason == f"replaces {entry.client_order_id}"]
    assert adopted.status == "canceled"


def test_a_cancel_the_broker_took_but_never_carried_out_is_asked_again_after_a_while(rig: Rig) -> None:
    """A cancel is asynchronous at Alpaca (204, then pending_cancel, then canceled): one the broker took and then
    dropped left the entry working, never asked again. Still working, not even pending_cancel, CANCEL_PATIENCE after,
    it is asked again; not sooner, so a cancel on its way is not asked twice."""
    from datetime import timedelta

    from engine.trading.orders import CANCEL_PATIENCE

    entry = working_entry(rig)
    row = rig.store.order(entry.client_order_id)
    assert row is not None and row.broker_order_id
    broker = rig.engine.orders.broker
    real_cancel = broker.cancel_order
    asked: list[str] = []

    def cancel(order_id: str, *args: Any, **kwargs: Any) -> Any:
        asked.append(order_id)
        return None if len(asked) == 1 else real_cancel(order_id, *args, **kwargs)  # the first, taken and dropped

    broker.cancel_order = cancel  # type: ignore[method-assign]
    rig.engine.orders.cancel_after_commit([row])
    rig.engine.orders.send_cancels()
    rig.ticks(3)
    assert len(asked) == 1 and rig.store.order(entry.client_order_id).status not in ("canceled", "pending_cancel")  # type: ignore[union-attr]
    rig.clock.advance(CANCEL_PATIENCE.total_seconds())
    rig.ticks(3)
    assert len(asked) == 2 and rig.store.order(entry.client_order_id).status == "canceled"  # type: ignore[union-attr]
    rig.clock.advance(timedelta(minutes=5).total_seconds())
    rig.ticks(2)
    assert len(asked) == 2  # ended: never asked again
    assert entry.client_order_id not in rig.engine.orders.cancel_requested  # nor remembered for the rest of the run


def test_a_cancel_refused_while_the_entry_still_works_is_asked_again_and_reported(project: ProjectCopy, clock: ManualClock) -> None:
    """The broker answers a cancel 422 "not cancelable" and goes on showing the entry working: the refusal was
    taken for an order that had ended, nothing asked again, and the entry worked on, silently, for a bot that gave
    it up (a GTC entry fills hours later). The cancel stays wanted while the order works: asked again
    CANCEL_PATIENCE later, and a second refusal of an order still working is an answer the engine cannot read (the
    system halts, naming it)."""
    from engine.trading.orders import CANCEL_PATIENCE

    exchange = SimExchange(clock, seed=7)
    with Emulator(exchange, key=KEY, secret=SECRET) as emulator:
        rig = make_rig(project, clock, broker=SnapshotBroker(make_api(emulator, clock), clock), exchange=exchange)
        entry = working_entry(rig)
        row = rig.store.order(entry.client_order_id)
        assert row is not None and row.broker_order_id
        refusal = '{"code":42210000,"message":"order is not cancelable"}'
        emulator.faults.append(Fault(status=422, body=refusal, path_prefix="/v2/orders/", method="DELETE", times=2))

        def deletes() -> int:
            return len([r for r in emulator.requests if r.method == "DELETE"])

        rig.engine.orders.cancel_after_commit([row])
        rig.engine.orders.send_cancels()
        rig.ticks(3)
        assert deletes() == 1 and rig.store.order(entry.client_order_id).status == "new"  # type: ignore[union-attr]
        assert not rig.store.halts("system")  # one refusal may be of an order that just ended
        rig.clock.advance(CANCEL_PATIENCE.total_seconds())
        rig.ticks(1)
        assert deletes() == 2
        (halt,) = [h.reason for h in rig.store.halts("system")]
        assert f"{entry.client_order_id}: the broker refuses to cancel it" in halt
        rig.clock.advance(CANCEL_PATIENCE.total_seconds())
        rig.ticks(2)
        assert deletes() == 3 and rig.store.order(entry.client_order_id).status == "canceled"  # type: ignore[union-attr]
        rig.ticks(1)
        assert entry.client_order_id not in rig.engine.orders.cancels_refused | rig.engine.orders.cancel_requested.keys()


def test_the_intents_are_synced_to_the_disk_before_any_is_sent(rig: Rig) -> None:
    """An order's intent is committed, synced (`StateStore.sync_to_disk`: it outlives a power cut), then sent."""
    calls: list[str] = []
    store, broker = rig.store, rig.engine.orders.broker
    real_sync, real_submit = store.sync_to_disk, broker.submit_order

    def sync() -> None:
        calls.append("sync")
        real_sync()

    def submit(request: Any, *args: Any, **kwargs: Any) -> Any:
        calls.append("post")
        return real_submit(request, *args, **kwargs)

    store.sync_to_disk = sync  # type: ignore[method-assign]
    broker.submit_order = submit  # type: ignore[method-assign]
    working_entry(rig)
    assert calls[-2:] == ["sync", "post"] and calls.count("post") == 1
