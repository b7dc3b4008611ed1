"""A data folder read whole and replayed as one clock: the replay steps from one timestamp to the next.

Opening reads and checks every file first, so a backtest either starts on data that is entirely valid or is told
every problem of every file at once; it never stops halfway through a year on a bad row. The rows stay in Arrow
tables (8 bytes a value) and become records only while they are replayed, a chunk at a time.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, cast

import pyarrow as pa  # type: ignore[import-untyped]  # pyarrow ships no type hints
import pyarrow.compute as pc  # type: ignore[import-untyped]

from engine.config.errors import Problem
from engine.data.errors import DataError
from engine.data.files import batch_records, iter_bars, iter_quotes, micros, read_source, scan
from engine.data.records import Bar, Kind, Quote, Row

_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
_CHUNK = 65536


def _micros(when: datetime) -> int:
    if when.utcoffset() is None:
        raise ValueError(f"{when!r} is naive: replay bounds are timezone-aware datetimes")
    delta = when - _EPOCH
    return (delta.days * 86400 + delta.seconds) * 1_000_000 + delta.microseconds


@dataclass(frozen=True)
class Frame:
    """One step of the replay clock: the instant, and what the market looked like then.

    `bars` and `quotes` hold each symbol's latest row at or before `at` (a symbol appears once its first row has
    been seen, and keeps its last row until a newer one comes); `new_bars` and `new_quotes` name the symbols whose
    row is stamped exactly `at` (a fill model fills at the next quote or bar, not at a stale one). The mappings
    are this frame's own: keeping a frame keeps what it said.
    """

    at: datetime
    bars: Mapping[str, Bar]
    quotes: Mapping[str, Quote]
    new_bars: tuple[str, ...]
    new_quotes: tuple[str, ...]


class DataSet:
    """Every symbol's bars and quotes in one data folder (docs/data.md), checked and ready to replay."""

    def __init__(self, folder: Path, tables: Mapping[tuple[Kind, str], Any]):
        self.folder = folder
        self._tables = dict(tables)
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
        if problems:
            raise DataError(problems)
        if not tables:
            raise DataError([Problem(str(folder), 0, 0, "", "holds no symbol's bars or quotes (docs/data.md)")])
        return cls(folder, tables)

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
        """
        start_us = _micros(start) if start is not None else None
        end_us = _micros(end) if end is not None else None
        delay = bars_known_after // timedelta(microseconds=1)
        streams: list[tuple[Kind, str, Iterator[tuple[int, Row]]]] = []
        latest: dict[Kind, dict[str, Row]] = {"bars": {}, "quotes": {}}
        for (kind, symbol), table in sorted(self._tables.items()):
            if not len(table):
                continue
            shift = delay if kind == "bars" else 0
            stamps = table.column("timestamp").cast(pa.int64())
            first = 0
            if start_us is not None:
                first = pc.sum(pc.less(stamps, start_us - shift)).as_py() or 0
                if first:
                    latest[kind][symbol] = next(_rows(table.slice(first - 1, 1), kind, 0))[1]
            if first < len(table):
                streams.append((kind, symbol, _rows(table.slice(first), kind, shift)))
        yield from _merge(streams, latest, end_us)


def _rows(table: Any, kind: Kind, shift: int) -> Iterator[tuple[int, Row]]:
    """(the instant a row is known, in µs since the epoch; the row), a chunk at a time."""
    for batch in table.to_batches(max_chunksize=_CHUNK):
        stamps = micros(batch)
        records: Iterator[Row] = batch_records(batch, Bar, stamps) if kind == "bars" else batch_records(batch, Quote, stamps)
        yield from zip([stamp + shift for stamp in stamps] if shift else stamps, records, strict=True)


def _merge(streams: list[tuple[Kind, str, Iterator[tuple[int, Row]]]], latest: dict[Kind, dict[str, Row]],
           end_us: int | None) -> Iterator[Frame]:
    # A heap of each stream's next row, keyed (instant, stream index): ties leave in the streams' (sorted) order,
    # so a replay is deterministic, and rows themselves are never compared.
    heap: list[tuple[int, int, Row]] = []
    for index, (_, _, rows) in enumerate(streams):
        head = next(rows, None)
        if head is not None:
            heap.append((head[0], index, head[1]))
    heapq.heapify(heap)
    bars = cast(dict[str, Bar], latest["bars"])
    quotes = cast(dict[str, Quote], latest["quotes"])
    while heap:
        now = heap[0][0]
        if end_us is not None and now > end_us:
            return
        new_bars: list[str] = []
        new_quotes: list[str] = []
        while heap and heap[0][0] == now:
            _, index, row = heap[0]
            kind, symbol, rows = streams[index]
            if kind == "bars":
                bars[symbol] = cast(Bar, row)
                new_bars.append(symbol)
            else:
                quotes[symbol] = cast(Quote, row)
                new_quotes.append(symbol)
            head = next(rows, None)
            if head is None:
                heapq.heappop(heap)
            else:
                heapq.heapreplace(heap, (head[0], index, head[1]))
        at = _EPOCH + timedelta(microseconds=now)
        yield Frame(at, dict(bars), dict(quotes), tuple(new_bars), tuple(new_quotes))
