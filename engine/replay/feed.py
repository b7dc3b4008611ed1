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

The exchange asks one price at an earlier instant: each position's at a session's close, at its first step after it
(`SimExchange._take_close`: the equity there is the next day's `last_equity`, the daily P&L's basis), and an
expired contract's underlying's. The frame current at the latest close is kept for that: the close is valued at
the last price at or before it, never at an after-hours bar's or the next open's, which the present frame holds.
An earlier instant than that kept frame is not known here: asked, the answer is an error, never today's price.

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
from engine.core.calendar import MarketCalendar, market_calendar
from engine.data.dataset import Frame, FrameRows
from engine.data.files import iso
from engine.data.records import Bar, Quote

_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
_UNKNOWN = -1  # a session open not looked up yet this frame (None: the market is closed)


def _us(delta: timedelta) -> int:
    return delta // timedelta(microseconds=1)


class FramePrices:
    """A `PriceSource` (engine/brokers/sim/prices.py) stepped through frames: `advance(frame)` before each tick.
    A step is a frame, so an order fills at most once a frame (the simulator's partial-fill rule). The market's
    sessions are `calendar`'s (XNYS by default, as the simulated exchange's)."""

    def __init__(self, bar_interval: timedelta, max_bar_gap: timedelta | None = None, calendar: MarketCalendar | None = None):
        self.bar_interval = bar_interval
        self.calendar = calendar if calendar is not None else market_calendar()
        self.max_bar_gap = max_bar_gap if max_bar_gap is not None else 5 * bar_interval
        self._interval_us = _us(bar_interval)
        self._gap_us = _us(self.max_bar_gap)
        self.index = -1
        # The step an order may fill once in (the simulator's partial-fill rule, `SimExchange._match`): a frame that
        # brings a new row. A recording's frames are its run's ticks, and a tick between two of the simulator's
        # 5-second quotes is no new step there: counted a step a frame, an order the run filled over two steps
        # filled its rest a tick early in the replay (ticks of 2.5 s), which then made other transitions.
        self._fill_step = -1
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
        self._close_us = 0  # the first session close at or after this frame, µs
        # The frame current at the latest session close stepped over, and the instant (µs) the next frame came.
        self._closing: tuple[Frame, int] | None = None

    def advance(self, frame: Frame) -> None:
        if self._at is not None and frame.at <= self._at:
            raise ValueError(f"frames must move forward: {iso(frame.at)} after {iso(self._at)}")
        self.index += 1
        if self._frame is None or frame.new_bars or frame.new_quotes:
            self._fill_step += 1
        at_us = _us(frame.at - _EPOCH)
        if self._frame is None or at_us > self._close_us:  # the first frame, or one after a session's close
            if self._frame is not None:
                self._closing = (self._frame, at_us)
            closed = self.calendar.previous_close(frame.at)
            self._close_us = _us((closed if closed == frame.at else self.calendar.next_close(frame.at)) - _EPOCH)
        self._at = frame.at
        self._at_us = at_us
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

    def _earlier(self, at: datetime) -> Frame | None:
        """The frame current at `at` when that is before this frame (the one kept at the latest session close),
        None when `at` is this frame's instant or later; an error when it is earlier than the kept frame: the replay
        does not know that instant's prices, and this frame's are not them."""
        if at >= self.at:
            return None
        kept = self._closing
        if kept is not None and kept[0].at <= at and _us(at - _EPOCH) < kept[1]:
            return kept[0]
        raise SimReject(404, 40410000, f"no price is kept for {iso(at)} (the replay is at {iso(self.at)}; it keeps the "
                                       "last prices before the latest session close)")

    def price(self, symbol: str, at: datetime) -> float:
        frame = self._earlier(at) if at != self._at else None
        quotes, bars = (self._quotes, self._bars) if frame is None else (frame.quotes, frame.bars)
        if symbol in quotes:
            return (quotes.value(symbol, "bid") + quotes.value(symbol, "ask")) / 2
        if symbol in bars:
            return bars.value(symbol, "close")
        raise self._missing(symbol)

    def quote_sides(self, symbol: str, at: datetime) -> tuple[float, float] | None:
        frame = self._earlier(at) if at != self._at else None
        if frame is not None:
            return _sides(symbol, frame.quotes, frame.bars, frame.unusable)
        if symbol not in self._sides:
            self._sides[symbol] = _sides(symbol, self._quotes, self._bars, self._unusable)
        return self._sides[symbol]

    def _unusable_now(self, symbol: str) -> bool:
        return _unusable_latest(symbol, self._quotes, self._unusable)

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
        if stock:  # its market's hours: the age counts from the open
            opened = self._session_open()
            if opened is not None and opened > known:
                known = opened
        if self._at_us - known <= self._gap_us:
            return self.at
        return _EPOCH + timedelta(microseconds=known)

    def _session_open(self) -> int | None:
        """The open (µs) of the session at this frame, None while the market is closed: looked up once a frame."""
        if self._open_us == _UNKNOWN:
            session = self.calendar.session_at(self.at)
            self._open_us = _us(session.open - _EPOCH) if session is not None else None
        return self._open_us

    def _fresh_since(self, stock: bool) -> int:
        """The oldest bar stamp (µs) whose price `_bar_time` counts as current at this frame: every bar from it on
        is, none before it is, except a stock's while its session opened at most `max_bar_gap` ago, when all are."""
        if stock:
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
        any_unusable = len(unusable) > 0  # asked once: a FrameRows' truth is a call of its own
        for symbol in symbols:
            if any_unusable and self._unusable_now(symbol):  # the run read this quote, not a price: replayed as read
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
        return self._fill_step

    def step_time(self, step: int) -> datetime:
        return self.at


def _sides(symbol: str, quotes: FrameRows[Quote], bars: FrameRows[Bar], unusable: FrameRows[Quote]) -> tuple[float, float] | None:
    """A symbol's bid and ask in a frame's rows: its latest quote (an unusable one as read), else the simulator's
    spread around its latest close; None when it has neither."""
    if _unusable_latest(symbol, quotes, unusable):
        return unusable.value(symbol, "bid"), unusable.value(symbol, "ask")
    if symbol in quotes:
        return quotes.value(symbol, "bid"), quotes.value(symbol, "ask")
    if symbol in bars:
        return _spread(bars.value(symbol, "close"), asset_class_of(symbol))
    return None


def _unusable_latest(symbol: str, quotes: FrameRows[Quote], unusable: FrameRows[Quote]) -> bool:
    """Whether the symbol's latest quote is an unusable one (a recording's `unusable/`), later than its last usable
    quote."""
    if symbol not in unusable:
        return False
    return symbol not in quotes or unusable.micros(symbol) > quotes.micros(symbol)


def _spread(mid: float, asset_class: str) -> tuple[float, float]:
    """The simulator's quote around a price: its spread for the asset class, options in cents."""
    if asset_class == "us_option":
        return options.cent_quote(mid, SPREAD["us_option"])
    return spread_sides(mid, asset_class)
