"""What a bot holds keeps its exits in every state of every shipped bot machine.

The momentum and options machines had no exit from `entering`: while an entry worked (a first one filling in parts,
or an `add` of a further contract), the part already held had no stop loss, take profit, time stop or flatten before
the close until the entry filled, ended or timed out (two minutes): one options trade lost 619 USD against a budget
of 247 buying into the fall. Crypto had been given the edge alone. Here the machines are driven with the shipped
guards and bots' values, from every state a bot can be in while it holds and no exit order of its own works
(`exiting` waits for that order by design), through at most a few ticks of the same facts: an exit rule that holds
closes the position, and an entry working is cancelled no later than that. A bot halted on its own and the kill
switch's flatten are the ExitBot's (`ExitBot.duties`), not the machine's, and are left out.
"""

from __future__ import annotations

from typing import Any

import pytest

from engine.machines.runtime import MachineModel, MachineRuntime, build_runtime
from engine.machines.scenarios import quiet_facts
from engine.paths import PROJECT_ROOT
from engine.rules.facts import BOT_KINDS
from engine.validate import load_valid

REPORT = load_valid(PROJECT_ROOT / "config", PROJECT_ROOT / "machines", PROJECT_ROOT / "rules")
assert REPORT.config is not None and REPORT.book is not None
KINDS = [kind for kind in BOT_KINDS if kind in REPORT.machines]
TICKS = 4  # the longest way round: entering -> halted (cancel) -> in_position -> exiting


def _rules(kind: str, facts: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Facts that make each exit rule hold, from the bot's own values in bots.yaml."""
    rules = {
        "stop_loss": {"position_pnl_pct": -facts["exits_stop_loss_pct"], "worst_position_pnl_pct": -facts["exits_stop_loss_pct"]},
        "take_profit": {"position_pnl_pct": facts["exits_take_profit_pct"]},
        "time_stop": {"minutes_in_position": facts["exits_time_stop_minutes"]},
    }
    if kind == "options":
        rules["near_close"] = {"minutes_to_close": facts["exits_flatten_before_close_minutes"]}
    return rules


def _cases() -> list[Any]:
    cases = []
    for kind in KINDS:
        facts = quiet_facts(kind, REPORT.config, None)  # type: ignore[arg-type]
        states = [s for s in REPORT.machines[kind].states if s != "exiting"]
        for state in states:
            for rule in _rules(kind, facts):
                for system_halted in (False, True):
                    halt = "-system_halted" if system_halted else ""
                    cases.append(pytest.param(kind, state, rule, system_halted, id=f"{kind}:{state}:{rule}{halt}"))
    return cases


@pytest.mark.parametrize(("kind", "state", "rule", "system_halted"), _cases())
def test_an_exit_rule_on_what_a_bot_holds_closes_it_from_any_state(kind: str, state: str, rule: str, system_halted: bool) -> None:
    assert REPORT.config is not None and REPORT.book is not None
    facts = quiet_facts(kind, REPORT.config, None)
    facts.update(
        holds_position=True,
        open_positions=1,
        in_trade_window=True,
        tradable_now=True,
        minutes_to_close=300.0,
        minutes_in_position=1.0,
        system_halted=system_halted,
        entry_order_open=state == "entering",  # the first entry filled in part, or an added one works
        minutes_since_entry_order=0.5 if state == "entering" else 0.0,
    )
    facts.update(_rules(kind, facts)[rule])
    runtime: MachineRuntime = build_runtime(REPORT.machines[kind], REPORT.book)[0]
    model = MachineModel("bot")
    runtime.add(model, state)
    path, actions = [state], []
    for _ in range(TICKS):
        result = runtime.step(model, facts)
        assert not result.error, result.error
        path.append(result.dest)
        actions += [i.action for i in result.intents]
        if "close_position" in actions:
            break
    assert "close_position" in actions, f"{kind}: held in '{state}' with {rule} hit, never closed: {' -> '.join(path)}"
    if state == "entering":
        assert "cancel_entry" in actions[: actions.index("close_position") + 1], actions


@pytest.mark.parametrize("kind", KINDS)
def test_an_entry_working_while_nothing_is_held_waits_for_its_fill(kind: str) -> None:
    """The edge reads what the bot holds: a first entry with nothing filled yet is not cancelled by exit facts
    that describe no position (a flat bot's P&L is 0, its time in position 0)."""
    assert REPORT.config is not None and REPORT.book is not None
    facts = quiet_facts(kind, REPORT.config, None)
    facts.update(
        in_trade_window=True, tradable_now=True, minutes_to_close=300.0, entry_order_open=True, minutes_since_entry_order=0.5
    )
    runtime = build_runtime(REPORT.machines[kind], REPORT.book)[0]
    model = MachineModel("bot")
    runtime.add(model, "entering")
    result = runtime.step(model, facts)
    assert (result.dest, list(result.intents)) == ("entering", [])
