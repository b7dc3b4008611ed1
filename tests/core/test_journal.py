"""The JSONL line format: the journal's own encoder writes exactly what `json.dumps` would, for every kind of
value the engine logs (other tools parse these lines)."""

from __future__ import annotations

import json
from datetime import date, datetime, timezone
from pathlib import Path

import pytest

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


_FILL_THE_DISK = """
import resource, signal, sys
from datetime import datetime, timezone
from pathlib import Path
from engine.core.clock import ManualClock
from engine.core.journal import Journal, JournalError

signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # past the limit a write fails with EFBIG instead of killing us
journal = Journal(Path(sys.argv[1]), ManualClock(datetime(2026, 11, 23, 15, 0, tzinfo=timezone.utc)))
_soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
resource.setrlimit(resource.RLIMIT_FSIZE, (20_000, hard))  # the disk is full past 20 kB: a batch half taken
failed = 0
for n in range(600):
    try:
        journal.log("tick", n=n, padding="x" * 40)
    except JournalError:
        failed += 1
try:
    journal.flush()
except JournalError:
    failed += 1
resource.setrlimit(resource.RLIMIT_FSIZE, (hard, hard))  # space again
journal.close()
print(failed)
"""


def test_a_full_disk_loses_nothing_and_writes_nothing_twice(tmp_path: Path) -> None:
    """A write that a full disk cuts short has handed part of a batch to the file: the retry must go on from the
    first byte refused, not write the batch again (duplicate lines, half a line). The limit is the kernel's own
    (RLIMIT_FSIZE, in a child process), not a stand-in."""
    import subprocess
    import sys

    path = tmp_path / "app.jsonl"
    done = subprocess.run([sys.executable, "-c", _FILL_THE_DISK, str(path)], capture_output=True, text=True, check=True)
    assert int(done.stdout) >= 1  # the limit was hit
    lines = path.read_text(encoding="utf-8").splitlines()
    assert [json.loads(line)["n"] for line in lines] == list(range(600))


_FULL_AT_THE_END = """
import resource, signal, sys
from datetime import datetime, timezone
from pathlib import Path
from engine.core.clock import ManualClock
from engine.core.journal import Journal, JournalError

signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
journal = Journal(Path(sys.argv[1]), ManualClock(datetime(2026, 11, 23, 15, 0, tzinfo=timezone.utc)))
_soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
resource.setrlimit(resource.RLIMIT_FSIZE, (20_000, hard))
try:
    for n in range(600):
        journal.log("tick", n=n, padding="x" * 40)
    journal.flush()
except JournalError as exc:
    print(exc)
"""


def test_a_full_disk_leaves_no_half_line_in_the_log(tmp_path: Path) -> None:
    """A run stopped by a full log: the disk took part of a line before it refused the rest, and the file ended in
    half a line, which no reader of the log can parse. The part is taken back: the file ends on a whole line."""
    import subprocess
    import sys

    path = tmp_path / "app.jsonl"
    done = subprocess.run([sys.executable, "-c", _FULL_AT_THE_END, str(path)], capture_output=True, text=True, check=True)
    assert "File too large" in done.stdout
    text = path.read_text(encoding="utf-8")
    assert text.endswith("\n") and len(text.encode()) <= 20_000
    assert [json.loads(line)["n"] for line in text.splitlines()] == list(range(len(text.splitlines())))


_DISCARD_ON_A_FULL_DISK = """
import resource, signal, sys
from datetime import datetime, timezone
from pathlib import Path
from engine.core.clock import ManualClock
from engine.core.journal import Journal, JournalError

signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
journal = Journal(Path(sys.argv[1]), ManualClock(datetime(2026, 11, 23, 15, 0, tzinfo=timezone.utc)))
journal.log("kept", n=0)
journal.flush()
_soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
resource.setrlimit(resource.RLIMIT_FSIZE, (Path(sys.argv[1]).stat().st_size + 20, hard))  # room for part of a line
journal.log("resume", scope="all", by="operator", ended=1)
try:
    journal.flush()
except JournalError:
    journal.discard()  # the resume was rolled back
resource.setrlimit(resource.RLIMIT_FSIZE, (hard, hard))  # space again
journal.log("after", n=1)
journal.close()
"""


