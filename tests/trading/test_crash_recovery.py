"""A crash between committing an intent and sending it, then a restart: exactly one order at the broker.

The broker is the emulator behind the real alpaca-py clients: it outlives the engine, as Alpaca would.
"""

from __future__ import annotations

import pytest

from engine.brokers.base import OrderRequest
from engine.brokers.emulator import Emulator, Fault
from engine.brokers.sim.exchange import SimExchange
from engine.brokers.snapshot import SnapshotBroker
from engine.core.clock import ManualClock
from tests.brokers.conftest import KEY, SECRET, make_api
from tests.conftest import ProjectCopy
from tests.trading.conftest import Rig, make_rig, working_entry

NOT_FOUND = '{"code":40410000,"message":"order not found"}'


class Crash(BaseException):
    """The process dies (kill -9, power loss): nothing after this point runs."""


@pytest.mark.parametrize("when", ["before_the_post", "after_the_post"])
def test_crash_then_restart_leaves_exactly_one_order(project: ProjectCopy, clock, when: str) -> None:
    exchange = SimExchange(clock)
    with Emulator(exchange, key=KEY, secret=SECRET) as emulator:
        broker = SnapshotBroker(make_api(emulator, clock), clock)
        real_submit = broker.submit_order

        def crashing_submit(request: OrderRequest):
            if when == "after_the_post":
                real_submit(request)  # the broker has it; the engine never hears back
            raise Crash

        broker.submit_order = crashing_submit  # type: ignore[method-assign]
        rig = make_rig(project, clock, broker=broker, exchange=exchange)
        with pytest.raises(Crash):
            rig.ticks(500)
        pending = rig.store.orders(statuses=("pending",))
        assert len(pending) == 1  # the intent was committed before the send
        cid = pending[0].client_order_id

        broker.submit_order = real_submit  # type: ignore[method-assign]
        restarted = rig.restart(broker)
        restarted.ticks(3)
        if when == "before_the_post":  # not found: but one 404 does not prove that no POST left before the crash
            assert restarted.store.order(cid).status == "unknown"  # type: ignore[union-attr]
            restarted.ticks(12)  # lookups prove it absent (NOT_FOUND_LOOKS over NOT_FOUND_SPAN, a minute after it)
        at_broker = [o for o in exchange.orders.values() if o.request.client_order_id == cid]
        posts = [r for r in emulator.requests if r.method == "POST" and r.body.get("client_order_id") == cid]
        lookups = [r for r in emulator.requests if "by_client_order_id" in r.path and cid in str(r.query)]
        assert pending[0].purpose == "entry" and lookups  # never decided without asking the broker
        assert restarted.engine.reconciled and restarted.engine.system.state == "armed"
        actions = [e["action"] for e in restarted.events("order") if e.get("client_order_id") == cid]
        if when == "after_the_post":  # the broker has it: adopted, exactly one
            assert len(at_broker) == 1 and len(posts) == 1 and "recovered" in actions
            assert restarted.store.order(cid).status == "filled"  # type: ignore[union-attr]
        else:  # it never left: an entry is not resent by a run that did not grant it
            assert at_broker == [] and posts == [] and "not_sent" in actions
            assert restarted.store.order(cid).error.startswith("lookups by client_order_id never found it")  # type: ignore[union-attr]


def test_an_old_unsent_intent_is_dropped_not_sent(project: ProjectCopy, clock) -> None:
    exchange = SimExchange(clock)
    with Emulator(exchange, key=KEY, secret=SECRET) as emulator:
        broker = SnapshotBroker(make_api(emulator, clock), clock)
        real_submit = broker.submit_order

        def crash(request: OrderRequest):
            raise Crash

        broker.submit_order = crash  # type: ignore[method-assign]
        rig = make_rig(project, clock, broker=broker, exchange=exchange)
        with pytest.raises(Crash):
            rig.ticks(500)
        cid = rig.store.orders(statuses=("pending",))[0].client_order_id
        clock.advance(600)  # the process was down for ten minutes: the signal is stale
        broker.submit_order = real_submit  # type: ignore[method-assign]
        restarted = rig.restart(broker)
        restarted.ticks(6)  # looked up until proved absent (NOT_FOUND_LOOKS over NOT_FOUND_SPAN)
        assert restarted.store.order(cid).status == "not_sent"  # type: ignore[union-attr]
        assert not [r for r in emulator.requests if r.method == "POST"]


