"""The recorder: quotes buffered and flushed on a bounded interval, parts that a kill leaves readable."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any, cast

import pytest

from engine.data.dataset import DataSet
from engine.data.errors import DataError
from engine.data.files import read_quotes, write_quotes, write_table
from engine.data.recorder import Recorder
from engine.data.records import Format, Quote
from engine.paths import PROJECT_ROOT

T0 = datetime(2026, 11, 23, 14, 30, tzinfo=timezone.utc)


class FakeMonotonic:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def parts(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


@pytest.mark.parametrize("fmt", ["parquet", "csv"])
def test_quotes_reach_disk_only_at_the_flush_interval_and_on_close(tmp_path: Path, fmt: str) -> None:
    clock = FakeMonotonic()
    recorder = Recorder(tmp_path, fmt=fmt, flush_seconds=5, fsync=False, monotonic=clock)  # type: ignore[arg-type]
    assert recorder.record("AAPL", T0, 100.0, 100.2)
    assert recorder.record("BTC/USD", T0, 50_000, 50_010)
    clock.now = 4.9
    assert recorder.record("AAPL", T0 + timedelta(seconds=5), 100.1, 100.3)
    assert parts(tmp_path / "quotes" / "AAPL") == []  # still buffered
    clock.now = 5.0
    recorder.record("AAPL", T0 + timedelta(seconds=10), 100.2, 100.4)  # the interval has passed: everything is flushed
    assert parts(tmp_path / "quotes" / "AAPL") == [f"part-000001.{fmt}"]
    assert [q.bid for q in read_quotes(tmp_path, "AAPL")] == [100.0, 100.1, 100.2]
    assert read_quotes(tmp_path, "BTC/USD") == [Quote(T0, 50_000.0, 50_010.0)]
    recorder.record("AAPL", T0 + timedelta(seconds=15), 100.3, 100.5)
    assert len(read_quotes(tmp_path, "AAPL")) == 3
    recorder.close()
    assert [q.bid for q in read_quotes(tmp_path, "AAPL")] == [100.0, 100.1, 100.2, 100.3]
    assert parts(tmp_path / "quotes" / "AAPL") == [f"part-000001.{fmt}"]  # the part was rewritten whole, not added to
    with pytest.raises(RuntimeError, match="closed"):
        recorder.record("AAPL", T0 + timedelta(seconds=20), 1, 2)


def test_a_full_part_starts_the_next_one(tmp_path: Path) -> None:
    with Recorder(tmp_path, flush_seconds=3600, segment_rows=4, fsync=False, monotonic=FakeMonotonic()) as recorder:
        for i in range(10):
            recorder.record("SPY", T0 + timedelta(seconds=i), 10.0 + i, 10.5 + i)
        assert parts(tmp_path / "quotes" / "SPY") == ["part-000001.parquet", "part-000002.parquet"]  # written when full
    assert parts(tmp_path / "quotes" / "SPY") == ["part-000001.parquet", "part-000002.parquet", "part-000003.parquet"]
    assert [q.bid for q in read_quotes(tmp_path, "SPY")] == [10.0 + i for i in range(10)]


def test_quotes_the_format_refuses_are_skipped_and_counted(tmp_path: Path) -> None:
    with Recorder(tmp_path, fsync=False, monotonic=FakeMonotonic()) as recorder:
        assert recorder.record("AAPL", T0, 100, 100)  # a locked quote is a quote
        assert not recorder.record("AAPL", T0, 100, 101)  # the same instant again
        assert not recorder.record("AAPL", T0 - timedelta(seconds=1), 100, 101)
        assert not recorder.record("AAPL", T0 + timedelta(seconds=1), -1, 101)  # no feed's
        assert not recorder.record("AAPL", T0 + timedelta(seconds=1), float("nan"), 101)
        assert recorder.record("AAPL", T0 + timedelta(seconds=1), 100, 101)
        with pytest.raises(ValueError, match="naive"):
            recorder.record("AAPL", datetime(2026, 11, 23, 15), 100, 101)
    assert recorder.recorded == 2
    assert recorder.skipped == {"the timestamp is not after the symbol's last": 1, "a price is below 0": 1,
                                "the timestamp is before the symbol's last recorded quote": 1,
                                "a price is not a finite number": 1}
    assert len(DataSet.open(tmp_path).quotes("AAPL")) == 2


def test_quotes_that_are_not_prices_are_recorded_apart_and_replayed_as_read(tmp_path: Path) -> None:
    """A side at 0 (Alpaca's empty side) and a crossed quote are what the engine read, and it traded on neither; they
    were skipped, so a replay showed the quote before them instead (stale, or a price the run did not have then):
    a replay of a feed gone one-sided halted on stale data where the run had not. They go to unusable/ now, in time
    order with the symbol's quotes, and a replay's frames carry them."""
    with Recorder(tmp_path, fsync=False, monotonic=FakeMonotonic()) as recorder:
        assert recorder.record("AAPL", T0, 100, 100.1)
        assert recorder.record("AAPL", T0 + timedelta(seconds=1), 0, 100.2)  # a feed's missing side
        assert recorder.record("AAPL", T0 + timedelta(seconds=2), 100.3, 100.2)  # crossed
        assert not recorder.record("AAPL", T0 + timedelta(seconds=2), 100, 101)  # its instant is taken
        assert recorder.record("AAPL", T0 + timedelta(seconds=3), 100.3, 100.4)
        assert recorder.record("AAPL", T0 + timedelta(seconds=4), 0, 0)  # no quote on either side
    assert (recorder.recorded, recorder.unusable, recorder.written) == (5, 3, 5)
    assert parts(tmp_path / "unusable" / "AAPL") == ["part-000001.parquet"]
    data = DataSet.open(tmp_path)
    assert [(q.bid, q.ask) for q in data.quotes("AAPL")] == [(100, 100.1), (100.3, 100.4)]
    frames = list(data.frames())
    assert [(f.at - T0).seconds for f in frames] == [0, 1, 2, 3, 4] and all(f.new_quotes == ("AAPL",) for f in frames)
    assert [(f.unusable["AAPL"].bid, f.quotes["AAPL"].bid) if "AAPL" in f.unusable else None for f in frames] == [
        None, (0, 100), (100.3, 100), (100.3, 100.3), (0, 100.3)]
    with Recorder(tmp_path, fsync=False) as second:  # the next recording goes on after the last of either folder
        assert not second.record("AAPL", T0 + timedelta(seconds=4), 100, 101)
        assert second.record("AAPL", T0 + timedelta(seconds=5), 100, 101)
    assert parts(tmp_path / "quotes" / "AAPL") == ["part-000001.parquet", "part-000002.parquet"]


def test_a_new_recording_continues_after_the_last_one_without_rewriting_it(tmp_path: Path) -> None:
    with Recorder(tmp_path, fsync=False) as first:
        first.record("AAPL", T0, 1, 2)
        first.record("AAPL", T0 + timedelta(seconds=1), 1, 2)
    written = (tmp_path / "quotes" / "AAPL" / "part-000001.parquet").read_bytes()
    (tmp_path / "quotes" / "AAPL" / ".part-000002.parquet.999999999.tmp").write_bytes(b"half a flush")
    with Recorder(tmp_path, fmt="csv", fsync=False) as second:
        assert not second.record("AAPL", T0 + timedelta(seconds=1), 1, 2)  # already recorded
        assert second.record("AAPL", T0 + timedelta(seconds=2), 1, 2)
    assert parts(tmp_path / "quotes" / "AAPL") == ["part-000001.parquet", "part-000002.csv"]  # the leftover is gone
    assert (tmp_path / "quotes" / "AAPL" / "part-000001.parquet").read_bytes() == written
    assert [q.timestamp for q in read_quotes(tmp_path, "AAPL")] == [T0 + timedelta(seconds=i) for i in range(3)]


def test_a_symbol_whose_quotes_are_one_file_is_not_recorded_beside_it(tmp_path: Path) -> None:
    write_quotes(tmp_path, "AAPL", [Quote(T0, 1, 2)], "csv")
    with Recorder(tmp_path, fsync=False) as recorder, pytest.raises(DataError, match="record into another folder"):
        recorder.record("AAPL", T0 + timedelta(seconds=1), 1, 2)


KILLED = """
import sys
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from engine.data.recorder import Recorder

t0 = datetime(2026, 11, 23, 14, 30, tzinfo=timezone.utc)
recorder = Recorder(sys.argv[1], flush_seconds=0, segment_rows=40, fsync=False)  # flush at every quote
i = 0
while True:
    for symbol in ("AAPL", "BTC/USD"):
        recorder.record(symbol, t0 + timedelta(seconds=i), 100 + i % 7, 100.5 + i % 7)
    i += 1
    print(i, flush=True)  # every quote so far is on disk
"""


def test_a_recording_killed_at_any_moment_leaves_every_file_readable(tmp_path: Path) -> None:
    child = subprocess.Popen([sys.executable, "-c", KILLED, str(tmp_path)], cwd=PROJECT_ROOT,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert child.stdout is not None
        for _ in range(150):  # the child dies wherever it is, most likely writing a part
            confirmed = int(child.stdout.readline())
        os.kill(child.pid, signal.SIGKILL)
    finally:
        child.kill()
        child.wait()
    assert child.returncode == -signal.SIGKILL
    data = DataSet.open(tmp_path)  # raises with every problem if any file is unreadable
    for symbol in ("AAPL", "BTC/USD"):
        recorded = data.quotes(symbol)
        assert len(recorded) >= confirmed  # nothing confirmed is lost
        assert [q.timestamp for q in recorded] == [T0 + timedelta(seconds=i) for i in range(len(recorded))]
    assert len(parts(tmp_path / "quotes" / "AAPL")) >= 3
    with Recorder(tmp_path, fsync=False) as again:  # and the recording can go on
        assert again.record("AAPL", T0 + timedelta(days=1), 1, 2)
    assert DataSet.open(tmp_path).quotes("AAPL")[-1] == Quote(T0 + timedelta(days=1), 1.0, 2.0)


def test_a_recording_killed_between_writing_a_part_and_putting_it_in_place(tmp_path: Path) -> None:
    # The one moment that matters, every time: the new part is whole in its temporary file, the old one in place.
    env = {**os.environ, "TRADING_HYDRA_FAILPOINT": "data_before_rename:61"}
    child = subprocess.run([sys.executable, "-c", KILLED, str(tmp_path)], cwd=PROJECT_ROOT, env=env,
                           capture_output=True, text=True, timeout=60, check=False)
    assert child.returncode == -signal.SIGKILL, child.stderr
    confirmed = int(child.stdout.split()[-1])
    assert confirmed == 30  # two flushes a step (AAPL, then BTC/USD): the 61st was AAPL's of step 31
    data = DataSet.open(tmp_path)
    assert len(data.quotes("AAPL")) == 30 and len(data.quotes("BTC/USD")) == 30
    leftovers = [p.name for p in (tmp_path / "quotes" / "AAPL").iterdir() if p.name.startswith(".")]
    assert len(leftovers) == 1 and leftovers[0].startswith(".part-000001.parquet.")
    with Recorder(tmp_path, fsync=False) as again:
        assert again.record("AAPL", T0 + timedelta(seconds=30), 1, 2)
    assert parts(tmp_path / "quotes" / "AAPL") == ["part-000001.parquet", "part-000002.parquet"]
    assert len(DataSet.open(tmp_path).quotes("AAPL")) == 31


def test_odd_values_are_skipped_and_counted_never_raised_nor_recorded_unreadable(tmp_path: Path) -> None:
    """Every one of these used to raise (and stop the whole recording: engine/trading/runner.py ends it on any
    error) or be written: True as a price of 1, a year the format refuses, which made the folder unreadable."""
    odd: list[Any] = [None, "1.5", "abc", True, 10**400, object(), Decimal("sNaN")]  # none a price, on purpose
    with Recorder(tmp_path, fsync=False, monotonic=FakeMonotonic()) as recorder:
        for i, value in enumerate(odd):
            assert not recorder.record("AAPL", T0 + timedelta(seconds=i), value, 101)
            assert not recorder.record("AAPL", T0 + timedelta(seconds=i), 100, value)
        assert not recorder.record("AAPL", datetime(9999, 12, 31, tzinfo=timezone.utc), 100, 101)
        assert not recorder.record("AAPL", datetime(1, 1, 1, tzinfo=timezone.utc), 100, 101)
        assert recorder.record("AAPL", T0 + timedelta(seconds=99), cast(Any, Decimal("100.5")), 101)  # a number of another type
        assert recorder.record("AAPL", T0 + timedelta(seconds=100), 100, 101)
    assert recorder.skipped == {"a price is not a number": 2 * len(odd), "the timestamp is outside the years 1900 to 2199": 2}
    assert [q.bid for q in DataSet.open(tmp_path).quotes("AAPL")] == [100.5, 100.0]  # the folder reads whole


def test_a_recording_into_a_folder_holding_later_quotes_says_what_it_lost(tmp_path: Path) -> None:
    """Repeats of the last instant are routine; quotes older than what the folder holds are lost, and counted
    apart (the run's last line names every reason but the routine one)."""
    with Recorder(tmp_path, fsync=False) as first:
        first.record("AAPL", T0 + timedelta(hours=1), 1, 2)
    with Recorder(tmp_path, fsync=False) as second:
        assert not second.record("AAPL", T0 + timedelta(hours=1), 1, 2)
        for i in range(3):
            assert not second.record("AAPL", T0 + timedelta(seconds=i), 1, 2)
    assert second.skipped == {"the timestamp is not after the symbol's last": 1,
                              "the timestamp is before the symbol's last recorded quote": 3}


@pytest.mark.parametrize("where", ["quotes", "quotes/AAPL"])
def test_a_file_where_a_folder_belongs_is_named(tmp_path: Path, where: str) -> None:
    (tmp_path / where).parent.mkdir(parents=True, exist_ok=True)
    (tmp_path / where).write_text("notes")
    with Recorder(tmp_path, fsync=False) as recorder, pytest.raises(DataError, match="is a regular file, not a folder, so a "
                                                                               "recording cannot write its parts there"):
        recorder.record("AAPL", T0, 1, 2)  # found as it holds the folder (which `run --record` does before its run)


@pytest.mark.parametrize("name", ["part-1.parquet", "part-0001.parquet", "zzz.parquet", "part-999999.parquet"])
def test_a_parts_folder_whose_next_part_would_not_be_read_last_is_refused_before_the_recording(tmp_path: Path,
                                                                                                name: str) -> None:
    """Parts are read in name order: a recording went on into part-000002 beside part-1.parquet (or part-1000000
    beside part-999999), which is read first, and the next backtest refused the whole folder, after the run."""
    folder = tmp_path / "quotes" / "AAPL"
    folder.mkdir(parents=True)
    write_table(folder / name, _quotes([T0]), "quotes", fsync=False)
    if name == "part-999999.parquet":
        write_table(folder / "part-000001.parquet", _quotes([T0 - timedelta(seconds=5)]), "quotes", fsync=False)
    DataSet.open(tmp_path)  # readable as it is
    with pytest.raises(DataError) as caught:
        Recorder(tmp_path, fsync=False).hold_folder()
    assert str(caught.value).startswith(f"{folder / name}:0:0: the parts of {folder}/ are read in name order, and the next "
                                        "part, part-"), str(caught.value)
    with pytest.raises(DataError, match="read in name order"):  # nor does an append to it write a part
        write_quotes(tmp_path, "AAPL", [Quote(T0 + timedelta(seconds=5), 1.0, 2.0)], fsync=False)
    assert len(list(folder.iterdir())) == (2 if name == "part-999999.parquet" else 1)
    DataSet.open(tmp_path)


def test_a_recording_goes_on_after_the_last_row_read_not_after_an_empty_last_part(tmp_path: Path) -> None:
    folder = tmp_path / "quotes" / "AAPL"
    folder.mkdir(parents=True)
    write_table(folder / "part-000001.parquet", _quotes([T0, T0 + timedelta(seconds=5)]), "quotes", fsync=False)
    (folder / "part-000002.csv").write_text("timestamp,bid,ask\n", encoding="utf-8")  # a header only: read as nothing
    with Recorder(tmp_path, fsync=False) as recorder:
        assert not recorder.record("AAPL", T0 + timedelta(seconds=3), 1, 2)  # before the last row read
        assert recorder.record("AAPL", T0 + timedelta(seconds=6), 1, 2)
    assert [q.timestamp for q in read_quotes(tmp_path, "AAPL")][-2:] == [T0 + timedelta(seconds=5), T0 + timedelta(seconds=6)]


def _quotes(stamps: list[datetime]) -> Any:
    import pyarrow as pa  # type: ignore[import-untyped]

    from engine.data.files import TIMESTAMP

    return pa.table({"timestamp": pa.array(stamps, TIMESTAMP), "bid": [1.0] * len(stamps), "ask": [2.0] * len(stamps)})


@pytest.mark.parametrize("how", ["deleted", "moved"])
def test_a_recording_whose_folder_is_deleted_or_moved_away_stops_and_says_so(tmp_path: Path, how: str) -> None:
    """Each write makes the folders it needs: the recording went on into a new, empty folder, its earlier parts
    gone, and the run still said it had recorded them all."""
    import shutil

    folder = tmp_path / "rec"
    recorder = Recorder(folder, flush_seconds=0, fsync=False)  # every quote flushed
    recorder.record("AAPL", T0, 100.0, 100.2)
    if how == "deleted":
        shutil.rmtree(folder)
    else:
        folder.rename(tmp_path / "elsewhere")
    assert not recorder.lost
    with pytest.raises(DataError, match="the recording folder was deleted or replaced during the recording"):
        recorder.record("AAPL", T0 + timedelta(seconds=5), 100.1, 100.3)
    assert recorder.lost
    assert not (folder / "quotes").exists()  # nothing written into a new folder as if it were the recording
    with pytest.raises(DataError, match="deleted or replaced"):
        recorder.close()  # what is held is not written there either
    assert not (folder / "quotes").exists()
    from engine.cli import _recording_line

    line = _recording_line(recorder, folder, "DataError: deleted")
    assert line == f"the recording stopped before the run did (DataError: deleted); nothing it recorded is left in {folder}"


def test_the_quotes_said_recorded_are_those_on_disk_when_a_write_fails(tmp_path: Path) -> None:
    """A recording stopped by a write that failed (a full disk) said 'recorded 5000 quotes ..., until then' where
    its files held 2500: the quotes taken since the last flush were counted as recorded."""
    import shutil

    from engine.cli import _recording_line

    recorder = Recorder(tmp_path, flush_seconds=3600, fsync=False, monotonic=FakeMonotonic())
    recorder.record("AAPL", T0, 100.0, 100.2)
    recorder.record("BTC/USD", T0, 50_000, 50_010)
    recorder.flush()
    recorder.record("AAPL", T0 + timedelta(seconds=5), 100.1, 100.3)
    recorder.record("BTC/USD", T0 + timedelta(seconds=5), 50_001, 50_011)
    shutil.rmtree(tmp_path / "quotes" / "BTC-USD")
    (tmp_path / "quotes" / "BTC-USD").write_text("in the way")  # BTC/USD's next write fails, AAPL's (first) does not
    with pytest.raises(OSError):
        recorder.flush()
    assert (recorder.recorded, recorder.written) == (4, 3)
    assert _recording_line(recorder, tmp_path, "OSError: no room").startswith(
        "the recording stopped before the run did (OSError: no room): recorded 3 quotes of 2 symbols to ")


def test_the_symbols_said_recorded_are_those_with_quotes_on_disk_when_the_first_write_fails(tmp_path: Path) -> None:
    """A recording whose first flush met a full disk part way said "recorded 1000 quotes of 5 symbols" where its
    folder held two symbols' parts: every symbol given a quote was counted, written or not, and the replay it
    pointed at then missed the other three. The file size limit in a child process would stop the run's own log
    and state file first; a file where a symbol's folder belongs fails that symbol's write the same way."""
    from engine.cli import _recording_line

    recorder = Recorder(tmp_path, flush_seconds=3600, fsync=False, monotonic=FakeMonotonic())
    for symbol in ("AAPL", "BTC/USD", "SPY"):
        recorder.record(symbol, T0, 100.0, 100.2)
    (tmp_path / "quotes").mkdir()
    (tmp_path / "quotes" / "BTC-USD").write_text("in the way")  # AAPL's part written, BTC/USD's refused, SPY's never tried
    with pytest.raises(OSError):
        recorder.flush()
    assert recorder.symbols == ["AAPL"]
    assert _recording_line(recorder, tmp_path, "OSError: no room").startswith(
        "the recording stopped before the run did (OSError: no room): recorded 1 quotes of 1 symbol to ")


@pytest.mark.parametrize("fmt", ["parquet", "csv"])
def test_the_ticks_that_read_the_quotes_are_recorded_and_continued_by_the_next_recording(tmp_path: Path, fmt: Format) -> None:
    """A replay ticks where the run ticked (DataSet.frames): the ticks are in ticks/, after the quotes at each flush."""
    with Recorder(tmp_path, fmt=fmt, flush_seconds=3600, segment_rows=3, fsync=False, monotonic=FakeMonotonic()) as first:
        for i in range(4):
            first.record("AAPL", T0 + timedelta(seconds=5 * i), 100.0, 100.1)
            assert first.tick(T0 + timedelta(seconds=7 * i))
        assert parts(tmp_path / "ticks") == [f"part-000001.{fmt}"]  # full at 3 rows, like a symbol's part
    with Recorder(tmp_path, fsync=False, monotonic=FakeMonotonic()) as second:
        assert not second.tick(T0 + timedelta(seconds=21))  # the first recording's last tick
        assert second.tick(T0 + timedelta(seconds=28))
        with pytest.raises(ValueError, match="naive"):
            second.tick(datetime(2026, 11, 23, 15))
    assert second.skipped == {"the tick is not after the recording's last tick": 1} and second.ticks == 1
    data = DataSet.open(tmp_path)
    assert data.ticks is not None and data.ticks.tolist() == [
        ((T0 - datetime(1970, 1, 1, tzinfo=timezone.utc)) // timedelta(microseconds=1)) + 7_000_000 * i for i in range(5)]


def test_a_flush_writes_the_ticks_after_the_quotes_they_read(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A kill in the middle of a flush leaves quotes no tick read (not replayed), never a tick without its quotes."""
    import engine.data.recorder as recorder_module

    written: list[str] = []

    def spying(path: Path, table: Any, kind: Any, **kwargs: Any) -> None:
        written.append(path.parent.name)
        write_table(path, table, kind, **kwargs)

    monkeypatch.setattr(recorder_module, "write_table", spying)
    with Recorder(tmp_path, fsync=False, monotonic=FakeMonotonic()) as recorder:
        recorder.record("SPY", T0, 1, 2)
        recorder.record("AAPL", T0, 1, 2)
        recorder.tick(T0)
    assert written == ["AAPL", "SPY", "ticks"]


def test_a_ticks_folder_that_cannot_be_read_refuses_the_data_and_the_next_recording(tmp_path: Path) -> None:
    with Recorder(tmp_path, fsync=False) as first:
        first.record("AAPL", T0, 1, 2)
        first.tick(T0)
    part = tmp_path / "ticks" / "part-000001.parquet"
    part.write_bytes(part.read_bytes()[:-10])  # cut short: a copy stopped half way
    with pytest.raises(DataError, match=r"ticks/part-000001\.parquet.*not a whole Parquet file"):
        DataSet.open(tmp_path)
    with pytest.raises(DataError, match=r"ticks/part-000001\.parquet"):
        Recorder(tmp_path, fsync=False).hold_folder()


def test_the_notes_of_a_recording_are_read_back_a_line_cut_by_a_kill_left_out(tmp_path: Path) -> None:
    """recording.jsonl: what the run met that its replay cannot have (engine/trading/runner.py writes it)."""
    from engine.data.recorder import read_notes

    assert read_notes(tmp_path) == ([], [])
    with Recorder(tmp_path, fsync=False) as recorder:
        recorder.note("run", T0, positions={"AAPL": 10.0}, cash=5.0)
        recorder.note("halt", T0 + timedelta(seconds=5), scope="system", reason="operator")
        with pytest.raises(ValueError, match="naive"):
            recorder.note("halt", datetime(2026, 11, 23, 15))
    notes, unread = read_notes(tmp_path)
    assert unread == [] and [(n["event"], n["at"]) for n in notes] == [("run", T0), ("halt", T0 + timedelta(seconds=5))]
    assert notes[0]["positions"] == {"AAPL": 10.0}
    with (tmp_path / "recording.jsonl").open("a") as f:
        f.write('{"event": "halt", "at": "2026-11-23T14:30:10"}\nnot json\n{"event": "halt", "at": "2026-11')  # cut
    notes, unread = read_notes(tmp_path)
    assert len(notes) == 2 and unread == [f"{tmp_path / 'recording.jsonl'}:3", f"{tmp_path / 'recording.jsonl'}:4"]


def test_the_next_recordings_first_note_is_not_glued_to_a_line_a_kill_cut(tmp_path: Path) -> None:
    """A run killed while writing a note leaves recording.jsonl ending mid-line; the next run recording into the
    folder appended its first note (the `run` record: what it held, its cash, its halts) onto that line, and both
    were lost to every reader."""
    from engine.data.recorder import read_notes

    with Recorder(tmp_path, fsync=False) as first:
        first.note("run", T0, positions={}, cash=5.0)
    with (tmp_path / "recording.jsonl").open("a") as f:
        f.write('{"event": "halt", "at": "2026-11')  # the kill
    later = T0 + timedelta(minutes=5)
    with Recorder(tmp_path, fsync=False) as second:
        second.note("run", later, positions={"AAPL": 10.0}, cash=4.0)
    notes, unread = read_notes(tmp_path)
    assert [(n["event"], n["at"]) for n in notes] == [("run", T0), ("run", later)]
    assert notes[1]["positions"] == {"AAPL": 10.0}
    assert unread == [f"{tmp_path / 'recording.jsonl'}:2"]  # the cut line is told, not taken for the next one


@pytest.mark.parametrize(("name", "make", "said"), [
    ("recording.jsonl", os.mkfifo, "is a FIFO"),  # appended to, it waits for a reader forever
    ("recording.jsonl", lambda p: os.symlink("/dev/null", p), "is a device"),
    ("recording.jsonl", lambda p: os.symlink(p.with_name("gone"), p), "is a link to nothing"),
    ("recording.jsonl", os.mkdir, "is a folder"),
    (".recording.lock", os.mkdir, "is a folder"),  # IsADirectoryError, before
])
def test_a_notes_or_lock_file_that_is_not_a_file_refuses_the_recording_before_it_starts(
        tmp_path: Path, name: str, make: Any, said: str) -> None:
    make(tmp_path / name)
    with pytest.raises(DataError) as caught:
        Recorder(tmp_path, fsync=False).hold_folder()
    assert str(caught.value).startswith(f"{tmp_path / name}:0:0: {said}, not a regular file"), str(caught.value)
    assert not (tmp_path / "gone").exists()


@pytest.mark.parametrize("denied", ["quotes", "quotes/AAPL", "unusable", "ticks"])
def test_a_folder_of_the_recording_that_cannot_be_listed_refuses_it_before_the_run(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, denied: str) -> None:
    """Another user's recording, copied with its modes: listing its folders was a PermissionError traceback out of
    `run --record`. Root lists any folder, so the refusal is the kernel's, played by Path.iterdir."""
    for folder in ("quotes/AAPL", "unusable/AAPL", "ticks"):
        (tmp_path / folder).mkdir(parents=True)
    real_iterdir = Path.iterdir

    def no_listing(self: Path) -> Any:
        if self == tmp_path / denied:
            raise PermissionError(13, "Permission denied", str(self))
        return real_iterdir(self)

    monkeypatch.setattr(Path, "iterdir", no_listing)
    with pytest.raises(DataError) as caught:
        Recorder(tmp_path, fsync=False).hold_folder()
    assert str(caught.value) == f"{tmp_path / denied}:0:0: cannot be listed: Permission denied"


_RUN = {"event": "run", "at": "2026-11-23T14:30:00+00:00", "broker": "sim", "cash": 100000.0, "equity": 100000.0,
        "positions": {}, "halts": [], "state_last_tick": None, "recorded_last_tick": None}


@pytest.mark.parametrize("line", [
    "[" * 100_000 + "]" * 100_000,  # nested past the recursion limit: a RecursionError, before
    '{"event": "halt", "at": "0001-01-01T00:00:00+05:00"}',  # before year 1 in UTC: an OverflowError
    '{"event": "halt", "at": "9999-12-31T23:59:59-05:00"}',  # after year 9999 in UTC
    json.dumps({**_RUN, "halts": 5}),  # iterated by the backtest: a TypeError
    json.dumps({**_RUN, "cash": 10**400}),  # compared with a float: an OverflowError
    json.dumps({**_RUN, "positions": [["AAPL", 10]]}),  # read as no position, without a word
    json.dumps({**_RUN, "cash": "1e9"}),  # read as no cash, without a word
    json.dumps({**_RUN, "cash": True}),  # read as 1.00
    '{"event": "run", "at": "2026-11-23T14:30:00+00:00", "cash": NaN}',  # never differs from --cash
    json.dumps({**_RUN, "positions": {"AAPL": "10"}}),
    json.dumps({**_RUN, "state_last_tick": 5}),
    json.dumps({**_RUN, "recorded_last_tick": "2026-11-23T14:30:00"}),
    json.dumps({"event": "halt", "at": "2026-11-23T14:30:00+00:00", "scope": ["system"], "reason": "x"}),
])
def test_a_note_the_recorder_did_not_write_is_told_by_its_line_not_used(tmp_path: Path, line: str) -> None:
    from engine.data.recorder import read_notes

    (tmp_path / "recording.jsonl").write_text(json.dumps(_RUN) + "\n" + line + "\n", encoding="utf-8")
    notes, unread = read_notes(tmp_path)
    assert [n["event"] for n in notes] == ["run"] and unread == [f"{tmp_path / 'recording.jsonl'}:2"]


def test_notes_that_are_not_a_regular_file_are_told_without_being_opened(tmp_path: Path) -> None:
    from engine.data.recorder import read_notes

    notes = tmp_path / "recording.jsonl"
    os.symlink("/dev/zero", notes)  # read whole, it never ends
    assert read_notes(tmp_path) == ([], [f"{notes} is a device, not a regular file (not opened)"])
    notes.unlink()
    os.mkfifo(notes)  # opened, it waits for a writer forever
    outcome: list[object] = []
    reader = threading.Thread(target=lambda: outcome.append(read_notes(tmp_path)), daemon=True)
    reader.start()
    reader.join(timeout=30)
    if reader.is_alive():  # it opened the FIFO: a writer that closes at once ends the thread
        os.close(os.open(notes, os.O_WRONLY))
        reader.join()
        pytest.fail("read_notes blocked opening the FIFO")
    assert outcome == [([], [f"{notes} is a FIFO, not a regular file (not opened)"])]
    notes.unlink()
    notes.mkdir()
    assert read_notes(tmp_path) == ([], [f"{notes} is a folder, not a regular file (not opened)"])


def test_the_ticks_that_got_no_quote_of_a_symbol_are_recorded(tmp_path: Path) -> None:
    """missing/<SYMBOL>/: the ticks whose snapshot asked for the symbol and got none; a frame there names it."""
    with Recorder(tmp_path, fsync=False, monotonic=FakeMonotonic()) as recorder:
        for second in range(4):
            at = T0 + timedelta(seconds=5 * second)
            recorder.record("AAPL", at, 100.0, 100.1)
            if second in (1, 2):
                assert recorder.missing("SPY", at)
            else:
                recorder.record("SPY", at, 50.0, 50.1)
            recorder.tick(at)
        assert not recorder.missing("SPY", T0 + timedelta(seconds=10))  # already recorded missing then
    assert recorder.missing_quotes == 2 and recorder.skipped == {"a missing quote's tick is not after the symbol's last": 1}
    assert parts(tmp_path / "missing" / "SPY") == ["part-000001.parquet"]
    frames = list(DataSet.open(tmp_path).frames())
    assert [f.missing for f in frames] == [(), ("SPY",), ("SPY",), ()]
    assert [f.quotes["SPY"].timestamp for f in frames] == [T0, T0, T0, T0 + timedelta(seconds=15)]


def test_a_recording_that_took_nothing_leaves_its_folder_as_it_found_it(tmp_path: Path) -> None:
    """`run --record DIR` locks DIR before its run starts; a run refused at its start (keys, a --start before the
    state's time) closed the recorder having taken nothing, and left DIR made and holding only `.recording.lock`: a
    folder that looked recorded and held nothing. What the lock made is removed again, the folders above it too; a
    recording that took a quote, a tick or a note keeps its folder, and a lock that was there stays."""
    folder = tmp_path / "new" / "rec"
    with Recorder(folder, fsync=False) as recorder:
        recorder.hold_folder()
        assert (folder / ".recording.lock").is_file()
    assert not (tmp_path / "new").exists()
    with Recorder(folder, fsync=False) as recorder:
        recorder.note("run", T0)  # notes alone are a recording (a run killed before its first flush)
    assert sorted(p.name for p in folder.iterdir()) == [".recording.lock", "recording.jsonl"]
    with Recorder(folder, fsync=False) as recorder:
        recorder.hold_folder()
    assert (folder / ".recording.lock").is_file()  # there before: not this recording's to remove
    (folder / "recording.jsonl").unlink()
    (folder / ".recording.lock").unlink()
    with Recorder(folder, fsync=False) as recorder:
        assert recorder.record("AAPL", T0, 1, 2)
    assert read_quotes(folder, "AAPL") == [Quote(T0, 1.0, 2.0)]
