"""pytest collects the user's scenario tables (machines/scenarios/*.yaml): a rule edit is checked in CI."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from engine.machines.scenarios import Case, load_cases, run_case
from engine.paths import PROJECT_ROOT
from engine.validate import load_valid
from tests.conftest import ProjectCopy

if TYPE_CHECKING:
    from engine.machines.scenarios import ScenarioFiles

REPORT = load_valid(PROJECT_ROOT / "config", PROJECT_ROOT / "machines", PROJECT_ROOT / "rules")
assert REPORT.config is not None and REPORT.book is not None
CASES = load_cases(PROJECT_ROOT / "machines", REPORT.config, REPORT.machines)


def test_there_are_scenarios_for_the_shipped_machines() -> None:
    assert {c.kind for c in CASES} >= {"momentum", "system"}


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_scenario(case: Case) -> None:
    assert REPORT.config is not None and REPORT.book is not None
    outcome = run_case(case, REPORT.config, REPORT.machines, REPORT.book)
    assert outcome.passed, f"{case.file}:{case.line}: {outcome.message}"


# --- a scenario with a fact of the wrong type is a bad file, not a failed test (issue 13, item 11) -------------


def read_project_cases(project: ProjectCopy) -> ScenarioFiles:
    from engine.machines.scenarios import read_cases

    report = load_valid(project.config, project.machines, project.rules)
    assert report.config is not None
    return read_cases(project.machines, report.config, report.machines)


def test_a_text_fact_given_a_value_it_can_never_take_is_a_problem(project: ProjectCopy) -> None:
    """`account_status: ACTVE` tested a tick the engine never sees (the adapter refuses any other status)."""
    scenario = "machines/scenarios/momentum_exits.yaml"
    project.replace(scenario, "  holds_position: true\n", "  holds_position: true\n  account_status: ACTVE\n")
    found = read_project_cases(project)
    assert [(p.line, p.message) for p in found.problems] == [
        (
            project.line_of(scenario, "account_status: ACTVE"),
            "'ACTVE' is never a value of fact 'account_status' (did you mean 'ACTIVE'?)",
        )
    ]


def test_facts_of_the_wrong_type_are_problems_at_their_line_with_the_vocabulary_type(project: ProjectCopy) -> None:
    scenario = "machines/scenarios/momentum_exits.yaml"
    project.replace(scenario, "holds_position: true", "holds_position: yes")
    project.replace(scenario, "position_pnl_pct: -0.55,", 'position_pnl_pct: "-0.55%",')
    project.replace(scenario, "minutes_in_position: 25", "minutes_in_position: true")
    found = read_project_cases(project)
    assert [(p.line, p.path, p.message) for p in found.problems] == [
        (
            project.line_of(scenario, "holds_position: yes"),
            "facts.holds_position",
            "'yes' is text, but fact 'holds_position' is a bool (true or false)",
        ),
        (
            project.line_of(scenario, '"-0.55%"'),
            "cases[0].facts.position_pnl_pct",
            "'-0.55%' is text, but fact 'position_pnl_pct' is a float (a number), in %",
        ),
        (
            project.line_of(scenario, "minutes_in_position: true"),
            "cases[3].facts.minutes_in_position",
            "true is a bool, but fact 'minutes_in_position' is a float (a number), in min",
        ),
    ]
    assert found.cases and all(not c.file.endswith("momentum_exits.yaml") for c in found.cases)  # the others still run


def test_an_int_is_a_float_but_a_float_is_not_an_int_and_null_is_a_missing_fact(project: ProjectCopy) -> None:
    scenario = "machines/scenarios/momentum_exits.yaml"
    project.replace(scenario, "open_positions: 1", "open_positions: 1.5\n  quote_age_s: null")
    project.replace(scenario, "position_pnl_pct: 1.0,", "position_pnl_pct: 1,")
    (p,) = read_project_cases(project).problems
    assert (
        p.path == "facts.open_positions"
        and p.message == "1.5 is a float, but fact 'open_positions' is an int (a whole number), in count"
    )


def test_unknown_trigger_and_action_in_an_expectation(project: ProjectCopy) -> None:
    scenario = "machines/scenarios/momentum_exits.yaml"
    project.replace(
        scenario,
        "expect: {state: exiting, trigger: exit, actions: [close_position]}",
        "expect: {state: exiting, trigger: exlt, actions: [close_positon]}",
    )
    messages = [p.message for p in read_project_cases(project).problems]
    assert messages == [
        "unknown trigger of the momentum machine 'exlt' (did you mean 'exit'?)",
        "unknown action for momentum machines 'close_positon' (did you mean 'close_position'?)",
    ]


def test_validate_reports_a_bad_scenario_file_but_does_not_block_the_other_commands(project: ProjectCopy) -> None:
    """README: `--validate` reads machines/scenarios/ too; a broken scenario must not stop `run` (which does not
    read them) or `test` (which runs the others and lists it)."""
    from engine.validate import validate

    project.replace("machines/scenarios/momentum_exits.yaml", "trigger: exit", "trigger: exlt")
    report = validate(project.config, project.machines, project.rules, project.root / "none.db")
    line = project.line_of("machines/scenarios/momentum_exits.yaml", "trigger: exlt")
    assert [(p.file.endswith("momentum_exits.yaml"), p.line) for p in report.problems] == [(True, line)]
    assert load_valid(project.config, project.machines, project.rules, project.root / "none.db").problems == []


def test_a_bad_scenario_is_said_beside_a_broken_config_and_a_broken_machine(project: ProjectCopy) -> None:
    """Every error at once: with settings.yaml invalid, `--validate` said only its problem, and the scenario file's
    came one round of fixes later. A scenario of a kind whose machine file is broken says nothing more: that
    machine's states are not known, and its problem is said."""
    from engine.validate import validate

    project.replace("config/settings.yaml", "loop_interval_seconds: 5", "loop_interval_seconds: five")
    project.replace("machines/scenarios/momentum_exits.yaml", "trigger: exit", "trigger: exlt")
    project.replace("machines/options.yaml", "kind: options", "kind: optionz")
    report = validate(project.config, project.machines, project.rules, project.root / "none.db")
    files = {Path(p.file).name for p in report.problems}
    assert {"settings.yaml", "momentum_exits.yaml", "options.yaml"} <= files and "options.yaml" not in {
        Path(p.file).name for p in report.problems if "scenarios" in p.file
    }
    line = project.line_of("machines/scenarios/momentum_exits.yaml", "trigger: exlt")
    assert [p.line for p in report.problems if p.file.endswith("momentum_exits.yaml")] == [line]