def _crash_before_first_post(
    project: ProjectCopy, clock: ManualClock, exchange: SimExchange, emulator: Emulator
) -> tuple[Rig, SnapshotBroker]:
    broker = SnapshotBroker(make_api(emulator, clock), clock)
    real_submit = broker.submit_order

    def crash(request: OrderRequest):
        raise Crash

    broker.submit_order = crash  # type: ignore[method-assign]
    rig = make_rig(project, clock, broker=broker, exchange=exchange)
    with pytest.raises(Crash):
        rig.ticks(500)
    broker.submit_order = real_submit  # type: ignore[method-assign]
    return rig, broker


def test_a_failed_read_at_restart_sends_nothing_and_decides_nothing(project: ProjectCopy, clock) -> None:
    exchange = SimExchange(clock)
    with Emulator(exchange, key=KEY, secret=SECRET) as emulator:
        rig, broker = _crash_before_first_post(project, clock, exchange, emulator)
        cid = rig.store.orders(statuses=("pending",))[0].client_order_id
        # the positions, which recovery and reconciliation need (a failing account read does not stop them)
        emulator.faults.append(Fault(status=503, path_prefix="/v2/positions"))
        restarted = rig.restart(broker)
        restarted.ticks(1)
        row = restarted.store.order(cid)
        assert not restarted.engine.reconciled and row is not None and row.status == "pending"
        assert not [r for r in emulator.requests if r.method == "POST"]
        restarted.ticks(14)  # the broker answers again: the intent is looked up until proved absent, and dropped
        row = restarted.store.order(cid)
        assert restarted.engine.reconciled and row is not None and row.status == "not_sent"
        assert not [r for r in emulator.requests if r.method == "POST" and r.body.get("client_order_id") == cid]


def test_an_entry_granted_before_an_operator_halt_is_not_sent(project: ProjectCopy, clock, monkeypatch) -> None:
    from engine.core import failpoints
    from engine.core.journal import Journal
    from engine.core.store import StateStore
    from engine.trading.runner import operator_halt

    rig = make_rig(project, clock)
    halted: list[str] = []

    def operator_halts_now(name: str) -> None:  # after the tick's commit, before its sends, from another process
        pending = rig.store.orders(statuses=("pending",))
        if name == "intent_committed" and not halted and any(r.purpose == "entry" for r in pending):
            other = StateStore(rig.store.path)
            operator_halt(other, Journal(rig.log, clock), "news", clock.now())
            other.close()
            halted.append(pending[0].client_order_id)

    monkeypatch.setattr(failpoints, "reach", operator_halts_now)
    rig.until(lambda r: bool(halted))
    (cid,) = halted
    row = rig.store.order(cid)
    assert row is not None and row.status == "not_sent" and row.error == "halted before it was sent: news"
    assert cid not in rig.exchange.by_client_id


