"""The replay clock over a data folder: every distinct instant once, in order, with each symbol's latest row."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from engine.data.dataset import DataSet, Frame
from engine.data.files import write_bars, write_quotes
from engine.data.records import Bar, Quote

T0 = datetime(2026, 11, 23, 14, 30, tzinfo=timezone.utc)


def at(minutes: float) -> datetime:
    return T0 + timedelta(minutes=minutes)


def bar(minutes: float, close: float) -> Bar:
    return Bar(at(minutes), close, close + 1, close - 1, close, 10.0)


@pytest.fixture
def data(tmp_path: Path) -> DataSet:
    # AAPL bars at 0, 1, 3; BTC/USD bars at 1, 2 (CSV); AAPL quotes at 0.5 and 3.
    write_bars(tmp_path, "AAPL", [bar(0, 100), bar(1, 101), bar(3, 103)])
    write_bars(tmp_path, "BTC/USD", [bar(1, 50_000), bar(2, 50_010)], "csv")
    write_quotes(tmp_path, "AAPL", [Quote(at(0.5), 100.4, 100.6), Quote(at(3), 102.9, 103.1)])
    return DataSet.open(tmp_path)


def summary(frame: Frame) -> tuple[float, dict[str, float], dict[str, float], tuple[str, ...], tuple[str, ...]]:
    """(minutes, close by symbol, bid by symbol, new bars, new quotes): one frame, readable in an assertion."""
    return ((frame.at - T0) / timedelta(minutes=1), {s: b.close for s, b in frame.bars.items()},
            {s: q.bid for s, q in frame.quotes.items()}, frame.new_bars, frame.new_quotes)


def test_what_the_data_set_holds(data: DataSet) -> None:
    assert data.symbols == ("AAPL", "BTC/USD")
    assert data.bar_symbols == ("AAPL", "BTC/USD") and data.quote_symbols == ("AAPL",)
    assert data.time_range() == (at(0), at(3))
    assert data.rows("bars", "AAPL") == 3 and data.rows("quotes", "BTC/USD") == 0
    assert data.bars("BTC/USD") == [bar(1, 50_000), bar(2, 50_010)] and data.quotes("BTC/USD") == []


def test_the_clock_steps_through_the_union_of_timestamps_with_each_symbols_latest_row(data: DataSet) -> None:
    assert [summary(f) for f in data.frames()] == [
        (0.0, {"AAPL": 100}, {}, ("AAPL",), ()),
        (0.5, {"AAPL": 100}, {"AAPL": 100.4}, (), ("AAPL",)),
        (1.0, {"AAPL": 101, "BTC/USD": 50_000}, {"AAPL": 100.4}, ("AAPL", "BTC/USD"), ()),
        (2.0, {"AAPL": 101, "BTC/USD": 50_010}, {"AAPL": 100.4}, ("BTC/USD",), ()),
        (3.0, {"AAPL": 103, "BTC/USD": 50_010}, {"AAPL": 102.9}, ("AAPL",), ("AAPL",)),
    ]


def test_a_frame_is_an_aware_utc_instant_and_keeps_what_it_said(data: DataSet) -> None:
    frames = list(data.frames())
    assert all(f.at.tzinfo is timezone.utc for f in frames)
    assert frames[0].bars["AAPL"].close == 100 and frames[0].bars["AAPL"] == bar(0, 100)  # not overwritten by later steps


def test_a_window_starts_knowing_the_rows_before_it_and_ends_inclusive(data: DataSet) -> None:
    assert [summary(f) for f in data.frames(at(1.5), at(3))] == [
        (2.0, {"AAPL": 101, "BTC/USD": 50_010}, {"AAPL": 100.4}, ("BTC/USD",), ()),
        (3.0, {"AAPL": 103, "BTC/USD": 50_010}, {"AAPL": 102.9}, ("AAPL",), ("AAPL",)),
    ]
    assert [f.at for f in data.frames(at(1), at(1))] == [at(1)]
    assert list(data.frames(at(4))) == []
    with pytest.raises(ValueError, match="naive"):
        next(data.frames(datetime(2026, 11, 23)))


def test_bars_replayed_when_they_became_known(data: DataSet) -> None:
    # A bar stamped with its minute's start is known at the minute's end: the 14:30 bar is seen at 14:31.
    frames = [summary(f) for f in data.frames(bars_known_after=timedelta(minutes=1))]
    assert frames[:3] == [
        (0.5, {}, {"AAPL": 100.4}, (), ("AAPL",)),
        (1.0, {"AAPL": 100}, {"AAPL": 100.4}, ("AAPL",), ()),
        (2.0, {"AAPL": 101, "BTC/USD": 50_000}, {"AAPL": 100.4}, ("AAPL", "BTC/USD"), ()),
    ]
    assert frames[-1] == (4.0, {"AAPL": 103, "BTC/USD": 50_010}, {"AAPL": 102.9}, ("AAPL",), ())
    assert data.frames(at(2.5), bars_known_after=timedelta(minutes=1)).__next__().bars["AAPL"].close == 101


def test_a_long_series_crosses_the_replay_chunks_in_order(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("engine.data.dataset._CHUNK", 4)  # rows become records a chunk at a time: cross many chunks
    n = 25
    write_quotes(tmp_path, "A", [Quote(T0 + timedelta(seconds=2 * i), 1.0, 1.0 + i) for i in range(n)])
    write_quotes(tmp_path, "B", [Quote(T0 + timedelta(seconds=2 * i + 1), 1.0, 1.0 + i) for i in range(n)])
    steps = list(DataSet.open(tmp_path).frames())
    assert [s.at for s in steps] == [T0 + timedelta(seconds=i) for i in range(2 * n)]
    assert [s.new_quotes for s in steps] == [("A",), ("B",)] * n
    assert steps[-1].quotes == {"A": Quote(T0 + timedelta(seconds=2 * n - 2), 1.0, float(n)),
                                "B": Quote(T0 + timedelta(seconds=2 * n - 1), 1.0, float(n))}


def recording(folder: Path, quotes: dict[str, list[tuple[float, float]]], ticks: list[float]) -> DataSet:
    """A recording's folder: each symbol's quotes (minutes, bid) and the run's ticks (minutes), via the recorder."""
    from engine.data.recorder import Recorder

    with Recorder(folder, fsync=False) as recorder:
        for symbol, rows in quotes.items():
            for minutes, bid in rows:
                recorder.record(symbol, at(minutes), bid, bid + 0.1)
        for minutes in ticks:
            recorder.tick(at(minutes))
    return DataSet.open(folder)


