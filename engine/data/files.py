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

import csv
import io
import os
import re
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, TypeVar

# pyarrow ships no type hints (no py.typed): its names are Any to mypy.
import pyarrow as pa  # type: ignore[import-untyped]
import pyarrow.compute as pc  # type: ignore[import-untyped]
import pyarrow.csv as pacsv  # type: ignore[import-untyped]
import pyarrow.parquet as pq  # type: ignore[import-untyped]

from engine.config.errors import Problem
from engine.core import failpoints
from engine.core.names import unknown_name_message
from engine.data.errors import DataError
from engine.data.records import COLUMNS, KINDS, SUFFIXES, Bar, Format, Kind, Quote, Row, file_stem, symbol_of_stem

MAX_ROWS_PER_CHECK = 20

# Python datetimes hold microseconds, so the stored resolution is the microsecond: no value is rounded on load.
TIMESTAMP = pa.timestamp("us", tz="UTC")
# The same instants, typed so that `to_pylist()` gives datetimes in `timezone.utc` (a "UTC" type gives ZoneInfo).
_TIMESTAMP_PY = pa.timestamp("us", tz="+00:00")
_UTC_ZONES = frozenset({"UTC", "Etc/UTC", "+00:00", "Z", "utc", "GMT", "Etc/GMT"})
_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)

# The one text form of an instant in CSV: ISO 8601 in UTC, 'T' or a space between date and time.
_UTC_TEXT = r"^\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}:\d{2}(\.\d{1,6})?(Z|\+00:00)$"
_NAIVE_TEXT = re.compile(r"^\d{4}-\d{2}-\d{2}([T ]\d{2}:\d{2}(:\d{2}(\.\d+)?)?)?$")
_OFFSET_TEXT = re.compile(r"^\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}(:\d{2}(\.\d+)?)?(?P<offset>Z|[+-]\d{2}(:?\d{2})?)$")
_NUMBER_TEXT = r"^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$"
_NAN = "NaN (a missing value, which the format does not allow)"
_PRICE_COLUMNS: dict[Kind, tuple[str, ...]] = {"bars": ("open", "high", "low", "close"), "quotes": ("bid", "ask")}


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


def _check_header(names: Sequence[str], kind: Kind, report: _Report, line: int) -> list[str]:
    """The known columns present; every missing, unknown or repeated column is a problem."""
    known = COLUMNS[kind]
    seen: set[str] = set()
    for name in names:
        if name in seen:
            report.file(f"column '{name}' appears twice", line)
        seen.add(name)
        if name not in known:
            hint = " (a pandas index: write the frame with index=False)" if name.startswith("__index_level_") else ""
            report.file(unknown_name_message("column", name, known) + hint + f"; {kind} files have {', '.join(known)}", line)
    for name in known:
        if name not in seen:
            report.file(f"missing column '{name}' ({kind} files have {', '.join(known)})", line)
    return [name for name in known if name in seen]


def _timestamp_text_problem(text: str) -> str:
    if text == "":
        return "timestamp: empty cell"
    if _NAIVE_TEXT.match(text):
        return f"timestamp: '{text}' has no time zone: timestamps are UTC, e.g. 2026-11-23T14:30:00Z"
    found = _OFFSET_TEXT.match(text)
    if found:
        if re.search(r"\.\d{7,}", text):
            return f"timestamp: '{text}' is finer than a microsecond"
        return f"timestamp: '{text}' is not in UTC (offset {found['offset']}): write it in UTC, e.g. 2026-11-23T14:30:00Z"
    return f"timestamp: '{text}' is not an ISO 8601 timestamp in UTC, e.g. 2026-11-23T14:30:00Z"


