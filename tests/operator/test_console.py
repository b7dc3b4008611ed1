"""The terminal's live view of `run`: the events a person sees as they happen, the progress of a simulated
day, the one-line status against a real broker, and that nothing the display does can stop the run."""

from __future__ import annotations

import io
import os
import re
from datetime import datetime, timezone
from typing import Any

import pytest
from rich.console import Console

from engine.brokers.emulator import Emulator, Fault
from engine.brokers.sim.exchange import SimExchange
from engine.core.clock import SystemClock, default_sim_start
from engine.core.journal import Journal
from engine.core.store import StateStore
from engine.operator import console as console_module
from engine.operator.console import LiveConsole, describe
from engine.operator.local import LocalTime
from engine.trading.runner import RunOptions, Session, close_session, open_session, operator_halt, operator_resume, run
from engine.validate import load_valid
from tests.brokers.conftest import KEY, SECRET
from tests.conftest import ProjectCopy

LA = LocalTime("America/Los_Angeles")
TS = "2026-11-23T14:31:05+00:00"  # 06:31:05 in Los Angeles


@pytest.mark.parametrize(
    ("record", "expected"),
    [
        (
            {"event": "halt", "scope": "system", "reason": "kill condition: max_daily_loss_halt", "flatten": True,
             "until": "2026-11-23T21:01:05+00:00", "by": "exitbot"},
            ("HALT", "system: kill condition: max_daily_loss_halt (until 2026-11-23T13:01:05-08:00, by exitbot); flattening"),
        ),
        (
            {"event": "halt", "scope": "mom_AAPL", "reason": "guard failed: x", "flatten": False, "until": None, "by": "exitbot"},
            ("HALT", "bot mom_AAPL: guard failed: x (until `python -m engine resume`, by exitbot)"),
        ),
        ({"event": "resume", "scope": "all", "by": "operator", "ended": 1}, ("RESUME", "every halt by operator")),
        ({"event": "resume", "scope": "system", "by": "cooloff", "reason": "r"}, ("RESUME", "system by cooloff: r")),
        (
            {"event": "fill", "bot": "mom_AAPL", "side": "buy", "qty": 253.0, "symbol": "AAPL", "price": 189.3945},
            ("FILL", "mom_AAPL buy 253 AAPL @ 189.3945"),
        ),
        (  # a crypto fill's quantity whole, as the broker shows it (:g made it 0.0161758)
            {"event": "fill", "bot": "crypto_core", "side": "buy", "qty": 0.016175803525142564, "symbol": "ETH/USD", "price": 3086.3},
            ("FILL", "crypto_core buy 0.016175803525142564 ETH/USD @ 3086.3"),
        ),
        (
            {"event": "trade", "bot": "mom_AAPL", "symbol": "AAPL", "qty": 3.0, "entry_price": 186.85, "exit_price": 185.85,
             "pnl": -3.0, "exit_trigger": "exit"},
            ("TRADE", "mom_AAPL AAPL 3: 186.85 -> 185.85, P&L -3.00 (exit)"),
        ),
        (
            {"event": "broker_error", "operation": "get_account", "kind": "server", "reason": "unavailable", "status": 503,
             "code": None, "message": "Service Unavailable"},
            ("BROKER ERROR", "get_account: unavailable 503: Service Unavailable"),
        ),
        ({"event": "transition", "machine": "system", "bot": "system", "from": "armed", "to": "halted", "trigger": "kill"},
         ("SYSTEM", "armed -> halted (kill)")),
        ({"event": "transition", "machine": "momentum", "bot": "mom_AAPL", "from": "idle", "to": "armed", "trigger": "arm"}, None),
        ({"event": "tick", "duration_ms": 0.2}, None),
        ({"event": "exit_waiting", "bot": "mom_AAPL", "symbol": "AAPL", "owned": 253.0, "reason": "r"},
         ("EXIT WAITING", "mom_AAPL AAPL (253): r")),
        ({"event": "exit_limited", "bot": "mom_AAPL", "symbol": "AAPL", "owned": 253.0, "sellable": 100.0, "sent": 100.0},
         ("EXIT LIMITED", "mom_AAPL AAPL: the bots own 253, the account holds 100 to sell; sold 100")),
    ],
)  # fmt: skip
def test_what_a_person_sees_of_each_event(record: dict[str, Any], expected: tuple[str, str] | None) -> None:
    line = describe({"ts": TS, **record}, LA)
    if expected is None:
        assert line is None
    else:
        assert line == ("06:31:05", *expected)  # the event's own time (a simulation's), in system.timezone


