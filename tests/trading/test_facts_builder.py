"""The facts builder: exactly the documented vocabulary for every kind, computed without writing anything."""

from __future__ import annotations

from datetime import timedelta

import pytest

from engine.brokers.base import Snapshot
from engine.core.clock import ManualClock
from engine.core.store import PositionRow
from engine.rules.facts import vocabulary
from engine.trading.facts_builder import BotInputs, SystemInputs, bot_facts, position_pnl_pct, system_facts
from engine.trading.view import read_view
from tests.trading.conftest import Rig


def inputs(preflight=lambda facts: ()) -> BotInputs:  # type: ignore[no-untyped-def]
    return BotInputs(history={}, budget_usd=100.0, orders_last_minute=0, capital_room_usd=1000.0, entry_blocked=False, preflight=preflight)


def current_view(rig: Rig):  # type: ignore[no-untyped-def]
    engine = rig.engine
    return read_view(engine.store, engine.broker.snapshot(engine.needs), rig.clock.now(), engine.tz)


@pytest.mark.parametrize("kind", ["system", "portfolio"])
def test_system_facts_are_exactly_the_vocabulary(rig: Rig, kind: str) -> None:
    rig.ticks(3)
    facts = rig.engine._system_facts(current_view(rig), 0, 0, kill_triggered=False)
    assert set(facts) == set(vocabulary(kind))


def test_each_bot_kind_gets_exactly_its_vocabulary(rig: Rig) -> None:
    rig.ticks(3)
    view = current_view(rig)
    system = rig.engine._system_facts(view, 0, 0, kill_triggered=False)
    kinds = set()
    for bot in rig.engine.bots:
        facts = bot_facts(view, bot, system, inputs()).facts
        assert set(facts) == set(vocabulary(bot.kind)), bot.kind
        kinds.add(bot.kind)
    assert kinds == {"momentum", "options", "crypto"}


def test_building_facts_writes_nothing_and_gives_the_same_answer_twice(rig: Rig) -> None:
    rig.ticks(3)
    view = current_view(rig)
    engine = rig.engine
    statements, log_size = engine.store.statements, rig.log.stat().st_size
    system = engine._system_facts(view, 0, 0, kill_triggered=False)
    first = [bot_facts(view, bot, system, inputs()) for bot in engine.bots]
    second = [bot_facts(view, bot, system, inputs()) for bot in engine.bots]
    assert first == second
    engine.journal.flush()
    assert engine.store.statements == statements and rig.log.stat().st_size == log_size


def test_preflight_is_answered_from_the_facts_and_its_failures_returned(rig: Rig) -> None:
    rig.ticks(3)
    view = current_view(rig)
    system = system_facts(view, _inputs(rig))
    bot = rig.engine.bots[0]
    seen: list[float] = []

    def preflight(facts):  # type: ignore[no-untyped-def]
        seen.append(facts["budget_usd"])
        return ("budget_known",)

    built = bot_facts(view, bot, system, inputs(preflight))
    assert seen == [100.0] and built.failed_checks == ("budget_known",) and built.facts["preflight_ok"] is False


def _inputs(rig: Rig) -> SystemInputs:
    return SystemInputs(rig.engine.settings_facts, 0, True, "armed", 0, 0, True, False)


def test_a_missing_price_makes_the_pnl_missing_never_a_guess(clock: ManualClock) -> None:
    held = (PositionRow("b", "AAPL", 2.0, 100.0, clock.now() - timedelta(minutes=1)),)
    empty = Snapshot(clock.now(), None, (), (), {}, {}, None)
    assert position_pnl_pct(held, {}, empty) is None
    assert position_pnl_pct((), {}, empty) == 0.0
    assert position_pnl_pct(held, {"AAPL": 101.0}, empty) == pytest.approx(1.0)
