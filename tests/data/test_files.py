"""One symbol's file: round trips in both formats, names, appending, and every bad-data case at its file and row."""

from __future__ import annotations

import gzip
import io
import os
import resource
import subprocess
import sys
import zipfile
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pyarrow as pa  # type: ignore[import-untyped]  # pyarrow ships no type hints
import pyarrow.parquet as pq  # type: ignore[import-untyped]
import pytest

from engine.data.dataset import DataSet
from engine.data.errors import DataError
from engine.data.files import (
    MAX_ROWS_PER_CHECK,
    last_timestamp,
    read_bars,
    read_quotes,
    write_bars,
    write_quotes,
)
from engine.data.records import Bar, Quote, file_stem, symbol_of_stem
from tests.conftest import ProjectCopy

T0 = datetime(2026, 11, 23, 14, 30, tzinfo=timezone.utc)
HEADER = "timestamp,open,high,low,close,volume\n"


def bars(n: int, start: datetime = T0, step: timedelta = timedelta(minutes=1)) -> list[Bar]:
    """Bars with awkward values: fractions that are not exact in binary, microseconds in some timestamps."""
    rows = []
    for i in range(n):
        price = 100 + i * 0.1 + 0.2
        rows.append(Bar(start + i * step + timedelta(microseconds=7 * (i % 3)), price, price + 0.3, price - 0.3, price + 0.1, 1e3 + i / 3))
    return rows


def errors(excinfo: pytest.ExceptionInfo[DataError]) -> list[str]:
    return [p.headline for p in excinfo.value.problems]


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


# --- names ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("symbol", "stem"), [("AAPL", "AAPL"), ("BTC/USD", "BTC-USD"), ("BRK.B", "BRK.B"),
                                              ("AAPL261120C00190000", "AAPL261120C00190000"), ("ETH/BTC", "ETH-BTC")])
def test_a_symbol_and_its_file_name_map_both_ways(symbol: str, stem: str) -> None:
    assert file_stem(symbol) == stem
    assert symbol_of_stem(stem) == symbol


# with a final newline: `$` matches before one, and "AAPL\n.csv" was read as the symbol "AAPL\n"
@pytest.mark.parametrize("bad", ["aapl", "BTC/USD/X", "", "../AAPL", "A B", "AAPL\n", "BTC/USD\n", "BRK.B\n"])
def test_a_name_no_symbol_maps_to_is_refused(bad: str) -> None:
    with pytest.raises(ValueError, match="symbol"):
        file_stem(bad)
    with pytest.raises(ValueError, match="file name"):
        symbol_of_stem(bad.replace("/", "-"))


def test_crypto_is_written_with_a_dash_and_read_back_with_a_slash(tmp_path: Path) -> None:
    path = write_bars(tmp_path, "BTC/USD", bars(3), "csv")
    assert path == tmp_path / "bars" / "BTC-USD.csv"
    data = DataSet.open(tmp_path)
    assert data.symbols == ("BTC/USD",) and data.bar_symbols == ("BTC/USD",) and data.quote_symbols == ()
    assert read_bars(tmp_path, "BTC/USD") == bars(3)


# --- round trips ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", ["parquet", "csv"])
def test_bars_and_quotes_round_trip_exactly(tmp_path: Path, fmt: str) -> None:
    rows = bars(50)
    quotes = [Quote(T0 + timedelta(seconds=i, microseconds=i), 10 + i / 7, 10 + i / 7 + 0.01) for i in range(50)]
    assert write_bars(tmp_path, "AAPL", rows, fmt).suffix == f".{fmt}"  # type: ignore[arg-type]
    write_quotes(tmp_path, "AAPL", quotes, fmt)  # type: ignore[arg-type]
    back = read_bars(tmp_path, "AAPL")
    assert back == rows
    assert all(type(b.open) is float and b.timestamp.tzinfo is timezone.utc for b in back)
    assert read_quotes(tmp_path, "AAPL") == quotes
    assert last_timestamp(tmp_path, "bars", "AAPL") == rows[-1].timestamp


