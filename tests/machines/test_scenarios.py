"""pytest collects the user's scenario tables (machines/scenarios/*.yaml): a rule edit is checked in CI."""

from __future__ import annotations

import pytest

from engine.machines.scenarios import Case, load_cases, run_case
from engine.paths import PROJECT_ROOT
from engine.validate import load_valid

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
