"""`python -m engine report`: a trading day (or a range of days) for review.

Where each figure comes from:
- trades, P&L by bot, fees: SQLite (`trades`, and `realized_pnl`, which also counts the partial exits of a
  position still open); halts: SQLite's `halts`, every one that overlapped the period;
- open positions: SQLite's `positions` as the state file holds them now (the state's own time), each bot's on its
  own line as `status` shows them: a day that ended holding read as a day of closed trades only;
- entries blocked per check: the JSONL's `entry_blocked` events (the gate's refusals, by reason) and its
  `preflight` events (logged when a bot's failing set changes: how often each check began failing, and for how
  long it failed, clipped to the period and to the runs that were up);
- guard statistics: the `guards` of `transition` events: how often each guard held in a transition that fired;
- broker errors by reason (`broker_error`), and each run's end (`run_end`: why, ticks, the account's equity).
- the equity curve: realized P&L of closed trades over time, per bot and in total, from 0 at the period's
  start. The account's equity is not sampled per tick (no event carries it), so the curve moves only when a
  trade closes; the account equity at the end of each run is listed beside it.

A log that cannot vouch for the whole period (empty, lines it cannot read in the period, ending before or beginning
after something the state file records in it: `coverage_gaps`) makes its sections "unknown" and why, never "none".

Days are trading days in the zone the state file counts them in (meta.timezone, which the last run took from
`system.timezone`; `counting_zone`): a day's trades and P&L are keyed by that zone's date, so its log window, its
halts and every time shown are in the same zone, and a zone settings.yaml has since changed to is said beside it.
The JSONL's UTC times are read as instants and shown in that zone. plotly is imported only to write the HTML (`--out`).
"""

from __future__ import annotations

import errno
import html
import math
import re
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from engine.core import jsontext
from engine.core.journal import JournalError
from engine.core.money import cents, money, total
from engine.core.store import PositionRow, StateFileError, StateStore, TradeRow
from engine.core.terminal_text import one_line
from engine.operator.local import LocalTime
from engine.operator.summary import halt_lines, in_force_lines, number, period_record, position_line, price
from engine.paths import PROJECT_ROOT, PathKind, path_kind
from engine.trading.runner import LAST_RUN_KEY, LAST_TICK_KEY
from engine.trading.startup import ZONE_KEY

PROMPT_FILE = PROJECT_ROOT / "tools" / "analyst_prompt.txt"
# Events the report reads; every other line (ticks above all: thousands a day) is skipped before it is parsed.
WANTED = ("entry_blocked", "preflight", "transition", "broker_error", "run_start", "run_end")


@dataclass(frozen=True)
class BlockedCheck:
    check: str
    bot: str
    entries_blocked: int = 0  # entry_blocked events naming the check
    began_failing: int = 0  # preflight events in which the check joined the failing set
    seconds_failing: float = 0.0


@dataclass
class ReportData:
    first: date
    last: date
    timezone: str
    trades: list[TradeRow]
    days: dict[str, dict[str, dict[str, float]]]
    halts: list[dict[str, Any]]
    in_force: list[dict[str, Any]]
    blocked: list[BlockedCheck]
    guards: list[tuple[str, str, int]]  # (machine, guard, times it held in a fired transition)
    triggers: list[tuple[str, str, int]]  # (machine, trigger, times it fired)
    broker_errors: list[tuple[str, int]]  # (operation: reason, count)
    runs: list[dict[str, Any]]  # run_end events of the period
    log: Path
    log_found: bool = True
    events_read: int = 0
    lines_skipped: int = 0  # lines that looked like wanted events but could not be read (see _events)
    clipped: bool = False  # the period reaches past FIRST_DAY or LAST_DAY: read up to them
    log_begins: datetime | None = None  # set when the log begins inside the period, cut from what came before
    log_empty: bool = False  # the log holds no line (emptied by a rotation that truncates it, or never written)
    log_ends: tuple[datetime | None, str, datetime] | None = None  # (its last time, what the state file records, when)
    pnl_by_bot: dict[str, float] = field(default_factory=dict)
    configured_zone: str | None = None  # settings.yaml's system.timezone when the state file counts days in another
    positions: list[PositionRow] = field(default_factory=list)  # open now (at `now`), whatever the period
    now: datetime | None = None  # the state's own time, which `positions` are as of

    @property
    def period_text(self) -> str:
        return self.first.isoformat() if self.first == self.last else f"{self.first.isoformat()} to {self.last.isoformat()}"

    @property
    def zone_text(self) -> str:
        """The zone times are shown in, and the years the period was read within when it reached past them."""
        clipped = f"; read from {FIRST_DAY} to {LAST_DAY}, the years a record can have" if self.clipped else ""
        moved = (
            f"; the days are this state file's, counted in {self.timezone} (meta.timezone), not in system.timezone "
            f"{self.configured_zone}, which settings.yaml now says"
            if self.configured_zone
            else ""
        )
        return f"times in {self.timezone}{moved}{clipped}"

    @property
    def total_pnl(self) -> float:
        return total(self.pnl_by_bot.values())

    @property
    def fees(self) -> float:
        return cents(sum(t.fees for t in self.trades))

    def equity_curve(self) -> dict[str, list[tuple[datetime, float]]]:
        """Cumulative realized P&L of closed trades: per bot, and "total"; each starts at 0 at the period's start.
        Totalled as every view totals P&L (`money.total`): each bot's day summed unrounded and rounded once, then
        added. The running sums of every trade rounded once made the "total" label a cent off `status`'s total."""
        curves: dict[str, list[tuple[datetime, float]]] = defaultdict(list)
        running: dict[tuple[str, date], float] = defaultdict(float)  # (bot, trading day) -> unrounded P&L so far
        shown: dict[str, float] = defaultdict(float)  # bot, and "total" -> the sum of its days in cents
        for t in sorted(self.trades, key=lambda t: t.closed_at):
            key = (t.bot_id, t.trading_date)
            was = cents(running[key])
            running[key] += t.pnl
            moved = cents(running[key]) - was  # the day's figure as shown moved by this (a sum, not each day again)
            for name in (t.bot_id, "total"):
                shown[name] += moved
                curves[name].append((t.closed_at, cents(shown[name])))
        return dict(curves)


