"""Named points where a test may kill the process, as a crash would: the crash tests' only hook into the engine.

Inert unless the environment variable TRADING_HYDRA_FAILPOINT names a point (`before_post`, or `before_post:3`
for its third hit). Then, at that point, the process sends itself SIGKILL: no `finally`, no flush, no atexit,
exactly as `kill -9` or a power cut would leave things. tests/crash/ drives it; nothing else sets it.
"""

from __future__ import annotations

import os
import signal

_ENV = "TRADING_HYDRA_FAILPOINT"
_hits: dict[str, int] = {}


def _armed() -> tuple[str, int] | None:
    value = os.environ.get(_ENV)
    if not value:
        return None
    name, _, nth = value.partition(":")
    return name, int(nth) if nth.isdigit() else 1


_ARMED = _armed()


def reach(name: str) -> None:
    """Die here if the environment asks for it (its Nth hit); otherwise nothing."""
    if _ARMED is None or _ARMED[0] != name:
        return
    _hits[name] = _hits.get(name, 0) + 1
    if _hits[name] == _ARMED[1]:
        os.kill(os.getpid(), signal.SIGKILL)