def _timestamps_from_text(values: Any, report: _Report) -> Any:
    ok = pc.match_substring_regex(values, _UTC_TEXT)
    candidates = _null_where(values, pc.invert(ok))
    try:
        typed = candidates.cast(TIMESTAMP)
    except pa.ArrowInvalid:  # the shape is right but a field is not (month 13, Feb 30): find which, one by one
        texts = candidates.to_pylist()
        impossible = []
        for row, text in enumerate(texts):
            if text is not None:
                try:
                    pa.scalar(text).cast(TIMESTAMP)
                except pa.ArrowInvalid:
                    impossible.append(row)
        report.rows("the timestamp is not a real date and time", impossible,
                    lambda row: f"timestamp: '{texts[row]}' is not a real date and time")
        unreal = set(impossible)
        candidates = _null_where(candidates, pa.array([row in unreal for row in range(len(texts))]))
        typed = candidates.cast(TIMESTAMP)
    bad = _indices(pc.invert(ok))
    if bad:
        texts_all = values.to_pylist()
        report.rows("the timestamp cannot be read", bad, lambda row: _timestamp_text_problem(texts_all[row]))
    return typed


def _number_text_problem(column: str, text: str) -> str:
    if text == "":
        return f"{column}: empty cell"
    if text.strip().lower().lstrip("+-") == "nan":
        return f"{column}: {_NAN}"
    if text.strip().lower().lstrip("+-") in ("inf", "infinity"):
        return f"{column}: {text} is not a finite number"
    return f"{column}: '{text}' is not a number"


def _numbers_from_text(column: str, values: Any, report: _Report) -> Any:
    ok = pc.match_substring_regex(values, _NUMBER_TEXT)
    typed = _null_where(values, pc.invert(ok)).cast(pa.float64())
    bad = _indices(pc.invert(ok))
    if bad:
        texts = values.to_pylist()
        report.rows(f"{column} cannot be read", bad, lambda row: _number_text_problem(column, texts[row]))
    return typed


def _empty_cells(column: str, values: Any, report: _Report) -> None:
    if values.null_count:
        report.rows(f"{column} is empty", _indices(pc.is_null(values)), lambda row: f"{column}: empty cell")


def _timestamps_from_parquet(values: Any, report: _Report) -> Any | None:
    kind = values.type
    if not pa.types.is_timestamp(kind):
        report.file(f"timestamp: the column is {kind}, not a timestamp: Parquet files store timestamp[us, tz=UTC]")
        return None
    if kind.tz is None:
        report.file(f"timestamp: the column ({kind}) has no time zone: the format stores UTC instants, timestamp[us, tz=UTC]")
        return None
    if kind.tz not in _UTC_ZONES:
        report.file(f"timestamp: the column is in time zone {kind.tz}: the format stores UTC, timestamp[us, tz=UTC]")
        return None
    _empty_cells("timestamp", values, report)
    if kind.unit == "ns":
        nanos = values.cast(pa.int64())
        fine = pc.not_equal(pc.multiply(pc.divide(nanos, 1000), 1000), nanos)
        report.rows("the timestamp is finer than a microsecond", _indices(fine),
                    lambda row: f"timestamp: {nanos[row].as_py()} ns is finer than a microsecond")
        values = _null_where(values, fine)
    return values.cast(TIMESTAMP, safe=False)


def _numbers_from_parquet(column: str, values: Any, report: _Report) -> Any | None:
    kind = values.type
    if not (pa.types.is_integer(kind) or pa.types.is_floating(kind) or pa.types.is_decimal(kind)):
        report.file(f"{column}: the column is {kind}, not a number")
        return None
    _empty_cells(column, values, report)
    typed = values.cast(pa.float64())
    nan = pc.is_nan(typed)
    report.rows(f"{column} is NaN", _indices(nan), lambda row: f"{column}: {_NAN}")
    return _null_where(typed, nan)


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

    if "timestamp" in columns and len(columns["timestamp"]) > 1:
        stamps = columns["timestamp"]
        current, previous = stamps.slice(1), stamps.slice(0, len(stamps) - 1)

        def stamp(row: int) -> str:
            return iso(stamps[row].as_py())

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


