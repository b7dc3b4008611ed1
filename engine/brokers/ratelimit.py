"""A client-side token bucket that keeps the account under one of Alpaca's rate limits: one bucket for the trading
API (200 requests per minute), one for the market-data API (200 per minute on the Basic plan): separate budgets
on Alpaca's side too (reference §7).

It never sleeps: when the bucket is empty the request is refused as `rate_limited`, which the engine counts
as a broker failure (entries stop; exits retry next tick). The broker's own `X-RateLimit-Remaining` and
`X-RateLimit-Reset` headers (and a 429's Retry-After) tighten it further when the server says it has less room
than we think; a request refused while the server said to wait is a hold (`take` says "held"), counted once by the
engine (the answer that started it), not once per request never sent.
"""

from __future__ import annotations

import threading
from datetime import datetime
from typing import Literal

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
        return self.take() is None

    def take(self) -> Literal["held", "empty"] | None:
        """Take one token: None when taken; "held" while the server said it is out (until its reset), "empty" when
        our own count is spent."""
        with self._lock:
            now = self._clock.now()
            if self._server_empty_until is not None and now < self._server_empty_until:
                return "held"
            self._refill(now)
            if self._tokens < 1:
                return "empty"
            self._tokens -= 1
            return None

    def held_until(self) -> datetime | None:
        """The end of the server's hold in force, if one is."""
        with self._lock:
            until = self._server_empty_until
            return until if until is not None and self._clock.now() < until else None

    def observe(self, remaining: int | None, reset_at: datetime | None) -> None:
        """Apply the server's view from the X-RateLimit-* headers."""
        with self._lock:
            self._refill(self._clock.now())
            if remaining is not None:
                self._tokens = min(self._tokens, float(remaining))
                self._server_empty_until = reset_at if remaining <= 0 else None