def test_csv_is_written_in_the_documented_text_form(tmp_path: Path) -> None:
    path = write_bars(tmp_path, "AAPL", [Bar(T0, 100.0, 101.5, 99.25, 100.5, 1200.0),
                                         Bar(T0 + timedelta(minutes=1, microseconds=5), 100.5, 101, 100, 101, 10)], "csv")
    assert path.read_text() == (HEADER + "2026-11-23T14:30:00Z,100.0,101.5,99.25,100.5,1200.0\n"
                                "2026-11-23T14:31:00.000005Z,100.5,101.0,100.0,101.0,10.0\n")


def test_a_hand_written_csv_is_read_with_any_column_order_a_bom_and_crlf(tmp_path: Path) -> None:
    write(tmp_path / "quotes" / "SPY.csv", "\ufeffask,timestamp,bid\r\n101,2026-11-23 14:30:00+00:00,100\r\n102,2026-11-23T14:30:01.5Z,101")
    assert read_quotes(tmp_path, "SPY") == [Quote(T0, 100.0, 101.0), Quote(T0 + timedelta(seconds=1.5), 101.0, 102.0)]


def test_a_parquet_file_from_another_tool_is_read_whatever_its_units(tmp_path: Path) -> None:
    (tmp_path / "bars").mkdir()
    pq.write_table(pa.table({
        "timestamp": pa.array([1_795_444_200_000_000_000, 1_795_444_260_000_000_000], pa.timestamp("ns", tz="UTC")),
        "open": pa.array([100, 101], pa.int32()), "high": [101.0, 102.0], "low": pa.array([99.0, 100.0], pa.float32()),
        "close": [100.5, 101.5], "volume": pa.array([5, 6], pa.int64()),
    }), tmp_path / "bars" / "AAPL.parquet")
    assert read_bars(tmp_path, "AAPL") == [Bar(T0, 100.0, 101.0, 99.0, 100.5, 5.0),
                                           Bar(T0 + timedelta(minutes=1), 101.0, 102.0, 100.0, 101.5, 6.0)]


def test_a_file_with_a_header_only_has_no_rows(tmp_path: Path) -> None:
    write(tmp_path / "bars" / "AAPL.csv", HEADER)
    data = DataSet.open(tmp_path)
    assert data.rows("bars", "AAPL") == 0 and data.bars("AAPL") == [] and data.time_range() is None


# --- appending ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", ["parquet", "csv"])
def test_appending_adds_rows_after_the_last_and_refuses_older_ones(tmp_path: Path, fmt: str) -> None:
    rows = bars(10)
    path = write_bars(tmp_path, "AAPL", rows[:6], fmt)  # type: ignore[arg-type]
    assert write_bars(tmp_path, "AAPL", rows[6:]) == path  # the format of the file already there
    assert read_bars(tmp_path, "AAPL") == rows
    before = path.read_bytes()
    target = f"{path} (rows to write)"
    later = bars(2, start=rows[-1].timestamp + timedelta(minutes=1))
    for stale, refusal in (
        ([rows[-1]], f"{target}:1:0: row 1: timestamp 2026-11-23T14:39:00Z is not after the last row already stored "
                     "(2026-11-23T14:39:00Z): appending refuses rows older than what is there"),
        ([rows[3]], f"{target}:1:0: row 1: timestamp 2026-11-23T14:33:00Z is not after the last row already stored "
                    "(2026-11-23T14:39:00Z): appending refuses rows older than what is there"),
        ([*later, rows[0]], f"{target}:3:0: row 3: timestamp 2026-11-23T14:30:00Z is earlier than row 2's "
                            "(2026-11-23T14:41:00.000007Z): rows must be in time order"),
    ):
        with pytest.raises(DataError) as refused:
            write_bars(tmp_path, "AAPL", stale)
        assert errors(refused) == [refusal]
        assert path.read_bytes() == before  # nothing of a refused append lands
    other = "csv" if fmt == "parquet" else "parquet"
    with pytest.raises(DataError, match=f"cannot append {other} rows"):
        write_bars(tmp_path, "AAPL", bars(1, start=T0 + timedelta(hours=1)), other)  # type: ignore[arg-type]


