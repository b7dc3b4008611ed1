"""`python -m engine serve`: the engine's state as a live web page on 127.0.0.1, and the same as JSON.

Why it is built this way:
- Standard library only (http.server's ThreadingHTTPServer): the page must work from a fresh clone with no web
  framework, and a browser on the operator's machine is all it needs.
- It reads the same records as `status`, `why` and `report` (SQLite in WAL mode, so reading never stands in the
  way of a running engine) and writes nothing, except through the halt and resume buttons, which call the very
  functions behind `python -m engine halt` / `resume` (engine/trading/runner.py), so a halt from the page is
  the same record, the same log event, and survives a restart the same way.
- The page is one static HTML document whose inline script polls `/api/status` every few seconds and builds the
  view with `textContent` only (nothing from the state file is ever parsed as HTML). No script is downloaded:
  Mermaid.js is megabytes, so each machine is shown as its transition table with the current state highlighted,
  and its Mermaid text (engine/machines/render.py, the same as `diagram KIND --bot BOT`) is there to copy.
- A token (HYDRA_SERVE_TOKEN) guards what must not be open: without it the server refuses a non-loopback bind,
  reads on a non-loopback bind need it, and halt/resume always need it (`Authorization: Bearer TOKEN`; a header
  a cross-site form cannot send). On a loopback bind the Host header must name a loopback address, so a web page
  elsewhere cannot read the state through DNS rebinding.
- Every time is shown in `system.timezone` (engine/operator/local.py), like every other command.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import hmac
import io
import ipaddress
import json
import re
import socket
import sys
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from engine.core import jsontext
from engine.core.journal import MIN_SECRET_LENGTH, Secrets
from engine.core.money import cents, total
from engine.core.store import (
    OPERATOR_WAIT_SECONDS,
    SYSTEM_SCOPE,
    StateFileError,
    StateStore,
    TradeRow,
    cut_to_nothing,
)
from engine.core.terminal_text import one_line
from engine.machines import render
from engine.machines.spec import MachineSpec
from engine.operator.connections import DEADLINE_SECONDS, MAX_CONNECTIONS, ConnectionSlots, DeadlineReader, answer_raw
from engine.operator.local import LocalTime
from engine.paths import PathKind, path_kind
from engine.validate import Report

TOKEN_ENV = "HYDRA_SERVE_TOKEN"
DEFAULT_PORT = 8766
REFRESH_SECONDS = 3
MAX_BODY = 16 * 1024  # a halt reason, not an upload


class ServeRefused(Exception):
    """The server must not start as asked (a non-loopback bind without a token): exit 2."""


def is_loopback(host: str) -> bool:
    """Whether a bind address reaches this machine only. A name other than localhost is not trusted to be one."""
    if host.strip().lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


MIN_TOKEN_CHARS = 16  # a token guarding a network bind: `secrets.token_urlsafe(24)` gives 32


def check_bind(host: str, token: str | None) -> None:
    """Refuse a bind that would show the account to the network without a token, or behind one short enough to
    guess: the token also lets whoever holds it halt and resume the engine (`/api/halt`, `/api/resume`), and a
    five-character one served them to the network. On any bind, a token no header carries as typed is refused:
    the server reads a header as Latin-1, a browser sends none outside it, and curl sends UTF-8, so a token
    outside printable ASCII was answered 401 though right, and the buttons could never work."""
    if token and not (token.isascii() and token.isprintable()):
        raise ServeRefused(
            f"{TOKEN_ENV} must be printable ASCII (no accented letters, symbols such as the euro sign, or control "
            "characters): an HTTP header cannot carry it as typed (e.g. export HYDRA_SERVE_TOKEN=$(python3 -c 'import "
            "secrets; print(secrets.token_urlsafe(24))'))"
        )
    if not is_loopback(host) and token and len(token) < MIN_TOKEN_CHARS:
        raise ServeRefused(
            f"refusing to serve on {host}: {TOKEN_ENV} has {len(token)} characters, under {MIN_TOKEN_CHARS}: a token "
            "guarding the network must not be guessable (e.g. export HYDRA_SERVE_TOKEN=$(python3 -c 'import secrets; "
            "print(secrets.token_urlsafe(24))'))"
        )
    if not is_loopback(host) and not token:
        raise ServeRefused(
            f"refusing to serve on {host}: a non-loopback address needs a token; set {TOKEN_ENV} in the environment "
            "(e.g. export HYDRA_SERVE_TOKEN=$(python3 -c 'import secrets; print(secrets.token_urlsafe(24))')) "
            "or serve on 127.0.0.1"
        )


# --- the record ------------------------------------------------------------------------------------------------


def _diagram(spec: MachineSpec, current: str) -> dict[str, Any]:
    """A machine as data the page draws as a table: its states, its transitions in the order they are tried,
    and its Mermaid text with the current state highlighted."""
    return {
        "initial": spec.initial,
        "states": [{"name": s.name, "description": s.description} for s in spec.states.values()],
        "transitions": [
            {"from": state, "trigger": t.trigger, "when": t.guard_text, "to": t.dest, "actions": list(t.actions)}
            for state in spec.states
            for t in spec.from_state(state)
        ],
        "mermaid": render.mermaid(spec, current),
    }


def _preflight(store: StateStore, report: Report, bots: list[str], local: LocalTime, now: datetime) -> dict[str, Any]:
    """Each bot's preflight at the last tick, from `why`'s record (the facts saved in that tick's transaction)."""
    from engine.operator.why import WhyError, explain

    out: dict[str, Any] = {}
    for bot in bots:
        try:
            record = explain(store, report, bot, now)
        except WhyError as exc:
            out[bot] = {"error": str(exc), "checks": [], "failed": [], "blocked_entry": None, "tick": None}
            continue
        out[bot] = {
            "error": None,
            "tick": local(datetime.fromisoformat(record["tick"])),
            "checks": [{"name": c["name"], "ok": bool(c["ok"]), "error": c["error"]} for c in record["preflight"]],
            "failed": record["preflight_failed"],
            "blocked_entry": record["blocked_entry"]["reasons"] if record["blocked_entry"] else None,
            "unsized_signal": record["unsized_signal"],
        }
    return out


def _equity(store: StateStore, day: Any, local: LocalTime) -> dict[str, list[tuple[str, float]]]:
    """Today's cumulative realized P&L per bot and in total: the report's equity curve (ReportData.equity_curve),
    built from the trades table alone; the log is not read on every refresh."""
    from engine.operator.report import ReportData

    data = ReportData(first=day, last=day, timezone=local.name, trades=store.trades(since=day, until=day), days={}, halts=[],
                      in_force=[], blocked=[], guards=[], triggers=[], broker_errors=[], runs=[], log=Path())  # fmt: skip
    return {name: [(local(at), value) for at, value in points] for name, points in data.equity_curve().items()}


def _trade(t: TradeRow, local: LocalTime) -> dict[str, Any]:
    return {"bot": t.bot_id, "symbol": t.symbol, "opened_at": local(t.opened_at), "closed_at": local(t.closed_at),
            "qty": t.qty, "entry_price": t.entry_price, "exit_price": t.exit_price, "pnl": cents(t.pnl),
            "fees": cents(t.fees), "exit_trigger": t.exit_trigger}  # fmt: skip


def status_record(store: StateStore | None, report: Report, now: datetime, local: LocalTime) -> dict[str, Any]:
    """Everything the page shows, as plain JSON: machines (shown halted as soon as a halt is in force, as `status`
    does), their diagrams, the halts in force, positions by bot, today's trades and P&L, each bot's last preflight,
    and today's equity curve. `store` is None before anything has run.

    All of it is read in one read transaction (`StateStore.read_snapshot`): read table by table, a tick committing
    in between (a kill switch's halt and the system machine's move to halted are one commit) gave "not halted"
    beside a system machine halted. `stale` (with `tick_age_seconds`, measured from `last_tick` to `as_of`, and
    `stale_after_seconds`, `health`'s default max age) says a real-time state whose engine is stuck or stopped, as
    `status` and `why` say it: without it the page showed such a state as a green "not halted", as if current."""
    from engine.trading.runner import max_tick_age

    assert report.config is not None
    generated = datetime.now(timezone.utc)
    max_age = max_tick_age(report.config.settings.runner.loop_interval_seconds)
    record: dict[str, Any] = {
        "generated_at": local(generated),
        "timezone": local.name,
        "refresh_seconds": REFRESH_SECONDS,
        "has_state": store is not None,
        "stale_after_seconds": max_age,
    }
    if store is None:
        return {**record, "as_of": local(now), "simulated": False, "machines": [], "halts": [], "halted": False,
                "positions": {}, "unmanaged": [], "today": None, "preflight": {}, "equity": {}, "last_tick": None,
                "tick_age_seconds": None, "stale": False, "engine_pid": None}  # fmt: skip
    with store.read_snapshot():
        return {**record, **_state_record(store, report, now, local, max_age)}


def _state_record(store: StateStore, report: Report, now: datetime, local: LocalTime, max_age: float) -> dict[str, Any]:
    """`status_record`'s reads of the state file, inside its read snapshot."""
    from engine.config.checks import trading_bots
    from engine.operator.summary import halt_effect, halts_in_force, unmanaged_lines
    from engine.trading.runner import SYSTEM_HALT_NOTE, halt_over_note, is_stale, last_tick, running_pid, state_now

    assert report.config is not None
    now, simulated = state_now(store, now)
    live = halts_in_force(store, now)
    halted = any(h.scope == SYSTEM_SCOPE for h in live)
    moving = [h for h in live if not h.pause]  # a bot's pause leaves its machine as it is (as `status` says)
    machines = []
    for saved in store.machine_states():
        scope = SYSTEM_SCOPE if saved.kind == "system" else saved.bot_id
        halt = next((h for h in reversed(moving) if h.scope == scope), None)
        pending = halt is not None and saved.state != "halted"
        over = saved.state == "halted" and not any(h.scope in (scope, SYSTEM_SCOPE) for h in moving)  # as `status` says
        # a bot saved armed while the system is halted opens nothing (the risk gate), as `status` says beside it
        opens_nothing = halted and not pending and saved.state != "halted" and saved.kind not in ("system", "portfolio")
        spec = report.machines.get(saved.kind)
        machines.append(
            {
                "kind": saved.kind,
                "bot": saved.bot_id,
                "state": "halted" if pending else saved.state,
                "saved_state": saved.state,
                "since": local(halt.started_at if pending and halt is not None else saved.since),
                "moves_at_next_tick": pending,
                "note": halt_over_note(saved.kind, saved.bot_id) if over else (SYSTEM_HALT_NOTE if opens_nothing else None),
                "diagram": _diagram(spec, saved.state) if spec is not None else None,
            }
        )
    positions: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for p in store.positions():
        positions[p.bot_id].append({"symbol": p.symbol, "qty": p.qty, "avg_entry_price": p.avg_entry_price,
                                    "opened_at": local(p.opened_at)})  # fmt: skip
    day = local.day(now)
    trades = store.trades(since=day, until=day)
    realized = {bot: cents(pnl) for bot, pnl in store.realized_pnl(day).items()}
    bots = [bot.bot_id for _path, bot in trading_bots(report.config.bots) if bot.enabled]  # a disabled bot never ticks
    tick = last_tick(store, now)
    return {
        "as_of": local(now),
        "simulated": simulated,
        "last_tick": local(tick.last) if tick is not None else None,
        "tick_age_seconds": round(tick.seconds) if tick is not None and not tick.simulated else None,
        "stale": is_stale(tick, max_age),
        "engine_pid": running_pid(store.path),
        "halted": halted,
        "halts": [
            {"scope": h.scope, "reason": h.reason, "since": local(h.started_at), "until": local(h.until) if h.until else None,
             "flatten": h.flatten, "effect": halt_effect(h.scope, h.flatten, h.conditions)}
            for h in live
        ],
        "machines": machines,
        "positions": dict(positions),
        "unmanaged": unmanaged_lines(store, report.config.bots),
        "today": {
            "day": day.isoformat(),
            "trades": [_trade(t, local) for t in trades],
            "pnl_by_bot": realized,
            "total_pnl": total(realized.values()),
            "fees": cents(sum(t.fees for t in trades)),
        },
        "preflight": _preflight(store, report, bots, local, now),
        "equity": _equity(store, day, local),
    }


# --- the server ------------------------------------------------------------------------------------------------


@dataclass
class StatusApp:
    """What the handlers share: the validated project, the state and log paths, the token, one SQLite connection
    (opened once the state file exists, used under a lock: sqlite3 connections are not for concurrent threads)."""

    report: Report
    state_db: Path
    log: Path
    local: LocalTime
    token: str | None
    loopback: bool
    secrets: tuple[str, ...] = ()  # masked in what the buttons write, as the engine's journal masks them
    make_folder: bool = False  # the Halt button may make the state file's folder: settings.yaml's own path only

    def __post_init__(self) -> None:
        self.lock = threading.Lock()
        self._store: StateStore | None = None
        self._identity: tuple[int, int] | None = None  # (device, inode) of the file _store has open
        self._gone = False  # a file was read, then disappeared: said until another appears

    def store(self, create: bool = False) -> StateStore | None:
        """The state file, never created by reading: a page opened before the first run shows 'no state yet'.

        Checked at every poll (a stat or two): a connection follows the file it opened, not the path, so without this
        a state file deleted, moved away or replaced (a fresh one for a new account, one restored from a backup)
        went on being shown, halts and all, as if it were current. A file replaced is opened again; one gone
        after it was read, or a path that is not a regular file, is an error the page shows instead of data.
        An empty file is nothing saved, as validation reads it: a read never opens it (SQLite would write a new
        database into it)."""
        try:
            found = path_kind(self.state_db)
            info = self.state_db.stat() if found is PathKind.FILE else None  # its identity
        except FileNotFoundError:  # gone between the two looks: as if it had not been there
            found, info = PathKind.NOTHING, None
        except OSError as exc:
            raise StateFileError(self.state_db, f"cannot be looked at ({exc.strerror or exc})", runtime=True) from None
        if not found.absent and found is not PathKind.FILE:
            self._forget()
            kind = "a folder" if found is PathKind.FOLDER else "not a regular file"
            raise StateFileError(self.state_db, f"is {kind}, not a state file", runtime=False)
        if info is not None and info.st_size == 0:
            cut = cut_to_nothing(self.state_db)
            if cut is not None:  # never "no state yet", nor a halt written over it (`StateStore`'s open refuses it too)
                self._forget()
                raise StateFileError(self.state_db, cut, runtime=False)
            if not create:  # holds nothing; opened, SQLite would write into it
                info = None
        identity = (info.st_dev, info.st_ino) if info is not None else None
        if self._store is not None and identity != self._identity:
            gone = identity is None
            self._forget()
            if gone and not create:
                self._gone = True
        if identity is None and not create:
            if self._gone:
                raise StateFileError(self.state_db, "was read before but is gone now (moved or deleted)", runtime=True)
            return None
        if self._store is None:  # halt and resume wait for a tick as long as the command line's do
            # not made in a folder a --state-db names that does not exist: a halt there is read by no engine
            self._store = StateStore(self.state_db, busy_wait_seconds=OPERATOR_WAIT_SECONDS, make_folder=self.make_folder)
            after = self.state_db.stat()
            self._identity, self._gone = (after.st_dev, after.st_ino), False
        return self._store

    def masked(self, value: Any) -> Any:
        """`value` (a JSON answer, a line for stderr) with the keys and the token masked, as the journal masks them:
        what the page shows comes from the state file and the config, which an older engine, another tool or the
        user's own text (a state's description) may have filled with a key, and loopback readers need no token. A
        text holding a secret no mask can stand in for is replaced whole."""
        try:
            secrets = Secrets(self.secrets)
        except ValueError:
            text = json.dumps(value, default=str)
            return "(not shown: it holds a secret)" if any(s in text for s in self.secrets) else value
        return secrets.masked_value(value) if secrets else value

    def status(self) -> dict[str, Any]:
        with self.lock:
            record = status_record(self.store(), self.report, datetime.now(timezone.utc), self.local)
        record["controls"] = self.token is not None
        return record

    def _forget(self) -> None:
        if self._store is not None:
            with contextlib.suppress(Exception):
                self._store.close()
            self._store = None
            self._identity = None

    def change(self, action: str, reason: str) -> dict[str, Any]:
        """Halt or resume through the CLI's own functions, stamped like the CLI stamps them (a simulation's own time),
        waiting as long as the CLI does for a tick's write transaction (the connection's busy wait): with SQLite's
        default 5 s the button failed "database is locked" where `python -m engine halt` went through."""
        from engine.core.clock import ManualClock, SystemClock
        from engine.core.journal import Journal, JournalError
        from engine.trading.runner import never_run, new_state_file, operator_halt, resume_halts, state_now

        with self.lock:
            store = self.store(create=action == "halt")  # a halt may come before the first run; a resume ends none
            if store is None:  # nothing at the path, or an empty file: no halt can be in force, and nothing is made
                return {"ok": True, "message": f"{self.state_db}: no state yet (nothing has run): no halt to end"}
            stamped = ""  # a halt stamped with this machine's clock where the simulation's time cannot be read
            try:
                now, simulated = state_now(store, SystemClock().now())
            except StateFileError as exc:
                # A halt with no `until` is in force at any time: refused, the button lost the operator's halt on a
                # file that could take it (as `python -m engine halt` did). A resume cannot tell what is in force.
                if action != "halt" or exc.runtime:
                    raise
                now, simulated = SystemClock().now(), False
                stamped = f" (stamped with this machine's clock, {now.isoformat()}: {exc.message})"
            # a halt's log that cannot be opened is said after the halt is in (`Journal`'s unopened_ok)
            journal = Journal(
                self.log, ManualClock(now) if simulated else SystemClock(), self.secrets, unopened_ok=action == "halt"
            )
            reason = journal.scrubbed(reason)  # as recorded: the answer does not show a key back either
            if action != "halt":
                try:
                    resumed = resume_halts(store, journal, now)  # what it ended, read in the transaction that ends them
                finally:
                    journal.close()
                return {"ok": True, "message": resumed.text}
            # The halt is committed before its event is written: in force whatever the log says. A log that cannot
            # take the event (a full disk) was answered "halt failed", shown as "refused", which reads as not halted.
            unlogged: JournalError | None = None
            try:
                operator_halt(store, journal, reason, now)
            except JournalError as exc:
                unlogged = exc
            finally:
                try:
                    journal.close()  # writes the event again, if the log takes it now
                except JournalError as exc:
                    unlogged = exc
                else:
                    unlogged = None
            fresh = f"; warning: {new_state_file(store.path)}" if never_run(store) else ""
            if unlogged is not None:
                return {
                    "ok": True,
                    "message": f"halted: {reason} (until resume){stamped}; the halt IS in force, but its event is NOT in "
                    f"the log ({unlogged.message}){fresh}",
                    "warning": unlogged.message,
                }
            return {"ok": True, "message": f"halted: {reason} (until resume){stamped}{fresh}"}

    def close(self) -> None:
        with self.lock:
            self._forget()


class StatusServer(ThreadingHTTPServer):
    """`deadline_seconds` to read each request whole and `max_connections` served at once, on `clock` (tests set
    them small; engine/operator/connections.py says why both, and why a full server cuts off a slow reader first)."""

    daemon_threads = True  # a browser's kept-alive connection must not hold up Ctrl-C
    request_queue_size = 32  # waiting to be accepted; accepting never waits for a thread

    def handle_error(self, request: Any, client_address: Any) -> None:
        """One line on stderr, never a traceback: a client that went away mid-answer (a closed tab, a timeout) is
        not worth one; anything else is said with its type and message, and the server stays up."""
        error = sys.exc_info()[1]
        if isinstance(error, (ConnectionError, TimeoutError)):
            return
        said = self.app.masked(f"{type(error).__name__}: {one_line(str(error))}")
        sys.stderr.write(f"{client_address[0]}: request failed: {said}\n")

    deadline_seconds = DEADLINE_SECONDS
    max_connections = MAX_CONNECTIONS
    clock: Callable[[], float] = staticmethod(time.monotonic)

    def __init__(self, app: StatusApp, host: str, port: int):
        self.app = app
        self.slots = ConnectionSlots(self.max_connections, self.clock)
        if ":" in host.strip("[]"):
            self.address_family = socket.AF_INET6
        super().__init__((host.strip("[]"), port), StatusHandler)

    def process_request(self, request: Any, client_address: Any) -> None:
        """A thread for the connection if a slot can be had; else 503 at once from this (accepting) thread."""
        if not self.slots.admit(request):
            answer_raw(request, HTTPStatus.SERVICE_UNAVAILABLE, "too many connections: try again in a moment")
            self.shutdown_request(request)
            return
        super().process_request(request, client_address)

    def shutdown_request(self, request: Any) -> None:
        self.slots.release(request)
        super().shutdown_request(request)

    @property
    def url(self) -> str:
        host, port = str(self.server_address[0]), self.server_address[1]
        shown = f"[{host}]" if ":" in host else host
        return f"http://{shown}:{port}/"


class StatusHandler(BaseHTTPRequestHandler):
    server: StatusServer
    server_version = "TradingHydra"
    sys_version = ""
    timeout = 30  # to write an answer; reading the request has the server's deadline (DeadlineReader)

    def setup(self) -> None:
        super().setup()
        self.rfile.close()  # the plain reader, replaced by one with a deadline for the whole request
        self._reader = DeadlineReader(self.connection, self.server.clock)
        self.rfile = io.BufferedReader(self._reader)

    def handle_one_request(self) -> None:
        """One request, read within the deadline; one not read in time is answered 408 (or, if it sent nothing at all,
        like a browser's unused preconnect, closed quietly)."""
        self._reader.deadline = self.server.clock() + self.server.deadline_seconds
        super().handle_one_request()  # which closes the connection on the reader's TimeoutError
        if self._reader.expired and self._reader.received:
            answer_raw(self.connection, HTTPStatus.REQUEST_TIMEOUT,
                       f"the request was not read within {self.server.deadline_seconds:g} s")  # fmt: skip

    def parse_request(self) -> bool:
        ok = super().parse_request()
        if ok and self.command != "POST":  # no body to read: the request is in
            self._read_done()
        return ok

    def _read_done(self) -> None:
        """Reading is over: the connection keeps its slot, and writing the answer has its own timeout."""
        self.server.slots.read_done(self.connection)
        self.connection.settimeout(self.timeout)

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet for the page's polling; halts, resumes and refusals are worth a line, the request line made
        printable (anyone who can reach the port writes it). A connection that timed out before its first request
        line (a browser's preconnect) is logged with no command set yet: quiet too, never an AttributeError."""
        if getattr(self, "command", None) == "POST" or (len(args) > 1 and not str(args[1]).startswith(("2", "3"))):
            sys.stderr.write(f"{self.address_string()} {one_line(self._without_secrets(format % args))}\n")

    def _without_secrets(self, line: str) -> str:
        """A log line without a query string (the server reads none; a token sent as `?token=` instead of the
        page's `#token=`, or by a script, was written to stderr, a service's journal, with its 401) and with the
        token masked wherever else a client put it (a path)."""
        line = re.sub(r"\?[^\s]*", "?...", line)
        token = self.server.app.token
        return str(self.server.app.masked(line.replace(token, "***") if token else line))

    # -- plumbing --

    def _send(self, status: int, body: bytes, content_type: str, extra: dict[str, str] | None = None) -> None:
        self._read_done()  # an answer without the body (refused before it): nothing more is read
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.send_header("X-Content-Type-Options", "nosniff")
        self.send_header("Referrer-Policy", "no-referrer")
        self.send_header("X-Frame-Options", "DENY")
        for name, value in (extra or {}).items():
            self.send_header(name, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _json(self, status: int, payload: Any) -> None:
        """Every answer, the status and every error alike, leaves with the secrets masked (`StatusApp.masked`)."""
        payload = self.server.app.masked(json.loads(json.dumps(payload, default=str)))
        self._send(status, json.dumps(payload).encode(), "application/json; charset=utf-8")

    def _error(self, status: int, message: str) -> None:
        self._json(status, {"ok": False, "error": message})

    def _authorized(self) -> bool:
        token = self.server.app.token
        header = self.headers.get("Authorization", "")
        if token is None or not header.startswith("Bearer "):
            return False
        return hmac.compare_digest(header[len("Bearer ") :].strip().encode(), token.encode())

    def _host_ok(self) -> bool:
        """On a loopback bind, only a loopback Host: a rebinding DNS name pointing at 127.0.0.1 is refused."""
        if not self.server.app.loopback:
            return True
        # Each name the request gives for the host: a second Host header or an absolute request URI's host was
        # not looked at, so `Host: 127.0.0.1` followed by `Host: evil.example` (or `GET http://evil.example/...`)
        # was answered (RFC 9112: more than one Host is a bad request; an absolute URI's host is the one meant)
        hosts = self.headers.get_all("Host") or []
        if len(hosts) != 1:
            return False
        try:
            named = [urlsplit("//" + hosts[0]).hostname or ""]
            target = urlsplit(self.path)
            if target.scheme or target.netloc:
                named.append(target.hostname or "")
        except ValueError:  # not a host at all ("[::1", a bad port): refused like a foreign one
            return False
        return all(is_loopback(host) for host in named)

    # -- routes --

    def do_HEAD(self) -> None:
        self.do_GET()

    def do_GET(self) -> None:
        if not self._host_ok():
            self._error(HTTPStatus.MISDIRECTED_REQUEST, "unexpected Host header")
            return
        path = urlsplit(self.path).path
        if path in ("/", "/index.html"):
            self._send(HTTPStatus.OK, PAGE_BYTES, "text/html; charset=utf-8", {"Content-Security-Policy": PAGE_CSP})
        elif path == "/api/status":
            if not self.server.app.loopback and not self._authorized():
                self._error(HTTPStatus.UNAUTHORIZED, f"this server is not on loopback: send Authorization: Bearer ${TOKEN_ENV}")
                return
            try:
                record = self.server.app.status()
            except StateFileError as exc:  # shown on the page instead of the state, which keeps polling
                self._error(HTTPStatus.SERVICE_UNAVAILABLE, exc.message)
                return
            except Exception as exc:  # one line, never a traceback; the server stays up
                self._error(HTTPStatus.INTERNAL_SERVER_ERROR, f"cannot read the state: {type(exc).__name__}: {exc}")
                return
            self._json(HTTPStatus.OK, record)
        elif path == "/favicon.ico":
            self._send(HTTPStatus.NO_CONTENT, b"", "image/x-icon")
        else:
            self._error(HTTPStatus.NOT_FOUND, f"no such page: {path}")

    def do_POST(self) -> None:
        if not self._host_ok():
            self._error(HTTPStatus.MISDIRECTED_REQUEST, "unexpected Host header")
            return
        path = urlsplit(self.path).path
        if path not in ("/api/halt", "/api/resume"):
            self._error(HTTPStatus.NOT_FOUND, f"no such action: {path}")
            return
        if self.server.app.token is None:
            self._error(HTTPStatus.FORBIDDEN, f"halt and resume are off: start `serve` with {TOKEN_ENV} set to enable them")
            return
        if not self._authorized():
            self._error(HTTPStatus.UNAUTHORIZED, "a valid token is needed: Authorization: Bearer TOKEN")
            return
        if self.headers.get("Transfer-Encoding") is not None:
            # http.server reads no chunked body: Content-Length absent, it was taken for an empty one and the resume
            # done on a body never read (and what was left of it read as the next request)
            self.close_connection = True
            self._error(HTTPStatus.LENGTH_REQUIRED, "a body sent with Transfer-Encoding is not read: send it with "
                        "Content-Length; nothing done")  # fmt: skip
            return
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            length = -1
        if not 0 <= length <= MAX_BODY:
            self._error(HTTPStatus.BAD_REQUEST, "bad Content-Length")
            return
        raw = self.rfile.read(length)
        self._read_done()  # before the halt, which may wait for a tick
        if len(raw) != length:  # the client closed early: what came may parse as JSON, and was acted on
            self._error(HTTPStatus.BAD_REQUEST, f"the body was cut short ({len(raw)} of {length} bytes): nothing done")
            return
        try:
            body = jsontext.loads(raw or b"{}")
        except ValueError:
            self._error(HTTPStatus.BAD_REQUEST, "the body must be JSON")
            return
        given = body.get("reason", "") if isinstance(body, dict) else ""
        action = path.rsplit("/", 1)[1]
        if action == "halt" and not isinstance(given, str):  # str() of null, 5 or a list is no one's reason: "None"
            self._error(HTTPStatus.BAD_REQUEST, "a halt needs a reason (text)")
            return
        reason = given.strip() if isinstance(given, str) else ""
        if action == "halt" and not reason:
            self._error(HTTPStatus.BAD_REQUEST, "a halt needs a reason")
            return
        try:  # JSON carries lone surrogates (\ud800) that SQLite and the log cannot hold: refused as the CLI refuses them
            reason.encode("utf-8")
        except UnicodeEncodeError:
            self._error(HTTPStatus.BAD_REQUEST, "the reason is not UTF-8 text")
            return
        try:
            self._json(HTTPStatus.OK, self.server.app.change(action, reason))
        except Exception as exc:  # a busy or broken state file: the operator must see that it did not happen
            self._error(HTTPStatus.INTERNAL_SERVER_ERROR, f"{action} failed: {type(exc).__name__}: {exc}")


def make_server(
    report: Report,
    state_db: Path,
    log: Path,
    host: str,
    port: int,
    token: str | None,
    secrets: Sequence[str] = (),
    *,
    make_folder: bool = False,
) -> StatusServer:
    """A bound server (OSError if the address is taken), after the token rules (ServeRefused). `secrets`: the
    broker's keys, masked with the page's own token in a halt's reason (on loopback the page, reasons included, is
    read without any token; whoever read the token there could halt and resume). `make_folder`: the state path is
    settings.yaml's own, whose folder a halt before the first run may make (as that run would)."""
    assert report.config is not None
    token = token.strip() if token else None
    check_bind(host, token)
    masked = tuple(dict.fromkeys(s for s in (*secrets, token or "") if len(s) >= MIN_SECRET_LENGTH))
    app = StatusApp(report, state_db, log, LocalTime(report.config.settings.system.timezone), token or None, is_loopback(host),
                    masked, make_folder)  # fmt: skip
    return StatusServer(app, host, port)


# --- the page --------------------------------------------------------------------------------------------------

STYLE = """
body{font-family:system-ui,sans-serif;margin:1.2em 2em;color:#222;background:#fafafa}
h1{margin:0 0 .2em}h2{margin:1.2em 0 .4em;border-bottom:1px solid #ddd}
table{border-collapse:collapse;margin:.3em 0 1em;background:#fff}
td,th{border:1px solid #ccc;padding:2px 8px;text-align:left;font-size:.88em;vertical-align:top}
th{background:#f0f0f0}.num{text-align:right;font-variant-numeric:tabular-nums}
#banner{padding:.6em 1em;border-radius:6px;font-weight:bold;margin:.6em 0}
.ok{background:#e3f5e1;color:#1b5e20}.halted{background:#ffe0e0;color:#b00020}.unknown,.stale{background:#ffe9c7;color:#8a4b00}
.current,.current td{background:#ffd54f}.from-current td{background:#fff3c4}
.pass{color:#1b5e20}.fail{color:#b00020;font-weight:bold}.muted{color:#777}
.machine{display:inline-block;vertical-align:top;margin:0 1.5em 1em 0}
details pre{background:#fff;border:1px solid #ccc;padding:.5em;max-width:60em;overflow:auto;font-size:.8em}
#controls{background:#fff;border:1px solid #ccc;padding:.6em 1em;border-radius:6px;margin:.6em 0}
#controls input{margin-right:.5em}#error{color:#b00020}
"""

SCRIPT = """
"use strict";
const $ = (id) => document.getElementById(id);
const token = () => sessionStorage.getItem("hydraToken") || "";
function el(tag, text, cls) {
  const e = document.createElement(tag);
  if (text !== undefined && text !== null) e.textContent = String(text);
  if (cls) e.className = cls;
  return e;
}
function table(head, rows, rowClass) {
  if (!rows.length) return el("p", "none", "muted");
  const t = el("table"), h = el("tr");
  head.forEach((c) => h.appendChild(el("th", c)));
  t.appendChild(h);
  rows.forEach((r, i) => {
    const tr = el("tr");
    if (rowClass) tr.className = rowClass(i) || "";
    r.forEach((c) => {
      if (c instanceof Node) { const td = el("td"); td.appendChild(c); tr.appendChild(td); }
      else tr.appendChild(el("td", c, typeof c === "number" ? "num" : ""));
    });
    t.appendChild(tr);
  });
  return t;
}
// as engine/operator/summary.py's money(): a figure that is not 0 never reads 0.00 or -0.00
function money(v, sign = true) {
  const a = Math.abs(v);
  if (a < 1e-9) return (sign ? "+" : "") + "0.00";
  const text = v.toFixed(a >= 0.005 ? 2 : Math.min(9, -Math.floor(Math.log10(a))));
  return (sign && v > 0 ? "+" : "") + text;
}
function fill(id, ...nodes) { const box = $(id); box.replaceChildren(...nodes); }
function machine(m) {
  const box = el("div", null, "machine");
  box.dataset.machine = m.kind + ":" + m.bot;
  const title = el("h3", m.kind + " " + m.bot + ": " + m.state);
  box.appendChild(title);
  const note = m.moves_at_next_tick ? " (a halt is in force; the machine, " + m.saved_state + ", moves at its next tick)"
    : (m.note ? " (" + m.note + ")" : "");
  box.appendChild(el("div", "since " + m.since + note, "muted"));
  if (!m.diagram) return box;
  const d = m.diagram;
  box.appendChild(table(["state", "description"], d.states.map((s) => [s.name, s.description]),
    (i) => d.states[i].name === m.state ? "current" : ""));
  box.appendChild(table(["from", "trigger", "guards", "to", "actions"],
    d.transitions.map((t) => [t.from, t.trigger, t.when || "(always)", t.to, t.actions.join(", ") || "-"]),
    (i) => d.transitions[i].from === m.saved_state ? "from-current" : ""));
  const det = el("details");
  det.appendChild(el("summary", "Mermaid diagram (paste into any Mermaid viewer)"));
  det.appendChild(el("pre", d.mermaid));
  box.appendChild(det);
  return box;
}
function equity(series) {
  const names = Object.keys(series);
  if (!names.length) return el("p", "no trade closed today", "muted");
  const ns = "http://www.w3.org/2000/svg", W = 640, H = 220, P = 40;
  const svg = document.createElementNS(ns, "svg");
  svg.setAttribute("width", W); svg.setAttribute("height", H); svg.setAttribute("role", "img");
  svg.setAttribute("aria-label", "today's realized P&L over time");
  const all = names.flatMap((n) => series[n]);
  const ts = all.map((p) => Date.parse(p[0])), vs = all.map((p) => p[1]).concat([0]);
  const t0 = Math.min(...ts), t1 = Math.max(...ts) || t0 + 1, v0 = Math.min(...vs), v1 = Math.max(...vs);
  const x = (t) => P + (W - 2 * P) * (t1 === t0 ? 0.5 : (t - t0) / (t1 - t0));
  const y = (v) => H - P - (H - 2 * P) * (v1 === v0 ? 0.5 : (v - v0) / (v1 - v0));
  const line = (x1, y1, x2, y2, color, width) => {
    const l = document.createElementNS(ns, "line");
    const attrs = { x1, y1, x2, y2, stroke: color, "stroke-width": width };
    Object.entries(attrs).forEach(([k, v]) => l.setAttribute(k, v));
    svg.appendChild(l);
  };
  line(P, y(0), W - P, y(0), "#999", 1);
  const colors = ["#1565c0", "#2e7d32", "#6a1b9a", "#ef6c00", "#00838f", "#ad1457"];
  names.forEach((n, i) => {
    let pts = [[P, y(0)]];
    series[n].forEach((p) => { const px = x(Date.parse(p[0])); pts.push([px, pts[pts.length - 1][1]], [px, y(p[1])]); });
    pts.push([W - P, pts[pts.length - 1][1]]);  // each line holds its last value to the latest trade
    const pl = document.createElementNS(ns, "polyline");
    pl.setAttribute("points", pts.map((p) => p.join(",")).join(" "));
    pl.setAttribute("fill", "none");
    pl.setAttribute("stroke", n === "total" ? "#000" : colors[i % colors.length]);
    pl.setAttribute("stroke-width", n === "total" ? 3 : 1.5);
    svg.appendChild(pl);
    const label = document.createElementNS(ns, "text");
    label.setAttribute("x", W - P + 4); label.setAttribute("y", 14 + 14 * i); label.setAttribute("font-size", 11);
    label.setAttribute("fill", n === "total" ? "#000" : colors[i % colors.length]);
    label.textContent = n + " " + money(series[n][series[n].length - 1][1]);
    svg.appendChild(label);
  });
  [[v1, y(v1)], [v0, y(v0)]].forEach(([v, py]) => {
    const t = document.createElementNS(ns, "text");
    t.setAttribute("x", 2); t.setAttribute("y", py + 4); t.setAttribute("font-size", 10); t.textContent = money(v);
    svg.appendChild(t);
  });
  const box = el("div");
  box.appendChild(svg);
  box.style.overflowX = "auto";
  svg.setAttribute("width", W + 160);
  return box;
}
function show(s) {
  const engine = s.engine_pid ? "; engine running (pid " + s.engine_pid + ")" : "; no engine running";
  $("asof").textContent = "as of " + s.as_of + (s.simulated ? " (simulated clock)" : "") + "; times in " + s.timezone
    + "; last tick " + (s.last_tick || "none") + engine;
  const banner = $("banner");
  // an engine stuck or stopped: what follows is its last tick's state, never shown green as if current
  const stale = s.stale ? "STALE: last tick " + s.last_tick + ", " + s.tick_age_seconds + " s before, older than "
    + s.stale_after_seconds + " s (the engine is stuck or not running); as of that tick: " : "";
  if (!s.has_state) { banner.textContent = "no state yet: nothing has run"; banner.className = "ok"; }
  else if (s.halts.length) {
    banner.textContent = stale + "HALTED: " + s.halts.map((h) => (h.scope === "system" ? "the system" : "bot " + h.scope)
      + " since " + h.since + ": " + h.reason + " (until " + (h.until || "resume") + "): " + h.effect).join("; ");
    banner.className = "halted";
  } else { banner.textContent = stale + "not halted"; banner.className = s.stale ? "stale" : "ok"; }
  fill("machines", ...s.machines.map(machine));
  const pos = [];
  Object.entries(s.positions).forEach(([bot, ps]) => ps.forEach(
    (p) => pos.push([bot, p.symbol, p.qty, p.avg_entry_price, p.opened_at])));
  fill("positions", table(["bot", "symbol", "qty", "avg entry", "opened"], pos));
  $("unmanaged").textContent = s.unmanaged.join("; ");
  $("unmanaged").className = s.unmanaged.length ? "halted" : "";
  const today = s.today;
  if (today) {
    $("day").textContent = today.day;
    const pnl = Object.entries(today.pnl_by_bot).map(([b, v]) => [b, money(v)]).concat([["total", money(today.total_pnl)]]);
    const count = "fees " + money(today.fees, false) + ", " + today.trades.length + " trades";
    fill("pnl", table(["bot", "realized P&L USD"], pnl), el("p", count));
    fill("trades", table(["bot", "symbol", "opened", "closed", "qty", "entry", "exit", "P&L", "fees", "exit trigger"],
      today.trades.map((t) => [t.bot, t.symbol, t.opened_at, t.closed_at, t.qty, t.entry_price, t.exit_price, money(t.pnl),
        money(t.fees, false), t.exit_trigger])));
  } else { fill("pnl", el("p", "none", "muted")); fill("trades", el("p", "none", "muted")); }
  const pre = [];
  Object.entries(s.preflight).forEach(([bot, p]) => {
    if (p.error) { pre.push(el("p", bot + ": " + p.error, "muted")); return; }
    pre.push(el("h3", bot + " (tick " + p.tick + ")"));
    const result = (c) => el("span", c.ok ? "ok" : (c.error ? "ERROR " + c.error : "FAILED"), c.ok ? "pass" : "fail");
    pre.push(table(["check", "result"], p.checks.map((c) => [c.name, result(c)])));
    if (p.blocked_entry) pre.push(el("p", "last entry refused: " + p.blocked_entry.join("; "), "fail"));
    if (p.unsized_signal) pre.push(el("p", "signal fired but not sized: " + p.unsized_signal, "fail"));
  });
  fill("preflight", ...(pre.length ? pre : [el("p", "no tick yet", "muted")]));
  fill("equity", equity(s.equity));
  $("controls").hidden = !s.controls;
}
async function refresh() {
  try {
    const headers = token() ? { Authorization: "Bearer " + token() } : {};
    const r = await fetch("/api/status", { headers, cache: "no-store" });
    const body = await r.json();
    if (!r.ok) throw new Error(body.error || r.statusText);
    show(body);
    $("error").textContent = "";
    document.body.dataset.loaded = "yes";
  } catch (e) { $("error").textContent = "refresh failed: " + e.message; unknown(e.message); }
}
// What the page showed before is no longer known to be true: it is taken away, never left up as if current.
function unknown(why) {
  $("banner").textContent = "STATE UNKNOWN: " + why + " (nothing is shown until the state can be read again)";
  $("banner").className = "unknown";
  $("asof").textContent = "as of: unknown";
  $("day").textContent = "-";
  ["pnl", "equity", "positions", "preflight", "trades", "machines"].forEach(
    (id) => fill(id, el("p", "not shown: the state cannot be read", "muted")));
  document.body.dataset.loaded = "error";
}
async function act(action) {
  const reason = $("reason").value.trim();
  if (action === "halt" && !reason) { $("result").textContent = "a halt needs a reason"; return; }
  sessionStorage.setItem("hydraToken", $("token").value.trim() || token());
  $("result").textContent = action + ": sent, waiting for the answer…";  // a halt may wait for a tick to commit
  $("result").className = "";
  let body;
  try {
    const r = await fetch("/api/" + action, { method: "POST", headers: { Authorization: "Bearer " + token(),
      "Content-Type": "application/json" }, body: JSON.stringify({ reason }) });
    body = await r.json();
  } catch (e) {  // never the last action's words: whether this one went in is unknown
    $("result").textContent = action + ": no answer from the server (" + e.message + "): it may or may not be "
      + "recorded; check with `python -m engine status`"
      + (action === "halt" ? ", and halt there (`python -m engine halt --reason ...`)" : "");
    $("result").className = "fail";
    return;
  }
  $("result").textContent = body.ok ? body.message : "refused: " + body.error;
  $("result").className = body.ok && !body.warning ? "" : "fail";  // in force, but its event is not in the log
  refresh();
}
const fromHash = new URLSearchParams(location.hash.slice(1)).get("token");
if (fromHash) { sessionStorage.setItem("hydraToken", fromHash); history.replaceState(null, "", location.pathname); }
$("halt").addEventListener("click", () => act("halt"));
$("resume").addEventListener("click", () => act("resume"));
refresh();
setInterval(refresh, REFRESH_MS);
""".replace("REFRESH_MS", str(REFRESH_SECONDS * 1000))

BODY = """
<h1>Trading Hydra</h1>
<div id="asof" class="muted">loading…</div>
<div id="error"></div>
<div id="banner">loading…</div>
<div id="controls" hidden>
  <label>token <input id="token" type="password" autocomplete="off" size="24"></label>
  <label>reason <input id="reason" size="30" placeholder="why halt"></label>
  <button id="halt" type="button">Halt</button> <button id="resume" type="button">Resume</button>
  <span id="result"></span>
</div>
<noscript>This page needs JavaScript; the same data is at <a href="/api/status">/api/status</a>.</noscript>
<h2>Today (<span id="day">-</span>): P&amp;L</h2><div id="pnl"></div>
<h2>Equity curve (realized P&amp;L of today's closed trades)</h2><div id="equity"></div>
<h2>Positions by bot</h2><div id="unmanaged"></div><div id="positions"></div>
<h2>Preflight at the last tick</h2><div id="preflight"></div>
<h2>Today's trades</h2><div id="trades"></div>
<h2>Machines</h2><div id="machines"></div>
"""


def _hash(text: str) -> str:
    return "'sha256-" + base64.b64encode(hashlib.sha256(text.encode()).digest()).decode() + "'"


PAGE = (
    '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>Trading Hydra status</title>'
    '<meta name="viewport" content="width=device-width, initial-scale=1">'
    f"<style>{STYLE}</style></head><body>{BODY}<script>{SCRIPT}</script></body></html>\n"
)
PAGE_BYTES = PAGE.encode()
# Only this page's own inline script and style run: nothing is loaded from anywhere, not even from this server.
PAGE_CSP = (
    f"default-src 'none'; script-src {_hash(SCRIPT)}; style-src {_hash(STYLE)}; connect-src 'self'; img-src 'self'; "
    "base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)
