"""The JSONL line format: the journal's own encoder writes exactly what `json.dumps` would, for every kind of
value the engine logs (other tools parse these lines)."""

from __future__ import annotations

import json
from datetime import date, datetime, timezone
from pathlib import Path

from engine.core.clock import ManualClock
from engine.core.journal import Journal, _default, read_events

AT = datetime(2026, 11, 23, 14, 30, tzinfo=timezone.utc)


def test_each_line_is_what_json_dumps_writes(tmp_path: Path) -> None:
    journal = Journal(tmp_path / "app.jsonl", ManualClock(AT))
    fields = {
        "bot": "mom_AAPL",
        "ok": False,
        "failed": ["order_rate_ok"],
        "errors": {"quotes_fresh": "MissingFact: quote_age_s"},
        "price": 189.25,
        "nan": float("nan"),
        "none": None,
        "text": "café ✓",
        "at": datetime(2026, 11, 23, 9, 30, tzinfo=timezone.utc),
        "day": date(2026, 11, 23),
        "tuple": ("a", 1),
        "nested": {"list": [1, 2.5, {"deep": True}]},
        "other": Path("state/x.db"),
    }
    heard: list[dict[str, object]] = []
    journal.subscribe(heard.append)
    journal.log("sample", **fields)
    journal.log("bare")
    journal.flush()
    expected = [
        json.dumps({"ts": AT.isoformat(), "event": "sample", **fields}, default=_default, separators=(",", ":")),
        json.dumps({"ts": AT.isoformat(), "event": "bare"}, separators=(",", ":")),
    ]
    assert (tmp_path / "app.jsonl").read_text(encoding="utf-8") == "\n".join(expected) + "\n"
    assert heard == [{"ts": AT.isoformat(), "event": "sample", **fields}, {"ts": AT.isoformat(), "event": "bare"}]
    assert read_events(tmp_path / "app.jsonl")[0]["text"] == "café ✓"


def test_every_line_reaches_the_file_in_order_at_a_flush_or_at_close(tmp_path: Path) -> None:
    journal = Journal(tmp_path / "app.jsonl", ManualClock(AT))
    for n in range(1_100):  # more than one batch of lines
        journal.log("n", n=n)
    journal.flush()
    assert [e["n"] for e in read_events(tmp_path / "app.jsonl")] == list(range(1_100))
    journal.log("last")
    journal.close()  # no flush asked: closing writes what is held
    assert read_events(tmp_path / "app.jsonl")[-1]["event"] == "last"