def test_appending_to_a_hand_written_csv_without_a_final_line_end(tmp_path: Path) -> None:
    path = write(tmp_path / "bars" / "AAPL.csv", HEADER + "2026-11-23T14:30:00Z,1,2,0.5,1.5,0")
    write_bars(tmp_path, "AAPL", [Bar(T0 + timedelta(minutes=1), 1, 2, 1, 2, 3)])
    assert path.read_text().splitlines()[1:] == ["2026-11-23T14:30:00Z,1,2,0.5,1.5,0", "2026-11-23T14:31:00Z,1.0,2.0,1.0,2.0,3.0"]


def test_appending_to_a_csv_with_its_columns_in_another_order_writes_them_in_that_order(tmp_path: Path) -> None:
    # close and open swapped in the header: rows written in the format's own order went under the wrong names,
    # each new bar's open read as its close and the other way round, without a word.
    path = write(tmp_path / "bars" / "AAPL.csv", "timestamp,close,high,low,open,volume\n2026-11-23T14:30:00Z,1.5,2,0.5,1,0\n")
    write_bars(tmp_path, "AAPL", [Bar(T0 + timedelta(minutes=1), 1.25, 2, 1, 1.75, 3)], "csv")
    assert path.read_text().splitlines()[2] == "2026-11-23T14:31:00Z,1.75,2.0,1.0,1.25,3.0"
    assert read_bars(tmp_path, "AAPL")[1] == Bar(T0 + timedelta(minutes=1), 1.25, 2, 1, 1.75, 3)


@pytest.mark.parametrize("end", ["\n", "\n\n", "\n,,,,,\n", "\r\n,,,,,\r\n\r\n", "\n\"\",,,,,"])
def test_appending_after_empty_lines_at_the_end_of_a_csv_keeps_it_readable(tmp_path: Path, end: str) -> None:
    # Empty lines after the last row are the end of the file; rows appended after them made them lines before a
    # row, and the file unreadable.
    path = write(tmp_path / "bars" / "AAPL.csv", HEADER + "2026-11-23T14:30:00Z,1,2,0.5,1.5,0" + end)
    write_bars(tmp_path, "AAPL", [Bar(T0 + timedelta(minutes=1), 1, 2, 1, 2, 3)])
    assert [bar.timestamp for bar in read_bars(tmp_path, "AAPL")] == [T0, T0 + timedelta(minutes=1)]
    assert path.read_text().splitlines()[-1] == "2026-11-23T14:31:00Z,1.0,2.0,1.0,2.0,3.0"


def test_appending_to_a_broken_file_is_refused_with_its_problems(tmp_path: Path) -> None:
    write(tmp_path / "bars" / "AAPL.csv", HEADER + "2026-11-23T14:30:00Z,1,2,0.5,9,0\n")
    with pytest.raises(DataError, match=r"AAPL.csv:2:0: row 1: close 9.0 is outside"):
        write_bars(tmp_path, "AAPL", bars(1, start=T0 + timedelta(hours=1)))


def test_rows_to_write_are_checked_by_the_rules_files_are_read_by(tmp_path: Path) -> None:
    naive = datetime(2026, 11, 23, 14, 31)
    with pytest.raises(DataError) as refused:
        write_bars(tmp_path, "AAPL", [Bar(T0, 1, 2, 1, 1, 0), Bar(naive, 1, 2, 1, 1, 0), (T0 + timedelta(minutes=2), 1, 2, 3, 1, 0),
                                      (T0 + timedelta(minutes=3), "x", 2, 1, 1, 0), (T0,), (T0 + timedelta(minutes=4), 1, 2, 1, float("nan"), 0)])
    assert errors(refused) == [
        f"{tmp_path}/bars/AAPL.parquet (rows to write):2:0: row 2: timestamp: {naive!r} is not a timezone-aware datetime",
        f"{tmp_path}/bars/AAPL.parquet (rows to write):3:0: row 3: high 2.0 is below low 3.0",
        f"{tmp_path}/bars/AAPL.parquet (rows to write):4:0: row 4: open: 'x' is not a number",
        f"{tmp_path}/bars/AAPL.parquet (rows to write):5:0: row 5: 1 values where bars have 6",
        f"{tmp_path}/bars/AAPL.parquet (rows to write):6:0: row 6: close: NaN (a missing value, which the format does not allow)",
    ]
    assert not (tmp_path / "bars").exists()


