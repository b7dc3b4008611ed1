"""Behaviour changes with YAML edits alone: a threshold, a new transition, a new guard expression.
And a broken edit is rejected by `--validate` with the right file and line."""

from __future__ import annotations

from engine.machines.scenarios import Case, run_case
from engine.validate import load_valid, validate
from tests.conftest import ProjectCopy


def dest(project: ProjectCopy, kind: str, state: str, facts: dict) -> str:
    report = load_valid(project.config, project.machines, project.rules)
    assert report.config is not None and report.book is not None
    case = Case("t", 1, kind, "mom_AAPL" if kind == "momentum" else "", "t", state, facts, {"state": "?"})
    outcome = run_case(case, report.config, report.machines, report.book)
    return outcome.message.split("state ")[1].split(",")[0].strip("'")


HOLDING = {"holds_position": True, "open_positions": 1, "minutes_in_position": 1}


def test_editing_a_threshold_in_bots_yaml_changes_the_exit(project: ProjectCopy) -> None:
    facts = {**HOLDING, "position_pnl_pct": -0.55}
    assert dest(project, "momentum", "in_position", facts) == "exiting"  # stop_loss_pct 0.50
    project.replace("config/bots.yaml", "stop_loss_pct: 0.50", "stop_loss_pct: 0.80")
    assert dest(project, "momentum", "in_position", facts) == "in_position"


def test_editing_a_guard_expression_changes_the_behaviour(project: ProjectCopy) -> None:
    facts = {**HOLDING, "position_pnl_pct": 0.6}
    assert dest(project, "momentum", "in_position", facts) == "in_position"
    project.replace(
        "rules/guards.yaml",
        "expr: position_pnl_pct >= exits_take_profit_pct",
        "expr: position_pnl_pct >= exits_take_profit_pct / 2",
    )
    assert dest(project, "momentum", "in_position", facts) == "exiting"


def test_adding_a_guard_and_a_transition_in_yaml(project: ProjectCopy) -> None:
    facts = {**HOLDING, "position_pnl_pct": 0.0, "quote_age_s": 120.0}
    assert dest(project, "momentum", "in_position", facts) == "in_position"
    with (project.rules / "guards.yaml").open("a", encoding="utf-8") as f:
        f.write("  quote_very_old:\n    description: The quote is over a minute old.\n    expr: quote_age_s > 60\n")
    text = (project.machines / "momentum.yaml").read_text(encoding="utf-8")
    text = text.replace(
        "  - trigger: manage\n",
        "  - trigger: bail_out\n    source: in_position\n    dest: exiting\n    when: quote_very_old\n"
        "    actions: [close_position]\n    reason: Data went quiet; get out.\n  - trigger: manage\n",
    )
    (project.machines / "momentum.yaml").write_text(text, encoding="utf-8")
    assert validate(project.config, project.machines, project.rules).ok
    assert dest(project, "momentum", "in_position", facts) == "exiting"


def test_a_broken_edit_is_rejected_with_file_and_line(project: ProjectCopy) -> None:
    project.replace(
        "rules/guards.yaml",
        "expr: minutes_in_position >= exits_time_stop_minutes",
        "expr: minutes_in_position >= exits_time_stop_minute",
    )
    report = validate(project.config, project.machines, project.rules)
    assert len(report.problems) == 1
    p = report.problems[0]
    assert p.file.endswith("rules/guards.yaml")
    assert p.line == project.line_of("rules/guards.yaml", "exits_time_stop_minute")
    assert "did you mean 'exits_time_stop_minutes'" in p.message
