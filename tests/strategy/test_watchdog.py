"""The signal's time budget (engine/strategy/watchdog.py): a call that never returns is stopped in the main
thread (its bot halting: tests/trading/test_signal_faults.py). The budget is measured on an
injected clock that the signal itself moves past it, so no test waits for the budget in real time."""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence
from typing import Any

import pytest

from engine.strategy.watchdog import CALL, SignalTimeout, watching


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def hangs_after(clock: FakeClock, seconds: float) -> Any:
    """A signal that takes `seconds` of the fake clock, then blocks for ever (on a lock no one releases, which a
    signal handler can interrupt, as it can a busy loop between two bytecodes)."""

    def signal_function(prices: Sequence[float], params: Mapping[str, Any]) -> bool:
        clock.now += seconds
        threading.Event().wait()
        return True

    return signal_function


def test_a_call_past_its_budget_is_stopped_inside_it() -> None:
    clock = FakeClock()
    with watching(2.0, clock=clock, period=0.005), pytest.raises(SignalTimeout, match="past its 2 s budget"):
        CALL.since = CALL.clock()
        try:
            hangs_after(clock, 2.5)((), {})
        finally:
            CALL.since = None
    assert CALL.since is None and CALL.budget == float("inf")


def test_nothing_is_raised_between_calls_or_within_the_budget() -> None:
    clock = FakeClock()
    answered = threading.Event()
    with watching(2.0, clock=clock, period=0.005):
        CALL.since = clock()
        clock.now += 1.5  # within the budget
        answered.wait(0.05)  # the watchdog looks ten times: nothing to stop
        CALL.since = None
        clock.now += 10.0  # no call in progress: a slow engine is not the signal's fault
        answered.wait(0.05)


def test_outside_the_main_thread_the_block_runs_unwatched() -> None:
    ran: list[float] = []

    def worker() -> None:
        with watching(0.001):
            ran.append(CALL.budget)

    thread = threading.Thread(target=worker)
    thread.start()
    thread.join()
    assert ran == [float("inf")]