def test_an_order_that_would_cross_a_working_opposite_order_is_held_not_refused(rig: Rig) -> None:
    """Alpaca refuses a potential wash trade: the exit waits for the bot's own working entry, which is cancelled."""
    entry = working_entry(rig)
    orders, day = rig.engine.orders, rig.engine.trading_date(rig.clock.now())
    assert rig.store.order(entry.client_order_id).status in ("new", "accepted", "pending_new")  # type: ignore[union-attr]
    with rig.store.transaction():
        exit_ = OrderRequest("AAPL", "sell", orders.next_client_order_id("mom_AAPL", day), "market", "day", qty=1)
        orders.record_intent("mom_AAPL", day, "exit", exit_, "test")
    orders.send_pending()
    assert exit_.client_order_id not in rig.exchange.by_client_id  # held, not sent into a refusal
    assert rig.store.order(exit_.client_order_id).status == "pending"  # type: ignore[union-attr]
    held = [e for e in rig.events("order") if e.get("action") == "held"]
    assert held and held[0]["behind"] == [entry.client_order_id]
    assert entry.client_order_id in orders.cancel_requested  # the entry in the way is cancelled
    rig.ticks(3)  # the cancel takes effect; the exit goes out
    assert rig.store.order(entry.client_order_id).status == "canceled"  # type: ignore[union-attr]
    actions = [(e.get("action"), e.get("client_order_id"), e.get("status")) for e in rig.events("order")]
    canceled = actions.index(("update", entry.client_order_id, "canceled"))
    sent = next(i for i, a in enumerate(actions) if a[1] == exit_.client_order_id and a[0] in ("submitted", "send_failed"))
    assert sent > canceled  # the exit left only once the entry in its way was done


