"""Data folders an outside tester would hand the backtest: each is refused as `file:line:col: message`, never a
traceback, never a hang, never accepted as something it is not (docs/data.md, "The rules a file must follow")."""

from __future__ import annotations

import os
import stat
import threading
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pyarrow as pa  # type: ignore[import-untyped]  # pyarrow ships no type hints
import pyarrow.parquet as pq  # type: ignore[import-untyped]
import pytest

from engine.data.dataset import DataSet
from engine.data.errors import DataError
from engine.data.files import read_file, write_quotes
from engine.data.records import symbol_of_stem

T0 = datetime(2026, 11, 23, 14, 30, tzinfo=timezone.utc)
T0_US = (T0 - datetime(1970, 1, 1, tzinfo=timezone.utc)) // timedelta(microseconds=1)
BARS = "timestamp,open,high,low,close,volume\n"
ROW = "2026-11-23T14:30:00Z,100,101,99,100.5,10\n"


def refused(folder: Path) -> list[str]:
    """Every problem's one-line form; fails the test if the folder is accepted."""
    with pytest.raises(DataError) as excinfo:
        DataSet.open(folder)
    return [p.headline for p in excinfo.value.problems]


def put(folder: Path, relative: str, data: bytes | str) -> Path:
    path = folder / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data.encode("utf-8") if isinstance(data, str) else data)
    return path


def quotes_table(stamps: pa.Array, **columns: pa.Array) -> pa.Table:
    n = len(stamps)
    return pa.table({"timestamp": stamps, "bid": columns.get("bid", pa.array([10.0] * n)),
                     "ask": columns.get("ask", pa.array([10.5] * n))})


# --- CSV text ------------------------------------------------------------------------------------------------

CSV_CASES = {
    # old Mac line ends: csv.Error traceback before; Arrow and the csv module also disagree on the lines
    "cr_only": (BARS.replace("\n", "\r") + ROW.replace("\n", "\r"), 1, "a carriage return alone"),
    "stray_cr": (BARS + ROW.replace(",10\n", ",1\r0\n"), 2, "a carriage return alone"),
    # digits of another script: Python's \d matched them and the message said "not in UTC"
    "fullwidth_digits": (BARS + "\uff12" + ROW[1:], 2, "is not an ISO 8601 timestamp"),
    # year 0 parses in Arrow but no datetime holds it: OverflowError when the data set opened
    "year_0000": (BARS + "0000" + ROW[4:], 2, "timestamp 0000-11-23T14:30:00Z is out of range"),
    # placeholders a datetime holds, but the calendar cannot: accepted, then a traceback mid-replay
    "year_0001": (BARS + "0001" + ROW[4:], 2, "timestamp 0001-11-23T14:30:00Z is out of range"),
    "year_9999": (BARS + "9999" + ROW[4:], 2, "timestamp 9999-11-23T14:30:00Z is out of range"),
    "duplicate_out_of_range": (BARS + "0000" + ROW[4:] + "0000" + ROW[4:], 3, "out of range"),
    # a header that is not one: one line saying why, not twelve about each column
    "no_header": (ROW + ROW.replace("14:30", "14:31"), 1, "no header: the first line is data"),
    "semicolons": (BARS.replace(",", ";") + ROW.replace(",", ";"), 1, "separated by semicolons"),
    "tabs": (BARS.replace(",", "\t") + ROW.replace(",", "\t"), 1, "separated by tabs"),
    "quotes_header_in_bars": ("timestamp,bid,ask\n2026-11-23T14:30:00Z,1,2\n", 1, "this is a quotes file"),
    "unclosed_quote": (BARS + '"' + ROW, 2, "a quote opened on this line is not closed on it"),
    # a quoted cell past the csv module's field limit: csv.Error traceback before (over two lines, so that the
    # file is read by the csv module; a quoted cell on one line is read by Arrow's reader, which has no such limit)
    "huge_quoted_cell": (BARS + ROW + '"' + "9" * 200_000 + '\n",1,1,1,1,1\n', 3, "cannot be read as CSV"),
    "nul_byte": (BARS + ROW + ROW.replace("10\n", "1\0\n"), 3, "binary data"),
}


@pytest.mark.parametrize("case", sorted(CSV_CASES))
def test_a_bad_csv_is_refused_at_its_line(tmp_path: Path, case: str) -> None:
    text, line, message = CSV_CASES[case]
    path = put(tmp_path, "bars/AAPL.csv", text)
    found = refused(tmp_path)
    assert any(h.startswith(f"{path}:{line}:0: ") and message in h for h in found), found