def test_a_scenario_for_a_bot_of_another_config_is_not_run_and_fails_no_validation(project: ProjectCopy) -> None:
    """The shipped scenarios name mom_AAPL: `--validate --config` of another bots.yaml (an example, a renamed bot)
    is about that config and the machines, which are valid together; `test` says which files it could not run."""
    from engine.machines.scenarios import read_cases
    from engine.validate import validate

    project.replace("machines/scenarios/momentum_exits.yaml", "bot: mom_AAPL", "bot: mom_NOPE")
    assert validate(project.config, project.machines, project.rules, project.root / "none.db").problems == []
    report = load_valid(project.config, project.machines, project.rules, project.root / "none.db")
    assert report.config is not None
    found = read_cases(project.machines, report.config, report.machines)
    line = project.line_of("machines/scenarios/momentum_exits.yaml", "bot: mom_NOPE")
    assert [(p.path, p.line, p.message) for p in found.not_run] == [("bot", line, "no momentum bot 'mom_NOPE' in bots.yaml")]
    assert found.problems == [] and all(case.file.endswith(".yaml") for case in found.cases)
    assert not any(case.file.endswith("momentum_exits.yaml") for case in found.cases)


def test_a_scenario_file_named_yml_is_said_and_an_editors_lock_file_is_passed_over(project: ProjectCopy) -> None:
    """scenarios/*.yml were left out without a word (their cases never ran), and an editor's `.#x.yaml` was read."""
    scenarios = project.machines / "scenarios"
    (scenarios / "system.yaml").rename(scenarios / "system.yml")
    (scenarios / ".#crypto.yaml").symlink_to(scenarios / "nowhere")
    found = read_project_cases(project)
    assert [(p.file, p.message.split(":")[0]) for p in found.problems] == [
        (str(scenarios / "system.yml"), "the engine reads only files named *.yaml, so this one would be left out")
    ]
    assert {c.kind for c in found.cases} >= {"momentum", "crypto"}


