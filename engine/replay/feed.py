"""The replay's price source: the simulated exchange asks it what the market looks like, and it answers from the
present frame of a `DataSet` (docs/data.md), never from a later one.

A symbol with quotes is priced by its quotes (mid, bid and ask as recorded, each quote with its own time); a
symbol with bars only, by its latest bar's close, with the simulator's spread around it. An option contract with
no data of its own is priced by the exchange from its underlying (the simulator's chain model).

How old a price from a bar is: a bar says nothing about the quotes between trades, and a thin symbol has minutes
without a bar while its quotes stay live. So a price from a bar counts as current while the symbol's last bar is
at most `max_bar_gap` old (five bars by default); past that it keeps the time its bar became known, and the
engine sees it stale (`data_stale_halt`), as it would see a feed that stopped. For a stock (or an option) the
age counts only the time its market has been open: at 09:30:00 the first bar of the session is not known yet
(it is at 09:31), and the last close is as current as a quote at the open would be.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timedelta

from engine.brokers.sim import options
from engine.brokers.sim.exchange import SPREAD, SimReject
from engine.brokers.symbols import asset_class_of, parse_occ
from engine.core.calendar import MarketCalendar
from engine.data.dataset import Frame
from engine.data.files import iso
from engine.data.records import Bar, Quote


class FramePrices:
    """A `PriceSource` (engine/brokers/sim/prices.py) stepped through frames: `advance(frame)` before each tick.
    A step is a frame, so an order fills at most once a frame (the simulator's partial-fill rule)."""

    def __init__(self, bar_interval: timedelta, max_bar_gap: timedelta | None = None, calendar: MarketCalendar | None = None):
        self.bar_interval = bar_interval
        self.calendar = calendar
        self.max_bar_gap = max_bar_gap if max_bar_gap is not None else 5 * bar_interval
        self.index = -1
        self._at: datetime | None = None
        self._epoch: datetime | None = None
        self._bars: Mapping[str, Bar] = {}
        self._quotes: Mapping[str, Quote] = {}
        self._new_bars: frozenset[str] = frozenset()
        self._new_quotes: frozenset[str] = frozenset()
        self._sides: dict[str, tuple[float, float] | None] = {}  # this frame's answers, by symbol

    def advance(self, frame: Frame) -> None:
        if self._at is not None and frame.at <= self._at:
            raise ValueError(f"frames must move forward: {iso(frame.at)} after {iso(self._at)}")
        self.index += 1
        self._at = frame.at
        if self._epoch is None:
            self._epoch = frame.at
        self._bars = frame.bars  # the frame's own mappings, never changed here
        self._quotes = frame.quotes
        self._new_bars = frozenset(frame.new_bars)
        self._new_quotes = frozenset(frame.new_quotes)
        self._sides = {}

    # --- what the replay's own code asks ------------------------------------------------------------------

    @property
    def at(self) -> datetime:
        if self._at is None:
            raise RuntimeError("no frame yet: advance() first")
        return self._at

    def has(self, symbol: str) -> bool:
        """Whether the symbol has a price by now."""
        return symbol in self._quotes or symbol in self._bars

    def new_row(self, symbol: str) -> Bar | Quote | None:
        """The symbol's row stamped at this frame (its quote when it has quotes), or None: a fill model trades
        only on a price that came after the order."""
        if symbol in self._quotes:
            return self._quotes[symbol] if symbol in self._new_quotes else None
        return self._bars[symbol] if symbol in self._new_bars else None

    def bar(self, symbol: str) -> Bar | None:
        return None if symbol in self._quotes else self._bars.get(symbol)

    # --- PriceSource ----------------------------------------------------------------------------------------

    @property
    def epoch(self) -> datetime:
        if self._epoch is None:
            raise RuntimeError("no frame yet: advance() first")
        return self._epoch

    def _missing(self, symbol: str) -> SimReject:
        return SimReject(404, 40410000, f"no data for {symbol} by {iso(self.at)}")

    def price(self, symbol: str, at: datetime) -> float:
        quote = self._quotes.get(symbol)
        if quote is not None:
            return (quote.bid + quote.ask) / 2
        bar = self._bars.get(symbol)
        if bar is not None:
            return bar.close
        raise self._missing(symbol)

    def quote_sides(self, symbol: str, at: datetime) -> tuple[float, float] | None:
        if symbol in self._sides:
            return self._sides[symbol]
        sides: tuple[float, float] | None = None
        quote = self._quotes.get(symbol)
        if quote is not None:
            sides = (quote.bid, quote.ask)
        else:
            bar = self._bars.get(symbol)
            if bar is not None:
                sides = _spread(bar.close, asset_class_of(symbol))
        self._sides[symbol] = sides
        return sides

    def price_time(self, symbol: str, at: datetime) -> datetime:
        quote = self._quotes.get(symbol)
        if quote is not None:
            return quote.timestamp
        bar = self._bars.get(symbol)
        if bar is None:
            occ = parse_occ(symbol)
            if occ is not None and occ[0] != symbol:  # priced from its underlying, as of the underlying's price
                return self.price_time(occ[0], at)
            raise self._missing(symbol)
        known = bar.timestamp + self.bar_interval
        now = self.at
        if self.calendar is not None and "/" not in symbol:  # its market's hours: the age counts from the open
            session = self.calendar.session_at(now)
            if session is not None and session.open > known:
                known = session.open
        return now if now - known <= self.max_bar_gap else known

    def step_of(self, at: datetime) -> int:
        return self.index

    def step_time(self, step: int) -> datetime:
        return self.at


def _spread(mid: float, asset_class: str) -> tuple[float, float]:
    """The simulator's quote around a price: its spread for the asset class, options in cents."""
    if asset_class == "us_option":
        return options.cent_quote(mid, SPREAD["us_option"])
    half = mid * SPREAD[asset_class] / 2
    return round(mid - half, 4), round(mid + half, 4)
