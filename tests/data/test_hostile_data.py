"""Hostile data files and rows the earlier cases did not cover: each is refused at its file and row (or line), in
a few lines and a moment, never with a traceback, never accepted as something it is not (docs/data.md)."""

from __future__ import annotations

import time
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa  # type: ignore[import-untyped]  # pyarrow ships no type hints
import pyarrow.parquet as pq  # type: ignore[import-untyped]
import pytest

from engine.data.dataset import DataSet
from engine.data.errors import DataError
from engine.data.files import MAX_ROWS_PER_CHECK, read_file, rows_to_table, scan, write_bars
from engine.data.records import Bar

T0 = datetime(2026, 11, 23, 14, 30, tzinfo=timezone.utc)
T0_US = (T0 - datetime(1970, 1, 1, tzinfo=timezone.utc)) // timedelta(microseconds=1)
BARS = "timestamp,open,high,low,close,volume\n"


def row(minute: int) -> str:
    return f"{(T0 + timedelta(minutes=minute)):%Y-%m-%dT%H:%M:%S}Z,100,101,99,100.5,10\n"


def refused(folder: Path) -> list[str]:
    """Every problem's one-line form; fails the test if the folder is accepted."""
    with pytest.raises(DataError) as excinfo:
        DataSet.open(folder)
    return [p.headline for p in excinfo.value.problems]


def put(folder: Path, relative: str, text: str) -> Path:
    path = folder / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def problems_of(path: Path, kind: Any = "bars") -> list[str]:
    table, problems = read_file(path, kind)
    assert table is None, "accepted"
    return [p.headline for p in problems]


# --- names ----------------------------------------------------------------------------------------------------


def test_a_file_named_with_a_newline_is_refused_not_read_as_a_symbol(tmp_path: Path) -> None:
    put(tmp_path, "bars/AAPL\n.csv", BARS + row(0))
    put(tmp_path, "bars/\x1b[2JSPY.csv", BARS + row(0))  # an escape sequence would clear the terminal
    assert refused(tmp_path) == [
        f"{tmp_path}/bars/AAPL\\n.csv:0:0: 'AAPL\\n' is not a symbol's file name (upper case letters and digits, e.g. AAPL or BTC-USD)",
        f"{tmp_path}/bars/\\x1b[2JSPY.csv:0:0: '\\x1b[2JSPY' is not a symbol's file name (upper case letters and digits, "
        "e.g. AAPL or BTC-USD)",
    ]


def test_a_part_named_with_a_newline_keeps_its_problem_on_one_line(tmp_path: Path) -> None:
    put(tmp_path, "bars/SPY/part\n1.csv", BARS + row(0).replace(",100.5,", ",-1,"))
    problems = refused(tmp_path)
    assert len(problems) == 1 and "\n" not in problems[0]
    assert problems[0].startswith(f"{tmp_path}/bars/SPY/part\\n1.csv:2:0: row 1: close: -1.0 is not a positive price")


def test_a_file_given_as_the_data_folder_is_said_to_be_a_file(tmp_path: Path) -> None:
    path = put(tmp_path, "data.csv", BARS + row(0))
    assert scan(path)[1][0].headline == f"{path}:0:0: is not a folder: a data folder holds bars/ and quotes/"
    assert scan(tmp_path / "nowhere")[1][0].headline == f"{tmp_path}/nowhere:0:0: no such data folder"


# --- parts ----------------------------------------------------------------------------------------------------


def test_an_empty_part_does_not_hide_parts_out_of_order(tmp_path: Path) -> None:
    # The check compared each part with the one before only: an empty part between let an earlier row through,
    # and the replay got a series out of time order without a word.
    put(tmp_path, "bars/AAPL/part-000001.csv", BARS + row(1))
    put(tmp_path, "bars/AAPL/part-000002.csv", BARS)
    put(tmp_path, "bars/AAPL/part-000003.parquet", BARS)
    (tmp_path / "bars/AAPL/part-000003.parquet").unlink()
    put(tmp_path, "bars/AAPL/part-000004.csv", BARS + row(0))
    assert refused(tmp_path) == [
        f"{tmp_path}/bars/AAPL/part-000004.csv:2:0: row 1: timestamp 2026-11-23T14:30:00Z is not after the last row of "
        "part-000001.csv (2026-11-23T14:31:00Z): parts are read in name order, each after the one before"
    ]
    put(tmp_path, "bars/AAPL/part-000004.csv", BARS + row(2))
    assert len(DataSet.open(tmp_path).table("bars", "AAPL")) == 2


