"""One symbol's bars or quotes on disk: read strictly, appended to without ever leaving a half-written file.

Strict, because a backtest over silently repaired data answers a question nobody asked: a missing value is never
filled, an unsorted file never sorted, an unknown column never ignored. Every problem of a file is collected
(callers collect every file's) and raised once as a `DataError`, each as `file:line:0: row N: column: message`.
For CSV the line is the line in the file (the header is line 1); Parquet has no lines, so there it is the
1-based data row, which keeps the problems of one file sorted by row. Past `MAX_ROWS_PER_CHECK` rows with the
same problem, one more line gives the count instead of a thousand lines that say the same thing.

Writers never change a file in place: they write a hidden temporary file beside it and rename it over the old
one, so a reader, or a kill at any moment, sees the old file or the new one and never half of either.
"""

from __future__ import annotations

import codecs
import contextlib
import csv
import errno
import functools
import io
import os
import re
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, TypeVar

# pyarrow ships no type hints (no py.typed): its names are Any to mypy.
import numpy as np
import pyarrow as pa  # type: ignore[import-untyped]
import pyarrow.compute as pc  # type: ignore[import-untyped]
import pyarrow.csv as pacsv  # type: ignore[import-untyped]
import pyarrow.parquet as pq  # type: ignore[import-untyped]

from engine.config.errors import Problem
from engine.core import failpoints
from engine.core.journal import clipped, window
from engine.core.names import unknown_name_message
from engine.data.errors import DataError
from engine.data.records import (
    COLUMNS,
    KINDS,
    MISSING,
    SUFFIXES,
    UNUSABLE,
    Bar,
    Format,
    Kind,
    Quote,
    Row,
    file_stem,
    symbol_of_stem,
)
from engine.paths import PathKind, escaped, path_kind

MAX_ROWS_PER_CHECK = 20

# Python datetimes hold microseconds, so the stored resolution is the microsecond: no value is rounded on load.
TIMESTAMP = pa.timestamp("us", tz="UTC")
# The same instants, typed so that `to_pylist()` gives datetimes in `timezone.utc` (a "UTC" type gives ZoneInfo).
_TIMESTAMP_PY = pa.timestamp("us", tz="+00:00")
_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)

# The instants a file may hold: [FIRST_INSTANT, END_INSTANT). Outside them a timestamp is a mistake, not market
# data: a placeholder (0001-01-01, 9999-12-31, pandas' NaT read as a number), or seconds taken for microseconds.
# Python's datetime cannot even hold most of them (a traceback halfway through a replay), and the exchange
# calendar has no sessions there, so a stock would silently never trade.
FIRST_INSTANT = datetime(1900, 1, 1, tzinfo=timezone.utc)
END_INSTANT = datetime(2200, 1, 1, tzinfo=timezone.utc)
_FIRST_US = (FIRST_INSTANT - _EPOCH) // timedelta(microseconds=1)
_END_US = (END_INSTANT - _EPOCH) // timedelta(microseconds=1)
_RANGE_TEXT = "timestamps lie in the years 1900 to 2199"
_US_PER_UNIT = {"s": 1_000_000, "ms": 1_000, "us": 1}

# The text form of an instant in CSV: ISO 8601 with its zone, 'T' or a space between date and time, `Z` or an
# offset (`+00:00`, `-04:00`, `-0400`, `-04`). An offset names one instant exactly, so it is read, not refused; a
# time without one is refused, because nothing in the file says whether it is UTC or New York's clock.
_ISO_TEXT = r"^\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}:\d{2}(\.\d{1,6})?(Z|[+-]\d{2}(:?\d{2})?)$"
# ASCII digits only (re.ASCII): Python's \d also matches other scripts' digits, which Arrow's parser never reads,
# so without it a timestamp written in full-width digits was said to be "not in UTC".
_NAIVE_TEXT = re.compile(r"^\d{4}-\d{2}-\d{2}([T ]\d{2}:\d{2}(:\d{2}(\.\d+)?)?)?$", re.ASCII)
_DAY_TEXT = re.compile(r"^\d{4}-\d{2}-\d{2}(Z|[+-]\d{2}(:?\d{2})?)?$", re.ASCII)
_OFFSET_TEXT = re.compile(r"^\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}(:\d{2}(\.\d+)?)?(?P<offset>Z|[+-]\d{2}(:?\d{2})?)$", re.ASCII)
_NUMBER_TEXT = r"^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$"
_EPOCH_TEXT = re.compile(r"^[+-]?\d+(\.\d*)?$", re.ASCII)
# Digits with a thousands separator or a decimal comma (a spreadsheet's local format): `1,200`, `1 200.5`, `101,25`.
_GROUPED_TEXT = re.compile(r"^[+-]?\d+([,'_ ]\d+)+(\.\d*)?$", re.ASCII)
_NAN = "NaN (a missing value, which the format does not allow)"
_SHOWN = 60  # characters of a cell or a column name a problem shows
_EXACT = 2**53  # the largest integer a float64 holds exactly, with every one below it
_PRICE_COLUMNS: dict[Kind, tuple[str, ...]] = {"bars": ("open", "high", "low", "close"), "quotes": ("bid", "ask"), "ticks": (),
                                                 "unusable": ("bid", "ask"), "missing": ()}


def iso_micros(stamp: int) -> str:
    """`iso` of an instant in µs since the epoch, any int64 included: how a problem shows a timestamp that a
    datetime cannot hold (year 0, or past 9999)."""
    if _FIRST_US <= stamp < _END_US:
        return iso(_EPOCH + timedelta(microseconds=stamp))
    return _numpy_text(stamp, "us")


def iso(when: datetime) -> str:
    """`2026-11-23T14:30:00Z`: how the format writes an instant (microseconds only when there are some)."""
    when = when.astimezone(timezone.utc)
    text = f"{when:%Y-%m-%dT%H:%M:%S}"
    return f"{text}.{when.microsecond:06d}Z" if when.microsecond else f"{text}Z"


# ---------------------------------------------------------------------------------------------------------------
# Collecting problems


class _Report:
    """The problems of one source (a file, or rows about to be written), placed at its lines or rows."""

    def __init__(self, display: str, *, first_line: int, lines: Sequence[int] | None = None):
        self.display = display
        self.first_line = first_line  # the line of data row 0 when `lines` is None
        self.lines = lines
        self.problems: list[Problem] = []

    def line(self, row: int) -> int:
        return self.lines[row] if self.lines is not None else row + self.first_line

    def file(self, message: str, line: int = 0) -> None:
        self.problems.append(Problem(self.display, line, 0, "", message))

    def at_lines(self, what: str, lines: Sequence[int], message: Callable[[int], str]) -> None:
        """One problem of the file at each of `lines` (1-based), up to MAX_ROWS_PER_CHECK, then one that counts the
        rest: a file of a million blank or ragged lines is a few lines of problems, not a million (nor minutes)."""
        for line in lines[:MAX_ROWS_PER_CHECK]:
            self.file(message(line), line)
        if len(lines) > MAX_ROWS_PER_CHECK:
            more = len(lines) - MAX_ROWS_PER_CHECK
            self.file(f"and {more} more line{'s' if more > 1 else ''} where {what} "
                      f"(only the first {MAX_ROWS_PER_CHECK} are listed)", lines[MAX_ROWS_PER_CHECK])

    def rows(self, what: str, rows: Sequence[int], message: Callable[[int], str]) -> None:
        """One problem for each of `rows` (0-based), up to MAX_ROWS_PER_CHECK, then one that counts the rest."""
        for row in rows[:MAX_ROWS_PER_CHECK]:
            self.problems.append(Problem(self.display, self.line(row), 0, f"row {row + 1}", message(row)))
        if len(rows) > MAX_ROWS_PER_CHECK:
            row = rows[MAX_ROWS_PER_CHECK]
            more = len(rows) - MAX_ROWS_PER_CHECK
            self.problems.append(
                Problem(self.display, self.line(row), 0, f"row {row + 1}",
                        f"and {more} more row{'s' if more > 1 else ''} where {what} "
                        f"(only the first {MAX_ROWS_PER_CHECK} are listed)")
            )


def _indices(mask: Any) -> list[int]:
    return pc.indices_nonzero(pc.fill_null(mask, False)).to_pylist()


def _null_where(values: Any, mask: Any) -> Any:
    return pc.if_else(pc.fill_null(mask, False), pa.nulls(len(values), values.type), values)


# ---------------------------------------------------------------------------------------------------------------
# Columns: the header, then each column typed (a cell that cannot be read becomes null, and a problem)


# Other tools' names for the format's columns: Alpaca's JSON keys (t, o, h, l, c, v; bp, ap), yfinance's Date, and
# any name in another case or with spaces around it. Each is told as the rename it needs, not read under a guess.
_ALIASES: dict[Kind, dict[str, str]] = {
    "bars": {"t": "timestamp", "o": "open", "h": "high", "l": "low", "c": "close", "v": "volume"},
    "quotes": {"t": "timestamp", "bp": "bid", "ap": "ask", "bid_price": "bid", "ask_price": "ask"},
    "ticks": {"t": "timestamp"},
}
_ALIASES["unusable"] = _ALIASES["quotes"]
_ALIASES["missing"] = _ALIASES["ticks"]
_TIME_NAMES = frozenset({"date", "datetime", "time", "time_utc", "timestamp_utc", "ts"})
# Columns other tools write that the format has no place for: what each is, so the problem says why it goes.
_EXTRAS: dict[Kind, dict[str, str]] = {
    "bars": {"n": "Alpaca's trade count", "trade_count": "Alpaca's trade count", "vw": "Alpaca's volume-weighted price",
             "vwap": "Alpaca's volume-weighted price", "adj close": "an adjusted close, not a price that traded",
             "adj_close": "an adjusted close, not a price that traded", "dividends": "yfinance's dividends",
             "stock splits": "yfinance's splits"},
    "quotes": {"bs": "Alpaca's bid size", "as": "Alpaca's ask size", "bid_size": "the bid's size", "ask_size": "the ask's size",
               "bx": "Alpaca's bid exchange", "ax": "Alpaca's ask exchange", "bid_exchange": "the bid's exchange",
               "ask_exchange": "the ask's exchange", "c": "Alpaca's quote conditions", "conditions": "the quote's conditions",
               "z": "Alpaca's tape", "tape": "the tape"},
    "ticks": {},
}
_EXTRAS["unusable"] = _EXTRAS["quotes"]
_EXTRAS["missing"] = {}


