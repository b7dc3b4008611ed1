"""A clock two processes agree on without talking: simulated time that runs `speed` times faster than real time
from a shared real instant. The crash tests give the same one to the emulator (in the test process) and to
each engine process they start and kill, so quotes are fresh for the engine and a session passes in seconds."""

from __future__ import annotations

import time
from datetime import datetime, timedelta


class ScaledClock:
    def __init__(self, start: datetime, anchor: float, speed: float):
        if start.tzinfo is None:
            raise ValueError("ScaledClock needs a timezone-aware start")
        self.start, self.anchor, self.speed = start, anchor, speed

    def now(self) -> datetime:
        return self.start + timedelta(seconds=(time.time() - self.anchor) * self.speed)
