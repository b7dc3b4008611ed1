"""Operator commands landing on a live engine: a halt committed by another process while the engine is sending."""

from __future__ import annotations

from typing import Any

from engine.brokers.base import Order, OrderRequest
from engine.core.journal import Journal
from engine.core.store import StateStore
from engine.trading.runner import operator_halt
from tests.conftest import ProjectCopy
from tests.trading.conftest import Rig, working_entry


def halt_from_another_process(rig: Rig, busy_wait_seconds: float = 5.0) -> int:
    """`engine halt --reason news`, as another process does it: its own connection to the state file."""
    other = StateStore(rig.store.path, busy_wait_seconds=busy_wait_seconds)
    try:
        return operator_halt(other, Journal(rig.log, rig.clock), "news", rig.clock.now())
    finally:
        other.close()


def test_a_halt_committed_during_a_send_stops_the_ticks_later_entries(rig: Rig) -> None:
    """Two entries of one tick: while the first is in flight (a POST takes a while on Alpaca), `engine halt`
    commits from another process. The second entry must not leave: the halt is read again before each one."""
    rig.ticks(3)  # reconciled and armed
    orders, day = rig.engine.orders, rig.engine.trading_date(rig.clock.now())
    with rig.store.transaction():
        first = OrderRequest("AAPL", "buy", orders.next_client_order_id("mom_AAPL", day), "limit", "day", qty=1, limit_price=1.0)
        second = OrderRequest("SPY", "buy", orders.next_client_order_id("opt_core", day), "limit", "day", qty=1, limit_price=1.0)
        orders.record_intent("mom_AAPL", day, "entry", first, "test")
        orders.record_intent("opt_core", day, "entry", second, "test")
    broker = rig.engine.orders.broker
    real_submit = broker.submit_order
    posted: list[str] = []

    def submit_while_the_operator_halts(request: OrderRequest) -> Order:
        posted.append(request.client_order_id)
        if len(posted) == 1:  # the operator's halt commits while this POST is on its way
            halt_from_another_process(rig)
        return real_submit(request)

    broker.submit_order = submit_while_the_operator_halts  # type: ignore[method-assign]
    orders.send_pending()
    assert posted == [first.client_order_id]  # nothing after the halt was committed
    row = rig.store.order(second.client_order_id)
    assert row is not None and row.status == "not_sent" and row.error == "halted before it was sent: news"


def test_no_broker_request_is_made_while_the_state_file_is_write_locked(rig: Rig) -> None:
    """A request to the broker can take its whole timeout (10 s). Made inside the tick's transaction, it keeps
    SQLite's write lock that long, and an operator's `halt` or `resume` meanwhile fails "database is locked"
    after its 5 s wait. The kill switch's cancels of working entries, after an operator's halt, are such requests."""
    entry = working_entry(rig)
    row = rig.store.order(entry.client_order_id)
    assert row is not None and row.status in ("new", "accepted", "pending_new")  # working, far from the market
    broker = rig.engine.broker
    calls: list[str] = []
    locked_calls: list[str] = []
    for name in ("snapshot", "submit_order", "cancel_order", "get_order", "get_order_by_client_id", "close_position"):
        real = getattr(broker, name)

        def watched(*args: Any, _real: Any = real, _name: str = name, **kwargs: Any) -> Any:
            calls.append(_name)
            if rig.store._conn.in_transaction:
                locked_calls.append(_name)
            return _real(*args, **kwargs)

        setattr(broker, name, watched)
    halt_from_another_process(rig)
    rig.ticks(3)  # the kill switch cancels the working entry
    assert "cancel_order" in calls
    assert rig.store.order(entry.client_order_id).status == "canceled"  # type: ignore[union-attr]
    assert locked_calls == []


def test_an_entry_its_bot_abandoned_before_a_crash_is_cancelled_at_restart(rig: Rig) -> None:
    """The machine left `entering` (cancel_entry) and committed it; the process died before the cancel, which goes
    out after the commit, was sent. Nothing else would cancel it: a GTC entry would work on, and fill, for a bot
    that gave it up (found by the chaos run)."""
    entry = working_entry(rig)
    with rig.store.transaction():  # what the tick committed: the bot gave the entry up
        rig.store.save_machine_states([("momentum", "mom_AAPL", "idle", rig.clock.now())])
    restarted = rig.restart()
    restarted.ticks(3)
    row = restarted.store.order(entry.client_order_id)
    assert row is not None and row.status == "canceled"
    [said] = [e for e in restarted.events("order") if e.get("action") == "abandoned_at_restart"]
    assert said["orders"] == [entry.client_order_id]


def test_a_working_entry_of_a_bot_still_entering_is_kept_at_restart(rig: Rig) -> None:
    entry = working_entry(rig)
    with rig.store.transaction():
        rig.store.save_machine_states([("momentum", "mom_AAPL", "entering", rig.clock.now())])
    restarted = rig.restart()
    restarted.ticks(1)
    row = restarted.store.order(entry.client_order_id)
    assert row is not None and row.status not in ("canceled", "pending_cancel")
    assert not [e for e in restarted.events("order") if e.get("action") == "abandoned_at_restart"]


