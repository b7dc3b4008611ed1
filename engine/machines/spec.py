"""The neutral model of a machine, read from machines/*.yaml; the runtime, the lint and the renderers read it.

Keeping one plain description (states, transitions, guards by name) separate from the `transitions`
library means the diagram, the table and the tests all show exactly what the engine runs.
"""

from __future__ import annotations

from collections.abc import Collection, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from engine.config.errors import ConfigError, Problem
from engine.config.schema_check import load_checked, yaml_files
from engine.config.yaml_source import YamlDocument
from engine.paths import shown
from engine.rules import conditions
from engine.rules.conditions import Condition

ANY_SOURCE = "*"
# A machine is read by people; these bound the work of the lint and of the runtime, far above any machine worth
# drawing (the shipped ones have 7 states and about 30 transitions). Transitions are counted as the runtime and
# the lint hold them, once per source state (`_edge_count`): a `source: "*"` once per state it leaves.
MAX_STATES = 200
MAX_TRANSITIONS = 2000


@dataclass(frozen=True)
class StateSpec:
    name: str
    description: str


@dataclass(frozen=True)
class TransitionSpec:
    """One transition as declared; `index` is its place in the file (the order in which it is tried)."""

    index: int
    trigger: str
    sources: tuple[str, ...]
    dest: str
    when: Condition
    actions: tuple[str, ...]
    reason: str

    @property
    def guard_text(self) -> str:
        return conditions.render(self.when)


@dataclass(frozen=True)
class MachineSpec:
    kind: str
    description: str
    initial: str
    states: dict[str, StateSpec]
    transitions: tuple[TransitionSpec, ...]
    doc: YamlDocument
    _by_source: dict[str, tuple[TransitionSpec, ...]] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        # Built once, so that `from_state` costs nothing per call: the lint walks the graph through it (once
        # per edge) and the runtime once per bot per tick.
        by_source: dict[str, list[TransitionSpec]] = {}
        for transition in self.transitions:
            for source in dict.fromkeys(transition.sources):
                by_source.setdefault(source, []).append(transition)
        object.__setattr__(self, "_by_source", {state: tuple(listed) for state, listed in by_source.items()})

    def from_state(self, state: str) -> tuple[TransitionSpec, ...]:
        """Transitions that may fire from `state`, in the order they are tried."""
        return self._by_source.get(state, ())

    def edges(self) -> Iterator[tuple[str, TransitionSpec]]:
        """(source, transition) for every source of every transition."""
        for transition in self.transitions:
            for source in transition.sources:
                yield source, transition

    def guards_used(self) -> list[str]:
        """Every guard name the transitions use, each once, in order of appearance."""
        return list(dict.fromkeys(g for t in self.transitions for g in conditions.refs(t.when)))

    def problem(self, path: tuple[str | int, ...], message: str, *, of_key: bool = False) -> Problem:
        return self.doc.problem(path, message, of_key=of_key)


def _any_source(raw: str | list[str]) -> bool:
    """Whether a transition's `source` is the wildcard, written `"*"` or `["*"]`."""
    return raw == ANY_SOURCE or raw == [ANY_SOURCE]


def _edge_count(body: dict[str, Any], states: Collection[str]) -> int:
    """How many transitions one written transition is to the runtime and the lint: one per source state, a
    wildcard one per state but its destination (as `_spec_from` expands it). Counted, not expanded, so that a
    file of thousands of wildcards over thousands of states is refused at once."""
    raw = body["source"]
    if _any_source(raw):
        return len(states) - (body["dest"] in states)
    return 1 if isinstance(raw, str) else len(raw)


def _size_problems(doc: YamlDocument) -> list[Problem]:
    """A machine past MAX_STATES or MAX_TRANSITIONS: its transitions counted as they cost to run and to lint,
    each `source: "*"` once per state it leaves (ten wildcards over 200 states are 1,990 transitions)."""
    data = doc.data
    problems = []
    if len(data["states"]) > MAX_STATES:
        message = f"{len(data['states'])} states: a machine may have at most {MAX_STATES}"
        problems.append(doc.problem(("states",), message, of_key=True))
    written = len(data["transitions"])
    edges = sum(_edge_count(body, data["states"]) for body in data["transitions"])
    if edges > MAX_TRANSITIONS:
        counted = f' ({written} as written; one counts once per source state, `source: "*"` once per state it leaves)'
        message = f"{edges} transitions{counted if edges != written else ''}: a machine may have at most {MAX_TRANSITIONS}"
        problems.append(doc.problem(("transitions",), message, of_key=True))
    return problems


def _spec_from(doc: YamlDocument) -> MachineSpec:
    data = doc.data
    states = {name: StateSpec(name, body["description"]) for name, body in data["states"].items()}
    transitions = []
    for index, body in enumerate(data["transitions"]):
        raw = body["source"]
        listed = [raw] if isinstance(raw, str) else list(raw)
        if _any_source(raw):
            listed = [s for s in states if s != body["dest"]]
        transitions.append(
            TransitionSpec(
                index=index,
                trigger=body["trigger"],
                sources=tuple(listed),
                dest=body["dest"],
                when=conditions.parse(body.get("when")),
                actions=tuple(body.get("actions", ())),
                reason=body.get("reason", ""),
            )
        )
    return MachineSpec(data["kind"], data["description"], data["initial"], states, tuple(transitions), doc)


@dataclass
class MachineFiles:
    """What machines/ holds, as far as it could be read: the machines by kind, every problem, and the files that
    could not be read at all (their kinds are unknown, so checks that need every machine are not meaningful)."""

    specs: dict[str, MachineSpec] = field(default_factory=dict)
    problems: list[Problem] = field(default_factory=list)
    unread: list[str] = field(default_factory=list)

    @property
    def complete(self) -> bool:
        return not self.unread


def read_machines(machines_dir: Path) -> MachineFiles:
    """Every machines/*.yaml that can be read, by kind, with every problem; never raises for a bad file."""
    found = MachineFiles()
    paths, strays = yaml_files(machines_dir)
    found.problems.extend(strays)
    found.unread.extend(p.file for p in strays)
    if not paths:
        found.problems.append(Problem(shown(machines_dir), 0, 0, "", "no machine files (*.yaml) in this folder"))
        found.unread.append(shown(machines_dir))
        return found
    docs = load_checked(paths, "machine.schema.json", found.problems)
    read = {doc.path for doc in docs}
    found.unread.extend(shown(path) for path in paths if shown(path) not in read)
    for doc in docs:
        too_large = _size_problems(doc)
        if too_large:
            found.problems.extend(too_large)
            found.unread.append(doc.path)
            continue
        spec = _spec_from(doc)
        if spec.kind in found.specs:
            other = found.specs[spec.kind].doc.path
            found.problems.append(doc.problem(("kind",), f"machine kind '{spec.kind}' is already defined in {other}"))
            continue
        found.specs[spec.kind] = spec
    return found


def load_machines(machines_dir: Path) -> dict[str, MachineSpec]:
    """Every machines/*.yaml by kind; raises ConfigError with every problem (syntax, schema, duplicate kinds)."""
    found = read_machines(machines_dir)
    if found.problems:
        raise ConfigError(found.problems)
    return found.specs
