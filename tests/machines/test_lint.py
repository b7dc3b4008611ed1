"""`--validate` lints machines and rules: each mistake reported at its file and line, with a suggestion."""

from __future__ import annotations

import pytest

from engine.config.errors import Problem
from engine.validate import validate
from tests.conftest import ProjectCopy


def problems(project: ProjectCopy) -> list[Problem]:
    return validate(project.config, project.machines, project.rules).problems


def only(found: list[Problem]) -> Problem:
    assert len(found) == 1, "\n".join(map(str, found))
    return found[0]


def test_shipped_files_are_clean(project: ProjectCopy) -> None:
    assert problems(project) == []


def test_unknown_guard_with_suggestion(project: ProjectCopy) -> None:
    project.replace("machines/momentum.yaml", "when: entry_signal\n", "when: entry_signl\n")
    p = only(problems(project))
    assert p.file.endswith("machines/momentum.yaml") and p.line == project.line_of("machines/momentum.yaml", "entry_signl")
    assert "unknown guard 'entry_signl' (did you mean 'entry_signal'?)" in p.message


def test_unknown_state(project: ProjectCopy) -> None:
    project.replace("machines/crypto.yaml", "dest: managing", "dest: manageing")
    p = only(problems(project))
    assert p.line == project.line_of("machines/crypto.yaml", "manageing") and "did you mean 'managing'" in p.message


def test_unknown_action(project: ProjectCopy) -> None:
    project.replace("machines/options.yaml", "actions: [open_entry]", "actions: [open_entri]")
    p = only(problems(project))
    assert "unknown action" in p.message and "did you mean 'open_entry'" in p.message


def test_unknown_fact_in_a_guard_expression(project: ProjectCopy) -> None:
    project.replace(
        "rules/guards.yaml", "expr: position_pnl_pct <= -exits_stop_loss_pct", "expr: position_pnl <= -exits_stop_loss_pct"
    )
    p = only(problems(project))
    assert p.file.endswith("rules/guards.yaml") and p.path == "guards.stop_loss_hit.expr"
    assert p.line == project.line_of("rules/guards.yaml", "position_pnl <=")
    assert "unknown fact 'position_pnl'" in p.message and "did you mean 'position_pnl_pct'" in p.message


def test_type_mismatch_in_an_expression(project: ProjectCopy) -> None:
    project.replace("rules/guards.yaml", "expr: trades_today < risk_max_trades_per_day", "expr: trades_today < 'three'")
    p = only(problems(project))
    assert p.path == "guards.under_trade_cap.expr" and "expression error" in p.message


def test_a_fact_another_kind_lacks(project: ProjectCopy) -> None:
    # near_close reads an options-only config value; using it in the momentum machine is an error.
    project.replace("machines/momentum.yaml", "when: exit_rule_hit", "when: {any: [exit_rule_hit, near_close]}")
    p = only(problems(project))
    assert "exits_flatten_before_close_minutes" in p.message and "momentum machines" in p.message


def test_unreachable_state(project: ProjectCopy) -> None:
    project.replace("machines/system.yaml", "    dest: armed\n", "    dest: idle\n")
    found = problems(project)
    messages = [p.message for p in found]
    assert "state 'armed' cannot be reached from 'idle'" in messages


def test_state_with_no_way_back_to_idle(project: ProjectCopy) -> None:
    project.replace(
        "machines/portfolio.yaml",
        "  - trigger: withdraw\n    source: armed\n    dest: idle\n",
        "  - trigger: withdraw\n    source: armed\n    dest: halted\n",
    )
    project.replace(
        "machines/portfolio.yaml",
        "  - trigger: resume\n    source: halted\n    dest: idle\n",
        "  - trigger: resume\n    source: halted\n    dest: armed\n",
    )
    found = problems(project)
    assert {p.message for p in found} >= {"state 'armed' has no path back to 'idle'", "state 'halted' has no path back to 'idle'"}


def test_halted_not_enterable_from_a_state(project: ProjectCopy) -> None:
    project.replace(
        "machines/system.yaml",
        "    source: [idle, armed]\n    dest: halted\n    when: kill_triggered",
        "    source: [idle]\n    dest: halted\n    when: kill_triggered",
    )
    project.replace(
        "machines/system.yaml",
        "    source: [idle, armed]\n    dest: halted\n    when: halt_active",
        "    source: [idle]\n    dest: halted\n    when: halt_active",
    )
    p = only(problems(project))
    assert p.message == "'halted' cannot be entered from state 'armed'"
    assert p.line == project.line_of("machines/system.yaml", "  armed:")


@pytest.mark.parametrize("trigger", ["trigger", "may_arm", "to_idle", "is_armed", "step"])
def test_trigger_that_collides_with_the_model_api(project: ProjectCopy, trigger: str) -> None:
    project.replace("machines/system.yaml", "trigger: disarm", f"trigger: {trigger}")
    found = problems(project)
    if trigger == "step":  # not part of the model's API: allowed
        assert found == []
    else:
        assert "collides with the model's own API" in only(found).message


def test_missing_canonical_state(project: ProjectCopy) -> None:
    project.replace("machines/crypto.yaml", "  managing:\n", "  manage_phase:\n")
    found = problems(project)
    assert any("crypto machines need the state 'managing'" in p.message for p in found)


def test_composite_guard_naming_an_unknown_guard(project: ProjectCopy) -> None:
    project.replace(
        "rules/guards.yaml", "when: {any: [flatten_requested, stop_loss_hit", "when: {any: [flatten_request, stop_loss_hit"
    )
    p = only(problems(project))
    assert p.path == "guards.exit_rule_hit.when" and "did you mean 'flatten_requested'" in p.message


def test_kill_condition_without_a_switch_in_bots_yaml(project: ProjectCopy) -> None:
    project.replace("rules/kill_conditions.yaml", "  anomaly_halt:", "  anomaly_stop:")
    found = problems(project)
    assert any("not a key of exitbot.kill_conditions" in p.message for p in found)
    assert any("no rule for kill condition 'anomaly_halt'" in p.message for p in found)


def test_machine_schema_error_points_at_the_key(project: ProjectCopy) -> None:
    project.replace("machines/system.yaml", "    reason: The halt ended", "    reasn: The halt ended")
    p = only(problems(project))
    assert "unknown key 'reasn' (did you mean 'reason'?)" in p.message
    assert p.line == project.line_of("machines/system.yaml", "reasn")
