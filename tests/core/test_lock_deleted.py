"""The lock file deleted or replaced under a running engine: a second `run` must still be refused, or the first
one stops; never two engines trading one state file."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from engine.cli import EXIT_FAILURE, file_error_code
from engine.core.lock import LockFileError, LockHeld, RunLock, lock_path


def test_a_deleted_lock_file_is_locked_again_before_a_second_run_can_take_it(tmp_path: Path) -> None:
    db = tmp_path / "s.db"
    running = RunLock(db)
    running.acquire()
    lock_path(db).unlink()  # a cleanup job, or a hand, between two ticks
    running.keep()  # the loop's check after each tick
    assert lock_path(db).read_text() == f"{os.getpid()}\n"
    with pytest.raises(LockHeld):
        RunLock(db).acquire()  # the second `run`
    running.release()
    RunLock(db).acquire()  # released as before


def test_a_run_whose_lock_was_taken_by_a_second_one_stops(tmp_path: Path) -> None:
    db = tmp_path / "s.db"
    running = RunLock(db)
    running.acquire()
    lock_path(db).unlink()
    second = RunLock(db)
    second.acquire()  # started in the window, on a fresh lock file
    with pytest.raises(LockFileError) as stopped:
        running.keep()
    assert file_error_code(stopped.value) == EXIT_FAILURE and "deleted or replaced" in stopped.value.message
    assert second.held


def test_an_untouched_lock_file_is_kept_as_it_is(tmp_path: Path) -> None:
    db = tmp_path / "s.db"
    running = RunLock(db)
    running.acquire()
    before = os.stat(lock_path(db)).st_ino
    running.keep()
    assert os.stat(lock_path(db)).st_ino == before
    with pytest.raises(LockHeld):
        RunLock(db).acquire()


def test_a_symlink_replaced_as_a_run_starts_refuses_the_run_not_two_engines_on_one_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`--state-db current.db`, a link a deploy switches from a/s.db to b/s.db between the run's lock (a/s.db.lock)
    and its open of the file (b/s.db): the run went on in b/s.db under a's lock, and a second run on the same
    path locked b/s.db.lock and ran on b/s.db too. The run that opened a file its lock does not guard stops, exit 1,
    before its first tick; the next start locks and opens the same file."""
    from datetime import datetime, timezone

    import engine.trading.runner as runner
    from engine.core.store import StateFileError, StateStore
    from engine.trading.runner import RunOptions, close_session, open_session
    from engine.validate import load_valid
    from tests.conftest import ProjectCopy

    project = ProjectCopy(tmp_path / "project")
    report = load_valid(project.config, project.machines, project.rules)
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
        StateStore(tmp_path / name / "s.db").close()
    link = tmp_path / "current.db"
    link.symlink_to(tmp_path / "a" / "s.db")
    real_store = runner.StateStore
    switched: list[bool] = []

    def deploy_switches_the_link_meanwhile(path: Path, **kwargs: object) -> StateStore:
        if not switched:
            switched.append(True)
            (tmp_path / "next.db").symlink_to(tmp_path / "b" / "s.db")
            os.replace(tmp_path / "next.db", link)
        return real_store(path, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(runner, "StateStore", deploy_switches_the_link_meanwhile)
    options = RunOptions(broker="sim", state_db=link, log=tmp_path / "a.jsonl", ticks=1)
    start = datetime(2026, 11, 23, 14, 30, tzinfo=timezone.utc)
    with pytest.raises(StateFileError) as refused:
        open_session(report, options, {}, start)
    assert file_error_code(refused.value) == EXIT_FAILURE and "is not the file its lock" in refused.value.message
    assert str(lock_path(tmp_path / "a" / "s.db")) in refused.value.message
    with RunLock(tmp_path / "a" / "s.db"):  # released: nothing held by the refused run
        pass
    session = open_session(report, options, {}, start)  # started again: the lock and the file are b's
    try:
        assert session.lock is not None and session.lock.path == lock_path(tmp_path / "b" / "s.db")
        with pytest.raises(LockHeld):
            RunLock(link).acquire()
    finally:
        close_session(session)
