"""Machine files that validate but leave a hole at run time: the engine's safety must not depend on the edges a
user drew. Each test edits the shipped machines as a user might, then runs the engine on the simulated exchange."""

from __future__ import annotations

from engine.core.clock import ManualClock
from engine.core.store import SYSTEM_SCOPE
from tests.conftest import ProjectCopy
from tests.trading.conftest import Rig, make_rig

SYSTEM = "machines/system.yaml"
# A kill condition that holds as soon as the system is armed: every tick from the first arming on.
KILL_WHEN_ARMED = ("rules/kill_conditions.yaml", "expr: stale_markets > 0", "expr: stale_markets > 0 or system_armed")


def _rig(project: ProjectCopy, clock: ManualClock, *edits: tuple[str, str, str]) -> Rig:
    (project.machines / "scenarios" / "system.yaml").unlink()  # it pins the shipped system machine's edges
    for edit in (KILL_WHEN_ARMED, *edits):
        project.replace(*edit)
    return make_rig(project, clock)


def test_a_kill_condition_halts_the_system_even_when_the_machine_cannot_kill_from_its_state(
    project: ProjectCopy, clock: ManualClock
) -> None:
    """`kill` from idle only: armed, with a kill condition holding, no transition fired, no halt was written, and
    the bots traded on for the rest of the day (validation passed: halted is still entered from armed by `halt`)."""
    rig = _rig(project, clock, (SYSTEM, "  - trigger: kill\n    source: [idle, armed]", "  - trigger: kill\n    source: idle"))
    rig.ticks(10)
    halt = rig.store.halt_in_force(SYSTEM_SCOPE, clock.now())
    assert halt is not None and "data_stale_halt" in halt.conditions
    assert rig.engine.system.state == "halted"
    (said,) = rig.events("kill_outside_machine")
    assert said["state"] == "armed" and said["conditions"] == ["data_stale_halt"]
    assert not [e for e in rig.events("order") if e.get("action") == "submitted"]  # nothing entered meanwhile


def test_a_kill_transition_without_record_halt_halts_once_not_every_other_tick(
    project: ProjectCopy, clock: ManualClock
) -> None:
    """`kill` without `record_halt`: idle -> halted with no halt written, `expire` back to idle the next tick, and
    so on every tick for as long as the condition held (a transition and a preflight event per bot each tick)."""
    rig = _rig(project, clock, (SYSTEM, "    actions: [record_halt]\n", ""))
    rig.ticks(40)
    assert len(rig.events("halt")) == 1
    assert rig.engine.system.state == "halted"
    moves = [e for e in rig.events("transition") if e["machine"] == "system"]
    assert [(e["from"], e["to"]) for e in moves] == [("idle", "armed"), ("armed", "halted")]


MOMENTUM = "machines/momentum.yaml"
# The momentum bot arms on preflight alone: its trade window and both caps (the `may_open` guard) left out.
ARM_ON_PREFLIGHT = [
    (MOMENTUM, "    when: may_open\n    reason: Inside", "    when: preflight_ok\n    reason: Inside"),
    (MOMENTUM, "when: {not: may_open}", "when: {not: preflight_ok}"),
]


def test_the_gate_holds_the_trade_window_and_the_caps_of_bots_yaml_whatever_the_machine_asks(
    project: ProjectCopy, clock: ManualClock
) -> None:
    """A momentum machine arming on `preflight_ok` alone validated, and its bot entered before trade_start and past
    risk.max_trades_per_day (two entries with a cap of one, in the simulated day): those limits lived only in the
    `may_open` guard. The gate now refuses such an entry, naming the key of bots.yaml."""
    for edit in ARM_ON_PREFLIGHT:
        project.replace(*edit)
    project.replace("config/bots.yaml", 'trade_start: "06:35"', 'trade_start: "06:40"')  # the rig opens at 06:30
    project.replace("config/bots.yaml", "max_trades_per_day: 3", "max_trades_per_day: 1")
    project.replace("config/bots.yaml", "time_stop_minutes: 25", "time_stop_minutes: 1")
    project.replace("config/bots.yaml", "params: {}", "params: {lookback_ticks: 2, min_move_pct: 0.0}")
    rig = make_rig(project, clock)
    rig.ticks(400)
    entries = [r for r in rig.store.orders(bot_id="mom_AAPL") if r.purpose == "entry"]
    assert len(entries) == 1
    assert entries[0].created_at >= clock.now().replace(hour=14, minute=40)  # 06:40 in Los Angeles
    blocked = {c for e in rig.events("entry_blocked") if e["bot"] == "mom_AAPL" for c in e["failed"]}
    assert {"trade_window", "max_trades_per_day"} <= blocked