def test_events_discarded_on_a_full_disk_never_reach_the_log_and_the_next_line_stands_alone(tmp_path: Path) -> None:
    """The operator's resume is undone when its event cannot be written: neither the next flush nor `close`
    may write it later, and the part of it the disk took must not swallow the next event."""
    import subprocess
    import sys

    path = tmp_path / "app.jsonl"
    subprocess.run([sys.executable, "-c", _DISCARD_ON_A_FULL_DISK, str(path)], capture_output=True, text=True, check=True)
    lines = path.read_text(encoding="utf-8").splitlines()
    assert json.loads(lines[0])["event"] == "kept" and json.loads(lines[-1])["event"] == "after"
    assert len(lines) == 2  # the part of the resume the disk took is taken back: no half line
    assert "resume" not in path.read_text(encoding="utf-8")


def test_a_fifo_no_process_reads_is_refused_at_once_not_waited_on(tmp_path: Path) -> None:
    import os

    import pytest

    from engine.core.journal import JournalError

    fifo = tmp_path / "app.jsonl"
    os.mkfifo(fifo)
    with pytest.raises(JournalError, match="is a FIFO that no process reads") as refused:
        Journal(fifo, ManualClock(AT))
    assert not refused.value.runtime  # the user's input to fix: exit 2


# --- secrets: masked whatever their length, and the line stays the JSON it was -----------------------------------


def test_a_secret_is_masked_wherever_it_is_written(tmp_path: Path) -> None:
    """A key, and one the encoder escapes (a quote, a backslash, non-ASCII), are masked in values, in field
    names, nested, in the event's name; ordinary text is kept. A key too short to mask exactly is refused."""
    from engine.core.journal import Secrets

    key, escaped = "k3yk3yk3y", 'se"cr\\et-\u00e9t'
    journal = Journal(tmp_path / "app.jsonl", ManualClock(AT), secrets=(key, escaped, ""))
    heard: list[dict[str, object]] = []
    journal.subscribe(heard.append)
    journal.log("refused", message=f"key {key} and secret {escaped}", nested={"list": [f"x{key}x"], key: 1})
    journal.log(f"event_{key}", price=12.5)
    journal.log("ordinary", text="a monkey's key is kept", qty=3)
    journal.close()
    raw = (tmp_path / "app.jsonl").read_text(encoding="utf-8")
    assert key not in raw and escaped not in raw and json.dumps(escaped)[1:-1] not in raw
    events = read_events(tmp_path / "app.jsonl")  # every line is still JSON
    assert events[0]["message"] == "key *** and secret ***" and events[0]["nested"] == {"list": ["x***x"], "***": 1}
    assert events[1]["event"] == "event_***" and events[1]["price"] == 12.5 and events[1]["ts"] == AT.isoformat()
    assert events[2] == {"ts": AT.isoformat(), "event": "ordinary", "text": "a monkey's key is kept", "qty": 3}
    assert heard[:2] == events[:2]  # a listener hears the line as written
    with pytest.raises(ValueError, match="shorter than 8"):  # "ord" would have turned every "order" into "***er"
        Secrets(["ord"])


def test_a_quoted_value_is_cut_only_after_the_secrets_are_masked() -> None:
    """A value quoted in a message is cut to its limit; cut before masking, a secret across the cut kept its first
    characters (`quoted` only marks it; `Secrets.scrubbed` masks the whole message first, then cuts)."""
    from engine.core.journal import Secrets, quoted

    secret = "S3CRETKEY0123456789"
    secrets = Secrets([secret])
    message = f"the value {quoted(repr('x' * 30 + secret), 40)} is wrong; {quoted('short', 40)}"
    said = secrets.scrubbed(message)
    assert said == f"the value {'x' * 30 + '***'!r} is wrong; short", said
    long = f"it is {quoted('y' * 50 + secret, 40)}!"
    assert secrets.scrubbed(long) == f"it is {'y' * 37}...!"
    assert Secrets(()).scrubbed(long, 10) == "it is yyyy"  # no secrets: still cut, marks removed
    assert secrets.scrubbed(quoted("a\x1eb\x1fc", 40)) == "abc"  # marks inside a value are dropped, not read


