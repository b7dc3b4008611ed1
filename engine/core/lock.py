"""One running engine per state file: an exclusive `flock` on a lock file beside the database.

Two engines on one state file would both trade the account and overwrite each other's machine states, so
`run` holds this lock from before it writes anything until it has closed the database. The operator's
commands (`status`, `halt`, `resume`) never take it: they are how a running engine is stopped.

`flock` rather than a pid file: the kernel drops the lock when the holder's last descriptor closes, however
the process ended (SIGKILL, a crash, power loss), so a dead engine never leaves a stale lock to clean up. The
pid written in the file only names the holder in the refusal message; nothing trusts it. The file is never
deleted: unlinking a lock file lets a later process lock a fresh inode while another still holds the old one.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path
from types import TracebackType


def lock_path(state_db: Path) -> Path:
    return state_db.with_name(state_db.name + ".lock")


class LockHeld(Exception):
    """Another process holds the state file: the run must not start."""

    def __init__(self, state_db: Path, lock: Path, pid: int | None):
        self.state_db, self.lock, self.pid = state_db, lock, pid
        holder = f"pid {pid}" if pid is not None else "a process that has not written its pid yet"
        super().__init__(f"{state_db} is in use by another engine ({holder}; lock {lock}): one running engine per state file")


class RunLock:
    """The exclusive lock of one state file, held by one open descriptor of this process."""

    def __init__(self, state_db: Path):
        self.state_db = state_db
        self.path = lock_path(state_db)
        self._fd: int | None = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    def acquire(self) -> None:
        """Take the lock now or raise LockHeld: a second engine is refused, never queued behind the first."""
        if self._fd is not None:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            pid = _read_pid(fd)
            os.close(fd)
            raise LockHeld(self.state_db, self.path, pid) from None
        except BaseException:
            os.close(fd)
            raise
        data = f"{os.getpid()}\n".encode()
        os.ftruncate(fd, 0)
        os.pwrite(fd, data, 0)
        self._fd = fd

    def release(self) -> None:
        """Forget the pid, then let go. Closing the descriptor is what releases the lock."""
        fd, self._fd = self._fd, None
        if fd is None:
            return
        try:
            os.ftruncate(fd, 0)
        finally:
            os.close(fd)

    def __enter__(self) -> RunLock:
        self.acquire()
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None, tb: TracebackType | None) -> None:
        self.release()


def _read_pid(fd: int) -> int | None:
    text = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
    return int(text) if text.isdigit() else None