def _read_csv(path: Path, display: str, kind: Kind) -> tuple[Any, list[Problem]]:
    report = _Report(display, first_line=2)
    try:
        data = path.read_bytes()
    except OSError as exc:
        report.file(f"cannot be read: {exc.strerror or exc}")
        return None, report.problems
    if data.startswith(b"PAR1"):
        report.file("not a CSV file: it is a Parquet file (name it .parquet)")
        return None, report.problems
    if b"\0" in data[:65536]:
        report.file("not a CSV file: it holds binary data")
        return None, report.problems
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        report.file(f"not a CSV file: byte {exc.start + 1} is not UTF-8 text", data.count(b"\n", 0, exc.start) + 1)
        return None, report.problems
    header_line = text.split("\n", 1)[0].rstrip("\r")
    if not header_line.strip():
        report.file(f"no header: the first line names the columns ({','.join(COLUMNS[kind])})", 1)
        return None, report.problems
    header = next(csv.reader([header_line]))
    present = _check_header(header, kind, report, 1)

    cells = _read_csv_quickly(data, text, header)
    if cells is None:
        cells, report.lines = _read_csv_slowly(text, header, report)

    columns: dict[str, Any] = {}
    for index, name in enumerate(header):
        if name not in present or name in columns:
            continue
        values = cells[index]
        columns[name] = _timestamps_from_text(values, report) if name == "timestamp" else _numbers_from_text(name, values, report)
    _check_values(kind, columns, report)
    return (_table(kind, columns) if not report.problems else None), report.problems


def _read_csv_quickly(data: bytes, text: str, header: list[str]) -> list[Any] | None:
    """Every cell as text, row i on line i + 2; None when that may not hold (quoted cells, blank or ragged lines)."""
    body = text.split("\n", 1)[1] if "\n" in text else ""
    if '"' in text or re.search(r"(^|\n)[ \t]*\r?(\n|$)", body.rstrip("\r\n")) or body.endswith(("\n\n", "\n\r\n")):
        return None
    ragged: list[Any] = []

    def skip(row: Any) -> str:
        ragged.append(row)
        return "skip"

    try:
        table = pacsv.read_csv(
            pa.py_buffer(data),
            parse_options=pacsv.ParseOptions(invalid_row_handler=skip,
                                             ignore_empty_lines=False),
            convert_options=pacsv.ConvertOptions(column_types={name: pa.string() for name in header},
                                                 strings_can_be_null=False, quoted_strings_can_be_null=False),
        )
    except pa.ArrowInvalid:
        return None
    if ragged or table.num_columns != len(header):
        return None
    return [table.column(index).combine_chunks() for index in range(len(header))]


def _read_csv_slowly(text: str, header: list[str], report: _Report) -> tuple[list[Any], list[int]]:
    """Every cell as text with its row's line: the path for files with quoted cells, blank or ragged lines."""
    cells: list[list[str]] = [[] for _ in header]
    lines: list[int] = []
    reader = csv.reader(io.StringIO(text, newline=""))
    next(reader, None)
    after = reader.line_num
    for row in reader:
        line, after = after + 1, reader.line_num
        if not row or (len(row) == 1 and not row[0].strip()):
            report.file("a blank line (a row with no cells)", line)
        elif len(row) != len(header):
            report.file(f"{len(row)} cells where the header has {len(header)} ({','.join(header)})", line)
        else:
            for column, cell in zip(cells, row, strict=True):
                column.append(cell)
            lines.append(line)
    return [pa.array(column, pa.string()) for column in cells], lines


def _read_parquet(path: Path, display: str, kind: Kind) -> tuple[Any, list[Problem]]:
    report = _Report(display, first_line=1)
    try:
        with path.open("rb") as f:
            head = f.read(4)
            f.seek(max(0, path.stat().st_size - 4))
            tail = f.read(4)
    except OSError as exc:
        report.file(f"cannot be read: {exc.strerror or exc}")
        return None, report.problems
    if head != b"PAR1" or tail != b"PAR1":
        text = head.lstrip(b"\xef\xbb\xbf")[:1].isalpha()
        report.file("not a Parquet file" + (" (it begins like text: name it .csv if it is CSV)" if text else ""))
        return None, report.problems
    try:
        table = pq.read_table(path)
    except (pa.ArrowException, OSError) as exc:
        report.file(f"cannot be read as Parquet: {exc}")
        return None, report.problems
    present = _check_header(table.column_names, kind, report, 0)
    columns: dict[str, Any] = {}
    for index, name in enumerate(table.column_names):
        if name not in present or name in columns:
            continue
        values = table.column(index).combine_chunks()
        typed = _timestamps_from_parquet(values, report) if name == "timestamp" else _numbers_from_parquet(name, values, report)
        if typed is not None:
            columns[name] = typed
    _check_values(kind, columns, report)
    return (_table(kind, columns) if not report.problems else None), report.problems


