"""Alerts: halts, resumes, a daily loss nearing its limit, broker errors, fills, the daily summary and a heartbeat,
sent through apprise (one library for Telegram, Discord, Slack, e-mail, ntfy and webhooks).

Why it is built this way:

- The journal is the one source. The Alerter is a journal listener (`Journal.subscribe`): it hears every event
  after its line is written, so an alert never says something the log does not, and the engine needs no alert
  calls of its own.
- A tick must never wait for a network. The listener only turns a record into a short text and appends it to
  a bounded deque per destination (a lock held for an append); a background thread per destination delivers, so
  a destination that hangs or is retried after a backoff never delays another's alerts. When a queue is full
  its oldest alert is dropped and counted (the newest is the one that matters, e.g. the halt after a flood of
  broker errors), and the next alert delivered there says how many were dropped.
- Delivery fails (a service down, a bad token): each failed try is an `alert_failed` event, and the alert is
  retried with a doubling backoff, up to `max_attempts`. The worker thread never writes the journal itself
  (the journal is not thread-safe, and a sim run's events carry simulated time only): it leaves the failures
  in an outbox that the main thread logs after each `tick` event and at close.
- The URLs carry tokens: they are read from the environment or .env by name, never logged, and a failure is
  described by the URL's scheme and an HTTP status or "connection failed" only. apprise's own log, which may
  name hosts, is captured and never printed.
- Broker errors come in floods: one alert per BROKER_ERROR_QUIET of engine time, and what came in those minutes
  is counted and told when they are over (the first tick past them), by the next broker error, or at the run's
  end: never left counted and untold.
- apprise is imported only when alerts are enabled and a run starts, so `--validate` does not pay its import.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import TYPE_CHECKING, Any, Protocol
from zoneinfo import ZoneInfo

from engine.config.model import AlertSettings, Settings
from engine.core.calendar import NEW_YORK
from engine.core.journal import Journal
from engine.core.money import money, total
from engine.core.store import Halt, TradeRow
from engine.core.terminal_text import one_line
from engine.operator.summary import halt_effect, number

if TYPE_CHECKING:
    from engine.trading.engine import Engine

MAX_BACKOFF_SECONDS = 300.0
# one broker_error alert per 5 engine minutes; the errors of those minutes are counted and told when they end (the
# first tick past them, or the next broker error), or at the run's end
BROKER_ERROR_QUIET = timedelta(minutes=5)
CLOSE_TIMEOUT_SECONDS = 5.0  # how long close_session waits for the queue to drain


@dataclass(frozen=True)
class Reading:
    """What the engine's last tick saw, read on the main thread right after it: today's P&L in percent (the
    `daily_pnl_pct` fact), whether the market is open, the equity, and the halts in force (an operator's
    `python -m engine halt` is written to SQLite by another process: this journal hears only its effect)."""

    daily_pnl_pct: float | None = None
    market_open: bool | None = None
    equity: float | None = None
    halts: tuple[Halt, ...] = ()


Probe = Callable[[], Reading]
# The trades closed at or after an instant, from the state file (`engine_ledger`): what the summary totals.
Ledger = Callable[[datetime], Sequence[TradeRow]]


class AlertSetupError(Exception):
    """Alerts are enabled but cannot be sent (a variable unset, a URL apprise does not know): the run refuses."""


class Target(Protocol):
    """One destination. `send` returns None when delivered, else a reason that holds no secret."""

    name: str  # the environment variable's name
    scheme: str

    def send(self, title: str, body: str) -> str | None: ...


def _w(value: Any) -> str:
    """Words from the log or the state file (a halt's reason: the operator's text, an exception's or a broker's
    message) in an alert: one line, escapes shown, as `status` shows them. A newline in a reason forged lines of
    the alert ("scope system, by operator ..." or "resumed") on the operator's phone."""
    return one_line(str(value))


@dataclass(frozen=True)
class Alert:
    kind: str
    title: str
    body: str


def scheme_of(url: str) -> str:
    """The part of a URL that may be logged: `tgram` of `tgram://TOKEN/CHAT`."""
    scheme, sep, _rest = url.partition("://")
    return scheme.lower() if sep and re.fullmatch(r"[A-Za-z][A-Za-z0-9+.-]*", scheme) else "unknown"


