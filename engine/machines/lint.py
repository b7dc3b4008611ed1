"""Static checks of machines against the rule book: what `transitions` never checks, `--validate` does.

Unknown states, guards, actions and facts (with the nearest valid name); unreachable states; states with no
way back to idle; a state from which halted cannot be entered; trigger names that would shadow the model's
own attributes; missing canonical states; missing machine kinds.
"""

from __future__ import annotations

import dataclasses
from collections import deque
from collections.abc import Mapping

from engine.config.errors import Problem
from engine.config.model import KillConditions
from engine.core.names import unknown_name_message
from engine.machines.actions import actions_for
from engine.machines.runtime import MachineModel
from engine.machines.spec import MachineSpec
from engine.rules import conditions
from engine.rules.book import RuleBook, compile_rules

CANONICAL_STATES = {
    "momentum": ("idle", "armed", "in_position", "managing", "halted"),
    "options": ("idle", "armed", "in_position", "managing", "halted"),
    "crypto": ("idle", "armed", "in_position", "managing", "halted"),
    "system": ("idle", "armed", "halted"),
    "portfolio": ("idle", "armed", "halted"),
}
REQUIRED_KINDS = ("system", "momentum", "options", "crypto")
# Names `transitions` adds to every model, or that our model class holds.
_RESERVED_PREFIXES = ("may_", "is_", "to_")


def reachable(spec: MachineSpec, start: str) -> set[str]:
    """States reachable from `start` along declared transitions."""
    seen = {start}
    queue = deque([start])
    while queue:
        state = queue.popleft()
        for transition in spec.from_state(state):
            if transition.dest not in seen:
                seen.add(transition.dest)
                queue.append(transition.dest)
    return seen


def _unknown_state(spec: MachineSpec, name: str) -> str:
    return unknown_name_message("state", name, spec.states)


def lint_machine(spec: MachineSpec, book: RuleBook) -> list[Problem]:
    problems: list[Problem] = []
    states = spec.states
    if spec.initial not in states:
        problems.append(spec.problem(("initial",), _unknown_state(spec, spec.initial)))
    for state in CANONICAL_STATES.get(spec.kind, ()):
        if state not in states:
            problems.append(spec.problem(("states",), f"{spec.kind} machines need the state '{state}'", of_key=True))

    known_actions = actions_for(spec.kind)
    structurally_ok = not problems
    for transition in spec.transitions:
        at = ("transitions", transition.index)
        for source in transition.sources:
            if source not in states:
                problems.append(spec.problem((*at, "source"), _unknown_state(spec, source)))
                structurally_ok = False
        if transition.dest not in states:
            problems.append(spec.problem((*at, "dest"), _unknown_state(spec, transition.dest)))
            structurally_ok = False
        if transition.dest in transition.sources:
            problems.append(spec.problem((*at, "dest"), f"'{transition.dest}' is both source and destination"))
        for guard in conditions.refs(transition.when):
            if guard not in book.guards:
                problems.append(spec.problem((*at, "when"), unknown_name_message("guard", guard, book.guards)))
        for index, action in enumerate(transition.actions):
            if action not in known_actions:
                message = unknown_name_message(f"action for {spec.kind} machines", action, known_actions)
                problems.append(spec.problem((*at, "actions", index), message))
        problems.extend(_trigger_problems(spec, transition.trigger, at))

    used = [g for g in spec.guards_used() if g in book.guards]
    _compiled, compile_problems = compile_rules(book, spec.kind, needed=used)
    problems.extend(compile_problems)
    if structurally_ok:
        problems.extend(_graph_problems(spec))
    return problems


def _trigger_problems(spec: MachineSpec, trigger: str, at: tuple[str | int, ...]) -> list[Problem]:
    clash = hasattr(MachineModel, trigger) or trigger.startswith(_RESERVED_PREFIXES) or trigger in ("trigger", "state", "machine")
    if clash:
        return [spec.problem((*at, "trigger"), f"trigger '{trigger}' collides with the model's own API; rename it")]
    if trigger in spec.states:
        return [spec.problem((*at, "trigger"), f"trigger '{trigger}' has the name of a state; rename it")]
    return []


def _graph_problems(spec: MachineSpec) -> list[Problem]:
    problems = []
    from_initial = reachable(spec, spec.initial)
    for name in spec.states:
        where = ("states", name)
        if name not in from_initial:
            problems.append(spec.problem(where, f"state '{name}' cannot be reached from '{spec.initial}'", of_key=True))
        if "idle" in spec.states and "idle" not in reachable(spec, name):
            problems.append(spec.problem(where, f"state '{name}' has no path back to 'idle'", of_key=True))
        if "halted" in spec.states and name != "halted":
            direct = any(t.dest == "halted" for t in spec.from_state(name))
            if not direct:
                problems.append(spec.problem(where, f"'halted' cannot be entered from state '{name}'", of_key=True))
    return problems


def lint_all(specs: Mapping[str, MachineSpec], book: RuleBook, machines_dir: str) -> list[Problem]:
    """Lint every machine, the kill conditions, and check that every required kind is there."""
    problems: list[Problem] = []
    for spec in specs.values():
        problems.extend(lint_machine(spec, book))
    problems.extend(_kill_condition_problems(book))
    for kind in REQUIRED_KINDS:
        if kind not in specs:
            problems.append(Problem(machines_dir, 0, 0, "", f"no machine of kind '{kind}' (every bot kind needs one)"))
    # A rule-file problem is found once per kind that compiles the rule; report it once.
    return sorted(set(problems))


def _kill_condition_problems(book: RuleBook) -> list[Problem]:
    """Kill conditions in rules/ and the switches in bots.yaml (exitbot.kill_conditions) must name the same set."""
    problems = []
    switches = {f.name for f in dataclasses.fields(KillConditions)}
    for name, entry in book.kill_conditions.items():
        if name not in switches:
            message = unknown_name_message("kill condition (not a key of exitbot.kill_conditions)", name, switches)
            problems.append(entry.problem(None, message))
    for name in sorted(switches - book.kill_conditions.keys()):
        where = book.files[0] if book.files else "rules"
        problems.append(Problem(where, 0, 0, "kill_conditions", f"no rule for kill condition '{name}' of bots.yaml"))
    return problems