# The days a record can fall on. Outside them an instant cannot even be moved between zones (the day after
# 9999-12-31 does not exist), and no engine ran there: a period reaching past them is read up to them, so
# `--from 0001-01-01` costs what 300 years cost (one query a day), never a traceback or minutes.
FIRST_DAY, LAST_DAY = date(1900, 1, 1), date(2199, 12, 31)


def counting_zone(store: StateStore, configured: LocalTime) -> LocalTime:
    """The zone the state file's trading dates are counted in (meta.timezone), for the report to count days, read
    the log and the halts and show times in: a day's trades and P&L are found by their stored date, and a log window
    or halts taken in another zone (settings.yaml's after a change) mixed two days under one date, silently. A file
    that recorded no zone (no run yet, or older than the record) counts in settings.yaml's; one whose record is not
    a zone cannot be read, and is said so (exit 2), never guessed."""
    recorded = store.meta(ZONE_KEY)
    if recorded is None or recorded == configured.name:
        return configured
    try:
        return LocalTime(recorded)
    except (ValueError, KeyError, OSError):  # ZoneInfoNotFoundError is a KeyError; a path-like key a ValueError
        pass
    what = f"meta.{ZONE_KEY} '{one_line(recorded)}' is not a time zone: the days of the file cannot be told"
    raise StateFileError(store.path, what, runtime=False)


def build_report(
    store: StateStore, log: Path, first: date, last: date, local: LocalTime, now: datetime, configured: str | None = None
) -> ReportData:
    """The report of [first, last], days and times in `local` (`counting_zone`); `configured`: settings.yaml's
    system.timezone, said beside it when it is another zone."""
    data = ReportData(first=first, last=last, timezone=local.name, trades=[], days={}, halts=[], in_force=[], blocked=[],
                      guards=[], triggers=[], broker_errors=[], runs=[], log=log)  # fmt: skip
    data.configured_zone = configured if configured not in (None, local.name) else None
    data.positions, data.now = store.positions(), now
    lo, hi = max(first, FIRST_DAY), min(last, LAST_DAY)
    data.clipped = (lo, hi) != (first, last)
    if lo > hi:  # wholly outside the years a record can have: nothing to read
        return data
    start, end = local.day_bounds(lo, hi)
    period = period_record(store, start, end - timedelta(microseconds=1), now, local)
    pnl_by_bot: dict[str, float] = defaultdict(float)
    for bots in period["days"].values():
        for bot, values in bots.items():
            pnl_by_bot[bot] = total((pnl_by_bot[bot], values["realized"]))
    data.trades = store.trades(since=lo, until=hi)
    data.days, data.halts, data.in_force = period["days"], period["halts"], period["in_force"]
    data.pnl_by_bot = dict(pnl_by_bot)
    _read_log(data, log, start, end, local, _state_says(store, data, start, end, local))
    return data


# A run's last tick is committed once the tick's lines are handed to the log, but a report read during the run may
# see the state file a tick ahead of the log: a tick this much after the log's last line is a sign it was cut.
TICK_LEEWAY = timedelta(seconds=60)