def test_timestamps_in_another_zone_are_stored_as_the_same_instant_in_utc(tmp_path: Path) -> None:
    new_york = datetime(2026, 11, 23, 9, 30, tzinfo=ZoneInfo("America/New_York"))
    write_quotes(tmp_path, "AAPL", [Quote(new_york, 1, 2)], "csv")
    assert (tmp_path / "quotes" / "AAPL.csv").read_text().splitlines()[1] == "2026-11-23T14:30:00Z,1.0,2.0"


# --- bad data: each case at its file and row, every file's problems at once -----------------------------------


def test_every_problem_of_every_csv_file_at_once_at_its_line(tmp_path: Path) -> None:
    write(tmp_path / "bars" / "AAPL.csv", HEADER +
          "2026-11-23T14:30:00Z,100,101,99,100.5,1000\n"   # line 2, row 1: fine
          "2026-11-23T14:31:00Z,100,99,101,100,1000\n"     # row 2: high < low
          "2026-11-23T14:31:00Z,100,101,99,102,-5\n"       # row 3: duplicate timestamp, close above high, negative volume
          "2026-11-23T14:30:30Z,,101,99,NaN,1\n"           # row 4: unsorted, empty open, NaN close
          "2026-11-23T14:33:00,100,101,99,100,1\n"         # row 5: no time zone
          "2026-11-23T09:34:00-05:00,0,101,99,100,1\n"     # row 6: New York time with its offset (read), zero price
          "2026-02-30T14:35:00Z,abc,101,99,100,1\n"        # row 7: no such day, not a number
          "2026-11-23T14:36:00Z,98,101,99,100,1\n")        # row 8: open below low
    write(tmp_path / "quotes" / "BTC-USD.csv", "timestamp,bid,ask,size\n2026-11-23T14:30:00Z,10,9,1\n")
    write(tmp_path / "quotes" / "SPY.csv", "timestamp,bid\n2026-11-23T14:30:00Z,1\n\n2026-11-23T14:30:01Z\n")
    with pytest.raises(DataError) as bad:
        DataSet.open(tmp_path)
    aapl, btc, spy = (f"{tmp_path}/bars/AAPL.csv", f"{tmp_path}/quotes/BTC-USD.csv", f"{tmp_path}/quotes/SPY.csv")
    assert errors(bad) == [
        f"{aapl}:3:0: row 2: high 99.0 is below low 101.0",
        f"{aapl}:4:0: row 3: close 102.0 is outside the bar's range [low 99.0, high 101.0]",
        f"{aapl}:4:0: row 3: timestamp 2026-11-23T14:31:00Z is the same as row 2's (a duplicate)",
        f"{aapl}:4:0: row 3: volume: -5.0 is negative",
        f"{aapl}:5:0: row 4: close: NaN (a missing value, which the format does not allow)",
        f"{aapl}:5:0: row 4: open: empty cell",
        f"{aapl}:5:0: row 4: timestamp 2026-11-23T14:30:30Z is earlier than row 3's (2026-11-23T14:31:00Z): rows must be in time order",
        f"{aapl}:6:0: row 5: timestamp: '2026-11-23T14:33:00' has no time zone, so it could be UTC or New York time: end it "
        "with Z if it is UTC (2026-11-23T14:30:00Z), or with its offset (-05:00 in New York's winter, -04:00 in its summer)",
        f"{aapl}:7:0: row 6: open: 0.0 is not a positive price",
        f"{aapl}:8:0: row 7: open: 'abc' is not a number",
        f"{aapl}:8:0: row 7: timestamp: '2026-02-30T14:35:00Z' is not a real date and time",
        f"{aapl}:9:0: row 8: open 98.0 is outside the bar's range [low 99.0, high 101.0]",
        f"{btc}:1:0: unknown column 'size'; quotes files have timestamp, bid, ask",
        f"{btc}:2:0: row 1: bid 10.0 is above ask 9.0 (a crossed quote)",
        f"{spy}:1:0: missing column 'ask' (quotes files have timestamp, bid, ask)",
        f"{spy}:3:0: a blank line (a row with no cells)",
        f"{spy}:4:0: 1 cells where the header has 2 (timestamp,bid)",
    ]
    assert "Traceback" not in str(bad.value)


