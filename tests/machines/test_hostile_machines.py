"""Transitions without `when` (omitted means always) and files the engine would pass over for their name: what
validation used to pass, though the machine could not work as written."""

from __future__ import annotations

import pytest

from engine.config.errors import Problem
from engine.validate import validate
from tests.conftest import ProjectCopy

SYSTEM = "machines/system.yaml"


def problems(project: ProjectCopy) -> list[Problem]:
    return validate(project.config, project.machines, project.rules).problems


def test_a_cycle_of_transitions_without_when_is_refused(project: ProjectCopy) -> None:
    """idle -> armed -> idle with neither guarded changed the system's state on every tick, for ever."""
    project.replace(SYSTEM, "    when: system_ready\n    reason: The broker answered", "    reason: The broker answered")
    project.replace(SYSTEM, "    when: {not: system_ready}\n", "")
    (p,) = problems(project)
    assert p.file.endswith(SYSTEM) and p.path == "transitions[2].trigger"
    assert p.line == project.line_of(SYSTEM, "trigger: arm")
    assert "would change state every tick forever (idle -> armed -> idle)" in p.message
    assert "'arm', 'disarm' have no `when`" in p.message


def test_one_transition_without_when_is_still_valid(project: ProjectCopy) -> None:
    """Omitted means always: arming without a guard is odd but works (disarm is guarded, so nothing loops)."""
    project.replace(SYSTEM, "    when: system_ready\n    reason: The broker answered", "    reason: The broker answered")
    assert problems(project) == []


def test_a_transition_after_one_without_when_from_the_same_state_is_refused(project: ProjectCopy) -> None:
    """With `kill` first and unguarded, `halt`, `arm` and `disarm` could never fire from idle or armed."""
    project.replace(SYSTEM, "    when: kill_triggered\n", "")
    found = problems(project)
    assert [p.path for p in found] == ["transitions[1].trigger", "transitions[2].trigger", "transitions[3].trigger"]
    assert "never fires from 'idle', 'armed': transition 'kill' (line 16) comes first" in found[0].message
    assert "never fires from 'idle': transition 'kill'" in found[1].message
    assert "never fires from 'armed': transition 'kill'" in found[2].message


def test_a_machine_or_rule_file_named_yml_is_refused_not_left_out(project: ProjectCopy) -> None:
    """rules/preflight.yml was passed over: every preflight check vanished, and validation said OK."""
    (project.rules / "preflight.yaml").rename(project.rules / "preflight.yml")
    (project.machines / "crypto.yaml").rename(project.machines / "Crypto.YAML")
    found = problems(project)
    assert [(p.file.rsplit("/", 2)[-2:], p.line, p.col) for p in found] == [
        (["machines", "Crypto.YAML"], 0, 0),
        (["rules", "preflight.yml"], 0, 0),
    ], found
    assert "the engine reads only files named *.yaml" in found[0].message and "rename it to Crypto.yaml" in found[0].message
    assert "rename it to preflight.yaml" in found[1].message


def test_other_files_beside_the_yaml_files_are_still_left_alone(project: ProjectCopy) -> None:
    (project.rules / "README.md").write_text("notes\n", encoding="utf-8")
    (project.rules / "guards.yaml.bak").write_text("guards: {}\n", encoding="utf-8")
    assert problems(project) == []


DESCRIPTION = "description: Not armed; booting, or waiting for the broker, reconciliation or preflight."


@pytest.mark.parametrize(
    ("old", "new", "path"),
    [
        (DESCRIPTION, 'description: "flat\\nidle --> armed : forged"', "states.idle.description"),
        (DESCRIPTION, 'description: "red \\x1b[31m"', "states.idle.description"),
        ("kind: system\ndescription: The whole", "kind: system\ndescription: |\n  two\n  lines\nx: The whole", "description"),
        ("reason: The broker or the account", 'reason: "a\\rb"\n    x: The broker', "transitions[3].reason"),
    ],
)
def test_a_description_or_reason_that_is_not_one_line_is_refused(project: ProjectCopy, old: str, new: str, path: str) -> None:
    """A line break in a description was written into the Mermaid diagram as a line of its own: it could draw a
    transition the machine does not have (and a control character reached the terminal)."""
    project.replace(SYSTEM, old, new)
    found = [p for p in problems(project) if p.path == path]
    assert len(found) == 1 and "is not one line of text" in found[0].message, problems(project)