# --- Parquet --------------------------------------------------------------------------------------------------


def test_a_parquet_file_with_no_column_at_all(tmp_path: Path) -> None:
    # IndexError traceback before: the "is the first line data?" check read the first of no column names
    pq.write_table(pa.table({}), tmp_path / "AAPL.parquet")
    assert problems_of(tmp_path / "AAPL.parquet")[0] == (
        f"{tmp_path}/AAPL.parquet:0:0: missing column 'timestamp' (bars files have timestamp, open, high, low, close, volume)"
    )


def test_pandas_nat_in_nanoseconds_is_one_missing_time_not_also_finer_than_a_microsecond(tmp_path: Path) -> None:
    stamps = pa.array([-(2**63), T0_US * 1000 + 1, T0_US * 1000 + 60_000_000_000], pa.timestamp("ns", tz="UTC"))
    pq.write_table(pa.table({"timestamp": stamps, "bid": [1.0] * 3, "ask": [2.0] * 3}), tmp_path / "SPY.parquet")
    assert sorted(problems_of(tmp_path / "SPY.parquet", "quotes")) == [
        f"{tmp_path}/SPY.parquet:1:0: row 1: timestamp -9223372036854775808 (the smallest 64-bit integer: pandas' NaT, "
        "a missing time) is out of range: timestamps lie in the years 1900 to 2199",
        f"{tmp_path}/SPY.parquet:2:0: row 2: timestamp: {T0_US * 1000 + 1} ns is finer than a microsecond",
    ]


# --- CSV: many problems are a few lines, quickly ----------------------------------------------------------------


def test_a_million_blank_lines_are_counted_not_listed(tmp_path: Path) -> None:
    # One problem a line before: 40 million blank lines took 75 s and gigabytes to say the same thing. (A row after
    # them: blank lines at the end of a file are its end, not a problem.)
    path = put(tmp_path, "AAPL.csv", BARS + row(0) + "\n" * 1_000_000 + row(1))
    started = time.monotonic()
    problems = problems_of(path)
    assert time.monotonic() - started < 10
    assert len(problems) == MAX_ROWS_PER_CHECK + 1
    assert problems[0] == f"{path}:3:0: a blank line (a row with no cells)"
    assert problems[-1] == (
        f"{path}:{3 + MAX_ROWS_PER_CHECK}:0: and {1_000_000 - MAX_ROWS_PER_CHECK} more lines where "
        f"the line is blank (only the first {MAX_ROWS_PER_CHECK} are listed)"
    )


def test_ragged_lines_are_counted_not_listed(tmp_path: Path) -> None:
    path = put(tmp_path, "AAPL.csv", BARS + row(0) + "2026-11-23T14:31:00Z,1,2\n" * 30 + "2026-11-23T14:32:00Z,1,2,3,4,5,6\n")
    problems = problems_of(path)
    assert problems[0] == f"{path}:3:0: 3 cells where the header has 6 (timestamp,open,high,low,close,volume)"
    assert problems[-1] == (
        f"{path}:{3 + MAX_ROWS_PER_CHECK}:0: and 11 more lines where the line has another number of "
        f"cells than the header (only the first {MAX_ROWS_PER_CHECK} are listed)"
    )
    assert len(problems) == MAX_ROWS_PER_CHECK + 1


def test_a_header_of_many_unknown_names_is_a_few_lines(tmp_path: Path) -> None:
    path = put(tmp_path, "AAPL.csv", ",".join(f"c{i}" for i in range(200_000)) + "\n" + ",".join(["1"] * 200_000) + "\n")
    problems = problems_of(path)
    unknown = [p for p in problems if "unknown column" in p]
    assert len(unknown) == MAX_ROWS_PER_CHECK + 1
    assert unknown[-1] == f"{path}:1:0: and {200_000 - MAX_ROWS_PER_CHECK} more unknown columns (only the first 20 are listed)"
    assert sum("missing column" in p for p in problems) == 6 and len(problems) == MAX_ROWS_PER_CHECK + 7


