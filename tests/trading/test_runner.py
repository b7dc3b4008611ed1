"""Opening a run: the simulator's default start is asked for only when it is needed, and a failure to find it is
a clear error, not a traceback."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest

from engine.trading.runner import RunError, RunOptions, close_session, open_session
from engine.validate import load_valid
from tests.conftest import ProjectCopy

MONDAY_OPEN = datetime(2026, 11, 23, 14, 30, tzinfo=timezone.utc)


def _options(project: ProjectCopy, name: str = "s", **fields: object) -> RunOptions:
    return RunOptions(broker="sim", state_db=project.root / f"{name}.db", log=project.root / f"{name}.jsonl", **fields)  # type: ignore[arg-type]


def test_the_default_start_is_asked_for_only_when_the_simulator_needs_it(project: ProjectCopy) -> None:
    report = load_valid(project.config, project.machines, project.rules)
    asked: list[int] = []

    def default_start() -> datetime:
        asked.append(1)
        return MONDAY_OPEN

    given = _options(project, start=datetime(2026, 11, 24, 14, 30, tzinfo=timezone.utc))
    session = open_session(report, given, {}, default_start)
    assert asked == [] and session.clock.now() == given.start
    close_session(session)
    session = open_session(report, _options(project, "fresh"), {}, default_start)  # a new state file: no saved day
    assert asked == [1] and session.clock.now() == MONDAY_OPEN
    close_session(session)


def test_a_default_start_that_cannot_be_found_is_a_clear_error(project: ProjectCopy) -> None:
    report = load_valid(project.config, project.machines, project.rules)

    def broken() -> datetime:
        raise ValueError("the XNYS calendar cannot cover 2040-01-01")

    with pytest.raises(RunError, match=r"cannot find the next market open .*2040.*; give --start"):
        open_session(report, _options(project), {}, broken)