def test_a_folded_description_is_one_line_and_still_valid(project: ProjectCopy) -> None:
    project.replace(SYSTEM, DESCRIPTION, "description: >-\n      Not armed; booting,\n      or waiting.")
    assert problems(project) == []


def test_an_editors_hidden_files_are_not_engine_files(project: ProjectCopy) -> None:
    """Emacs keeps `.#guards.yaml`, a link to nothing, while guards.yaml is open: every command stopped on it
    ("cannot read file") for as long as the file was being edited; macOS leaves `._name.yaml` files."""
    (project.rules / ".#guards.yaml").symlink_to("user@host.1234:1700000000")
    (project.machines / "._system.yaml").write_bytes(b"\x00\x05\x16\x07binary")
    (project.machines / ".old.yml").write_text("kind: system\n", encoding="utf-8")
    assert problems(project) == []


@pytest.mark.parametrize("action", ["open_entry", "close_position"])
def test_an_action_listed_twice_in_one_transition_is_refused(project: ProjectCopy, action: str) -> None:
    """`actions: [open_entry, open_entry]` validated, and the run sent two entries in one tick, each sized to the
    bot's whole risk budget: the bot lost twice what its config allows on one trade (found by a hostile edit)."""
    momentum = "machines/momentum.yaml"
    project.replace(momentum, f"actions: [{action}]", f"actions: [{action}, {action}]")
    found = problems(project)
    assert len(found) == 1, found
    p = found[0]
    assert p.file.endswith(momentum) and p.line == project.line_of(momentum, f"[{action}, {action}]")
    assert p.path.endswith(".actions[1]") and f"action '{action}' is listed twice" in p.message


def test_an_entry_from_which_no_exit_can_be_reached_is_refused(project: ProjectCopy) -> None:
    """`close_position` taken off both `exit`s (from entering, and from in_position and managing) and `flatten`
    validated (every state still had its way back to idle, through `position_gone`), and the run held each position
    it entered until the daily-loss kill switch flattened it."""
    momentum = "machines/momentum.yaml"
    project.replace(momentum, "    when: exit_rule_hit\n    actions: [close_position]\n", "    when: exit_rule_hit\n")
    project.replace(momentum, "    when: past_manage_until\n    actions: [close_position]\n", "    when: past_manage_until\n")
    project.replace(momentum, "    actions: [cancel_entry, close_position]\n", "    actions: [cancel_entry]\n")
    found = [p for p in problems(project) if p.file.endswith(momentum)]
    assert [(p.path, p.line) for p in found] == [
        ("transitions[9].actions[0]", project.line_of(momentum, "actions: [open_entry]")),
        ("transitions[18].actions[0]", project.line_of(momentum, "    reason: Room for another") - 1),
    ], found
    assert found[0].message == (
        "a position entered here could never be closed: no transition with `close_position` can be reached from "
        "'entering'; give the states that hold a position an exit"
    )


