"""The neutral model of a machine, read from machines/*.yaml; the runtime, the lint and the renderers read it.

Keeping one plain description (states, transitions, guards by name) separate from the `transitions`
library means the diagram, the table and the tests all show exactly what the engine runs.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from engine.config.errors import ConfigError, Problem
from engine.config.schema_check import load_checked
from engine.config.yaml_source import YamlDocument
from engine.paths import shown
from engine.rules import conditions
from engine.rules.conditions import Condition

ANY_SOURCE = "*"


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

    def from_state(self, state: str) -> tuple[TransitionSpec, ...]:
        """Transitions that may fire from `state`, in the order they are tried."""
        return tuple(t for t in self.transitions if state in t.sources)

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


def _spec_from(doc: YamlDocument) -> MachineSpec:
    data = doc.data
    states = {name: StateSpec(name, body["description"]) for name, body in data["states"].items()}
    transitions = []
    for index, body in enumerate(data["transitions"]):
        raw = body["source"]
        listed = [raw] if isinstance(raw, str) else list(raw)
        if listed == [ANY_SOURCE]:
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


def load_machines(machines_dir: Path) -> dict[str, MachineSpec]:
    """Every machines/*.yaml by kind; raises ConfigError with every problem (syntax, schema, duplicate kinds)."""
    specs: dict[str, MachineSpec] = {}
    problems: list[Problem] = []
    paths = sorted(machines_dir.glob("*.yaml"))
    if not paths:
        raise ConfigError([Problem(shown(machines_dir), 0, 0, "", "no machine files (*.yaml) in this folder")])
    for doc in load_checked(paths, "machine.schema.json", problems):
        spec = _spec_from(doc)
        if spec.kind in specs:
            other = specs[spec.kind].doc.path
            problems.append(doc.problem(("kind",), f"machine kind '{spec.kind}' is already defined in {other}"))
            continue
        specs[spec.kind] = spec
    if problems:
        raise ConfigError(problems)
    return specs