def test_halt_and_resume_wait_longer_than_a_signal_may_hold_the_tick(project: ProjectCopy) -> None:
    """A tick holds the write lock while it runs the bots' signals, each up to health.max_signal_seconds (5 s);
    SQLite's own 5 s wait made an operator's halt fail "database is locked" behind one slow signal (chaos run)."""
    from engine.cli import _open_state, build_parser
    from engine.core.store import OPERATOR_WAIT_SECONDS

    files = ["--config", str(project.config), "--machines", str(project.machines), "--rules", str(project.rules),
             "--state-db", str(project.root / "s.db"), "--log", str(project.root / "a.jsonl")]  # fmt: skip
    for command in (["halt", "--reason", "x"], ["resume"]):
        store, journal, _now, _report = _open_state(build_parser().parse_args([*command, *files]))
        try:
            [(waits_ms,)] = store._conn.execute("PRAGMA busy_timeout").fetchall()
        finally:
            journal.close()
            store.close()
        assert waits_ms == OPERATOR_WAIT_SECONDS * 1000 > 5000 + 250  # the default budget and the watchdog's period


def test_an_operator_can_halt_while_a_signal_runs(rig: Rig) -> None:
    """A signal is the user's code and may take its whole budget (health.max_signal_seconds) each call: asked inside
    the tick's transaction, SQLite's write lock was held meanwhile, and an operator's `halt` waited on it, or failed
    "database is locked" behind a few slow signals. The signals are asked before the transaction opens."""
    rig.ticks(3)  # reconciled and armed
    halted_during: list[int] = []

    def signal_while_the_operator_halts(prices: Any, params: Any) -> bool:
        if not halted_during:
            halted_during.append(halt_from_another_process(rig, busy_wait_seconds=0.0))  # a lock held fails at once
        return False

    rig.engine.bot("mom_AAPL").signal = signal_while_the_operator_halts
    report = rig.engine.tick()
    assert report.error is None and len(halted_during) == 1
    rig.ticks(1)
    assert rig.engine.system.state == "halted"


def test_a_halt_committed_while_the_signals_run_stops_that_ticks_entries(rig: Rig) -> None:
    """The signals run before the tick's transaction, and may take seconds: a halt another process commits meanwhile
    must keep this tick's entries from being recorded (and a trade of the daily cap counted), not only from being
    sent (chaos run)."""
    from datetime import timedelta

    from tests.trading.conftest import OPEN

    rig.until(lambda r: r.clock.now() >= OPEN + timedelta(minutes=5, seconds=5))  # inside mom_AAPL's trade window
    halted: list[int] = []

    def enter_while_the_operator_halts(prices: Any, params: Any) -> bool:
        if not halted:
            halted.append(halt_from_another_process(rig))
        return True

    rig.engine.bot("mom_AAPL").signal = enter_while_the_operator_halts
    rig.ticks(1)
    assert halted and rig.engine.system.state == "halted"
    assert not [o for o in rig.store.orders() if o.bot_id == "mom_AAPL" and o.purpose == "entry"]
    assert rig.store.counters(rig.engine.trading_date(rig.clock.now())).get("mom_AAPL", {}).get("entries", 0) == 0


def test_a_halt_committed_as_the_ticks_transaction_opens_stops_that_ticks_entries(rig: Rig) -> None:
    """`engine halt` holds SQLite's write lock for its own short transaction. A tick that read the state file just
    before (the halt not yet committed) then waits on that lock in its BEGIN, and goes on once the halt is
    committed: the view it read has no halt, and the entry its bot asks for was recorded and counted against the
    daily cap, stopped only at its send. Inside the tick's transaction nothing else can commit: what it reads there
    is what holds."""
    from datetime import timedelta

    from tests.trading.conftest import OPEN

    rig.until(lambda r: r.clock.now() >= OPEN + timedelta(minutes=5, seconds=5))  # inside mom_AAPL's trade window
    rig.engine.bot("mom_AAPL").signal = lambda prices, params: True
    engine, store = rig.engine, rig.store
    asked = engine._ask_signals
    real_transaction = store.transaction
    signals_asked: list[bool] = []
    halted: list[int] = []

    def ask(view: Any) -> Any:
        signals_asked.append(True)
        return asked(view)

    def transaction() -> Any:
        if signals_asked and not halted:  # the tick's own transaction: its BEGIN waited for the operator's commit
            halted.append(halt_from_another_process(rig))
        return real_transaction()

    engine._ask_signals = ask  # type: ignore[method-assign]
    store.transaction = transaction  # type: ignore[method-assign]
    rig.ticks(1)
    assert halted and rig.engine.system.state == "halted"
    assert not [o for o in rig.store.orders() if o.bot_id == "mom_AAPL" and o.purpose == "entry"]
    assert rig.store.counters(rig.engine.trading_date(rig.clock.now())).get("mom_AAPL", {}).get("entries", 0) == 0