@pytest.mark.parametrize(("kind", "guard"), [("momentum", "exit_rule_hit"), ("options", "options_exit_hit")])
@pytest.mark.parametrize("how", ["edge removed", "close_position taken off it"])
def test_a_state_an_entry_waits_in_without_an_exit_of_its_own_is_refused(
    project: ProjectCopy, kind: str, guard: str, how: str
) -> None:
    """The momentum and options machines shipped so: `entering` had no exit, yet its exits were reachable (once
    the entry filled, ended or timed out), so the check above passed. While an entry worked (a first one filling in
    parts, or an `add` beside a position held) what the bot held had no stop loss, take profit or time stop: an
    options trade lost 619 USD against a budget of 247, buying on into the fall. One problem, at the state."""
    relative = f"machines/{kind}.yaml"
    edge = (
        "  - trigger: exit\n    source: entering\n    dest: exiting\n"
        f"    when: {{all: [holds_position, {guard}]}}\n    actions: [cancel_entry, close_position]\n"
    )
    path = project.replace(relative, edge, edge)  # it is there as written
    text = path.read_text()
    end = text.index("\n", text.index(edge) + len(edge)) + 1  # its reason
    if how == "edge removed":
        path.write_text(text[: text.index(edge)] + text[end:])
    else:
        path.write_text(text.replace(edge, edge.replace("[cancel_entry, close_position]", "[cancel_entry]")))
    found = [(p.path, p.line, p.message) for p in problems(project)]
    assert found == [
        (
            "states.entering",
            project.line_of(relative, "  entering:"),
            "what the bot holds while an entry works in 'entering' (a part filled, or a position it adds to) keeps no "
            "exits: no transition with `close_position` leaves 'entering', so a stop loss would wait until the entry "
            "ends; add one as the shipped machines do: from 'entering' when the bot holds a position and an exit rule "
            "hits, with actions [cancel_entry, close_position]",
        )
    ]


def test_an_entry_whose_exit_is_reached_only_through_other_states_is_valid(project: ProjectCopy) -> None:
    """Exits from in_position only (none from managing) still close what entering leads to: not refused."""
    momentum = "machines/momentum.yaml"
    project.replace(momentum, "    when: past_manage_until\n    actions: [close_position]\n", "    when: past_manage_until\n")
    assert [p for p in problems(project) if p.file.endswith(momentum)] == []


@pytest.mark.parametrize("relative", [SYSTEM, "machines/momentum.yaml"])
def test_an_initial_state_other_than_idle_is_refused(project: ProjectCopy, relative: str) -> None:
    """`initial: armed` validated: a new bot began armed (past may_open), the system armed before any reconciliation."""
    project.replace(relative, "initial: idle", "initial: armed")
    (p,) = problems(project)
    assert p.file.endswith(relative) and p.path == "initial" and p.line == project.line_of(relative, "initial: armed")
    assert "initial state 'armed'" in p.message and "write `initial: idle`" in p.message


ENTER = """  - trigger: enter
    source: armed
    dest: entering
    when: entry_signal
    actions: [open_entry]
    reason: The signal fired; an entry order is sized from the budget and sent.
"""


def test_an_entry_listed_above_the_halts_of_its_state_is_refused(project: ProjectCopy) -> None:
    """`enter` moved above the halts validated: on a tick where the signal and a halt both held, the bot entered."""
    momentum = "machines/momentum.yaml"
    project.replace(momentum, ENTER, "")
    project.replace(momentum, "  # --- halts: before anything else", ENTER + "  # --- halts: before anything else")
    (p,) = problems(project)
    assert p.file.endswith(momentum) and p.path == "transitions[0].trigger"
    assert p.line == project.line_of(momentum, "trigger: enter")
    halt_line = project.line_of(momentum, "trigger: halt")
    assert f"'enter' opens a position from 'armed' and is listed above 'halt' (line {halt_line})" in p.message


def test_arming_the_system_above_its_kill_is_refused(project: ProjectCopy) -> None:
    """`arm` listed first armed the system on the tick a kill condition held."""
    arm = (
        "  - trigger: arm\n    source: idle\n    dest: armed\n    when: system_ready\n"
        "    reason: The broker answered, the account is usable and reconciliation found nothing unexplained.\n"
    )
    project.replace(SYSTEM, arm, "")
    project.replace(SYSTEM, "  - trigger: kill", arm + "  - trigger: kill")
    (p,) = problems(project)
    assert p.path == "transitions[0].trigger" and "'arm' arms from 'idle' and is listed above 'kill'" in p.message


def test_an_entry_listed_below_the_halts_is_still_valid(project: ProjectCopy) -> None:
    """Only the order relative to the halts of the same state matters: `enter` moved to the end is fine."""
    momentum = "machines/momentum.yaml"
    project.replace(momentum, ENTER, "")
    path = project.root / momentum
    path.write_text(path.read_text(encoding="utf-8") + ENTER, encoding="utf-8")
    assert problems(project) == []


