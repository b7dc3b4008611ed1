"""The transition table and the diagrams drawn from a machine file."""

from __future__ import annotations

from engine.machines import render
from engine.machines.spec import load_machines
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
    assert "class gone current" not in render.mermaid(spec, "gone")
    assert "class armed current" in render.mermaid(spec, "armed")