def test_a_recording_steps_at_its_runs_ticks_each_seeing_the_rows_known_by_then(tmp_path: Path) -> None:
    """A run that ticked between its quotes' times (every 1.4 minutes here, over quotes every minute) decided then:
    its replay ticks there, not at the quotes' times, and a quote is new at the first tick after it."""
    data = recording(tmp_path, {"AAPL": [(0, 100), (1, 101), (2, 102)], "SPY": [(0, 50), (2, 52)]}, [0, 1.4, 2.8])
    assert [summary(f) for f in data.frames()] == [
        (0.0, {}, {"AAPL": 100, "SPY": 50}, (), ("AAPL", "SPY")),
        (1.4, {}, {"AAPL": 101, "SPY": 50}, (), ("AAPL",)),
        (2.8, {}, {"AAPL": 102, "SPY": 52}, (), ("AAPL", "SPY")),
    ]
    frames = data.frames(at(1), at(2.8))  # a window: its first tick knows the rows before it
    assert [summary(f) for f in frames] == [(1.4, {}, {"AAPL": 101, "SPY": 50}, (), ("AAPL",)),
                                            (2.8, {}, {"AAPL": 102, "SPY": 52}, (), ("AAPL", "SPY"))]
    assert getattr(frames, "unseen") == 0  # noqa: B009