ALWAYS_GUARDS = """  always_on:
    description: A test guard that reads no fact and always holds.
    expr: "2 > 1"
  either_way:
    description: A test guard that holds whatever the facts.
    when: {any: [halt_active, {not: halt_active}]}
  # --- halts -"""


def test_a_transition_whose_when_always_holds_shadows_the_ones_after_it(project: ProjectCopy) -> None:
    """`when: always_on` (`2 > 1`) is no `when` at all, and passed both checks: `kill` first from idle and armed
    made `halt`, `arm` and `disarm` dead there, as `kill` without a `when` is refused for."""
    project.replace("rules/guards.yaml", "  # --- halts -", ALWAYS_GUARDS)
    project.replace(SYSTEM, "    when: kill_triggered\n", "    when: always_on\n")
    found = problems(project)
    assert [p.path for p in found] == ["transitions[1].trigger", "transitions[2].trigger", "transitions[3].trigger"]
    assert "never fires from 'idle', 'armed': transition 'kill' (line 16) comes first from there and its `when` always" in (
        found[0].message
    )
    assert "reads no fact and is true at every tick" in found[0].message
    assert "give it a `when` that can be false" in found[0].message


def test_a_cycle_of_transitions_whose_when_always_holds_is_refused(project: ProjectCopy) -> None:
    """idle -> armed -> idle, one unguarded and one whose facts always hold: the state changed every tick."""
    project.replace("rules/guards.yaml", "  # --- halts -", ALWAYS_GUARDS)
    project.replace(SYSTEM, "    when: system_ready\n    reason: The broker answered", "    reason: The broker answered")
    project.replace(SYSTEM, "    when: {not: system_ready}\n", "    when: either_way\n")
    (p,) = problems(project)
    assert "would change state every tick forever (idle -> armed -> idle)" in p.message
    assert "have no `when`, or one that always holds" in p.message
    assert "'disarm': its `when` always holds (its negation cannot: 'halt_active' is asked to be" in p.message


def test_a_when_that_may_be_false_is_not_taken_for_always(project: ProjectCopy) -> None:
    project.replace("rules/guards.yaml", "  # --- halts -", ALWAYS_GUARDS)
    project.replace(SYSTEM, "    when: kill_triggered\n", "    when: {all: [kill_triggered, always_on]}\n")
    assert problems(project) == []


@pytest.mark.parametrize(("when", "why"), [("", "has no `when`"), ("    when: either_way\n", "its `when` always holds")])
def test_a_way_out_of_halted_that_always_fires_is_refused(project: ProjectCopy, when: str, why: str) -> None:
    """`expire` without its guard (or with one that always holds) left `halted` at the next tick whatever held the
    halt, and validation passed it: it is neither listed above another from `halted` nor in a cycle of such."""
    project.replace("rules/guards.yaml", "  # --- halts -", ALWAYS_GUARDS)
    project.replace(SYSTEM, "    when: {not: halt_active}\n", when)
    (p,) = problems(project)
    assert p.file.endswith(SYSTEM) and p.line == project.line_of(SYSTEM, "trigger: expire")
    assert p.message.startswith(f"leaves 'halted' for 'idle' and {why}")
    assert "every halt would end at the next tick, whatever holds it" in p.message


def test_a_transition_from_every_state_without_when_is_refused_for_leaving_halted(project: ProjectCopy) -> None:
    """Appended last, `source: "*"` shadows nothing, and the crypto bot went back to idle from every state each
    tick nothing else fired: from `halted` too."""
    machine = "machines/crypto.yaml"
    text = (project.root / machine).read_text(encoding="utf-8")
    (project.root / machine).write_text(f'{text}  - trigger: wander\n    source: "*"\n    dest: idle\n    reason: x\n')
    (p,) = problems(project)
    assert p.file.endswith(machine) and p.message.startswith("leaves 'halted' for 'idle' and has no `when`")
