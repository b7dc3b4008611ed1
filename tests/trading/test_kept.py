"""What a restart must not forget (engine/trading/kept.py): a crash loop (a service manager restarting the engine after
each crash, or an operator restarting it) is no way around a fail-closed rule. Each case restarts the engine on the
same state file (a new Engine, the broker alive) and checks that a count or a wait an earlier run started goes on."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta

import pytest

from engine.brokers.base import OrderRequest
from engine.brokers.emulator import Emulator, Fault
from engine.brokers.sim.exchange import SimExchange
from engine.brokers.snapshot import SnapshotBroker
from engine.core.clock import ManualClock
from engine.core.store import SYSTEM_SCOPE
from engine.trading import kept
from engine.trading.exitbot import KillVerdict
from engine.trading.gate import Gate
from engine.trading.handlers import TickContext, _exit_qty
from engine.trading.view import read_view
from tests.brokers.conftest import KEY, SECRET, make_api
from tests.conftest import ProjectCopy
from tests.trading.conftest import Rig, make_rig, working_entry

API_HALT = "kill condition: api_failure_halt (api_failures_in_window 5, health_max_api_failures_in_window 5)"


@pytest.fixture
def emulated(project: ProjectCopy, clock: ManualClock) -> Iterator[tuple[Rig, Emulator]]:
    """An engine on the emulator through the real alpaca-py clients, so that the broker can fail and refuse."""
    exchange = SimExchange(clock)
    with Emulator(exchange, key=KEY, secret=SECRET) as emulator:
        broker = SnapshotBroker(make_api(emulator, clock), clock)
        yield make_rig(project, clock, broker=broker, exchange=exchange), emulator


def system_halts(rig: Rig) -> list[str]:
    return [h.reason for h in rig.store.halts(SYSTEM_SCOPE)]


# --- the broker failures' window ----------------------------------------------------------------------------------


def test_a_broker_failing_every_tick_trips_api_failure_halt_though_the_engine_restarts_every_two_ticks(
    emulated: tuple[Rig, Emulator],
) -> None:
    """Five failures in 60 s halt; the account read fails once a tick (5 s). Counted in memory only, each process
    saw two failures and the halt never came, however long the loop went on."""
    rig, emulator = emulated
    rig.ticks(2)
    assert rig.engine.system.state == "armed"
    emulator.faults.append(Fault(status=503, path_prefix="/v2/account", times=0))
    for _ in range(4):
        rig.ticks(2)
        if rig.engine.system.state == "halted":
            break
        rig = rig.restart()
    assert system_halts(rig) == [API_HALT]


def test_failures_saved_in_the_future_count_from_now_for_one_window(rig: Rig, clock: ManualClock) -> None:
    """A window saved by a clock that was ahead (then set back): each failure counts as of now, for one window from
    now, not until the clock has caught up with it (which, a day back, would block entries for a day)."""
    kept.save_failure_times(rig.store, [clock.now() + timedelta(hours=20)] * 3)
    restarted = rig.restart()
    assert restarted.engine.exitbot.failures_in_window(clock.now()) == 3
    assert restarted.engine.exitbot.failures_in_window(clock.now() + timedelta(seconds=61)) == 0


def test_failures_from_another_day_are_out_of_the_window(rig: Rig, clock: ManualClock) -> None:
    kept.save_failure_times(rig.store, [clock.now() - timedelta(days=1)] * 9)
    assert rig.restart().engine.exitbot.failures_in_window(clock.now()) == 0


def test_an_unreadable_window_is_a_missing_count_for_one_window(rig: Rig, clock: ManualClock) -> None:
    """A hand edit, a damaged write: what an earlier run counted is unknown, so api_failure_halt trips on the missing
    fact (as any kill condition that cannot be read does) rather than starting again from nothing."""
    rig.store.set_meta(kept.FAILURES_KEY, '{"at": ["yesterday"]}')
    restarted = rig.restart()
    assert restarted.engine.exitbot.failures_in_window(clock.now()) is None
    restarted.ticks(1)
    assert [h.conditions for h in restarted.store.halts(SYSTEM_SCOPE)] == [("api_failure_halt",)]
    assert restarted.engine.exitbot.failures_in_window(clock.now() + timedelta(seconds=61)) == 0
    assert kept.failure_times(restarted.store) == []  # written over with a readable window


def test_a_saved_time_before_the_first_instant_utc_holds_is_unreadable_not_a_halt_every_tick(
    rig: Rig, clock: ManualClock
) -> None:
    """0001-01-01T00:00+05:00 is read as a time, but lies before the first instant UTC can hold: kept, it overflowed
    when the window was written again, and every tick halted with `halt_not_saved` instead of the record being
    named unreadable. It is unreadable now (kept._instant), as any other hand edit of the record."""
    rig.store.set_meta(kept.FAILURES_KEY, '{"at": ["0001-01-01T00:00:00+05:00"]}')
    restarted = rig.restart()
    assert restarted.engine.exitbot.failures_in_window(clock.now()) is None
    restarted.ticks(2)
    assert [h.conditions for h in restarted.store.halts(SYSTEM_SCOPE)] == [("api_failure_halt",)]
    assert kept.failure_times(restarted.store) == []  # written over with a readable window


def test_the_saved_window_is_short_and_written_only_when_a_failure_came(emulated: tuple[Rig, Emulator]) -> None:
    """A tick without a failure writes nothing; a broker failing many calls writes the latest
    max_api_failures_in_window of them (what the kill condition reads is the same)."""
    rig, emulator = emulated
    rig.ticks(3)
    assert rig.store.meta(kept.FAILURES_KEY) is None
    emulator.faults.append(Fault(status=503, path_prefix="/v2/account", times=0))
    rig.ticks(8)
    assert len(kept.failure_times(rig.store)) == 5


# --- the wait after a refused exit --------------------------------------------------------------------------------


def refused_exit(rig: Rig, emulator: Emulator) -> OrderRequest:
    """mom_AAPL's exit of 1 AAPL, refused by the broker on its merits."""
    rig.ticks(3)
    rig.exchange.set_position("AAPL", 1.0, 190.0)
    refusal = '{"code":40310000,"message":"insufficient qty available for order"}'
    emulator.faults.append(Fault(status=403, body=refusal, path_prefix="/v2/orders", method="POST"))
    orders, day = rig.engine.orders, rig.engine.trading_date(rig.clock.now())
    with rig.store.transaction():
        request = OrderRequest("AAPL", "sell", orders.next_client_order_id("mom_AAPL", day), "market", "day", qty=1)
        orders.record_intent("mom_AAPL", day, "exit", request, "test")
    orders.send_pending()
    row = rig.store.order(request.client_order_id)
    assert row is not None and row.status == "rejected"
    return request


