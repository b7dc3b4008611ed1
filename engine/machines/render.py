"""Renderers of the neutral machine model: Mermaid (the default), Graphviz DOT, and a Markdown table.

Each reads only `MachineSpec`, so the picture and the table show exactly what the runtime executes.
"""

from __future__ import annotations

import re

from engine.machines.spec import MachineSpec, TransitionSpec


def _edge_label(transition: TransitionSpec) -> str:
    label = transition.trigger
    if transition.guard_text:
        label += f" [{transition.guard_text}]"
    if transition.actions:
        label += f" / {', '.join(transition.actions)}"
    return label


def mermaid(spec: MachineSpec, current: str | None = None) -> str:
    """A Mermaid stateDiagram-v2: renders on code hosting sites with no system dependency.

    Each state is drawn under an id of its own, `s_<name>`, with its name as the label (`state "note" as s_note`):
    a state may be named as the schema allows (`^[a-z][a-z0-9_]*$`), and Mermaid's lexer, case-insensitive, takes
    `note`, `state`, `class`, `classdef`, `style`, `scale`, `click`, `acctitle`, `accdescr` (more in newer
    versions) at the start of a line for its keywords: a state so named broke the whole diagram. No keyword
    starts with `s_`, and no two names share an id."""
    comment = f"    %% {spec.kind}: {_no_direction(spec.description)}"
    lines = ["stateDiagram-v2", comment, f"    [*] --> {_mermaid_id(spec.initial)}"]
    for state in spec.states.values():
        lines.append(f'    state "{state.name}" as {_mermaid_id(state.name)}')
        lines.append(f"    {_mermaid_id(state.name)} : {state.name} - {_mermaid_text(state.description)}")
    for source, transition in spec.edges():
        edge = f"{_mermaid_id(source)} --> {_mermaid_id(transition.dest)}"
        lines.append(f"    {edge} : {_mermaid_text(_edge_label(transition))}")
    if current in spec.states:  # a saved state the file no longer has is no node to highlight
        lines.append("    classDef current fill:#ffd54f,stroke:#e65100,stroke-width:3px")
        lines.append(f"    class {_mermaid_id(current)} current")
    return "\n".join(lines) + "\n"


def _mermaid_id(name: str) -> str:
    return f"s_{name}"


# Mermaid's lexer takes any line holding `direction`, blanks and TB, BT, RL or LR (in any case) for a direction
# statement, before it reads a label or a comment: a description saying "the direction LR" turned its line into one.
_DIRECTION = re.compile(r"(direction)\s+(?=tb|bt|rl|lr)", re.IGNORECASE)


def _mermaid_text(text: str) -> str:
    # ':' and ';' end a Mermaid label, '#' starts an entity; keep labels on one safe line.
    return _no_direction(text.replace(":", " -").replace(";", ",").replace("#", "no."))


def _no_direction(text: str) -> str:
    return _DIRECTION.sub(r"\1-", text)


def _dot_id(text: str) -> str:
    """A DOT ID, always quoted: a state named `node`, `edge`, `graph`, `digraph`, `subgraph` or `strict` (DOT's
    keywords, in any case) written bare was a statement of its own: `node [label=...]` set every later node's
    label, and `node -> halted` a syntax error."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def dot(spec: MachineSpec, current: str | None = None) -> str:
    """Graphviz DOT, for svg and png through pygraphviz (the `diagrams` extra). Every ID is quoted (`_dot_id`)."""
    quote = _dot_id
    lines = [f"digraph {quote(spec.kind)} {{", "  rankdir=LR;", '  node [shape=box, style="rounded,filled", fillcolor=white];']
    lines.append(f"  label={quote(spec.kind + ': ' + spec.description)}; labelloc=t;")
    lines.append('  __start [shape=point, label=""];')
    lines.append(f"  __start -> {quote(spec.initial)};")
    for state in spec.states.values():
        fill = ', fillcolor="#ffd54f", penwidth=3' if state.name == current else ""
        lines.append(f"  {quote(state.name)} [label={quote(state.name + chr(10) + state.description)}{fill}];")
    for source, transition in spec.edges():
        lines.append(f"  {quote(source)} -> {quote(transition.dest)} [label={quote(_edge_label(transition))}];")
    lines.append("}")
    return "\n".join(lines) + "\n"


def table(spec: MachineSpec) -> str:
    """The transition table as Markdown: state, trigger, guards, destination, actions, reason."""
    rows = [
        f"# {spec.kind}",
        "",
        spec.description,
        "",
        "| state | description |",
        "|---|---|",
        *[f"| {s.name} | {_cell(s.description)} |" for s in spec.states.values()],
        "",
        "Tried in this order from the current state; the first whose guards hold fires.",
        "",
        "| state | trigger | guards | destination | actions | reason |",
        "|---|---|---|---|---|---|",
    ]
    for state in spec.states:
        for transition in spec.from_state(state):
            guards = transition.guard_text or "(always)"
            actions = ", ".join(transition.actions) or "-"
            cells = [state, transition.trigger, guards, transition.dest, actions, transition.reason]
            rows.append("| " + " | ".join(_cell(c) for c in cells) + " |")
    return "\n".join(rows) + "\n"


def _cell(text: str) -> str:
    """`text` in one Markdown table cell: a '|' written in a description or a reason (`flat | no order`) ended
    the cell there and pushed the rest into columns of its own."""
    return text.replace("|", "\\|")