def _state_says(
    store: StateStore, data: ReportData, start: datetime, end: datetime, local: LocalTime
) -> list[tuple[datetime, str]]:
    """What the state file records happening in the period, (when, what), each of which the engine logged: a log
    that ends before one of them, or begins after it, was cut (rotated, truncated) and cannot vouch for the
    period. A tick is given TICK_LEEWAY (see there)."""
    said: list[tuple[datetime, str]] = [(t.closed_at, "a trade closed") for t in data.trades]
    said += [(datetime.fromisoformat(h["started_at"]), "a halt") for h in data.halts]
    record = store.meta(LAST_RUN_KEY)
    if record:
        try:
            run = jsontext.loads(record)
        except ValueError:  # `status` says it cannot be read; here it is no sign either way
            run = None
        times = [(run.get("started_at"), "a run started"), (run.get("ended_at"), "a run ended")] if isinstance(run, dict) else []
        said += [(at, what) for text, what in times if (at := _time_of(text, local)) is not None]
    tick = _time_of(store.meta(LAST_TICK_KEY), local)
    if tick is not None:
        said.append((tick - TICK_LEEWAY, "a tick"))
    return sorted((at, what) for at, what in said if start <= at < end)


def _time_of(text: Any, local: LocalTime) -> datetime | None:
    """An aware instant from the state file's text, or None (a record the report does not vouch for is no sign)."""
    return _event_time({"ts": text}, local)


# The fields each wanted event must carry, with their JSON types, for the report to count it: a line of another
# program, a hand edit or a damaged file is skipped and counted (`lines_skipped`), never read as letters (a
# `failed` of "abc" counted as three checks) or allowed to stop the report with a traceback.
_LIST_OF_TEXT = "a list of text"
# A type ending in "!" is required: an event without it says nothing the report can count.
_FIELDS: dict[str, dict[str, str]] = {
    "entry_blocked": {"bot": "text!", "failed": _LIST_OF_TEXT},
    "preflight": {"bot": "text!", "failed": _LIST_OF_TEXT},
    "transition": {"machine": "text!", "trigger": "text!", "guards": _LIST_OF_TEXT},
    "broker_error": {"operation": "text", "reason": "text", "kind": "text"},
    "run_start": {},
    "run_end": {"reason": "text", "ticks": "number", "equity": "number"},
}


def _field_ok(value: Any, kind: str) -> bool:
    """A field absent or null is allowed unless required (the engine leaves some out); present, it must be of
    its type."""
    if value is None:
        return not kind.endswith("!")
    kind = kind.rstrip("!")
    if kind == "text":
        return isinstance(value, str)
    if kind == "number":  # finite: Python's json reads NaN, Infinity and 1e400, which no engine writes
        return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    return isinstance(value, list) and all(isinstance(v, str) for v in value)


def _event_time(event: dict[str, Any], local: LocalTime) -> datetime | None:
    """The event's `ts` as an aware instant that can be shown in UTC and in system.timezone, or None."""
    text = event.get("ts")
    if not isinstance(text, str):
        return None
    try:
        at = local.parse_utc(text)
        at.astimezone(timezone.utc), at.astimezone(local.tz)  # a year-1 or year-9999 instant cannot be shown
    except (ValueError, OverflowError):
        return None
    return at


@dataclass
class _Scan:
    """What reading the log found besides its events: its first line, its last line, the time of its last line the
    engine wrote (`last_at`), and the lines it could not read that lie in the period (`skipped`)."""

    start: datetime
    end: datetime
    local: LocalTime
    head: list[bytes] = field(default_factory=list)
    tail: list[bytes] = field(default_factory=list)
    last_at: datetime | None = None
    skipped: int = 0
    pending: int = 0  # unreadable lines without a time since the last timed line, placed by the next one
    pending_after: datetime | None = None  # the time of the timed line before them (None: the log's start)
    last_unparsed: bytes = b""  # the last line not parsed (a tick's): its time is read only when needed

    def latest(self) -> datetime | None:
        """The latest time read so far, the last unparsed line's included."""
        unparsed = _line_time(self.last_unparsed, self.local) if self.last_unparsed else None
        return max(filter(None, (self.last_at, unparsed)), default=None)

    def skipped_over(self, line: bytes) -> None:
        """A line of the engine's that is not parsed: it places the unreadable lines before it."""
        if self.pending:
            self.timed(_line_time(line, self.local))
        self.last_unparsed = line

    def timed(self, at: datetime | None) -> None:
        """A line of a known time (None: the log's end): the unreadable lines before it lie between the previous
        timed line and it, and count when that span meets the period."""
        if (
            self.pending
            and not (at is not None and at < self.start)
            and not (self.pending_after is not None and self.pending_after >= self.end)
        ):
            self.skipped += self.pending
        self.pending = 0
        if at is not None:  # the latest: an operator's halt is logged in its own time, after a run's later end
            self.last_at = at if self.last_at is None else max(self.last_at, at)

    def unreadable(self, at: datetime | None) -> None:
        """A line that cannot be read: counted when its time (when it can be told) is in the period, or, without
        one, when the lines around it are."""
        if at is not None:
            self.timed(at)
            self.skipped += self.start <= at < self.end
            return
        if not self.pending:
            self.pending_after = self.latest()
        self.pending += 1


_TS = b'{"ts":"'


