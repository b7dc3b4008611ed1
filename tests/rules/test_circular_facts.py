"""A rule that reads the fact its own section decides: validation passed it, and it could never work."""

from __future__ import annotations

from engine.validate import validate
from tests.conftest import ProjectCopy


def test_a_preflight_check_reading_preflight_ok_is_refused(project: ProjectCopy) -> None:
    """preflight_ok is missing while the checks run: `account_ok and preflight_ok` failed on every tick, so no
    bot ever opened a position, and `--validate` said OK."""
    project.replace("rules/preflight.yaml", "expr: account_ok\n", "expr: account_ok and preflight_ok\n")
    (p,) = validate(project.config, project.machines, project.rules).problems
    assert p.path == "preflight.account_ok.expr" and p.line == project.line_of("rules/preflight.yaml", "and preflight_ok")
    assert p.message.startswith("the fact 'preflight_ok' is whether every preflight check passes, so a check cannot read it")


def test_a_kill_condition_reading_kill_triggered_is_refused(project: ProjectCopy) -> None:
    """kill_triggered reads false while the kill conditions run: `not kill_triggered` would halt on every tick."""
    project.replace("rules/kill_conditions.yaml", "expr: anomalies > 0", "expr: anomalies > 0 or not kill_triggered")
    (p,) = validate(project.config, project.machines, project.rules).problems
    assert p.path == "kill_conditions.anomaly_halt.expr"
    assert "the fact 'kill_triggered' is whether a kill condition holds" in p.message


def test_a_guard_may_still_read_both(project: ProjectCopy) -> None:
    """Machines' guards run after both are decided: `preflight_ok` and `kill_triggered` are theirs to read."""
    text = (project.rules / "guards.yaml").read_text(encoding="utf-8")
    assert "expr: preflight_ok\n" in text and "kill_triggered" in (project.machines / "system.yaml").read_text()
    assert validate(project.config, project.machines, project.rules).problems == []


def test_a_kill_condition_or_a_check_that_reads_no_fact_is_refused(project: ProjectCopy) -> None:
    """A constant: `1 > 2` as a kill condition switched the kill switch's data-stale halt off, and `--validate` said
    OK; as a preflight check, `2 > 1` checked nothing."""
    project.replace("rules/kill_conditions.yaml", "expr: stale_markets > 0", 'expr: "1 > 2"')
    project.replace("rules/preflight.yaml", "expr: account_ok\n", 'expr: "2 > 1"\n')
    problems = validate(project.config, project.machines, project.rules).problems
    assert sorted(p.path for p in problems) == ["kill_conditions.data_stale_halt.expr", "preflight.account_ok.expr"]
    assert all(p.message.startswith("reads no fact: its answer is the same at every tick") for p in problems)