def read_file(path: Path, kind: Kind, display: str | None = None) -> tuple[Any, list[Problem]]:
    """One file's rows as a typed Arrow table, or None and its problems (never raises for bad data).

    The table has the kind's columns in `COLUMNS` order, `timestamp` as timestamp[us, tz=UTC], the rest float64.
    """
    display = display or str(path)
    fmt = SUFFIXES.get(path.suffix)
    if fmt == "csv":
        return _read_csv(path, display, kind)
    if fmt == "parquet":
        return _read_parquet(path, display, kind)
    return None, [Problem(display, 0, 0, "", f"not a Parquet or CSV file (name it .parquet or .csv){_suffix_hint(path)}")]


def _suffix_hint(path: Path) -> str:
    return f": '{path.suffix}' is not a data file's suffix" if path.suffix else ""


# ---------------------------------------------------------------------------------------------------------------
# Where a symbol's data is: one file, or a folder of parts


@dataclass(frozen=True)
class Source:
    """A symbol's data of one kind: `path` is its file, or its parts folder whose `parts` are read in name order."""

    kind: Kind
    symbol: str
    path: Path
    parts: tuple[Path, ...] = ()

    @property
    def is_folder(self) -> bool:
        return self.path.is_dir()

    @property
    def files(self) -> tuple[Path, ...]:
        return self.parts if self.is_folder else (self.path,)


def _is_hidden(path: Path) -> bool:
    return path.name.startswith(".")  # a writer's temporary file, or an editor's: never data


def _source(kind: Kind, symbol: str, path: Path, display: Callable[[Path], str]) -> tuple[Source, list[Problem]]:
    if not path.is_dir():
        return Source(kind, symbol, path), []
    problems: list[Problem] = []
    parts: list[Path] = []
    for entry in sorted(path.iterdir()):
        if _is_hidden(entry):
            continue
        if entry.is_dir() or entry.suffix not in SUFFIXES:
            problems.append(Problem(display(entry), 0, 0, "", f"not a Parquet or CSV part file{_suffix_hint(entry)}"))
        else:
            parts.append(entry)
    return Source(kind, symbol, path, tuple(parts)), problems


def locate(folder: Path, kind: Kind, symbol: str) -> Source | None:
    """Where `symbol`'s `kind` data is in `folder`, or None; DataError when it is in two places at once."""
    stem = file_stem(symbol)
    base = folder / kind
    found = [p for p in (base / f"{stem}{suffix}" for suffix in SUFFIXES) if p.is_file()]
    if (base / stem).is_dir():
        found.append(base / stem)
    if len(found) > 1:
        raise DataError(_two_sources(found, kind, symbol, str))
    if not found:
        return None
    source, problems = _source(kind, symbol, found[0], str)
    if problems:
        raise DataError(problems)
    return source


def _two_sources(found: Sequence[Path], kind: Kind, symbol: str, display: Callable[[Path], str]) -> list[Problem]:
    names = " and ".join(display(p) for p in found)
    return [Problem(display(p), 0, 0, "", f"{symbol} has {kind} in two places ({names}): keep one") for p in found]


def scan(folder: Path) -> tuple[list[Source], list[Problem]]:
    """Every symbol's sources in a data folder, and every problem with its names and layout."""
    problems: list[Problem] = []
    if not folder.is_dir():
        return [], [Problem(str(folder), 0, 0, "", "no such data folder")]
    kinds = [kind for kind in KINDS if (folder / kind).is_dir()]
    if not kinds:
        return [], [Problem(str(folder), 0, 0, "", "holds neither a bars/ nor a quotes/ folder (docs/data.md)")]

    def display(path: Path) -> str:
        return str(path)

    sources: list[Source] = []
    for kind in kinds:
        by_symbol: dict[str, list[Path]] = {}
        for entry in sorted((folder / kind).iterdir()):
            if _is_hidden(entry):
                continue
            if entry.is_file() and entry.suffix not in SUFFIXES:
                problems.append(Problem(display(entry), 0, 0, "", f"not a Parquet or CSV file{_suffix_hint(entry)}"))
                continue
            stem = entry.name if entry.is_dir() else entry.stem
            try:
                symbol = symbol_of_stem(stem)
            except ValueError as exc:
                problems.append(Problem(display(entry), 0, 0, "", str(exc)))
                continue
            by_symbol.setdefault(symbol, []).append(entry)
        for symbol, found in sorted(by_symbol.items()):
            if len(found) > 1:
                problems.extend(_two_sources(found, kind, symbol, display))
                continue
            source, found_problems = _source(kind, symbol, found[0], display)
            problems.extend(found_problems)
            sources.append(source)
    return sources, problems