def _line_time(line: bytes, local: LocalTime) -> datetime | None:
    """The time a line of the engine's begins with (it writes `ts` first), read without parsing the line."""
    if not line.startswith(_TS):
        return None
    close = line.find(b'"', len(_TS), len(_TS) + 64)
    try:
        text = line[len(_TS) : close].decode("ascii") if close > 0 else None
    except UnicodeDecodeError:
        return None
    return _event_time({"ts": text}, local)


def _events(log: Path, scan: _Scan, local: LocalTime) -> Any:
    """(instant, event) for the wanted events of the log, oldest first, each parsed once. A line that is not
    UTF-8, not JSON, not an object, or whose time or fields are not what the engine writes (a line cut short by
    a crash, a damaged file, another program's line: a CSV) is skipped and counted in `scan.skipped` when it lies
    in the period. The other lines (ticks above all: thousands a day) are not parsed: a line that begins with the
    engine's `{"ts":"` and ends with `}` is taken as one of its own. `scan` also gets the log's first and last
    line (a run still going logs ticks only) and the time of its last line."""
    needles = tuple(f'"event":"{name}"'.encode() for name in WANTED)
    line = b""
    try:
        f = log.open("rb")
    except OSError as exc:
        raise JournalError(log, exc) from None
    with f:
        for line in f:
            if not scan.head:
                scan.head.append(line)
            if not any(n in line for n in needles):
                if line.startswith(_TS) and line.rstrip(b"\r\n").endswith(b"}"):
                    scan.skipped_over(line)
                elif line.strip():  # a blank line holds nothing
                    scan.unreadable(_line_time(line, local))
                continue
            try:
                event = jsontext.loads(line.decode("utf-8"))
            except ValueError:  # UnicodeDecodeError is one
                event = None
            if not isinstance(event, dict):
                scan.unreadable(_line_time(line, local))
                continue
            at, fields = _event_time(event, local), _FIELDS.get(str(event.get("event")))
            if at is None or fields is None or not all(_field_ok(event.get(k), kind) for k, kind in fields.items()):
                scan.unreadable(at)
                continue
            scan.timed(at)
            yield at, event
    scan.last_at = scan.latest()
    scan.timed(None)
    scan.tail.append(line)


def _last_time(tail: list[bytes], local: LocalTime) -> datetime | None:
    event = _line_event(tail, local)
    return event[0] if event is not None else None


def _line_event(lines: list[bytes], local: LocalTime) -> tuple[datetime, str] | None:
    """The time and event name of the last of `lines`, or None when it is not an event of the engine's."""
    try:
        event = jsontext.loads(lines[-1].decode("utf-8")) if lines and lines[-1].strip() else None
    except ValueError:
        return None
    at = _event_time(event, local) if isinstance(event, dict) else None
    return (at, str(event.get("event"))) if at is not None and isinstance(event, dict) else None


# What a whole log begins with: a run's start, or an operator's halt or resume typed before any run. A log that
# begins with anything else was rotated or cut, and what came before it is in another file, or gone.
LOG_BEGINS_WITH = ("run_start", "halt", "resume")


def _cut_from_before(first: tuple[datetime, str] | None, start: datetime, said: list[tuple[datetime, str]]) -> datetime | None:
    """When the log begins inside the period, cut from what came before (rotated at midnight, truncated), its first
    time; else None. Without it a day whose lines were rotated away read as a quiet one: no entry blocked, no
    broker error, no run ended, beside that day's trades (SQLite's). A log that begins with a run's start holds
    that run whole, unless the state file records something in the period before it (`_state_says`)."""
    if first is None or first[0] <= start:
        return None
    at, event = first
    return at if event not in LOG_BEGINS_WITH or any(when < at for when, _what in said) else None


def _cut_after(last: datetime | None, said: list[tuple[datetime, str]]) -> tuple[datetime | None, str, datetime] | None:
    """When the log ends before something the state file records in the period (`_state_says`: a trade closed, a
    run started or ended, a halt, a tick), (the log's last time, what, when); else None. The day before's log given
    for a day (`report --date D`), or one whose later lines went to another file, read as a quiet day."""
    later = [(when, what) for when, what in said if last is None or when > last]
    return (last, later[0][1], later[0][0]) if later else None


def _check_log(log: Path) -> bool:
    """Whether there is a log to read: False when there is none; a log of the wrong kind is refused in one
    line (a folder, a FIFO that would hang the reader: exit 2), as every command refuses it."""
    try:
        found = path_kind(log)
    except OSError as exc:
        raise JournalError(log, exc) from None
    if found.absent:
        return False
    if found is PathKind.FOLDER:
        raise JournalError(log, IsADirectoryError(errno.EISDIR, "is a folder"))
    if found is not PathKind.FILE:
        error = JournalError(log, OSError(errno.EINVAL, "is not a regular file (a FIFO, a device or a socket)"))
        error.runtime = False  # the wrong kind of file: the user's input to fix
        raise error
    return True


