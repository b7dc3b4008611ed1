"""The runtime's promises: first match in file order, restore without actions, a raising guard fails closed."""

from __future__ import annotations

from engine.machines.runtime import MachineModel, MachineRuntime
from engine.machines.spec import load_machines
from engine.paths import PROJECT_ROOT

SPECS = load_machines(PROJECT_ROOT / "machines")


def test_restoring_a_persisted_state_runs_no_action() -> None:
    runtime = MachineRuntime(SPECS["momentum"], lambda name, facts: False)
    model = MachineModel("mom_X")
    runtime.add(model, "in_position")
    assert model.state == "in_position" and model.intents == []


def test_first_transition_in_file_order_wins() -> None:
    # From `armed`, `halt` (bot_halted) is declared before `enter`: both guards true -> halt.
    runtime = MachineRuntime(SPECS["momentum"], lambda name, facts: name in facts["true"])
    model = MachineModel("mom_X")
    runtime.add(model, "armed")
    result = runtime.step(model, {"true": {"bot_halted", "entry_signal", "in_trade_window", "preflight_ok"}})
    assert result.transition is not None and result.transition.trigger == "halt"
    assert [i.action for i in result.intents] == ["cancel_entry"]


def test_a_guard_that_raises_halts_the_bot_and_fires_nothing() -> None:
    def explode(name: str, facts: object) -> bool:
        if name == "entry_signal":
            raise RuntimeError("signal blew up")
        return name == "may_open"

    runtime = MachineRuntime(SPECS["momentum"], explode)
    model = MachineModel("mom_X")
    runtime.add(model, "armed")
    result = runtime.step(model, {})
    assert result.transition is None and result.intents == ()
    assert result.error is not None and "signal blew up" in result.error
    assert model.state == "halted"


def test_one_machine_serves_many_models_independently() -> None:
    runtime = MachineRuntime(SPECS["momentum"], lambda name, facts: name in facts["true"])
    a, b = MachineModel("a"), MachineModel("b")
    runtime.add(a)
    runtime.add(b, "armed")
    assert runtime.step(a, {"true": {"may_open"}}).dest == "armed"
    assert runtime.step(b, {"true": set()}).dest == "idle"  # not may_open -> disarm
    assert (a.state, b.state) == ("armed", "idle")