def exit_sized(rig: Rig) -> float | None:
    snapshot = rig.engine.broker.snapshot(rig.engine.needs)
    view = read_view(rig.store, snapshot, rig.clock.now(), rig.engine.tz)
    tick = TickContext(rig.engine, view, Gate.open(0, None, snapshot), KillVerdict((), {}, ()))
    return _exit_qty(tick, "mom_AAPL", "AAPL", 1.0)


def test_a_refused_exit_is_not_sent_again_at_once_by_a_restart(emulated: tuple[Rig, Emulator], clock: ManualClock) -> None:
    """The next exit waits EXIT_RETRY_AFTER after a refusal; kept in memory only, a restart sent it at once (and a
    crash loop sent it every start)."""
    rig, emulator = emulated
    refused_exit(rig, emulator)
    clock.advance(10)
    restarted = rig.restart()
    assert exit_sized(restarted) is None
    assert "the broker refused the last exit" in restarted.events("exit_waiting")[-1]["reason"]
    clock.advance(51)
    assert exit_sized(restarted) == 1.0


def test_a_refusal_the_clock_puts_in_the_future_waits_one_minute_from_now(
    emulated: tuple[Rig, Emulator], clock: ManualClock
) -> None:
    """The clock set back an hour after the refusal: the exit waits a minute, not the hour the clock takes to pass
    the refusal's time (an exit held back is a risk too)."""
    rig, emulator = emulated
    refused_exit(rig, emulator)
    clock.advance(-3600)
    restarted = rig.restart()
    assert restarted.engine.orders.exits_refused == {("mom_AAPL", "AAPL"): clock.now()}


