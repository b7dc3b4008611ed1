"""Where the simulated exchange gets its prices: deterministic, seeded price paths for any symbol, on a fixed grid
of steps, or any other `PriceSource`.

A path is a random walk with drift regimes that change every half hour (up, flat, down, strongly up), so
that simple momentum signals fire, stops and targets are hit, and a day looks like a day. The same seed,
symbol and epoch always give the same prices, whatever order symbols are asked for in.

A coin's path steps around the clock; a stock's steps only while its market is open (the exchange calendar's
sessions), and holds its last price from a close to the next open. Stepped through the night and the weekend as
well, a stock walked some 46,000 steps from a Friday's close to Monday's open and came back at two or three
times its price (QQQ at 1,146 from 430).

The exchange asks its prices through `PriceSource` only, so that the same order handling and Alpaca rules can
run on synthetic paths (the simulator) or on recorded market data (the replay, engine/replay/feed.py).
"""

from __future__ import annotations

import math
import random
import zlib
from array import array
from collections.abc import Iterable, Sequence
from datetime import date, datetime, timedelta
from typing import Protocol

import numpy as np

from engine.brokers.sim.rounding import round_many, round_to
from engine.core.calendar import NEW_YORK, MarketCalendar, market_calendar

SPREAD = {"us_equity": 0.0002, "crypto": 0.0005, "us_option": 0.002}  # full spread, as a fraction of the mid
BASE_PRICES = {"AAPL": 190.0, "TSLA": 250.0, "SPY": 500.0, "QQQ": 430.0, "MSFT": 420.0, "BTC/USD": 60_000.0, "ETH/USD": 3_000.0}
REGIME_STEPS = 360  # half an hour of 5-second steps
DRIFTS = (-0.00004, 0.0, 0.00004, 0.00007)  # per step
SIGMA = 0.0003  # per step
AHEAD_STEPS = 60  # generated beyond the step asked for, five minutes of 5-second steps
# Past this distance from its base price (in log terms, about +28 % or -22 %) a regime's drift points back towards
# it. The drifts' mean is upward, about 8 % a session: without a pull back a simulation continued day after day
# took AAPL to 15,800 and BTC/USD to 3e16 in 90 days (past a trillion, an answer the engine reads as junk). A
# first session stays inside the band, so its prices are the same as without it.
BAND = 0.25


_TWO_PI = 2.0 * math.pi


def _gauss_inlines() -> bool:
    """Whether `PricePaths._extend`'s copy of `random.Random.gauss` (Box-Muller, the second value kept in
    `gauss_next`) draws what this Python's own does: else `_extend` calls it."""
    ours, theirs = random.Random("gauss check"), random.Random("gauss check")
    if not hasattr(ours, "gauss_next"):
        return False
    drawn = []
    for _ in range(6):
        spare = ours.gauss_next
        if spare is None:
            x2pi = ours.random() * _TWO_PI
            g2rad = math.sqrt(-2.0 * math.log(1.0 - ours.random()))
            z, spare = math.cos(x2pi) * g2rad, math.sin(x2pi) * g2rad
        else:
            z, spare = spare, None
        ours.gauss_next = spare
        drawn.append(0.25 + z * 0.5)
    return drawn == [theirs.gauss(0.25, 0.5) for _ in range(6)]


_INLINE_GAUSS = _gauss_inlines()


class PriceSource(Protocol):
    """What the simulated exchange asks about prices. A step is the unit of matching: an order fills at most once
    a step. An answer is for the instant asked: a replay knows its present instant and the latest session close
    it stepped over (where the exchange values the account), and refuses an earlier one it does not know."""

    @property
    def epoch(self) -> datetime:
        """The first instant the source prices (the simulator saves it with its account)."""
        ...

    def price(self, symbol: str, at: datetime) -> float:
        """The last price of `symbol` at `at`: a mid, or a bar's close. An option's is the underlying's here."""
        ...

    def quote_sides(self, symbol: str, at: datetime) -> tuple[float, float] | None:
        """The bid and ask the source itself has for `symbol`, or None: the exchange then quotes its own spread
        around `price` (or, for an option, prices it from its underlying)."""
        ...

    def price_time(self, symbol: str, at: datetime) -> datetime:
        """When the price of `symbol` given at `at` was observed: the quote's timestamp."""
        ...

    def quotes(self, symbols: Sequence[str], at: datetime) -> tuple[list[float], list[float], list[datetime]]:
        """The bids, asks and times of `symbols`, stocks and coins only (an option is the exchange's to price):
        `quote_sides` when the source has them, else `spread_sides` around `price`, at `price_time`. The same
        answer as asking one symbol at a time, in one call: a snapshot quotes every symbol every tick."""
        ...

    def step_of(self, at: datetime) -> int: ...

    def step_time(self, step: int) -> datetime: ...


