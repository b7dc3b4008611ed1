"""The log changed under a writer that holds it open: rotated away, deleted, truncated, or left ending in a line
cut short. Every later event must still reach the file at the log's path, each on a line of its own."""

from __future__ import annotations

import os
from datetime import datetime, timezone
from pathlib import Path

from engine.core.clock import ManualClock
from engine.core.journal import Journal, read_events

AT = datetime(2026, 11, 23, 14, 30, tzinfo=timezone.utc)


def test_a_log_rotated_away_is_reopened_at_its_path(tmp_path: Path) -> None:
    log = tmp_path / "app.jsonl"
    journal = Journal(log, ManualClock(AT))
    journal.log("before")
    journal.flush()
    assert journal.whole_at_path()
    log.rename(tmp_path / "app.jsonl.1")  # logrotate's default: rename, the writer is expected to follow the path
    assert not journal.whole_at_path()  # before the next write too: the file at the path lacks "before"
    journal.log("after")
    journal.close()
    assert not journal.whole_at_path()  # a log that must be one whole file (a backtest's) is not
    assert [e["event"] for e in read_events(tmp_path / "app.jsonl.1")] == ["before"]
    assert [e["event"] for e in read_events(log)] == ["after"]


def test_a_deleted_log_is_created_again(tmp_path: Path) -> None:
    log = tmp_path / "app.jsonl"
    journal = Journal(log, ManualClock(AT))
    journal.log("before")
    journal.flush()
    log.unlink()
    journal.log("after")
    journal.flush()
    other = Journal(log, ManualClock(AT))  # an operator's `halt` beside the running engine
    other.log("halt")
    other.close()
    journal.log("later")
    journal.close()
    assert [e["event"] for e in read_events(log)] == ["after", "halt", "later"]


def test_a_deleted_log_folder_is_made_again(tmp_path: Path) -> None:
    """`rm -rf logs/` by a cleanup job: the reopen raised, which halted the system and ended the run."""
    import shutil

    log = tmp_path / "logs" / "app.jsonl"
    journal = Journal(log, ManualClock(AT))
    journal.log("before")
    journal.flush()
    shutil.rmtree(tmp_path / "logs")
    journal.log("after")
    journal.close()
    assert [e["event"] for e in read_events(log)] == ["after"]


def test_a_truncated_log_is_appended_to_from_its_new_end(tmp_path: Path) -> None:
    log = tmp_path / "app.jsonl"
    journal = Journal(log, ManualClock(AT))
    journal.log("before")
    journal.flush()
    os.truncate(log, 0)  # logrotate's copytruncate
    journal.log("after")
    journal.close()
    assert log.read_bytes().startswith(b'{"ts"')
    assert [e["event"] for e in read_events(log)] == ["after"]


def test_a_line_cut_short_is_not_glued_to_the_next_writers_first_line(tmp_path: Path) -> None:
    log = tmp_path / "app.jsonl"
    log.write_bytes(b'{"ts":"2026-11-23T14:29:55+00:00","event":"tick"}\n{"ts":"2026-11-23T14:30:00+00:00","ev')
    journal = Journal(log, ManualClock(AT))  # the next run, or an operator's `halt`, after a crash mid-line
    journal.log("halt", reason="news")
    journal.close()
    lines = log.read_bytes().split(b"\n")
    assert lines[1] == b'{"ts":"2026-11-23T14:30:00+00:00","ev'  # the broken line stays as it was, alone
    halt = [line for line in lines if b'"event":"halt"' in line]
    assert halt and halt[0].startswith(b'{"ts"')


def test_a_whole_log_gets_no_empty_line(tmp_path: Path) -> None:
    log = tmp_path / "app.jsonl"
    log.write_bytes(b'{"ts":"2026-11-23T14:29:55+00:00","event":"tick"}\n')
    journal = Journal(log, ManualClock(AT))
    journal.log("halt")
    journal.close()
    assert b"\n\n" not in log.read_bytes()