def test_an_unknown_column_suggests_the_one_meant(tmp_path: Path) -> None:
    write(tmp_path / "bars" / "AAPL.csv", "timestamp,open,high,low,close,vol\n")
    with pytest.raises(DataError) as bad:
        DataSet.open(tmp_path)
    assert errors(bad) == [
        f"{tmp_path}/bars/AAPL.csv:1:0: missing column 'volume' (bars files have timestamp, open, high, low, close, volume)",
        f"{tmp_path}/bars/AAPL.csv:1:0: unknown column 'vol' (did you mean 'volume'?); bars files have timestamp, open, high, low, close, volume",
    ]


def test_quoted_cells_keep_their_line_numbers(tmp_path: Path) -> None:
    write(tmp_path / "quotes" / "SPY.csv", 'timestamp,bid,ask\n"2026-11-23T14:30:00Z","1","2"\n"2026-11-23T14:30:01Z","-1","2"\n')
    with pytest.raises(DataError) as bad:
        DataSet.open(tmp_path)
    assert errors(bad) == [f"{tmp_path}/quotes/SPY.csv:3:0: row 2: bid: -1.0 is not a positive price"]


def parquet(path: Path, columns: dict[str, pa.Array]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.table(columns), path)


def test_every_problem_of_every_parquet_file_at_once_at_its_row(tmp_path: Path) -> None:
    us = pa.timestamp("us", tz="UTC")
    t = [1_795_444_200_000_000 + i * 60_000_000 for i in range(4)]
    parquet(tmp_path / "quotes" / "A.parquet", {"timestamp": pa.array([t[0], t[2], t[1], t[1]], us),
                                                "bid": pa.array([1.0, None, float("nan"), 1.0]), "ask": [2.0, 2.0, 2.0, float("inf")]})
    parquet(tmp_path / "quotes" / "B.parquet", {"timestamp": pa.array(t[:2], pa.timestamp("us")), "bid": [1.0, 1.0], "ask": [2.0, 2.0]})
    parquet(tmp_path / "quotes" / "C.parquet", {"timestamp": pa.array(t[:2], pa.timestamp("us", tz="America/New_York")),
                                                "bid": ["1", "1"], "ask": [2.0, 2.0], "__index_level_0__": [0, 1]})
    parquet(tmp_path / "quotes" / "D.parquet", {"timestamp": pa.array([t[0] * 1000 + 1], pa.timestamp("ns", tz="UTC")),
                                                "bid": [1.0], "ask": [2.0]})
    write(tmp_path / "quotes" / "E.parquet", "timestamp,bid,ask\n")
    with pytest.raises(DataError) as bad:
        DataSet.open(tmp_path)
    q = f"{tmp_path}/quotes"
    assert errors(bad) == [
        f"{q}/A.parquet:2:0: row 2: bid: empty cell",
        f"{q}/A.parquet:3:0: row 3: bid: NaN (a missing value, which the format does not allow)",
        f"{q}/A.parquet:3:0: row 3: timestamp 2026-11-23T14:31:00Z is earlier than row 2's (2026-11-23T14:32:00Z): rows must be in time order",
        f"{q}/A.parquet:4:0: row 4: ask: inf is not a finite number",
        f"{q}/A.parquet:4:0: row 4: timestamp 2026-11-23T14:31:00Z is the same as row 3's (a duplicate)",
        f"{q}/B.parquet:0:0: timestamp: the column (timestamp[us]) has no time zone, so it could be UTC or New York time: "
        "store instants, timestamp[us, tz=UTC] (pandas: df.index.tz_localize('UTC') if the times are UTC, "
        "tz_localize('America/New_York') if they are New York's)",
        f"{q}/C.parquet:0:0: bid: the column is string, not a number (text): store the numbers as float64 (pandas: pd.to_numeric)",
        f"{q}/C.parquet:0:0: unknown column '__index_level_0__' (a pandas index: write the frame with index=False); "
        "quotes files have timestamp, bid, ask",
        f"{q}/D.parquet:1:0: row 1: timestamp: 1795444200000000001 ns is finer than a microsecond",
        f"{q}/E.parquet:0:0: not a Parquet file (it begins like text: name it .csv if it is CSV)",
    ]


