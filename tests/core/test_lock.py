"""The state file's lock: one holder, named by pid, released by the OS however the holder ends."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from engine.cli import EXIT_FAILURE, EXIT_INVALID, file_error_code
from engine.core.lock import LockFileError, LockHeld, RunLock, lock_path
from engine.core.store import StateFileError
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


def test_a_second_holder_through_a_symlink_to_the_state_file_is_refused(tmp_path: Path) -> None:
    """SQLite follows a symlink to its file (its -wal and -shm go beside the file linked to): a second engine given
    the link, or a link to the link, is on the same state file and must meet the same lock."""
    db = tmp_path / "state" / "s.db"
    db.parent.mkdir()
    db.write_bytes(b"")
    (tmp_path / "elsewhere").mkdir()
    link = tmp_path / "elsewhere" / "link.db"
    link.symlink_to(db)
    chained = tmp_path / "chained.db"
    chained.symlink_to(link)
    with RunLock(db):
        for other in (link, chained):
            with pytest.raises(LockHeld) as refused:
                RunLock(other).acquire()
            assert refused.value.pid == os.getpid() and refused.value.state_db == other
    with RunLock(link), pytest.raises(LockHeld):  # and the other way round
        RunLock(db).acquire()
    assert lock_path(link) == lock_path(db) == db.parent / "s.db.lock"  # beside the file itself, as its -wal is


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


# --- a lock file that cannot be made: the project's own error, naming the file, with its exit code -----------------


def _refused(db: Path) -> LockFileError:
    lock = RunLock(db)
    with pytest.raises(LockFileError) as refused:
        lock.acquire()
    assert not lock.held
    assert isinstance(refused.value, StateFileError)  # reported as the state store's errors are (engine/cli.py)
    assert str(lock_path(db)) in refused.value.message and refused.value.message.startswith(f"state file {db}: ")
    return refused.value


def test_a_lock_file_under_a_regular_file_is_bad_usage(tmp_path: Path) -> None:
    (tmp_path / "afile").write_text("")
    error = _refused(tmp_path / "afile" / "state" / "s.db")
    assert not error.runtime and file_error_code(error) == EXIT_INVALID


@pytest.mark.parametrize("kind", ["folder", "fifo"])
def test_a_lock_path_that_is_not_a_regular_file_is_bad_usage(tmp_path: Path, kind: str) -> None:
    db = tmp_path / "s.db"
    if kind == "folder":
        lock_path(db).mkdir()
    else:
        os.mkfifo(lock_path(db))  # refused at once, never waited on
    error = _refused(db)
    assert not error.runtime and file_error_code(error) == EXIT_INVALID


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into a read-only folder")
def test_a_read_only_folder_is_a_failure_of_the_moment(tmp_path: Path) -> None:
    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(0o555)
    try:
        error = _refused(folder / "s.db")
    finally:
        folder.chmod(0o755)
    assert error.runtime and file_error_code(error) == EXIT_FAILURE


_FULL_DISK = """
import resource, signal, sys
from pathlib import Path
from engine.core.lock import LockFileError, RunLock

signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # past the limit a write fails with EFBIG instead of killing us
_soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
resource.setrlimit(resource.RLIMIT_FSIZE, (0, hard))  # no room for the pid
lock = RunLock(Path(sys.argv[1]))
try:
    lock.acquire()
except LockFileError as exc:
    print(exc.runtime, lock.held, exc.message, sep="|")
resource.setrlimit(resource.RLIMIT_FSIZE, (hard, hard))
lock.acquire()  # the refused attempt kept no descriptor: the lock is free
print("then locked", flush=True)
"""


def test_a_full_disk_is_a_failure_of_the_moment_and_holds_nothing(tmp_path: Path) -> None:
    db = tmp_path / "s.db"
    done = subprocess.run([sys.executable, "-c", _FULL_DISK, str(db)], capture_output=True, text=True, cwd=PROJECT_ROOT,
                          timeout=60, check=True)  # fmt: skip
    runtime, held, message = done.stdout.splitlines()[0].split("|")
    assert (runtime, held) == ("True", "False") and "File too large" in message and str(lock_path(db)) in message
    assert done.stdout.splitlines()[1] == "then locked"


def test_release_lets_go_even_when_the_pid_cannot_be_emptied(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    db = tmp_path / "s.db"
    lock = RunLock(db)
    lock.acquire()

    def failing(_fd: int, _length: int) -> None:
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(os, "ftruncate", failing)
    lock.release()  # the run has closed its state file: a pid left behind must not fail its end
    monkeypatch.undo()
    assert not lock.held
    with RunLock(db):
        pass


# --- who holds the lock, told without taking it ------------------------------------------------------------------


def test_the_holders_of_a_lock_are_read_from_the_kernels_table_without_taking_it(tmp_path: Path) -> None:
    from engine.core.lock import flock_holders

    db = tmp_path / "s.db"
    assert flock_holders(lock_path(db)) == frozenset()  # no file: nothing holds it
    with RunLock(db):
        assert flock_holders(lock_path(db)) == {os.getpid()}
        with pytest.raises(LockHeld):  # asking took nothing: the lock is still this holder's alone
            RunLock(db).acquire()
    assert flock_holders(lock_path(db)) == frozenset()
    assert flock_holders(lock_path(db), proc_locks=tmp_path / "no-proc-locks") is None  # cannot be told


def test_a_dead_engines_pid_given_to_another_process_is_no_running_engine(tmp_path: Path) -> None:
    """A run killed with SIGKILL leaves its pid in the lock file. Once the system gives that pid to another process
    (any process: here this one, which holds no lock), `status` said "running (pid N)" of an engine that was dead."""
    from engine.trading.runner import running_pid

    db = tmp_path / "s.db"
    lock_path(db).write_text(f"{os.getpid()}\n")  # the pid, alive, of a process that is not an engine on this file
    assert running_pid(db) is None
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD, str(db)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd=PROJECT_ROOT
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline() == "locked\n"
        assert running_pid(db) == holder.pid
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait(timeout=30)
    assert running_pid(db) is None
