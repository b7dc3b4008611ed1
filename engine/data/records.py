"""The rows of the data format and the names of its files; stdlib only, so any command may import it cheaply.

A symbol is spelled in the data as the engine spells it (`AAPL`, `BTC/USD`, OCC `AAPL261120C00190000`); a file
name cannot hold `/`, so crypto pairs are written `BTC-USD` there. Alpaca's equity symbols never contain `-`
(class shares are `BRK.B`), which is what makes the mapping reversible.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Literal, NamedTuple

# "ticks" is not a kind of market data but the instants a recorded run ticked at (`run --record`'s `ticks/`, one
# `timestamp` column, read by `files.read_ticks`). "unusable" holds the quotes a recorded run read that are not
# prices (a side at 0, crossed: `unusable/<SYMBOL>/`), replayed as read; "missing" the ticks at which it got no
# quote for a symbol at all (`missing/<SYMBOL>/`, one `timestamp` column). The KINDS are the folders a data set
# needs one of.
Kind = Literal["bars", "quotes", "ticks", "unusable", "missing"]
Format = Literal["parquet", "csv"]

KINDS: tuple[Kind, ...] = ("bars", "quotes")
FORMATS: tuple[Format, ...] = ("parquet", "csv")
SUFFIXES: dict[str, Format] = {".parquet": "parquet", ".csv": "csv"}

# Column order is the order files are written in; readers accept any order.
COLUMNS: dict[Kind, tuple[str, ...]] = {
    "bars": ("timestamp", "open", "high", "low", "close", "volume"),
    "quotes": ("timestamp", "bid", "ask"),
    "ticks": ("timestamp",),
    "unusable": ("timestamp", "bid", "ask"),
    "missing": ("timestamp",),
}
UNUSABLE: Kind = "unusable"
MISSING: Kind = "missing"


class Bar(NamedTuple):
    """One bar as stored: `timestamp` is whatever instant the source stamps it with (Alpaca: the bar's start)."""

    timestamp: datetime
    open: float
    high: float
    low: float
    close: float
    volume: float


class Quote(NamedTuple):
    timestamp: datetime
    bid: float
    ask: float

    @property
    def mid(self) -> float:
        return (self.bid + self.ask) / 2


Row = Bar | Quote

# Upper-case letters and digits, a dot between two of them for class shares (BRK.B: never at the end, never two in
# a row, which no symbol has and a typo does); one '-' joins a crypto pair's two legs. Matched with `fullmatch`:
# `$` also matches before a final newline, which let a file named "AAPL\n.csv" through as the symbol "AAPL\n".
_STEM = re.compile(r"[A-Z0-9]+(\.[A-Z0-9]+)*(-[A-Z0-9]+)?", re.ASCII)
_SYMBOL = re.compile(r"[A-Z0-9]+(\.[A-Z0-9]+)*(/[A-Z0-9]+)?", re.ASCII)


def file_stem(symbol: str) -> str:
    """`BTC/USD` -> `BTC-USD`, `AAPL` -> `AAPL`: the name (without suffix) of a symbol's file or parts folder."""
    if not _SYMBOL.fullmatch(symbol):
        raise ValueError(f"{symbol!r} is not a symbol the data format can store (upper case, e.g. AAPL or BTC/USD)")
    return symbol.replace("/", "-")


def symbol_of_stem(stem: str) -> str:
    """`BTC-USD` -> `BTC/USD`: the inverse of `file_stem`; ValueError for a name no symbol maps to."""
    if not _STEM.fullmatch(stem):
        raise ValueError(f"{stem!r} is not a symbol's file name (upper case letters and digits, e.g. AAPL or BTC-USD)")
    return stem.replace("-", "/")
