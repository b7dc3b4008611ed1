"""`report` over logs and periods an outside tester would try: every line the engine did not write is left out
and counted (never a traceback, never read as something else), a log of the wrong kind is refused in one line,
and no period, however far it reaches, overflows a date or reads one day per query for millennia."""

from __future__ import annotations

import html
import json
import os
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

import pytest

from engine.cli import main
from engine.core.journal import JournalError
from engine.core.store import StateStore
from engine.operator.local import LocalTime
from engine.operator.report import (
    FIRST_DAY,
    LAST_DAY,
    BlockedCheck,
    build_report,
    fill_prompt,
    prompt_values,
    render_html,
    render_text,
)

LA = LocalTime("America/Los_Angeles")
MONDAY = date(2026, 11, 23)
NOON = datetime(2026, 11, 23, 20, 0, tzinfo=timezone.utc)  # noon in Los Angeles
NOW = NOON + timedelta(days=1)


def _line(event: str, **fields: object) -> str:
    return json.dumps({"ts": NOON.isoformat(), "event": event, **fields}, separators=(",", ":"))


GOOD = _line("entry_blocked", bot="mom_AAPL", failed=["order_rate"])
# Each of these names a wanted event but is not what the engine writes; each used to stop the report with a
# traceback (a list, a time that is not one, a number where a list belongs) or be read as something else
# (a `failed` of "abc" counted as the checks a, b and c).
ODD = [
    '[{"event":"run_end"}]',
    'not JSON "event":"run_end"',
    '42 "event":"run_end"',
    '{"ts":5,"event":"preflight","bot":"mom_AAPL","failed":["x"]}',
    '{"ts":null,"event":"run_end"}',
    '{"event":"entry_blocked","bot":"a","failed":["x"]}',
    '{"ts":"not a time","event":"transition","machine":"m","trigger":"t"}',
    '{"ts":"0001-01-01T00:00:00+05:00","event":"run_end"}',
    '{"ts":"2026-11-23T20:00:00+00:00","event":"transition","machine":"m","trigger":"t","guards":7}',
    '{"ts":"2026-11-23T20:00:00+00:00","event":"transition","machine":"m","trigger":"t","guards":"abc"}',
    '{"ts":"2026-11-23T20:00:00+00:00","event":"entry_blocked","bot":"mom_AAPL","failed":"abc"}',
    '{"ts":"2026-11-23T20:00:00+00:00","event":"entry_blocked","bot":"mom_AAPL","failed":12}',
    '{"ts":"2026-11-23T20:00:00+00:00","event":"preflight","bot":null,"failed":["x"]}',
    '{"ts":"2026-11-23T20:00:00+00:00","event":"preflight","bot":"b","failed":[["nested"]]}',
    '{"ts":"2026-11-23T20:00:00+00:00","event":"run_end","reason":"x","ticks":"many"}',
    '{"ts":"2026-11-23T20:00:00+00:00","event":"broker_error","operation":{"x":1}}',
    '{"ts":"2026-11-23T20:00:00+00:00","event":"run_end","reason":"x","equity":NaN}',  # Python's json reads these;
    '{"ts":"2026-11-23T20:00:00+00:00","event":"run_end","reason":"x","ticks":1e400}',  # shown as "nan", "inf ticks"
    '{"ts":"2026-11-23T20:00:00+00:00","event":"run_end","reason":"x","equity":-Infinity}',
    '{"ts":"2026-11-23T20:00:00+00:00","event":"entry_blocked","bot":"mom_A',  # cut short by a crash
]


