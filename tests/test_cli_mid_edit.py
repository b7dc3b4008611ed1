"""`status` while a config, machine or rule file is mid-edit beside the running engine, which read its files at its
start and never reads them again. `status` validated every file and refused (exit 2): the operator could not see
the engine that went on trading. It shows the state file as saved, with the files' problems and a warning on
stderr; what it cannot tell without a file is said, never guessed. (`health`: tests/test_service.py.)"""

from __future__ import annotations

import sqlite3
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from engine.cli import EXIT_INVALID, EXIT_OK, main
from engine.core.store import StateStore
from engine.trading.runner import LAST_TICK_KEY
from engine.trading.startup import ZONE_KEY
from tests.conftest import ProjectCopy


def _files(project: ProjectCopy) -> list[str]:
    return ["--config", str(project.config), "--machines", str(project.machines), "--rules", str(project.rules)]


def _running_state(project: ProjectCopy, capsys: pytest.CaptureFixture[str]) -> tuple[Path, Path]:
    """A real-time state ticked 20 s ago, counting its days in New York, with an operator's halt in force."""
    db, log = project.root / "s.db", project.root / "app.jsonl"
    store = StateStore(db)
    try:
        store.set_meta("broker", "alpaca")
        store.set_meta(ZONE_KEY, "America/New_York")
        store.set_meta(LAST_TICK_KEY, (datetime.now(timezone.utc) - timedelta(seconds=20)).isoformat())
    finally:
        store.close()
    assert main(["halt", "--reason", "kept", "--state-db", str(db), "--log", str(log), *_files(project)]) == EXIT_OK
    capsys.readouterr()
    return db, log


@pytest.mark.parametrize("edited", [
    ("rules/guards.yaml", "guards:\n", "guards:\n  broken: [\n"),
    ("machines/momentum.yaml", "states:", "states: [oops\n"),
    ("config/bots.yaml", "bots:", "bots: [oops\n"),
])  # fmt: skip
def test_status_shows_the_state_while_a_file_is_mid_edit(
    project: ProjectCopy, capsys: pytest.CaptureFixture[str], edited: tuple[str, str, str]
) -> None:
    db, log = _running_state(project, capsys)
    project.replace(*edited)
    code = main(["status", "--state-db", str(db), "--log", str(log), *_files(project)])
    out, err = capsys.readouterr()
    assert code == EXIT_OK, out + err
    assert edited[0].split("/")[1] in err and "warning: the files above cannot be read" in err
    assert "  system: kept (since " in out and "; last tick " in out.splitlines()[0]
    assert "-08:00" in out.splitlines()[0]  # settings.yaml reads: its zone, as ever
    said = "which of them no bot of bots.yaml manages: unknown"
    assert (said in out) == (edited[0] == "config/bots.yaml")


def test_status_without_settings_yaml_needs_both_paths_and_says_what_it_cannot_tell(
    project: ProjectCopy, capsys: pytest.CaptureFixture[str]
) -> None:
    """settings.yaml names the state file, the log, the zone and the loop interval: without it the state file and
    the log must both be given (a guessed state is one no engine runs on), the times are in the zone the state file
    counts its days in, and whether the last tick is STALE is said unknown, never left out."""
    db, log = _running_state(project, capsys)
    project.replace("config/settings.yaml", "system:", "system: [oops\n")
    code = main(["status", "--state-db", str(db), *_files(project)])
    err = capsys.readouterr().err
    assert code == EXIT_INVALID and "give both --state-db PATH and --log PATH" in err and "settings.yaml" in err
    code = main(["status", "--state-db", str(db), "--log", str(log), *_files(project)])
    out, err = capsys.readouterr()
    assert code == EXIT_OK, out + err
    header = out.splitlines()[0]
    assert "-05:00" in header and "STALE or not: unknown, settings.yaml cannot be read" in header, header
    assert "no STALE is judged" in err and "  system: kept (since " in out


def test_status_shows_a_saved_state_a_machine_file_no_longer_has(
    project: ProjectCopy, capsys: pytest.CaptureFixture[str]
) -> None:
    """A state renamed mid-edit in a machine file, while the engine runs on the file it read: the saved state no
    longer fits the files, which validation refuses, and `status` with it. It shows the state as saved."""
    db, log = _running_state(project, capsys)
    conn = sqlite3.connect(db)
    with conn:
        conn.execute("INSERT INTO machine_states (kind, bot_id, state, since) VALUES ('momentum', 'mom_AAPL', "
                     "'renamed_away', '2026-12-03T15:00:00+00:00')")  # fmt: skip
    conn.close()
    code = main(["status", "--state-db", str(db), "--log", str(log), *_files(project)])
    out, err = capsys.readouterr()
    assert code == EXIT_OK, out + err
    assert "renamed_away" in err and "warning: the files above no longer fit the saved state" in err
    assert "renamed_away" in out


def test_report_reads_the_day_while_a_file_is_mid_edit(project: ProjectCopy, capsys: pytest.CaptureFixture[str]) -> None:
    """`report` reads the state file and the log, and of the files settings.yaml alone (the paths, the zone): it
    refused the day's review (exit 2) while a rule file was mid-edit. It reads it, with the problems and a warning on
    stderr; without settings.yaml it needs both --state-db and --log, and counts the days in the state file's zone."""
    db, log = _running_state(project, capsys)
    project.replace("rules/guards.yaml", "guards:\n", "guards:\n  broken: [\n")
    code = main(["report", "--state-db", str(db), "--log", str(log), *_files(project)])
    out, err = capsys.readouterr()
    assert code == EXIT_OK, out + err
    assert "guards.yaml" in err and "warning: the files above cannot be read; report reads the state file" in err
    assert out.startswith("report ") and "(times in America/New_York" in out.splitlines()[0]
    assert "not in system.timezone America/Los_Angeles" in out.splitlines()[0]  # settings.yaml read: its zone said
    project.replace("config/settings.yaml", "system:", "system: [oops\n")
    code = main(["report", "--state-db", str(db), *_files(project)])
    err = capsys.readouterr().err
    assert code == EXIT_INVALID and "report cannot tell the state file and the log without settings.yaml" in err
    code = main(["report", "--state-db", str(db), "--log", str(log), *_files(project)])
    out, err = capsys.readouterr()
    assert code == EXIT_OK, out + err
    first = out.splitlines()[0]
    assert "(times in America/New_York)" in first and "system.timezone" not in first  # settings.yaml's zone unknown
    assert "counts its days in" in err and "STALE" not in err