# --- a cut of text the keys are masked in only later (`clipped`, `window`) ---------------------------------------

KEY = "PKCUTKEY0123456789AB"


@pytest.mark.parametrize("cut_at", range(1, len(KEY)))
def test_a_cut_through_a_key_masks_all_that_is_left_of_it(cut_at: int) -> None:
    """A key cut in two is no longer the key, so the exact mask applied to the text afterwards (the command line's,
    which knows the keys) finds nothing: the first or last characters of it showed. Whatever the cut, none do."""
    from engine.core.journal import clipped, window

    text = f"timezone: {KEY} and more"
    start = len("timezone: ")
    right = window(text, start + cut_at, len(text))  # the window starts inside the key
    left = window(text, 0, start + cut_at)  # the window ends inside it
    end = clipped(text, start + cut_at + 3)  # cut with "..."
    for shown in (right, left, end):
        assert not any(KEY[i : i + 2] in shown for i in range(len(KEY) - 1)), shown
    assert right.endswith(" and more") and left.startswith("timezone: ") and end.startswith("timezone: ")
    assert len(right) == len(text) - start - cut_at and len(left) == start + cut_at  # width kept: carets stay put


TOKENS = ("Tok3n!Pasted#Into(Yaml)0123", "a serve token, spaces and all", "k3y-only_word-chars+/=.~99")


