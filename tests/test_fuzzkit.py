"""tools/fuzzkit.py: the log reader every seeded driver checks the engine's JSONL log with. A reader that missed a
broken line would let each driver pass over the very damage it runs to find."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tests.conftest import load_tool

fuzzkit: Any = load_tool("fuzzkit")


def test_the_log_is_read_a_whole_line_at_a_time_and_every_broken_line_is_told(tmp_path: Path) -> None:
    log = tmp_path / "app.jsonl"
    log.write_bytes(b'{"event": "tick"}\nnot json\n[1, 2]\n{"event": "order", "key": "PKSECRET123"}\n{"event": "fi')
    tail, told = fuzzkit.LogTail(log), list[str]()
    events = tail.read(told.append, ("PKSECRET123",))
    assert [e["event"] for e in events] == ["tick", "order"]
    assert told == [
        "log line 2 does not parse: b'not json'",
        "log line 3 is not an event: b'[1, 2]'",
        "log line 4 holds a key",
    ]
    tail.ends_whole(told.append)  # the line being written is not read yet, and is no whole line
    assert told[-1] == "the log ends in a partial line: b'{\"event\": \"fi'"
    with log.open("ab") as handle:
        handle.write(b'll"}\n')
    told.clear()
    assert [e["event"] for e in tail.read(told.append)] == ["fill"]  # read from where it stopped, the line whole
    tail.ends_whole(told.append)
    assert told == [] and tail.lines == 5


def test_a_missing_log_is_no_events_and_seeds_are_read_singly_or_as_a_range(tmp_path: Path) -> None:
    assert fuzzkit.LogTail(tmp_path / "none.jsonl").read(lambda what: None) == []
    assert fuzzkit.seed_range("7") == [7] and fuzzkit.seed_range("10-12") == [10, 11, 12]
    with fuzzkit.seed_folder(tmp_path, 4, "x") as kept:
        assert kept == tmp_path / "seed_4" and kept.is_dir()
    with fuzzkit.seed_folder(None, 4, "x") as temporary:
        assert temporary.name.startswith("x_4_")
    assert not temporary.exists()
