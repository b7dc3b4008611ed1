"""A client-side token bucket that keeps the account under Alpaca's 200 trading requests per minute.

It never sleeps: when the bucket is empty the request is refused as `rate_limited`, which the engine counts
as a broker failure (entries stop; exits retry next tick). The broker's own `X-RateLimit-Remaining` and
`X-RateLimit-Reset` headers tighten it further when the server says it has less room than we think.
"""

from __future__ import annotations

import threading
from datetime import datetime

from engine.core.clock import Clock


class TokenBucket:
    def __init__(self, per_minute: int, clock: Clock):
        self.capacity = float(per_minute)
        self.rate = per_minute / 60.0
        self._clock = clock
        self._tokens = self.capacity
        self._updated = clock.now()
        self._server_empty_until: datetime | None = None
        self._lock = threading.Lock()

    def _refill(self, now: datetime) -> None:
        elapsed = max(0.0, (now - self._updated).total_seconds())
        self._tokens = min(self.capacity, self._tokens + elapsed * self.rate)
        self._updated = now

    def try_acquire(self) -> bool:
        """Take one token if there is one (and the server did not say it is out)."""
        with self._lock:
            now = self._clock.now()
            if self._server_empty_until is not None and now < self._server_empty_until:
                return False
            self._refill(now)
            if self._tokens < 1:
                return False
            self._tokens -= 1
            return True

    def observe(self, remaining: int | None, reset_at: datetime | None) -> None:
        """Apply the server's view from the X-RateLimit-* headers."""
        with self._lock:
            self._refill(self._clock.now())
            if remaining is not None:
                self._tokens = min(self._tokens, float(remaining))
                self._server_empty_until = reset_at if remaining <= 0 else None
