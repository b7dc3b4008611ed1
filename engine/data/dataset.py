"""A data folder read whole and replayed as one clock: the replay steps from one timestamp to the next.

Opening reads and checks every file first, so a backtest either starts on data that is entirely valid or is told
every problem of every file at once; it never stops halfway through a year on a bad row. The rows stay in Arrow
tables (8 bytes a value). While they are replayed, a stretch of up to `_CHUNK` rows per file at a time becomes
Python lists, merged into frames by one sort of its instants; a row becomes a record (`Bar`, `Quote`) only when
someone reads it as one.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, TypeVar, cast

import numpy as np
import numpy.typing as npt
import pyarrow as pa  # type: ignore[import-untyped]  # pyarrow ships no type hints
import pyarrow.compute as pc  # type: ignore[import-untyped]

from engine.config.errors import Problem
from engine.data.errors import DataError
from engine.data.files import iso_micros, iter_bars, iter_quotes, micros, read_source, read_ticks, scan
from engine.data.records import COLUMNS, Bar, Kind, Quote, Row

_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
_CHUNK = 131072  # rows of all files together turned into Python lists at a time (about 25 MB of bars)
R = TypeVar("R", Bar, Quote)


def _micros(when: datetime) -> int:
    if when.utcoffset() is None:
        raise ValueError(f"{when!r} is naive: replay bounds are timezone-aware datetimes")
    delta = when - _EPOCH
    return (delta.days * 86400 + delta.seconds) * 1_000_000 + delta.microseconds


RowRef = tuple["RowBlock", int]  # a row: its block and its index there


class RowBlock:
    """A stretch of one symbol's rows as Python lists, so that reading a value is one list index (a numpy or Arrow
    scalar costs ten times that): `stamps` (the rows' own timestamps, µs since the epoch, not shifted) and
    `columns` (by name, `COLUMNS` without the timestamp). A record is built only for a row someone reads as one,
    once. `derived` is for a reader's columns computed from these (the replay's quote sides), kept as long as the
    block is."""

    __slots__ = ("_records", "columns", "derived", "kind", "stamps")

    def __init__(self, kind: Kind, table: Any):
        names = COLUMNS[kind]
        self.kind = kind
        self.stamps: list[int] = micros(table)
        self.columns: dict[str, list[float]] = {name: table.column(name).to_pylist() for name in names[1:]}
        self.derived: dict[str, Any] = {}
        self._records: dict[int, Row] = {}

    def record(self, i: int) -> Row:
        row = self._records.get(i)
        if row is None:
            at = _EPOCH + timedelta(microseconds=self.stamps[i])
            values = [column[i] for column in self.columns.values()]
            row = self._records[i] = Bar(at, *values) if self.kind == "bars" else Quote(at, *values)
        return row


class FrameRows(Mapping[str, R]):
    """Each symbol's latest row at one frame (a `Frame`'s `bars` or `quotes`): a read-only mapping of records, and
    the same rows' values read straight from their columns (`value`, `micros`, or `refs` for a loop over many
    symbols), which is what a price source reads every tick without making a record of each row."""

    __slots__ = ("_refs",)

    def __init__(self, refs: dict[str, RowRef]):
        self._refs = refs

    @property
    def refs(self) -> Mapping[str, RowRef]:
        """symbol -> (its block, the row's index there): the rows themselves, not to be changed."""
        return self._refs

    def __getitem__(self, symbol: str) -> R:
        block, i = self._refs[symbol]
        return cast(R, block.record(i))

    def __contains__(self, symbol: object) -> bool:
        return symbol in self._refs

    def __iter__(self) -> Iterator[str]:
        return iter(self._refs)

    def __len__(self) -> int:
        return len(self._refs)

    def __repr__(self) -> str:
        return f"FrameRows({dict(self.items())!r})"

    def value(self, symbol: str, column: str) -> float:
        """`self[symbol].<column>` without building the record; KeyError when the symbol has no row."""
        block, i = self._refs[symbol]
        return block.columns[column][i]

    def micros(self, symbol: str) -> int:
        """The row's own timestamp (as stored, not shifted), in microseconds since the epoch."""
        block, i = self._refs[symbol]
        return block.stamps[i]


_NONE: FrameRows[Quote] = FrameRows({})  # no unusable quote (shared: a frame's mappings are never changed)


@dataclass(frozen=True)
class Frame:
    """One step of the replay clock: the instant, and what the market looked like then.

    `bars` and `quotes` hold each symbol's latest row at or before `at` (a symbol appears once its first row has
    been seen, and keeps its last row until a newer one comes); `new_bars` and `new_quotes` name the symbols whose
    row is stamped exactly `at` (a fill model fills at the next quote or bar, not at a stale one). The mappings
    are this frame's own: keeping a frame keeps what it said. They are read-only `FrameRows`, whose records are
    built when read: a price source reads the values it needs from the columns instead (`FrameRows.value`).

    `unusable` holds each symbol's latest quote from a recording's `unusable/` (a side at 0, or crossed: what the
    run read, which is not a price); it is the symbol's quote now when it is later than the one in `quotes`. A
    symbol that received one at `at` is in `new_quotes` too. `missing` names the symbols a recording's run got no
    quote for at this instant, one of its ticks (`missing/`): the feed left them out, and so does the replay.
    """

    at: datetime
    bars: FrameRows[Bar]
    quotes: FrameRows[Quote]
    new_bars: tuple[str, ...]
    new_quotes: tuple[str, ...]
    unusable: FrameRows[Quote] = field(default_factory=lambda: FrameRows({}))
    missing: tuple[str, ...] = ()


class DataSet:
    """Every symbol's bars and quotes in one data folder (docs/data.md), checked and ready to replay."""

    def __init__(self, folder: Path, tables: Mapping[tuple[Kind, str], Any], ticks: Any = None):
        self.folder = folder
        self._tables = dict(tables)
        # A recording's `ticks/` (the instants its run ticked at, µs since the epoch), or None: `frames` steps there.
        self.ticks: npt.NDArray[np.int64] | None = (
            ticks.column("timestamp").cast(pa.int64()).to_numpy() if ticks is not None else None
        )
        self.bar_symbols: tuple[str, ...] = tuple(sorted(s for k, s in self._tables if k == "bars"))
        self.quote_symbols: tuple[str, ...] = tuple(sorted(s for k, s in self._tables if k == "quotes"))
        self.symbols: tuple[str, ...] = tuple(sorted(set(self.bar_symbols) | set(self.quote_symbols)))
        firsts = [t.column("timestamp")[0].as_py() for t in self._tables.values() if len(t)]
        lasts = [t.column("timestamp")[-1].as_py() for t in self._tables.values() if len(t)]
        self.start: datetime | None = min(firsts).astimezone(timezone.utc) if firsts else None
        self.end: datetime | None = max(lasts).astimezone(timezone.utc) if lasts else None

    @classmethod
    def open(cls, folder: Path | str) -> DataSet:
        """Read and check every file in `folder`; DataError with every problem of every file, or the data set."""
        folder = Path(folder)
        sources, problems = scan(folder)
        tables: dict[tuple[Kind, str], Any] = {}
        for source in sources:
            table, found = read_source(source)
            problems.extend(found)
            if table is not None:
                tables[source.kind, source.symbol] = table
        ticks, found = read_ticks(folder)
        problems.extend(found)
        for (kind, symbol), table in sorted(tables.items()):
            if kind == "unusable" and ("quotes", symbol) in tables:
                problems.extend(_same_instants(folder, symbol, tables["quotes", symbol], table))
        if problems:
            raise DataError(problems)
        if not tables:
            raise DataError([Problem(str(folder), 0, 0, "", "holds no symbol's bars or quotes (docs/data.md)")])
        return cls(folder, tables, ticks)

    def time_range(self) -> tuple[datetime, datetime] | None:
        """The first and last timestamp of any row, or None when every file is empty."""
        return (self.start, self.end) if self.start is not None and self.end is not None else None

    def rows(self, kind: Kind, symbol: str) -> int:
        """How many rows `symbol` has of `kind` (0 when it has none, or no file)."""
        table = self._tables.get((kind, symbol))
        return len(table) if table is not None else 0

    def table(self, kind: Kind, symbol: str) -> Any:
        """The typed Arrow table (timestamp[us, tz=UTC] and float64 columns); KeyError when there is no such file."""
        return self._tables[kind, symbol]

    def bars(self, symbol: str) -> list[Bar]:
        return list(iter_bars(self._tables["bars", symbol])) if ("bars", symbol) in self._tables else []

    def quotes(self, symbol: str) -> list[Quote]:
        return list(iter_quotes(self._tables["quotes", symbol])) if ("quotes", symbol) in self._tables else []

    def frames(self, start: datetime | None = None, end: datetime | None = None, *,
               bars_known_after: timedelta = timedelta(0)) -> Iterator[Frame]:
        """One `Frame` per distinct instant in [start, end] (both optional, both included), in time order.

        Rows before `start` are not stepped through, but the first frame already knows each symbol's latest row
        before it. `bars_known_after` moves each bar to the instant it became known: Alpaca stamps a 1-minute bar
        with its start, so replaying it at its own timestamp would let a strategy see the minute's close at the
        minute's open; pass `timedelta(minutes=1)` for such bars. Quotes are known at their own timestamp.

        A recording's data set (`ticks`) steps at its run's ticks in the window instead, and only there: a run whose
        ticks fell between its quotes' times (a 7 s loop over 5 s quotes) made its decisions then, on the rows known
        by then. Each such frame's `new_bars` and `new_quotes` are the symbols with a row since the tick before; the
        frames count the rows that no tick saw (`TickFrames.unseen`).
        """
        start_us = _micros(start) if start is not None else None
        end_us = _micros(end) if end is not None else None
        delay = bars_known_after // timedelta(microseconds=1)
        streams: list[_Stream] = []
        latest: dict[Kind, dict[str, RowRef]] = {"bars": {}, "quotes": {}, "unusable": {}, "missing": {}}
        for (kind, symbol), table in sorted(self._tables.items()):
            if not len(table):
                continue
            shift = delay if kind == "bars" else 0
            stamps = table.column("timestamp").cast(pa.int64())
            first = 0
            if start_us is not None:
                first = pc.sum(pc.less(stamps, start_us - shift)).as_py() or 0
                if first and kind != "missing":  # a quote missing once is not missing later: not carried over
                    latest[kind][symbol] = (RowBlock(kind, table.slice(first - 1, 1)), 0)
            if first < len(table):
                streams.append(_Stream(kind, symbol, table.slice(first), stamps.slice(first), shift))
        merged = _merge(streams, latest, end_us)
        if self.ticks is None:
            return merged
        ticks = self.ticks
        if start_us is not None:
            ticks = ticks[int(np.searchsorted(ticks, start_us, "left")):]
        whole = len(ticks)
        if end_us is not None:
            ticks = ticks[: int(np.searchsorted(ticks, end_us, "right"))]
        # Rows after the last tick were seen by none when it is the recording's last, not when the window cut the rest.
        known = Frame(_EPOCH, FrameRows(dict(latest["bars"])), FrameRows(dict(latest["quotes"])), (), (),
                      FrameRows(dict(latest["unusable"])))  # what the window's first tick knows before any row of it
        return TickFrames(merged, ticks.tolist(), known, trailing=len(ticks) == whole)


def _same_instants(folder: Path, symbol: str, quotes: Any, unusable: Any) -> list[Problem]:
    """A symbol's quote and unusable quote at one instant: which of the two the feed gave then cannot be told."""
    both = np.intersect1d(quotes.column("timestamp").cast(pa.int64()).to_numpy(),
                          unusable.column("timestamp").cast(pa.int64()).to_numpy())
    if not len(both):
        return []
    first = iso_micros(int(both[0]))
    return [Problem(str(folder / "unusable"), 0, 0, "", f"{symbol} has a quote in quotes/ and one in unusable/ at the same "
                    f"instant ({len(both)} instant{'s' if len(both) > 1 else ''}, the first {first}): keep one")]


class TickFrames(Iterator[Frame]):
    """The frames of a recording at its run's ticks: each tick sees each symbol's latest row at or before it.

    A recording holds the quotes its ticks read, one row a symbol a tick at most (a repeat is not written again), so
    a row followed by another of its symbol before the next tick, or after the last tick, was seen by no tick of
    this recording: data merged into its folder from elsewhere, or ticks lost. `unseen` counts them, and
    `first_unseen` is the first one's time, so the replay can say it is not the run's."""

    def __init__(self, frames: Iterator[Frame], ticks: list[int], first: Frame, *, trailing: bool = True):
        self._frames = frames
        self._trailing = trailing
        self._ticks = iter(ticks)
        self._known = first  # the rows known so far: the last frame taken
        self._pending = next(frames, None)
        self.unseen = 0
        self.first_unseen: datetime | None = None

    def __next__(self) -> Frame:
        for tick in self._ticks:
            new_bars: dict[str, None] = {}
            new_quotes: dict[str, None] = {}
            while self._pending is not None and _micros(self._pending.at) <= tick:
                frame = self._pending
                for symbols, new in ((frame.new_bars, new_bars), (frame.new_quotes, new_quotes)):
                    for symbol in symbols:
                        if symbol in new:  # its row before this one was seen by no tick
                            self._unseen(frame.at)
                        new[symbol] = None
                self._known = frame
                self._pending = next(self._frames, None)
            known = self._known
            if known.bars or known.quotes or known.unusable:  # a tick before any quote is not replayed: nothing to decide on
                missing = known.missing if _micros(known.at) == tick else ()  # a quote missing at this very tick
                return Frame(_EPOCH + timedelta(microseconds=tick), known.bars, known.quotes, tuple(new_bars), tuple(new_quotes),
                             known.unusable, missing)
        while self._pending is not None and self._trailing:  # rows after the recording's last tick: no tick saw them
            for _ in (*self._pending.new_bars, *self._pending.new_quotes):
                self._unseen(self._pending.at)
            self._pending = next(self._frames, None)
        raise StopIteration

    def _unseen(self, at: datetime) -> None:
        self.unseen += 1
        if self.first_unseen is None:
            self.first_unseen = at


@dataclass
class _Stream:
    """One file's rows from the window's start: the Arrow table and its timestamps (µs), `shift` added to each."""

    kind: Kind
    symbol: str
    table: Any
    stamps: Any
    shift: int

    def known(self, first: int, count: int) -> npt.NDArray[np.int64]:
        """When rows first..first+count-1 become known, µs since the epoch."""
        return cast(npt.NDArray[np.int64], self.stamps.slice(first, count).to_numpy() + self.shift)


def _merge(streams: list[_Stream], latest: dict[Kind, dict[str, RowRef]], end_us: int | None) -> Iterator[Frame]:
    """The streams merged into frames a stretch at a time, a stretch holding about `_CHUNK` rows of all streams
    together (so memory is that of the tables, not of a year of records, whatever the number of symbols). Within a
    stretch the order is found by one sort of the instants, ties in the streams' (sorted) order, so a replay is
    deterministic; only the per-frame bookkeeping is Python."""
    bar_refs = latest["bars"]
    quote_refs = latest["quotes"]
    done = [0] * len(streams)
    while True:
        live = [n for n, stream in enumerate(streams) if done[n] < len(stream.table)]
        if not live:
            return
        # The stretch ends at the instant by which the first stream would exceed its share of _CHUNK rows.
        share = max(1, _CHUNK // len(live))
        full = [streams[n].known(done[n] + share - 1, 1)[0] for n in live if len(streams[n].table) - done[n] >= share]
        hi: int | None = int(min(full)) if full else None
        last = False
        if end_us is not None and (hi is None or hi >= end_us):
            hi, last = end_us, True
        knowns: list[npt.NDArray[np.int64]] = []
        taken: list[tuple[Kind, str, RowBlock]] = []
        for n in live:
            stream = streams[n]
            known = stream.known(done[n], min(share, len(stream.table) - done[n]))
            count = len(known) if hi is None else int(np.searchsorted(known, hi, "right"))
            if not count:
                continue
            taken.append((stream.kind, stream.symbol, RowBlock(stream.kind, stream.table.slice(done[n], count))))
            knowns.append(known[:count])
            done[n] += count
        if knowns:
            yield from _stretch(knowns, taken, bar_refs, quote_refs, latest["unusable"])
        if last:
            return


def _stretch(knowns: list[npt.NDArray[np.int64]], taken: list[tuple[Kind, str, RowBlock]], bar_refs: dict[str, RowRef],
             quote_refs: dict[str, RowRef], unusable_refs: dict[str, RowRef]) -> Iterator[Frame]:
    instants = np.concatenate(knowns)
    source = np.repeat(np.arange(len(knowns)), [len(k) for k in knowns])
    row = np.concatenate([np.arange(len(k)) for k in knowns])
    order = np.lexsort((source, instants))  # by instant, then by stream: the streams are in (kind, symbol) order
    ordered = instants[order]
    cuts = np.flatnonzero(ordered[1:] != ordered[:-1]) + 1
    stamps = ordered[np.concatenate(([0], cuts))].tolist()
    bounds = [0, *cuts.tolist(), len(ordered)]
    sources, rows = source[order].tolist(), row[order].tolist()
    for f, now in enumerate(stamps):
        new_bars: list[str] = []
        new_quotes: list[str] = []
        missing: list[str] = []
        for e in range(bounds[f], bounds[f + 1]):
            kind, symbol, block = taken[sources[e]]
            if kind == "bars":
                bar_refs[symbol] = (block, rows[e])
                new_bars.append(symbol)
            elif kind == "quotes":
                quote_refs[symbol] = (block, rows[e])
                new_quotes.append(symbol)
            elif kind == "missing":
                missing.append(symbol)
            else:
                unusable_refs[symbol] = (block, rows[e])
                new_quotes.append(symbol)
        yield Frame(_EPOCH + timedelta(microseconds=now), FrameRows(dict(bar_refs)), FrameRows(dict(quote_refs)),
                    tuple(new_bars), tuple(new_quotes), FrameRows(dict(unusable_refs)) if unusable_refs else _NONE,
                    tuple(missing))
