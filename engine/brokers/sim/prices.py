"""Deterministic, seeded price paths for any symbol, on a fixed grid of steps.

A path is a random walk with drift regimes that change every half hour (up, flat, down, strongly up), so
that simple momentum signals fire, stops and targets are hit, and a day looks like a day. The same seed,
symbol and epoch always give the same prices, whatever order symbols are asked for in.
"""

from __future__ import annotations

import math
import random
from array import array
from datetime import datetime, timedelta

BASE_PRICES = {"AAPL": 190.0, "TSLA": 250.0, "SPY": 500.0, "QQQ": 430.0, "MSFT": 420.0, "BTC/USD": 60_000.0, "ETH/USD": 3_000.0}
REGIME_STEPS = 360  # half an hour of 5-second steps
DRIFTS = (-0.00004, 0.0, 0.00004, 0.00007)  # per step
SIGMA = 0.0003  # per step


class PricePaths:
    def __init__(self, seed: int, epoch: datetime, step_seconds: float = 5.0):
        if epoch.tzinfo is None:
            raise ValueError("epoch must be timezone-aware")
        self.seed = seed
        self.epoch = epoch
        self.step_seconds = step_seconds
        self._paths: dict[str, array] = {}
        self._rngs: dict[str, random.Random] = {}
        self._drift: dict[str, float] = {}

    def step_of(self, at: datetime) -> int:
        return max(0, int((at - self.epoch).total_seconds() // self.step_seconds))

    def step_time(self, step: int) -> datetime:
        return self.epoch + timedelta(seconds=step * self.step_seconds)

    def base_price(self, symbol: str) -> float:
        if symbol in BASE_PRICES:
            return BASE_PRICES[symbol]
        return round(random.Random(f"{self.seed}:base:{symbol}").uniform(20, 400), 2)

    def _extend(self, symbol: str, upto: int) -> array:
        path = self._paths.get(symbol)
        if path is None:
            path = array("d", [self.base_price(symbol)])
            self._paths[symbol] = path
            self._rngs[symbol] = random.Random(f"{self.seed}:path:{symbol}")
        rng = self._rngs[symbol]
        sigma = SIGMA * (1.5 if "/" in symbol else 1.0)
        while len(path) <= upto:
            step = len(path)
            if step % REGIME_STEPS == 1 or symbol not in self._drift:
                self._drift[symbol] = rng.choice(DRIFTS)
            shock = rng.gauss(self._drift[symbol], sigma)
            path.append(path[-1] * math.exp(shock))
        return path

    def price(self, symbol: str, at: datetime) -> float:
        """The last traded price at `at` (the price of the step `at` falls in)."""
        step = self.step_of(at)
        return self._extend(symbol, step)[step]

    def history(self, symbol: str, at: datetime, steps: int) -> list[float]:
        """The last `steps` step prices up to `at`, oldest first."""
        end = self.step_of(at)
        path = self._extend(symbol, end)
        return list(path[max(0, end - steps + 1) : end + 1])