def test_a_number_beyond_a_floats_range_is_told_as_written(tmp_path: Path) -> None:
    # Read as inf or 0.0, and told as that: 'open: 0.0 is not a positive price' of a cell that says 1e-400, a value
    # found nowhere in the file. A volume of 1e-400 was even read as 0 without a word.
    put(tmp_path, "bars/AAPL.csv", BARS + "2026-11-23T14:30:00Z,1e309,1e309,99,100.5,10\n"
        "2026-11-23T14:31:00Z,1e-400,101,99,100.5,-1e-400\n" + "2026-11-23T14:32:00Z,1" + "0" * 400 + ",101,99,100.5,10\n")
    found = [h.split(": ", 1)[1] for h in refused(tmp_path)]
    assert found == [
        "row 1: high: '1e309' is too large for a number (beyond about 1.8e308)",
        "row 1: open: '1e309' is too large for a number (beyond about 1.8e308)",
        "row 2: open: '1e-400' is too close to 0 for a number (it would read as 0)",
        "row 2: volume: '-1e-400' is too close to 0 for a number (it would read as 0)",
        f"row 3: open: '1{'0' * 56}...' is too large for a number (beyond about 1.8e308)",
    ], found


def test_an_out_of_range_timestamp_is_not_also_told_as_a_duplicate(tmp_path: Path) -> None:
    put(tmp_path, "bars/AAPL.csv", BARS + "0000" + ROW[4:] + "0000" + ROW[4:])
    found = refused(tmp_path)
    assert len(found) == 2 and all("out of range" in h for h in found), found


def test_the_range_edges_are_the_documented_ones(tmp_path: Path) -> None:
    rows = ["1900-01-01T00:00:00Z,1,1,1,1,1\n", "2199-12-31T23:59:59.999999Z,1,1,1,1,1\n"]
    put(tmp_path, "ok/bars/AAPL.csv", BARS + "".join(rows))
    assert DataSet.open(tmp_path / "ok").rows("bars", "AAPL") == 2
    put(tmp_path, "early/bars/AAPL.csv", BARS + "1899-12-31T23:59:59.999999Z,1,1,1,1,1\n")
    put(tmp_path, "late/bars/AAPL.csv", BARS + "2200-01-01T00:00:00Z,1,1,1,1,1\n")
    assert any("out of range" in h for h in refused(tmp_path / "early"))
    assert any("out of range" in h for h in refused(tmp_path / "late"))


def test_a_large_csv_is_read_on_the_fast_path_and_blank_lines_still_found(tmp_path: Path) -> None:
    body = "".join(f"{(T0 + timedelta(seconds=i)).strftime('%Y-%m-%dT%H:%M:%SZ')},10,10.5\n" for i in range(3000))
    put(tmp_path, "a/quotes/AAPL.csv", "timestamp,bid,ask\r\n" + body.replace("\n", "\r\n"))
    assert DataSet.open(tmp_path / "a").rows("quotes", "AAPL") == 3000
    path = put(tmp_path, "b/quotes/AAPL.csv", "timestamp,bid,ask\n" + body + "\n" + body[:30] + "\n")
    assert f"{path}:3002:0: a blank line (a row with no cells)" in refused(tmp_path / "b")


# --- Parquet -------------------------------------------------------------------------------------------------


def stamps_in(unit: str, values: list[int]) -> pa.Array:
    return pa.array(values, pa.timestamp(unit, tz="UTC"))