def test_a_huge_cell_is_shown_cut(tmp_path: Path) -> None:
    path = put(
        tmp_path,
        "AAPL.csv",
        BARS + "2026-11-23T14:30:00Z," + "x" * 100_000 + ",2,0.5,1.5,10\n" + "y" * 100_000 + ",1,2,0.5,1.5,10\n",
    )
    problems = problems_of(path)
    assert max(len(p) for p in problems) < 300
    # the cut goes through a long word, which could hold a key: masked whole (engine.core.journal.clipped)
    assert f"{path}:2:0: row 1: open: '{'*' * 57}...' is not a number" in problems
    path = put(tmp_path, "AAPL.csv", "timestamp,open,high,low,close,volume," + "z" * 100_000 + "\n" + row(0))
    problems = problems_of(path)
    assert max(len(p) for p in problems) < 300
    assert f"{path}:2:0: 6 cells where the header has 7 ({'timestamp,open,high,low,close,volume,' + '*' * 20}...)" in problems


def test_impossible_dates_in_a_large_file_are_found_at_once(tmp_path: Path) -> None:
    # Found one row at a time before: 600,000 rows took ten seconds.
    stamps = [f"2026-11-23T14:30:00.{i:06d}Z" for i in range(200_000)]
    stamps[1000] = "2026-02-30T14:30:00.001000Z"
    stamps[2000] = "2026-12-31T23:59:60Z"
    stamps[3000] = "2026-13-01 00:00:00+00:00"
    path = put(tmp_path, "AAPL.csv", BARS + "".join(f"{s},1,2,0.5,1.5,10\n" for s in stamps))
    started = time.monotonic()
    problems = problems_of(path)
    assert time.monotonic() - started < 5
    assert problems[:3] == [
        f"{path}:1002:0: row 1001: timestamp: '2026-02-30T14:30:00.001000Z' is not a real date and time",
        f"{path}:2002:0: row 2001: timestamp: '2026-12-31T23:59:60Z' is not a real date and time",
        f"{path}:3002:0: row 3001: timestamp: '2026-13-01 00:00:00+00:00' is not a real date and time",
    ]
    assert len(problems) == 3


def test_a_quoted_timestamp_ending_in_a_newline_is_not_called_another_offset(tmp_path: Path) -> None:
    """The newline is shown escaped: a problem is always one line (`Problem.headline`)."""
    path = put(tmp_path, "AAPL.csv", BARS + '"2026-11-23T14:30:00Z\n",1,2,0.5,1.5,10\n')
    assert problems_of(path) == [
        f"{path}:2:0: row 1: timestamp: '2026-11-23T14:30:00Z\\n' is not an ISO 8601 timestamp with a time zone, e.g. 2026-11-23T14:30:00Z"
    ]


# --- rows to write ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("value", "message"), [
    (True, "open: True is not a number"),  # float(True) is 1.0: a price of 1 from a flag
    (np.bool_(True), "open: np.True_ is not a number"),
    ("1_0", "open: '1_0' is not a number"),  # float('1_0') is 10.0
    (b"1", "open: b'1' is not a number"),
    (10**400, f"open: {'1' + '0' * 56}... is too large to be read exactly as a number (beyond ±2**53)"),  # OverflowError
    (2**53 + 1, "open: 9007199254740993 is too large to be read exactly as a number (beyond ±2**53)"),  # rounded
    (np.uint64(2**64 - 1), "open: np.uint64(18446744073709551615) is too large to be read exactly as a number"
                           " (beyond ±2**53)"),
], ids=["bool", "numpy_bool", "text", "bytes", "int_past_float", "int_past_2**53", "uint64"])  # fmt: skip
def test_a_row_value_that_is_not_a_number_is_refused_not_converted(tmp_path: Path, value: Any, message: str) -> None:
    with pytest.raises(DataError) as refused_rows:
        write_bars(tmp_path, "AAPL", [(T0, value, 2, 0.5, 1, 10)])
    assert refused_rows.value.problems[0].headline == (f"{tmp_path}/bars/AAPL.parquet (rows to write):1:0: row 1: {message}")
    assert not (tmp_path / "bars").exists()


def test_numbers_of_every_kind_are_still_written() -> None:
    table = rows_to_table([(T0, 1, np.float32(2.5), Decimal("0.5"), np.int64(1), 2**53)], "bars", "x")
    assert table.to_pylist()[0]["high"] == 2.5 and table.to_pylist()[0]["volume"] == 2.0**53


@pytest.mark.parametrize("item", [5, None, "abcdef"])
def test_a_row_that_is_not_a_row_is_refused_not_a_traceback(item: Any) -> None:
    with pytest.raises(DataError) as refused_rows:
        rows_to_table([Bar(T0, 1, 2, 0.5, 1, 0), item], "bars", "x")
    assert [p.headline for p in refused_rows.value.problems] == [
        f"x:2:0: row 2: {item!r} is not a row (a Bar, a Quote or a tuple of values)"
    ]
