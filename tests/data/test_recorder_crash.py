"""`run --record` killed: what a recording faster than the wall clock keeps, and what a kill before any flush
leaves. The recording process kills itself after a set number of quotes (no timing), as a kill -9 would."""

from __future__ import annotations

import signal
import subprocess
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from engine.data.dataset import DataSet
from engine.data.errors import DataError
from engine.data.recorder import LOCK_FILE, Recorder
from engine.paths import PROJECT_ROOT

T0 = datetime(2026, 11, 23, 14, 30, tzinfo=timezone.utc)

# A simulated day: thousands of quotes in well under flush_seconds of wall time, then SIGKILL.
KILLED_AFTER = """
import os, signal, sys
from datetime import datetime, timedelta, timezone
from engine.data.recorder import Recorder

t0 = datetime(2026, 11, 23, 14, 30, tzinfo=timezone.utc)
recorder = Recorder(sys.argv[1], flush_seconds=3600, fsync=False)  # the wall clock never flushes here
for i in range(int(sys.argv[2])):
    for symbol in ("AAPL", "SPY"):
        recorder.record(symbol, t0 + timedelta(seconds=5 * i), 100 + i % 7, 100.5 + i % 7)
os.kill(os.getpid(), signal.SIGKILL)
"""


def _record_then_die(folder: Path, steps: int) -> None:
    child = subprocess.run([sys.executable, "-c", KILLED_AFTER, str(folder), str(steps)], cwd=PROJECT_ROOT,
                           capture_output=True, text=True, timeout=60, check=False)  # fmt: skip
    assert child.returncode == -signal.SIGKILL, child.stderr


def test_a_recording_faster_than_the_flush_interval_loses_only_its_last_rows(tmp_path: Path) -> None:
    """A simulated day runs in two seconds: flushed only every 5 s of wall time, a kill in it lost every quote
    (while the state file kept every tick), and the folder did not replay."""
    steps = 3000  # 6,000 quotes: more than twice Recorder's flush_rows
    _record_then_die(tmp_path, steps)
    data = DataSet.open(tmp_path)
    kept_by_symbol = {symbol: data.quotes(symbol) for symbol in ("AAPL", "SPY")}
    assert all(kept_by_symbol.values()), "the quotes recorded before the kill were lost"
    flush_rows = Recorder(tmp_path / "unused").flush_rows
    for kept in kept_by_symbol.values():
        assert steps - flush_rows <= len(kept) < steps
        assert [q.timestamp for q in kept] == [T0 + timedelta(seconds=5 * i) for i in range(len(kept))]
    with Recorder(tmp_path, fsync=False) as again:  # the next recording goes on after the last row kept
        assert again.record("AAPL", T0 + timedelta(seconds=5 * steps), 1, 2)


def test_the_row_bound_flushes_without_the_wall_clock(tmp_path: Path) -> None:
    recorder = Recorder(tmp_path, flush_seconds=3600, flush_rows=4, fsync=False, monotonic=lambda: 0.0)
    for i in range(3):
        recorder.record("AAPL", T0 + timedelta(seconds=i), 1, 2)
    assert not (tmp_path / "quotes").exists()
    recorder.record("BTC/USD", T0, 1, 2)  # the fourth quote, of any symbol
    assert len(DataSet.open(tmp_path).quotes("AAPL")) == 3
    with pytest.raises(ValueError, match="flush_rows"):
        Recorder(tmp_path, flush_rows=0)


def test_a_recording_killed_before_its_first_flush_leaves_no_empty_folder(tmp_path: Path) -> None:
    """An empty quotes/AAPL/ read as 'AAPL has no data here: fetch it'; now the folder is what it is, empty."""
    _record_then_die(tmp_path, 10)
    assert [p.name for p in tmp_path.iterdir()] == [LOCK_FILE]  # hidden: readers ignore it
    with pytest.raises(DataError, match="neither a bars/ nor a quotes/ folder"):
        DataSet.open(tmp_path)


def test_a_live_recorders_temporary_file_is_left_alone(tmp_path: Path) -> None:
    """Another recording into the same folder, mid-flush: its temporary file is its own, not a leftover (it
    was deleted, and that recording's rename then failed); a dead writer's is removed."""
    folder = tmp_path / "quotes" / "AAPL"
    folder.mkdir(parents=True)
    other = subprocess.Popen([sys.executable, "-c", "import sys; sys.stdin.read()"], stdin=subprocess.PIPE)
    try:
        live = folder / f".part-000001.parquet.{other.pid}.tmp"
        live.write_bytes(b"a flush in progress")
        dead = folder / ".part-000001.parquet.999999999.tmp"
        dead.write_bytes(b"half a flush")
        with Recorder(tmp_path, fsync=False) as recorder:
            assert recorder.record("AAPL", T0, 1, 2)
        assert live.exists() and not dead.exists()
    finally:
        other.communicate(b"")


def test_a_second_recording_into_the_same_folder_at_once_is_refused(tmp_path: Path) -> None:
    """Both used to start the same next part and rename over each other's: only the last writer's quotes were
    kept, silently. One after the other, the second continues the first."""
    first = Recorder(tmp_path, flush_seconds=0, fsync=False)
    assert first.record("AAPL", T0, 1, 2)
    second = Recorder(tmp_path, flush_seconds=0, fsync=False)
    with pytest.raises(DataError, match="another recording is writing to this folder now"):
        second.record("AAPL", T0 + timedelta(seconds=1), 1, 2)
    assert first.record("AAPL", T0 + timedelta(seconds=2), 1, 2)
    first.close()
    with Recorder(tmp_path, fsync=False) as third:
        assert third.record("AAPL", T0 + timedelta(seconds=3), 1, 2)
    assert [q.timestamp for q in DataSet.open(tmp_path).quotes("AAPL")] == [T0 + timedelta(seconds=i) for i in (0, 2, 3)]
