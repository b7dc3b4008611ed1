"""The runtime's promises: first match in file order, restore without actions, a raising guard fails closed."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from engine.machines.runtime import MachineModel, MachineRuntime
from engine.machines.spec import load_machines
from engine.paths import PROJECT_ROOT
from engine.rules.conditions import Condition

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


def test_the_guards_named_for_a_transition_are_those_that_held_whatever_the_facts() -> None:
    # The runtime names the guards that held without walking the `when:` tree again when the tree cannot
    # short-circuit; for every shipped transition and many truth assignments, the names equal a fresh walk's.
    import random

    from engine.rules import conditions
    from engine.validate import load_valid

    report = load_valid(PROJECT_ROOT / "config", PROJECT_ROOT / "machines", PROJECT_ROOT / "rules")
    assert report.book is not None
    composites = {n: conditions.parse(e.body["when"]) for n, e in report.book.guards.items() if "when" in e.body}
    rng = random.Random(7)
    checked = 0
    for kind, spec in SPECS.items():

        def truth(name: str, facts: Mapping[str, Any]) -> bool:  # a `when:` guard holds when its tree does
            if name in composites:
                return conditions.evaluate(composites[name], lambda inner: truth(inner, facts))
            return name in facts["base"]

        runtime = MachineRuntime(spec, truth, composites=composites)
        names = sorted({*spec.guards_used(), *(g for c in composites.values() for g in _refs(c))} - set(composites))
        for _ in range(300):
            base = {name for name in names if rng.random() < 0.5}
            true = {name for name in {*names, *composites} if truth(name, {"base": base})}
            for state in spec.states:
                model = MachineModel("b")
                runtime.add(model, state)
                result = runtime.step(model, {"base": base})
                if result.transition is None:
                    continue
                assert result.guards_held == _walked(result.transition.when, true, composites), (kind, state, result.transition.trigger, true)
                checked += 1
    assert checked > 1000


def _walked(when: Condition, true: set[str], composites: Mapping[str, Condition]) -> tuple[str, ...]:
    """The guards that held, named by walking the tree with short-circuits, as the runtime used to each time."""
    from engine.rules import conditions

    named: list[str] = []

    def holds(name: str) -> bool:
        if name in true:
            named.append(name)
            if name in composites:
                conditions.evaluate(composites[name], holds)
        return name in true

    conditions.evaluate(when, holds)
    return tuple(named)


def _refs(condition: object) -> set[str]:
    from engine.rules import conditions

    if isinstance(condition, conditions.Ref):
        return {condition.name}
    if isinstance(condition, conditions.Not):
        return _refs(condition.item)
    assert isinstance(condition, (conditions.All, conditions.AnyOf))
    return {name for item in condition.items for name in _refs(item)}


def test_our_quiet_transitions_run_the_callbacks_of_transitions_own_in_the_same_order() -> None:
    # engine/machines/runtime.py executes transitions with its own Transition and State classes (no debug log, no
    # empty callback lists); with every kind of callback set, they must do what transitions' own classes do.
    from transitions import Machine

    from engine.machines.runtime import _Machine

    def run(machine_class: type[Machine]) -> list[str]:
        calls: list[str] = []

        def note(name: str) -> Callable[..., None]:
            return lambda *_: calls.append(name)

        class Model:
            pass

        model = Model()
        machine = machine_class(
            model=model,
            states=[
                {"name": "a", "on_exit": [note("exit a")]},
                {"name": "b", "on_enter": [note("enter b")], "on_exit": [note("exit b")]},
            ],
            initial="a",
            transitions=[
                {"trigger": "go", "source": "a", "dest": "b", "prepare": [note("prepare")], "conditions": [lambda: True],
                 "before": [note("before")], "after": [note("after")]},
                {"trigger": "blocked", "source": "b", "dest": "a", "conditions": [lambda: False], "before": [note("never")]},
                {"trigger": "stay", "source": "b", "dest": None, "after": [note("internal")]},
            ],
            before_state_change=[note("machine before")],
            after_state_change=[note("machine after")],
            auto_transitions=False,
        )
        assert machine.models[0] is model
        for trigger in ("go", "blocked", "stay"):
            calls.append(f"{trigger}: {getattr(model, trigger)()} -> {model.state}")
        return calls

    expected = run(Machine)
    assert "enter b" in expected and "never" not in expected
    assert run(_Machine) == expected


def test_a_step_fires_as_a_trigger_would_actions_included() -> None:
    # `step` executes the Transition it built for the source directly; `model.trigger`, transitions' own way in,
    # must land in the same state with the same intents, for every transition that has actions.
    runtime = MachineRuntime(SPECS["momentum"], lambda name, facts: name in facts["true"])
    checked = 0
    for spec in SPECS["momentum"].transitions:
        if not spec.actions:
            continue
        for source in spec.sources:
            stepped, triggered = MachineModel("a"), MachineModel("b")
            runtime.add(stepped, source)
            runtime.add(triggered, source)
            runtime._candidates[source] = ((spec, lambda facts: True),)  # only this transition can be chosen
            result = runtime.step(stepped, {"true": set()})
            triggered.candidate, triggered.intents = spec.index, []
            assert triggered.trigger(spec.trigger)
            assert (stepped.state, [i.action for i in result.intents]) == (triggered.state, [i.action for i in triggered.intents])
            assert stepped.state == spec.dest and [i.action for i in result.intents] == list(spec.actions)
            checked += 1
    assert checked >= 4


def test_a_step_in_one_call_chooses_what_asking_one_by_one_chooses() -> None:
    # build_runtime compiles each state's `when:` trees into one function (CompiledRules.first_holding); on
    # random facts, missing ones included, it must choose the same transition, or fail with the same error.
    import random

    from engine.machines.runtime import build_runtime
    from engine.rules.facts import vocabulary
    from engine.validate import load_valid

    report = load_valid(PROJECT_ROOT / "config", PROJECT_ROOT / "machines", PROJECT_ROOT / "rules")
    assert report.book is not None
    rng = random.Random(11)
    values = {"bool": lambda: rng.random() < 0.5, "float": lambda: rng.choice([-2.0, -0.5, 0.0, 0.4, 1.0, 30.0]),
              "int": lambda: rng.choice([0, 1, 2, 3, 10]), "str": lambda: rng.choice(["ACTIVE", "INACTIVE"])}  # fmt: skip
    compared = errors = 0
    for kind, spec in SPECS.items():
        fast, rules = build_runtime(spec, report.book)
        slow = MachineRuntime(spec, rules.guard_holds, rules.guards, fast.composites)
        assert fast._first and not slow._first
        facts_of = vocabulary(kind)
        for _ in range(150):
            facts = {name: (None if rng.random() < 0.03 else values[f.type]()) for name, f in facts_of.items()}
            for state in spec.states:
                a, b = MachineModel("same"), MachineModel("same")
                fast.add(a, state)
                slow.add(b, state)
                got, want = fast.step(a, facts), slow.step(b, facts)
                assert (got.dest, got.transition, got.error, got.intents) == (want.dest, want.transition, want.error, want.intents)
                compared += 1
                errors += got.error is not None
    assert compared > 2000 and errors > 20  # missing facts did reach guards


def test_the_results_a_step_builds_without_the_named_tuples_new_are_step_results_in_full() -> None:
    # `step` and `_fire` build their StepResult with tuple.__new__ and every field written out (runtime.py): a field
    # added to StepResult must be added there too, or its value would be missing from the result.
    from engine.machines.runtime import StepResult, build_runtime
    from engine.validate import load_valid

    report = load_valid(PROJECT_ROOT / "config", PROJECT_ROOT / "machines", PROJECT_ROOT / "rules")
    assert report.book is not None
    runtime, _rules = build_runtime(SPECS["momentum"], report.book)
    quiet, fires = MachineModel("quiet"), MachineModel("fires")
    runtime.add(quiet, "halted")
    runtime.add(fires, "halted")
    flat = {"holds_position": False, "entry_order_open": False, "exit_order_open": False}
    facts = {"system_halted": True, "bot_halted": True, **flat}
    assert runtime.step(quiet, facts) == StepResult("quiet", "halted", "halted")
    fired = runtime.step(fires, {"system_halted": False, "bot_halted": False, **flat})
    assert (fired.source, fired.dest, fired.guards_held) == ("halted", "idle", ("may_resume", "flat"))
    assert fired.transition is not None and fired.transition.trigger == "resume"
    assert fired == StepResult("fires", "halted", fired.dest, fired.transition, fired.intents, fired.guards_held)
    for result in (runtime.step(quiet, facts), fired):
        assert len(result) == len(StepResult._fields) and type(result) is StepResult
