"""A position whose bot bots.yaml no longer runs (disabled, removed, renamed) while SQLite holds it: `run` refuses to
start, naming it, but `status`, `why` and the status page listed it as any other position, and `why` walked the
bot's exit rules as if its machine still managed it."""

from __future__ import annotations

import pytest

from engine.cli import main
from engine.operator.local import LocalTime
from engine.operator.status_page import status_record
from engine.validate import load_valid
from tests.conftest import ProjectCopy
from tests.trading.conftest import Rig
from tests.trading.test_config_edits import DISABLE, RENAME


def _cli(project: ProjectCopy, rig: Rig, *args: str) -> list[str]:
    return ["--state-db", str(rig.store.path), "--log", str(rig.log), "--config", str(project.config),
            "--machines", str(project.machines), "--rules", str(project.rules), *args]  # fmt: skip


@pytest.mark.parametrize(("edit", "said"), [(DISABLE, "bots.yaml disables 'mom_AAPL'"), (RENAME, "bots.yaml has no bot 'mom_AAPL'")])
def test_status_why_and_the_page_say_no_bot_manages_the_position(
    project: ProjectCopy, rig: Rig, capsys: pytest.CaptureFixture[str], edit: tuple[str, str, str], said: str
) -> None:
    rig.until(lambda r: bool(r.store.positions("mom_AAPL")))
    (held,) = rig.store.positions("mom_AAPL")
    rig.engine.journal.flush()
    project.replace(*edit)
    capsys.readouterr()
    assert main(["status", *_cli(project, rig)]) == 0
    status = capsys.readouterr().out
    expected = f"NOT MANAGED: 'mom_AAPL' holds {held.qty:g} AAPL, but {said}"
    (line,) = [line for line in status.splitlines() if "NOT MANAGED" in line]
    assert line.startswith(f"  {expected}") and "`run` refuses to start meanwhile" in line, status
    report = load_valid(project.config, project.machines, project.rules)
    page = status_record(rig.store, report, rig.clock.now(), LocalTime("America/Los_Angeles"))
    assert [u[: len(expected)] for u in page["unmanaged"]] == [expected]
    if edit is DISABLE:  # a removed bot is no bot to `why` (exit 2, its name unknown)
        assert main(["why", "mom_AAPL", *_cli(project, rig)]) == 0
        why = capsys.readouterr().out.splitlines()
        assert why[1].startswith(expected), why[:3]


def test_nothing_is_said_while_every_holder_is_managed(project: ProjectCopy, rig: Rig, capsys: pytest.CaptureFixture[str]) -> None:
    rig.until(lambda r: bool(r.store.positions("mom_AAPL")))
    rig.engine.journal.flush()
    capsys.readouterr()
    assert main(["status", *_cli(project, rig)]) == 0
    assert "NOT MANAGED" not in capsys.readouterr().out
