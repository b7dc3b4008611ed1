"""SIGTERM as an exception, for the commands that run a long loop of their own and no stop flag (a backtest, a
sweep). By default SIGTERM ends the process where it stands: a backtest's held ticks are not committed, its log is
not closed, and a sweep's workers are left running with no one to read what they return. Raised instead, it takes
the way out Ctrl-C takes (`finally` blocks run, the state file commits what it finished), and the command says
so in one line and exits 143. The trading loop has its own, gentler way (`runner.StopSignals`: it finishes the
tick in progress)."""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator
from types import FrameType


class Terminated(KeyboardInterrupt):
    """SIGTERM arrived inside `sigterm_raises()`. A KeyboardInterrupt, so that whatever cleans up after Ctrl-C cleans
    up after it too; `signum` says which signal, for the exit code (128 + signum)."""

    def __init__(self, signum: int):
        super().__init__(signum)
        self.signum = signum


@contextlib.contextmanager
def sigterm_raises() -> Iterator[None]:
    """SIGTERM raises Terminated inside the block. A second SIGTERM, once the first is being handled, ends the
    process at once, as a kill would. Only the main thread may handle signals: elsewhere this does nothing."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def stop(signum: int, _frame: FrameType | None) -> None:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        raise Terminated(signum)

    previous = signal.signal(signal.SIGTERM, stop)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