def _check_header(names: Sequence[str], kind: Kind, report: _Report, line: int, *, index_times: bool = False) -> list[str]:
    """The known columns present; every missing, unknown or repeated column is a problem. A name that stands for a
    missing column (`Open`, `o`, `Date`) is one problem that says the rename, not also a missing column.
    `index_times`: the file's `__index_level_0__` is a pandas index of timestamps (a Parquet file's column type)."""
    known = COLUMNS[kind]
    present = set(names)
    renamed: set[str] = set()  # the known columns a name in the file stands for
    seen: set[str] = set()
    unknown = 0

    def stands_for(target: str) -> bool:
        if target in present or target in renamed:
            return False
        renamed.add(target)
        return True

    for position, name in enumerate(names):
        if name in seen:
            report.file(f"column '{_cut(name)}' appears twice", line)
        seen.add(name)
        if name in known:
            continue
        unknown += 1
        if unknown > MAX_ROWS_PER_CHECK:  # a header of a million names is a few lines, not a million
            continue
        key = name.strip().lower()
        target = key if key in known else _ALIASES[kind].get(key) or ("timestamp" if key in _TIME_NAMES else None)
        if name.startswith("__index_level_") and index_times and stands_for("timestamp"):
            report.file(f"missing column 'timestamp': the timestamps are the frame's index, which has no name ('{_cut(name)}'): "
                        "name it before writing (pandas: df.index.name = 'timestamp'; then df.to_parquet())", line)
        elif not key and position == 0 and stands_for("timestamp"):
            report.file("missing column 'timestamp': the first column has no name (how pandas writes an index without one): "
                        "if it holds the timestamps, name it timestamp (pandas: df.index.name = 'timestamp' before "
                        "df.to_csv()), else write the frame with index=False", line)
        elif target is not None and stands_for(target):
            report.file(f"column '{_cut(name)}' is what the format calls '{target}': rename it "
                        f"({kind} files have {', '.join(known)}, in lower case)", line)
        elif not key:
            report.file("a column has no name (a comma at the end of the header, or pandas' index: write the frame with "
                        f"index=False): remove it and its cells; {kind} files have {', '.join(known)}", line)
        elif key in _EXTRAS[kind] or key == "symbol":
            what = _EXTRAS[kind].get(key, "the file's name gives the symbol")
            report.file(f"unknown column '{_cut(name)}' ({what}): remove the column; {kind} files have {', '.join(known)}", line)
        else:
            hint = " (a pandas index: write the frame with index=False)" if name.startswith("__index_level_") else ""
            message = unknown_name_message("column", _cut(name), known)
            report.file(f"{message}{hint}; {kind} files have {', '.join(known)}", line)
    if unknown > MAX_ROWS_PER_CHECK:
        more = unknown - MAX_ROWS_PER_CHECK
        report.file(f"and {more} more unknown column{'s' if more > 1 else ''} "
                    f"(only the first {MAX_ROWS_PER_CHECK} are listed)", line)
    for name in known:
        if name not in seen and name not in renamed:
            report.file(f"missing column '{name}' ({kind} files have {', '.join(known)})", line)
    return [name for name in known if name in seen]


def _cut(text: str) -> str:
    """A cell or name as a problem shows it: a 100,000-character cell is one line of problem, not 100 KB of it (a
    key in it, cut in two, is masked whole: `journal.clipped`)."""
    return clipped(text, _SHOWN)


def _timestamp_text_problem(text: str) -> str:
    if text == "":
        return "timestamp: empty cell"
    shown = _cut(text)
    # fullmatch: `$` would also match before a final newline (a quoted cell's), calling "...Z\n" "not in UTC".
    if _DAY_TEXT.fullmatch(text):  # yfinance's daily Date: "end it with Z" (the zone's advice) made '2026-11-23Z'
        return (f"timestamp: '{shown}' is a day without a time: write the instant the row starts, with its zone "
                "(a New York day starts at 05:00Z in winter, 04:00Z in summer: 2026-11-23T05:00:00Z)")
    if _NAIVE_TEXT.fullmatch(text):
        return (f"timestamp: '{shown}' has no time zone, so it could be UTC or New York time: end it with Z if it is "
                "UTC (2026-11-23T14:30:00Z), or with its offset (-05:00 in New York's winter, -04:00 in its summer)")
    if _OFFSET_TEXT.fullmatch(text):
        if re.search(r"\.\d{7,}", text, re.ASCII):
            return f"timestamp: '{shown}' is finer than a microsecond"
        return f"timestamp: '{shown}' has no seconds: write them, e.g. 2026-11-23T14:30:00Z"
    if _EPOCH_TEXT.fullmatch(text.strip()):
        return (f"timestamp: '{shown}' is a number, not a date and time: a count since 1970 could be seconds, "
                "milliseconds or nanoseconds; write the instant as ISO 8601, e.g. 2026-11-23T14:30:00Z")
    return f"timestamp: '{shown}' is not an ISO 8601 timestamp with a time zone, e.g. 2026-11-23T14:30:00Z"


_SECOND = "%Y-%m-%dT%H:%M:%S"


def _unreal_times(candidates: Any) -> Any:
    """Which texts of the ISO shape (`_ISO_TEXT`, or null) name no real instant: month 13, Feb 30, 24:00, a leap
    second. Vectorised, because checking each row alone took seconds a file: each text's date and time to the
    second are parsed and written back, and a field out of range (which strptime carries over: Feb 30 becomes
    Mar 2) does not come back as it was written."""
    head = pc.binary_join_element_wise(pc.utf8_slice_codeunits(candidates, 0, 10),
                                       pc.utf8_slice_codeunits(candidates, 11, 19), "T")
    back = pc.strftime(pc.strptime(head, format=_SECOND, unit="s", error_is_null=True), format=_SECOND)
    return pc.and_(pc.is_valid(candidates), pc.invert(pc.fill_null(pc.equal(back, head), False)))


def _unreal_time(text: str) -> bool:
    try:
        pa.scalar(text).cast(TIMESTAMP)
    except pa.ArrowInvalid:
        return True
    return False


def _timestamps_from_text(values: Any, report: _Report) -> Any:
    # Nanoseconds that are whole microseconds (`.123456000`, what a nanosecond column is written as): the same
    # instant, as in a Parquet file. Other digits past the sixth stay, and are refused as finer than a microsecond.
    micro = pc.replace_substring_regex(values, pattern=r"(:\d{2}\.\d{6})0{1,3}(Z|[+-]\d)", replacement=r"\1\2")
    ok = pc.match_substring_regex(micro, _ISO_TEXT)
    candidates = _null_where(micro, pc.invert(ok))
    try:
        typed = candidates.cast(TIMESTAMP)
    except pa.ArrowInvalid:  # the shape is right but a field is not (month 13, Feb 30): find which
        unreal = _unreal_times(candidates)
        try:
            typed = _null_where(candidates, unreal).cast(TIMESTAMP)
        except pa.ArrowInvalid:  # a text Arrow's cast refuses and the check above let by: one row at a time
            unreal = pa.array([text is not None and _unreal_time(text) for text in candidates.to_pylist()])
            typed = _null_where(candidates, unreal).cast(TIMESTAMP)
        report.rows("the timestamp is not a real date and time", _indices(unreal),
                    lambda row: f"timestamp: '{candidates[row].as_py()}' is not a real date and time")
    bad = _indices(pc.invert(ok))
    if bad:
        texts_all = values.to_pylist()
        report.rows("the timestamp cannot be read", bad, lambda row: _timestamp_text_problem(texts_all[row]))
    return typed


def _number_text_problem(column: str, text: str) -> str:
    if text == "":
        return f"{column}: empty cell"
    shown = _cut(text)
    if text.strip().lower().lstrip("+-") == "nan":
        return f"{column}: {_NAN}"
    if text.strip().lower().lstrip("+-") in ("inf", "infinity"):
        return f"{column}: {shown} is not a finite number"
    if _GROUPED_TEXT.fullmatch(text.strip()):
        return (f"{column}: '{shown}' is written with a separator inside: write numbers plainly, with no thousands "
                "separator and a decimal point (1200, 101.25)")
    return f"{column}: '{shown}' is not a number"


def _numbers_from_text(column: str, values: Any, report: _Report) -> Any:
    ok = pc.match_substring_regex(values, _NUMBER_TEXT)
    typed = _null_where(values, pc.invert(ok)).cast(pa.float64())
    bad = _indices(pc.invert(ok))
    if bad:
        texts = values.to_pylist()
        report.rows(f"{column} cannot be read", bad, lambda row: _number_text_problem(column, texts[row]))
    # Past a float's range a number reads as inf, and too close to 0 as 0 (a nonzero digit before the exponent):
    # told as written, not as 'inf is not a finite number' or '0.0 is not a positive price' of a cell that says
    # 1e309 or 1e-400, values found nowhere in the file; and a volume of 1e-400 is not taken for 0 without a word.
    huge = pc.is_inf(typed)
    zero = pc.equal(typed, 0)
    # the pattern only where a cell read as 0: over every cell it cost a pass of a regex per number column
    tiny = pc.and_(zero, pc.match_substring_regex(values, r"^[+-]?[0-9.]*[1-9]")) if pc.any(zero).as_py() else zero
    for wrong, what, why in ((huge, "too large", "too large for a number (beyond about 1.8e308)"),
                             (tiny, "too close to 0", "too close to 0 for a number (it would read as 0)")):
        rows = _indices(wrong)
        if rows:
            report.rows(f"{column} is {what} for a number", rows, functools.partial(_out_of_range, column, values, why))
            typed = _null_where(typed, wrong)
    return typed