def _read_log(
    data: ReportData, log: Path, start: datetime, end: datetime, local: LocalTime, said: list[tuple[datetime, str]]
) -> None:
    """The log's counts for [start, end), and whether the log can vouch for the whole period: `said` is what the
    state file records in it (`_state_says`), which a log that ends before it or begins after it has not got."""
    if not _check_log(log):
        data.log_found = False
        return
    blocked: Counter[tuple[str, str]] = Counter()
    began: Counter[tuple[str, str]] = Counter()
    seconds: dict[tuple[str, str], float] = defaultdict(float)
    failing: dict[str, tuple[datetime, frozenset[str]]] = {}  # bot -> (since, checks failing), while a run is up
    guards: Counter[tuple[str, str]] = Counter()
    triggers: Counter[tuple[str, str]] = Counter()
    errors: Counter[str] = Counter()

    def close(bot: str, at: datetime) -> None:
        since, checks = failing.pop(bot, (at, frozenset()))
        held = (min(at, end) - max(since, start)).total_seconds()
        if held > 0:
            for check in checks:
                seconds[(check, bot)] += held

    last_at: datetime | None = None
    scan = _Scan(start, end, local)
    for at, event in _events(log, scan, local):
        last_at = at
        name = event.get("event")
        if name in ("run_start", "run_end"):  # the bots' preflight memory starts afresh with each run
            for bot in list(failing):
                close(bot, at)
        if name == "preflight":
            bot = str(event.get("bot"))
            before = failing.get(bot, (at, frozenset()))[1]
            close(bot, at)
            now_failing = frozenset(str(c) for c in event.get("failed") or ())
            if now_failing:
                failing[bot] = (at, now_failing)
            if start <= at < end:
                for check in now_failing - before:
                    began[(check, bot)] += 1
        if not start <= at < end:
            continue
        data.events_read += 1
        if name == "entry_blocked":
            for check in event.get("failed") or ():
                blocked[(str(check), str(event.get("bot")))] += 1
        elif name == "transition":
            machine = str(event.get("machine"))
            triggers[(machine, str(event.get("trigger")))] += 1
            for guard in event.get("guards") or ():
                guards[(machine, str(guard))] += 1
        elif name == "broker_error":
            errors[f"{event.get('operation')}: {event.get('reason') or event.get('kind')}"] += 1
        elif name == "run_end":
            data.runs.append(event)
    data.lines_skipped = scan.skipped
    data.log_empty = not any(line.strip() for line in scan.head)
    data.log_begins = _cut_from_before(_line_event(scan.head, local), start, said)
    data.log_ends = _cut_after(scan.last_at, said) if not data.log_empty else None
    for bot in list(failing):  # still failing when the log ends (a run still going): up to its last line
        close(bot, max(filter(None, (_last_time(scan.tail, local), last_at)), default=end))
    keys = set(blocked) | set(began) | set(seconds)
    data.blocked = sorted(
        (
            BlockedCheck(check, bot, blocked[(check, bot)], began[(check, bot)], round(seconds[(check, bot)], 1))
            for check, bot in keys
        ),
        key=lambda b: (-b.entries_blocked, -b.seconds_failing, b.check, b.bot),
    )
    data.guards = sorted(((m, g, n) for (m, g), n in guards.items()), key=lambda x: (x[0], -x[2], x[1]))
    data.triggers = sorted(((m, t, n) for (m, t), n in triggers.items()), key=lambda x: (x[0], -x[2], x[1]))
    data.broker_errors = errors.most_common()


# --- text ------------------------------------------------------------------------------------------------------


def _duration(seconds: float) -> str:
    minutes = round(seconds / 60)
    return f"{minutes // 60}h{minutes % 60:02d}" if minutes >= 60 else f"{seconds / 60:.1f} min"


def pnl_text(data: ReportData) -> str:
    lines = [f"  {one_line(bot)}: {money(pnl)}" for bot, pnl in sorted(data.pnl_by_bot.items(), key=lambda kv: kv[1])]
    lines.append(f"  total: {money(data.total_pnl)} USD (fees {money(data.fees, sign=False)})")
    if len(data.days) > 1:
        for day, bots in data.days.items():
            if bots:
                parts = ", ".join(f"{one_line(bot)} {money(v['realized'])}" for bot, v in bots.items())
                lines.append(f"  {day}: {parts}")
    return "\n".join(lines)


def trades_text(data: ReportData, local: LocalTime) -> str:
    if not data.trades:
        return "  none"
    # the trigger is the exit order's reason, which names itself ("exit: stop_loss_hit", "flatten")
    return "\n".join(
        f"  {local(t.opened_at)} -> {local.after(t.closed_at, t.opened_at)} {one_line(t.bot_id)} {one_line(t.symbol)} "
        f"qty {number(t.qty)} {t.entry_price:.4f} -> {t.exit_price:.4f} P&L {money(t.pnl)} "
        f"fees {money(t.fees, sign=False)} closed by {one_line(t.exit_trigger)}"
        for t in data.trades
    )