def test_an_order_whose_answer_an_exception_lost_is_looked_up_while_the_run_goes_on(
    project: ProjectCopy, clock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An exception between the POST and the record of its answer (any error the tick boundary catches: a state
    file locked past the wait as the answer is written, a bug) left the order `pending` for the rest of the run:
    no sync looks at a pending row, so the order working or filled at the broker was never followed, its fill
    never booked to its bot, and the position it made read as one no bot explains."""
    from engine.core import failpoints

    rig = make_rig(project, clock)
    raised: list[str] = []

    def answer_lost(name: str) -> None:
        if name == "after_post" and not raised:
            raised.append(rig.store.orders(statuses=("pending",))[0].client_order_id)
            raise RuntimeError("lost between the POST and its record")

    monkeypatch.setattr(failpoints, "reach", answer_lost)
    rig.until(lambda r: bool(raised))
    (cid,) = raised
    assert cid in rig.exchange.by_client_id  # the broker took it
    rig.ticks(3)
    row = rig.store.order(cid)
    assert row is not None and row.status == "filled", row
    owned = {(p.bot_id, p.symbol): p.qty for p in rig.store.positions()}
    assert owned.get((row.bot_id, row.symbol)) == pytest.approx(rig.exchange.positions[row.symbol].qty)  # its fee taken
    assert not [h.reason for h in rig.store.halts() if h.reason.startswith("reconciliation")]


@pytest.mark.parametrize("then", ["a_read_fails", "the_quote_is_too_wide"])
def test_an_entry_held_behind_an_opposite_order_does_not_leave_in_a_tick_that_grants_no_entry(
    project: ProjectCopy, clock, then: str
) -> None:
    """From the soak (tests/trading/test_soak.py): an entry held behind its symbol's opposite working order was
    granted on the tick that recorded it, and sent on the later tick that found the opposite order done, whatever
    that tick found: its account read failing (the system disarmed), or its bot's preflight failing (a quote too
    wide to be a price).
    It ends `not_sent`, naming why."""
    from engine.core.store import PositionRow

    exchange = SimExchange(clock, seed=7)
    with Emulator(exchange, key=KEY, secret=SECRET) as emulator:
        rig = make_rig(project, clock, broker=SnapshotBroker(make_api(emulator, clock), clock), exchange=exchange)
        rig.ticks(3)
        now, price = clock.now(), round(exchange.quote("AAPL").mid, 2)
        orders, day = rig.engine.orders, rig.engine.trading_date(now)
        with rig.store.transaction():  # mom_AAPL holds 1 AAPL, its exit working far above the market
            rig.store.save_position(PositionRow("mom_AAPL", "AAPL", 1.0, price, now, bought_qty=1.0))
            rig.store.save_machine_state("momentum", "mom_AAPL", "in_position", now)
            sell = OrderRequest("AAPL", "sell", orders.next_client_order_id("mom_AAPL", day), "limit", "day", qty=1,
                                limit_price=round(price * 2, 2))  # fmt: skip
            orders.record_intent("mom_AAPL", day, "exit", sell, "test")
        exchange.set_position("AAPL", 1, price)
        orders.send_pending()
        with rig.store.transaction():
            entry = OrderRequest("AAPL", "buy", orders.next_client_order_id("mom_AAPL", day), "market", "day", qty=1)
            orders.record_intent("mom_AAPL", day, "entry", entry, "test")
        orders.send_pending()
        assert rig.store.order(entry.client_order_id).status == "pending"  # type: ignore[union-attr]  # held
        exchange.cancel(exchange.by_client_id[sell.client_order_id])  # the exit ends at the broker
        if then == "a_read_fails":
            emulator.faults.append(Fault(status=503, path_prefix="/v2/account"))
        else:
            emulator.faults.append(Fault(path_prefix="/v2/stocks/quotes/latest", patch={"quotes.AAPL.ap": round(price * 1.5, 2)}))
        rig.ticks(1)
        assert entry.client_order_id not in exchange.by_client_id
        row = rig.store.order(entry.client_order_id)
        assert row is not None and row.status == "not_sent"
        said = "a broker read of this tick failed (account)" if then == "a_read_fails" else "preflight fails (quotes_usable)"
        assert said in (row.error or ""), row.error


def test_a_kill_at_a_later_request_of_the_tick_loses_no_event_of_what_sqlite_committed(project: ProjectCopy, clock) -> None:
    """From the soak (tests/trading/test_soak.py): a tick commits in several transactions (each order's fills in
    sync, then the tick's own) and makes broker requests after them (lookups of other orders, the crypto pairs'
    assets, reconciliation's reads). A commit's events waited in the journal's buffer until the end of the tick
    (or the next POST or cancel), so a kill at one of those requests left SQLite holding a fill the log never
    said: the log's fills of an order no longer added up to what SQLite had filled. A commit's events reach the
    file as it commits."""
    from engine.core.journal import read_events

    exchange = SimExchange(clock, seed=7)
    with Emulator(exchange, key=KEY, secret=SECRET) as emulator:
        broker = SnapshotBroker(make_api(emulator, clock), clock)
        rig = make_rig(project, clock, broker=broker, exchange=exchange)
        rig.ticks(3)
        orders, day = rig.engine.orders, rig.engine.trading_date(clock.now())
        with rig.store.transaction():  # two market buys, of two bots: both fill, both leave the open orders
            for bot, symbol, qty, tif in (("mom_AAPL", "AAPL", 1.0, "day"), ("crypto_core", "BTC/USD", 0.001, "gtc")):
                buy = OrderRequest(symbol, "buy", orders.next_client_order_id(bot, day), "market", tif, qty=qty)  # type: ignore[arg-type]
                orders.record_intent(bot, day, "entry", buy, "test")
        orders.send_pending()
        real_lookup, lookups = broker.get_order_by_client_id, []

        def dies_at_the_second_lookup(client_order_id: str) -> object:
            lookups.append(client_order_id)
            if len(lookups) == 2:  # the first one's fill is committed
                raise Crash
            return real_lookup(client_order_id)

        broker.get_order_by_client_id = dies_at_the_second_lookup  # type: ignore[assignment,method-assign]
        with pytest.raises(Crash):
            rig.ticks(2)
        rig.engine.journal.discard()  # the dead process's buffer never reaches the file
        said: dict[str, float] = {}
        for event in read_events(rig.log):
            if event["event"] == "fill":
                said[event["client_order_id"]] = said.get(event["client_order_id"], 0.0) + event["qty"]
        filled = {row.client_order_id: row.filled_qty for row in rig.store.orders() if row.filled_qty}
        assert len(filled) == 1 and said == pytest.approx(filled)


def test_an_exit_is_not_resent_over_more_than_the_broker_holds(project: ProjectCopy, clock) -> None:
    """A crash after an exit's intent was committed, before its POST; meanwhile the position was closed at the
    broker (by hand, from Alpaca's dashboard). Resent as recorded, the sale of shares no longer held would open
    a short where the account allows one: "exits only reduce risk" held only while the position did. The exit is
    not resent, and the difference (the bots own what the broker does not) halts at reconciliation."""
    exchange = SimExchange(clock)
    with Emulator(exchange, key=KEY, secret=SECRET) as emulator:
        broker = SnapshotBroker(make_api(emulator, clock), clock)
        real_submit = broker.submit_order

        def crashing_exit(request: OrderRequest):
            if request.side == "sell":
                raise Crash
            return real_submit(request)

        broker.submit_order = crashing_exit  # type: ignore[method-assign]
        project.replace("config/bots.yaml", "enabled: true\n  bot_id: opt_core", "enabled: false\n  bot_id: opt_core")
        project.replace("config/bots.yaml", "enabled: true\n  bot_id: crypto_core", "enabled: false\n  bot_id: crypto_core")
        rig = make_rig(project, clock, broker=broker, exchange=exchange)
        with pytest.raises(Crash):
            rig.ticks(4000)
        (exit_row,) = rig.store.orders(statuses=("pending",))
        assert exit_row.purpose == "exit" and exit_row.side == "sell"
        held = exchange.positions[exit_row.symbol].qty
        exchange.submit(OrderRequest(exit_row.symbol, "sell", "closed-by-hand", "market", "day", qty=held))
        clock.advance(1)
        exchange.process()
        assert exit_row.symbol not in exchange.positions  # the broker holds none now

        broker.submit_order = real_submit  # type: ignore[method-assign]
        restarted = rig.restart(broker)
        restarted.ticks(6)  # the exit's lookups prove it never left (NOT_FOUND_LOOKS over NOT_FOUND_SPAN)
        posts = [r for r in emulator.requests if r.method == "POST" and r.body.get("client_order_id") == exit_row.client_order_id]
        assert posts == []
        row = restarted.store.order(exit_row.client_order_id)
        assert row is not None and row.status == "not_sent" and "the broker holds 0" in (row.error or "")
        assert restarted.engine.system.state == "halted"  # what the bots own, the broker does not: reconciliation


def test_an_abandoned_entry_whose_post_answer_was_lost_is_cancelled_after_a_restart(project: ProjectCopy, clock) -> None:
    """The entry's POST reached the broker but its answer was lost (`unknown`, looked up until found); its bot gave it
    up (abandon_entry: committed, the cancel wanted once a lookup finds it) and the process died. The restart's
    first reads did not show it (a lagging listing), so the entry was still `unknown` when the restart looked for the
    abandoned entries, which took only working ones: found the next tick, it worked on for a bot that gave it up."""
    exchange = SimExchange(clock)
    with Emulator(exchange, key=KEY, secret=SECRET) as emulator:
        broker = SnapshotBroker(make_api(emulator, clock), clock)
        rig = make_rig(project, clock, broker=broker, exchange=exchange)
        rig.ticks(3)  # reconciled and armed
        orders, day = rig.engine.orders, rig.engine.trading_date(clock.now())
        emulator.faults.append(Fault(status=504, after=True, path_prefix="/v2/orders", method="POST"))
        emulator.faults.append(Fault(status=404, body=NOT_FOUND, path_prefix="/v2/orders:by_client_order_id"))
        with rig.store.transaction():
            entry = OrderRequest("AAPL", "buy", orders.next_client_order_id("mom_AAPL", day), "limit", "day", qty=1, limit_price=1.0)
            orders.record_intent("mom_AAPL", day, "entry", entry, "test")
        orders.send_pending()
        cid = entry.client_order_id
        assert rig.store.order(cid).status == "unknown" and cid in exchange.by_client_id  # type: ignore[union-attr]
        with rig.store.transaction():  # what the tick committed: the bot gave the entry up; then the process died
            rig.store.save_machine_states([("momentum", "mom_AAPL", "idle", clock.now())])
        lagging = [Fault(status=200, body="[]", path_prefix="/v2/orders", method="GET")]  # the listing without it
        lagging += [Fault(status=404, body=NOT_FOUND, path_prefix="/v2/orders:by_client_order_id") for _ in range(2)]
        emulator.faults.extend([*lagging, lagging[0]])  # the first tick's list and lookups, then its re-read's list
        restarted = rig.restart()
        restarted.ticks(4)
        assert not emulator.faults  # every lagging read was made
        assert restarted.store.order(cid).status == "canceled"  # type: ignore[union-attr]
        assert exchange.orders[exchange.by_client_id[cid]].status == "canceled"


def _time_stop_after_restart(rig: Rig) -> Rig:
    """crypto_core holding, the process restarted (the broker kept everything), its time stop (240 min) passed."""
    rig.until(lambda r: bool(r.store.positions()))
    again = rig.restart()
    again.clock.advance(245 * 60)
    return again


def test_exits_leave_after_a_restart_while_the_account_read_fails(project: ProjectCopy, clock) -> None:
    """Reconciliation waited on the account, which it does not compare, and recovery (which sends the exits recorded
    while unreconciled) waited on reconciliation: after a restart, every stop loss, time stop and flatten stayed
    `pending` for as long as /v2/account failed. Exits need the positions and the open orders read, never the
    account; entries still need every read (the system never arms without it)."""
    exchange = SimExchange(clock, seed=7)
    with Emulator(exchange, key=KEY, secret=SECRET) as emulator:
        rig = make_rig(project, clock, broker=SnapshotBroker(make_api(emulator, clock), clock), exchange=exchange)
        again = _time_stop_after_restart(rig)
        entries_before = {r.client_order_id for r in again.store.orders() if r.purpose == "entry"}
        emulator.faults.append(Fault(status=503, path_prefix="/v2/account", times=0))
        again.ticks(3)
        exits = [r for r in again.store.orders() if r.purpose == "exit"]
        assert exits and all(r.status == "filled" for r in exits), [(r.status, r.symbol) for r in exits]
        assert again.store.positions() == [] and "ETH/USD" not in exchange.positions
        assert again.engine.system.state != "armed"  # no account: nothing may open
        assert {r.client_order_id for r in again.store.orders() if r.purpose == "entry"} == entries_before


def test_exits_leave_after_a_restart_while_a_moved_last_equity_waits_for_its_confirmations(project: ProjectCopy, clock) -> None:
    """The same gap, by the engine's own hand: a new process's last_equity that differs from the one an earlier run
    of the day saved hides the account (`DailyBasis.refused`) until LAST_EQUITY_CONFIRMATIONS answers agree, and
    the exits waited with it: for as long as the answers do not agree (here, each a different one), for ever."""
    again = _time_stop_after_restart(make_rig(project, clock))
    for _ in range(6):
        again.exchange.last_equity -= 500.0  # never the same twice: never confirmed, never read (a gain, not a loss)
        again.ticks(1)
    refused = [e for e in again.events("broker_error") if "last_equity" in e["message"]]
    assert len(refused) == 6 and again.engine.system.state != "armed"  # the account never read: nothing may open
    exits = [r for r in again.store.orders() if r.purpose == "exit"]
    assert exits and all(r.status == "filled" for r in exits), [(r.status, r.symbol) for r in exits]
    assert again.store.positions() == [] and again.exchange.positions == {}
