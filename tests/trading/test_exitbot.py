"""The ExitBot: the only writer of halts; a kill condition is never skipped."""

from __future__ import annotations

import re

from engine.paths import PROJECT_ROOT
from engine.trading.facts_builder import FeedHealth
from engine.trading.view import TickView
from tests.conftest import ProjectCopy
from tests.trading.conftest import Rig, make_rig

# Valid, and raises at every tick: past 1.8e308 arithmetic gives infinity, which the compiled rule refuses
# (OverflowError). A division by a divisor that can be 0 (`equity_usd - equity_usd`) no longer passes `--validate`.
UNEVALUABLE = "(daily_pnl_pct + 1) * 1e300 * 1e300 <= -risk_global_max_daily_loss_pct"


def test_only_the_exitbot_writes_or_ends_halts() -> None:
    writers = set()
    for path in (PROJECT_ROOT / "engine").rglob("*.py"):
        if re.search(r"\.(start_halt|end_halts?)\(", path.read_text(encoding="utf-8")):
            writers.add(path.relative_to(PROJECT_ROOT).as_posix())
    assert writers == {"engine/trading/exitbot.py"}


def test_a_kill_condition_that_cannot_be_evaluated_halts_with_its_error(project: ProjectCopy, clock) -> None:
    project.replace("rules/kill_conditions.yaml", "expr: daily_pnl_pct <= -risk_global_max_daily_loss_pct", f"expr: {UNEVALUABLE}")
    rig = make_rig(project, clock)
    rig.ticks(2)
    assert rig.engine.system.state == "halted"
    (halt,) = [h for h in rig.store.halts() if h.scope == "system"]
    assert "max_daily_loss_halt" in halt.reason and "OverflowError" in halt.reason
    assert rig.store.orders() == []


def test_a_kill_condition_missing_a_fact_because_a_read_failed_blocks_without_halting(rig: Rig) -> None:
    rig.ticks(3)
    assert rig.engine.system.state == "armed"
    facts = rig.engine._system_facts(_view(rig), 0, FeedHealth(0, 0), kill_triggered=False)
    failed_read = {**facts, "broker_ok": False, "daily_pnl_pct": None}
    verdict = rig.engine.exitbot.evaluate_kills(failed_read)
    assert verdict.holding == () and verdict.deferred == ("max_daily_loss_halt",)
    read_fine = {**facts, "daily_pnl_pct": None}  # missing although every read succeeded: unknown, so it trips
    verdict = rig.engine.exitbot.evaluate_kills(read_fine)
    assert verdict.holding == ("max_daily_loss_halt",) and "missing" in verdict.reason


def test_a_disabled_kill_condition_is_not_evaluated(project: ProjectCopy, clock) -> None:
    project.replace("rules/kill_conditions.yaml", "expr: daily_pnl_pct <= -risk_global_max_daily_loss_pct", f"expr: {UNEVALUABLE}")
    project.replace("config/bots.yaml", "max_daily_loss_halt: true", "max_daily_loss_halt: false")
    rig = make_rig(project, clock)
    rig.ticks(2)
    assert rig.engine.system.state == "armed"


def _view(rig: Rig) -> TickView:
    from engine.trading.view import read_view

    engine = rig.engine
    return read_view(engine.store, engine.broker.snapshot(engine.needs), rig.clock.now(), engine.tz)


def test_a_preflight_check_that_cannot_be_evaluated_fails_with_its_error_logged(project: ProjectCopy, clock) -> None:
    project.replace("rules/preflight.yaml", "expr: capital_room_usd > 0", "expr: (capital_room_usd + 1) * 1e300 * 1e300 > 0")
    rig = make_rig(project, clock)
    rig.ticks(5)
    assert rig.store.orders() == []
    events = [e for e in rig.events("preflight") if "capital_available" in e["failed"]]
    assert events and "OverflowError" in events[0]["errors"]["capital_available"]


def test_a_daily_loss_that_cannot_be_read_halts_and_sells_nothing(project: ProjectCopy, clock) -> None:
    """The broker answers every read, but its last_equity is 0 (an account funded today; the same value answer
    after answer, so the adapter takes it): the daily P&L is missing, the daily-loss kill condition cannot be
    evaluated and trips, as unknown must. Its `flatten: true` is for a loss it has measured: an unknown one sold
    every position the bots held. Now the system halts, naming the missing fact, and sells nothing."""
    from engine.brokers.alpaca import LAST_EQUITY_CONFIRMATIONS
    from engine.brokers.emulator import Emulator, Fault
    from engine.brokers.sim.exchange import SimExchange
    from engine.brokers.snapshot import SnapshotBroker
    from engine.trading.exitbot import end_halts
    from tests.brokers.conftest import KEY, SECRET, make_api

    exchange = SimExchange(clock, seed=7)
    with Emulator(exchange, key=KEY, secret=SECRET) as emulator:
        rig = make_rig(project, clock, broker=SnapshotBroker(make_api(emulator, clock), clock), exchange=exchange)
        rig.until(lambda r: bool(exchange.positions), limit=400)
        held = {s: p.qty for s, p in exchange.positions.items()}
        exits = len([r for r in rig.store.orders() if r.purpose == "exit"])
        emulator.faults.append(Fault(patch={"last_equity": "0.00"}, path_prefix="/v2/account", method="GET", times=0))
        rig.ticks(LAST_EQUITY_CONFIRMATIONS + 1)  # refused as a moved basis (a halt), then taken
        end_halts(rig.store, rig.engine.journal, now=clock.now(), by="operator")  # resumed: the answers read again
        rig.ticks(3)
        halts = [h for h in rig.store.halts("system") if "max_daily_loss_halt" in h.reason]
        assert halts and "missing" in halts[0].reason, [h.reason for h in rig.store.halts("system")]
        assert not any(h.flatten for h in rig.store.halts("system"))
        assert {s: p.qty for s, p in exchange.positions.items()} == held  # nothing sold
        assert len([r for r in rig.store.orders() if r.purpose == "exit"]) == exits


