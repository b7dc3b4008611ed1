"""Which halts the next start takes from the log as the last run's unsaved ones (engine/trading/unsaved.py): only
the last run's, and never a line it cannot read. The whole path (a full state file mid-run, the next start) is in
test_runner_disk_faults.py."""

from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path

from engine.trading import unsaved
from engine.trading.unsaved import unsaved_halts

AT = "2026-11-23T14:41:00+00:00"


def _line(event: str, **fields: object) -> str:
    return json.dumps({"ts": AT, "event": event, **fields}) + "\n"


def _not_saved(reason: str) -> str:
    return _line("halt_not_saved", reason=reason, error="StateFileError: full", scope="system", until="2026-11-23T21:11:00+00:00")


def test_only_the_last_runs_unsaved_halts_are_taken(tmp_path: Path) -> None:
    """A halt an earlier run could not save was taken by the start after it: a run_start since means it is done."""
    log = tmp_path / "app.jsonl"
    log.write_text(_line("run_start") + _not_saved("old") + _line("run_start") + _not_saved("new") + _line("run_end"))
    [halt] = unsaved_halts(log)
    assert (halt.reason, halt.at, halt.until) == ("new", datetime(2026, 11, 23, 14, 41, tzinfo=timezone.utc),
                                                  datetime(2026, 11, 23, 21, 11, tzinfo=timezone.utc))  # fmt: skip


def test_lines_that_cannot_be_read_are_passed_over_and_a_missing_log_holds_none(tmp_path: Path) -> None:
    """A torn last line (a kill), bytes that are not UTF-8, an event without its time: nothing to record, no error."""
    log = tmp_path / "app.jsonl"
    log.write_bytes((_line("run_start") + _not_saved("kept")).encode() + b'{"event":"halt_not_saved","reason":"x"}\n'
                    + b'\xff{"event":"halt_not_saved"\n' + _not_saved("torn").encode()[:40])  # fmt: skip
    assert [h.reason for h in unsaved_halts(log)] == ["kept"]
    assert unsaved_halts(tmp_path / "none.jsonl") == []


def test_only_the_end_of_a_long_log_is_read(tmp_path: Path, monkeypatch) -> None:
    """A start never reads a whole log: the event is among the last lines of the run that stopped on it."""
    monkeypatch.setattr(unsaved, "TAIL_BYTES", 1000)
    log = tmp_path / "app.jsonl"
    log.write_text(_not_saved("far back") + _line("tick", pad="x" * 2000) + _not_saved("at the end"))
    assert [h.reason for h in unsaved_halts(log)] == ["at the end"]


def test_a_log_that_is_not_a_regular_file_is_not_read(tmp_path: Path) -> None:
    """A log written to a FIFO a reader drains is accepted by the journal; the start must not wait on it for lines
    (the write end is the run's own): nothing is read back from what is not a file."""
    import os

    fifo = tmp_path / "app.jsonl"
    os.mkfifo(fifo)
    writer = os.open(fifo, os.O_RDWR)  # a write end held, as the run's journal holds it
    try:
        assert unsaved_halts(fifo) == []
    finally:
        os.close(writer)


def test_a_fifo_no_process_writes_to_is_not_waited_on(tmp_path: Path) -> None:
    """`status` reads the log's end with no write end of its own: opening a FIFO at the log's path for reading
    waited for a writer for ever, and `status` hung. In a child process, so that a hang fails the test."""
    import os
    import subprocess
    import sys

    fifo = tmp_path / "app.jsonl"
    os.mkfifo(fifo)
    code = "import sys; from pathlib import Path; from engine.trading.unsaved import unsaved_halts; print(unsaved_halts(Path(sys.argv[1])))"
    done = subprocess.run([sys.executable, "-c", code, str(fifo)], capture_output=True, text=True, timeout=60)
    assert done.stdout == "[]\n", done
