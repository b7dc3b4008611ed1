"""Named points where a test may kill the process, as a crash would: the crash tests' only hook into the engine.

Inert unless the environment variable TRADING_HYDRA_FAILPOINT names a point (`before_post`, or `before_post:3`
for its third hit). Then, at that point, the process sends itself SIGKILL: no `finally`, no flush, no atexit,
exactly as `kill -9` or a power cut would leave things. tests/crash/ drives it; nothing else sets it.

A point is named for what has just happened where it sits (snake case, the step's past):

| point | where | what a kill there leaves |
|---|---|---|
| `state_committed` | store.py, every transaction's commit | committed, its events not yet flushed to the log |
| `tick_committed` | engine.py, after the tick's transaction | states, intents, asked-for cancels committed; nothing sent |
| `intent_committed` | orders.py, a send's start (intents only) | the intents on the log and committed; none sent |
| `before_post` | orders.py, each order | its event flushed; the POST not made |
| `after_post` | orders.py, each order | the broker has it; its answer not recorded |
| `order_updated` | orders.py, inside a sync's transaction | an order's new fill written, its position not (rolled back) |
| `order_committed` | orders.py, after a broker answer's commit | the answer committed; the simulated exchange's tick save not |
| `after_cancel` | orders.py, each cancel | the broker took the cancel; nothing of it recorded |
| `halt_recorded` | exitbot.py, every halt | its row written, its event not logged (an operator's: committed) |
| `resume_logged` | runner.py, the operator's resume | the `resume` event on disk, the halts' end not committed |
| `basis_saved` | basis.py, the daily basis saved | the day's `last_equity` committed, the tick undecided |
| `log_mid_line` | journal.py, every write to the log | half of the last line written (a torn write) |
| `data_before_rename` | data/files.py, every data file | the new file whole beside the old, not renamed in place |
"""

from __future__ import annotations

import os
import signal
from collections.abc import Callable

_ENV = "TRADING_HYDRA_FAILPOINT"
_hits: dict[str, int] = {}


def _armed() -> tuple[str, int] | None:
    value = os.environ.get(_ENV)
    if not value:
        return None
    name, _, nth = value.partition(":")
    return name, int(nth) if nth.isdigit() else 1


_ARMED = _armed()


def _due(name: str) -> bool:
    """Whether this hit of `name` is the one the environment arms (each hit counted)."""
    if _ARMED is None or _ARMED[0] != name:
        return False
    _hits[name] = _hits.get(name, 0) + 1
    return _hits[name] == _ARMED[1]


def reach(name: str) -> None:
    """Die here if the environment asks for it (its Nth hit); otherwise nothing."""
    if _due(name):
        os.kill(os.getpid(), signal.SIGKILL)


def reach_midway(name: str, part: Callable[[], object]) -> None:
    """As `reach`, with `part()` run just before the kill, and only then: what a kill in the middle of a step
    leaves (half a line written), made on purpose."""
    if _due(name):
        part()
        os.kill(os.getpid(), signal.SIGKILL)