def _out_of_range(column: str, values: Any, why: str, row: int) -> str:
    return f"{column}: '{_cut(values[row].as_py())}' is {why}"


def _empty_cells(column: str, values: Any, report: _Report) -> None:
    if values.null_count:
        report.rows(f"{column} is empty", _indices(pc.is_null(values)), lambda row: f"{column}: empty cell")


def _is_text(kind: Any) -> bool:
    return bool(pa.types.is_string(kind) or pa.types.is_large_string(kind) or pa.types.is_string_view(kind))


def _timestamps_from_parquet(values: Any, report: _Report) -> Any | None:
    kind = values.type
    if _is_text(kind):  # text, as a CSV file has it (polars writes large_string): read by the same rules
        # A CSV cell is never null, so the text rules do not look for one; Parquet text can be (pandas' None), and a
        # null let by became a row without a time, a traceback in the replay instead of a problem at its row.
        _empty_cells("timestamp", values, report)
        return _timestamps_from_text(values.cast(pa.string()), report)
    if pa.types.is_integer(kind) or pa.types.is_floating(kind) or pa.types.is_decimal(kind):
        report.file(f"timestamp: the column is {kind}, a number, not a timestamp: a count since 1970 could be seconds, "
                    "milliseconds or nanoseconds, and is not guessed; store it as timestamp[<unit>, tz=UTC] in its unit "
                    "(pandas: pd.to_datetime(df['timestamp'], unit='ms', utc=True) for milliseconds)")
        return None
    if pa.types.is_date(kind):
        report.file(f"timestamp: the column is {kind}, a day without a time: store the instant each row starts, "
                    "timestamp[us, tz=UTC] (a New York day starts at 05:00Z in winter, 04:00Z in summer)")
        return None
    if not pa.types.is_timestamp(kind):
        report.file(f"timestamp: the column is {kind}, not a timestamp: Parquet files store timestamp[us, tz=UTC]")
        return None
    if kind.tz is None:
        report.file(f"timestamp: the column ({kind}) has no time zone, so it could be UTC or New York time: store "
                    "instants, timestamp[us, tz=UTC] (pandas: df.index.tz_localize('UTC') if the times are UTC, "
                    "tz_localize('America/New_York') if they are New York's)")
        return None
    # Any time zone: Parquet stores an instant (UTC-adjusted) whatever zone its writer shows it in, so a column of
    # America/New_York times holds the same numbers as one in UTC; the zone is only how they are displayed.
    _empty_cells("timestamp", values, report)
    raw = values.cast(pa.int64())
    unit = kind.unit
    # Checked in the column's own unit: cast to µs first, a value in seconds past the range would wrap around.
    # The range first: pandas' NaT in nanoseconds (-2**63) is a missing time, not also "finer than a microsecond".
    if unit == "ns":
        first, end = _FIRST_US * 1000, _END_US * 1000  # both well inside int64
    else:
        per = _US_PER_UNIT[unit]
        first, end = -(-_FIRST_US // per), -(-_END_US // per)
    outside = pc.or_(pc.less(raw, first), pc.greater_equal(raw, end))
    report.rows("the timestamp is out of range", _indices(outside),
                lambda row: f"timestamp {_unit_text(raw[row].as_py(), unit)} is out of range: {_RANGE_TEXT}")
    values = _null_where(values, outside)
    if unit == "ns":
        fine = pc.and_(pc.invert(outside), pc.not_equal(pc.multiply(pc.divide(raw, 1000), 1000), raw))
        report.rows("the timestamp is finer than a microsecond", _indices(fine),
                    lambda row: f"timestamp: {raw[row].as_py()} ns is finer than a microsecond")
        values = _null_where(values, fine)
    return values.cast(TIMESTAMP, safe=False)


def _unit_text(value: int, unit: str) -> str:
    """A raw timestamp of a Parquet column, as an instant when numpy can show one (its range is far wider); whole
    microseconds of a nanosecond column as microseconds, the form every other instant is shown in."""
    if unit == "ns" and value % 1000 == 0:
        return _numpy_text(value // 1000, "us")
    return _numpy_text(value, unit)


def _numpy_text(value: int, unit: str) -> str:
    """An instant no datetime holds, in numpy's ISO form (years past 9999 and before 1 included)."""
    if value == -(2**63):
        return f"{value} (the smallest 64-bit integer: pandas' NaT, a missing time)"
    numpy_unit: Any = unit  # one of s, ms, us: numpy's stubs want the literal
    text = str(np.datetime64(value, numpy_unit))
    return f"{text[:-7] if text.endswith('.000000') else text}Z"


def _numbers_from_parquet(column: str, values: Any, report: _Report) -> Any | None:
    kind = values.type
    if pa.types.is_float16(kind):  # about 3 digits: 101.23 is 101.25, which looks like a price and is not this one
        report.file(f"{column}: the column is {kind} (a 16-bit float, about 3 significant digits): store the numbers "
                    "as float64 (double)")
        return None
    if not (pa.types.is_integer(kind) or pa.types.is_floating(kind) or pa.types.is_decimal(kind)):
        text = " (text): store the numbers as float64 (pandas: pd.to_numeric)" if _is_text(kind) else ""
        report.file(f"{column}: the column is {kind}, not a number{text}")
        return None
    _empty_cells(column, values, report)
    if pa.types.is_integer(kind) and kind.bit_width == 64:
        # A float holds every integer up to 2**53 exactly; past it Arrow refuses the cast (a traceback, before).
        limit = pa.scalar(_EXACT, kind)  # of the column's own type: uint64 and int64 have no common one
        huge = pc.greater(values, limit) if pa.types.is_unsigned_integer(kind) else \
            pc.or_(pc.greater(values, limit), pc.less(values, pa.scalar(-_EXACT, kind)))
        report.rows(f"{column} is too large", _indices(huge),
                    lambda row: f"{column}: {values[row].as_py()} is too large to be read exactly as a number (beyond ±2**53)")
        values = _null_where(values, huge)
    # A decimal through its exact text: Arrow's cast of a decimal to a float is not correctly rounded (a
    # decimal(12, 2) 101.60 became 101.60000000000001), while the text is parsed to the nearest float, as in CSV.
    typed = (values.cast(pa.string()) if pa.types.is_decimal(kind) else values).cast(pa.float64())
    if pa.types.is_floating(kind) and kind.bit_width < 64:
        typed = _null_where(typed, _narrow_floats(column, values, typed, report))
    nan = pc.is_nan(typed)
    report.rows(f"{column} is NaN", _indices(nan), lambda row: f"{column}: {_NAN}")
    return _null_where(typed, nan)


def _narrow_floats(column: str, values: Any, typed: Any, report: _Report) -> Any:
    """The rows of a float32 column whose value is not the number it shows, reported; their mask.

    A 32-bit float holds about 7 digits: pandas' `astype('float32')` of 101.23 stores 101.2300033569336, which
    every tool shows as 101.23, and the engine would trade at the stored number. A value the narrow float holds
    exactly (99.0, 101.5, a volume of 1200) is read as it is."""
    shown = values.cast(pa.string())  # Arrow writes a narrow float in its shortest form: '101.23'
    inexact = pc.and_(pc.is_finite(typed), pc.not_equal(typed, shown.cast(pa.float64())))
    rows = _indices(inexact)
    if rows:  # one line a column: the fix is the column's type, whichever rows show it
        row, more = rows[0], len(rows) - 1
        more_text = f" (and in {more} more row{'s' if more > 1 else ''} of the column)" if more else ""
        report.problems.append(Problem(report.display, report.line(row), 0, f"row {row + 1}",
                                       f"{column}: {shown[row].as_py()} is stored as a 32-bit float (float32), "
                                       f"which holds {typed[row].as_py()!r} instead{more_text}: store the column as float64 "
                                       "(double), made from the original numbers"))
    return inexact


# ---------------------------------------------------------------------------------------------------------------
# Values: the same checks whatever the source


def _check_values(kind: Kind, columns: dict[str, Any], report: _Report) -> None:
    """Every value rule of the format; `columns` are typed, a null marks a cell already reported."""

    def value(column: str, row: int) -> Any:
        return columns[column][row].as_py()

    def check_number(column: str) -> None:
        # A value found wrong here becomes null, so the checks between columns do not report it a second time.
        values = columns[column]
        infinite = pc.invert(pc.is_finite(values))
        report.rows(f"{column} is not finite", _indices(infinite),
                    lambda row: f"{column}: {value(column, row)} is not a finite number")
        values = _null_where(values, infinite)
        if column == "volume":
            wrong, what, why = pc.less(values, 0), "the volume is negative", "is negative"
        elif kind == "unusable":  # a side at 0 is what makes a recorded quote unusable: below 0 is no quote at all
            wrong, what, why = pc.less(values, 0), f"{column} is negative", "is negative"
        else:
            wrong, what, why = pc.less_equal(values, 0), f"{column} is not a positive price", "is not a positive price"
        report.rows(what, _indices(wrong), lambda row: f"{column}: {value(column, row)} {why}")
        columns[column] = _null_where(values, wrong)

    for column in (*_PRICE_COLUMNS[kind], "volume") if kind == "bars" else _PRICE_COLUMNS[kind]:
        if column in columns:
            check_number(column)

    if kind == "bars" and {"high", "low"} <= columns.keys():
        high, low = columns["high"], columns["low"]
        inverted = pc.less(high, low)
        report.rows("high is below low", _indices(inverted),
                    lambda row: f"high {value('high', row)} is below low {value('low', row)}")

        def check_range(column: str) -> None:
            values = columns[column]
            outside = pc.and_(pc.invert(pc.fill_null(inverted, False)), pc.or_(pc.less(values, low), pc.greater(values, high)))
            report.rows(f"{column} is outside [low, high]", _indices(outside),
                        lambda row: f"{column} {value(column, row)} is outside the bar's range "
                        f"[low {value('low', row)}, high {value('high', row)}]")

        for column in ("open", "close"):
            if column in columns:
                check_range(column)
    if kind == "quotes" and {"bid", "ask"} <= columns.keys():
        crossed = pc.greater(columns["bid"], columns["ask"])
        report.rows("bid is above ask", _indices(crossed),
                    lambda row: f"bid {value('bid', row)} is above ask {value('ask', row)} (a crossed quote)")
    if kind == "unusable" and {"bid", "ask"} <= columns.keys():
        bid, ask = columns["bid"], columns["ask"]
        usable = pc.and_(pc.and_(pc.greater(bid, 0), pc.greater(ask, 0)), pc.less_equal(bid, ask))
        report.rows("the quote is usable", _indices(usable),
                    lambda row: f"bid {value('bid', row)} and ask {value('ask', row)} are a usable quote: it belongs in "
                    "quotes/ (unusable/ holds quotes with a side at 0, or crossed)")

    if "timestamp" in columns:
        raw = columns["timestamp"].cast(pa.int64())
        outside = pc.or_(pc.less(raw, _FIRST_US), pc.greater_equal(raw, _END_US))
        report.rows("the timestamp is out of range", _indices(outside),
                    lambda row: f"timestamp {iso_micros(raw[row].as_py())} is out of range: {_RANGE_TEXT}")
        columns["timestamp"] = _null_where(columns["timestamp"], outside)

    if "timestamp" in columns and len(columns["timestamp"]) > 1:
        stamps = columns["timestamp"]
        current, previous = stamps.slice(1), stamps.slice(0, len(stamps) - 1)
        micros_ = stamps.cast(pa.int64())

        def stamp(row: int) -> str:
            return iso_micros(micros_[row].as_py())

        # Row r+1 (0-based) is compared with row r, which is "row r+1" to a reader counting from 1.
        report.rows("the timestamp repeats the row before's", [r + 1 for r in _indices(pc.equal(current, previous))],
                    lambda row: f"timestamp {stamp(row)} is the same as row {row}'s (a duplicate)")
        report.rows("the timestamp is earlier than the row before's", [r + 1 for r in _indices(pc.less(current, previous))],
                    lambda row: f"timestamp {stamp(row)} is earlier than row {row}'s ({stamp(row - 1)}): "
                    "rows must be in time order")


def _table(kind: Kind, columns: dict[str, Any]) -> Any:
    return pa.table({name: columns[name] for name in COLUMNS[kind]})


# ---------------------------------------------------------------------------------------------------------------
# Reading one file


def _read_csv(path: Path, display: str, kind: Kind, whole_lines: bool = False) -> tuple[Any, list[Problem]]:
    report = _Report(display, first_line=2)
    try:
        with path.open("rb") as f:
            # The file's first bytes are judged before the rest is read: a binary file, or a sparse one whose size
            # claims gigabytes of NULs after a header, was read whole into memory only to be refused.
            if not _refused_head(f.read(_CSV_HEAD), report):
                f.seek(0)
                data = f.read()  # read again from the start: head + rest would hold a large file twice
    except OSError as exc:
        report.file(f"cannot be read: {exc.strerror or exc}")
        return None, report.problems
    except MemoryError:
        report.file("cannot be read: the file is larger than this machine's memory can hold")
        return None, report.problems
    if report.problems:
        return None, report.problems
    # Whole-file checks on the bytes, each a C scan: a copy of a file of hundreds of MB as text is not made
    # unless the file needs the slow reader.
    nul = data.find(b"\0")
    if nul >= 0:
        report.file("not a CSV file: it holds binary data (a NUL byte)", data.count(b"\n", 0, nul) + 1)
        return None, report.problems
    bad_utf8 = _first_non_utf8(data)
    if bad_utf8 is not None:
        report.file(f"not a CSV file: byte {bad_utf8 + 1} is not UTF-8 text", data.count(b"\n", 0, bad_utf8) + 1)
        return None, report.problems
    bare_cr = re.search(rb"\r(?!\n)", data) if b"\r" in data else None
    if bare_cr is not None:
        # Arrow's reader and Python's csv module would each end a line there, and disagree on line numbers.
        line = data.count(b"\n", 0, bare_cr.start()) + 1
        report.file("a line ends with a carriage return alone (old Mac line ends): lines end with LF or CRLF", line)
        return None, report.problems
    if whole_lines and data and not data.endswith(b"\n"):
        report.problems.append(_torn(display, data))
        return None, report.problems
    end = data.find(b"\n")
    header_line = data[: end if end >= 0 else len(data)].decode("utf-8-sig").rstrip("\r")
    if not header_line.strip():
        report.file(f"no header: the first line names the columns ({','.join(COLUMNS[kind])})", 1)
        return None, report.problems
    try:
        header = next(csv.reader([header_line]))
    except csv.Error as exc:
        report.file(f"the header cannot be read as CSV: {exc}", 1)
        return None, report.problems
    not_a_header = _not_a_header(header, header_line, kind)
    if not_a_header is not None:
        report.file(not_a_header, 1)
        return None, report.problems
    present = _check_header(header, kind, report, 1)
    if not present:  # no column to check: reading every cell of a header of a million names would take minutes
        return None, report.problems

    cells = _read_csv_quickly(data, header)
    if cells is None:
        cells, report.lines = _read_csv_slowly(data.decode("utf-8-sig"), header, report)
        if cells is None:
            return None, report.problems
    del data  # the bytes of a large file are not kept while its columns are typed
    again = _header_again(cells, header)
    if again is not None:  # told once, as the line it is, not as a bad value in each of its cells
        rows = _indices(again)
        report.at_lines("the header is repeated", [report.line(row) for row in rows],
                        lambda _line: "the header again, inside the data (files joined with their headers?): delete this line")
        cells = [_null_where(column, again) for column in cells]

    columns: dict[str, Any] = {}
    for index, name in enumerate(header):
        if name not in present or name in columns:
            continue
        values = cells[index]
        columns[name] = _timestamps_from_text(values, report) if name == "timestamp" else _numbers_from_text(name, values, report)
    _check_values(kind, columns, report)
    return (_table(kind, columns) if not report.problems else None), report.problems


_CSV_HEAD = 1 << 16  # the bytes of a CSV file looked at before the rest of it is read
# Files that hold a CSV file packed (or a workbook), by their first bytes: told as what they are and the fix, where
# the NUL byte or the byte that is no UTF-8 in their first bytes said only "binary data".
_PACKED = {
    b"\x1f\x8b": "gzip-compressed (a .csv.gz renamed?): decompress it (gunzip) and read the CSV inside",
    b"\x28\xb5\x2f\xfd": "zstd-compressed: decompress it (zstd -d) and read the CSV inside",
    b"PK\x03\x04": "a ZIP archive (an Excel workbook, .xlsx, is one): save the sheet as CSV UTF-8, or unzip the CSV inside",
}


def _refused_head(head: bytes, report: _Report) -> bool:
    """Whether a CSV file's first bytes already refuse it (Parquet, compressed, a workbook, UTF-16 text, a NUL byte),
    reported: the rest of it is then not read. A NUL byte further on is found by the whole file's check."""
    packed = next((what for magic, what in _PACKED.items() if head.startswith(magic)), None)
    if head.startswith(b"PAR1"):
        report.file("not a CSV file: it is a Parquet file (name it .parquet)")
    elif packed is not None:
        report.file(f"not a CSV file: it is {packed}")
    elif head.startswith((b"\xff\xfe", b"\xfe\xff")):  # Excel's "Unicode text", PowerShell's Out-File
        report.file("not a CSV file: it is UTF-16 text (its first bytes say so): save it as UTF-8 (Excel: CSV UTF-8)")
    elif b"\0" in head:
        report.file("not a CSV file: it holds binary data (a NUL byte)", head.count(b"\n", 0, head.find(b"\0")) + 1)
    return bool(report.problems)


def _torn(display: str, data: bytes) -> Problem:
    """The problem of a recording's CSV file whose last line has no line end (`read_file`'s `whole_lines`): the
    engine writes a file whole, each line ended, so this one was cut short, and its last row may be cut inside a
    number: `101.2` of `101.25` read as a price the run never saw."""
    line = data.count(b"\n") + 1
    if line == 1:
        return Problem(display, 1, 0, "", "the header line has no line end: the engine ends every line it writes in a "
                       "recording, so this file was cut short (a copy or a disk that stopped part way)")  # fmt: skip
    return Problem(display, line, 0, f"row {line - 1}", "the last line has no line end: the engine ends every line it "
                   "writes in a recording, so this file was cut short (a copy or a disk that stopped part way) and this "
                   "row may be cut inside a number (101.2 of 101.25); copy the file again, or delete the row")  # fmt: skip


def _header_again(cells: list[Any], header: list[str]) -> Any | None:
    """Which rows are the header line again (`cat a.csv b.csv`), or None when there is none."""
    again = None
    for column, name in zip(cells, header, strict=True):
        if not len(column):
            return None
        same = pc.equal(column if again is not None else pc.utf8_ltrim(column, "\ufeff"), name)
        again = same if again is None else pc.and_(again, same)
        if not pc.any(again).as_py():
            return None
    return again


_UTF8_STRETCH = 1 << 24


def _first_non_utf8(data: bytes) -> int | None:
    """The offset of the first byte that is not UTF-8 text, or None: checked a stretch at a time (a 16 MB string
    at most, not a copy of the whole file)."""
    decoder = codecs.getincrementaldecoder("utf-8")()
    view = memoryview(data)
    for offset in range(0, len(data), _UTF8_STRETCH):
        pending = len(decoder.getstate()[0])  # the start of a character cut by the stretch before, decoded first
        try:
            decoder.decode(view[offset : offset + _UTF8_STRETCH])
        except UnicodeDecodeError as exc:
            return offset - pending + exc.start
    pending = len(decoder.getstate()[0])
    return len(data) - pending if pending else None


def _not_a_header(header: Sequence[str], line: str, kind: Kind, *, text: bool = True) -> str | None:
    """Why the first line is not a header at all, when none of its names is a column: it is data, another kind's
    header, a header separated by something other than commas, or HTML or JSON (an error page saved as the file).
    One clear line instead of a dozen. `text`: the line is a CSV file's (a Parquet file's column names are not)."""
    known = COLUMNS[kind]
    other = next(k for k in KINDS if k != kind)
    if set(header) == set(COLUMNS[other]):
        return f"this is a {other} file ({', '.join(header)}), in the {kind}/ folder: {kind} files have {', '.join(known)}"
    if any(name in known for name in header):
        return None
    for separator, called in ((";", "semicolons"), ("\t", "tabs"), ("|", "vertical bars")):
        if separator in line and any(cell.strip().lower() in known for cell in line.split(separator)):
            return f"the columns are separated by {called}: the format separates them with commas ({','.join(known)})"
    first = window(line, 0, 60)  # cut before the keys are masked: a key across the cut is masked whole
    if header and re.match(r"^\s*[+-]?\d", header[0], re.ASCII):  # a Parquet file may have no column at all
        return f"no header: the first line is data ({first!r}); the first line names the columns ({','.join(known)})"
    if text and re.match(r"^\s*[<{\[]", line):  # `curl -o AAPL.csv` of an error page or of an API's JSON: 7 problems, before
        what = "HTML or XML" if line.lstrip().startswith("<") else "JSON"
        return (f"not CSV data: the first line is {what} ({first!r}), an error page or an API's answer saved as the "
                f"file?; a {kind} file's first line names the columns ({','.join(known)})")
    return None


def _read_csv_quickly(data: bytes, header: list[str]) -> list[Any] | None:
    """Every cell as text, row i on line i + 2; None when that may not hold (a quoted cell over two lines, blank
    or ragged lines)."""
    if b'"' in data and _quote_spans_lines(data):
        return None
    ragged: list[Any] = []

    def skip(row: Any) -> str:
        ragged.append(row)
        return "skip"

    try:
        table = pacsv.read_csv(
            pa.py_buffer(data),
            # One thread: `skip` is Python, called from Arrow's workers, and a worker still taking the GIL to let
            # go of it as the interpreter exited aborted the process ("terminate called without an active
            # exception", exit -6) after a backtest had told its bad data: 3 runs in 40 under load.
            read_options=pacsv.ReadOptions(use_threads=False),
            parse_options=pacsv.ParseOptions(invalid_row_handler=skip,
                                             ignore_empty_lines=False),
            convert_options=pacsv.ConvertOptions(column_types={name: pa.string() for name in header},
                                                 strings_can_be_null=False, quoted_strings_can_be_null=False),
        )
    except pa.ArrowInvalid:
        return None
    if ragged or table.num_columns != len(header):
        return None
    cells = [table.column(index).combine_chunks() for index in range(len(header))]
    # Arrow reads a blank line as a row of empty cells: the slow reader tells it as the blank line it is.
    blank = pc.equal(pc.binary_length(cells[0]), 0)
    for column in cells[1:]:
        if not pc.any(blank).as_py():
            break
        blank = pc.and_(blank, pc.equal(pc.binary_length(column), 0))
    if not pc.any(blank).as_py():
        return cells
    # Rows of empty cells at the end only (a spreadsheet's `,,,,,` lines): the file ends before them.
    empty = _indices(blank)
    end = len(blank) - len(empty)
    return [column.slice(0, end) for column in cells] if empty[0] == end else None


def _quote_spans_lines(data: bytes) -> bool:
    """Whether a line has an odd number of `"`: a quoted cell goes on to the next line (or is never closed), so
    rows and lines part. Quoted cells on their own lines (a quoted header, `"1,200"`) keep each row on its line, and
    the file on the fast reader: the slow one took 17 times the file's size in memory."""
    raw = np.frombuffer(data, np.uint8)
    quotes = np.flatnonzero(raw == 0x22)
    line_of = np.searchsorted(np.flatnonzero(raw == 0x0A), quotes)
    return bool((np.bincount(line_of) % 2).any())


def _read_csv_slowly(text: str, header: list[str], report: _Report) -> tuple[list[Any] | None, list[int]]:
    """Every cell as text with its row's line: the path for files with quoted cells, blank or ragged lines.
    None when the csv module cannot read the file (a field past its size limit): a problem at the line.

    Blank lines and lines of empty cells (`,,,,,`) after the last row are the end of the file, as a spreadsheet
    writes it, not rows: they are not read. Before the last row, they are problems."""
    cells: list[list[str]] = [[] for _ in header]
    lines: list[int] = []
    blank: list[int] = []
    ragged: dict[int, str] = {}  # line -> what is wrong with it, each kept only while it may still be listed
    ragged_lines: list[int] = []
    empty: list[tuple[int, list[str]]] = []  # lines of empty cells since the last line with a value
    last = 0  # the last line with a value

    def take(line: int, row: list[str]) -> None:
        if len(row) != len(header):
            ragged_lines.append(line)
            if len(ragged) < MAX_ROWS_PER_CHECK:
                unclosed = " (a quote opened on this line is not closed on it)" if any("\n" in c for c in row) else ""
                ragged[line] = f"{len(row)} cells where the header has {len(header)} ({_cut(','.join(header))}){unclosed}"
        else:
            for column, cell in zip(cells, row, strict=True):
                column.append(cell)
            lines.append(line)

    reader = csv.reader(io.StringIO(text, newline=""))
    after = 0
    failed = None
    try:
        next(reader, None)
        after = reader.line_num
        for row in reader:
            line, after = after + 1, reader.line_num
            if not row or (len(row) == 1 and not row[0].strip()):
                blank.append(line)
            elif not any(cell.strip() for cell in row):
                empty.append((line, row))
            else:
                for line_before, row_before in empty:  # not the end after all: rows like any other
                    take(line_before, row_before)
                empty.clear()
                take(line, row)
                last = line
    except csv.Error as exc:
        failed = f"cannot be read as CSV: {exc}"
    blank = [line for line in blank if line < last] if failed is None else blank
    report.at_lines("the line is blank", blank, lambda _line: "a blank line (a row with no cells)")
    report.at_lines("the line has another number of cells than the header", ragged_lines, ragged.__getitem__)
    if failed is not None:
        report.file(failed, after + 1)
        return None, lines
    return [pa.array(column, pa.string()) for column in cells], lines


def _read_parquet(path: Path, display: str, kind: Kind) -> tuple[Any, list[Problem]]:
    report = _Report(display, first_line=1)
    try:
        with path.open("rb") as f:
            head = f.read(4)
            f.seek(max(0, os.fstat(f.fileno()).st_size - 4))
            tail = f.read(4)
    except OSError as exc:
        report.file(f"cannot be read: {exc.strerror or exc}")
        return None, report.problems
    if head != b"PAR1":
        if len(head) < 4 and b"PAR1".startswith(head) and head:  # the first bytes of a Parquet file, and no more
            report.file(f"not a whole Parquet file: {len(head)} bytes, cut short (truncated, or still being written)")
            return None, report.problems
        text = head.lstrip(b"\xef\xbb\xbf")[:1].isalpha()
        report.file("not a Parquet file" + (" (it begins like text: name it .csv if it is CSV)" if text else ""))
        return None, report.problems
    if tail != b"PAR1":
        report.file("not a whole Parquet file: it begins as one but does not end with a Parquet footer "
                    "(truncated, or still being written)")
        return None, report.problems
    try:
        # ParquetFile, not read_table: a file with a column name twice is read, and told as such by the header check.
        # Page checksums, where the writer stored them (this module's writers do), are verified.
        table = pq.ParquetFile(path, page_checksum_verification=True).read()
    except (pa.ArrowException, OSError, ValueError) as exc:
        report.file(f"cannot be read as Parquet (corrupt or truncated): {_one_line(exc)}")
        return None, report.problems
    not_a_header = _not_a_header(table.column_names, ",".join(table.column_names), kind, text=False)
    if not_a_header is not None:
        report.file(not_a_header)
        return None, report.problems
    index = table.schema.field("__index_level_0__") if table.column_names.count("__index_level_0__") == 1 else None
    index_times = index is not None and pa.types.is_timestamp(index.type)
    present = _check_header(table.column_names, kind, report, 0, index_times=index_times)
    columns: dict[str, Any] = {}
    for index, name in enumerate(table.column_names):
        if name not in present or name in columns:
            continue
        values = table.column(index).combine_chunks()
        if pa.types.is_dictionary(values.type):  # dictionary-encoded by its writer: the values are what counts
            values = values.dictionary_decode()
        typed = _timestamps_from_parquet(values, report) if name == "timestamp" else _numbers_from_parquet(name, values, report)
        if typed is not None:
            columns[name] = typed
    _check_values(kind, columns, report)
    return (_table(kind, columns) if not report.problems else None), report.problems


def _one_line(exc: BaseException) -> str:
    """A library's error as one line of a problem: Arrow's span several, the last often empty or a schema dump."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    return "; ".join(lines[:2]) if lines else type(exc).__name__


_NOT_REGULAR = {PathKind.FIFO: "a named pipe (FIFO)", PathKind.SOCKET: "a socket", PathKind.DEVICE: "a device"}


def _not_a_file(path: Path) -> str | None:
    """Why `path` (a symbolic link followed) cannot be a data file, or None when it is a regular file.

    Checked before it is opened: opening a FIFO waits for a writer forever, and /dev/zero never ends."""
    try:
        found = path_kind(path)
    except OSError as exc:
        return f"cannot be read: {exc.strerror or exc}"
    if found is PathKind.FILE:
        return None
    if found.absent:  # said as the failed open would say it; a link, with where it points
        if os.path.islink(path):
            with contextlib.suppress(OSError):
                return f"is a symbolic link to {escaped(os.readlink(path))}, which does not exist"
        return f"cannot be read: {os.strerror(errno.ENOENT)}"
    if found is PathKind.FOLDER:
        return "is a folder, not a file"
    return f"is {_NOT_REGULAR.get(found, 'not a regular file')}, not a regular file: a data file is a plain file"


def read_file(path: Path, kind: Kind, display: str | None = None, *, whole_lines: bool = False) -> tuple[Any, list[Problem]]:
    """One file's rows as a typed Arrow table, or None and its problems (never raises for bad data).

    The table has the kind's columns in `COLUMNS` order, `timestamp` as timestamp[us, tz=UTC], the rest float64.
    `whole_lines`: the file is the engine's own (a recording's, `recorded`), whose every line ends: a CSV file whose
    last line has no line end was cut short, and is refused naming the row (another tool's may omit it: read).
    """
    display = display or shown_path(path)
    fmt = SUFFIXES.get(path.suffix)
    if fmt is None:
        return None, [Problem(display, 0, 0, "", f"not a Parquet or CSV file (name it .parquet or .csv){_suffix_hint(path)}")]
    refused = _not_a_file(path)
    if refused is not None:
        return None, [Problem(display, 0, 0, "", refused)]
    if fmt == "csv":
        return _read_csv(path, display, kind, whole_lines)
    return _read_parquet(path, display, kind)


def _suffix_hint(path: Path) -> str:
    return f": '{path.suffix}' is not a data file's suffix" if path.suffix else ""


# ---------------------------------------------------------------------------------------------------------------
# Where a symbol's data is: one file, or a folder of parts


@dataclass(frozen=True)
class Source:
    """A symbol's data of one kind: `path` is its file, or its parts folder (`is_folder`) whose `parts` are read in
    name order."""

    kind: Kind
    symbol: str
    path: Path
    parts: tuple[Path, ...] = ()
    is_folder: bool = False
    whole_lines: bool = False  # a recording's (`recorded`): a CSV file's last line without its end is refused

    @property
    def files(self) -> tuple[Path, ...]:
        return self.parts if self.is_folder else (self.path,)


def shown_path(path: Path) -> str:
    """A path as a problem names it, its control characters escaped: a newline in a file's name would split its
    problem over two lines, and a terminal would act on an escape sequence in it."""
    return escaped(str(path))


def _is_hidden(path: Path) -> bool:
    return path.name.startswith(".")  # a writer's temporary file, or an editor's: never data


def _is_dir(path: Path) -> bool | str:
    """Whether `path` is a folder (a symbolic link followed), or why that cannot be known: unlike Path.is_dir, a
    folder the user may not look into is a problem to tell, not a traceback."""
    try:
        return path_kind(path) is PathKind.FOLDER
    except OSError as exc:
        return f"cannot be read: {exc.strerror or exc}"


def _listing(folder: Path) -> list[Path] | str:
    """The entries of `folder` in name order, or why it cannot be listed."""
    try:
        return sorted(folder.iterdir())
    except OSError as exc:
        return f"cannot be listed: {exc.strerror or exc}"


def _source(
    kind: Kind, symbol: str, path: Path, display: Callable[[Path], str], whole_lines: bool = False
) -> tuple[Source, list[Problem]]:
    folder = _is_dir(path)
    if isinstance(folder, str):
        return Source(kind, symbol, path, whole_lines=whole_lines), [Problem(display(path), 0, 0, "", folder)]
    if not folder:
        return Source(kind, symbol, path, whole_lines=whole_lines), []
    problems: list[Problem] = []
    parts: list[Path] = []
    entries = _listing(path)
    if isinstance(entries, str):
        return Source(kind, symbol, path, is_folder=True, whole_lines=whole_lines), [Problem(display(path), 0, 0, "", entries)]
    for entry in entries:
        if _is_hidden(entry):
            continue
        if entry.suffix not in SUFFIXES:
            problems.append(Problem(display(entry), 0, 0, "", f"not a Parquet or CSV part file{_suffix_hint(entry)}"))
            continue
        refused = _not_a_file(entry)
        if refused is not None:
            problems.append(Problem(display(entry), 0, 0, "", f"{refused}: a parts folder holds part files"))
        else:
            parts.append(entry)
    return Source(kind, symbol, path, tuple(parts), is_folder=True, whole_lines=whole_lines), problems


RECORDING_LOCK = ".recording.lock"  # held by a recording while it runs, left once it took anything (recorder.py)
RECORDING_NOTES = "recording.jsonl"  # what a recorded run met that its replay cannot have


def recorded(folder: Path) -> bool:
    """Whether `folder` is a recording (`run --record`): it has `ticks/`, `recording.jsonl` or `.recording.lock`.
    The engine wrote its every file whole, each line ended, so a CSV file there whose last line has no line end was
    cut short (a copy stopped part way) and is refused (`read_file`'s `whole_lines`); in a folder of files from
    other tools, which may omit the last line's end, such a line is read as the last row (docs/data.md)."""
    return any(os.path.lexists(folder / name) for name in (TICKS, RECORDING_NOTES, RECORDING_LOCK))


def _rename_hint(stem: str, suffix: str) -> str:
    """`: rename it AAPL.csv` for `aapl.csv` or `BTC_USD.csv`, when the name is a symbol's in another spelling; for
    `AAPL.csv.csv` too (the suffix written twice), which read as the symbol AAPL.CSV once put in capitals."""
    while (doubled := next((s for s in SUFFIXES if stem.lower().endswith(s)), None)) is not None and len(stem) > len(doubled):
        stem = stem[: -len(doubled)]
    meant = stem.upper().replace("_", "-")
    try:
        symbol_of_stem(meant)
    except ValueError:
        return ""
    return f": rename it {meant}{suffix}" + (f" (the symbol {meant.replace('-', '/')})" if "-" in meant else "")


def locate(folder: Path, kind: Kind, symbol: str) -> Source | None:
    """Where `symbol`'s `kind` data is in `folder`, or None; DataError when it is in two places at once."""
    stem = file_stem(symbol)
    base = folder / kind
    found = [p for p in (base / f"{stem}{suffix}" for suffix in SUFFIXES) if os.path.lexists(p)]
    folder_found = _is_dir(base / stem)
    if folder_found is True or isinstance(folder_found, str):
        found.append(base / stem)
    if len(found) > 1:
        raise DataError(_two_sources(found, kind, symbol, str))
    if not found:
        return None
    source, problems = _source(kind, symbol, found[0], str, recorded(folder))
    if problems:
        raise DataError(problems)
    return source


def _two_sources(found: Sequence[Path], kind: Kind, symbol: str, display: Callable[[Path], str]) -> list[Problem]:
    names = " and ".join(display(p) for p in found)
    return [Problem(display(p), 0, 0, "", f"{symbol} has {kind} in two places ({names}): keep one") for p in found]


# The folders a data folder may have that are read: a name in another spelling is a folder left out, unsaid.
_READ_FOLDERS: tuple[str, ...] = (*KINDS, "ticks", UNUSABLE, MISSING)  # "ticks": TICKS, defined below


def _kinds_misspelled(folder: Path) -> list[Problem]:
    """The entries beside bars/ and quotes/ named as a folder the data set reads in another spelling (`quote/`,
    `Quotes/`, `BARS/`; a recording's `Ticks/`, `tick/`, `Unusable/`, `MISSING/`): other entries are not read, so the
    files in them were left out of the backtest without a word (a recording without its ticks/ replays at each
    row's time instead of its run's ticks; without missing/, with quotes the run never had)."""
    entries = _listing(folder)
    if isinstance(entries, str):
        return []  # said where the kinds are looked for
    problems = []
    for entry in entries:
        meant = entry.name.lower() if entry.name.lower() in _READ_FOLDERS else f"{entry.name.lower()}s"
        if entry.name in _READ_FOLDERS or meant not in _READ_FOLDERS:
            continue
        with contextlib.suppress(OSError):  # a file system that ignores case: Bars/ is read as bars/
            if os.path.samefile(entry, folder / meant):
                continue
        what = {TICKS: "a recording's ticks", UNUSABLE: "a recording's unusable quotes",
                MISSING: "a recording's missing quotes"}.get(meant, meant)
        problems.append(Problem(shown_path(entry), 0, 0, "", f"is not read: the folder of {what} is named {meant}/ (rename it)"))
    return problems


def _kind_given_itself(folder: Path) -> str:
    """`: it is a bars/ folder itself ...` when the folder given is a kind's folder of data files: the folder above
    it was meant."""
    entries = _listing(folder)
    files = [entry.name for entry in entries if entry.suffix in SUFFIXES] if not isinstance(entries, str) else []
    if folder.name not in KINDS or not files:
        return ""
    shown = ", ".join(files[:3]) + (", ..." if len(files) > 3 else "")
    return f": it is a {folder.name}/ folder itself, of data files ({shown}): give the folder it is in, {folder.parent}"


def scan(folder: Path) -> tuple[list[Source], list[Problem]]:
    """Every symbol's sources in a data folder, and every problem with its names and layout (never an OSError)."""
    problems: list[Problem] = []
    found_folder = _is_dir(folder)
    if isinstance(found_folder, str):
        return [], [Problem(str(folder), 0, 0, "", found_folder)]
    if not found_folder:  # said as it is: a file given for the folder is not "no such folder"
        why = "no such data folder" if path_kind(folder).absent else "is not a folder: a data folder holds bars/ and quotes/"
        return [], [Problem(str(folder), 0, 0, "", why)]
    kinds: list[Kind] = []

    def look_for(kind: Kind) -> None:
        """`kind`'s folder into `kinds` if it is one; a problem if it cannot be read or is something else."""
        is_folder = _is_dir(folder / kind)
        if isinstance(is_folder, str):
            problems.append(Problem(str(folder / kind), 0, 0, "", is_folder))
        elif is_folder:
            kinds.append(kind)
        elif os.path.lexists(folder / kind):
            problems.append(Problem(str(folder / kind), 0, 0, "", f"is not a folder: {kind}/ is a folder of files"))

    for kind in KINDS:
        look_for(kind)
    problems += _kinds_misspelled(folder)
    # A recording (ticks/) whose every quote was one-sided or crossed has unusable/ alone: what its run read, replayed
    # as read, not a folder without data.
    only_unusable = _is_dir(folder / TICKS) is True and _is_dir(folder / UNUSABLE) is True
    if not kinds and not problems and not only_unusable:
        return [], [Problem(str(folder), 0, 0, "", "holds neither a bars/ nor a quotes/ folder (docs/data.md)"
                            + _kind_given_itself(folder))]
    for extra in (UNUSABLE, MISSING):  # a recording's quotes that are not prices, and those it did not get
        look_for(extra)

    display = shown_path
    whole_lines = recorded(folder)
    sources: list[Source] = []
    for kind in kinds:
        entries = _listing(folder / kind)
        if isinstance(entries, str):
            problems.append(Problem(display(folder / kind), 0, 0, "", entries))
            continue
        by_symbol: dict[str, list[Path]] = {}
        for entry in entries:
            if _is_hidden(entry):
                continue
            is_folder = _is_dir(entry)
            if isinstance(is_folder, str):
                problems.append(Problem(display(entry), 0, 0, "", is_folder))
                continue
            if is_folder and entry.suffix in SUFFIXES:
                problems.append(Problem(display(entry), 0, 0, "", f"is a folder, not a {SUFFIXES[entry.suffix]} file "
                                        f"(a symbol's parts folder is named without a suffix: {entry.stem}/)"))
                continue
            if not is_folder and entry.suffix not in SUFFIXES:
                problems.append(Problem(display(entry), 0, 0, "", f"not a Parquet or CSV file{_suffix_hint(entry)}"))
                continue
            stem = entry.name if is_folder else entry.stem
            try:
                symbol = symbol_of_stem(stem)
            except ValueError as exc:
                problems.append(Problem(display(entry), 0, 0, "", f"{exc}{_rename_hint(stem, entry.suffix)}"))
                continue
            by_symbol.setdefault(symbol, []).append(entry)
        for symbol, found in sorted(by_symbol.items()):
            if len(found) > 1:
                problems.extend(_two_sources(found, kind, symbol, display))
                continue
            source, found_problems = _source(kind, symbol, found[0], display, whole_lines)
            problems.extend(found_problems)
            sources.append(source)
    return sources, problems


def read_source(source: Source) -> tuple[Any, list[Problem]]:
    """A symbol's rows as one typed table (its parts joined in name order), or None and every problem."""
    tables: list[Any] = []
    problems: list[Problem] = []
    previous: tuple[Path, Any] | None = None
    for path in source.files:
        table, found = read_file(path, source.kind, whole_lines=source.whole_lines)
        problems.extend(found)
        if table is None:
            previous = None
            continue
        if previous is not None and len(table):
            last, first = previous[1].column("timestamp")[-1].as_py(), table.column("timestamp")[0].as_py()
            if first <= last:
                line = 2 if path.suffix == ".csv" else 1
                before = shown_path(Path(previous[0].name))
                problems.append(Problem(shown_path(path), line, 0, "row 1",
                                        f"timestamp {iso(first)} is not after the last row of {before} ({iso(last)}): "
                                        "parts are read in name order, each after the one before"))
        if len(table):  # an empty part (a header only) is skipped over: the next part must follow the last row
            previous = (path, table)
        tables.append(table)
    if problems:
        return None, problems
    if not tables:
        return empty_table(source.kind), []
    return (tables[0] if len(tables) == 1 else pa.concat_tables(tables)), []


TICKS = "ticks"  # a recording's folder of the instants its run ticked at (engine/data/recorder.py)


def read_ticks(folder: Path) -> tuple[Any, list[Problem]]:
    """The instants a recorded run ticked at, `folder/ticks/` (parts of one `timestamp` column, strictly increasing
    over every part), as a typed table; (None, []) when the folder has no `ticks/` (data not recorded by a run, or
    recorded before the ticks were). Read by the format's rules, so a part cut short or out of order is a problem
    at its file and row, like any data file's."""
    path = folder / TICKS
    if not os.path.lexists(path):
        return None, []
    is_folder = _is_dir(path)
    if isinstance(is_folder, str):
        return None, [Problem(shown_path(path), 0, 0, "", is_folder)]
    if not is_folder:
        return None, [Problem(shown_path(path), 0, 0, "", f"is not a folder: {TICKS}/ is a folder of part files")]
    source, problems = _source("ticks", "", path, shown_path, whole_lines=True)
    if problems:
        return None, problems
    table, problems = read_source(source)
    if table is not None and not len(table):  # no instant to tick at: the replay would run no tick at all
        return None, [Problem(shown_path(path), 0, 0, "", f"holds no tick: a recording's {TICKS}/ holds the instants its "
                              f"run ticked at, where its replay ticks (remove {TICKS}/ to replay at each row's time)")]
    return table, problems


def empty_table(kind: Kind) -> Any:
    return pa.table({name: pa.array([], TIMESTAMP if name == "timestamp" else pa.float64()) for name in COLUMNS[kind]})


def read_table(folder: Path, kind: Kind, symbol: str) -> Any:
    """`symbol`'s `kind` data in `folder` as a typed Arrow table; DataError with every problem, or if there is none."""
    source = locate(folder, kind, symbol)
    if source is None:
        raise DataError([Problem(str(folder / kind), 0, 0, "", f"no {kind} for {symbol} ({file_stem(symbol)}.parquet or .csv)")])
    table, problems = read_source(source)
    if problems:
        raise DataError(problems)
    return table


# ---------------------------------------------------------------------------------------------------------------
# Records


_CHUNK_ROWS = 65536


R = TypeVar("R", Bar, Quote)


def micros(batch: Any) -> list[int]:
    """The timestamps of a typed table or batch as microseconds since the epoch: what replay clocks compare."""
    return batch.column(0).cast(pa.int64()).to_pylist()


def batch_records(batch: Any, make: type[R], stamps: list[int] | None = None) -> Iterator[R]:
    """A record batch of a typed table as records of type `make` (`Bar` or `Quote`); `stamps` if already read."""
    # epoch + timedelta builds an aware datetime in a third of the time pyarrow's own conversion takes.
    times = [_EPOCH + timedelta(microseconds=stamp) for stamp in (micros(batch) if stamps is None else stamps)]
    return map(make, times, *(batch.column(i).to_pylist() for i in range(1, batch.num_columns)))


def _records(table: Any, make: type[R]) -> Iterator[R]:
    # A chunk at a time: memory stays that of the (compact) table, whatever the length of the series.
    for batch in table.to_batches(max_chunksize=_CHUNK_ROWS):
        yield from batch_records(batch, make)


def iter_bars(table: Any) -> Iterator[Bar]:
    """A typed bars table (`read_table`) as `Bar`s: floats, datetimes in `timezone.utc`."""
    return _records(table, Bar)


def iter_quotes(table: Any) -> Iterator[Quote]:
    """A typed quotes table (`read_table`) as `Quote`s."""
    return _records(table, Quote)


def read_bars(folder: Path, symbol: str) -> list[Bar]:
    """Every bar of `symbol` in `folder`, in time order; DataError with every problem of its file(s)."""
    return list(iter_bars(read_table(folder, "bars", symbol)))


def read_quotes(folder: Path, symbol: str) -> list[Quote]:
    """Every quote of `symbol` in `folder`, in time order; DataError with every problem of its file(s)."""
    return list(iter_quotes(read_table(folder, "quotes", symbol)))


# ---------------------------------------------------------------------------------------------------------------
# Writing


def rows_to_table(rows: Iterable[Row | Sequence[Any]], kind: Kind, display: str) -> Any:
    """Rows (records, or tuples in `COLUMNS` order) as a typed table, checked by the rules files are read by."""
    names = COLUMNS[kind]
    report = _Report(display, first_line=1)
    stamps: list[int | None] = []
    values: list[list[float | None]] = [[] for _ in names[1:]]
    unreadable: dict[str, dict[int, str]] = {}  # what is wrong -> row -> message, so each check is listed once
    for row, item in enumerate(rows):
        if isinstance(item, (str, bytes)) or not hasattr(item, "__len__"):  # len() of a number is a TypeError
            unreadable.setdefault("the row is not a sequence of values", {})[row] = (
                f"{item!r:.40} is not a row (a {Bar.__name__}, a {Quote.__name__} or a tuple of values)")
            item = (None,) * len(names)
        elif len(item) != len(names):
            wrong = unreadable.setdefault("the row has the wrong number of values", {})
            wrong[row] = f"{len(item)} values where {kind} have {len(names)}"
            item = (None,) * len(names)
        when = item[0]
        if isinstance(when, datetime) and when.utcoffset() is not None:
            delta = when - _EPOCH
            stamps.append((delta.days * 86400 + delta.seconds) * 1_000_000 + delta.microseconds)
        else:
            if when is not None:
                unreadable.setdefault("the timestamp is not an aware datetime", {})[row] = (
                    f"timestamp: {when!r} is not a timezone-aware datetime")
            stamps.append(None)
        for column, (name, value) in enumerate(zip(names[1:], item[1:], strict=True)):
            number: float | None = value if type(value) is float else None  # what the writers here pass: no call
            if number is None and value is not None:
                number, why = _row_number(value)
                if why is not None:  # cut: an int of 400 digits
                    unreadable.setdefault(f"{name} is {why}", {})[row] = f"{name}: {_cut(repr(value))} is {why}"
            if number is not None and number != number:
                unreadable.setdefault(f"{name} is NaN", {})[row] = f"{name}: {_NAN}"
                number = None
            values[column].append(number)
    for what, messages in unreadable.items():
        report.rows(what, sorted(messages), messages.__getitem__)
    columns: dict[str, Any] = {"timestamp": pa.array(stamps, pa.int64()).cast(TIMESTAMP)}
    for name, column_values in zip(names[1:], values, strict=True):
        columns[name] = pa.array(column_values, pa.float64())
    _check_values(kind, columns, report)
    if report.problems:
        raise DataError(report.problems)
    return _table(kind, columns)


def _row_number(value: Any) -> tuple[float | None, str | None]:
    """A value of a row to write as the float the format stores, or None and what is wrong with it. Only numbers
    are numbers: `float()` alone would take True for 1.0 and the text '1_0' for 10.0, and raise OverflowError (a
    traceback) for an integer past a float's range. An integer a float cannot hold exactly is refused, as it is in
    a Parquet file."""
    if isinstance(value, (bool, np.bool_, str, bytes, bytearray)):
        return None, "not a number"
    if isinstance(value, (int, np.integer)) and not -_EXACT <= value <= _EXACT:
        return None, "too large to be read exactly as a number (beyond ±2**53)"
    try:
        return float(value), None
    except (TypeError, ValueError, OverflowError):
        return None, "not a number"


def _csv_text(table: Any, header: bool) -> str:
    """The rows of `table` as CSV lines, its columns in the table's order (a file's own, when appending to it)."""
    names = table.column_names
    out = io.StringIO()
    if header:
        out.write(",".join(names) + "\n")
    columns = [[iso(when) for when in table.column(name).cast(_TIMESTAMP_PY).to_pylist()] if name == "timestamp"
               else [repr(v) for v in table.column(name).to_pylist()] for name in names]
    out.writelines(",".join(cells) + "\n" for cells in zip(*columns, strict=True))
    return out.getvalue()


def _csv_to_append_to(data: bytes) -> tuple[bytes, list[str]]:
    """A CSV file's bytes, already read by the strict rules, as rows are appended after them: without the empty
    lines after its last row (the end of the file to a reader, but lines before a row once one follows them, which
    made the file unreadable), and the order of its columns (any order is read, and rows written in the format's
    own under another header were read under the wrong names: an open as a close, without a word)."""
    end = data.find(b"\n")
    header = next(csv.reader([data[: end if end >= 0 else len(data)].decode("utf-8-sig").rstrip("\r")]))
    while True:
        body = data[:-1] if data.endswith(b"\n") else data
        start = body.rfind(b"\n") + 1
        if start == 0 or not _empty_line(body[start:]):  # the header is never an empty line
            return data, header
        data = data[:start]


def _empty_line(line: bytes) -> bool:
    """Whether a line is blank or only empty cells (`,,,,,`), as the reader tells the end of a file."""
    try:
        row = next(csv.reader([line.decode("utf-8").rstrip("\r")]), [])
    except csv.Error:
        return False
    return not any(cell.strip() for cell in row)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except (ProcessLookupError, OverflowError):  # no such process, or a number no pid can be (a name made by hand)
        return False
    except OSError:  # PermissionError: another user's process, alive
        return True
    return True


def remove_leftovers(path: Path) -> list[Path]:
    """Delete the temporary files beside `path` that writers killed mid-write left (`.NAME.PID.tmp`, PID no longer
    running): readers ignore them, but each was a whole copy of the file, and a folder fetched again after a kill
    would otherwise never be the folder an uninterrupted fetch makes. A live writer's file is left alone."""
    removed = []
    pattern = re.compile(rf"^\.{re.escape(path.name)}\.(\d+)\.tmp$")
    try:
        entries = list(path.parent.iterdir())
    except OSError:
        return []
    for entry in entries:
        match = pattern.fullmatch(entry.name)
        if match and int(match[1]) != os.getpid() and not _alive(int(match[1])):
            with contextlib.suppress(FileNotFoundError):
                entry.unlink()
                removed.append(entry)
    return removed


def replace_whole(path: Path, write: Callable[[Path], object], fsync: bool) -> None:
    """`write` a hidden temporary file beside `path`, then rename it over `path`: all of it lands, or none."""
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_leftovers(path)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        write(temporary)
        if fsync:
            with temporary.open("rb+") as f:
                os.fsync(f.fileno())
        failpoints.reach("data_before_rename")  # the crash tests' kill: the new file is whole but not yet in place
        os.replace(temporary, path)
        if fsync:
            directory = os.open(path.parent, os.O_RDONLY)
            try:
                os.fsync(directory)
            finally:
                os.close(directory)
    finally:
        temporary.unlink(missing_ok=True)


def write_table(path: Path, table: Any, kind: Kind, *, fsync: bool = True, before: bytes = b"") -> None:
    """`table` as the whole of `path` (its suffix says the format), atomically; CSV text may follow `before`."""
    if SUFFIXES.get(path.suffix) == "csv":
        if before and not before.endswith(b"\n"):
            before += b"\n"
        payload = before + _csv_text(table, header=not before).encode("utf-8")
        replace_whole(path, lambda p: p.write_bytes(payload), fsync)
    else:
        # Page checksums: a reader that verifies them (this one) tells a file damaged on disk from bad data.
        replace_whole(path, lambda p: pq.write_table(table, str(p), write_page_checksum=True), fsync)


PART_NAME = "part-{:06d}"


def next_part(folder: Path, fmt: Format) -> Path:
    """The next part file of a parts folder: `part-000001.parquet`, then one past the highest number there.

    DataError when that name would not come last in name order, the order `read_source` joins the parts in: a
    part named by hand (`part-1.csv`, `part-0001.csv`, `zzz.csv`), or a millionth part (`part-1000000` comes before
    `part-999999` as text). Written anyway, the new rows were read before older ones, and the whole folder was
    refused by the next backtest, after a run had recorded into it (or a fetch appended to it)."""
    entries = list(folder.iterdir()) if folder.is_dir() else []
    numbers = [int(m[1]) for p in entries if (m := re.match(r"^part-(\d+)\.", p.name))]
    target = folder / f"{PART_NAME.format(max(numbers, default=0) + 1)}.{fmt}"
    last = max((p.name for p in entries if not _is_hidden(p) and p.suffix in SUFFIXES), default=None)
    if last is not None and target.name <= last:
        raise DataError([Problem(shown_path(folder / last), 0, 0, "", f"the parts of {shown_path(folder)}/ are read in "
                                 f"name order, and the next part, {target.name}, would be read before this one: name "
                                 "the parts part-000001, part-000002, ... (six digits), or write into another folder")])
    return target


def _write(folder: Path, kind: Kind, symbol: str, rows: Iterable[Row | Sequence[Any]], fmt: Format | None, fsync: bool) -> Path:
    if fmt is not None and fmt not in ("parquet", "csv"):
        raise ValueError(f"fmt must be 'parquet' or 'csv', not {fmt!r}")
    stem = file_stem(symbol)
    source = locate(folder, kind, symbol)
    if source is None:
        target = folder / kind / f"{stem}.{fmt or 'parquet'}"
        new = rows_to_table(rows, kind, f"{target} (rows to write)")
        write_table(target, new, kind, fsync=fsync)
        return target

    existing, problems = read_source(source)
    if problems:
        raise DataError(problems)
    if source.is_folder:
        last_format = SUFFIXES[source.parts[-1].suffix] if source.parts else "parquet"
        target = next_part(source.path, fmt or last_format)
    else:
        target = source.path
        if fmt is not None and SUFFIXES[target.suffix] != fmt:
            raise DataError([Problem(str(target), 0, 0, "", f"is {SUFFIXES[target.suffix]}: cannot append {fmt} rows to it")])
    new = rows_to_table(rows, kind, f"{target} (rows to write)")
    if len(existing) and len(new):
        last, first = existing.column("timestamp")[-1].as_py(), new.column("timestamp")[0].as_py()
        if first <= last:
            raise DataError([Problem(f"{target} (rows to write)", 1, 0, "row 1",
                                     f"timestamp {iso(first)} is not after the last row already stored ({iso(last)}): "
                                     "appending refuses rows older than what is there")])
    if source.is_folder:
        if len(new):
            write_table(target, new, kind, fsync=fsync)
    elif SUFFIXES[target.suffix] == "csv":
        before, order = _csv_to_append_to(target.read_bytes())
        write_table(target, new.select(order), kind, fsync=fsync, before=before)
    else:
        write_table(target, pa.concat_tables([existing, new]), kind, fsync=fsync)
    return target


def write_bars(folder: Path, symbol: str, rows: Iterable[Bar | Sequence[Any]], fmt: Format | None = None, *,
               fsync: bool = True) -> Path:
    """Append `rows` to `symbol`'s bars in `folder` (creating the file, Parquet unless `fmt` says), atomically.

    Resumable: what is there is read first (strictly), and rows not after its last timestamp are refused, so a
    fetch that stopped can start again after the last stored row (engine/data/fetch.py, which asks for that row
    again to check it is unchanged). Returns the file (or part) written.
    """
    return _write(folder, "bars", symbol, rows, fmt, fsync)


def write_quotes(folder: Path, symbol: str, rows: Iterable[Quote | Sequence[Any]], fmt: Format | None = None, *,
                 fsync: bool = True) -> Path:
    """`write_bars` for quotes."""
    return _write(folder, "quotes", symbol, rows, fmt, fsync)


def last_timestamp(folder: Path, kind: Kind, symbol: str) -> datetime | None:
    """The last stored instant of `symbol`'s `kind` data, None when there is none: where a resumed fetch starts."""
    source = locate(folder, kind, symbol)
    if source is None:
        return None
    table, problems = read_source(source)
    if problems:
        raise DataError(problems)
    return table.column("timestamp").cast(_TIMESTAMP_PY)[-1].as_py() if len(table) else None