def test_a_kill_condition_that_cannot_be_evaluated_does_not_flatten(project: ProjectCopy, clock) -> None:
    """Any error, not only a missing fact: the condition trips (a halt) and its flatten waits for a value."""
    rig = make_rig(project, clock)
    rig.until(lambda r: bool(r.exchange.positions), limit=400)
    held = {s: p.qty for s, p in rig.exchange.positions.items()}
    project.replace("rules/kill_conditions.yaml", "expr: daily_pnl_pct <= -risk_global_max_daily_loss_pct", f"expr: {UNEVALUABLE}")
    rig = rig.restart()
    rig.ticks(3)
    (halt,) = [h for h in rig.store.halts("system") if "max_daily_loss_halt" in h.reason]
    assert "OverflowError" in halt.reason and not halt.flatten
    assert {s: p.qty for s, p in rig.exchange.positions.items()} == held


def test_a_kill_condition_that_holds_is_named_with_the_facts_it_read(rig: Rig) -> None:
    """The halt said only `kill condition: data_stale_halt`: which market, what loss against which limit, was left
    to the log. Each condition that holds now carries the facts it read, as read, in the halt's reason."""
    rig.ticks(3)
    facts = rig.engine._system_facts(_view(rig), 0, FeedHealth(0, 0), kill_triggered=False)
    losing = {**facts, "daily_pnl_pct": -3.456789, "risk_global_max_daily_loss_pct": 3.0}
    verdict = rig.engine.exitbot.evaluate_kills(losing)
    assert verdict.reason == "kill condition: max_daily_loss_halt (daily_pnl_pct -3.45679, risk_global_max_daily_loss_pct 3)"
    stale = {**facts, "stale_markets": 1}
    verdict = rig.engine.exitbot.evaluate_kills(stale, {"stale_markets": "crypto"})
    assert verdict.reason == "kill condition: data_stale_halt (stale_markets 1: crypto)"


def test_a_quiet_verdict_is_kept_only_while_every_input_it_read_stands(rig: Rig) -> None:
    """The kill conditions are answered again only when something they read moved: each fact they read (with its
    type; one absent is never kept), broker_ok, the notes, the tick's anomalies. Each step below changes one
    input; whatever was kept must equal the verdict worked out afresh, and a verdict that holds is never kept."""
    rig.ticks(3)
    exitbot = rig.engine.exitbot
    facts = rig.engine._system_facts(_view(rig), 0, FeedHealth(0, 0), kill_triggered=False)
    quiet = exitbot.evaluate_kills(facts)
    assert quiet.holding == () and exitbot.evaluate_kills(dict(facts)) is quiet  # the same inputs: the same verdict
    absent = {k: v for k, v in facts.items() if k != "daily_pnl_pct"}
    steps = [
        {**facts, "api_failures_in_window": 1},
        {**facts, "api_failures_in_window": True},  # equal to 1, not the same input: a wrong type fails its check
        {**facts, "daily_pnl_pct": None, "broker_ok": False},  # missing on a failed read: deferred, kept
        {**facts, "daily_pnl_pct": None, "broker_ok": False},
        {**absent, "broker_ok": False},  # absent, not missing: worked out, not kept
        {**facts, "daily_pnl_pct": None},  # missing on a good read: holds, never kept
        {**facts, "daily_pnl_pct": None},
        {**facts, "daily_pnl_pct": -0.0},
        {**facts, "daily_pnl_pct": 0.0},
        {**facts, "stale_markets": 1},
        facts,
        {**facts, "equity_usd": 1.0},  # read by no kill condition: the verdict kept
    ]
    for n, step in enumerate(steps):
        notes = {"stale_markets": "crypto"} if n % 2 else None
        got = exitbot.evaluate_kills(step, notes)
        exitbot._kills_quiet = None  # forget it: worked out afresh
        fresh = exitbot.evaluate_kills(step, notes)
        assert got == fresh, (n, step)
    exitbot._anomalies = ["an unowned position"]
    assert exitbot.evaluate_kills(facts) == exitbot.evaluate_kills({**facts})
    assert exitbot.evaluate_kills(facts).anomalies == ("an unowned position",)
    exitbot._anomalies = []
    assert exitbot.evaluate_kills(facts).anomalies == ()
    holding = {**facts, "stale_markets": 1}
    assert exitbot.evaluate_kills(holding) is not exitbot.evaluate_kills(holding)
