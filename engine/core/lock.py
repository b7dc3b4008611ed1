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

import contextlib
import errno
import fcntl
import os
import stat
from pathlib import Path
from types import TracebackType

from engine.core.store import StateFileError

# What the OS says when the path itself is wrong (the user's to fix: exit 2); anything else (read-only, no space,
# no permission, no locks on this file system) is a failure of the moment (exit 1). As engine/cli.py's
# _state_path_error reads an OSError met on the state file's path.
WRONG_KIND = frozenset({errno.ENOENT, errno.ENOTDIR, errno.EEXIST, errno.EISDIR, errno.ELOOP, errno.ENAMETOOLONG})


def lock_path(state_db: Path) -> Path:
    """Beside the file the path leads to, its symlinks followed, as SQLite follows them to put its -wal and -shm:
    a lock beside a symlink let a second engine, given the link, run on the same state file as the first."""
    real = os.path.realpath(state_db)
    path = Path(real) if real != os.path.abspath(state_db) else state_db  # no symlink: the path as given (its messages)
    return path.with_name(path.name + ".lock")


class LockHeld(Exception):
    """Another process holds the state file: the run must not start."""

    def __init__(self, state_db: Path, lock: Path, pid: int | None):
        self.state_db, self.lock, self.pid = state_db, lock, pid
        holder = f"pid {pid}" if pid is not None else "a process that has not written its pid yet"
        super().__init__(f"{state_db} is in use by another engine ({holder}; lock {lock}): one running engine per state file")


class LockFileError(StateFileError):
    """The lock file beside the state file cannot be made, opened, locked or written: one line naming both files.

    A StateFileError (the lock is part of the state file: a run that cannot lock it cannot use it), so whatever
    reports the state store's errors reports this one: `runtime` True for a failure of the moment (a read-only
    folder, a full disk, no permission: exit 1), False for a path of the wrong kind (under a regular file, a
    folder or a FIFO where the lock file goes, a symlink loop: exit 2). `errno` is the OS's."""

    def __init__(self, state_db: Path, lock: Path, exc: OSError | None = None, *, wrong_kind: str | None = None):
        self.lock, self.errno = lock, exc.errno if exc is not None else None
        runtime = wrong_kind is None and (exc is None or exc.errno not in WRONG_KIND)
        where = f" ({exc.filename})" if exc is not None and exc.filename not in (None, str(lock)) else ""
        what = wrong_kind or (f"{exc.strerror or exc}{where}" if exc is not None else "unknown error")
        super().__init__(state_db, f"its lock file {lock} cannot be used: {what}", runtime=runtime)