def resolve_urls(settings: AlertSettings, env: Mapping[str, str]) -> list[tuple[str, str]]:
    """(variable name, URL) for each name in `urls_env`: the process environment first, then .env (`env`).
    Every unset name is reported at once."""
    found, missing = [], []
    for name in settings.urls_env:
        value = (os.environ.get(name) or env.get(name) or "").strip().strip('"').strip("'")
        if value:
            found.append((name, value))
        else:
            missing.append(name)
    if missing:
        raise AlertSetupError(
            f"alerts are enabled but {', '.join(missing)} {'is' if len(missing) == 1 else 'are'} not set in the environment "
            "or .env: set each to an apprise URL (e.g. HYDRA_ALERT_URL=ntfy://my-topic), or set alerts.enabled to false"
        )
    return found


class _Captured(logging.Handler):
    """apprise's log lines during each send in progress, kept in memory: they explain a failure but may name a
    host. apprise may log from a thread of its own, so a line goes to every send in progress: two destinations
    failing at the same moment may see each other's cause (a status or "connection failed", never a secret)."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self._open: list[list[str]] = []
        self._lock = threading.Lock()

    def emit(self, record: logging.LogRecord) -> None:
        with contextlib.suppress(Exception):  # a malformed record must not reach the worker
            message = record.getMessage()
            with self._lock:
                for lines in self._open:
                    lines.append(message)

    @contextlib.contextmanager
    def during(self) -> Iterator[list[str]]:
        """The lines apprise logs while the block runs."""
        lines: list[str] = []
        with self._lock:
            self._open.append(lines)
        try:
            yield lines
        finally:
            with self._lock:
                self._open.remove(lines)


_captured = _Captured()


def _quiet_apprise() -> None:
    """Route apprise's logger to memory only: Python's last-resort handler would print its warnings on stderr."""
    logger = logging.getLogger("apprise")
    if _captured not in logger.handlers:
        logger.addHandler(_captured)
    logger.propagate = False
    logger.setLevel(logging.INFO)


def _reason(messages: Sequence[str]) -> str:
    """A failure's cause without the URL: apprise's `error=500` status, or that the connection failed."""
    text = " ".join(messages)
    status = re.search(r"error=(\d{3})\b", text)
    if status:
        return f"HTTP {status.group(1)}"
    if "onnection" in text or "timed out" in text.lower():
        return "connection failed"
    return "not delivered"


class AppriseTarget:
    """One apprise URL. Each URL gets its own Apprise object, so a failure is known per URL (and per scheme)."""

    def __init__(self, name: str, url: str) -> None:
        import apprise  # only here: its import costs more than all of --validate

        _quiet_apprise()
        self.name, self.scheme = name, scheme_of(url)
        self._apprise = apprise.Apprise()
        if not self._apprise.add(url):
            raise AlertSetupError(f"{name} does not hold an apprise URL that apprise can use (scheme '{self.scheme}')")
        # apprise's own timeouts hold (4 s to connect, 4 s to read; a URL's cto= and rto= change them)

    def send(self, title: str, body: str) -> str | None:
        with _captured.during() as messages:
            try:
                delivered = self._apprise.notify(body=body, title=title)
            except Exception as exc:  # a plugin that raises is a failed try like any other
                return f"{type(exc).__name__}"
        return None if delivered else _reason(messages)


def doubling_backoff(base_seconds: float) -> Callable[[int], float]:
    """The wait after the n-th failed try (1-based): base, 2 × base, 4 × base, ... up to 5 minutes."""
    return lambda attempt: min(base_seconds * 2 ** (attempt - 1), MAX_BACKOFF_SECONDS)


@dataclass
class _Lane:
    """One destination's queue and the thread that delivers it (its counts changed under the Alerter's lock)."""

    target: Target
    queue: deque[Alert] = field(default_factory=deque)
    dropped_untold: int = 0
    in_flight: int = 0  # 1 while the thread holds an alert
    thread: threading.Thread | None = None


@dataclass
class _Day:
    """What the daily summary tells, gathered from the events this run heard since `since` (its start, or the
    last summary): not the whole day when the run started mid-day, so the summary says from when."""

    trades: dict[str, list[float]] = field(default_factory=dict)  # bot -> [realized P&L, trades, fees]
    fills: int = 0
    halts: list[str] = field(default_factory=list)
    since: str | None = None  # the instant the figures start from (UTC text, as the log's `ts`)
    after: bool = False  # whether they start just after it (the last summary told what closed at that instant)


class Alerter:
    """The journal listener and its delivery thread. `start()` subscribes and starts the thread; `close()` drains
    the queue for at most a few seconds, logs what failed and what was left, and unsubscribes.

    `backoff(attempt)` gives the seconds to wait before the next try; tests pass `lambda _: 0`."""

    def __init__(
        self,
        settings: Settings,
        targets: Sequence[Target],
        journal: Journal,
        probe: Probe | None = None,
        backoff: Callable[[int], float] | None = None,
        ledger: Ledger | None = None,
    ) -> None:
        self.config = settings.alerts
        self.targets = tuple(targets)
        self.journal = journal
        self.probe = probe
        self.ledger = ledger
        self.tz = ZoneInfo(settings.system.timezone)
        self.loss_limit_pct = settings.risk.global_max_daily_loss_pct
        self.backoff = backoff or doubling_backoff(self.config.retry_backoff_seconds)
        self.events = frozenset(self.config.events)
        self.sent = self.failed = self.dropped = self.undelivered = 0
        self._lanes = [_Lane(target) for target in self.targets]
        self._cond = threading.Condition()
        self._closing = False
        self._abort = threading.Event()  # set when close gives up waiting: the workers stop retrying
        self._counted = False  # set under the lock when close has counted: a worker still busy changes nothing after
        self._outbox: deque[dict[str, Any]] = deque()  # alert_failed records, logged by the main thread
        self._handlers: dict[str, Callable[[dict[str, Any]], None]] = {
            "halt": self._on_halt,
            "resume": self._on_resume,
            "broker_error": self._on_broker_error,
            "exit_waiting": self._on_exit_waiting,
            "fill": self._on_fill,
            "trade": self._on_trade,
            "tick": self._on_tick,
            "run_start": self._on_run_start,
            "run_end": self._on_run_end,
        }
        self._day = _Day()
        self._warned_on: date | None = None  # the New York day last warned of a daily loss
        self._was_open: bool | None = None
        self._next_heartbeat: datetime | None = None
        self._broker_quiet_until: datetime | None = None
        self._broker_errors_untold: Counter[str] = Counter()  # "operation: kind/reason" -> errors not told yet
        self._last = Reading()
        self._halts: dict[int, Halt] | None = None  # the halts in force at the last tick (None: no tick yet)
        # (scope, reason) of `halt` events and scopes of `resume` events already alerted, with the tick they came in:
        # the engine's view is read at the start of a tick, so what a tick wrote shows in the next tick's view
        self._halts_heard: dict[tuple[str, str], int] = {}
        self._resumes_heard: dict[str, int] = {}
        self._ticks = 0
        self._system = "?"

    # --- the main thread ---------------------------------------------------------------------------------------

    def start(self) -> Alerter:
        for index, lane in enumerate(self._lanes):
            lane.thread = threading.Thread(target=self._work, args=(lane,), name=f"alerts-{index}", daemon=True)
            lane.thread.start()
        self.journal.subscribe(self)
        return self

    def __call__(self, record: dict[str, Any]) -> None:
        """The journal listener: a dict lookup for the events that never alert. A record it cannot read is
        skipped here rather than raised: the journal would drop a listener that raises, and every later alert."""
        handler = self._handlers.get(record["event"])
        if handler is not None:
            try:
                handler(record)
            except Exception as exc:
                unreadable = {"alert": record["event"], "target": "-", "scheme": "-", "attempt": 0}
                self._outbox.append({**unreadable, "reason": f"unreadable event: {type(exc).__name__}", "retry_in_s": None})

    def put(self, alert: Alert) -> None:
        """Queue an alert for every destination; never blocks beyond a lock held for the appends. A destination's
        queue full: its oldest goes, counted."""
        with self._cond:
            for lane in self._lanes:
                if len(lane.queue) >= self.config.queue_size:
                    lane.queue.popleft()
                    self.dropped += 1
                    lane.dropped_untold += 1
                lane.queue.append(alert)
            self._cond.notify_all()

    def close(self, timeout: float | None = None) -> None:
        """Deliver what is queued within `timeout` seconds (CLOSE_TIMEOUT_SECONDS) in all, then stop; log the
        failures and `alerts_closed`. An alert not delivered by then (queued, in a send, waiting to be retried)
        is counted undelivered, once: a worker still busy counts nothing after."""
        timeout = CLOSE_TIMEOUT_SECONDS if timeout is None else timeout
        deadline = time.monotonic() + timeout
        self.journal.unsubscribe(self)
        self._tell_broker_errors(None)  # a run that ended with no run_end (its error): told before the queue closes
        with self._cond:
            self._closing = True
            self._cond.notify_all()
        for lane in self._lanes:
            if lane.thread is not None and lane.thread.is_alive():
                lane.thread.join(max(0.0, deadline - time.monotonic()))
        self._abort.set()  # a worker still busy stops at its next wait; it is a daemon, so it never holds the exit
        with self._cond:
            left = sum(len(lane.queue) + lane.in_flight for lane in self._lanes)  # what a stuck worker holds too
            for lane in self._lanes:
                lane.queue.clear()
            self._counted = True
        self.undelivered = left
        self._log_failures()
        self.journal.log("alerts_closed", sent=self.sent, failed=self.failed, dropped=self.dropped, undelivered=left)

    def shortfall(self) -> str | None:
        """After `close`: one line for the terminal when not every alert reached every target, else None. The log
        has each failure, but a run that ended with its usual summary and nothing else read as if they had."""
        if not (self.failed or self.dropped or self.undelivered):
            return None
        return (f"alerts: {self.sent} sent, {self.failed} failed, {self.dropped} dropped, {self.undelivered} undelivered "
                f"(alert_failed events in {self.journal.path} say why)")  # fmt: skip

    def _log_failures(self) -> None:
        while True:
            try:
                record = self._outbox.popleft()
            except IndexError:
                return
            self.journal.log("alert_failed", **record)

    def _alert(self, kind: str, title: str, body: str) -> None:
        """Queue an alert of a kind the settings ask for. The title is one line and each line of the body is made
        safe as a whole, whatever a handler put in it (the fields are `_w`'d where the lines are made: a newline
        inside a field is only seen there)."""
        if kind in self.events:
            self.put(Alert(kind, one_line(title), "\n".join(one_line(line) for line in body.split("\n"))))

    def _local(self, ts: str | datetime | None) -> str:
        if ts is None:
            return "-"
        at = datetime.fromisoformat(ts) if isinstance(ts, str) else ts
        return at.astimezone(self.tz).strftime("%Y-%m-%d %H:%M %Z")

    def _on_halt(self, r: dict[str, Any]) -> None:
        self._day.halts.append(str(r.get("reason")))
        self._halts_heard[(str(r.get("scope")), str(r.get("reason")))] = self._ticks
        conditions = _w(", ".join(r.get("conditions") or []) or "-")
        body = (
            f"{_w(r.get('reason'))}\nscope {_w(r.get('scope'))}, by {_w(r.get('by'))}, at {self._local(r['ts'])}\n"
            f"conditions: {conditions}; flatten: {'yes' if r.get('flatten') else 'no'}; until: {self._local(r.get('until'))}\n"
            f"meanwhile: {halt_effect(str(r.get('scope')), bool(r.get('flatten')), r.get('conditions') or ())}"
        )
        self._alert("halt", f"Trading Hydra HALT: {_w(r.get('reason'))}", body)

    def _on_resume(self, r: dict[str, Any]) -> None:
        self._resumes_heard[str(r.get("scope"))] = self._ticks
        why = f": {_w(r['reason'])}" if r.get("reason") else ""
        body = f"scope {_w(r.get('scope'))}, by {_w(r.get('by'))}, at {self._local(r['ts'])}{why}"
        self._alert("resume", "Trading Hydra resumed", body)

    def _on_broker_error(self, r: dict[str, Any]) -> None:
        at = datetime.fromisoformat(r["ts"])
        if self._broker_quiet_until is not None and at < self._broker_quiet_until:
            self._broker_errors_untold[f"{_w(r.get('operation'))}: {_w(r.get('kind'))}/{_w(r.get('reason'))}"] += 1
            return
        untold = self._untold_broker_errors()
        self._broker_quiet_until = at + BROKER_ERROR_QUIET
        more = f"\n(+{untold} since the last alert)" if untold else ""
        status = f" HTTP {r['status']}" if r.get("status") else ""
        body = (f"{_w(r.get('operation'))}: {_w(r.get('kind'))}/{_w(r.get('reason'))}{_w(status)}: {_w(r.get('message'))}\n"
                f"at {self._local(at)}{more}")  # fmt: skip
        self._alert("broker_error", "Trading Hydra broker error", body)

    def _untold_broker_errors(self) -> str:
        """The broker errors counted since the last broker_error alert, by operation and reason ("" when none), and
        forgotten: whoever calls it tells them."""
        counts, self._broker_errors_untold = self._broker_errors_untold, Counter()
        if not counts:
            return ""
        total = sum(counts.values())
        by_what = ", ".join(f"{what} x{n}" for what, n in counts.most_common())
        return f"{total} more broker error{'s' if total != 1 else ''}: {by_what}"

    def _tell_broker_errors(self, at: datetime | None) -> None:
        """The broker errors counted in the quiet minutes after an alert, told once those minutes are over (`at`,
        engine time, past them), or now when `at` is None (the run ends). Counted only, they were told by the
        next broker error alone: when the errors stopped, or the run ended, within the 5 minutes (an exit order
        refused three times after a blip was alerted), nothing ever reached the phone."""
        if not self._broker_errors_untold:
            return
        if at is not None and self._broker_quiet_until is not None and at < self._broker_quiet_until:
            return
        since = self._local(self._broker_quiet_until - BROKER_ERROR_QUIET) if self._broker_quiet_until else "-"
        untold = self._untold_broker_errors()
        body = f"{untold}\nin the {BROKER_ERROR_QUIET.seconds // 60} minutes after the broker error alerted at {since}"
        self._alert("broker_error", "Trading Hydra broker errors", body)

    def _on_exit_waiting(self, r: dict[str, Any]) -> None:
        """An exit that is due and cannot go (said once a spell by the engine): a stop-loss that waits is money."""
        symbol = _w(r.get("symbol"))
        body = f"{_w(r.get('bot'))}: {_w(r.get('owned'))} {symbol} to sell; {_w(r.get('reason'))} ({self._local(r['ts'])})"
        self._alert("exit_waiting", f"Trading Hydra: an exit of {symbol} is waiting", body)

    def _on_fill(self, r: dict[str, Any]) -> None:
        self._day.fills += 1
        qty = number(r["qty"])
        bot, side, symbol = _w(r.get("bot")), _w(r.get("side")), _w(r.get("symbol"))
        body = f"{bot}: {side} {qty} {symbol} at {_w(r.get('price'))} ({self._local(r['ts'])})"
        self._alert("fill", f"Fill: {bot} {side} {symbol}", body)

    def _on_trade(self, r: dict[str, Any]) -> None:
        totals = self._day.trades.setdefault(str(r.get("bot")), [0.0, 0.0, 0.0])
        totals[0] += float(r.get("pnl") or 0.0)
        totals[1] += 1
        totals[2] += float(r.get("fees") or 0.0)

    def _on_run_start(self, r: dict[str, Any]) -> None:
        self._day.since = self._day.since or r["ts"]
        if "heartbeat" in self.events:
            self._next_heartbeat = datetime.fromisoformat(r["ts"]) + timedelta(minutes=self.config.heartbeat_minutes)

    def _on_tick(self, r: dict[str, Any]) -> None:
        if self._outbox:
            self._log_failures()
        self._system = _w(r.get("system"))
        self._ticks += 1
        self._tell_broker_errors(datetime.fromisoformat(r["ts"]))
        if self.probe is None:
            return
        self._last = reading = self.probe()
        pnl, is_open, equity = reading.daily_pnl_pct, reading.market_open, reading.equity
        self._compare_halts(reading.halts, r["ts"])
        threshold = self.loss_limit_pct * self.config.loss_warning_pct_of_limit / 100
        if pnl is not None and pnl <= -threshold:
            # once a day of the daily P&L, which is the broker's (equity - last_equity): a New York day, which
            # need not be system.timezone's (its new day starts at 21:00 in Los Angeles)
            day = datetime.fromisoformat(r["ts"]).astimezone(NEW_YORK).date()
            if day != self._warned_on:
                self._warned_on = day
                body = (
                    f"daily P&L {pnl:+.2f} % is past {self.config.loss_warning_pct_of_limit:g} % of the "
                    f"{self.loss_limit_pct:g} % limit (the kill switch halts at -{self.loss_limit_pct:g} %)\n"
                    f"equity {equity if equity is not None else '-'}, system {self._system}, at {self._local(r['ts'])}"
                )
                self._alert("loss_warning", f"Trading Hydra: daily loss {pnl:+.2f} % nearing the limit", body)
        if self._was_open and is_open is False:
            self._summary(f"Trading Hydra: the market closed ({self._local(r['ts'])})", r["ts"])
        if is_open is not None:
            self._was_open = is_open
        if self._next_heartbeat is not None:
            at = datetime.fromisoformat(r["ts"])
            if at >= self._next_heartbeat:
                self._next_heartbeat = at + timedelta(minutes=self.config.heartbeat_minutes)
                body = f"system {self._system}, {self._figures()}, at {self._local(at)}"
                self._alert("heartbeat", "Trading Hydra is running", body)

    def _compare_halts(self, halts: tuple[Halt, ...], ts: str) -> None:
        """Halts that began or ended with no event in this journal: written by another process, or in force
        when the run started. Those whose `halt` or `resume` event was heard were alerted already."""
        current = {h.id: h for h in halts}
        known, self._halts = self._halts, current
        first = known is None
        for halt_id, h in current.items():
            if known is not None and halt_id in known:
                continue
            if self._halts_heard.pop((h.scope, h.reason), None) is not None:
                continue
            self._day.halts.append(h.reason)
            title = f"Trading Hydra HALT{' IN FORCE' if first else ''}: {_w(h.reason)}"
            until = self._local(h.until) if h.until else "`python -m engine resume`"
            conditions = _w(", ".join(h.conditions) or "-")
            since = self._local(h.started_at)
            body = (f"{_w(h.reason)}\nscope {_w(h.scope)}, since {since}, until {until}; conditions: {conditions}\n"
                    f"meanwhile: {halt_effect(h.scope, h.flatten, h.conditions)}")  # fmt: skip
            self._alert("halt", title, body)
        for halt_id, h in (known or {}).items():
            if halt_id not in current and not ({h.scope, "all"} & self._resumes_heard.keys()):
                ended = f"the halt '{_w(h.reason)}' (scope {_w(h.scope)}) ended by {self._local(ts)}"
                self._alert("resume", "Trading Hydra resumed", ended)
        old = self._ticks - 2
        self._halts_heard = {k: tick for k, tick in self._halts_heard.items() if tick >= old}
        self._resumes_heard = {k: tick for k, tick in self._resumes_heard.items() if tick >= old}

    def _on_run_end(self, r: dict[str, Any]) -> None:
        self._tell_broker_errors(None)
        self._summary(f"Trading Hydra: the run ended ({_w(r.get('reason'))}) at {self._local(r['ts'])}", r["ts"])

    def _figures(self) -> str:
        pnl, equity = self._last.daily_pnl_pct, self._last.equity
        pnl_text = f"{pnl:+.2f} %" if pnl is not None else "-"
        return f"equity {equity:.2f}, daily P&L {pnl_text}" if equity is not None else f"daily P&L {pnl_text}"

    def _summary(self, title: str, ts: str) -> None:
        """The trades, fills and halts heard since the run started or the last summary, said from when: a run
        started at 10:00 told the close's 'total realized' without the morning's trades, as if the day's."""
        day, self._day = self._day, _Day(since=ts, after=True)
        since = f"since {self._local(day.since)}" if day.since else "since this run's alerts started"
        lines = [f"{since} (this run's trades and fills):"]
        trades = self._trades(day)
        lines += [
            f"{_w(bot)}: {money(pnl)} USD [{int(n)} trades], fees {money(fees, sign=False)}"
            for bot, (pnl, n, fees) in trades.items()
        ]
        realized = total(v[0] for v in trades.values())
        lines.append(f"total realized {money(realized)} USD; {day.fills} fills; {self._figures()}; system {self._system}")
        if day.halts:
            lines.append("halts: " + "; ".join(_w(reason) for reason in day.halts))
        self._alert("daily_summary", title, "\n".join(lines))

    def _trades(self, day: _Day) -> dict[str, list[float]]:
        """bot -> [realized P&L, trades, fees] of the trades closed in `day`'s span, totalled as `status` and
        `report` total them (`money.total`: each bot's day unrounded, rounded once, then added), from the state
        file's trades. Added from the `trade` events, each already rounded to the cent, the summary said +4.49
        where `status` said +4.48. Without a ledger (no engine), the events' figures."""
        if self.ledger is None or day.since is None:
            return {bot: [total([pnl]), n, fees] for bot, (pnl, n, fees) in day.trades.items()}
        since = datetime.fromisoformat(day.since)
        days: dict[tuple[str, date], float] = {}  # (bot, trading day) -> unrounded realized P&L
        out: dict[str, list[float]] = {}
        for t in self.ledger(since):
            if t.closed_at < since or (day.after and t.closed_at == since):
                continue
            row = out.setdefault(t.bot_id, [0.0, 0.0, 0.0])
            row[1] += 1
            row[2] += t.fees
            days[(t.bot_id, t.trading_date)] = days.get((t.bot_id, t.trading_date), 0.0) + t.pnl
        for bot, row in out.items():
            row[0] = total(pnl for (owner, _day), pnl in days.items() if owner == bot)
        return out

    # --- the delivery thread -----------------------------------------------------------------------------------

    def _work(self, lane: _Lane) -> None:
        while True:
            with self._cond:
                while not lane.queue and not self._closing:
                    self._cond.wait()
                if not lane.queue or self._abort.is_set():
                    return
                alert = lane.queue.popleft()
                dropped, lane.dropped_untold = lane.dropped_untold, 0
                lane.in_flight = 1
            body = alert.body + (f"\n({dropped} earlier alerts were dropped: the queue was full)" if dropped else "")
            if not self._deliver(alert, body, lane):
                return

    def _deliver(self, alert: Alert, body: str, lane: _Lane) -> bool:
        """Send with retries; False when close gave up (this alert is then among those it counts undelivered)."""
        target, attempts = lane.target, self.config.max_attempts
        for attempt in range(1, attempts + 1):
            try:
                reason = target.send(alert.title, body)
            except Exception as exc:  # a target must never end the thread
                reason = type(exc).__name__
            with self._cond:
                if self._counted:
                    return False
                last = attempt == attempts or self._abort.is_set()
                wait = None if last or reason is None else self.backoff(attempt)
                if reason is not None:
                    failure = {"alert": alert.kind, "target": target.name, "scheme": target.scheme, "attempt": attempt}
                    self._outbox.append({**failure, "reason": reason, "retry_in_s": wait})
                if wait is None:
                    self.sent += reason is None
                    self.failed += reason is not None
                    lane.in_flight = 0
                    return True
            if self._abort.wait(wait):  # close gave up waiting: no more tries, the alert counted undelivered
                return False
        return True  # not reached: the last attempt returns above


