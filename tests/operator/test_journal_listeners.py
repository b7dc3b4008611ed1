"""The journal's listener hook: what the terminal's live view hangs on."""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from engine.core.clock import ManualClock
from engine.core.journal import Journal, read_events

AT = datetime(2026, 11, 23, 14, 30, tzinfo=timezone.utc)


def test_a_listener_hears_each_event_after_its_line_is_written(tmp_path: Path) -> None:
    journal = Journal(tmp_path / "a.jsonl", ManualClock(AT))
    heard: list[dict[str, Any]] = []

    def listener(record: dict[str, Any]) -> None:
        journal.flush()
        on_disk = read_events(tmp_path / "a.jsonl")
        assert on_disk[-1]["event"] == record["event"]  # the line is in the log before anyone hears of it
        heard.append(record)

    journal.log("before")
    journal.subscribe(listener)
    journal.log("fill", bot="mom_AAPL", qty=3)
    journal.unsubscribe(listener)
    journal.log("after")
    journal.close()
    assert heard == [{"ts": "2026-11-23T14:30:00+00:00", "event": "fill", "bot": "mom_AAPL", "qty": 3}]


def test_a_listener_never_hears_a_secret(tmp_path: Path) -> None:
    journal = Journal(tmp_path / "a.jsonl", ManualClock(AT), secrets=("supersecretvalue",))
    heard: list[dict[str, Any]] = []
    journal.subscribe(heard.append)
    journal.log("broker_error", message="refused supersecretvalue")
    journal.close()
    assert heard[0]["message"] == "refused ***"


def test_a_listener_that_raises_is_dropped_and_the_log_goes_on(tmp_path: Path) -> None:
    journal = Journal(tmp_path / "a.jsonl", ManualClock(AT))
    calls: list[str] = []

    def broken(record: dict[str, Any]) -> None:
        calls.append(record["event"])
        raise RuntimeError("terminal gone")

    journal.subscribe(broken)
    journal.log("one")  # must not raise: a display must never reach the tick
    journal.log("two")
    journal.close()
    assert calls == ["one"]
    assert journal.listener_errors == ["RuntimeError: terminal gone"]
    assert [e["event"] for e in read_events(tmp_path / "a.jsonl")] == ["one", "two"]