class RunLock:
    """The exclusive lock of one state file, held by one open descriptor of this process."""

    def __init__(self, state_db: Path):
        self.state_db = state_db
        self._real = os.path.realpath(state_db)  # the file the lock guards: where the path led when it was made
        self.path = lock_path(state_db)
        self._fd: int | None = None
        self._inode = (0, 0)  # (device, inode) of the lock file held
        self.used_before = False  # the lock file was there when taken: a run has used (or tried) this state file before

    @property
    def held(self) -> bool:
        return self._fd is not None

    def acquire(self) -> None:
        """Take the lock now or raise LockHeld: a second engine is refused, never queued behind the first.
        A lock file that cannot be made, opened, locked or written raises LockFileError, holding nothing."""
        if self._fd is not None:
            return
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.used_before = os.path.lexists(self.path)  # a run made it (it stays, emptied, at the run's end)
            # Not blocking: a FIFO put where the lock file goes must be refused, not waited on
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOCTTY | os.O_NONBLOCK, 0o644)
        except OSError as exc:
            raise LockFileError(self.state_db, self.path, exc) from None
        try:
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                raise LockFileError(self.state_db, self.path, wrong_kind="not a regular file")
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            pid = _read_pid(fd)
            os.close(fd)
            raise LockHeld(self.state_db, self.path, pid) from None
        except OSError as exc:  # ENOLCK, or a file system without locks
            os.close(fd)
            raise LockFileError(self.state_db, self.path, exc) from None
        except BaseException:
            os.close(fd)
            raise
        try:
            data = f"{os.getpid()}\n".encode()
            os.ftruncate(fd, 0)
            if os.pwrite(fd, data, 0) != len(data):  # part of a pid would name another process
                raise OSError(errno.ENOSPC, "no room for the pid")
        except OSError as exc:  # a full disk: the pid cannot be written, so the lock is not kept either
            os.close(fd)
            raise LockFileError(self.state_db, self.path, exc) from None
        self._fd = fd
        held = os.fstat(fd)
        self._inode = (held.st_dev, held.st_ino)

    def guards(self, file_id: tuple[int, int] | None) -> bool:
        """Whether the file opened as the state file, (device, inode), is the one this lock guards: where the path
        led when the lock was made. A symlink on the path replaced between the two (a deploy switching a `current`
        link) opened another file than the one locked, and a second `run`, given the same path, locked that file's
        own lock and ran on it too: two engines on one state file, each with a lock of its own."""
        if file_id is None:  # not a file on disk (":memory:")
            return True
        try:
            found = os.stat(self._real)
        except OSError:
            return False
        return (found.st_dev, found.st_ino) == file_id

    def keep(self) -> None:
        """Between ticks: the lock file at the path is still the one this run holds locked. Deleted or replaced
        under a running engine (by hand, a cleanup job), a second `run` would lock the new file and trade the same
        state file: the path is locked again at once; when another engine has locked it already, LockFileError
        (exit 1) stops this run, the one whose lock was taken away. A path that cannot be made now (a read-only
        folder) cannot be locked by another run either: the lock held stands."""
        if self._fd is None:
            return
        try:
            found = os.stat(self.path)
            if (found.st_dev, found.st_ino) == self._inode:
                return
        except FileNotFoundError:
            pass
        except OSError:  # cannot tell now (a folder made unsearchable): nor can another run get at it
            return
        fresh = RunLock(self.state_db)
        try:
            fresh.acquire()
        except LockHeld as exc:
            holder = f"pid {exc.pid}" if exc.pid is not None else "another process"
            lost = OSError(errno.EBUSY, f"it was deleted or replaced under this engine, and {holder} holds the new one")
            raise LockFileError(self.state_db, self.path, lost) from None
        except LockFileError:
            return
        old, self._fd, self._inode = self._fd, fresh._fd, fresh._inode
        with contextlib.suppress(OSError):
            os.close(old)

    def release(self) -> None:
        """Forget the pid, then let go. Closing the descriptor is what releases the lock, and the kernel releases
        it whatever `close` says; a pid that cannot be emptied is left (nothing trusts it: `running_pid` checks
        that the process lives), so neither fails the end of a run that has already closed its state file."""
        fd, self._fd = self._fd, None
        if fd is None:
            return
        try:
            with contextlib.suppress(OSError):
                os.ftruncate(fd, 0)
        finally:
            with contextlib.suppress(OSError):
                os.close(fd)

    def __enter__(self) -> RunLock:
        self.acquire()
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None, tb: TracebackType | None) -> None:
        self.release()


def flock_holders(path: Path, *, proc_locks: Path = Path("/proc/locks")) -> frozenset[int] | None:
    """The pids that hold an flock on the file at `path`, found without taking the lock (the kernel's table of
    locks, Linux's /proc/locks); None when that cannot be told (another system, /proc not mounted), or when there
    is no file at `path` (empty: nothing holds what is not there). Taking the lock to learn whether it is free,
    even for an instant, would refuse the writer that starts in that instant ("another engine holds it"); a pid
    written in the file names a dead holder's successor once the pid is reused."""
    try:
        found = os.stat(path)
    except FileNotFoundError:
        return frozenset()
    except OSError:
        return None
    where = f"{os.major(found.st_dev):02x}:{os.minor(found.st_dev):02x}:{found.st_ino}"
    try:
        table = proc_locks.read_text(encoding="ascii", errors="replace")
    except OSError:
        return None
    holders = set()
    for line in table.splitlines():
        fields = line.split()
        # "1: FLOCK  ADVISORY  WRITE 25601 fe:00:2285637 0 EOF"; a waiter's line starts "1: -> FLOCK ..."
        if len(fields) >= 6 and fields[1] == "FLOCK" and fields[5] == where and fields[4].isdigit():
            holders.add(int(fields[4]))
    return frozenset(holders)


def _read_pid(fd: int) -> int | None:
    """The holder's pid for the refusal message, or None: a pid that cannot be read does not change the refusal."""
    try:
        text = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
    except OSError:
        return None
    return int(text) if text.isdigit() and text.isascii() else None
