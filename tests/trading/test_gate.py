"""The risk gate under load: many bots signalling in the same tick never exceed the order rate or the
capital, and a bot with no budget does not trade."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from engine.brokers.base import OrderRequest, Quote, Snapshot
from engine.trading.facts_builder import BotInputs, EntryPlan, bot_facts, feed_health
from engine.trading.gate import Denial, Gate, Grant
from tests.brokers.test_requests_per_snapshot import config_with_momentum_bots
from tests.conftest import ProjectCopy
from tests.trading.conftest import make_rig


def eager(project: ProjectCopy, bots: int) -> None:
    config_with_momentum_bots(project, bots)
    text = (project.config / "bots.yaml").read_text()
    text = text.replace('trade_start: "06:35"', 'trade_start: "06:30"')
    text = text.replace("params: {}}", "params: {lookback_ticks: 2, min_move_pct: 0.0}}")
    (project.config / "bots.yaml").write_text(text)


def test_many_bots_signalling_together_respect_the_order_rate_and_capital(project: ProjectCopy, clock) -> None:
    eager(project, 40)
    project.replace("config/settings.yaml", "max_orders_per_minute: 10", "max_orders_per_minute: 3")
    rig = make_rig(project, clock)
    rig.ticks(60)
    entries = sorted(r.created_at for r in rig.store.orders() if r.purpose == "entry")
    assert len(entries) > 3  # the bots did want to trade, over several minutes
    limit = rig.engine.config.settings.risk.max_orders_per_minute
    orders = sorted(r.created_at for r in rig.store.orders())
    for start in orders:
        assert sum(1 for t in entries if start <= t < start + timedelta(seconds=60)) <= limit
    assert not [r for r in rig.store.orders() if r.status == "rejected"]  # never more than the broker allows
    blocked = {c for e in rig.events("preflight") for c in e["failed"]}
    assert "order_rate_ok" in blocked


def test_no_budget_no_trade(project: ProjectCopy, clock) -> None:
    project.replace("config/bots.yaml", "portfoliobot:\n  enabled: true", "portfoliobot:\n  enabled: false")
    rig = make_rig(project, clock)
    rig.ticks(300)
    assert rig.store.orders() == []
    assert any("budget_known" in e["failed"] for e in rig.events("preflight"))


# --- the gate on its own: one test per denial ----------------------------------------------------------------

NOW = datetime(2026, 11, 23, 15, 0, tzinfo=timezone.utc)
SNAPSHOT = Snapshot(NOW, None, (), (), {"AAPL": Quote("AAPL", 99.0, 100.0, NOW)}, {}, None)
PLAN = EntryPlan(OrderRequest("AAPL", "buy", "", qty=3), None, "AAPL")


def test_a_failed_preflight_check_is_the_denial_s_reason() -> None:
    gate = Gate(0, 1000.0)
    verdict = gate.grant(failed_checks=("order_rate_ok", "capital_room"), system_armed=True, plan=PLAN, snapshot=SNAPSHOT)
    assert verdict == Denial(("order_rate_ok", "capital_room")) and verdict.reason == "order_rate_ok, capital_room"
    assert (gate.orders_last_minute, gate.capital_room_usd) == (0, 1000.0)  # nothing counted for a denial


def test_no_entry_while_the_system_is_not_armed() -> None:
    assert Gate(0, 1000.0).grant(failed_checks=(), system_armed=False, plan=PLAN, snapshot=SNAPSHOT) == Denial(("system_armed",))


def test_a_signal_that_could_not_be_sized_is_denied_as_size() -> None:
    assert Gate(0, 1000.0).grant(failed_checks=(), system_armed=True, plan=None, snapshot=SNAPSHOT) == Denial(("size",))


def test_a_grant_counts_the_order_and_its_cost_at_the_ask() -> None:
    gate = Gate(2, 1000.0)
    assert gate.grant(failed_checks=(), system_armed=True, plan=PLAN, snapshot=SNAPSHOT) == Grant(PLAN)
    assert gate.orders_last_minute == 3 and gate.capital_room_usd == pytest.approx(700.0)


def test_without_allocations_there_is_no_capital_to_deploy() -> None:
    assert Gate.open(4, None, SNAPSHOT).capital_room_usd == 0.0


def test_preflight_answers_each_tier_from_the_facts_it_reads(project: ProjectCopy, clock) -> None:
    # Checks of three tiers: system-wide facts only (answered once a tick), the gate's running counts (once per
    # count), the bot's own facts (every bot). However answers are shared within a tick, each one must follow
    # the facts as they are when the bot is evaluated.
    with (project.rules / "preflight.yaml").open("a") as f:
        f.write(
            "  gate_tier:\n    description: test\n    expr: orders_last_minute < 1 or capital_room_usd > 500\n"
            "  own_tier:\n    description: test\n    expr: trades_today < 1 and orders_last_minute < 5\n"
        )
    rig = make_rig(project, clock)
    rig.ticks(3)
    engine, view = rig.engine, rig.engine._view
    assert view is not None
    assert "gate_tier" in engine._gate_checks["momentum"] and "own_tier" in engine._own_checks["momentum"]
    failed = engine._preflight_for("momentum", set())
    bot = next(b for b in engine.bots if b.kind == "momentum")
    feed = feed_health(view.snapshot, engine.needs, view.now, engine.config.settings.health)
    system = engine._system_facts(view, 0, feed, kill_triggered=False)

    def answer(orders: int, room: float, trades: int) -> tuple[str, ...]:
        facts = bot_facts(view, bot, system, BotInputs({}, 100.0, orders, room, False, failed, {}, None)).facts
        facts["trades_today"] = trades
        return tuple(name for name in failed(facts) if name in ("order_rate_ok", "gate_tier", "own_tier"))

    assert answer(0, 1000.0, 0) == ()
    assert answer(2, 1000.0, 0) == ()  # room left: the gate's check holds
    assert answer(2, 100.0, 0) == ("gate_tier",)
    assert answer(2, 100.0, 1) == ("gate_tier", "own_tier")  # the same counts, another bot's own facts
    assert answer(0, 100.0, 1) == ("own_tier",)
    assert answer(20, 100.0, 0) == ("order_rate_ok", "gate_tier", "own_tier")
    assert answer(0, 1000.0, 0) == ()  # an answer given earlier in the tick is given again
