"""`status` of a real-time state says when it was last ticked: its header said "as of" this machine's clock while
the state read was the last tick's, hours old for an engine that hung mid-tick or was stopped, and read as current."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from engine.cli import main
from engine.core.store import StateStore
from engine.trading.runner import LAST_TICK_KEY
from tests.conftest import ProjectCopy
from tests.operator.test_broken_state_commands import FILES
from tests.trading.conftest import Rig


def _real_time_state(db: Path, last_tick: datetime | None) -> None:
    store = StateStore(db)
    try:
        store.set_meta("broker", "alpaca")
        if last_tick is not None:
            store.set_meta(LAST_TICK_KEY, last_tick.isoformat())
    finally:
        store.close()


@pytest.mark.parametrize("ago, said", [
    (timedelta(hours=3), "STALE"),
    (timedelta(seconds=5), None),
])  # fmt: skip
def test_status_says_when_a_real_time_state_was_last_ticked(
    tmp_path: Path, ago: timedelta, said: str | None, capsys: pytest.CaptureFixture[str]
) -> None:
    db, log = tmp_path / "s.db", tmp_path / "app.jsonl"
    _real_time_state(db, datetime.now(timezone.utc) - ago)
    assert main(["status", "--state-db", str(db), "--log", str(log), *FILES]) == 0
    header = capsys.readouterr().out.splitlines()[0]
    assert "; last tick " in header and " s before" in header, header
    assert (said in header) if said else ("STALE" not in header), header


def test_status_says_when_no_tick_was_recorded(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    db, log = tmp_path / "s.db", tmp_path / "app.jsonl"
    _real_time_state(db, None)
    assert main(["status", "--state-db", str(db), "--log", str(log), *FILES]) == 0
    assert "no tick recorded yet" in capsys.readouterr().out.splitlines()[0]


def test_why_says_the_facts_of_a_real_time_state_are_stale(project: ProjectCopy, rig: Rig, capsys: pytest.CaptureFixture[str]) -> None:
    """`why` showed the facts of the last tick of an engine stopped or stuck days ago as the bot's present: its
    first line named the tick's time, and nothing said it was old, where `status` said STALE."""
    rig.ticks(3)
    rig.engine.journal.flush()
    _real_time_state(rig.store.path, rig.clock.now())  # a real-time run's last tick, days before this machine's clock
    args = ["--state-db", str(rig.store.path), "--log", str(rig.log), "--config", str(project.config),
            "--machines", str(project.machines), "--rules", str(project.rules)]  # fmt: skip
    assert main(["why", "mom_AAPL", *args]) == 0
    first = capsys.readouterr().out.splitlines()[0]
    assert first.startswith("mom_AAPL (momentum) is ") and "STALE, older than 45 s (the engine is stuck or not running)" in first
    assert main(["why", "mom_AAPL", "--json", *args]) == 0
    assert '"stale": true' in capsys.readouterr().out
