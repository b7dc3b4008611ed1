"""`validate` (engine/validate.py): the checks across files run beside another file's errors where they can."""

from __future__ import annotations

import pytest

from engine.validate import validate
from tests.conftest import ProjectCopy

SETTINGS = "config/settings.yaml"


@pytest.mark.parametrize(
    ("also", "said"),
    [
        (None, True),
        (("max_orders_per_minute: 10", "max_orders_per_minute: 0"), True),  # another key of settings.yaml
        (("log_path: ./logs/app.jsonl", "log_path: 5"), False),  # a path the check reads: the schema says so
        (("log_path: ./logs/app.jsonl", "log_path: ~nosuchuser/app.jsonl"), False),  # no path: said by its check
    ],
)
def test_what_a_run_writes_is_checked_beside_a_typo_in_bots_yaml(
    project: ProjectCopy, monkeypatch: pytest.MonkeyPatch, also: tuple[str, str] | None, said: bool
) -> None:
    """A state file that is bots.yaml (SQLite would write into it) was said only once bots.yaml's misspelt key was
    fixed, and a problem anywhere in settings.yaml hid it too. The check of what a run writes reads settings.yaml's
    two paths alone: it waits only while one of them is itself the mistake."""
    monkeypatch.chdir(project.root)
    project.replace(SETTINGS, "state_db_path: ./state/trading_state.db", "state_db_path: ./config/bots.yaml")
    project.replace("config/bots.yaml", "stop_loss_pct: 0.75", "stop_los_pct: 0.75")
    if also is not None:
        project.replace(SETTINGS, *also)
    problems = validate(project.config, project.machines, project.rules).problems
    paths = [p.path for p in problems]
    assert ("system.state_db_path" in paths) is said, paths
    assert {"cryptobot.exits", "cryptobot.exits.stop_los_pct"} <= set(paths)
    assert len(problems) == 2 + said + (also is not None), "\n".join(map(str, problems))
