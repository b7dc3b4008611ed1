"""`report`: a day for review from SQLite and the JSONL: trades, P&L by bot, fees, halts, entries blocked per
check, guard statistics, the equity curve (self-contained HTML) and the analyst prompt filled in."""

from __future__ import annotations

import dataclasses
import json
import re
from collections import Counter
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from engine.core.store import SYSTEM_SCOPE, StateStore, TradeRow
from engine.operator.local import LocalTime
from engine.operator.report import (
    PROMPT_FILE,
    BlockedCheck,
    ReportData,
    build_report,
    fill_prompt,
    prompt_values,
    render_html,
    render_text,
    trades_text,
)
from engine.trading.runner import operator_halt
from tests.trading.conftest import Rig
from tests.trading.test_shared_ticker import FAST, SLOW, ledgers

LA = LocalTime("America/Los_Angeles")
MONDAY = date(2026, 11, 23)


def test_a_simulated_morning_reviewed(rig: Rig) -> None:
    rig.ticks(900)
    operator_halt(rig.store, rig.engine.journal, "news at 10:00", rig.clock.now())
    rig.ticks(2)
    rig.engine.journal.flush()
    data = build_report(rig.store, rig.log, MONDAY, MONDAY, LA, rig.clock.now())

    trades = rig.store.trades()
    assert trades and data.trades == trades
    assert data.pnl_by_bot == {bot: round(pnl, 2) for bot, pnl in rig.store.realized_pnl(MONDAY).items()}
    assert data.total_pnl == round(sum(data.pnl_by_bot.values()), 2)
    assert [h["reason"] for h in data.halts] == ["news at 10:00"] and data.in_force[0]["scope"] == SYSTEM_SCOPE

    events = rig.events()
    held = Counter((e["machine"], g) for e in events if e["event"] == "transition" for g in e["guards"])
    assert data.guards == sorted(((m, g, n) for (m, g), n in held.items()), key=lambda x: (x[0], -x[2], x[1]))
    blocked = Counter((c, e["bot"]) for e in events if e["event"] == "entry_blocked" for c in e["failed"])
    assert {(b.check, b.bot): b.entries_blocked for b in data.blocked if b.entries_blocked} == dict(blocked)

    curve = data.equity_curve()
    assert curve["total"][-1][1] == round(sum(t.pnl for t in trades), 2)
    assert set(curve) == {t.bot_id for t in trades} | {"total"}

    text = render_text(data, LA)
    assert text.startswith("report 2026-11-23 (times in America/Los_Angeles)")
    assert f"trades: {len(trades)}" in text and "halts: 1" in text and "HALT IN FORCE: the system is halted" in text
    assert "system: guards held: halt_active 1x" in text
    # every time shown is in system.timezone
    assert set(re.findall(r"T\d\d:\d\d:\d\d([+-]\d\d:\d\d)", text)) == {"-08:00"}

    page = render_html(data, LA)
    assert page.startswith("<!DOCTYPE html>") and "Plotly.newPlot" in page
    assert not re.search(r"<script[^>]+src=", page)  # plotly.js is inlined: the file opens offline
    for t in trades:
        assert t.symbol in page
    assert "news at 10:00" in page and "Equity curve" in page


def test_the_analyst_prompt_is_filled_with_every_placeholder_it_names(rig: Rig) -> None:
    rig.ticks(300)
    rig.engine.journal.flush()
    data = build_report(rig.store, rig.log, MONDAY, MONDAY, LA, rig.clock.now())
    template = PROMPT_FILE.read_text(encoding="utf-8")
    named = set(re.findall(r"\{([a-z_]+)\}", template))
    assert {"date", "pnl_by_bot", "trades", "halts", "blocked"} <= named <= set(prompt_values(data, LA))
    filled = fill_prompt(data, LA)
    assert not re.search(r"\{[a-z_]+\}", filled)
    assert "Period: 2026-11-23 (times in America/Los_Angeles)" in filled
    assert f"total realized P&L {data.total_pnl:+.2f} USD" in filled