def positions_at(data: ReportData, local: LocalTime) -> str:
    """When the open positions are as of: the state's own time, which a report of past days is not."""
    return f" at {local(data.now)}" if data.now is not None else ""


def positions_text(data: ReportData) -> str:
    """Each bot's open position (two bots on one symbol, one line each), as `status` shows it."""
    return "\n".join(f"  {position_line(p)}" for p in data.positions) or "  none"


def halts_text(data: ReportData, local: LocalTime) -> str:
    lines = halt_lines(data.halts, local)[1:] or ["  none"]
    return "\n".join([*lines, *in_force_lines(data.in_force, local)])


def skipped_text(data: ReportData) -> str:
    """Said whenever lines were skipped: the counts below leave them out."""
    if not data.lines_skipped:
        return ""
    many = data.lines_skipped != 1
    return (f"  ({data.lines_skipped} line{'s' if many else ''} of {data.log} could not be read and {'were' if many else 'was'} "
            "left out: cut short by a crash, damaged, or not written by the engine)")  # fmt: skip


def log_begins_text(data: ReportData, local: LocalTime | None = None) -> str:
    """Said when the log does not reach back to the period's start: the counts from the log start where it does."""
    if data.log_begins is None:
        return ""
    at = (local or LocalTime(data.timezone))(data.log_begins)
    return (f"  (the log {data.log} begins at {at}, after the period began, and not with a run's start: it was "
            "rotated or cut, and what came before is not counted here or below; give the rotated file with --log PATH "
            "to count it)")  # fmt: skip


def no_log_text(data: ReportData) -> str:
    """What a section read from the log says when there is no log: unknown, not "none". The blocked entries said
    "(no log at ...)" once, and the guards, broker errors and runs below it "none", as if the day had had none."""
    return f"unknown: no log at {data.log}"


def coverage_gaps(data: ReportData, local: LocalTime | None = None) -> list[str]:
    """Why the log cannot vouch for the whole period, each in a few words; [] when it can. A section with nothing
    to show then says "unknown" with them, never "none": an empty log (emptied by a rotation that copies and
    truncates it), a CSV given as --log, the day before's log given for a day, each said the day had had no entry
    blocked, no broker error and no run ended."""
    if not data.log_found:
        return [f"no log at {data.log}"]
    shown = local or LocalTime(data.timezone)
    gaps = []
    if data.log_empty:
        gaps.append(f"the log {data.log} is empty (emptied by a rotation that truncates it, or never written)")
    if data.lines_skipped:
        many = data.lines_skipped != 1
        gaps.append(f"{data.lines_skipped} line{'s' if many else ''} of {data.log} in the period could not be read")
    if data.log_begins is not None:
        gaps.append(f"the log {data.log} begins at {shown(data.log_begins)}, after the period began")
    if data.log_ends is not None:
        last, what, when = data.log_ends
        ends = f"ends at {shown(last)}, before" if last is not None else "holds no line of the engine's, though"
        gaps.append(f"the log {data.log} {ends} the state file records {what} at {shown(when)}")
    return gaps


def _from_log(data: ReportData, lines: list[str], none: str = "none") -> str:
    """A section read from the log: its lines, or `none`; when the log cannot vouch for the whole period
    (`coverage_gaps`), "unknown" and why instead of `none`, and its lines said to be those the log holds."""
    if not data.log_found:
        return f"  {no_log_text(data)}"
    gaps = coverage_gaps(data)
    if not gaps:
        return "\n".join(lines) or f"  {none}"
    said = "; ".join(gaps)
    if not lines:
        return f"  unknown: {said}"
    return "\n".join([f"  (at least: {said})", *lines])


def blocked_text(data: ReportData) -> str:
    """Entries blocked per check. The log's words (here and in the other sections) are shown through one_line:
    anyone who can write the file wrote them, and a newline or an escape sequence must not reach the terminal."""
    if not data.log_found:
        return f"  {no_log_text(data)}"
    notes = [text for text in (log_begins_text(data), skipped_text(data)) if text]
    lines = []
    for b in data.blocked:
        parts = [f"{b.entries_blocked} entries blocked"] if b.entries_blocked else []
        if b.began_failing or b.seconds_failing:
            parts.append(f"began failing {b.began_failing}x, failing {_duration(b.seconds_failing)} in all")
        lines.append(f"  {one_line(b.check)} ({one_line(b.bot)}): {'; '.join(parts)}")
    return "\n".join([*notes, _from_log(data, lines)])


def guards_text(data: ReportData) -> str:
    """One line per machine: each guard with how often it held in a transition that fired, then its triggers."""
    lines = []
    for machine in sorted({m for m, _g, _n in data.guards} | {m for m, _t, _n in data.triggers}):
        held = ", ".join(f"{one_line(g)} {n}x" for m, g, n in data.guards if m == machine)
        fired = ", ".join(f"{one_line(t)} {n}x" for m, t, n in data.triggers if m == machine)
        lines.append(f"  {one_line(machine)}: guards held: {held or 'none'}; triggers fired: {fired or 'none'}")
    return _from_log(data, lines)