@pytest.mark.parametrize("token", TOKENS)
def test_a_cut_through_a_known_secret_masks_all_that_is_left_of_it_whatever_it_holds(
    token: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A token with punctuation (HYDRA_SERVE_TOKEN may hold any printable character) is several words to the cut's
    word rule: cut in its first word, the words past the punctuation were shown whole, and the exact mask applied
    later found no token there. A secret the process knows (`remember_secrets`, or any `Secrets` made) is masked
    in full wherever a cut goes through it, each character a `*`, the width kept."""
    from engine.core import journal
    from engine.core.journal import clipped, remember_secrets, window

    monkeypatch.setattr(journal, "_known", frozenset())  # what other tests remembered is not this one's
    remember_secrets([token])
    text = f"timezone: {token} and more"
    start = len("timezone: ")
    for cut_at in range(1, len(token)):  # at either end the token is whole: the exact mask finds it
        at, rest = start + cut_at, len(token) - cut_at
        assert window(text, at, len(text)) == "*" * rest + " and more"
        assert window(text, 0, at) == "timezone: " + "*" * cut_at
        assert clipped(text, at + 3) == "timezone: " + "*" * cut_at + "..."
    assert window(text, 0, start) == "timezone: " and window(text, start + len(token), len(text)) == " and more"


def test_a_secret_the_command_line_reads_is_known_to_every_cut_it_makes(monkeypatch: pytest.MonkeyPatch) -> None:
    """The command line cuts a problem's excerpt long before it masks the keys in the error: the keys of the
    environment and `.env` are known to the cuts from the command's start, read only when something is cut."""
    from engine.core import journal

    monkeypatch.setattr(journal, "_known", frozenset())
    monkeypatch.setattr(journal, "_sources", ())
    read: list[str] = []

    def source() -> list[str]:
        read.append("read")
        return [TOKENS[0]]

    journal.remember_secrets_from(source)
    assert read == []  # nothing cut yet: nothing read
    text = f"x: {TOKENS[0]}"
    assert journal.window(text, 5, len(text)) == "*" * (len(text) - 5)
    journal.window(text, 5, len(text))
    assert read == ["read"]  # once


def test_a_cut_masks_only_a_word_that_could_hold_a_secret() -> None:
    """What cannot hold a key is shown as it was: a cut between words, through a word under MIN_SECRET_LENGTH
    characters, or through a number (400 digits, a price)."""
    from engine.core.journal import clipped, window

    assert window("alpha beta gamma", 6, 10) == "beta"  # cut between words
    assert window("short words only here", 2, 9) == "ort wor"  # words of 5 letters: no key in them
    assert clipped("9" * 400, 10) == "9999999..."  # a number is not a key
    assert window("x: " + "1" * 200 + " end", 50, 150) == "1" * 100
    assert clipped("a b", 10) == "a b"  # not cut at all


def test_a_log_cut_short_is_left_as_it_was_by_a_journal_that_logs_nothing(tmp_path: Path) -> None:
    """The newline ending a line found cut short was written at close even when nothing was logged: a `resume`
    refused on a locked state file changed the log it was refused on (found by tools/clifuzz.py). It goes with
    the first line of ours, which still starts on a line of its own."""
    log = tmp_path / "app.jsonl"
    torn = b'{"ts": "2026-11-23T15:00:00+00:00", "event": "tick"}\n{"ts": "2026-11-2'
    log.write_bytes(torn)
    Journal(log, ManualClock(AT)).close()
    assert log.read_bytes() == torn
    journal = Journal(log, ManualClock(AT))
    journal.log("halt", reason="x")
    journal.close()
    lines = log.read_bytes().split(b"\n")
    assert lines[:2] == torn.split(b"\n") and json.loads(lines[2])["event"] == "halt" and lines[3] == b""


@pytest.mark.parametrize("content", [b"a,b,c\n1,2,3\n", b"\x89PNG\r\n\x1a\n\x00\x00", b"notes\n"])
def test_a_file_of_another_kind_is_refused_as_a_log_and_left_as_it_was(tmp_path: Path, content: bytes) -> None:
    """`--log notes.csv` had the run's events appended to the user's file (exit 0): a file that does not begin
    with a JSON line is refused (not runtime: exit 2) before anything is written."""
    from engine.core.journal import JournalError

    path = tmp_path / "notes.csv"
    path.write_bytes(content)
    with pytest.raises(JournalError, match="a file of another kind") as caught:
        Journal(path, ManualClock(AT))
    assert not caught.value.runtime and path.read_bytes() == content


def test_a_log_whose_last_line_was_cut_is_still_appended_to(tmp_path: Path) -> None:
    """Only the start is judged: a crash's torn line at the end is the engine's own log, appended to as before."""
    path = tmp_path / "app.jsonl"
    path.write_bytes(b'{"ts": "2026-11-23T14:30:00+00:00", "event": "tick"}\n{"ts": "2026-11-2')
    journal = Journal(path, ManualClock(AT))
    journal.log("tick")
    journal.close()
    assert path.read_bytes().count(b"\n") == 3


def test_a_listener_hears_only_the_events_it_asked_for_and_none_builds_a_record_nobody_wants(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A backtest's listener reads one event (`entry_blocked`) of the several a tick logs: the record handed to
    listeners, a dict a line, was built for every line and dropped. A listener may name its events: it hears only
    those, one that named none hears all, and a line no listener asked for builds no record at all."""
    journal = Journal(tmp_path / "app.jsonl", ManualClock(AT))
    blocked: list[dict[str, object]] = []
    journal.subscribe(blocked.append, events={"entry_blocked"})
    told: list[str] = []
    monkeypatch.setattr(journal, "_tell", lambda event, record: told.append(event))
    journal.log("tick", transitions=0)
    journal.log("entry_blocked", bot="b1", failed=["size"])
    assert told == ["entry_blocked"]  # the tick's record not even built
    monkeypatch.undo()
    everything: list[dict[str, object]] = []
    journal.subscribe(everything.append)
    journal.log("tick", transitions=1)
    journal.log("entry_blocked", bot="b2", failed=["size"])
    assert [r["bot"] for r in blocked] == ["b2"]
    assert [r["event"] for r in everything] == ["tick", "entry_blocked"]
    journal.unsubscribe(everything.append)
    journal.unsubscribe(blocked.append)

    def failing(record: dict[str, object]) -> None:
        raise RuntimeError("listener broke")

    journal.subscribe(failing, events=["tick"])
    journal.subscribe(blocked.append, events=("entry_blocked",))
    journal.log("tick", transitions=2)  # the failing listener is dropped, the other kept
    journal.log("entry_blocked", bot="b3", failed=[])
    journal.close()
    assert journal.listener_errors == ["RuntimeError: listener broke"]
    assert [r["bot"] for r in blocked] == ["b2", "b3"]
    assert [e["event"] for e in read_events(tmp_path / "app.jsonl")] == ["tick", "entry_blocked"] * 2 + ["tick", "entry_blocked"]
