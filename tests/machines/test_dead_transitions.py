"""A transition whose `when:` can never hold, whatever the facts, never fires. Into `halted`, or carrying
`close_position` / `record_halt`, that is a protection switched off without a word, and `--validate` said OK: a halt
`when: {all: [system_halted, {not: system_halted}]}` never halted the bot. Guards that read no fact are let be
(a constant guard is how a transition is switched off on purpose), except where they switch off a halt or a close."""

from __future__ import annotations

import time

import pytest

from engine.validate import validate
from tests.conftest import ProjectCopy

CONTRADICTION = """  never_both:
    description: A test guard that can never hold.
    expr: market_open and not market_open
  off:
    description: A constant guard, switching a transition off.
    expr: "'a' > 'b'"
"""


def _with_guards(project: ProjectCopy) -> None:
    project.replace("rules/guards.yaml", "  # --- halts -", CONTRADICTION + "  # --- halts -")


@pytest.mark.parametrize(
    ("file", "old", "new", "says"),
    [
        # a halt into `halted` whose facts rule each other out
        ("machines/momentum.yaml", "    when: system_halted\n    reason: A system-wide halt stops flat bots at once.",
         "    when: {all: [system_halted, {not: system_halted}]}\n    reason: A system-wide halt stops flat bots at once.",
         "'system_halted' is asked to be false and true at once"),
        # a halt switched off by a constant guard
        ("machines/momentum.yaml", "    when: bot_halted\n", "    when: {all: [bot_halted, off]}\n",
         "the guard 'off' reads no fact and is false at every tick"),
        # the system's halt (record_halt), through an `any` of which no part can hold
        ("machines/system.yaml", "    when: kill_triggered\n", "    when: {any: [never_both, off]}\n",
         "'market_open' is asked to be"),
    ],
)  # fmt: skip
def test_a_halt_that_can_never_fire_is_refused_at_its_when(
    project: ProjectCopy, file: str, old: str, new: str, says: str
) -> None:
    _with_guards(project)
    project.replace(file, old, new)
    problems = [p for p in validate(project.config, project.machines, project.rules).problems if p.path != "guards.off.expr"]
    (problem,) = problems
    assert problem.path.startswith("transitions[") and problem.path.endswith(".when"), problem
    assert problem.line == project.line_of(file, new.strip().split("\n")[0]), problem
    assert says in problem.message and "never fires" in problem.message, problem.message
    assert "halt switched off" in problem.message or "record_halt switched off" in problem.message


def test_a_close_that_can_never_fire_is_refused(project: ProjectCopy) -> None:
    """An exit whose guards rule each other out: the position is held until something outside the machine sells."""
    _with_guards(project)
    text = (project.machines / "momentum.yaml").read_text(encoding="utf-8")
    assert "actions: [close_position]" in text
    old = next(
        block for block in text.split("  - trigger: ")[1:] if "actions: [close_position]" in block and "\n    when: " in block
    )
    when_line = next(line for line in old.splitlines() if line.startswith("    when: "))
    project.replace("machines/momentum.yaml", when_line, "    when: {all: [off, holds_position]}")
    (problem,) = validate(project.config, project.machines, project.rules).problems
    assert problem.path.endswith(".when") and "close_position switched off" in problem.message, problem
    assert problem.line == project.line_of("machines/momentum.yaml", "when: {all: [off, holds_position]}")


def test_an_ordinary_transition_whose_facts_rule_each_other_out_is_dead(project: ProjectCopy) -> None:
    _with_guards(project)
    project.replace("machines/momentum.yaml", "    when: may_open\n", "    when: {all: [may_open, never_both]}\n")
    (problem,) = validate(project.config, project.machines, project.rules).problems
    assert problem.path.endswith(".when") and "it is dead" in problem.message, problem
    assert "'market_open' is asked to be false and true at once" in problem.message


def test_a_constant_guard_may_switch_an_ordinary_transition_off(project: ProjectCopy) -> None:
    """As before: an entry kept off with a guard that reads no fact is the user's choice, not a mistake."""
    _with_guards(project)
    project.replace("machines/momentum.yaml", "    when: may_open\n", "    when: {all: [may_open, off]}\n")
    assert validate(project.config, project.machines, project.rules).problems == []


def test_a_halt_that_may_hold_is_left_alone(project: ProjectCopy) -> None:
    """Facts that can hold together, and config values (not assumed): nothing to say."""
    _with_guards(project)
    project.replace("machines/momentum.yaml", "    when: bot_halted\n", "    when: {any: [bot_halted, off]}\n")
    project.replace("machines/momentum.yaml", "    when: {all: [system_halted, flat]}\n",
                    "    when: {all: [system_halted, flat, {not: holds_position}]}\n")  # fmt: skip
    assert validate(project.config, project.machines, project.rules).problems == []


def test_transitions_sharing_a_deep_guard_are_linted_once_per_guard(project: ProjectCopy) -> None:
    """Each of 1,900 halts named one guard of some 900 terms nested 55 levels deep: looked into once per transition
    and once per level, --validate took 160 s. The guard's tree is shared; its answer is found once."""
    for scenario in project.machines.glob("scenarios/*.yaml"):  # cases of the shipped machines, not this one
        scenario.unlink()
    expr = "daily_pnl_pct > 1"
    for i in range(55):
        expr = f"(daily_pnl_pct > {i} {'and' if i % 2 else 'or'} ({expr}))"
    wide = ", ".join(["deep"] * 8)
    project.replace(
        "rules/guards.yaml",
        "  # --- halts -",
        f'  deep:\n    description: x\n    expr: "{expr}"\n  wide:\n    description: x\n    when: {{all: [{wide}]}}\n'
        "  # --- halts -",
    )
    halts = "".join(f"  - trigger: h{i}\n    source: idle\n    dest: halted\n    when: wide\n" for i in range(1900))
    project.replace("machines/momentum.yaml", "transitions:\n", "transitions:\n" + halts)
    started = time.perf_counter()
    found = validate(project.config, project.machines, project.rules).problems
    assert time.perf_counter() - started < 20  # about 1 s; the absolute bound only catches the old 160 s
    # the same `when:` from one state: each after the first never fires, and is said so (the first hundred)
    shadowed = [p for p in found if "never fires from 'idle': transition 'h0'" in p.message]
    assert len(shadowed) == 100 and [p.message for p in found if p not in shadowed] == [
        "1799 more problems in this machine are not shown: fix the ones above first"
    ]