def test_lines_the_engine_did_not_write_are_left_out_and_counted(tmp_path: Path) -> None:
    log = tmp_path / "app.jsonl"
    with log.open("wb") as f:
        f.write(("\n".join([GOOD, *ODD]) + "\n").encode())
        f.write(b'{"ts":"2026-11-23T20:00:00+00:00","event":"run_end","reason":"\xff\xfe"}\n')  # not UTF-8
        f.write(b'{"ts":"2026-11-23T20:00:00+00:00","event":"martian","failed":"abc"}\n')  # not wanted: not read
        f.write((GOOD + "\n").encode())
    data = build_report(StateStore(tmp_path / "s.db"), log, MONDAY, MONDAY, LA, NOW)
    assert data.lines_skipped == len(ODD) + 1
    assert data.blocked == [BlockedCheck("order_rate", "mom_AAPL", entries_blocked=2)]
    assert data.guards == [] and data.triggers == [] and data.runs == [] and data.broker_errors == []
    text = render_text(data, LA)
    assert f"({len(ODD) + 1} lines of {log} could not be read and were left out" in text
    assert "could not be read" in render_html(data, LA)


def test_a_log_of_the_wrong_kind_is_refused_in_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    store = StateStore(tmp_path / "s.db")
    (tmp_path / "folder.jsonl").mkdir()
    os.mkfifo(tmp_path / "fifo.jsonl")  # opening it would wait for a writer forever
    for name, said in (("folder.jsonl", "is a folder"), ("fifo.jsonl", "is not a regular file")):
        with pytest.raises(JournalError, match=said) as caught:
            build_report(store, tmp_path / name, MONDAY, MONDAY, LA, NOW)
        assert caught.value.runtime is False  # the user's input to fix: exit 2
    store.close()
    code = main(["report", "--state-db", str(tmp_path / "s.db"), "--log", str(tmp_path / "fifo.jsonl")])
    assert code == 2 and "is not a regular file" in capsys.readouterr().err


def test_a_period_past_the_years_a_record_can_have_is_read_up_to_them(tmp_path: Path) -> None:
    store = StateStore(tmp_path / "s.db")
    log = tmp_path / "app.jsonl"
    log.write_text(GOOD + "\n", encoding="utf-8")
    last = build_report(store, log, date.max, date.max, LA, NOW)  # the day after it does not exist
    assert last.trades == [] and last.days == {} and last.clipped
    assert "read from 1900-01-01 to 2199-12-31" in render_text(last, LA)
    ages = build_report(store, log, date.min, date.max, LA, NOW)  # one query a day: 300 years, not 10,000
    assert len(ages.days) == (LAST_DAY - FIRST_DAY).days + 1
    assert ages.blocked == [BlockedCheck("order_rate", "mom_AAPL", entries_blocked=1)]
    ten_years = build_report(store, log, date(2017, 1, 1), date(2026, 12, 31), LA, NOW)
    assert not ten_years.clipped and "read from" not in render_text(ten_years, LA)


@pytest.mark.parametrize("args", [["--date", ""], ["--from", ""], ["--to", ""], ["--from", "2026-11-20", "--to", ""],
                                  ["--date", "", "--from", "2026-11-20"]])  # fmt: skip
def test_an_empty_date_is_refused_not_taken_as_today(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], args: list[str]
) -> None:
    """`report --date "$DAY"` with DAY unset gave today's report, as if no date had been asked for."""
    StateStore(tmp_path / "s.db").close()
    (tmp_path / "app.jsonl").write_text(GOOD + "\n", encoding="utf-8")
    code = main(["report", *args, "--state-db", str(tmp_path / "s.db"), "--log", str(tmp_path / "app.jsonl")])
    captured = capsys.readouterr()
    assert code == 2 and captured.out == "", captured.out
    assert "is not a date (YYYY-MM-DD)" in captured.err or "not both" in captured.err


@pytest.mark.parametrize(("args", "said"), [
    (["--date", "23/11/2026"], "--date: '23/11/2026' is not a date (YYYY-MM-DD)"),
    (["--from", "2026-11-24", "--to", "2026-11-01"], "--to 2026-11-01 is before --from 2026-11-24"),
])  # fmt: skip
def test_a_bad_date_is_bad_usage_before_anything_ran_too(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], args: list[str], said: str
) -> None:
    """Before the first run a bad date was 'no state yet' with exit 1: the usage error, the one to fix, went unsaid."""
    code = main(["report", *args, "--state-db", str(tmp_path / "s.db"), "--log", str(tmp_path / "app.jsonl")])
    assert code == 2 and capsys.readouterr().err.strip() == said
    assert list(tmp_path.iterdir()) == []


