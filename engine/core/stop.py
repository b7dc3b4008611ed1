"""SIGTERM (and SIGHUP) as an exception, for the commands that run a long loop of their own and no stop flag (a backtest, a
sweep). By default SIGTERM ends the process where it stands: a backtest's held ticks are not committed, its log is
not closed, and a sweep's workers are left running with no one to read what they return. Raised instead, it takes
the way out Ctrl-C takes (`finally` blocks run, the state file commits what it finished), and the command says
so in one line and exits 143. SIGHUP (the terminal or the ssh session the command ran in closed) is the same
stop, exit 129: by default it, too, ended the process where it stood, silently. A SIGHUP ignored when the
process started (`nohup`) stays ignored. The trading loop has its own, gentler way (`runner.StopSignals`: it
finishes the tick in progress)."""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator
from types import FrameType


def hangup_stops() -> bool:
    """Whether SIGHUP is to stop this process: it exists here (not on Windows) and was not ignored by whoever
    started it (`nohup`, a supervisor that means the process to outlive its terminal)."""
    hup = getattr(signal, "SIGHUP", None)
    return hup is not None and signal.getsignal(hup) is not signal.SIG_IGN


def stop_signals() -> tuple[int, ...]:
    """The signals that stop a command as SIGTERM does: SIGTERM, and SIGHUP unless it is ignored (`hangup_stops`)."""
    return (signal.SIGTERM, signal.SIGHUP) if hangup_stops() else (signal.SIGTERM,)


class Terminated(KeyboardInterrupt):
    """SIGTERM (or SIGHUP) arrived inside `sigterm_raises()`. A KeyboardInterrupt, so that whatever cleans up after Ctrl-C cleans
    up after it too; `signum` says which signal, for the exit code (128 + signum)."""

    def __init__(self, signum: int):
        super().__init__(signum)
        self.signum = signum


@contextlib.contextmanager
def sigterm_raises() -> Iterator[None]:
    """SIGTERM, or SIGHUP (`stop_signals`), raises Terminated inside the block. A second one, once the first is
    being handled, ends the process at once, as a kill would. Only the main thread may handle signals: elsewhere
    this does nothing."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    signums = stop_signals()

    def stop(signum: int, _frame: FrameType | None) -> None:
        for each in signums:
            signal.signal(each, signal.SIG_DFL)
        raise Terminated(signum)

    previous = {signum: signal.signal(signum, stop) for signum in signums}
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