def errors_text(data: ReportData) -> str:
    return _from_log(data, [f"  {one_line(what)}: {n}" for what, n in data.broker_errors])


def _equity_text(run: dict[str, Any]) -> str:
    """A run's equity at its end, in dollars; a run that ended in an error logs none, and one whose broker could
    not say logs null: both 'unknown', never 'None'."""
    equity = run.get("equity")
    return money(equity, sign=False) if equity is not None else "unknown"


def _ticks_text(run: dict[str, Any]) -> str:
    return str(run["ticks"]) if run.get("ticks") is not None else "unknown"


def runs_text(data: ReportData, local: LocalTime) -> str:
    lines = [
        f"  {local(local.parse_utc(str(r['ts'])))}: {one_line(str(r.get('reason')))}, {_ticks_text(r)} ticks, "
        f"equity {_equity_text(r)}"
        for r in data.runs
    ]
    return _from_log(data, lines, "none ended in the period")


def render_text(data: ReportData, local: LocalTime) -> str:
    sections = [
        (f"report {data.period_text} ({data.zone_text})", ""),
        ("P&L by bot (realized, USD):", pnl_text(data)),
        (f"trades: {len(data.trades)}", trades_text(data, local)),
        (f"open positions now{positions_at(data, local)}: {len(data.positions)}", positions_text(data)),
        (f"halts: {len(data.halts)}", halts_text(data, local)),
        ("entries blocked, by check:", blocked_text(data)),
        ("guards that held in fired transitions:", guards_text(data)),
        ("broker errors:", errors_text(data)),
        ("runs ended:", runs_text(data, local)),
    ]
    return "\n".join(f"{title}\n{body}" if body else title for title, body in sections)


# --- the analyst prompt ----------------------------------------------------------------------------------------


def prompt_values(data: ReportData, local: LocalTime) -> dict[str, str]:
    return {
        "date": data.period_text,
        "timezone": data.timezone,
        "pnl_by_bot": pnl_text(data),
        "total_pnl": money(data.total_pnl),
        "fees": money(data.fees, sign=False),
        "trade_count": str(len(data.trades)),
        "trades": trades_text(data, local),
        "positions": positions_text(data),
        "halts": halts_text(data, local),
        "blocked": blocked_text(data),
        "guards": guards_text(data),
        "broker_errors": errors_text(data),
        "runs": runs_text(data, local),
    }


PLACEHOLDER = re.compile(r"\{([a-z_]+)\}")


def fill_prompt(data: ReportData, local: LocalTime, template: Path | None = None) -> str:
    """The template with each {name} it uses replaced by the period's figures. A placeholder the report does
    not know stays as written, so a typo shows in the output instead of failing."""
    text = (template or PROMPT_FILE).read_text(encoding="utf-8")
    values = prompt_values(data, local)
    return PLACEHOLDER.sub(lambda m: values.get(m.group(1), m.group(0)), text)


# --- HTML ------------------------------------------------------------------------------------------------------


def _table(head: list[str], rows: list[list[Any]], empty: str = "none") -> str:
    """`empty`: what no row means (for a section read from the log, "unknown" when there is no log)."""
    if not rows:
        return f"<p>{html.escape(empty)}</p>"
    th = "".join(f"<th>{html.escape(h)}</th>" for h in head)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><thead><tr>{th}</tr></thead><tbody>{body}</tbody></table>"


def equity_figure_html(data: ReportData, local: LocalTime) -> str:
    """The equity curve as a plotly figure with plotly.js inlined: the file opens offline, years later. Times
    are given as local wall-clock text (plotly.js does not read UTC offsets), the zone named on the axis."""
    import plotly.graph_objects as go  # type: ignore[import-untyped]

    def wall(when: datetime) -> str:
        return when.astimezone(local.tz).strftime("%Y-%m-%d %H:%M:%S")

    figure = go.Figure()
    start = min((t.opened_at for t in data.trades), default=None)
    for name, points in data.equity_curve().items():
        xs = [wall(start or points[0][0])] + [wall(at) for at, _ in points]
        ys = [0.0] + [v for _, v in points]
        width = 3 if name == "total" else 1.5
        figure.add_trace(go.Scatter(x=xs, y=ys, mode="lines+markers", line_shape="hv", name=name, line={"width": width}))
    figure.update_layout(
        title=f"Realized P&L of closed trades, USD ({data.period_text})",
        xaxis_title=f"time ({data.timezone})",
        yaxis_title="USD",
        template="plotly_white",
        height=420,
    )
    return str(figure.to_html(full_html=False, include_plotlyjs=True))


