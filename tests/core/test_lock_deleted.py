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