def test_each_bots_open_position_on_a_shared_symbol_is_in_the_text_the_page_and_the_prompt(shared: Rig) -> None:
    """Two bots holding AAPL when the run stopped (examples/shared-ticker): `report` listed closed trades only, so a
    day that ended holding 206 shares read as a flat one, and which bot held how many was in `status` alone (README:
    `status`, `why`, `report` show each bot's position on the shared symbol)."""
    shared.until(lambda r: FAST in ledgers(r) and SLOW in ledgers(r), limit=1500)
    shared.engine.journal.flush()
    owned = ledgers(shared)
    data = build_report(shared.store, shared.log, MONDAY, MONDAY, LA, shared.clock.now())
    lines = render_text(data, LA).splitlines()
    at = next(n for n, line in enumerate(lines) if line.startswith("open positions now at "))
    assert lines[at].endswith(f"-08:00: {len(owned)}")
    shown = {line.split()[0]: line.split()[1:4] for line in lines[at + 1 : at + 1 + len(owned)]}
    assert shown == {bot: ["AAPL", f"{qty:g}", "@"] for bot, qty in owned.items()}
    filled = fill_prompt(data, LA)
    assert all(line in filled for line in lines[at + 1 : at + 1 + len(owned)])
    page = render_html(data, LA)
    assert "<h2>Open positions now at " in page
    for bot, qty in owned.items():
        assert f"<td>{bot}</td><td>AAPL</td><td>{qty:g}</td>" in page
    flat = build_report(StateStore(shared.project.root / "empty.db"), shared.log, MONDAY, MONDAY, LA, shared.clock.now())
    assert "open positions now at" in render_text(flat, LA) and "<h2>Open positions now" in render_html(flat, LA)


def test_the_page_names_the_zone_as_written(tmp_path: Path) -> None:
    """The HTML began "Times in america/los_angeles." (str.capitalize lowers every letter after the first): a zone
    name that is no zone. Names keep their case, a changed system.timezone's too."""
    store = StateStore(tmp_path / "s.db")
    now = datetime(2026, 11, 24, tzinfo=timezone.utc)
    data = build_report(store, tmp_path / "none.jsonl", MONDAY, MONDAY, LA, now, configured="Asia/Tokyo")
    page = render_html(data, LA)
    assert "<p>Times in America/Los_Angeles; the days are this state file&#x27;s" in page and "Asia/Tokyo, which" in page
    assert "america/" not in page and "asia/" not in page


def test_a_template_placeholder_the_report_does_not_know_stays_as_written(rig: Rig, tmp_path: Path) -> None:
    template = tmp_path / "mine.txt"
    template.write_text("{date}: {pnl_by_bot}\n{no_such_figure}\n", encoding="utf-8")
    data = build_report(rig.store, rig.log, MONDAY, MONDAY, LA, rig.clock.now())
    assert fill_prompt(data, LA, template).splitlines()[0] == "2026-11-23:   total: +0.00 USD (fees 0.00)"
    assert fill_prompt(data, LA, template).rstrip().endswith("{no_such_figure}")


def _line(at: datetime, event: str, **fields: object) -> str:
    return json.dumps({"ts": at.astimezone(timezone.utc).isoformat(), "event": event, **fields}, separators=(",", ":"))