def render_html(data: ReportData, local: LocalTime) -> str:
    pnl_rows = [[bot, money(pnl)] for bot, pnl in data.pnl_by_bot.items()] + [["total", money(data.total_pnl)]]
    day_rows = [
        [day, bot, money(v["realized"]), int(v["trades"]), money(v["fees"], sign=False)]
        for day, bots in data.days.items()
        for bot, v in bots.items()
    ]
    trade_rows = [
        [t.bot_id, t.symbol, local(t.opened_at), local(t.closed_at), number(t.qty), f"{t.entry_price:.4f}", f"{t.exit_price:.4f}",
         money(t.pnl), money(t.fees, sign=False), t.exit_trigger]
        for t in data.trades
    ]  # fmt: skip
    position_rows = [[p.bot_id, p.symbol, number(p.qty), price(p.avg_entry_price), local(p.opened_at)] for p in data.positions]
    halt_rows = [
        [h["scope"], local(datetime.fromisoformat(h["started_at"])), _halt_end(h, local), h["reason"]] for h in data.halts
    ]
    blocked_rows = [[b.check, b.bot, b.entries_blocked, b.began_failing, _duration(b.seconds_failing)] for b in data.blocked]
    in_force = "".join(f'<p class="halt">{html.escape(line)}</p>' for line in in_force_lines(data.in_force, local))
    gaps = coverage_gaps(data, local)  # what an empty table of the log's means: "none" only from a log that vouches
    logged = f"unknown: {'; '.join(gaps)}" if gaps else "none"
    partial = f"The log cannot vouch for the whole period ({'; '.join(gaps)}): the counts below are at least these."
    sections = [
        f"<h1>Trading Hydra report {html.escape(data.period_text)}</h1>",
        f"<p>{html.escape(_sentence(data.zone_text))}. Total realized P&amp;L <b>{money(data.total_pnl)} USD</b>, fees "
        f"{money(data.fees, sign=False)}, {len(data.trades)} trades, {len(data.halts)} halts.</p>",
        in_force,
        "<h2>Equity curve</h2>",
        "<p>Realized P&amp;L of closed trades over time, from 0 at the start of the period; it moves when a trade closes.</p>",
        equity_figure_html(data, local),
        "<h2>P&amp;L by bot</h2>",
        _table(["bot", "realized USD"], pnl_rows),
        _table(["day", "bot", "realized USD", "trades", "fees"], day_rows),
        "<h2>Trades</h2>",
        _table(["bot", "symbol", "opened", "closed", "qty", "entry", "exit", "P&L", "fees", "exit trigger"], trade_rows),
        f"<h2>Open positions now{html.escape(positions_at(data, local))}</h2>",
        _table(["bot", "symbol", "qty", "avg entry", "opened"], position_rows),
        "<h2>Halts</h2>",
        _table(["scope", "started", "ended", "reason"], halt_rows),
        "<h2>Entries blocked, by check</h2>",
        f"<p>{html.escape(log_begins_text(data, local).strip())}</p>" if data.log_begins else "",
        f"<p>{html.escape(skipped_text(data).strip())}</p>" if data.lines_skipped else "",
        f"<p>{html.escape(partial)}</p>" if gaps and data.log_found else "",
        _table(["check", "bot", "entries blocked", "began failing", "time failing"], blocked_rows, logged),
        "<h2>Guards that held in fired transitions</h2>",
        _table(["machine", "guard", "held"], [list(g) for g in data.guards], logged),
        _table(["machine", "trigger", "fired"], [list(t) for t in data.triggers], logged),
        "<h2>Broker errors</h2>",
        _table(["operation: reason", "count"], [list(e) for e in data.broker_errors], logged),
        "<h2>Runs ended</h2>",
        _table(
            ["ended", "reason", "ticks", "equity"],
            [[local(local.parse_utc(str(r["ts"]))), r.get("reason"), _ticks_text(r), _equity_text(r)] for r in data.runs],
            logged,
        ),
    ]
    style = (
        "body{font-family:system-ui,sans-serif;margin:2em;color:#222}table{border-collapse:collapse;margin:0.5em 0 1.5em}"
        "td,th{border:1px solid #ccc;padding:3px 8px;text-align:left;font-size:0.9em}th{background:#f3f3f3}"
        ".halt{color:#b00;font-weight:bold}"
    )
    return (
        f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>Trading Hydra {html.escape(data.period_text)}'
        f"</title><style>{style}</style></head><body>\n" + "\n".join(sections) + "\n</body></html>\n"
    )


def _sentence(text: str) -> str:
    """`text` begun with a capital, the rest as written: str.capitalize() lowered every other letter, and a zone read
    "america/los_angeles", which names no zone."""
    return text[:1].upper() + text[1:]


def _halt_end(h: dict[str, Any], local: LocalTime) -> str:
    if h["ended_at"]:
        return local(datetime.fromisoformat(h["ended_at"]))
    if h["in_force"]:
        return "in force"
    return local(datetime.fromisoformat(h["until"])) + " (cooloff ran out)"
