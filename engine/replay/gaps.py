"""The replay's ticks in a hole of the data: where no file has a row, a live run still ticks.

A data set's frames are its rows' instants, so a hole every file shares (the feed stopped for half an hour while
the market was open) was jumped in one step: the bots' prices went from current to current, and the five-bar
staleness rule (engine/replay/feed.py) never saw the hole a live run would have halted on (`data_stale_halt`),
while the same data beside one unrelated symbol's file did. `with_gap_ticks` adds a frame with no new row at each
instant a live run would have ticked in such a hole: one tick spacing after the other, while a market a bot trades
is open (crypto: always; stocks and options: inside an exchange session, from one spacing after its open, where
the first bar of the session becomes known, to its close). A frame keeps the rows the frame before it knew, so
prices age as a live feed's would.

Data without a hole ticks exactly as before: consecutive frames one spacing apart, and between sessions no market
a bot trades is open. A recording (`ticks/`) is not given these: its replay ticks where its run ticked.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from datetime import datetime, timedelta

from engine.brokers.symbols import asset_class_of
from engine.core.calendar import MarketCalendar
from engine.data.dataset import Frame


def markets_traded(symbols: Iterable[str]) -> tuple[bool, bool]:
    """(whether a coin is traded, whether a stock or an option is) among the enabled bots' `symbols`."""
    classes = {asset_class_of(symbol) for symbol in symbols}
    return "crypto" in classes, bool(classes - {"crypto"})


def _session_instants(after: datetime, before: datetime, spacing: timedelta, calendar: MarketCalendar) -> Iterator[datetime]:
    """The instants `after + k * spacing` (k >= 1) before `before` that are at least one spacing into an exchange
    session and before its close: where a live run ticks and the session's first bar is known."""
    at = after + spacing
    while at < before:
        session = calendar.session_at(at)
        if session is not None and at - spacing >= session.open:
            yield at
            at += spacing
            continue
        opens = calendar.next_open(at) if session is None else session.open
        first = opens + spacing  # the first instant of that session a tick is added at
        if first >= before:
            return
        if first > at:
            steps = -((at - first) // spacing)  # the grid's first instant at or after `first`
            at += steps * spacing
        else:  # inside the session's first spacing
            at += spacing


def with_gap_ticks(
    frames: Iterator[Frame], spacing: timedelta, *, crypto: bool, stocks: bool, calendar: MarketCalendar
) -> GapTicks:
    """`frames`, with a frame of no new row at each instant a live run would have ticked between two of them (see
    the module's docstring). Counted in `added` of the returned iterator."""
    return GapTicks(frames, spacing, crypto=crypto, stocks=stocks, calendar=calendar)


class GapTicks(Iterator[Frame]):
    """`with_gap_ticks`'s iterator: `added` frames added in holes, the first at `first_added`."""

    def __init__(self, frames: Iterator[Frame], spacing: timedelta, *, crypto: bool, stocks: bool,
                 calendar: MarketCalendar):  # fmt: skip
        self._frames = frames
        self._spacing = spacing
        self._crypto = crypto
        self._stocks = stocks
        self._calendar = calendar
        self._last: Frame | None = None
        self._due: datetime | None = None  # the instant the next tick is due at, one spacing after the last frame
        self._pending: Frame | None = None
        self._filler: Iterator[datetime] | None = None
        self.added = 0  # frames added in holes
        self.first_added: datetime | None = None

    def __next__(self) -> Frame:
        if self._filler is not None:
            at = next(self._filler, None)
            if at is not None:
                last = self._last
                assert last is not None
                self.added += 1
                if self.first_added is None:
                    self.first_added = at
                return Frame(at, last.bars, last.quotes, (), (), last.unusable)
            self._filler = None
            frame = self._pending
            assert frame is not None
            self._pending = None
            self._last = frame
            return frame
        frame = next(self._frames)
        at = frame.at
        if self._due is not None and at > self._due and (self._crypto or self._stocks):
            last = self._last
            assert last is not None
            self._filler = self._instants(last.at, at)
            self._pending = frame
            self._due = at + self._spacing
            return self.__next__()
        self._last = frame
        self._due = at + self._spacing  # a frame later than this leaves a hole (one addition a frame, not a subtraction)
        return frame

    def _instants(self, after: datetime, before: datetime) -> Iterator[datetime]:
        spacing = self._spacing
        if self._crypto:  # a coin trades around the clock: every instant of the hole
            at = after + spacing
            while at < before:
                yield at
                at += spacing
            return
        yield from _session_instants(after, before, spacing, self._calendar)