# --- start-up reconciliation's wait for one more read -------------------------------------------------------------


def test_a_difference_beside_a_working_order_of_ours_halts_though_the_engine_restarts_every_tick(
    project: ProjectCopy, clock: ManualClock
) -> None:
    """Start-up reconciliation waits one tick when an order of ours works on the symbol it finds a difference on
    (the order may have filled between the reads). Kept in memory only, a restart every tick waited again each time:
    the system never halted, and the bot's entry, never cancelled by a halt, worked on beside a position nobody
    owned."""
    clock.advance(330)  # inside mom_AAPL's trade window (09:35 to 12:30 New York), where its entry may work
    rig = make_rig(project, clock)
    entry = working_entry(rig)
    rig.store.save_machine_state("momentum", "mom_AAPL", "entering", rig.clock.now())  # the entry is its bot's
    rig.exchange.set_position("AAPL", 5.0, 190.0)  # bought by hand: no bot owns it
    for _ in range(3):
        rig = rig.restart()
        rig.ticks(1)
        if system_halts(rig):
            break
    assert system_halts(rig) == ["reconciliation: position AAPL: broker 5, bots own 0"]
    assert not rig.engine.reconciled
    rig.ticks(1)  # the halt cancels the bot's working entry
    row = rig.store.order(entry.client_order_id)
    assert row is not None and row.status == "canceled"


def test_a_wait_saved_on_another_day_is_not_taken(rig: Rig, clock: ManualClock) -> None:
    """Yesterday's wait belonged to yesterday's reads: a difference found today waits its one read as any does."""
    yesterday = clock.now() - timedelta(days=1)
    kept.save_unconfirmed(rig.store, yesterday, yesterday.date(), ["position AAPL"])
    assert rig.restart().engine._unconfirmed == []
    kept.save_unconfirmed(rig.store, clock.now() + timedelta(hours=1), clock.now().date(), ["position AAPL"])
    assert rig.restart().engine._unconfirmed == []  # from the future: not taken either
    kept.save_unconfirmed(rig.store, clock.now() - timedelta(seconds=5), clock.now().date(), ["position AAPL"])
    assert rig.restart().engine._unconfirmed == ["position AAPL"]


# --- the order path's patience with an order the broker took and no longer shows ---------------------------------


def lost_exit(rig: Rig) -> str:
    """mom_AAPL holds 1 AAPL and is exiting: its exit (a limit far above the market) is taken by the broker, which
    then neither lists nor finds it. Returns its client_order_id."""
    rig.ticks(3)
    now = rig.clock.now()
    rig.exchange.set_position("AAPL", 1.0, 190.0)
    rig.store.set_position("mom_AAPL", "AAPL", 1.0, 190.0, now)
    rig.store.save_machine_state("momentum", "mom_AAPL", "exiting", now)
    orders, day = rig.engine.orders, rig.engine.trading_date(now)
    with rig.store.transaction():
        cid = orders.next_client_order_id("mom_AAPL", day)
        request = OrderRequest("AAPL", "sell", cid, "limit", "day", qty=1, limit_price=10_000.0)
        orders.record_intent("mom_AAPL", day, "exit", request, "test")
    orders.send_pending()
    row = rig.store.order(cid)
    assert row is not None and row.broker_order_id and row.status in ("new", "accepted")
    rig.exchange._working.pop(row.broker_order_id)  # the broker lists it open no more,
    rig.exchange.by_client_id.pop(cid)  # and does not find it when asked
    return cid


