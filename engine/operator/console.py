"""The terminal while `run` runs: a progress bar over a simulated session, a one-line status against a real
broker, and halts, resumes, fills, trades and broker errors printed as they happen.

Only for a person at a terminal: the CLI builds it when stdout is a TTY and `--quiet` was not given, so a
service's log (systemd, Docker) keeps the plain lines and the summary only. Everything here comes from what the
engine already records: the journal's events (a listener, told after each line is written) and SQLite read
between ticks. It never runs inside a tick's decisions: the listener only formats and prints, and the reads
happen in `tick()`, which the loop calls after the tick ended. Anything that goes wrong here turns the display
off and leaves the run alone.

The simulated day runs thousands of ticks a second, so the bar is redrawn at most REFRESH_SECONDS apart from
the loop itself (no refresh thread); the real-time status line is redrawn once per tick. Times are in
`system.timezone`; on the simulated broker they are the simulation's, as in its log.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Mapping
from datetime import datetime
from typing import IO, Any

from rich.console import Console, Group
from rich.live import Live
from rich.progress import BarColumn, Progress, TaskID, TaskProgressColumn, TextColumn
from rich.text import Text

from engine.core.money import money
from engine.core.money import total as pnl_total
from engine.core.store import SYSTEM_SCOPE, Halt
from engine.core.terminal_text import one_line
from engine.operator.local import LocalTime
from engine.operator.summary import number
from engine.trading.engine import TickReport
from engine.trading.runner import RunOptions, Session

REFRESH_SECONDS = 0.25  # the simulated day's bar: four redraws a second are plenty, and cost nothing per tick
STYLES = {
    "HALT": "bold red",
    "HALT ENDED": "bold green",
    "RESUME": "bold green",
    "FILL": "cyan",
    "TRADE": "bold cyan",
    "BROKER ERROR": "yellow",
    "ANOMALY": "bold red",
    "SYSTEM": "magenta",
}


def _until(value: Any, local: LocalTime) -> str:
    if not value:
        return "until `python -m engine resume`"
    when = value if isinstance(value, datetime) else datetime.fromisoformat(str(value))
    return f"until {local(when)}"


def describe(record: Mapping[str, Any], local: LocalTime) -> tuple[str, str, str] | None:
    """(time of day, label, text) for an event a person should see as it happens; None for the rest."""
    event = record.get("event")
    at = local.clock(local.parse_utc(str(record["ts"])))
    if event == "halt":
        who = "system" if record.get("scope") == SYSTEM_SCOPE else f"bot {record.get('scope')}"
        flatten = "; flattening" if record.get("flatten") else ""
        return at, "HALT", f"{who}: {record.get('reason')} ({_until(record.get('until'), local)}, by {record.get('by')}){flatten}"
    if event == "resume":
        scope = record.get("scope")
        who = "every halt" if scope == "all" else ("system" if scope == SYSTEM_SCOPE else f"bot {scope}")
        why = f": {record['reason']}" if record.get("reason") else ""
        return at, "RESUME", f"{who} by {record.get('by')}{why}"
    if event == "fill":
        return (
            at,
            "FILL",
            f"{record.get('bot')} {record.get('side')} {number(record['qty'])} {record.get('symbol')} @ {record.get('price')}",
        )
    if event == "trade":
        return (
            at,
            "TRADE",
            (
                f"{record.get('bot')} {record.get('symbol')} {number(record['qty'])}: {record.get('entry_price')} -> "
                f"{record.get('exit_price')}, P&L {money(float(record.get('pnl') or 0))} ({record.get('exit_trigger')})"
            ),
        )
    if event == "broker_error":
        status = f" {record['status']}" if record.get("status") else ""
        return (
            at,
            "BROKER ERROR",
            f"{record.get('operation')}: {record.get('reason') or record.get('kind')}{status}: {record.get('message')}",
        )
    if event == "anomaly":
        detail = record.get("detail") or record.get("details") or record.get("bot") or ""
        return at, "ANOMALY", f"{record.get('what')}: {detail}"
    if event == "exit_waiting":
        owned = number(record["owned"])
        return at, "EXIT WAITING", f"{record.get('bot')} {record.get('symbol')} ({owned}): {record.get('reason')}"
    if event == "exit_limited":  # the bots own more than the account holds: something sold outside the engine
        return (
            at,
            "EXIT LIMITED",
            f"{record.get('bot')} {record.get('symbol')}: the bots own {number(record['owned'])}, the account holds "
            f"{number(record['sellable'])} to sell; sold {number(record['sent'])}",
        )
    if event == "transition" and record.get("machine") == "system":
        return at, "SYSTEM", f"{record.get('from')} -> {record.get('to')} ({record.get('trigger')})"
    return None


class LiveConsole:
    """The live view of one run. `start()` before the loop, `tick(report)` after each tick, `stop()` after the
    loop (before the summary is printed)."""

    def __init__(self, session: Session, options: RunOptions, stream: IO[str] | None = None, console: Console | None = None):
        self.session = session
        self.local = session.local
        self.console = console or Console(file=stream or sys.stdout, highlight=False)
        self.limit = 1 if options.once else options.ticks
        self.started_at = session.clock.now()
        self._known: dict[int, Halt] = {}
        self._announced: set[tuple[str, str]] = set()  # halts this process logged, already printed
        self._resumed: set[str] = set()  # scopes this process resumed, already printed
        self._last_error: str | None = None
        self._next_refresh = 0.0
        self._rate_mark = (time.monotonic(), 0)
        self._rate = 0.0
        self._progress: Progress | None = None
        self._task: TaskID | None = None
        self._live: Live | None = None
        self._status = Text()
        self.failed: str | None = None

    # --- lifecycle -----------------------------------------------------------------------------------------

    def start(self) -> None:
        self._known = {h.id: h for h in self.session.store.halts(open_only=True)}
        if self.session.simulated:
            # the bar on its own line and the figures on the next: both fit an 80-column terminal
            self._progress = Progress(
                TextColumn("{task.description}"),
                BarColumn(bar_width=None),
                TaskProgressColumn(),
                console=self.console,
                expand=True,
            )
            total, done = self._extent()
            self._task = self._progress.add_task(self._clock_text(), total=total, completed=int(done))
            self._status = Text("starting")
            self._live = Live(
                Group(self._progress, self._status),
                console=self.console,
                auto_refresh=False,
                redirect_stdout=False,
                redirect_stderr=False,
            )
        else:
            self._status = Text("starting")
            self._live = Live(
                self._status, console=self.console, auto_refresh=False, redirect_stdout=False, redirect_stderr=False
            )
        self._live.start(refresh=True)
        self.session.journal.subscribe(self.on_event)

    def stop(self) -> None:
        self.session.journal.unsubscribe(self.on_event)
        try:
            if not self.failed:
                self._redraw(force=True)
        finally:
            if self._live is not None:
                self._live.stop()

    def __enter__(self) -> LiveConsole:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # --- what the loop calls -------------------------------------------------------------------------------

    def tick(self, report: TickReport) -> None:
        if self.failed:
            return
        if self.session.simulated and time.monotonic() < self._next_refresh:
            return  # the cheap path: most simulated ticks end here
        try:
            self._redraw(force=False)
        except Exception as exc:  # the display is off; the run goes on
            self._fail(exc)

    def on_event(self, record: Mapping[str, Any]) -> None:
        """The journal's listener: inside the tick, so it only formats and prints."""
        line = describe(record, self.local)
        if line is None:
            return
        event = record.get("event")
        if event == "halt":
            self._announced.add((str(record.get("scope")), str(record.get("reason"))))
        elif event == "resume":
            self._resumed.add(str(record.get("scope")))
        elif event == "broker_error":
            self._last_error = one_line(f"{line[0]} {record.get('reason') or record.get('kind')}")
        self._print(*line)

    # --- drawing -------------------------------------------------------------------------------------------

    def _print(self, at: str, label: str, text: str) -> None:
        """One line: the text carries others' words (a halt's reason, a broker's message), shown as escapes where
        not printable, as `status` shows them: rich passes a newline and an escape sequence to the terminal."""
        self.console.print(Text.assemble((at, "dim"), " ", (label, STYLES.get(label, "bold")), " ", one_line(text)))

    def _fail(self, exc: Exception) -> None:
        self.failed = f"{type(exc).__name__}: {exc}"
        self.session.journal.unsubscribe(self.on_event)
        print(f"the live display stopped ({self.failed}); the run goes on", file=sys.stderr)

    def _extent(self) -> tuple[float | None, float]:
        """The bar's length and position: simulated seconds to the close, else ticks to the limit."""
        close = self.session.close_at
        if close is not None and close > self.started_at:
            done = (self.session.clock.now() - self.started_at).total_seconds()
            return (close - self.started_at).total_seconds(), min(done, (close - self.started_at).total_seconds())
        if self.limit is not None:
            return float(self.limit), float(self.session.engine.ticks)
        return None, float(self.session.engine.ticks)

    def _clock_text(self) -> str:
        now = self.session.clock.now()
        return f"{now.astimezone(self.local.tz):%H:%M:%S %Z}"

    def _redraw(self, *, force: bool) -> None:
        now_mono = time.monotonic()
        self._next_refresh = now_mono + REFRESH_SECONDS
        self._poll_halts()
        engine = self.session.engine
        mark_at, mark_ticks = self._rate_mark
        if now_mono - mark_at >= REFRESH_SECONDS or force:
            elapsed = now_mono - mark_at
            self._rate = (engine.ticks - mark_ticks) / elapsed if elapsed > 0 else 0.0
            self._rate_mark = (now_mono, engine.ticks)
        now = self.session.clock.now()
        pnl = pnl_total(self.session.store.realized_pnl(engine.trading_date(now)).values())
        halt = self._halt_text(now)
        if self._progress is not None and self._task is not None:
            total, done = self._extent()
            self._progress.update(self._task, total=total, completed=done, description=self._clock_text())
            line = (
                f"{self._rate:,.0f} ticks/s · orders {engine.orders.sent} · fills {engine.orders.fills} · "
                f"today's P&L {money(pnl)} · system {engine.system.state}{halt}"
            )
        else:
            positions = self.session.store.positions()
            error = self._last_error or "none"
            line = (
                f"{self.local.clock(now)} system {engine.system.state}{halt or ' · halt: none'} · positions {len(positions)} · "
                f"today's P&L {money(pnl)} · last broker error: {error}"
            )
        self._status.plain = one_line(line)  # one line whatever it holds: a halt's scope, a broker's reason
        if self._live is not None:
            self._live.refresh()

    def _halt_text(self, now: datetime) -> str:
        live = [h for h in self._known.values() if h.in_force(now)]
        if not live:
            return ""
        h = live[-1]
        more = f" (+{len(live) - 1})" if len(live) > 1 else ""
        return f" · HALTED {one_line(h.scope)}: {one_line(h.reason)}{more}"

    def _poll_halts(self) -> None:
        """Halts started or ended by another process (`python -m engine halt` while this runs) are not in this
        journal: SQLite tells. Those this process logged were printed already."""
        current = {h.id: h for h in self.session.store.halts(open_only=True)}
        for halt_id, h in current.items():
            if halt_id in self._known:
                continue
            key = (h.scope, h.reason)
            if key in self._announced:
                self._announced.discard(key)
            else:
                who = "system" if h.scope == SYSTEM_SCOPE else f"bot {h.scope}"
                self._print(self.local.clock(h.started_at), "HALT", f"{who}: {h.reason} ({_until(h.until, self.local)})")
        for halt_id, h in self._known.items():
            if halt_id in current or h.scope in self._resumed or "all" in self._resumed:
                continue
            who = "system" if h.scope == SYSTEM_SCOPE else f"bot {h.scope}"
            self._print(self.local.clock(self.session.clock.now()), "HALT ENDED", f"{who}: {h.reason}")
        self._resumed.clear()
        self._known = current
