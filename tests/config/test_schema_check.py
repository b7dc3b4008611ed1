"""Schema errors inside alternatives (a `when:` is a guard name or an all/any/not of them, a `source:` text or a
list): no branch matching was said at the top of the alternatives, in their own words or jsonschema's ("5 is not
valid under any of the given schemas"), so a mistake three levels down a `when:` was reported at the `when:` line
naming neither the item nor the key. Each is now said at its innermost item, with its path and line."""

from __future__ import annotations

from engine.config.errors import Problem
from engine.validate import validate
from tests.conftest import ProjectCopy

SYSTEM = "machines/system.yaml"
GUARDS = "rules/guards.yaml"


def _problems(project: ProjectCopy) -> list[Problem]:
    return validate(project.config, project.machines, project.rules).problems


def test_an_unknown_key_deep_in_a_machine_when_is_said_at_its_item(project: ProjectCopy) -> None:
    nested = (
        "when:\n      all:\n        - system_ready\n        - any:\n            - halt_active\n            - nott: kill_triggered"
    )
    project.replace(SYSTEM, "when: {not: system_ready}", nested)
    (problem,) = _problems(project)
    assert problem.path.endswith(".when.all[1].any[1].nott"), problem
    assert problem.line == project.line_of(SYSTEM, "- nott: kill_triggered") and problem.col == 15
    assert problem.message == "unknown key 'nott' (did you mean 'not'?)"


def test_an_unknown_key_in_a_composite_guard_is_said_at_its_item(project: ProjectCopy) -> None:
    old = "    when: {all: [in_trade_window, preflight_ok, under_trade_cap, under_position_cap]}"
    new = "    when:\n      all:\n        - in_trade_window\n        - preflight_ok\n        - {nott: under_position_cap}"
    project.replace(GUARDS, old, new)
    (problem,) = _problems(project)
    assert problem.path == "guards.may_open.when.all[2].nott"
    assert problem.line == project.line_of(GUARDS, "{nott: under_position_cap}")
    assert problem.message == "unknown key 'nott' (did you mean 'not'?)"


def test_a_bad_name_under_not_is_said_at_the_name(project: ProjectCopy) -> None:
    project.replace(SYSTEM, "when: {not: system_ready}", "when: {not: System_Ready}")
    (problem,) = _problems(project)
    assert problem.path.endswith(".when.not")
    assert problem.message == "'System_Ready' is not a guard name or an all/any/not of guard names"


def test_alternatives_without_their_own_message_name_the_types_wanted(project: ProjectCopy) -> None:
    project.replace(SYSTEM, "source: halted", "source: 5")
    (problem,) = _problems(project)
    assert problem.path.endswith(".source") and problem.message == "5 is not text or a list"
    assert problem.line == project.line_of(SYSTEM, "source: 5")


def test_a_bad_item_of_a_list_alternative_is_said_at_the_item(project: ProjectCopy) -> None:
    project.replace(SYSTEM, "source: halted", "source: [halted, 7]")
    (problem,) = _problems(project)
    assert problem.path.endswith(".source[1]") and problem.message == "7 is not text"


def test_two_keys_of_a_condition_keep_the_conditions_message(project: ProjectCopy) -> None:
    project.replace(SYSTEM, "when: {not: system_ready}", "when: {not: system_ready, all: [halt_active]}")
    (problem,) = _problems(project)
    assert problem.path.endswith(".when") and "is not a guard name or an all/any/not of guard names" in problem.message
