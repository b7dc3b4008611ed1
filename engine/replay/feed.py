"""The replay's price source: the simulated exchange asks it what the market looks like, and it answers from the
present frame of a `DataSet` (docs/data.md), never from a later one.

A symbol with quotes is priced by its quotes (mid, bid and ask as recorded, each quote with its own time); a
quote a recording kept in `unusable/` (a side at 0, crossed) is the symbol's quote while it is the latest, as the
run read it, but never its price (a position is valued, an option priced, at the last usable quote's mid); a
symbol with bars only, by its latest bar's close, with the simulator's spread around it. An option contract with
no data of its own is priced by the exchange from its underlying (the simulator's chain model).

How old a price from a bar is: a bar says nothing about the quotes between trades, and a thin symbol has minutes
without a bar while its quotes stay live. So a price from a bar counts as current while the symbol's last bar is
at most `max_bar_gap` old (five bars by default); past that it keeps the time its bar became known, and the
engine sees it stale (`data_stale_halt`), as it would see a feed that stopped. For a stock (or an option) the
age counts only the time its market has been open: at 09:30:00 the first bar of the session is not known yet
(it is at 09:31), and the last close is as current as a quote at the open would be.

Every tick the exchange quotes every symbol a bot trades, so those answers read the frame's columns
(`FrameRows.value`) in whole microseconds: no record is built and no datetime is made for a price that is current.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta, timezone

from engine.brokers.sim import options
from engine.brokers.sim.exchange import SPREAD, SimReject
from engine.brokers.sim.prices import spread_many, spread_sides
from engine.brokers.symbols import asset_class_of, parse_occ
from engine.core.calendar import MarketCalendar
from engine.data.dataset import Frame, FrameRows
from engine.data.files import iso
from engine.data.records import Bar, Quote

_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
_UNKNOWN = -1  # a session open not looked up yet this frame (None: the market is closed)


def _us(delta: timedelta) -> int:
    return delta // timedelta(microseconds=1)


class FramePrices:
    """A `PriceSource` (engine/brokers/sim/prices.py) stepped through frames: `advance(frame)` before each tick.
    A step is a frame, so an order fills at most once a frame (the simulator's partial-fill rule)."""

    def __init__(self, bar_interval: timedelta, max_bar_gap: timedelta | None = None, calendar: MarketCalendar | None = None):
        self.bar_interval = bar_interval
        self.calendar = calendar
        self.max_bar_gap = max_bar_gap if max_bar_gap is not None else 5 * bar_interval
        self._interval_us = _us(bar_interval)
        self._gap_us = _us(self.max_bar_gap)
        self.index = -1
        self._at: datetime | None = None
        self._at_us = 0
        self._epoch: datetime | None = None
        self._frame: Frame | None = None
        self._bars: FrameRows[Bar] = FrameRows({})
        self._quotes: FrameRows[Quote] = FrameRows({})
        self._unusable: FrameRows[Quote] = FrameRows({})
        self.missing: tuple[str, ...] = ()  # the symbols the recorded run got no quote for at this frame's tick
        self._new: tuple[frozenset[str], frozenset[str]] | None = None  # this frame's new bars and quotes, when asked
        self._open_us: int | None = _UNKNOWN  # the open of the session at this frame, µs; None when closed
        self._sides: dict[str, tuple[float, float] | None] = {}  # this frame's answers, by symbol

    def advance(self, frame: Frame) -> None:
        if self._at is not None and frame.at <= self._at:
            raise ValueError(f"frames must move forward: {iso(frame.at)} after {iso(self._at)}")
        self.index += 1
        self._at = frame.at
        self._at_us = _us(frame.at - _EPOCH)
        if self._epoch is None:
            self._epoch = frame.at
        self._frame = frame
        self._bars = frame.bars  # the frame's own mappings, never changed here
        self._quotes = frame.quotes
        self._unusable = frame.unusable
        self.missing = frame.missing
        self._new = None
        self._open_us = _UNKNOWN
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

    def _new_rows(self) -> tuple[frozenset[str], frozenset[str]]:
        if self._new is None:
            frame = self._frame
            self._new = (frozenset(frame.new_bars), frozenset(frame.new_quotes)) if frame else (frozenset(), frozenset())
        return self._new

    def new_row(self, symbol: str) -> Bar | Quote | None:
        """The symbol's row stamped at this frame (its quote when it has quotes), or None: a fill model trades
        only on a price that came after the order."""
        new_bars, new_quotes = self._new_rows()
        if symbol in self._quotes:
            return self._quotes[symbol] if symbol in new_quotes else None
        return self._bars[symbol] if symbol in new_bars else None

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
        quotes = self._quotes
        if symbol in quotes:
            return (quotes.value(symbol, "bid") + quotes.value(symbol, "ask")) / 2
        if symbol in self._bars:
            return self._bars.value(symbol, "close")
        raise self._missing(symbol)

    def quote_sides(self, symbol: str, at: datetime) -> tuple[float, float] | None:
        if symbol in self._sides:
            return self._sides[symbol]
        sides: tuple[float, float] | None = None
        quotes = self._quotes
        if self._unusable_now(symbol):
            sides = (self._unusable.value(symbol, "bid"), self._unusable.value(symbol, "ask"))
        elif symbol in quotes:
            sides = (quotes.value(symbol, "bid"), quotes.value(symbol, "ask"))
        elif symbol in self._bars:
            sides = _spread(self._bars.value(symbol, "close"), asset_class_of(symbol))
        self._sides[symbol] = sides
        return sides

    def _unusable_now(self, symbol: str) -> bool:
        """Whether the symbol's latest quote is an unusable one (a recording's `unusable/`), later than its last
        usable quote."""
        unusable = self._unusable
        if symbol not in unusable:
            return False
        return symbol not in self._quotes or unusable.micros(symbol) > self._quotes.micros(symbol)

    def price_time(self, symbol: str, at: datetime) -> datetime:
        if symbol in self._quotes:
            return self._quotes[symbol].timestamp
        if symbol not in self._bars:
            occ = parse_occ(symbol)
            if occ is not None and occ[0] != symbol:  # priced from its underlying, as of the underlying's price
                return self.price_time(occ[0], at)
            raise self._missing(symbol)
        return self._bar_time(self._bars.micros(symbol), "/" not in symbol)

    def _bar_time(self, stamp_us: int, stock: bool) -> datetime:
        """When the price of a bar stamped `stamp_us` was observed: now while the bar is at most `max_bar_gap` old
        (a stock's, or an option's, counting its market's open time only), else the instant it became known."""
        known = stamp_us + self._interval_us
        if stock and self.calendar is not None:  # its market's hours: the age counts from the open
            opened = self._session_open()
            if opened is not None and opened > known:
                known = opened
        if self._at_us - known <= self._gap_us:
            return self.at
        return _EPOCH + timedelta(microseconds=known)

    def _session_open(self) -> int | None:
        """The open (µs) of the session at this frame, None while the market is closed: looked up once a frame."""
        if self._open_us == _UNKNOWN:
            assert self.calendar is not None
            session = self.calendar.session_at(self.at)
            self._open_us = _us(session.open - _EPOCH) if session is not None else None
        return self._open_us

    def _fresh_since(self, stock: bool) -> int:
        """The oldest bar stamp (µs) whose price `_bar_time` counts as current at this frame: every bar from it on
        is, none before it is, except a stock's while its session opened at most `max_bar_gap` ago, when all are."""
        if stock and self.calendar is not None:
            opened = self._session_open()
            if opened is not None and self._at_us - opened <= self._gap_us:
                return -(2**63)
        return self._at_us - self._gap_us - self._interval_us

    def quotes(self, symbols: Sequence[str], at: datetime) -> tuple[list[float], list[float], list[datetime]]:
        quote_refs, bar_refs = self._quotes.refs, self._bars.refs
        now = self.at
        since: dict[bool, int] = {}
        bids: list[float] = []
        asks: list[float] = []
        times: list[datetime] = []
        unusable = self._unusable
        for symbol in symbols:
            if unusable and self._unusable_now(symbol):  # the run read this quote, not a price: replayed as read
                bids.append(unusable.value(symbol, "bid"))
                asks.append(unusable.value(symbol, "ask"))
                times.append(unusable[symbol].timestamp)
                continue
            ref = quote_refs.get(symbol)
            if ref is not None:
                block, i = ref
                bids.append(block.columns["bid"][i])
                asks.append(block.columns["ask"][i])
                times.append(self._quotes[symbol].timestamp)
                continue
            ref = bar_refs.get(symbol)
            if ref is None:
                raise self._missing(symbol)
            block, i = ref
            stock = "/" not in symbol
            sides = block.derived.get("sides")
            if sides is None:  # every bar of the block at once: its quotes are read bar after bar
                closes = block.columns["close"]
                sides = block.derived["sides"] = spread_many(closes, [SPREAD["us_equity" if stock else "crypto"]] * len(closes))
            bids.append(sides[0][i])
            asks.append(sides[1][i])
            stamp = block.stamps[i]
            fresh = since.get(stock)
            if fresh is None:
                fresh = since[stock] = self._fresh_since(stock)
            times.append(now if stamp >= fresh else self._bar_time(stamp, stock))
        return bids, asks, times

    def step_of(self, at: datetime) -> int:
        return self.index

    def step_time(self, step: int) -> datetime:
        return self.at


def _spread(mid: float, asset_class: str) -> tuple[float, float]:
    """The simulator's quote around a price: its spread for the asset class, options in cents."""
    if asset_class == "us_option":
        return options.cent_quote(mid, SPREAD["us_option"])
    return spread_sides(mid, asset_class)