PER = {"s": 1_000_000, "ms": 1_000, "us": 1}
PARQUET_STAMPS = {
    "int64_min_is_pandas_nat_us": ("us", [-(2**63), T0_US], 1, "pandas' NaT"),
    "year_1_us": ("us", [-62135596800_000_000, T0_US], 1, "0001-01-01T00:00:00Z is out of range"),
    "far_future_us": ("us", [T0_US, 2**62], 2, "is out of range"),
    # in seconds, a value past the range wrapped around when cast to µs, and could land inside it unseen
    "wraps_when_cast_s": ("s", [T0_US // PER["s"], 2**62 // 1_000_000 * 7], 2, "is out of range"),
    "far_past_ms": ("ms", [-(2**62), T0_US // PER["ms"]], 1, "is out of range"),
    "ns_before_1900": ("ns", [-2208988800_000_000_000 - 1000, T0_US * 1000], 1, "1899-12-31T23:59:59.999999Z is out of range"),
}


@pytest.mark.parametrize("case", sorted(PARQUET_STAMPS))
def test_a_parquet_timestamp_out_of_range_is_refused_at_its_row(tmp_path: Path, case: str) -> None:
    unit, values, row, message = PARQUET_STAMPS[case]
    path = tmp_path / "quotes" / "AAPL.parquet"
    path.parent.mkdir(parents=True)
    pq.write_table(quotes_table(stamps_in(unit, values)), path)
    found = refused(tmp_path)
    assert any(h.startswith(f"{path}:{row}:0: row {row}: timestamp ") and message in h for h in found), found


@pytest.mark.parametrize("column", [pa.array([2**64 - 1, 5], pa.uint64()), pa.array([2**53 + 1, 5], pa.int64()),
                                    pa.array([-(2**63), 5], pa.int64())], ids=["uint64", "int64", "int64_min"])
def test_an_integer_a_float_cannot_hold_is_refused_not_a_traceback(tmp_path: Path, column: pa.Array) -> None:
    path = tmp_path / "quotes" / "AAPL.parquet"
    path.parent.mkdir(parents=True)
    pq.write_table(quotes_table(stamps_in("us", [T0_US, T0_US + 1]), ask=column), path)
    assert any(h.startswith(f"{path}:1:0: row 1: ask: ") and "too large to be read exactly" in h for h in refused(tmp_path))


def test_integers_a_float_holds_exactly_are_read(tmp_path: Path) -> None:
    path = tmp_path / "quotes" / "AAPL.parquet"
    path.parent.mkdir(parents=True)
    pq.write_table(quotes_table(stamps_in("us", [T0_US]), bid=pa.array([2**53], pa.int64()),
                                ask=pa.array([2**53], pa.uint64())), path)
    assert DataSet.open(tmp_path).quotes("AAPL")[0].ask == 2.0**53


def test_a_column_twice_in_parquet_is_said_plainly(tmp_path: Path) -> None:
    path = tmp_path / "quotes" / "AAPL.parquet"
    path.parent.mkdir(parents=True)
    table = pa.Table.from_arrays([stamps_in("us", [T0_US]), pa.array([1.0]), pa.array([2.0]), pa.array([1.0])],
                                 names=["timestamp", "bid", "ask", "bid"])
    pq.write_table(table, path)
    assert refused(tmp_path) == [f"{path}:0:0: column 'bid' appears twice"]


def test_dictionary_encoded_columns_are_read_as_their_values(tmp_path: Path) -> None:
    path = tmp_path / "quotes" / "AAPL.parquet"
    path.parent.mkdir(parents=True)
    table = quotes_table(stamps_in("us", [T0_US, T0_US + 1]), bid=pa.array([10.0, 10.0]).dictionary_encode())
    pq.write_table(table, path, store_schema=True)
    assert [q.bid for q in DataSet.open(tmp_path).quotes("AAPL")] == [10.0, 10.0]


def test_a_bars_parquet_in_quotes_is_one_clear_line(tmp_path: Path) -> None:
    path = tmp_path / "quotes" / "AAPL.parquet"
    path.parent.mkdir(parents=True)
    pq.write_table(pa.table({"timestamp": stamps_in("us", [T0_US]), **{c: [1.0] for c in ("open", "high", "low", "close", "volume")}}), path)
    assert refused(tmp_path) == [
        f"{path}:0:0: this is a bars file (timestamp, open, high, low, close, volume), in the quotes/ folder: "
        "quotes files have timestamp, bid, ask"
    ]


def test_a_truncated_parquet_is_told_as_truncated_not_as_text(tmp_path: Path) -> None:
    written = write_quotes(tmp_path / "w", "AAPL", [(T0 + timedelta(seconds=i), 10.0, 10.5) for i in range(100)], fsync=False)
    path = put(tmp_path, "quotes/AAPL.parquet", written.read_bytes()[:300])
    found = refused(tmp_path)
    assert found == [f"{path}:0:0: not a whole Parquet file: it begins as one but does not end with a Parquet footer "
                     "(truncated, or still being written)"]


@pytest.mark.parametrize("kept", [1, 3])
def test_a_parquet_cut_within_its_first_bytes_is_told_as_truncated(tmp_path: Path, kept: int) -> None:
    """"PAR", all a kill left of a file, read as text: "name it .csv if it is CSV"."""
    written = write_quotes(tmp_path / "w", "AAPL", [(T0, 10.0, 10.5)], fsync=False)
    path = put(tmp_path, "quotes/AAPL.parquet", written.read_bytes()[:kept])
    assert refused(tmp_path) == [
        f"{path}:0:0: not a whole Parquet file: {kept} bytes, cut short (truncated, or still being written)"
    ]


def test_a_written_parquet_damaged_on_disk_is_refused_by_its_page_checksums(tmp_path: Path) -> None:
    rows = [(T0 + timedelta(seconds=i), 10.0 + i / 100, 10.5 + i / 100) for i in range(2000)]
    path = write_quotes(tmp_path, "AAPL", rows, fsync=False)
    data = bytearray(path.read_bytes())
    at = pq.ParquetFile(path).metadata.row_group(0).column(1).data_page_offset + 200
    data[at : at + 4] = bytes(b ^ 0xFF for b in data[at : at + 4])  # inside the values: still well-formed Parquet
    path.write_bytes(bytes(data))
    (problem,) = refused(tmp_path)
    assert problem.startswith(f"{path}:0:0: cannot be read as Parquet (corrupt or truncated): ") and "\n" not in problem


# --- the folder ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("relative", ["quotes/AAPL.csv", "quotes/AAPL.parquet", "quotes/AAPL/part-000001.parquet"])
def test_a_fifo_is_refused_without_being_opened(tmp_path: Path, relative: str) -> None:
    # Opening a FIFO for reading blocks until a writer comes: a hang, before. Nothing here ever writes to it.
    path = tmp_path / relative
    path.parent.mkdir(parents=True)
    os.mkfifo(path)
    outcome: list[list[str] | BaseException] = []

    def open_it() -> None:
        try:
            DataSet.open(tmp_path)
        except DataError as exc:
            outcome.append([p.headline for p in exc.problems])
        except BaseException as exc:  # the test's own failure, reported below
            outcome.append(exc)

    reader = threading.Thread(target=open_it, daemon=True)
    reader.start()
    reader.join(timeout=30)
    if reader.is_alive():  # it opened the FIFO: give it a writer that closes at once, so the thread ends
        os.close(os.open(path, os.O_WRONLY))
        reader.join()
        pytest.fail(f"the data set blocked opening the FIFO {path}")
    (found,) = outcome
    assert isinstance(found, list), found
    assert any(h.startswith(f"{path}:0:0: is a named pipe (FIFO), not a regular file") for h in found), found


def test_a_device_behind_a_symbolic_link_is_refused(tmp_path: Path) -> None:
    (tmp_path / "quotes").mkdir()
    (tmp_path / "quotes" / "AAPL.csv").symlink_to("/dev/zero")  # read whole, it never ends
    assert refused(tmp_path) == [f"{tmp_path}/quotes/AAPL.csv:0:0: is a device, not a regular file: a data file is a plain file"]


def test_a_folder_named_like_a_file_and_a_kind_that_is_a_file(tmp_path: Path) -> None:
    put(tmp_path, "quotes/AAPL.csv/part-000001.csv", "timestamp,bid,ask\n")
    put(tmp_path, "bars", "not a folder")
    assert refused(tmp_path) == [
        f"{tmp_path}/bars:0:0: is not a folder: bars/ is a folder of files",
        f"{tmp_path}/quotes/AAPL.csv:0:0: is a folder, not a csv file (a symbol's parts folder is named without a suffix: AAPL/)",
    ]


@pytest.mark.parametrize("where", ["root", "kind", "parts"])
def test_a_folder_that_cannot_be_looked_into_is_a_problem_not_a_traceback(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, where: str
) -> None:
    put(tmp_path, "quotes/AAPL/part-000001.csv", "timestamp,bid,ask\n2026-11-23T14:30:00Z,1,2\n")
    put(tmp_path, "quotes/SPY.csv", "timestamp,bid,ask\n2026-11-23T14:30:00Z,1,2\n")
    denied = {"root": tmp_path / "quotes", "kind": tmp_path / "quotes", "parts": tmp_path / "quotes" / "AAPL"}[where]
    real_stat, real_iterdir = Path.stat, Path.iterdir

    def no_stat(self: Path, **kwargs: bool) -> os.stat_result:  # root: a folder whose parent has no search permission
        if self == denied:
            raise PermissionError(13, "Permission denied", str(self))
        return real_stat(self, **kwargs)

    def no_listing(self: Path) -> object:
        if self == denied:
            raise PermissionError(13, "Permission denied", str(self))
        return real_iterdir(self)

    if where == "root":
        monkeypatch.setattr(Path, "stat", no_stat)
    else:
        monkeypatch.setattr(Path, "iterdir", no_listing)
    said = "cannot be read" if where == "root" else "cannot be listed"
    assert f"{denied}:0:0: {said}: Permission denied" in refused(tmp_path)


@pytest.mark.parametrize("name", ["quote", "Quotes", "QUOTES", "bar"])
def test_a_kind_folder_spelled_otherwise_is_not_silently_left_unread(tmp_path: Path, name: str) -> None:
    """bars/ beside quote/SPY.csv: the quotes were never read, and the backtest priced SPY by its bars, unsaid."""
    put(tmp_path, "bars/SPY.csv", BARS + ROW)
    put(tmp_path, f"{name}/SPY.csv", "timestamp,bid,ask\n2026-11-23T14:30:00Z,10,10.5\n")
    kind = "quotes" if name.lower().startswith("quote") else "bars"
    assert refused(tmp_path) == [f"{tmp_path / name}:0:0: is not read: the folder of {kind} is named {kind}/ (rename it)"]
    (tmp_path / "notes").mkdir()  # another entry beside them is still not read
    (tmp_path / name).rename(tmp_path / "quotes")
    DataSet.open(tmp_path)


@pytest.mark.parametrize(("name", "meant", "what"), [("Ticks", "ticks", "a recording's ticks"),
                                                  ("tick", "ticks", "a recording's ticks"),
                                                  ("Unusable", "unusable", "a recording's unusable quotes"),
                                                  ("MISSING", "missing", "a recording's missing quotes")])
def test_a_recordings_folder_spelled_otherwise_is_not_silently_left_unread(tmp_path: Path, name: str, meant: str,
                                                                           what: str) -> None:
    """Ticks/ beside quotes/: the replay ticked at each quote's time instead of the run's ticks, unsaid; Missing/:
    it showed quotes the run never got."""
    put(tmp_path, "quotes/SPY.csv", "timestamp,bid,ask\n2026-11-23T14:30:00Z,10,10.5\n")
    put(tmp_path, f"{name}/SPY/part-000001.csv", "timestamp\n2026-11-23T14:30:00Z\n")
    assert refused(tmp_path) == [f"{tmp_path / name}:0:0: is not read: the folder of {what} is named {meant}/ (rename it)"]


def test_a_kind_folder_given_as_the_data_folder_says_to_give_its_parent(tmp_path: Path) -> None:
    put(tmp_path, "bars/SPY.csv", BARS + ROW)
    assert refused(tmp_path / "bars") == [
        f"{tmp_path / 'bars'}:0:0: holds neither a bars/ nor a quotes/ folder (docs/data.md): it is a bars/ folder itself, "
        f"of data files (SPY.csv): give the folder it is in, {tmp_path}"]


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads any file")
def test_an_unreadable_file_is_a_problem(tmp_path: Path) -> None:
    path = put(tmp_path, "quotes/AAPL.csv", "timestamp,bid,ask\n")
    path.chmod(0)
    try:
        assert refused(tmp_path) == [f"{path}:0:0: cannot be read: Permission denied"]
    finally:
        path.chmod(stat.S_IRUSR | stat.S_IWUSR)


@pytest.mark.parametrize("stem", ["BRK.", "BRK..B", ".BRK", "A.-B"])
def test_a_name_with_a_stray_dot_is_no_symbol(stem: str) -> None:
    with pytest.raises(ValueError, match="is not a symbol's file name"):
        symbol_of_stem(stem)


def test_read_file_never_raises_for_a_non_file(tmp_path: Path) -> None:
    (tmp_path / "AAPL.csv").mkdir()
    table, problems = read_file(tmp_path / "AAPL.csv", "quotes")
    assert table is None and [p.message for p in problems] == ["is a folder, not a file"]


def test_a_cell_or_name_cut_short_shows_no_part_of_a_key_in_it(tmp_path: Path) -> None:
    """A problem shows 60 characters of a cell or a column name, cut before the command line masks the keys: a key
    pasted there across the cut showed its first characters, which no exact mask finds. The cut word is masked."""
    key = "PKDATAKEY0123456789X"
    name = "n" * 50 + " " + key
    put(tmp_path, "bars/AAPL.csv", BARS.replace("volume", f"volume,{name}") + ROW.replace("\n", ",1\n"))
    found = " ".join(refused(tmp_path))
    assert "unknown column 'nnnnn" in found and "***..." in found, found
    assert not any(key[i : i + 3] in found for i in range(len(key) - 2)), found