def test_files_that_are_not_data_and_names_that_are_not_symbols(tmp_path: Path) -> None:
    write(tmp_path / "bars" / "notes.txt", "hello")
    write(tmp_path / "bars" / "aapl.csv", HEADER)
    write(tmp_path / "bars" / "SPY.csv", HEADER)
    write(tmp_path / "bars" / "TSLA.csv.csv", HEADER)  # was told "rename it TSLA.CSV.csv", the symbol TSLA.CSV
    parquet(tmp_path / "bars" / "SPY.parquet", {"timestamp": pa.array([], pa.timestamp("us", tz="UTC"))})
    (tmp_path / "bars" / "QQQ.csv").write_bytes(b"PAR1\0\0\0PAR1")
    (tmp_path / "bars" / "IWM.csv").write_bytes(b"timestamp,open\n\xff\xfe\n")
    write(tmp_path / "bars" / ".AAPL.csv.123.tmp", "half a file")  # a writer's temporary file: never data
    with pytest.raises(DataError) as bad:
        DataSet.open(tmp_path)
    b = f"{tmp_path}/bars"
    assert errors(bad) == [
        f"{b}/IWM.csv:2:0: not a CSV file: byte 16 is not UTF-8 text",
        f"{b}/QQQ.csv:0:0: not a CSV file: it is a Parquet file (name it .parquet)",
        f"{b}/SPY.csv:0:0: SPY has bars in two places ({b}/SPY.csv and {b}/SPY.parquet): keep one",
        f"{b}/SPY.parquet:0:0: SPY has bars in two places ({b}/SPY.csv and {b}/SPY.parquet): keep one",
        f"{b}/TSLA.csv.csv:0:0: 'TSLA.csv' is not a symbol's file name (upper case letters and digits, e.g. AAPL or "
        "BTC-USD): rename it TSLA.csv",
        f"{b}/aapl.csv:0:0: 'aapl' is not a symbol's file name (upper case letters and digits, e.g. AAPL or BTC-USD): "
        "rename it AAPL.csv",
        f"{b}/notes.txt:0:0: not a Parquet or CSV file: '.txt' is not a data file's suffix",
    ]


def test_a_folder_that_is_not_a_data_folder(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="no such data folder"):
        DataSet.open(tmp_path / "missing")
    with pytest.raises(DataError, match=r"holds neither a bars/ nor a quotes/ folder"):
        DataSet.open(tmp_path)
    (tmp_path / "bars").mkdir()
    with pytest.raises(DataError, match="holds no symbol's bars or quotes"):
        DataSet.open(tmp_path)


def test_a_thousand_bad_rows_are_counted_not_listed(tmp_path: Path) -> None:
    lines = "".join(f"2026-11-23T14:{i // 60:02d}:{i % 60:02d}Z,1,2,0.5,1,-1\n" for i in range(1000))
    write(tmp_path / "bars" / "AAPL.csv", HEADER + lines)
    with pytest.raises(DataError) as bad:
        DataSet.open(tmp_path)
    found = errors(bad)
    assert len(found) == MAX_ROWS_PER_CHECK + 1
    assert found[-1] == (f"{tmp_path}/bars/AAPL.csv:{MAX_ROWS_PER_CHECK + 2}:0: row {MAX_ROWS_PER_CHECK + 1}: and "
                         f"{1000 - MAX_ROWS_PER_CHECK} more rows where the volume is negative (only the first {MAX_ROWS_PER_CHECK} are listed)")