def test_rows_no_recorded_tick_saw_are_counted(tmp_path: Path) -> None:
    """Two rows of a symbol between two ticks, or rows after the last tick, were not read by this recording's run:
    data merged in from elsewhere, or ticks lost. The replay cannot be the run's there, and can say so."""
    data = recording(tmp_path, {"AAPL": [(0, 100), (1, 101), (1.2, 101.2), (3, 103)]}, [0, 1.4])
    frames = data.frames()
    assert [summary(f) for f in frames] == [(0.0, {}, {"AAPL": 100}, (), ("AAPL",)), (1.4, {}, {"AAPL": 101.2}, (), ("AAPL",))]
    assert (frames.unseen, frames.first_unseen) == (2, at(1.2))  # type: ignore[attr-defined]
    cut = data.frames(None, at(2))  # the window ends before the row after the last tick: nothing unseen in it
    assert len(list(cut)) == 2 and cut.unseen == 1  # type: ignore[attr-defined]


def test_unusable_quotes_are_checked_as_what_they_are(tmp_path: Path) -> None:
    """unusable/ holds a recording's quotes that are not prices: a side at 0 or crossed, never below 0, never a
    usable quote (which belongs in quotes/), never at an instant the symbol's quotes/ also has."""
    from engine.data.errors import DataError

    write_quotes(tmp_path, "AAPL", [Quote(at(0), 100, 100.1), Quote(at(1), 100, 100.1)])
    (tmp_path / "unusable" / "AAPL").mkdir(parents=True)
    (tmp_path / "unusable" / "AAPL" / "part-000001.csv").write_text(
        "timestamp,bid,ask\n2026-11-23T14:30:30Z,0,100.1\n2026-11-23T14:30:40Z,100.2,100.1\n2026-11-23T14:30:50Z,-1,100\n"
        "2026-11-23T14:30:55Z,100,100.1\n2026-11-23T14:31:00Z,0,0\n")
    with pytest.raises(DataError) as refused:
        DataSet.open(tmp_path)
    text = str(refused.value)
    assert "part-000001.csv:4:0: row 3: bid: -1.0 is negative" in text
    assert "row 4: bid 100.0 and ask 100.1 are a usable quote: it belongs in quotes/" in text
    assert "row 2" not in text and "row 1:" not in text
    (tmp_path / "unusable" / "AAPL" / "part-000001.csv").write_text("timestamp,bid,ask\n2026-11-23T14:31:00Z,0,0\n")
    with pytest.raises(DataError, match=r"AAPL has a quote in quotes/ and one in unusable/ at the same instant "
                                        r"\(1 instant, the first 2026-11-23T14:31:00Z\): keep one"):
        DataSet.open(tmp_path)
    (tmp_path / "unusable" / "AAPL" / "part-000001.csv").unlink()
    (tmp_path / "unusable" / "AAPL").rmdir()
    (tmp_path / "unusable").rmdir()
    (tmp_path / "unusable").write_text("a file")
    with pytest.raises(DataError, match="unusable:0:0: is not a folder: unusable/ is a folder of files"):
        DataSet.open(tmp_path)


def test_a_ticks_folder_without_a_tick_is_refused_not_replayed_as_no_data(tmp_path: Path) -> None:
    """An empty ticks/ left the replay nothing to tick at: 'no data between ... and its end', over a folder of quotes."""
    from engine.data.errors import DataError

    write_quotes(tmp_path, "AAPL", [Quote(at(0), 100, 100.1)])
    (tmp_path / "ticks").mkdir()
    (tmp_path / "ticks" / "part-000001.csv").write_text("timestamp\n")
    with pytest.raises(DataError, match=r"ticks:0:0: holds no tick: a recording's ticks/ holds the instants its run "
                                        r"ticked at, where its replay ticks \(remove ticks/ to replay at each row's time\)"):
        DataSet.open(tmp_path)
