"""Transition-table tests generated from the YAML: every transition of every machine is driven from its
source to its destination, and every state is reached along a shortest path from the initial state.

Guards are given truth values here (the wiring under test is the machine: order, composition, destinations,
actions); the guards' expressions against real facts are covered by the scenario tables.
"""

from __future__ import annotations

import itertools
from collections import deque
from collections.abc import Iterator

import pytest

from engine.machines.runtime import MachineModel, MachineRuntime
from engine.machines.spec import MachineSpec, TransitionSpec, load_machines
from engine.paths import PROJECT_ROOT
from engine.rules import conditions

SPECS = load_machines(PROJECT_ROOT / "machines")


def guard_values_to_fire(spec: MachineSpec, source: str, target: TransitionSpec) -> dict[str, bool] | None:
    """Truth values of the guards that make `target` the first transition to fire from `source`."""
    earlier = [t for t in spec.from_state(source) if t.index < target.index]
    names = sorted({n for t in (*earlier, target) for n in conditions.refs(t.when)})
    for values in itertools.product((False, True), repeat=len(names)):
        table = dict(zip(names, values, strict=True))
        if conditions.evaluate(target.when, table.__getitem__) and not any(
            conditions.evaluate(t.when, table.__getitem__) for t in earlier
        ):
            return table
    return None


def runtime_for(spec: MachineSpec) -> MachineRuntime:
    return MachineRuntime(spec, lambda name, facts: bool(facts[name]))


def edges() -> Iterator[tuple[str, str, TransitionSpec]]:
    for kind, spec in SPECS.items():
        for source, transition in spec.edges():
            yield kind, source, transition


@pytest.mark.parametrize(
    ("kind", "source", "transition"),
    [pytest.param(k, s, t, id=f"{k}:{s}-{t.trigger}->{t.dest}") for k, s, t in edges()],
)
def test_every_transition_fires_from_its_source(kind: str, source: str, transition: TransitionSpec) -> None:
    spec = SPECS[kind]
    values = guard_values_to_fire(spec, source, transition)
    assert values is not None, f"{kind}: '{transition.trigger}' from '{source}' can never fire (shadowed by earlier ones)"
    runtime = runtime_for(spec)
    model = MachineModel("bot")
    runtime.add(model, source)
    result = runtime.step(model, values)
    assert result.transition == transition
    assert (result.source, result.dest, model.state) == (source, transition.dest, transition.dest)
    assert [i.action for i in result.intents] == list(transition.actions)
    assert all(i.bot_id == "bot" and i.trigger == transition.trigger for i in result.intents)


def shortest_paths(spec: MachineSpec) -> dict[str, list[tuple[str, TransitionSpec]]]:
    paths: dict[str, list[tuple[str, TransitionSpec]]] = {spec.initial: []}
    queue = deque([spec.initial])
    while queue:
        state = queue.popleft()
        for transition in spec.from_state(state):
            if transition.dest not in paths:
                paths[transition.dest] = [*paths[state], (state, transition)]
                queue.append(transition.dest)
    return paths


@pytest.mark.parametrize(("kind", "state"), [pytest.param(k, s, id=f"{k}:{s}") for k, spec in SPECS.items() for s in spec.states])
def test_every_state_is_reached_by_a_shortest_path(kind: str, state: str) -> None:
    spec = SPECS[kind]
    path = shortest_paths(spec).get(state)
    assert path is not None, f"{kind}: '{state}' cannot be reached from '{spec.initial}'"
    runtime = runtime_for(spec)
    model = MachineModel("bot")
    runtime.add(model)
    for source, transition in path:
        values = guard_values_to_fire(spec, source, transition)
        assert values is not None
        assert runtime.step(model, values).transition == transition
    assert model.state == state


def test_nothing_fires_when_no_guard_holds() -> None:
    for spec in SPECS.values():
        for state in spec.states:
            runtime = runtime_for(spec)
            model = MachineModel("bot")
            runtime.add(model, state)
            names = {n for t in spec.from_state(state) for n in conditions.refs(t.when)}
            result = runtime.step(model, dict.fromkeys(names, False))
            # A transition guarded only by `not x` legitimately fires when x is false; nothing else may.
            if result.transition is not None:
                assert any(isinstance(c, conditions.Not) for c in _walk(result.transition.when))
            else:
                assert model.state == state


def _walk(condition: conditions.Condition) -> Iterator[conditions.Condition]:
    yield condition
    if isinstance(condition, (conditions.All, conditions.AnyOf)):
        for item in condition.items:
            yield from _walk(item)
    elif isinstance(condition, conditions.Not):
        yield from _walk(condition.item)