def test_blocked_entries_per_check_from_preflight_and_entry_blocked_events(tmp_path: Path) -> None:
    """Preflight events are logged when a bot's failing set changes: a check began failing at one and stopped
    at the next; time failing is clipped to the period (a day in Los Angeles) and to the runs."""
    day = datetime(2026, 11, 23, 8, 0, tzinfo=timezone.utc)  # midnight in Los Angeles
    lines = [
        _line(day - timedelta(hours=1), "run_start", broker="sim"),
        _line(day - timedelta(hours=1), "preflight", bot="crypto_core", ok=False, failed=["system_armed"]),
        _line(day + timedelta(minutes=30), "preflight", bot="crypto_core", ok=True, failed=[]),  # 30 min inside the day
        _line(day + timedelta(hours=6), "preflight", bot="mom_AAPL", ok=False, failed=["market_open"]),
        _line(
            day + timedelta(hours=6, minutes=30), "preflight", bot="mom_AAPL", ok=False, failed=["market_open", "quotes_fresh"]
        ),
        _line(day + timedelta(hours=6, minutes=31), "tick", duration_ms=0.2),
        _line(day + timedelta(hours=7), "preflight", bot="mom_AAPL", ok=True, failed=[]),
        _line(day + timedelta(hours=7, minutes=5), "entry_blocked", bot="mom_AAPL", failed=["order_rate"]),
        _line(day + timedelta(hours=7, minutes=6), "entry_blocked", bot="mom_AAPL", failed=["order_rate"]),
        _line(day + timedelta(hours=7, minutes=7), "entry_blocked", bot="mom_AAPL", failed=["size"]),
        _line(day + timedelta(hours=12), "preflight", bot="mom_AAPL", ok=False, failed=["market_open"]),
        # the run ends, and with it whatever was failing
        _line(day + timedelta(hours=13), "run_end", reason="completed", ticks=9, equity=100000.0),
        _line(day + timedelta(hours=14), "transition", machine="momentum", bot="mom_AAPL", trigger="arm", guards=["may_open"]),
        _line(day + timedelta(days=1), "entry_blocked", bot="mom_AAPL", failed=["order_rate"]),  # the next day: not counted
        '{"ts":"2026-11-23T23:00:00+00:00","event":"entry_blocked","bot":"mom_A',  # cut short by a crash
    ]
    log = tmp_path / "app.jsonl"
    log.write_text("\n".join(lines) + "\n", encoding="utf-8")
    store = StateStore(tmp_path / "s.db")
    data = build_report(store, log, MONDAY, MONDAY, LA, day + timedelta(days=2))
    assert data.blocked == [
        BlockedCheck("order_rate", "mom_AAPL", entries_blocked=2),
        BlockedCheck("size", "mom_AAPL", entries_blocked=1),
        BlockedCheck("market_open", "mom_AAPL", began_failing=2, seconds_failing=7200.0),
        BlockedCheck("quotes_fresh", "mom_AAPL", began_failing=1, seconds_failing=1800.0),
        BlockedCheck("system_armed", "crypto_core", began_failing=0, seconds_failing=1800.0),  # began the day before
    ]
    assert data.guards == [("momentum", "may_open", 1)] and data.triggers == [("momentum", "arm", 1)]
    assert [r["equity"] for r in data.runs] == [100000.0]
    text = render_text(data, LA)
    assert "  market_open (mom_AAPL): began failing 2x, failing 2h00 in all" in text
    assert "  order_rate (mom_AAPL): 2 entries blocked" in text


def test_a_missing_log_is_said_not_guessed(tmp_path: Path) -> None:
    """Every section read from the log says it is unknown without one: the blocked entries noted the missing log
    once, and the guards, broker errors and runs ended below said "none", as if nothing had happened. What
    SQLite holds (trades, halts) is still said as it is."""
    store = StateStore(tmp_path / "s.db")
    data = build_report(store, tmp_path / "none.jsonl", MONDAY, MONDAY, LA, datetime(2026, 11, 24, tzinfo=timezone.utc))
    text = render_text(data, LA)
    unknown = f"  unknown: no log at {tmp_path / 'none.jsonl'}"
    for title in ("entries blocked, by check:", "guards that held in fired transitions:", "broker errors:", "runs ended:"):
        assert f"{title}\n{unknown}\n" in text + "\n", title
    assert "trades: 0\n  none" in text and "halts: 0\n  none" in text
    values = prompt_values(data, LA)
    assert all(values[key] == unknown for key in ("blocked", "guards", "broker_errors", "runs"))
    page = render_html(data, LA)
    assert page.count(f"<p>unknown: no log at {tmp_path / 'none.jsonl'}</p>") == 5  # blocked, guards, triggers, errors, runs


def test_a_check_still_failing_in_a_run_still_going_counts_up_to_the_last_tick(tmp_path: Path) -> None:
    opened = datetime(2026, 11, 23, 14, 30, tzinfo=timezone.utc)
    log = tmp_path / "app.jsonl"
    lines = [
        _line(opened, "run_start", broker="alpaca"),
        _line(opened, "preflight", bot="opt_core", ok=False, failed=["budget_left"]),
        *(_line(opened + timedelta(minutes=m), "tick", duration_ms=0.3) for m in range(0, 46, 5)),
    ]
    log.write_text("\n".join(lines) + "\n", encoding="utf-8")
    data = build_report(StateStore(tmp_path / "s.db"), log, MONDAY, MONDAY, LA, opened + timedelta(hours=1))
    assert data.blocked == [BlockedCheck("budget_left", "opt_core", began_failing=1, seconds_failing=2700.0)]