def test_parts_are_read_in_name_order_as_one_series(tmp_path: Path) -> None:
    rows = bars(6)
    write_bars(tmp_path, "AAPL", rows[:2], "csv")
    folder = tmp_path / "bars" / "AAPL"
    folder.mkdir()
    (tmp_path / "bars" / "AAPL.csv").rename(folder / "part-000001.csv")
    assert write_bars(tmp_path, "AAPL", rows[2:4]) == folder / "part-000002.csv"  # a parts folder grows by a part
    assert write_bars(tmp_path, "AAPL", rows[4:], "parquet") == folder / "part-000003.parquet"
    assert read_bars(tmp_path, "AAPL") == rows
    (folder / "part-000003.parquet").rename(folder / "part-000000.parquet")
    with pytest.raises(DataError) as bad:
        read_bars(tmp_path, "AAPL")
    assert errors(bad) == [f"{folder}/part-000001.csv:2:0: row 1: timestamp 2026-11-23T14:30:00Z is not after the last row of "
                           "part-000000.parquet (2026-11-23T14:35:00.000014Z): parts are read in name order, each after the one before"]


def test_leftovers_of_dead_writers_are_removed_and_an_impossible_pid_is_one(tmp_path: Path) -> None:
    """A temporary file a killed writer left is removed when its target is written again; one whose pid is past
    any real pid (a name made by hand) made every later write of the file fail with OverflowError."""
    import os

    from engine.data.files import remove_leftovers

    target = tmp_path / "AAPL.parquet"
    dead = tmp_path / ".AAPL.parquet.99999999999999999999.tmp"
    alive = tmp_path / f".AAPL.parquet.{os.getpid()}.tmp"
    for path in (dead, alive):
        path.write_bytes(b"half a file")
    other = tmp_path / ".AAPL.parquet.99999999999999999999.tmp\n"  # not our name: `$` matched before its newline
    other.write_bytes(b"someone else's")
    assert remove_leftovers(target) == [dead]
    assert not dead.exists() and alive.exists()  # a writer still running keeps its file
    assert other.exists()


def test_a_recordings_csv_part_cut_inside_its_last_number_is_refused_naming_file_and_row(tmp_path: Path) -> None:
    """A copy of a recording cut short inside its last line (`101.2` of `101.25`) was read as whole: the last quote a
    price the run never saw. The engine ends every line it writes, so in a recording (it has `ticks/`,
    `recording.jsonl` or `.recording.lock`) a CSV file whose last line has no end is refused, naming the file and the
    row, by the backtest's reader and by the next recording into the folder. A file of another tool in a folder that
    is no recording may omit the last line's end, and is read (docs/data.md)."""
    from engine.data.recorder import Recorder

    rec = tmp_path / "rec"
    with Recorder(rec, fmt="csv", fsync=False) as recorder:
        for i in range(3):
            assert recorder.record("AAPL", T0 + timedelta(seconds=5 * i), 101.0 + i, 101.25 + i)
            assert recorder.tick(T0 + timedelta(seconds=5 * i))
    part = rec / "quotes" / "AAPL" / "part-000001.csv"
    whole = part.read_bytes()
    assert whole.endswith(b",103.25\n")
    part.write_bytes(whole[:-2])  # `103.2`: a number cut short, still a number
    with pytest.raises(DataError) as caught:
        DataSet.open(rec)
    [said] = errors(caught)
    assert said.startswith(f"{part}:4:0: row 3: the last line has no line end"), said
    again = Recorder(rec, fmt="csv", fsync=False)
    with pytest.raises(DataError, match="the last line has no line end"):
        again.hold_folder()  # nor is the recording continued after it
    again.close()
    ticks = rec / "ticks" / "part-000001.csv"
    part.write_bytes(whole)
    ticks.write_bytes(ticks.read_bytes()[:-1])  # the ticks' last line without its end
    with pytest.raises(DataError, match=r"part-000001.csv:4:0: row 3: the last line has no line end"):
        DataSet.open(rec)
    # the same quotes in a folder of files from other tools: the last line's end may be missing, and is not needed
    other = tmp_path / "other" / "quotes"
    other.mkdir(parents=True)
    (other / "AAPL.csv").write_bytes(whole[:-1])
    assert [q.ask for q in read_quotes(tmp_path / "other", "AAPL")] == [101.25, 102.25, 103.25]


# --- a file whose size claims more than it holds ---------------------------------------------------------------------

SPARSE_SIZE = 3 << 30  # a sparse file's claim: more than the memory the reading process may take
MEMORY_LIMIT = 3 << 29  # 1.5 GiB of address space: enough for the engine, not for the file read whole


