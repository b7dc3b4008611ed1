"""The transition table and the diagrams drawn from a machine file."""

from __future__ import annotations

import re

import pytest

from engine.machines import render
from engine.machines.spec import MachineSpec, load_machines
from tests.conftest import ProjectCopy


def test_a_bar_in_a_state_s_description_stays_in_its_table_cell(project: ProjectCopy) -> None:
    """A state's description was written into the table as it is: a '|' in it split its row into three cells."""
    project.replace("machines/system.yaml", "description: Not armed; booting", "description: Not armed | booting")
    project.replace("machines/system.yaml", "reason: The halt ended", "reason: The halt | ended")
    text = render.table(load_machines(project.machines)["system"])
    rows = [line for line in text.splitlines() if line.startswith("| idle |")]
    assert rows[0] == "| idle | Not armed \\| booting, or waiting for the broker, reconciliation or preflight. |", rows[0]
    assert any("The halt \\| ended" in line for line in text.splitlines())


def test_a_saved_state_the_machine_no_longer_has_is_not_drawn_as_a_node(project: ProjectCopy) -> None:
    """A disabled bot's saved state, left as it was while the machine file renamed it (validation checks only the
    states a run restores): `class entering current` made Mermaid draw a stray node of that name, in `diagram
    --bot` and on the status page, as if it were a state of the machine."""
    spec = load_machines(project.machines)["momentum"]
    assert "class s_gone current" not in render.mermaid(spec, "gone")
    assert "class s_armed current" in render.mermaid(spec, "armed")


def _system_with_a_state_named(project: ProjectCopy, name: str) -> MachineSpec:
    path = project.machines / "system.yaml"
    path.write_text(re.sub(r"\barmed\b", name, path.read_text(encoding="utf-8")), encoding="utf-8")
    return load_machines(project.machines)["system"]


@pytest.mark.parametrize("name", ["node", "edge", "graph", "digraph", "subgraph", "strict"])
def test_a_state_named_like_a_dot_keyword_is_a_quoted_id(project: ProjectCopy, name: str) -> None:
    """A state may be named `node` (the schema allows `^[a-z][a-z0-9_]*$`): written bare, `node [label=...]` was
    DOT's default-attribute statement (every later node labelled "node ..."), and `node -> halted` a syntax error,
    so `diagram --format svg` failed. Every ID is quoted: a quoted ID is never a keyword."""
    text = render.dot(_system_with_a_state_named(project, name))
    statements = [line.strip() for line in text.splitlines()[1:-1]]
    assert f'"{name}" [label="{name}\n' in text and f'"idle" -> "{name}" [label="arm' in text
    bare = [s for s in statements if re.match(r"(node|edge|graph|digraph|subgraph|strict)\b", s, re.IGNORECASE)]
    assert bare == ['node [shape=box, style="rounded,filled", fillcolor=white];'], bare  # the default, on purpose


_MERMAID_LINE = re.compile(
    r'state "[a-z0-9_]+" as s_[a-z0-9_]+|s_[a-z0-9_]+ : .*|s_[a-z0-9_]+ --> s_[a-z0-9_]+ : .*|\[\*\] --> s_[a-z0-9_]+'
    r"|%% .*|classDef current .*|class s_[a-z0-9_]+ current"
)


@pytest.mark.parametrize(
    "name", ["note", "state", "class", "classdef", "style", "scale", "direction", "click", "acctitle", "accdescr", "end"]
)
def test_a_state_named_like_a_mermaid_keyword_has_an_id_of_its_own(project: ProjectCopy, name: str) -> None:
    """Mermaid's stateDiagram lexer (case-insensitive) takes `note `, `state `, `class `, `style `, `scale ` ... at
    a line's start for its keywords: a state named `note` broke the diagram (`diagram`, the status page). Each
    state is drawn as `s_<name>` with its name for its label; no line starts with a bare state name."""
    text = render.mermaid(_system_with_a_state_named(project, name), current=name)
    lines = [line.strip() for line in text.splitlines()[1:]]
    assert [line for line in lines if not _MERMAID_LINE.fullmatch(line)] == []
    assert f'state "{name}" as s_{name}' in lines and f"s_idle --> s_{name} : arm [system_ready]" in lines
    assert lines[-1] == f"class s_{name} current"


def test_a_description_naming_a_direction_is_no_direction_statement(project: ProjectCopy) -> None:
    """Mermaid's lexer reads any line holding `direction`, blanks and TB, BT, RL or LR (any case) as a direction
    statement, before the label or the comment it is in: a description saying "the direction LR" broke its line."""
    project.replace(
        "machines/system.yaml", "description: Not armed; booting", "description: Not armed, the direction lr; booting"
    )
    project.replace("machines/system.yaml", "halts it.", "halts it, in direction TB.")
    text = render.mermaid(load_machines(project.machines)["system"])
    assert not re.search(r"direction\s+(tb|bt|rl|lr)", text, re.IGNORECASE), text
    assert "the direction-lr" in text and "in direction-TB" in text