def test_an_order_the_broker_lost_halts_though_the_engine_restarts_every_minute(rig: Rig) -> None:
    """An order the broker took, then neither listed nor found: past EXISTS_PATIENCE (5 min) an answer the engine
    cannot read, which halts (its bot waits on an exit nobody can see). Counted from the first miss in memory only,
    a restart every minute started the patience again each time, and the halt never came."""
    cid = lost_exit(rig)
    for _ in range(8):
        rig = rig.restart()
        rig.ticks(12)
        if system_halts(rig):
            break
    [reason] = system_halts(rig)  # the lookups' failures meanwhile (api_failure_halt) add no halt: it flattens nothing
    assert reason.startswith(f"the broker's answer could not be read (get_order: {cid}: accepted as")
    assert "neither listed nor found since 2026-11-23T14:30:15" in reason


def test_an_unreadable_watch_takes_the_patience_as_run_out(rig: Rig) -> None:
    """What an earlier run was waiting out is unknown: an order found missing is reported at the first tick."""
    cid = lost_exit(rig)
    rig.store.set_meta(kept.ORDER_WATCH_KEY, "{")
    restarted = rig.restart()
    restarted.ticks(1)
    [reason] = system_halts(restarted)
    assert f"{cid}: accepted as" in reason


def test_a_watch_saved_on_another_day_or_later_than_now_starts_again(rig: Rig, clock: ManualClock) -> None:
    now, day = clock.now(), clock.now().date()
    watch = kept.OrderWatch({"x": now - timedelta(minutes=9)}, {}, frozenset({"x"}))
    kept.save_order_watch(rig.store, now - timedelta(days=1), day - timedelta(days=1), watch)
    assert kept.order_watch(rig.store, now, day) == kept.OrderWatch({}, {}, frozenset())
    kept.save_order_watch(rig.store, now + timedelta(minutes=1), day, watch)
    assert kept.order_watch(rig.store, now, day) == kept.OrderWatch({}, {}, frozenset())
    kept.save_order_watch(rig.store, now, day, kept.OrderWatch({"x": now + timedelta(hours=3)}, {}, frozenset()))
    assert kept.order_watch(rig.store, now, day) == kept.OrderWatch({"x": now}, {}, frozenset())


def test_the_watch_is_compared_as_its_record_and_built_only_to_be_written(
    rig: Rig, clock: ManualClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`watch_changed` compares the three collections with the saved record's instead of building the record (two
    copies a tick, asked twice a tick): it must say what comparing the records says, set against frozenset
    included, and an unchanged watch must be neither built nor written."""
    orders, now = rig.engine.orders, clock.now()
    rig.ticks(1)

    def records_differ() -> bool:
        return orders._watch() != orders._watch_saved

    assert orders.watch_changed is records_differ() is False
    for change, undo in (
        (lambda: orders._missing_since.__setitem__("a", now), lambda: orders._missing_since.pop("a")),
        (lambda: orders._replacements_missing.__setitem__("b", now), lambda: orders._replacements_missing.pop("b")),
        (lambda: orders.cancels_refused.add("c"), lambda: orders.cancels_refused.discard("c")),
    ):
        change()
        assert orders.watch_changed is records_differ() is True
        undo()
        assert orders.watch_changed is records_differ() is False
    orders._missing_since["a"] = now
    with rig.store.transaction():
        orders.save_watch(now, now.date())  # written: now the saved record
    assert orders.watch_changed is records_differ() is False
    orders._missing_since["a"] = now + timedelta(seconds=1)  # the same order, another time: changed
    assert orders.watch_changed is records_differ() is True
    orders._missing_since["a"] = now

    def built() -> kept.OrderWatch:
        raise AssertionError("an unchanged watch's record built")

    monkeypatch.setattr(orders, "_watch", built)
    statements = rig.store.statements
    with rig.store.transaction():
        orders.save_watch(now, now.date())
    assert rig.store.statements - statements <= 2  # the transaction's own, nothing written
