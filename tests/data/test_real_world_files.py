"""Data files as real tools write them (pandas, polars, pyarrow, Alpaca's JSON, spreadsheets, yfinance): each is
read exactly when what it means is unambiguous, or refused with the file, the row or column and the fix; never
read as something else (docs/data.md). The files are made with pyarrow alone, in the shapes those tools give."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa  # type: ignore[import-untyped]  # pyarrow ships no type hints
import pyarrow.parquet as pq  # type: ignore[import-untyped]
import pytest

from engine.data import files
from engine.data.dataset import DataSet
from engine.data.errors import DataError
from engine.data.files import read_bars, read_file
from engine.data.records import Bar
from tests.conftest import ProjectCopy
from tests.replay.conftest import only_momentum

T0 = datetime(2026, 10, 1, 13, 30, tzinfo=timezone.utc)  # 09:30 in New York (EDT, -04:00)
T0_US = (T0 - datetime(1970, 1, 1, tzinfo=timezone.utc)) // timedelta(microseconds=1)
MINUTE_US = 60_000_000
HEADER = "timestamp,open,high,low,close,volume\n"
ROW1 = "2026-10-01T13:30:00Z,101.23,101.6,101.1,101.5,1200\n"
ROW2 = "2026-10-01T13:31:00Z,101.5,101.7,101.2,101.4,900\n"
BARS = [Bar(T0, 101.23, 101.6, 101.1, 101.5, 1200.0), Bar(T0 + timedelta(minutes=1), 101.5, 101.7, 101.2, 101.4, 900.0)]
PRICES = {"open": [101.23, 101.5], "high": [101.6, 101.7], "low": [101.1, 101.2], "close": [101.5, 101.4]}


def put(folder: Path, relative: str, data: str | bytes) -> Path:
    path = folder / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data.encode("utf-8") if isinstance(data, str) else data)
    return path


def parquet(folder: Path, relative: str, columns: dict[str, Any], metadata: dict[bytes, bytes] | None = None) -> Path:
    path = folder / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    table = pa.table(columns)
    pq.write_table(table.replace_schema_metadata(metadata) if metadata else table, path)
    return path


UTC_US = pa.timestamp("us", tz="UTC")


def stamps(kind: pa.DataType = UTC_US, per_us: float = 1) -> pa.Array:
    return pa.array([int(T0_US * per_us), int((T0_US + MINUTE_US) * per_us)], kind)


def bars_columns(**replace: Any) -> dict[str, Any]:
    columns = {"timestamp": stamps(), **{k: pa.array(v) for k, v in PRICES.items()}, "volume": pa.array([1200, 900])}
    return {**columns, **replace}


def refused(path: Path, kind: Any = "bars") -> list[str]:
    table, problems = read_file(path, kind)
    assert table is None, "accepted"
    return [p.headline for p in problems]


def accepted(path: Path, kind: Any = "bars") -> list[tuple[Any, ...]]:
    table, problems = read_file(path, kind)
    assert not problems, [p.headline for p in problems]
    return [tuple(row.values()) for row in table.cast(pa.schema(
        [pa.field("timestamp", pa.timestamp("us", tz="+00:00"))] + [pa.field(n, pa.float64()) for n in table.column_names[1:]]
    )).to_pylist()]


# --- numbers: read as the number written, or refused ------------------------------------------------------------


def test_decimal_prices_are_read_as_the_nearest_float_not_one_off(tmp_path: Path) -> None:
    # Arrow's decimal-to-float cast is not correctly rounded: decimal(12, 2) 101.60 was read as 101.60000000000001.
    prices = {name: pa.array([Decimal(str(v)) for v in values], pa.decimal128(12, 2)) for name, values in PRICES.items()}
    path = parquet(tmp_path, "AAPL.parquet", bars_columns(**prices, volume=pa.array([Decimal(1200), Decimal(900)],
                                                                                     pa.decimal128(10, 0))))
    assert accepted(path) == [tuple(bar) for bar in BARS]
    rng = np.random.default_rng(7)
    cents = [int(c) for c in rng.integers(1, 10**11, 20_000)]  # up to 999,999,999.99
    column = pa.array([Decimal(c).scaleb(-2) for c in cents], pa.decimal128(13, 2))
    quotes = parquet(tmp_path, "SPY.parquet", {"timestamp": pa.array([T0_US + i for i in range(len(cents))],
                                                                      pa.timestamp("us", tz="UTC")),
                                               "bid": column, "ask": column})
    table, problems = read_file(quotes, "quotes")
    assert not problems and table.column("bid").to_pylist() == [float(Decimal(c).scaleb(-2)) for c in cents]


def test_a_float32_that_is_not_the_price_it_shows_is_refused_once_a_column(tmp_path: Path) -> None:
    # pandas' astype('float32'): 101.23 is stored as 101.2300033569336, shown everywhere as 101.23; read before.
    narrow = {name: pa.array(np.array(values * 15, np.float32)) for name, values in PRICES.items()}
    path = parquet(tmp_path, "AAPL.parquet", bars_columns(
        **narrow, timestamp=pa.array([T0_US + i * MINUTE_US for i in range(30)], pa.timestamp("us", tz="UTC")),
        volume=pa.array([1200, 900] * 15)))
    problems = sorted(refused(path))
    assert problems[:2] == [
        f"{path}:1:0: row 1: high: 101.6 is stored as a 32-bit float (float32), which holds 101.5999984741211 instead "
        "(and in 29 more rows of the column): store the column as float64 (double), made from the original numbers",
        f"{path}:1:0: row 1: low: 101.1 is stored as a 32-bit float (float32), which holds 101.0999984741211 instead "
        "(and in 29 more rows of the column): store the column as float64 (double), made from the original numbers",
    ]
    assert f"{path}:1:0: row 1: open: 101.23 is stored as a 32-bit float (float32), which holds 101.2300033569336 " \
           "instead (and in 14 more rows of the column): store the column as float64 (double), made from the " \
           "original numbers" in problems
    assert len(problems) == 4  # one a column: close is inexact from row 2 on (101.5 is exact)
    assert f"{path}:2:0: row 2: close: 101.4 is stored as a 32-bit float (float32)" in problems[-1]


def test_a_float16_column_is_refused_even_where_it_looks_like_a_price(tmp_path: Path) -> None:
    # float16 of 101.23 is exactly 101.25: no check on the value can tell it from a real 101.25.
    path = parquet(tmp_path, "AAPL.parquet", bars_columns(open=pa.array(np.array(PRICES["open"], np.float16))))
    assert refused(path) == [f"{path}:0:0: open: the column is halffloat (a 16-bit float, about 3 significant digits): "
                             "store the numbers as float64 (double)"]


def test_a_narrow_float_that_holds_the_value_exactly_is_read(tmp_path: Path) -> None:
    exact = pa.array(np.array([1200, 900], np.float32))
    path = parquet(tmp_path, "AAPL.parquet", bars_columns(volume=exact, close=pa.array(np.array([101.5, 101.5], np.float32))))
    assert [row[4] for row in accepted(path)] == [101.5, 101.5]


def test_spreadsheet_number_formats_are_refused_with_the_plain_form(tmp_path: Path) -> None:
    path = put(tmp_path, "AAPL.csv", HEADER + ROW1.replace(",1200\n", ',"1,200"\n') + ROW2.replace("101.4,", '"101,4",'))
    assert sorted(refused(path)) == [
        f"{path}:2:0: row 1: volume: '1,200' is written with a separator inside: write numbers plainly, with no "
        "thousands separator and a decimal point (1200, 101.25)",
        f"{path}:3:0: row 2: close: '101,4' is written with a separator inside: write numbers plainly, with no "
        "thousands separator and a decimal point (1200, 101.25)",
    ]


def test_numbers_as_text_in_parquet_say_how_to_store_them(tmp_path: Path) -> None:
    path = parquet(tmp_path, "AAPL.parquet", bars_columns(close=pa.array(["101.5", "101.4"], pa.large_string())))
    assert refused(path) == [f"{path}:0:0: close: the column is large_string, not a number (text): store the numbers as "
                             "float64 (pandas: pd.to_numeric)"]


# --- time zones: an instant is read whatever zone shows it; a wall time without one is refused -------------------


@pytest.mark.parametrize("zone", ["America/New_York", "Europe/Berlin", "+05:30", "Etc/UTC"])
@pytest.mark.parametrize("unit", ["s", "ms", "us", "ns"])
def test_a_parquet_timestamp_in_any_time_zone_is_the_instant_it_stores(tmp_path: Path, zone: str, unit: str) -> None:
    # pandas' df.index.tz_convert('America/New_York'): the same UTC instants, shown in New York. Refused before.
    per_us = {"s": 1e-6, "ms": 1e-3, "us": 1, "ns": 1000}[unit]
    path = parquet(tmp_path, "AAPL.parquet", bars_columns(timestamp=stamps(pa.timestamp(unit, tz=zone), per_us)))
    assert accepted(path) == [tuple(bar) for bar in BARS]


@pytest.mark.parametrize("text", ["2026-10-01T09:30:00-04:00", "2026-10-01 09:30:00-04:00", "2026-10-01T09:30:00-0400",
                                  "2026-10-01T09:30:00-04", "2026-10-01T13:30:00+0000", "2026-10-01T15:30:00+02:00",
                                  "2026-10-01T13:30:00.000000000Z", "2026-10-01T09:30:00.000000000-04:00"])
def test_a_csv_time_with_its_offset_is_the_instant_it_names(tmp_path: Path, text: str) -> None:
    # pandas' to_csv of New York times writes '2026-10-01 09:30:00-04:00', polars '...+0000'; refused before. A
    # nanosecond column whose values are whole microseconds writes nine decimals: the same instant.
    path = put(tmp_path, "AAPL.csv", HEADER + ROW1.replace("2026-10-01T13:30:00Z", text) + ROW2)
    assert accepted(path) == [tuple(bar) for bar in BARS]


def test_a_csv_time_without_a_zone_is_refused_saying_both_fixes(tmp_path: Path) -> None:
    path = put(tmp_path, "AAPL.csv", HEADER + ROW1.replace("T13:30:00Z", " 09:30:00") + ROW2.replace("Z", ".123456789Z")
               + "2026-10-01T13:32Z,1,1,1,1,1\n")
    assert refused(path) == [
        f"{path}:2:0: row 1: timestamp: '2026-10-01 09:30:00' has no time zone, so it could be UTC or New York time: end "
        "it with Z if it is UTC (2026-11-23T14:30:00Z), or with its offset (-05:00 in New York's winter, -04:00 in its summer)",
        f"{path}:3:0: row 2: timestamp: '2026-10-01T13:31:00.123456789Z' is finer than a microsecond",
        f"{path}:4:0: row 3: timestamp: '2026-10-01T13:32Z' has no seconds: write them, e.g. 2026-11-23T14:30:00Z",
    ]


def test_a_naive_parquet_column_is_refused_saying_how_to_localize_it(tmp_path: Path) -> None:
    path = parquet(tmp_path, "AAPL.parquet", bars_columns(timestamp=stamps(pa.timestamp("ms"), 1e-3)))
    assert refused(path) == [
        f"{path}:0:0: timestamp: the column (timestamp[ms]) has no time zone, so it could be UTC or New York time: store "
        "instants, timestamp[us, tz=UTC] (pandas: df.index.tz_localize('UTC') if the times are UTC, "
        "tz_localize('America/New_York') if they are New York's)"
    ]


@pytest.mark.parametrize("kind", [pa.string(), pa.large_string()])
def test_parquet_timestamps_as_text_are_read_by_the_csv_rules(tmp_path: Path, kind: pa.DataType) -> None:
    texts = ["2026-10-01T13:30:00Z", "2026-10-01T09:31:00-04:00"]
    path = parquet(tmp_path, "AAPL.parquet", bars_columns(timestamp=pa.array(texts, kind)))
    assert accepted(path) == [tuple(bar) for bar in BARS]
    path = parquet(tmp_path, "SPY.parquet", bars_columns(timestamp=pa.array([texts[0], "2026-10-01 13:31:00"], kind)))
    assert refused(path)[0].startswith(f"{path}:2:0: row 2: timestamp: '2026-10-01 13:31:00' has no time zone")


@pytest.mark.parametrize("kind", [pa.string(), pa.large_string(), pa.dictionary(pa.int32(), pa.string())])
def test_a_missing_time_in_a_parquet_text_column_is_an_empty_cell(tmp_path: Path, kind: pa.DataType) -> None:
    # A null among text timestamps (pandas' None in an object column, polars' null) was taken as no problem: the
    # file was accepted with a row without a time, and the backtest failed on it with a traceback or a bare
    # "cannot convert float NaN to integer", naming no file.
    path = parquet(tmp_path, "bars/AAPL.parquet", bars_columns(timestamp=pa.array(["2026-10-01T13:30:00Z", None]).cast(kind)))
    assert refused(path) == [f"{path}:2:0: row 2: timestamp: empty cell"]
    with pytest.raises(DataError):
        DataSet.open(tmp_path)


@pytest.mark.parametrize("kind", [pa.int64(), pa.float64()])
def test_an_epoch_number_is_not_guessed_as_seconds_or_milliseconds(tmp_path: Path, kind: pa.DataType) -> None:
    path = parquet(tmp_path, "AAPL.parquet", bars_columns(timestamp=pa.array([T0_US // 1000, T0_US // 1000 + 60_000], kind)))
    assert refused(path) == [
        f"{path}:0:0: timestamp: the column is {kind}, a number, not a timestamp: a count since 1970 could be seconds, "
        "milliseconds or nanoseconds, and is not guessed; store it as timestamp[<unit>, tz=UTC] in its unit "
        "(pandas: pd.to_datetime(df['timestamp'], unit='ms', utc=True) for milliseconds)"
    ]
    path = put(tmp_path, "AAPL.csv", HEADER + ROW1.replace("2026-10-01T13:30:00Z", str(T0_US // 1_000_000)))
    assert refused(path) == [
        f"{path}:2:0: row 1: timestamp: '{T0_US // 1_000_000}' is a number, not a date and time: a count since 1970 "
        "could be seconds, milliseconds or nanoseconds; write the instant as ISO 8601, e.g. 2026-11-23T14:30:00Z"
    ]


def test_a_day_without_a_time_is_refused(tmp_path: Path) -> None:
    path = parquet(tmp_path, "AAPL.parquet", bars_columns(timestamp=pa.array([20_362, 20_363], pa.date32())))
    assert refused(path) == [f"{path}:0:0: timestamp: the column is date32[day], a day without a time: store the "
                             "instant each row starts, timestamp[us, tz=UTC] (a New York day starts at 05:00Z in "
                             "winter, 04:00Z in summer)"]


@pytest.mark.parametrize("day", ["2026-11-23", "2026-11-23Z", "2026-11-23-05:00"])
def test_a_csv_day_without_a_time_says_so_not_to_end_it_with_z(tmp_path: Path, day: str) -> None:
    """yfinance's daily Date renamed timestamp: told it had no zone and to end it with Z, the user wrote
    '2026-11-23Z', which is not a timestamp either."""
    path = put(tmp_path, "AAPL.csv", HEADER + f"{day},101.23,101.6,101.1,101.5,1200\n")
    assert refused(path) == [f"{path}:2:0: row 1: timestamp: '{day}' is a day without a time: write the instant the row "
                             "starts, with its zone (a New York day starts at 05:00Z in winter, 04:00Z in summer: "
                             "2026-11-23T05:00:00Z)"]


@pytest.mark.parametrize(("text", "what"), [("<html><head><title>429 Too Many Requests</title></head>\n", "HTML or XML"),
                                          ('{"code":40110000,"message":"request is not authorized"}\n', "JSON"),
                                          ('[{"t":"2026-11-23T14:30:00Z","o":101.23}]\n', "JSON")])
def test_an_error_page_saved_as_the_file_is_one_problem(tmp_path: Path, text: str, what: str) -> None:
    """`curl -o AAPL.csv` of a refusal: seven problems (an unknown column, six missing), where the first line is no
    header at all, which the format tells in one line."""
    path = put(tmp_path, "AAPL.csv", text)
    assert refused(path) == [f"{path}:1:0: not CSV data: the first line is {what} ({text.splitlines()[0][:60]!r}), an error "
                             "page or an API's answer saved as the file?; a bars file's first line names the columns "
                             "(timestamp,open,high,low,close,volume)"]


# --- headers: another tool's names are told as the rename they need ---------------------------------------------


def test_a_pandas_frame_written_with_its_unnamed_time_index(tmp_path: Path) -> None:
    # df.to_parquet() of a frame whose DatetimeIndex has no name: the times are '__index_level_0__'. The hint was
    # "write the frame with index=False", which drops the timestamps.
    pandas_meta = {b"pandas": json.dumps({"index_columns": ["__index_level_0__"], "columns": []}).encode()}
    columns = bars_columns()
    columns["__index_level_0__"] = columns.pop("timestamp")
    path = parquet(tmp_path, "AAPL.parquet", columns, pandas_meta)
    assert refused(path) == [
        f"{path}:0:0: missing column 'timestamp': the timestamps are the frame's index, which has no name "
        "('__index_level_0__'): name it before writing (pandas: df.index.name = 'timestamp'; then df.to_parquet())"
    ]
    # its CSV: pandas writes the unnamed index as a first column with an empty name
    path = put(tmp_path, "AAPL.csv", "," + HEADER.split(",", 1)[1] + ROW1.replace("Z,", "+00:00,", 1))
    assert refused(path) == [
        f"{path}:1:0: missing column 'timestamp': the first column has no name (how pandas writes an index without one): "
        "if it holds the timestamps, name it timestamp (pandas: df.index.name = 'timestamp' before df.to_csv()), else "
        "write the frame with index=False"
    ]


@pytest.mark.parametrize(("header", "renames", "extras"), [
    ("t,o,h,l,c,v,n,vw", {"t": "timestamp", "o": "open", "h": "high", "l": "low", "c": "close", "v": "volume"},
     {"n": "Alpaca's trade count", "vw": "Alpaca's volume-weighted price"}),
    ("Date,Open,High,Low,Close,Adj Close,Volume", {"Date": "timestamp", "Open": "open", "High": "high", "Low": "low",
                                                   "Close": "close", "Volume": "volume"},
     {"Adj Close": "an adjusted close, not a price that traded"}),
    ("Timestamp, Open, High, Low, Close, Volume", {"Timestamp": "timestamp", " Open": "open", " High": "high",
                                                   " Low": "low", " Close": "close", " Volume": "volume"}, {}),
], ids=["alpaca_keys", "yfinance", "mixed_case_and_spaces"])  # fmt: skip
def test_another_tools_header_is_one_rename_a_column(tmp_path: Path, header: str, renames: dict[str, str],
                                                     extras: dict[str, str]) -> None:
    # Before: each column twice, as unknown and as missing: 14 lines for Alpaca's keys, none saying t is timestamp.
    path = put(tmp_path, "AAPL.csv", header + "\n" + ",".join(["2026-10-01T13:30:00Z", *["1"] * (header.count(",") - 0)]) + "\n")
    have = "bars files have timestamp, open, high, low, close, volume"
    assert sorted(refused(path)) == sorted(
        [f"{path}:1:0: column '{name}' is what the format calls '{to}': rename it ({have}, in lower case)"
         for name, to in renames.items()]
        + [f"{path}:1:0: unknown column '{name}' ({what}): remove the column; {have}" for name, what in extras.items()]
    )


def test_alpaca_quote_keys_and_extra_columns_of_a_frame(tmp_path: Path) -> None:
    path = put(tmp_path, "SPY.csv", "t,bp,ap,bs,as\n2026-10-01T13:30:00Z,1,2,3,4\n")
    have = "quotes files have timestamp, bid, ask"
    assert refused(path, "quotes") == [
        f"{path}:1:0: column 't' is what the format calls 'timestamp': rename it ({have}, in lower case)",
        f"{path}:1:0: column 'bp' is what the format calls 'bid': rename it ({have}, in lower case)",
        f"{path}:1:0: column 'ap' is what the format calls 'ask': rename it ({have}, in lower case)",
        f"{path}:1:0: unknown column 'bs' (Alpaca's bid size): remove the column; {have}",
        f"{path}:1:0: unknown column 'as' (Alpaca's ask size): remove the column; {have}",
    ]
    # alpaca-py's BarSet.df.loc['AAPL'] (or the frame with its symbol level reset)
    path = parquet(tmp_path, "AAPL.parquet", {**bars_columns(), "trade_count": [5, 6], "vwap": [101.3, 101.4],
                                              "symbol": ["AAPL", "AAPL"]})
    have = "bars files have timestamp, open, high, low, close, volume"
    assert refused(path) == [
        f"{path}:0:0: unknown column 'trade_count' (Alpaca's trade count): remove the column; {have}",
        f"{path}:0:0: unknown column 'vwap' (Alpaca's volume-weighted price): remove the column; {have}",
        f"{path}:0:0: unknown column 'symbol' (the file's name gives the symbol): remove the column; {have}",
    ]


def test_a_name_that_is_there_already_is_not_offered_as_a_rename(tmp_path: Path) -> None:
    path = put(tmp_path, "AAPL.csv", "timestamp,open,high,low,close,volume,Close\n")
    assert refused(path) == [f"{path}:1:0: unknown column 'Close' (did you mean 'close'?); bars files have timestamp, "
                             "open, high, low, close, volume"]


def test_trailing_commas_are_a_nameless_column(tmp_path: Path) -> None:
    path = put(tmp_path, "AAPL.csv", HEADER.replace("\n", ",\n") + ROW1.replace("\n", ",\n"))
    assert refused(path) == [f"{path}:1:0: a column has no name (a comma at the end of the header, or pandas' index: "
                             "write the frame with index=False): remove it and its cells; bars files have timestamp, "
                             "open, high, low, close, volume"]


def test_a_semicolon_header_in_another_case_is_still_told_as_semicolons(tmp_path: Path) -> None:
    path = put(tmp_path, "AAPL.csv", "Timestamp;Open;High;Low;Close;Volume\n")
    assert refused(path) == [f"{path}:1:0: the columns are separated by semicolons: the format separates them with "
                             "commas (timestamp,open,high,low,close,volume)"]


# --- the shape of a CSV file --------------------------------------------------------------------------------------


@pytest.mark.parametrize("end", ["\n", "\n\n\n", "\r\n\r\n", ",,,,,\n,,,,,\n", "\n ,,,,,\n  \n", ",,,,,"])
def test_empty_lines_after_the_last_row_are_the_end_of_the_file(tmp_path: Path, end: str) -> None:
    text = HEADER + ROW1 + ROW2
    path = put(tmp_path, "AAPL.csv", text.replace("\n", "\r\n") + end if "\r" in end else text + end)
    assert accepted(path) == [tuple(bar) for bar in BARS]


def test_empty_lines_before_a_row_are_still_problems(tmp_path: Path) -> None:
    path = put(tmp_path, "AAPL.csv", HEADER + ROW1 + "\n,,,,,\n" + ROW2 + "\n")
    assert sorted(refused(path)) == [
        f"{path}:3:0: a blank line (a row with no cells)",
        *(f"{path}:4:0: row 2: {column}: empty cell" for column in ("close", "high", "low", "open", "timestamp", "volume")),
    ]


def test_a_header_repeated_by_joining_files_is_one_line(tmp_path: Path) -> None:
    # Before: six problems at the line, one a cell ("open: 'open' is not a number").
    path = put(tmp_path, "AAPL.csv", "\ufeff" + HEADER + ROW1 + "\ufeff" + HEADER + ROW2 + HEADER)
    assert refused(path) == [
        f"{path}:3:0: the header again, inside the data (files joined with their headers?): delete this line",
        f"{path}:5:0: the header again, inside the data (files joined with their headers?): delete this line",
    ]
    quoted = put(tmp_path, "SPY.csv", HEADER + ROW1 + '"timestamp","open","high","low","close","volume"\n' + ROW2)
    assert refused(quoted) == [f"{quoted}:3:0: the header again, inside the data (files joined with their headers?): "
                               "delete this line"]


@pytest.mark.parametrize("encoding", ["utf-16", "utf-16-be"])
def test_utf16_text_is_said_to_be_utf16(tmp_path: Path, encoding: str) -> None:
    data = (HEADER + ROW1).encode(encoding)
    path = put(tmp_path, "AAPL.csv", data if data[:2] in (b"\xff\xfe", b"\xfe\xff") else b"\xfe\xff" + data)
    assert refused(path) == [f"{path}:0:0: not a CSV file: it is UTF-16 text (its first bytes say so): save it as UTF-8 "
                             "(Excel: CSV UTF-8)"]


def test_quoted_cells_on_their_own_lines_take_the_fast_reader(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # A quoted header (pyarrow's and many tools' CSV writer) sent the whole file to the csv module: 2M rows took
    # 2.2 GB and 5.7 s instead of 0.8 GB and 2 s. Row numbers and lines stay the file's.
    def slow(*_args: object) -> None:
        raise AssertionError("read by the slow reader")

    monkeypatch.setattr(files, "_read_csv_slowly", slow)
    quoted = '"timestamp","open","high","low","close","volume"\n' + ROW1 + '"2026-10-01T13:31:00Z",101.5,"101.7",101.2,-1,9\n'
    path = put(tmp_path, "AAPL.csv", quoted)
    assert refused(path) == [f"{path}:3:0: row 2: close: -1.0 is not a positive price"]
    monkeypatch.undo()
    # a quoted cell over two lines is read by the csv module, at the lines it is on
    path = put(tmp_path, "AAPL.csv", HEADER + '"2026-10-01T13:30:00Z\n",1,1,1,1,1\n' + ROW2.replace("101.4", "-1"))
    found = refused(path)
    assert len(found) == 2 and found[0].startswith(f"{path}:2:0: row 1: timestamp: ") and found[1].startswith(
        f"{path}:4:0: row 2: close: -1.0")


# --- names and the folder -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("name", "fix"), [("aapl.csv", "AAPL.csv"), ("btc-usd.parquet", "BTC-USD.parquet (the symbol BTC/USD)"),
                                           ("BTC_USD.csv", "BTC-USD.csv (the symbol BTC/USD)"), ("brk.b.csv", "BRK.B.csv")])
def test_a_file_named_in_another_spelling_says_its_name(tmp_path: Path, name: str, fix: str) -> None:
    put(tmp_path, f"bars/{name}", HEADER + ROW1)
    with pytest.raises(DataError) as bad:
        DataSet.open(tmp_path)
    (problem,) = [p.headline for p in bad.value.problems]
    assert problem.startswith(f"{tmp_path}/bars/{name}:0:0: ") and problem.endswith(f": rename it {fix}")


def test_a_link_to_nothing_says_where_it_points(tmp_path: Path) -> None:
    (tmp_path / "bars").mkdir()
    os.symlink("../gone/AAPL.csv", tmp_path / "bars" / "AAPL.csv")
    with pytest.raises(DataError) as bad:
        DataSet.open(tmp_path)
    assert [p.headline for p in bad.value.problems] == [
        f"{tmp_path}/bars/AAPL.csv:0:0: is a symbolic link to ../gone/AAPL.csv, which does not exist"]


# --- through the command line ----------------------------------------------------------------------------------------


def backtest(project: ProjectCopy, data: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ALPACA_")}
    return subprocess.run([sys.executable, "-m", "engine", "backtest", "--data", data, "--out", f"out-{data}",
                           "--config", str(project.config), "--machines", str(project.machines), "--rules", str(project.rules)],
                          capture_output=True, text=True, cwd=project.root, env=env, timeout=120)  # fmt: skip


def test_the_same_bars_in_new_york_time_backtest_as_in_utc_and_float32_is_refused(project: ProjectCopy) -> None:
    only_momentum(project)
    start = datetime(2026, 11, 23, 14, 30, tzinfo=timezone.utc)  # Monday 09:30 in New York (EST)
    n = 90
    closes = [round(100 + 0.37 * np.sin(i / 5) + i * 0.01, 2) for i in range(n)]
    micros = [(start - datetime(1970, 1, 1, tzinfo=timezone.utc)) // timedelta(microseconds=1) + i * MINUTE_US for i in range(n)]
    columns = {"open": closes, "high": [c + 0.05 for c in closes], "low": [c - 0.05 for c in closes], "close": closes,
               "volume": [1000 + i for i in range(n)]}
    parquet(project.root, "utc/bars/AAPL.parquet", {"timestamp": pa.array(micros, pa.timestamp("us", tz="UTC")), **columns})
    parquet(project.root, "newyork/bars/AAPL.parquet",
            {"timestamp": pa.array([m * 1000 for m in micros], pa.timestamp("ns", tz="America/New_York")), **columns})
    lines = [",".join(["timestamp", *columns])] + [
        ",".join([(start + timedelta(minutes=i) - timedelta(hours=5)).strftime("%Y-%m-%d %H:%M:%S-05:00"),
                  *(str(columns[c][i]) for c in columns)]) for i in range(n)]
    put(project.root, "offsets/bars/AAPL.csv", "\r\n".join(lines) + "\r\n\r\n")
    parquet(project.root, "float32/bars/AAPL.parquet", {"timestamp": pa.array(micros, pa.timestamp("us", tz="UTC")),
                                                        **columns, "close": pa.array(np.array(closes, np.float32))})
    results = {data: backtest(project, data) for data in ("utc", "newyork", "offsets", "float32")}
    for data in ("utc", "newyork", "offsets"):
        assert results[data].returncode == 0, results[data].stderr
    summaries = [json.loads((project.root / f"out-{d}" / "summary.json").read_text()) for d in ("utc", "newyork", "offsets")]
    trades = [(project.root / f"out-{d}" / "trades.csv").read_text() for d in ("utc", "newyork", "offsets")]
    assert summaries[0]["period"] == summaries[1]["period"] == summaries[2]["period"]
    assert summaries[0]["total"] == summaries[1]["total"] == summaries[2]["total"] and trades[0] == trades[1] == trades[2]
    bad = results["float32"]
    assert bad.returncode == 2 and "Traceback" not in bad.stderr
    first = next(line for line in bad.stderr.splitlines() if "close" in line)
    assert first.startswith("float32/bars/AAPL.parquet:") and "32-bit float (float32)" in first and "float64" in first
    assert not (project.root / "out-float32").exists()


def test_read_bars_of_a_new_york_parquet_gives_utc_datetimes(tmp_path: Path) -> None:
    parquet(tmp_path, "bars/AAPL.parquet", bars_columns(timestamp=stamps(pa.timestamp("us", tz="America/New_York"))))
    bars = read_bars(tmp_path, "AAPL")
    assert bars == BARS and all(bar.timestamp.tzinfo is timezone.utc for bar in bars)