def engine_probe(engine: Engine) -> Probe:
    """The Reading of the tick that just ended, from the engine's last view: `daily_pnl_pct` is the fact's own
    function applied to the same account, so the warning and the kill condition cannot disagree."""
    from engine.trading.facts_builder import daily_pnl_pct

    def probe() -> Reading:
        view = engine._view
        if view is None:
            return Reading()
        snapshot = view.snapshot
        account = snapshot.account
        return Reading(
            daily_pnl_pct(account),
            snapshot.clock.is_open if snapshot.clock else None,
            account.equity if account else None,
            view.halts,
        )

    return probe


def engine_ledger(engine: Engine) -> Ledger:
    """The trades the engine's state file closed at or after an instant (its trading days are read from the day
    before, whatever system.timezone: a day's trades are found by their date)."""

    def ledger(since: datetime) -> Sequence[TradeRow]:
        first = (since - timedelta(days=1)).date()
        return [t for t in engine.store.trades(since=first) if t.closed_at >= since]

    return ledger


def start_alerts(settings: Settings, env: Mapping[str, str], journal: Journal, engine: Engine | None = None) -> Alerter | None:
    """The run's Alerter, started and subscribed, or None when alerts are off; AlertSetupError when on but unusable."""
    if not settings.alerts.enabled:
        return None
    targets = [AppriseTarget(name, url) for name, url in resolve_urls(settings.alerts, env)]
    if engine is None:
        return Alerter(settings, targets, journal).start()
    return Alerter(settings, targets, journal, engine_probe(engine), ledger=engine_ledger(engine)).start()