@pytest.mark.parametrize("kind", ["file", "link to nothing"])
def test_a_scenarios_that_is_not_a_folder_is_said_not_taken_for_no_scenarios(project: ProjectCopy, kind: str) -> None:
    """A file (or a dangling link) named machines/scenarios left every scenario out without a word: `--validate`
    said OK, and `test` "0 passed, 0 failed" with exit 0. No folder at all is still no scenarios."""
    import shutil

    from engine.cli import main
    from engine.validate import validate

    scenarios = project.machines / "scenarios"
    shutil.rmtree(scenarios)
    assert validate(project.config, project.machines, project.rules, project.root / "none.db").problems == []
    if kind == "file":
        scenarios.write_text("cases: []\n", encoding="utf-8")
    else:
        scenarios.symlink_to(project.root / "nowhere")
    (p,) = validate(project.config, project.machines, project.rules, project.root / "none.db").problems
    assert p.file.endswith("machines/scenarios") and (p.line, p.col) == (0, 0) and "not a folder" in p.message
    files = ["--config", str(project.config), "--machines", str(project.machines), "--rules", str(project.rules)]
    assert main(["test", *files]) == 2


def test_an_empty_bot_is_a_problem_not_the_first_bot_of_the_kind(project: ProjectCopy) -> None:
    """`bot: ''` read as no bot at all: the cases ran with the first momentum bot's values, whichever that was,
    and validated OK. Only leaving the key out means the first bot."""
    from engine.validate import validate

    project.replace("machines/scenarios/momentum_exits.yaml", "bot: mom_AAPL", "bot: ''")
    (problem,) = validate(project.config, project.machines, project.rules, project.root / "none.db").problems
    assert problem.path == "bot" and problem.line == project.line_of("machines/scenarios/momentum_exits.yaml", "bot: ''")


@pytest.mark.parametrize("kind", ["system", "portfolio"])
def test_a_bot_named_in_a_scenario_of_a_machine_that_reads_none_is_refused(project: ProjectCopy, kind: str) -> None:
    """`bot:` in a system (or PortfolioBot) scenario was taken and ignored, even naming no bot at all: the cases
    ran as if with that bot's bots.yaml values, which those machines never read."""
    from engine.validate import validate

    path = project.machines / "scenarios" / f"{kind}.yaml"
    if not path.exists():
        path.write_text(
            f"kind: {kind}\ncases:\n  - name: stays idle\n    state: idle\n    expect: {{state: idle}}\n", encoding="utf-8"
        )
    path.write_text(path.read_text(encoding="utf-8").replace(f"kind: {kind}\n", f"kind: {kind}\nbot: mom_AAPL\n", 1))
    found = validate(project.config, project.machines, project.rules, project.root / "none.db").problems
    assert [(p.path, p.line) for p in found] == [("bot", project.line_of(f"machines/scenarios/{kind}.yaml", "bot: mom_AAPL"))]
    assert found[0].message == f"a {kind} machine reads no bot's values: `bot:` is for momentum, options, crypto; remove it"