def test_sub_cent_pnl_and_fees_are_shown_not_rounded_to_zero(tmp_path: Path) -> None:
    """The report printed a crypto round trip's -0.004 as -0.00 and its 0.003 of fees as 0.00, in the text, the
    HTML and the analyst prompt: a loss as minus nothing, fees paid as none."""
    from engine.core.store import TradeRow

    store = StateStore(tmp_path / "s.db")
    opened = datetime(2026, 11, 23, 15, 0, tzinfo=timezone.utc)
    store.add_realized_pnl(MONDAY, "crypto_core", -0.004)
    store.add_trade(TradeRow("crypto_core", "BTC/USD", MONDAY, opened, opened + timedelta(minutes=5), 0.0001, 60000.0,
                             59960.0, -0.004, 0.003, "exit: stop_loss_hit"))  # fmt: skip
    data = build_report(store, tmp_path / "none.jsonl", MONDAY, MONDAY, LA, opened + timedelta(hours=1))
    text = render_text(data, LA)
    assert "  crypto_core: -0.004\n  total: -0.004 USD (fees 0.003)" in text, text
    assert "P&L -0.004 fees 0.003 closed by" in text
    assert "-0.00 " not in text and "0.00)" not in text
    values = prompt_values(data, LA)
    assert (values["total_pnl"], values["fees"]) == ("-0.004", "0.003")
    page = render_html(data, LA)
    assert "<b>-0.004 USD</b>, fees 0.003" in page and "<td>-0.004</td>" in page and "<td>0.003</td>" in page


def test_a_runs_end_equity_is_dollars_and_unknown_when_none_was_logged(tmp_path: Path) -> None:
    """'runs ended' printed the run_end's equity as logged: a float's every digit, and 'None' for a run that ended
    in an error (which logs no equity) or whose broker could not say (null)."""
    log = tmp_path / "app.jsonl"
    ends = [
        {"ts": "2026-11-23T15:00:00+00:00", "event": "run_start"},  # a whole log: it vouches for the day
        {"ts": "2026-11-23T16:00:00+00:00", "event": "run_end", "reason": "completed", "ticks": 10, "equity": 99483.50999999999},
        {"ts": "2026-11-23T17:00:00+00:00", "event": "run_end", "reason": "error: OSError: disk full", "ticks": 3},
        {"ts": "2026-11-23T18:00:00+00:00", "event": "run_end", "reason": "completed", "ticks": 5, "equity": None},
    ]
    log.write_text("".join(json.dumps(e, separators=(",", ":")) + "\n" for e in ends))
    store = StateStore(tmp_path / "s.db")
    data = build_report(store, log, MONDAY, MONDAY, LA, datetime(2026, 11, 23, 19, 0, tzinfo=timezone.utc))
    runs = render_text(data, LA).split("runs ended:\n", 1)[1].splitlines()
    assert [line.rsplit(", equity ", 1)[1] for line in runs] == ["99483.51", "unknown", "unknown"], runs
    page = render_html(data, LA)
    assert "<td>99483.51</td>" in page and "None" not in page.split("Runs ended", 1)[1]


def test_a_trade_line_names_its_exit_trigger_once_and_on_its_line(tmp_path: Path) -> None:
    """The trigger is the exit order's reason, which says what it is ("exit: stop_loss_hit", "flatten"): the line
    read "exit: exit: stop_loss_hit", and a reason hand-edited with a newline faked a line of the report."""
    at = datetime(2026, 11, 23, 15, 0, tzinfo=timezone.utc)
    trade = TradeRow("mom_AAPL", "AAPL", date(2026, 11, 23), at, at, 1.0, 100.0, 99.0, -1.0, 0.0, "exit: stop_loss_hit")
    forged = dataclasses.replace(trade, exit_trigger="flatten\n  total: +1000000.00 USD")
    data = ReportData(date(2026, 11, 23), date(2026, 11, 23), "UTC", [trade, forged], {}, [], [], [], [], [], [], [], tmp_path)
    lines = trades_text(data, LocalTime("UTC")).splitlines()
    assert len(lines) == 2 and lines[0].endswith("closed by exit: stop_loss_hit"), lines
    assert not any("exit: exit" in line for line in lines)


