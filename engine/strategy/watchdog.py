"""A time budget for the user's signal code: a call past `health.max_signal_seconds` is stopped, and its bot halts.

A signal runs in the tick, in the main thread. One that never returns (a loop that never ends, a network call
without a timeout) held every bot's tick, every exit and the kill switch with it, for ever. Python cannot stop a
thread from outside; what it can do is run a signal handler in the main thread between two bytecodes. So a
watchdog thread looks at the call in progress a few times a budget, and when one has run past its budget it
sends SIGALRM to the main thread, whose handler raises `SignalTimeout` there, inside the user's code. `_signal`
(engine/trading/facts_builder.py) takes it as any exception of the user's code: that bot halts, and the tick,
with every exit, goes on.

What the tick pays is a clock read and two attribute writes per call (`CALL.since`). The limits: only the main thread can be
interrupted, a C loop (numpy's) only when it returns to Python, and code that swallows BaseException is
interrupted again every `period`, not stopped. Wall time is measured, so the watchdog runs under `run` only: a
backtest must not depend on the speed of the machine it runs on. The import of the user's module is watched too,
whatever the command (`load_signals`, with a budget of its own): one that never returns is no result of a run.
"""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from types import FrameType


class SignalTimeout(BaseException):
    """Raised inside a signal that ran past its budget. A BaseException, so that `except Exception` in the user's
    code does not swallow it."""


def late(budget: float) -> str:
    """What a signal past its budget is told, and its bot's halt says (`SignalTimeout: ...` when raised)."""
    return f"the signal ran past its {budget:g} s budget (health.max_signal_seconds)"


class _Call:
    """The signal call in progress (`since`: its start on `clock`, None between calls), its budget, and the
    clock both the stamp and the watchdog read (injected by tests)."""

    __slots__ = ("budget", "clock", "since")

    def __init__(self) -> None:
        self.since: float | None = None
        self.budget = float("inf")
        self.clock: Callable[[], float] = time.perf_counter


CALL = _Call()
"""What `_signal` stamps around each call of the user's code, and the watchdog reads."""


@contextmanager
def watching(budget_seconds: float, *, clock: Callable[[], float] = time.perf_counter,
             period: float | None = None) -> Iterator[None]:  # fmt: skip
    """Signal calls made inside the block are stopped past `budget_seconds`. Outside the main thread (a library
    caller's worker thread, where no handler can be set) the block runs unwatched."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    main = threading.main_thread().ident
    assert main is not None
    stopped = threading.Event()
    every = period if period is not None else min(max(budget_seconds / 4, 0.01), 0.25)

    def on_alarm(_signum: int, _frame: FrameType | None) -> None:
        since = CALL.since
        if since is not None and clock() - since > CALL.budget:
            raise SignalTimeout(late(CALL.budget))

    def watch() -> None:
        while not stopped.wait(every):
            since = CALL.since
            if since is not None and clock() - since > CALL.budget:
                signal.pthread_kill(main, signal.SIGALRM)

    previous = signal.signal(signal.SIGALRM, on_alarm)
    outer = CALL.budget, CALL.since, CALL.clock  # a block inside another (an import inside a run) gives it back
    CALL.budget, CALL.since, CALL.clock = budget_seconds, None, clock
    watcher = threading.Thread(target=watch, name="signal-watchdog", daemon=True)
    watcher.start()
    try:
        yield
    finally:
        stopped.set()
        watcher.join()  # no SIGALRM may come once the handler is put back (its default ends the process)
        signal.signal(signal.SIGALRM, previous)
        CALL.budget, CALL.since, CALL.clock = outer