def _limited_backtest(project: ProjectCopy, data: Path) -> subprocess.CompletedProcess[str]:
    """`backtest --data` in a process that cannot map more than MEMORY_LIMIT, as on a small machine."""

    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (MEMORY_LIMIT, MEMORY_LIMIT))

    env = {k: v for k, v in os.environ.items() if not k.startswith("ALPACA_")}
    return subprocess.run([sys.executable, "-m", "engine", "backtest", "--data", str(data), "--out", str(data.parent / "out"),
                           "--config", str(project.config), "--machines", str(project.machines), "--rules", str(project.rules)],
                          capture_output=True, text=True, cwd=project.root, env=env, timeout=120, preexec_fn=limit)  # fmt: skip


def test_a_csv_file_binary_in_its_first_bytes_is_refused_without_reading_the_rest(project: ProjectCopy, tmp_path: Path) -> None:
    """A header and then a hole of 3 GiB (a sparse file, a disk image, a copy preallocated and never filled): the
    file was read whole before its NUL bytes were looked at, a MemoryError's traceback (exit 1) where memory is
    short and gigabytes taken where it is not. Its first bytes say it is no text: one line, exit 2."""
    path = tmp_path / "data" / "bars" / "AAPL.csv"
    path.parent.mkdir(parents=True)
    path.write_text(HEADER, encoding="utf-8")
    os.truncate(path, SPARSE_SIZE)
    result = _limited_backtest(project, tmp_path / "data")
    assert "Traceback" not in result.stderr
    assert result.returncode == 2, result.stderr
    assert f"{path}:2:0: not a CSV file: it holds binary data (a NUL byte)" in result.stderr.splitlines()


def test_a_csv_file_larger_than_memory_is_one_line_not_a_traceback(project: ProjectCopy, tmp_path: Path) -> None:
    """Text in its first 64 KiB and 3 GiB in all: reading it cannot fit the process's memory. The MemoryError was a
    traceback and exit 1; it is the file's problem, named with the file, exit 2."""
    path = tmp_path / "data" / "bars" / "AAPL.csv"
    path.parent.mkdir(parents=True)
    path.write_text(HEADER + "".join(f"2026-11-23T14:30:{i % 60:02d}Z,100,101,99,100.5,10\n" for i in range(2000)),
                    encoding="utf-8")  # fmt: skip
    os.truncate(path, SPARSE_SIZE)
    result = _limited_backtest(project, tmp_path / "data")
    assert "Traceback" not in result.stderr
    assert result.returncode == 2, result.stderr
    assert f"{path}:0:0: cannot be read: the file is larger than this machine's memory can hold" in result.stderr.splitlines()


def _zip(text: str) -> bytes:
    packed = io.BytesIO()
    with zipfile.ZipFile(packed, "w") as archive:
        archive.writestr("xl/worksheets/sheet1.xml", text)
    return packed.getvalue()


@pytest.mark.parametrize(
    ("pack", "what"),
    [
        (lambda text: gzip.compress(text.encode()), "gzip-compressed (a .csv.gz renamed?): decompress it (gunzip) and read the CSV inside"),
        (lambda text: b"\x28\xb5\x2f\xfd" + text.encode(), "zstd-compressed: decompress it (zstd -d) and read the CSV inside"),
        (_zip, "a ZIP archive (an Excel workbook, .xlsx, is one): save the sheet as CSV UTF-8, or unzip the CSV inside"),
    ],
)
def test_a_compressed_csv_or_a_workbook_is_told_as_what_it_is(tmp_path: Path, pack: Any, what: str) -> None:
    """`AAPL.csv.gz` renamed `AAPL.csv`, or an Excel workbook saved under a .csv name, was told as "binary data (a NUL
    byte)" or "byte N is not UTF-8 text", which does not say what to do with it: it is named as what it is, with the
    fix, at the file."""
    path = tmp_path / "bars" / "AAPL.csv"
    path.parent.mkdir()
    path.write_bytes(pack(HEADER + "2026-11-23T14:30:00Z,100,101,99,100.5,10\n"))
    with pytest.raises(DataError) as refused:
        DataSet.open(tmp_path)
    assert errors(refused) == [f"{path}:0:0: not a CSV file: it is {what}"]
