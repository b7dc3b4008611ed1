"""The state file's lock: one holder, named by pid, released by the OS however the holder ends."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from engine.core.lock import LockHeld, RunLock, lock_path
from engine.paths import PROJECT_ROOT

HOLD = """
import sys
from pathlib import Path
from engine.core.lock import RunLock
RunLock(Path(sys.argv[1])).acquire()
print("locked", flush=True)
sys.stdin.read()  # held until the test kills this process
"""


def test_the_lock_file_sits_beside_the_database(tmp_path: Path) -> None:
    assert lock_path(tmp_path / "state" / "s.db") == tmp_path / "state" / "s.db.lock"


def test_a_second_holder_is_refused_with_the_first_ones_pid(tmp_path: Path) -> None:
    db = tmp_path / "state" / "s.db"
    first = RunLock(db)
    first.acquire()
    assert first.held and lock_path(db).read_text() == f"{os.getpid()}\n"
    with pytest.raises(LockHeld) as refused:
        RunLock(db).acquire()  # another open file description: refused like another process would be
    assert refused.value.pid == os.getpid() and refused.value.state_db == db
    assert str(db) in str(refused.value) and f"pid {os.getpid()}" in str(refused.value)
    assert not db.exists()  # the lock writes its own file only


def test_release_lets_the_next_one_in_and_keeps_the_file(tmp_path: Path) -> None:
    db = tmp_path / "s.db"
    with RunLock(db):
        pass
    assert lock_path(db).exists() and lock_path(db).read_text() == ""  # never unlinked, no pid left behind
    with RunLock(db) as again:
        assert again.held
    assert not again.held


def test_a_pid_left_in_the_file_by_a_dead_process_does_not_hold_the_lock(tmp_path: Path) -> None:
    db = tmp_path / "s.db"
    lock_path(db).write_text("999999\n")
    with RunLock(db):
        assert lock_path(db).read_text() == f"{os.getpid()}\n"


def test_a_holder_killed_with_sigkill_leaves_no_stale_lock(tmp_path: Path) -> None:
    db = tmp_path / "s.db"
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD, str(db)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd=PROJECT_ROOT
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline() == "locked\n"
        with pytest.raises(LockHeld) as refused:
            RunLock(db).acquire()
        assert refused.value.pid == holder.pid
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait(timeout=30)
    assert holder.returncode == -signal.SIGKILL
    assert lock_path(db).read_text() == f"{holder.pid}\n"  # the dead holder's pid is still written...
    with RunLock(db):  # ...and means nothing: the kernel released the lock with the process
        pass