def test_a_bot_id_from_the_state_file_stays_on_its_line_in_the_text_and_the_prompt(tmp_path: Path) -> None:
    """The P&L section (and the analyst prompt built from it, and the per-day lines of a range) printed the bot ids
    of the state file's realized_pnl rows raw: one holding a newline forged report lines (a fake total), an escape
    sequence drove the terminal. Every other section passed them through one_line."""
    store = StateStore(tmp_path / "s.db")
    forged = "x: +0.00\n  total: +12345.67 USD (fees 0.00)\n\x1b[8m"
    store.add_realized_pnl(MONDAY, "mom_AAPL", -2500.0)
    store.add_realized_pnl(MONDAY, forged, 0.01)
    store.add_realized_pnl(MONDAY + timedelta(days=1), forged, 0.02)
    at = datetime(2026, 11, 25, 15, 0, tzinfo=timezone.utc)
    for last in (MONDAY, MONDAY + timedelta(days=1)):
        data = build_report(store, tmp_path / "none.jsonl", MONDAY, last, LA, at)
        for out in (render_text(data, LA), fill_prompt(data, LA)):
            assert "\x1b" not in out
            assert [line for line in out.splitlines() if line.strip().startswith("total:")] == [
                f"  total: {'-2499.99' if last == MONDAY else '-2499.97'} USD (fees 0.00)"
            ], out
            assert "x: +0.00\\n  total: +12345.67 USD (fees 0.00)\\n\\x1b[8m" in out


def _tokyo_file(tmp_path: Path, zone: str = "Asia/Tokyo") -> tuple[Path, Path]:
    """A state file whose days are counted in `zone` (meta.timezone), settings.yaml's zone being Los Angeles: a
    trade of Tokyo's 2026-12-01 closed at 2026-11-30 08:00 in Los Angeles, and a broker error of the same Tokyo day
    logged at 2026-11-30 09:00 Los Angeles time."""
    from engine.trading.startup import ZONE_KEY

    db, log = tmp_path / "s.db", tmp_path / "app.jsonl"
    store = StateStore(db)
    store.set_meta("broker", "alpaca")
    store.set_meta(ZONE_KEY, zone)
    opened = datetime(2026, 11, 30, 15, 0, tzinfo=timezone.utc)  # 2026-12-01 00:00 Tokyo, 2026-11-30 07:00 LA
    tokyo_day = date(2026, 12, 1)
    store.add_trade(TradeRow("mom_AAPL", "AAPL", tokyo_day, opened, opened + timedelta(hours=1), 10, 190.0, 140.0, -500.0,
                             0.0, "exit: stop_loss_hit"))  # fmt: skip
    store.add_realized_pnl(tokyo_day, "mom_AAPL", -500.0)
    store.close()
    at = opened + timedelta(hours=2)
    log.write_text(_line(at, "broker_error", operation="get_account", kind="server", reason="http") + "\n")
    return db, log


def test_a_day_is_read_in_the_zone_the_state_file_counted_it_in(tmp_path: Path) -> None:
    """After system.timezone changed (Tokyo to Los Angeles, no run since), `report` picked a day's trades and P&L
    by their stored date (Tokyo's) but its log window, halts and times by Los Angeles': Tokyo's 2026-12-01 was
    listed under Los Angeles' 2026-12-01 with none of its log, and --date 2026-11-30 said nothing happened, neither
    saying the days were another zone's. The report reads one zone, the file's, and says settings.yaml's beside it."""
    import contextlib
    import io

    from engine.cli import main

    db, log = _tokyo_file(tmp_path)
    said = {}
    for day in ("2026-11-30", "2026-12-01"):
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            assert main(["report", "--date", day, "--state-db", str(db), "--log", str(log)]) == 0
        said[day] = out.getvalue()
    first_line = said["2026-12-01"].splitlines()[0]
    assert "times in Asia/Tokyo" in first_line and "not in system.timezone America/Los_Angeles" in first_line
    assert "trades: 1\n  2026-12-01T00:00:00+09:00 -> 01:00:00 mom_AAPL" in said["2026-12-01"]
    # the same day's log, in the same zone (a log that begins after the day began, with the error: at least this)
    assert "  get_account: http: 1\n" in said["2026-12-01"].split("broker errors:\n", 1)[1]
    # the log begins the next day (Tokyo's): it cannot say the 30th had none
    assert "trades: 0" in said["2026-11-30"] and "broker errors:\n  unknown: the log" in said["2026-11-30"]


def test_a_zone_the_state_file_recorded_that_is_not_one_is_refused_not_guessed(tmp_path: Path, capsys: Any) -> None:
    """meta.timezone that names no zone: the file's days cannot be told, said in one line (exit 2), not read in
    settings.yaml's zone."""
    from engine.cli import main

    db, log = _tokyo_file(tmp_path, zone="Mars/Olympus\n")
    assert main(["report", "--date", "2026-12-01", "--state-db", str(db), "--log", str(log)]) == 2
    err = capsys.readouterr().err
    assert "meta.timezone 'Mars/Olympus\\n' is not a time zone" in err and len(err.strip().splitlines()) == 1, err