class PricePaths:
    """The simulator's `PriceSource`: every symbol's synthetic path, a price every `step_seconds`; a stock's
    only in the sessions of `calendar` (XNYS by default), a coin's at every step."""

    def __init__(self, seed: int, epoch: datetime, step_seconds: float = 5.0, calendar: MarketCalendar | None = None):
        if epoch.tzinfo is None:
            raise ValueError("epoch must be timezone-aware")
        self.seed = seed
        self.epoch = epoch
        self.step_seconds = step_seconds
        self.calendar = calendar if calendar is not None else market_calendar()
        self._paths: dict[str, array] = {}
        self._rngs: dict[str, random.Random] = {}
        self._drift: dict[str, float] = {}
        self._last: tuple[datetime, int, datetime] | None = None  # (at, its step, the step's time): one tick asks many times
        self._last_session: tuple[datetime, int] | None = None  # (at, a stock path's step then)
        self._before: dict[date, float] = {}  # a session's day: the session seconds from the epoch to its open

    def step_of(self, at: datetime) -> int:
        return self._step(at)[1]

    def path_step(self, symbol: str, at: datetime) -> int:
        """The step of `symbol`'s own path at `at`: a coin's is `step_of`; a stock's counts the steps of the
        sessions since the epoch only, so it stays at a session's last step until the next session opens."""
        return self._step(at)[1] if "/" in symbol else self._session_step(at)

    def _session_step(self, at: datetime) -> int:
        last = self._last_session
        if last is None or last[0] != at:
            last = self._last_session = (at, int(self._session_seconds(at) // self.step_seconds))
        return last[1]

    def _session_seconds(self, at: datetime) -> float:
        """The seconds the market was open from the epoch to `at`."""
        calendar, epoch = self.calendar, self.epoch
        if at <= epoch:
            return 0.0
        session = calendar.session_at(at)
        end = at
        if session is None:
            end = calendar.previous_close(at)
            session = calendar.session(end.astimezone(NEW_YORK).date())
            if end <= epoch or session is None:
                return 0.0
        before = self._before.get(session.day)
        if before is None:
            first = epoch.astimezone(NEW_YORK).date()
            before = sum(
                max(0.0, (s.close - max(s.open, epoch)).total_seconds())
                for s in calendar.sessions(first, session.day - timedelta(days=1))
            )
            self._before[session.day] = before
        return before + max(0.0, (end - max(session.open, epoch)).total_seconds())

    def step_time(self, step: int) -> datetime:
        return self.epoch + timedelta(seconds=step * self.step_seconds)

    def step_time_at(self, at: datetime) -> datetime:
        """The start of the step `at` falls in: a quote's timestamp."""
        return self._step(at)[2]

    def _step(self, at: datetime) -> tuple[datetime, int, datetime]:
        last = self._last
        if last is None or last[0] != at:
            step = max(0, int((at - self.epoch).total_seconds() // self.step_seconds))
            last = self._last = (at, step, self.step_time(step))
        return last

    def quote_sides(self, symbol: str, at: datetime) -> tuple[float, float] | None:
        return None  # the exchange quotes its spread around the path

    def price_time(self, symbol: str, at: datetime) -> datetime:
        return self._step(at)[2]

    def quotes(self, symbols: Sequence[str], at: datetime) -> tuple[list[float], list[float], list[datetime]]:
        _, step, step_time = self._step(at)
        stock_step = self._session_step(at)
        paths = self._paths
        mids = []
        for symbol in symbols:
            at_step = step if "/" in symbol else stock_step
            path = paths.get(symbol)
            mids.append(path[at_step] if path is not None and at_step < len(path) else self._extend(symbol, at_step)[at_step])
        if len(mids) < _VECTOR_FROM:  # a few symbols (the simulated day's): no lists of spreads
            bids, asks = [], []
            for symbol, mid in zip(symbols, mids, strict=True):
                half = mid * SPREAD["crypto" if "/" in symbol else "us_equity"] / 2  # spread_sides, inlined
                bids.append(round_to(mid - half, 4))
                asks.append(round_to(mid + half, 4))
        else:
            bids, asks = spread_many(mids, [SPREAD["crypto" if "/" in symbol else "us_equity"] for symbol in symbols])
        return bids, asks, [step_time] * len(mids)

    def open(self, symbols: Iterable[str], at: datetime) -> None:
        """Each symbol's path drawn up to `at` (and its few steps ahead), if it is not yet."""
        for symbol in symbols:
            step = self.path_step(symbol, at)
            path = self._paths.get(symbol)
            if path is None or step >= len(path):
                self._extend(symbol, step)

    def base_price(self, symbol: str) -> float:
        if symbol in BASE_PRICES:
            return BASE_PRICES[symbol]
        return round(random.Random(f"{self.seed}:base:{symbol}").uniform(20, 400), 2)

    def _extend(self, symbol: str, upto: int) -> array:
        """The path up to `upto` at least. It is generated a few minutes ahead: a tick needs one step more, and a
        path is the same whatever its length (each symbol draws from its own generator, step after step)."""
        path = self._paths.get(symbol)
        if path is None:
            path = array("d", [self.base_price(symbol)])
            self._paths[symbol] = path
            self._rngs[symbol] = random.Random(f"{self.seed}:path:{symbol}")
        rng = self._rngs[symbol]
        choice, exp = rng.choice, math.exp
        sigma = SIGMA * (1.5 if "/" in symbol else 1.0)
        drift = self._drift.get(symbol)
        last = path[-1]
        # A new path is drawn only a few steps ahead, a different number for each symbol (0 to AHEAD_STEPS - 1);
        # after that AHEAD_STEPS at a time. So a thousand symbols started together neither draw a full stretch
        # each on the first tick nor run out all on one later tick (a 14 ms tick every five minutes at 1,000
        # symbols, measured): about a sixtieth of them extend on any tick.
        ahead = AHEAD_STEPS if len(path) > 1 else zlib.crc32(symbol.encode()) % AHEAD_STEPS
        steps = range(len(path), upto + ahead + 1)
        low, high = self._band(symbol)
        if not _INLINE_GAUSS:
            for step in steps:
                if step % REGIME_STEPS == 1 or drift is None:
                    drift = choice(DRIFTS)
                    if not low <= last <= high:  # outside the band: back towards the base price
                        drift = abs(drift) if last < low else -abs(drift)
                last *= exp(rng.gauss(drift, sigma))
                path.append(last)
        else:  # rng.gauss(drift, sigma), its body inlined (its call was half of what a step cost); checked at import
            uniform, log, sqrt, cos, sin = rng.random, math.log, math.sqrt, math.cos, math.sin
            spare = rng.gauss_next  # type: ignore[attr-defined]  # CPython keeps gauss's spare here
            for step in steps:
                if step % REGIME_STEPS == 1 or drift is None:
                    drift = choice(DRIFTS)
                    if not low <= last <= high:  # outside the band: back towards the base price
                        drift = abs(drift) if last < low else -abs(drift)
                if spare is None:
                    x2pi = uniform() * _TWO_PI
                    g2rad = sqrt(-2.0 * log(1.0 - uniform()))
                    z, spare = cos(x2pi) * g2rad, sin(x2pi) * g2rad
                else:
                    z, spare = spare, None
                last *= exp(drift + z * sigma)
                path.append(last)
            rng.gauss_next = spare  # type: ignore[attr-defined]
        if drift is not None:
            self._drift[symbol] = drift
        return path

    def _band(self, symbol: str) -> tuple[float, float]:
        """The prices between which `symbol`'s regimes drift as drawn (`BAND` around its base price)."""
        base = self.base_price(symbol)
        return base * math.exp(-BAND), base * math.exp(BAND)

    def price(self, symbol: str, at: datetime) -> float:
        """The last traded price at `at` (the price of the step `at` falls in)."""
        step = self.path_step(symbol, at)
        path = self._paths.get(symbol)
        if path is not None and step < len(path):
            return path[step]
        return self._extend(symbol, step)[step]

    def history(self, symbol: str, at: datetime, steps: int) -> list[float]:
        """The last `steps` step prices of `symbol`'s path up to `at`, oldest first."""
        end = self.path_step(symbol, at)
        path = self._extend(symbol, end)
        return list(path[max(0, end - steps + 1) : end + 1])


def spread_sides(mid: float, asset_class: str) -> tuple[float, float]:
    """The simulator's bid and ask around a stock's or a coin's price: its spread for the class, to 4 decimals (an
    option's is `options.cent_quote`, in cents)."""
    half = mid * SPREAD[asset_class] / 2
    return round_to(mid - half, 4), round_to(mid + half, 4)


_VECTOR_FROM = 32  # below this many prices, numpy's overhead costs more than it saves


def spread_many(mids: Sequence[float], spreads: Sequence[float]) -> tuple[list[float], list[float]]:
    """`spread_sides` of many prices, each with its spread fraction: the bids and the asks. Numpy's arithmetic is
    the same IEEE arithmetic as Python's, operation for operation, so a long list is done there bit for bit."""
    if len(mids) < _VECTOR_FROM:
        bids, asks = [], []
        for mid, spread in zip(mids, spreads, strict=True):
            half = mid * spread / 2
            bids.append(round_to(mid - half, 4))
            asks.append(round_to(mid + half, 4))
        return bids, asks
    prices = np.array(mids, dtype=np.float64)
    halves = prices * np.array(spreads, dtype=np.float64) / 2
    return round_many(prices - halves, 4), round_many(prices + halves, 4)