def _session(project: ProjectCopy, options: RunOptions, env: dict[str, str] | None = None) -> Session:
    report = load_valid(project.config, project.machines, project.rules)
    options.state_db, options.log = project.root / "s.db", project.root / "app.jsonl"
    return open_session(report, options, env or {}, default_sim_start(datetime(2026, 11, 23).date()))


def _terminal() -> tuple[Console, io.StringIO]:
    out = io.StringIO()
    return Console(file=out, force_terminal=True, width=120, color_system=None), out


def test_a_simulated_run_shows_progress_fills_and_halts_from_another_process(
    project: ProjectCopy, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(console_module, "REFRESH_SECONDS", 0.0)  # redraw at every tick: what happens is shown, whatever the speed
    options = RunOptions(ticks=60)
    session = _session(project, options)
    terminal, out = _terminal()
    live = LiveConsole(session, options, console=terminal)
    operator = StateStore(session.store.path), Journal(session.journal.path, session.clock)

    def on_tick(_report: object) -> None:
        live.tick(_report)  # type: ignore[arg-type]
        if session.engine.ticks == 20:  # `python -m engine halt` typed beside the run
            operator_halt(*operator, "ops check", session.clock.now())
        if session.engine.ticks == 40:
            operator_resume(*operator, session.clock.now())

    try:
        with live:
            summary = run(session, options, on_tick=on_tick)
    finally:
        close_session(session)
        operator[0].close()
        operator[1].close()
    text = out.getvalue()
    assert summary["ticks"] == 60 and live.failed is None
    assert "06:30:00 SYSTEM idle -> armed (arm)" in text
    assert "06:31:00 FILL crypto_core buy" in text  # the simulation's time, in system.timezone
    assert "06:31:35 HALT system: ops check (until `python -m engine resume`)" in text  # seen in SQLite, not in this journal
    assert "SYSTEM armed -> halted (halt)" in text  # the engine's own next tick
    assert "HALT ENDED system: ops check" in text
    assert "ticks/s · orders" in text and "· system armed" in text
    # the day's realized P&L, said so: beside this run's orders and fills, a run continuing a day read as its own
    assert "· today's P&L " in text and "· P&L " not in text
    assert "100%" in text  # the bar ends full: 60 ticks of 60


def test_the_display_failing_never_stops_the_run(project: ProjectCopy, monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    monkeypatch.setattr(console_module, "REFRESH_SECONDS", 0.0)
    options = RunOptions(ticks=30)
    session = _session(project, options)
    terminal, _out = _terminal()
    live = LiveConsole(session, options, console=terminal)

    def broken(_now: datetime) -> str:
        raise RuntimeError("terminal gone")

    monkeypatch.setattr(live, "_halt_text", broken)
    try:
        with live:
            summary = run(session, options, on_tick=live.tick)
    finally:
        close_session(session)
    assert summary["ticks"] == 30 and summary["reason"] == "completed"
    assert live.failed == "RuntimeError: terminal gone"
    assert "the live display stopped (RuntimeError: terminal gone); the run goes on" in capsys.readouterr().err


def test_against_a_real_broker_a_status_line_each_tick_with_the_last_broker_error(project: ProjectCopy) -> None:
    started = datetime.now(timezone.utc)
    with Emulator(SimExchange(SystemClock(), seed=7), key=KEY, secret=SECRET) as emulator:
        env = {
            "ALPACA_KEY": KEY,
            "ALPACA_SECRET": SECRET,
            "ALPACA_API_BASE_URL": emulator.url,
            "ALPACA_DATA_BASE_URL": emulator.url,
        }
        options = RunOptions(broker="alpaca")
        session = _session(project, options, env)
        terminal, out = _terminal()
        live = LiveConsole(session, options, console=terminal)
        try:
            with live:
                live.tick(session.engine.tick())
                first = out.getvalue()
                emulator.faults.append(Fault(status=503, path_prefix="/v2/account"))
                live.tick(session.engine.tick())
        finally:
            close_session(session)
    assert "halt: none · positions 0 · today's P&L +0.00 · last broker error: none" in first
    text = out.getvalue()
    assert "BROKER ERROR account: server_error 503" in text
    shown = re.search(r"last broker error: (\d\d):\d\d:\d\d server_error", text)
    assert shown is not None and shown.group(1) in {LA.clock(started)[:2], LA.clock(datetime.now(timezone.utc))[:2]}  # local time


def test_not_imported_where_it_is_not_used() -> None:
    """`--validate` and a run whose stdout is not a terminal never import rich (nor plotly): checked in a
    fresh interpreter, since this one imported them above."""
    import subprocess
    import sys

    code = (
        "import sys, engine.cli as c; c.main(['--validate']); "
        "assert not {'rich', 'plotly'} & {m.split('.')[0] for m in sys.modules}, 'imported'"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, cwd=os.getcwd())
    assert result.returncode == 0, result.stderr


def test_a_halt_reason_cannot_forge_a_line_or_drive_the_terminal(project: ProjectCopy, monkeypatch: pytest.MonkeyPatch) -> None:
    """A halt reason is anyone's text (`halt --reason`, the page's button, a broker's message in a kill condition's):
    printed as written, a newline forged a line ("HALT ENDED ...", all clear) and an escape sequence cleared the
    screen. Shown as escapes, as `status`, `why` and the page show it (summary.one_line)."""
    monkeypatch.setattr(console_module, "REFRESH_SECONDS", 0.0)
    options = RunOptions(ticks=6)
    session = _session(project, options)
    terminal, out = _terminal()
    live = LiveConsole(session, options, console=terminal)
    operator = StateStore(session.store.path), Journal(session.journal.path, session.clock)
    reason = "x\x1b[2J\nHALT ENDED system: all clear"

    def on_tick(_report: object) -> None:
        live.tick(_report)  # type: ignore[arg-type]
        if session.engine.ticks == 2:  # typed beside the run: seen in SQLite
            operator_halt(*operator, reason, session.clock.now())

    try:
        with live:
            run(session, options, on_tick=on_tick)
    finally:
        close_session(session)
        operator[0].close()
        operator[1].close()
    text = out.getvalue()
    assert "HALT system: x\\x1b[2J\\nHALT ENDED system: all clear" in text
    assert "\x1b[2J" not in text and "\nHALT ENDED" not in text


def test_the_status_line_keeps_a_brokers_reason_on_its_line(project: ProjectCopy) -> None:
    """The status line's last broker error took the event's reason raw (a broker's words): a newline in it broke the
    line the display redraws in place, an escape sequence drove the terminal. The line is one line as a whole."""
    with Emulator(SimExchange(SystemClock(), seed=7), key=KEY, secret=SECRET) as emulator:
        env = {"ALPACA_KEY": KEY, "ALPACA_SECRET": SECRET, "ALPACA_API_BASE_URL": emulator.url,
               "ALPACA_DATA_BASE_URL": emulator.url}  # fmt: skip
        options = RunOptions(broker="alpaca")
        session = _session(project, options, env)
        terminal, out = _terminal()
        live = LiveConsole(session, options, console=terminal)
        try:
            with live:
                live.tick(session.engine.tick())
                session.journal.log("broker_error", operation="get_account", kind="server", status=503,
                                    reason="odd\nhalt: none\x1b[2J", message="m")  # fmt: skip
                live.tick(session.engine.tick())
        finally:
            close_session(session)
    text = out.getvalue()
    assert "last broker error: " in text and re.search(r"\d\d odd\\nhalt:", text), text
    assert "\x1b[2J" not in text and "odd\nhalt" not in text