def read_source(source: Source) -> tuple[Any, list[Problem]]:
    """A symbol's rows as one typed table (its parts joined in name order), or None and every problem."""
    tables: list[Any] = []
    problems: list[Problem] = []
    previous: tuple[Path, Any] | None = None
    for path in source.files:
        table, found = read_file(path, source.kind)
        problems.extend(found)
        if table is None:
            previous = None
            continue
        if previous is not None and len(table) and len(previous[1]):
            last, first = previous[1].column("timestamp")[-1].as_py(), table.column("timestamp")[0].as_py()
            if first <= last:
                line = 2 if path.suffix == ".csv" else 1
                problems.append(Problem(str(path), line, 0, "row 1",
                                        f"timestamp {iso(first)} is not after the last row of {previous[0].name} ({iso(last)}): "
                                        "parts are read in name order, each after the one before"))
        previous = (path, table)
        tables.append(table)
    if problems:
        return None, problems
    if not tables:
        return empty_table(source.kind), []
    return (tables[0] if len(tables) == 1 else pa.concat_tables(tables)), []


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
        if len(item) != len(names):
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
            number: float | None = None
            if value is not None:
                try:
                    number = float(value)
                except (TypeError, ValueError):
                    unreadable.setdefault(f"{name} is not a number", {})[row] = f"{name}: {value!r} is not a number"
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


def _csv_text(table: Any, kind: Kind, header: bool) -> str:
    names = COLUMNS[kind]
    out = io.StringIO()
    if header:
        out.write(",".join(names) + "\n")
    stamps = [iso(when) for when in table.column("timestamp").cast(_TIMESTAMP_PY).to_pylist()]
    columns = [[repr(v) for v in table.column(name).to_pylist()] for name in names[1:]]
    out.writelines(",".join(cells) + "\n" for cells in zip(stamps, *columns, strict=True))
    return out.getvalue()


def _replace(path: Path, write: Callable[[Path], object], fsync: bool) -> None:
    """`write` a hidden temporary file beside `path`, then rename it over `path`: all of it lands, or none."""
    path.parent.mkdir(parents=True, exist_ok=True)
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
        payload = before + _csv_text(table, kind, header=not before).encode("utf-8")
        _replace(path, lambda p: p.write_bytes(payload), fsync)
    else:
        _replace(path, lambda p: pq.write_table(table, str(p)), fsync)


PART_NAME = "part-{:06d}"


def next_part(folder: Path, fmt: Format) -> Path:
    """The next part file of a parts folder: `part-000001.parquet`, then one past the highest number there."""
    numbers = [int(m[1]) for p in folder.iterdir() if (m := re.match(r"^part-(\d+)\.", p.name))] if folder.is_dir() else []
    return folder / f"{PART_NAME.format(max(numbers, default=0) + 1)}.{fmt}"


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
        write_table(target, new, kind, fsync=fsync, before=target.read_bytes())
    else:
        write_table(target, pa.concat_tables([existing, new]), kind, fsync=fsync)
    return target


def write_bars(folder: Path, symbol: str, rows: Iterable[Bar | Sequence[Any]], fmt: Format | None = None, *,
               fsync: bool = True) -> Path:
    """Append `rows` to `symbol`'s bars in `folder` (creating the file, Parquet unless `fmt` says), atomically.

    Resumable: what is there is read first (strictly), and rows not after its last timestamp are refused, so a
    fetch that stopped can start again from `last_timestamp()`. Returns the file (or part) written.
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