def test_a_prompt_file_that_is_not_utf8_is_one_line_and_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A template saved in Latin-1 (or a binary file named by mistake) ended `report --prompt` in a traceback."""
    StateStore(tmp_path / "s.db").close()
    (tmp_path / "app.jsonl").write_text(GOOD + "\n", encoding="utf-8")
    (tmp_path / "prompt.txt").write_bytes(b"Period: {period}, caf\xe9\n")
    code = main(["report", "--prompt", "--prompt-file", str(tmp_path / "prompt.txt"),
                 "--state-db", str(tmp_path / "s.db"), "--log", str(tmp_path / "app.jsonl")])  # fmt: skip
    out, err = capsys.readouterr()
    assert code == 2 and out == ""
    assert err == f"--prompt-file {tmp_path / 'prompt.txt'}: not UTF-8 text (byte 0xe9 at offset 21)\n"


def test_words_from_the_log_cannot_forge_a_line_or_drive_the_terminal(tmp_path: Path) -> None:
    """The log's text (a run's end reason, a check's, a bot's or a broker error's name) is anyone's who can write
    the file: printed as written, an escape sequence recoloured or cleared the screen and a newline forged a line.
    Shown as escapes, as halt reasons are (summary.one_line)."""
    log = tmp_path / "app.jsonl"
    lines = [
        _line("run_end", reason="x\x1b[2J\nruns ended: none", ticks=3, equity=1.0),
        _line("entry_blocked", bot="mom_AAPL\x1b[31m", failed=["order_rate\nHALT: none"]),
        _line("broker_error", operation="get_account\r", reason="server_error\x1b]0;title\x07", kind="server"),
        _line("transition", machine="momentum\x1b[1m", trigger="arm\n", guards=["may_open\x1b[0m"]),
    ]
    log.write_text("\n".join(lines) + "\n", encoding="utf-8")
    data = build_report(StateStore(tmp_path / "s.db"), log, MONDAY, MONDAY, LA, NOW)
    for text in (render_text(data, LA), fill_prompt(data, LA)):
        assert "\x1b" not in text and "\r" not in text and "\x07" not in text
        assert "\nruns ended: none" not in text and "\nHALT: none" not in text
        assert "x\\x1b[2J\\nruns ended: none" in text and "order_rate\\nHALT: none (mom_AAPL\\x1b[31m)" in text


def test_a_line_nested_past_the_parsers_depth_is_left_out_and_counted(tmp_path: Path) -> None:
    """JSON nested deeper than Python's recursion limit (a few kilobytes of brackets: another program's line, a
    hostile one) raises RecursionError, which is not a ValueError: the report ended in a traceback. It is a line
    the engine did not write, skipped and counted like the others, and the last line too."""
    deep = "[" * 100_000 + "]" * 100_000
    log = tmp_path / "app.jsonl"
    nested = '{"ts":"2026-11-23T20:00:00+00:00","event":"preflight","bot":"b","failed":[],"x":' + deep + "}"
    log.write_text("\n".join([GOOD, nested, GOOD, nested]) + "\n")
    data = build_report(StateStore(tmp_path / "s.db"), log, MONDAY, MONDAY, LA, NOW)
    assert data.lines_skipped == 2
    assert data.blocked == [BlockedCheck("order_rate", "mom_AAPL", entries_blocked=2)]


def test_a_log_rotated_after_the_period_began_is_said_not_read_as_a_quiet_day(tmp_path: Path) -> None:
    """logrotate at midnight, then `report --date` the day before: the log held only today's lines, and the report
    said "entries blocked: none", no guards, no broker error, no run ended, beside that day's trades, as if the
    engine had been quiet. Now it says where the log begins and that what came before is not counted."""
    from engine.core.store import TradeRow

    store = StateStore(tmp_path / "s.db")
    store.add_trade(TradeRow("mom_AAPL", "AAPL", MONDAY, NOON - timedelta(hours=1), NOON, 1.0, 100.0, 101.0, 1.0, 0.0, "exit"))
    rotated = tmp_path / "app.jsonl"
    tuesday = NOON + timedelta(hours=14)  # 02:00 on Tuesday in Los Angeles
    rotated.write_text(json.dumps({"ts": tuesday.isoformat(), "event": "tick", "n": 1}) + "\n")
    text = render_text(build_report(store, rotated, MONDAY, MONDAY, LA, NOW), LA)
    assert f"the log {rotated} begins at 2026-11-24T02:00:00-08:00" in text, text
    assert "--log" in text  # what to do: read the rotated file

    started = tmp_path / "fresh.jsonl"  # a log that begins with a run's start holds all of that run: nothing said
    started.write_text(json.dumps({"ts": (NOON - timedelta(hours=2)).isoformat(), "event": "run_start"}) + "\n")
    assert "begins at" not in render_text(build_report(store, started, MONDAY, MONDAY, LA, NOW), LA)
    whole = tmp_path / "whole.jsonl"  # begins before the period: nothing said
    whole.write_text(json.dumps({"ts": (NOON - timedelta(days=2)).isoformat(), "event": "tick"}) + "\n")
    assert "begins at" not in render_text(build_report(store, whole, MONDAY, MONDAY, LA, NOW), LA)


LOG_SECTIONS = ("entries blocked, by check:", "guards that held in fired transitions:", "broker errors:", "runs ended:")


def _compact(record: dict[str, object]) -> str:
    """A line as the engine writes it (no spaces): another spelling is a line it did not write, counted."""
    return json.dumps(record, separators=(",", ":"))


def _sections(text: str) -> dict[str, str]:
    """The body of each section read from the log, as render_text gives it."""
    out = {}
    for title in LOG_SECTIONS:
        body = text.split(f"\n{title}\n", 1)[1]
        out[title] = "\n".join(line for line in body.split("\n") if line.startswith("  ") and not line.startswith("  ("))
        out[title] = out[title].split("\n", 1)[0]  # its first line after the notes in parentheses
    return out


def _a_run_on_monday(tmp_path: Path) -> StateStore:
    """A state file that records a run on Monday: it started at 06:30 in Los Angeles and closed a trade at noon."""
    from engine.core.store import TradeRow
    from engine.trading.runner import LAST_RUN_KEY

    store = StateStore(tmp_path / "s.db")
    store.set_meta(LAST_RUN_KEY, json.dumps({"started_at": "2026-11-23T14:30:00+00:00", "broker": "sim"}))
    store.add_trade(TradeRow("mom_AAPL", "AAPL", MONDAY, NOON - timedelta(hours=1), NOON, 1.0, 100.0, 101.0, 1.0, 0.0, "exit"))
    return store


@pytest.mark.parametrize("kind", ["empty", "csv", "the day before's"])
def test_a_log_that_cannot_vouch_for_the_period_makes_its_sections_unknown_never_none(tmp_path: Path, kind: str) -> None:
    """An empty log (logrotate's copytruncate emptied it), a CSV given as --log, the day before's log given for a
    day the state file says a run went on: each said "none" for the entries blocked, the guards, the broker errors
    and the runs ended, a quiet day. Each section says "unknown" and why: in the text, the prompt and the page."""
    store = _a_run_on_monday(tmp_path)
    log = tmp_path / "app.jsonl"
    if kind == "empty":
        log.write_bytes(b"")
        why = f"unknown: the log {log} is empty"
    elif kind == "csv":
        log.write_text("symbol,qty,price\nAAPL,1,100\n")
        why = f"unknown: 2 lines of {log} in the period could not be read; the log {log} holds no line of the engine's"
    else:
        sunday = NOON - timedelta(days=1)
        log.write_text(_compact({"ts": (sunday - timedelta(hours=6)).isoformat(), "event": "run_start"}) + "\n"
                       + _compact({"ts": sunday.isoformat(), "event": "run_end", "reason": "completed"}) + "\n")  # fmt: skip
        why = f"unknown: the log {log} ends at 2026-11-22T12:00:00-08:00, before the state file records a run started"
    data = build_report(store, log, MONDAY, MONDAY, LA, NOW)
    text = render_text(data, LA)
    for title, body in _sections(text).items():
        assert body.startswith(f"  {why}"), (title, body)
    values = prompt_values(data, LA)
    for key in ("blocked", "guards", "broker_errors", "runs"):
        assert f"  {why}" in values[key] and "none" not in values[key].splitlines(), (key, values[key])
    logged = render_html(data, LA).split("<h2>Entries blocked, by check</h2>", 1)[1]  # the log's sections
    assert "<p>none</p>" not in logged and logged.count(f"<p>{html.escape(why)}") == 5  # blocked, guards, triggers, errors, runs


def test_a_log_that_vouches_for_the_period_still_says_none(tmp_path: Path) -> None:
    """The other side: a whole log of the day (a run's start before the period, its lines to the last tick) says
    "none" where it has none, and lines it cannot read outside the period (the day before's crash) do not count.
    A live run's last tick within TICK_LEEWAY of the log's last line is the tick being written, not a cut log."""
    from engine.trading.runner import LAST_TICK_KEY

    store = _a_run_on_monday(tmp_path)
    store.set_meta(LAST_TICK_KEY, (NOON + timedelta(seconds=30)).isoformat())
    log = tmp_path / "app.jsonl"
    begin = NOON - timedelta(days=1)
    log.write_text("\n".join([
        _compact({"ts": begin.isoformat(), "event": "run_start"}),
        '{"ts":"2026-11-22T20:00:01+00:00","event":"tick","n":',  # cut short the day before: not Monday's
        _compact({"ts": (begin + timedelta(hours=1)).isoformat(), "event": "tick"}),
        _compact({"ts": NOON.isoformat(), "event": "tick"}),
    ]) + "\n")  # fmt: skip
    data = build_report(store, log, MONDAY, MONDAY, LA, NOW)
    assert data.lines_skipped == 0
    sections = _sections(render_text(data, LA))
    assert sections["broker errors:"] == "  none" and sections["runs ended:"] == "  none ended in the period"
    store.set_meta(LAST_TICK_KEY, (NOON + timedelta(minutes=5)).isoformat())  # ticks the log has not got
    sections = _sections(render_text(build_report(store, log, MONDAY, MONDAY, LA, NOW), LA))
    assert sections["broker errors:"].startswith(f"  unknown: the log {log} ends at 2026-11-23T12:00:00-08:00, before")


def test_a_log_holding_part_of_the_period_says_its_counts_are_at_least_these(tmp_path: Path) -> None:
    """A log that begins with a run's start after the state file's halt of the same day (the morning's lines were
    rotated away): its counts are what it holds, said so, and its empty sections are unknown."""
    store = _a_run_on_monday(tmp_path)
    log = tmp_path / "app.jsonl"
    log.write_text("\n".join([
        _compact({"ts": (NOON - timedelta(minutes=30)).isoformat(), "event": "run_start"}),
        _compact({"ts": NOON.isoformat(), "event": "broker_error", "operation": "get_account", "reason": "http"}),
    ]) + "\n")  # fmt: skip
    data = build_report(store, log, MONDAY, MONDAY, LA, NOW)
    text = render_text(data, LA)
    errors = text.split("\nbroker errors:\n", 1)[1].split("\n")
    begins = f"the log {log} begins at 2026-11-23T11:30:00-08:00, after the period began"
    assert errors[0] == f"  (at least: {begins})" and errors[1] == "  get_account: http: 1"
    assert _sections(text)["runs ended:"] == f"  unknown: {begins}"
