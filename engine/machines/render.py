"""Renderers of the neutral machine model: Mermaid (the default), Graphviz DOT, and a Markdown table.

Each reads only `MachineSpec`, so the picture and the table show exactly what the runtime executes.
"""

from __future__ import annotations

from engine.machines.spec import MachineSpec, TransitionSpec


def _edge_label(transition: TransitionSpec) -> str:
    label = transition.trigger
    if transition.guard_text:
        label += f" [{transition.guard_text}]"
    if transition.actions:
        label += f" / {', '.join(transition.actions)}"
    return label


def mermaid(spec: MachineSpec, current: str | None = None) -> str:
    """A Mermaid stateDiagram-v2: renders on code hosting sites with no system dependency."""
    lines = ["stateDiagram-v2", f"    %% {spec.kind}: {spec.description}", f"    [*] --> {spec.initial}"]
    for state in spec.states.values():
        lines.append(f"    {state.name} : {state.name} - {_mermaid_text(state.description)}")
    for source, transition in spec.edges():
        lines.append(f"    {source} --> {transition.dest} : {_mermaid_text(_edge_label(transition))}")
    if current in spec.states:  # a saved state the file no longer has is no node to highlight
        lines.append("    classDef current fill:#ffd54f,stroke:#e65100,stroke-width:3px")
        lines.append(f"    class {current} current")
    return "\n".join(lines) + "\n"


def _mermaid_text(text: str) -> str:
    # ':' and ';' end a Mermaid label, '#' starts an entity; keep labels on one safe line.
    return text.replace(":", " -").replace(";", ",").replace("#", "no.")


def dot(spec: MachineSpec, current: str | None = None) -> str:
    """Graphviz DOT, for svg and png through pygraphviz (the `diagrams` extra)."""

    def quote(text: str) -> str:
        return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'

    lines = [f"digraph {spec.kind} {{", "  rankdir=LR;", '  node [shape=box, style="rounded,filled", fillcolor=white];']
    lines.append(f"  label={quote(spec.kind + ': ' + spec.description)}; labelloc=t;")
    lines.append('  __start [shape=point, label=""];')
    lines.append(f"  __start -> {spec.initial};")
    for state in spec.states.values():
        fill = ', fillcolor="#ffd54f", penwidth=3' if state.name == current else ""
        lines.append(f"  {state.name} [label={quote(state.name + chr(10) + state.description)}{fill}];")
    for source, transition in spec.edges():
        lines.append(f"  {source} -> {transition.dest} [label={quote(_edge_label(transition))}];")
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
