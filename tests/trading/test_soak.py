"""A seeded fault soak over a trading session: the real Engine, the real Alpaca adapter (alpaca-py) and the emulator
on 127.0.0.1, real SQLite and JSONL, a manual clock; a seeded schedule throws broker faults, odd answers, late and
partial fills, a stray position, operator halts and resumes, and crashes with restarts at random ticks.

After every tick the invariants below are checked; a seed that breaks one names the tick and the invariant, and is
the start of a small deterministic test of its own. The schedule is the seed's alone (no wall-clock time in it), so
a failing seed replays the same faults.

- the tick never raises, and never ends in an exception caught at its boundary (a traceback, not a clear error);
- no entry is POSTed while the system or its bot is halted, while the system is not armed, or in a tick whose
  snapshot failed;
- no client_order_id is POSTed again once the broker has accepted it (but an exit a dead run left, looked up at
  start-up and not found, which recovery sends again by design with the same id: `Soak.resent_by_design`);
- a halt ends only by its cooloff (at or after `until`) or the operator's resume, whatever restarts come between;
  a system halt in force is the system machine's state by the end of the tick after it;
- after MISMATCH_TICKS ticks in a row that read everything (every request answered), with the engine reconciled
  and no system halt in force, the bots' positions in SQLite are the broker's;
- the JSONL log parses line by line and holds no key; it says every halt SQLite holds and no other, and its fills
  of each order add up to what SQLite has filled (a crash included: the dead process's buffer is dropped).
"""

from __future__ import annotations

import contextlib
import random
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from engine.brokers.base import BrokerError, Order, OrderRequest
from engine.brokers.emulator import Emulator, Fault
from engine.brokers.sim import exchange as sim_exchange
from engine.brokers.sim.exchange import SimExchange
from engine.core.clock import ManualClock
from engine.core.journal import Journal
from engine.core.store import SYSTEM_SCOPE, StateStore
from engine.trading.exitbot import MISMATCH_TICKS
from engine.trading.runner import operator_halt, operator_resume
from tests.brokers.conftest import KEY, SECRET, make_api
from tests.conftest import ProjectCopy, load_tool
from tests.trading.conftest import OPEN, Rig, make_rig

fuzzkit: Any = load_tool("fuzzkit")  # tools/fuzzkit.py: what the seeded drivers share

NOT_FOUND = '{"code":40410000,"message":"order not found"}'
RATE_LIMITED = '{"code":42910000,"message":"rate limit exceeded"}'
READS = [
    "/v2/account",
    "/v2/positions",
    "/v2/orders",
    "/v2/clock",
    "/v2/stocks/quotes/latest",
    "/v1beta3/crypto/us/latest/quotes",
    "/v1beta1/options/snapshots",
    "/v2/orders:by_client_order_id",
    "/v2/assets",
]
WRITES = [("/v2/orders", "POST"), ("/v2/orders", "DELETE"), ("/v2/positions", "DELETE")]
FIELDS = {
    "/v2/account": ["cash", "equity", "buying_power", "last_equity", "status", "trading_blocked", "crypto_status",
                    "options_trading_level", "account_blocked", "non_marginable_buying_power"],
    "/v2/positions": ["*.qty", "*.symbol", "*.avg_entry_price", "*.market_value", "*.side", "*.asset_class",
                      "*.qty_available", "*.current_price"],
    "/v2/orders": ["*.status", "*.filled_qty", "*.client_order_id", "*.symbol", "*.side", "*.qty", "*.filled_avg_price",
                   "*.id", "*.type", "*.created_at", "*.notional", "*.limit_price"],
    "/v2/stocks/quotes/latest": ["quotes.*.bp", "quotes.*.ap", "quotes.*.t", "quotes.*.bs"],
    "/v1beta3/crypto/us/latest/quotes": ["quotes.*.bp", "quotes.*.ap", "quotes.*.t"],
    "/v1beta1/options/snapshots": ["snapshots.*.latestQuote.bp", "snapshots.*.latestQuote.ap",
                                   "snapshots.*.greeks.delta", "snapshots.*.latestQuote.t"],
    "/v2/clock": ["is_open", "next_close", "next_open", "timestamp"],
}  # fmt: skip
ODD_VALUES: list[Any] = [None, "abc", [], {}, -1, "NaN", True, 1e308, "", "-0"]
MALFORMED = ["{", "not json", "", "[]", "{}", "null", '{"cash": }', "\x00\x01"]
LIQUIDITY = dict(sim_exchange.LIQUIDITY)  # the simulated exchange's own, restored after a thin spell
STRAYS = [("AAPL", 3.0, 190.0), ("MSFT", 2.0, 400.0), ("SPY", 1.0, 590.0), ("BTC/USD", 0.001, 90_000.0)]


class Crash(BaseException):
    """The process dies here (kill -9): nothing after it runs, no `finally` of the engine's catches it."""


@dataclass
class CrashingAPI:
    """The real AlpacaAPI, with a crash armed at its Nth call (before or after the call reaches the broker)."""

    api: Any
    soak: Soak
    crash_at: int | None = None  # the call number (this tick's) to die at
    crash_after: bool = False
    crash_on: str | None = None  # or at the next call of this method, whichever tick it comes in
    halt_at: int | None = None  # the call (counted from a tick's first) after which the operator halts, elsewhere
    calls: int = 0
    failed_this_tick: bool = False  # some call of this tick failed: the tick proved nothing about the account

    def __getattr__(self, name: str) -> Any:
        target = getattr(self.api, name)
        if not callable(target) or name.startswith("_"):
            return target

        def call(*args: Any, **kwargs: Any) -> Any:
            self.calls += 1
            dying = (self.crash_at is not None and self.calls == self.crash_at) or self.crash_on == name
            if name == "submit_order":
                self.soak.before_post(args[0] if args else kwargs["request"])
            if dying and not self.crash_after:
                raise Crash(f"before {name}")
            try:
                result = target(*args, **kwargs)
            except BrokerError:
                self.failed_this_tick = True
                raise
            if name == "submit_order" and self.soak.hide_next:  # answered, then missing for a while
                self.soak.hide(self.soak.hide_next)
                self.soak.hide_next = 0
            if dying:
                raise Crash(f"after {name}")
            if self.halt_at is not None and self.calls >= self.halt_at:  # the operator halts while the tick runs
                self.halt_at = None
                self.soak.operator_halts(f"soak halt after {name}")
            return result

        return call


@dataclass
class Soak:
    seed: int
    root: Path
    ticks: int
    start: datetime | None = None  # None: drawn from the seed (the open, the morning, the afternoon, the close)
    fault_rate: float = 0.08
    timeouts: bool = True
    violations: list[str] = field(default_factory=list)
    tick_no: int = 0
    suspended: dict[str, int] = field(default_factory=dict)  # exchange order id -> the tick it resumes at
    strays: list[tuple[str, int]] = field(default_factory=list)  # stray symbol, the tick the operator closes it
    notes: list[str] = field(default_factory=list)
    mismatches: dict[str, int] = field(default_factory=dict)  # symbol -> successful ticks in a row it differed
    events: list[dict[str, Any]] = field(default_factory=list)  # the log's, as read so far
    log_tail: Any = None  # fuzzkit.LogTail of the rig's log, from the first check on
    hide_next: int = 0  # hide the next order answered, for this many requests
    thin_until: int | None = None  # the tick a thin spell (partial fills) ends at
    restart_at: tuple[str, int, bool] | None = None  # the coming tick's restart or crash: (kind, call, after it)

    def __post_init__(self) -> None:
        self.rng = random.Random(self.seed)
        self.project = ProjectCopy(self.root / "project")
        if self.start is None:
            minutes = self.rng.choice([0, 0, 10, 60, 180, 300, 375, 385])  # after the open; the close is at 390
            self.start = OPEN + timedelta(minutes=minutes)
        self.clock = ManualClock(self.start)
        self.exchange = SimExchange(self.clock, seed=7)
        self.accepted: set[str] = set()
        real_submit = self.exchange.submit

        def submit(request: OrderRequest) -> Order:
            if request.client_order_id in self.accepted and not self.resent_by_design(request.client_order_id):
                self.fail(f"client_order_id {request.client_order_id} POSTed again after the broker accepted it")
            order = real_submit(request)
            self.accepted.add(request.client_order_id)
            return order

        self.exchange.submit = submit  # type: ignore[assignment,method-assign]

    # --- the parts --------------------------------------------------------------------------------------------

    def fail(self, what: str) -> None:
        self.violations.append(f"seed {self.seed} tick {self.tick_no} ({self.clock.now().isoformat()}): {what}")

    def build(self) -> Rig:
        self.api = CrashingAPI(make_api(self.emulator, self.clock, timeout=0.3), self)
        self.broker = fuzzkit.RecordingBroker(self.api, self.clock)
        return make_rig(self.project, self.clock, broker=self.broker, exchange=self.exchange)

    def resent_by_design(self, client_order_id: str) -> bool:
        """An exit whose intent a run that died left, looked up at start-up and not found, is sent again with the
        same id (`OrderManager.recover_pending`: Alpaca refuses a second order with an id it has, so it cannot be
        doubled, and an exit is not kept waiting). Its event is on disk before the request leaves."""
        self.check_log()
        said = [e.get("action") for e in self.events if e.get("event") == "order" and e.get("client_order_id") == client_order_id]
        return bool(said) and said[-1] in ("resend_after_restart", "send_before_reconciled")

    def before_post(self, request: OrderRequest) -> None:
        """At the moment the engine sends an order: an entry must have everything in its favour."""
        row = self.rig.store.order(request.client_order_id)
        if row is None:
            self.fail(f"POST of {request.client_order_id}, which SQLite has no intent for")
            return
        if row.purpose != "entry":
            return
        now = self.clock.now()
        halts = [h for h in self.outside.halts(open_only=True) if h.in_force(now) and h.scope in (SYSTEM_SCOPE, row.bot_id)]
        engine = self.rig.engine
        if halts:
            self.fail(f"entry {row.client_order_id} POSTed under the halt {halts[-1].reason!r}")
        if engine.system.state != "armed":
            self.fail(f"entry {row.client_order_id} POSTed while the system is {engine.system.state}")
        if engine.bot(row.bot_id).model.state == "halted":
            self.fail(f"entry {row.client_order_id} POSTed while {row.bot_id} is halted")
        first = self.broker.first
        if first is None or not first.complete:
            said = [f"{e.operation}: {e.kind}" for e in first.errors] if first else ["no snapshot"]
            self.fail(f"entry {row.client_order_id} POSTed in a tick whose snapshot failed ({said})")

    # --- the schedule ------------------------------------------------------------------------------------------

    def inject(self) -> str | None:
        """This tick's disturbance, if any (drawn from the seed alone)."""
        rng, emulator, x = self.rng, self.emulator, self.exchange
        for order_id, at in list(self.suspended.items()):
            if self.tick_no >= at:
                x.resume_order(order_id)
                del self.suspended[order_id]
        for symbol, at in list(self.strays):
            if self.tick_no >= at:  # the operator closes the stray position at the broker
                self.strays.remove((symbol, at))
                if symbol in x.positions:
                    del x.positions[symbol]
                    x.changed()
        if rng.random() >= self.fault_rate:
            return None
        kind = rng.choices(
            ["server", "429", "reset", "timeout", "malformed", "field", "stale", "hidden", "late", "thin", "stray",
             "restart", "crash", "crash_write", "halt", "resume"],
            weights=[10, 6, 6, 1 if self.timeouts else 0, 6, 12, 5, 6, 4, 3, 1, 3, 3, 3, 3, 6],
        )[0]  # fmt: skip
        path = rng.choice(READS)
        if kind == "server":
            where, method = (path, "GET") if rng.random() < 0.7 else rng.choice(WRITES)
            emulator.faults.append(Fault(status=rng.choice([500, 502, 503, 504]), path_prefix=where, method=method,
                                         after=method != "GET" and rng.random() < 0.5, times=rng.randint(1, 3)))  # fmt: skip
        elif kind == "429":
            headers = {"Retry-After": rng.choice(["1", "30", "0", "abc"])} if rng.random() < 0.5 else {}
            emulator.faults.append(Fault(status=429, body=RATE_LIMITED, headers=headers, path_prefix=path, times=rng.randint(1, 2)))
        elif kind == "reset":
            where, method = (path, "GET") if rng.random() < 0.7 else rng.choice(WRITES)
            emulator.faults.append(Fault(disconnect=True, after=rng.random() < 0.5, path_prefix=where, method=method))
        elif kind == "timeout":  # the request never reaches the exchange: the client gives up first
            emulator.faults.append(Fault(status=504, hang_seconds=0.5, path_prefix=path))
        elif kind == "malformed":
            emulator.faults.append(Fault(status=200, body=rng.choice(MALFORMED), path_prefix=path, method="GET"))
        elif kind == "field":
            where = rng.choice([*FIELDS, "POST /v2/orders", "/v2/orders:by_client_order_id"])
            method = "POST" if where.startswith("POST ") else "GET"
            where = where.removeprefix("POST ")
            # one order (a POST's answer, a lookup's), not a list of them: its fields at the top
            name = rng.choice(FIELDS[where]) if where in FIELDS else rng.choice(FIELDS["/v2/orders"]).removeprefix("*.")
            if rng.random() < 0.3:
                emulator.faults.append(Fault(path_prefix=where, method=method, drop=[name]))
            else:
                emulator.faults.append(Fault(path_prefix=where, method=method, patch={name: rng.choice(ODD_VALUES)}))
            kind = f"field {method} {where} {name}"
        elif kind == "stale":
            where = rng.choice(["/v2/stocks/quotes/latest", "/v1beta3/crypto/us/latest/quotes"])
            old = (self.clock.now() - timedelta(seconds=rng.choice([20, 90, 3600]))).astimezone(timezone.utc)
            emulator.faults.append(Fault(path_prefix=where, method="GET", patch={"quotes.*.t": old.strftime("%Y-%m-%dT%H:%M:%SZ")},
                                         times=rng.randint(1, 6)))  # fmt: skip
        elif kind == "hidden":  # the next order the broker answers is missing from the list and its lookups a while
            self.hide_next = rng.randint(1, 30)
        elif kind == "late":
            working = [o for o in x.orders.values() if o.open and o.status != "suspended"]
            if working:
                order = rng.choice(working)
                x.suspend_order(order.id)
                self.suspended[order.id] = self.tick_no + rng.randint(1, 40)
        elif kind == "thin":  # partial fills for a while
            sim_exchange.LIQUIDITY.update({"us_equity": 1.0, "crypto": 0.0001, "us_option": 1.0})
            self.thin_until = self.tick_no + rng.randint(5, 60)
        elif kind == "stray":
            symbol, qty, price = rng.choice(STRAYS)
            if symbol not in x.positions:
                x.set_position(symbol, qty, price)
                self.strays.append((symbol, self.tick_no + rng.randint(5, 200)))
        elif kind in ("restart", "crash"):
            self.restart_at = (kind, rng.randint(1, 12), rng.random() < 0.5)
        elif kind == "crash_write":  # the process dies at its next order, cancel, close or lookup
            self.api.crash_on = rng.choice(["submit_order", "cancel_order", "close_position", "get_order_by_client_id"])
            self.api.crash_after = rng.random() < 0.5
            kind = f"crash at the next {self.api.crash_on} ({'after' if self.api.crash_after else 'before'})"
        elif kind == "halt":
            if rng.random() < 0.5:
                self.operator_halts(f"soak halt at tick {self.tick_no}")
            else:
                self.api.halt_at = rng.randint(1, 8)  # counted from the coming tick's first call
                kind = "halt while a tick runs"
        elif kind == "resume":
            operator_resume(self.outside, self.operator_journal, self.clock.now())
        return kind

    def operator_halts(self, reason: str) -> None:
        operator_halt(self.outside, self.operator_journal, reason, self.clock.now())

    def hide(self, times: int) -> None:
        """The open orders answer [] and lookups Alpaca's 404, `times` requests each."""
        self.emulator.faults.appendleft(Fault(status=404, body=NOT_FOUND, path_prefix="/v2/orders:by_client_order_id", times=times))
        self.emulator.faults.append(Fault(status=200, body="[]", path_prefix="/v2/orders", method="GET", times=times))

    # --- the run ---------------------------------------------------------------------------------------------

    @contextlib.contextmanager
    def running(self) -> Iterator[Soak]:
        with Emulator(self.exchange, key=KEY, secret=SECRET) as self.emulator:
            try:
                self.rig = self.build()
                self.outside = StateStore(self.rig.store.path)
                self.operator_journal = Journal(self.rig.log, self.clock)
                yield self
            finally:
                sim_exchange.LIQUIDITY.update(LIQUIDITY)
                with contextlib.suppress(Exception):
                    self.outside.close()
                with contextlib.suppress(Exception):
                    self.rig.store.close()

    def run(self) -> list[str]:
        interval = self.rig.engine.config.settings.runner.loop_interval_seconds
        for tick_no in range(self.ticks):
            self.tick_no = tick_no
            if self.thin_until is not None and self.tick_no >= self.thin_until:
                sim_exchange.LIQUIDITY.update(LIQUIDITY)
                self.thin_until = None
            what = self.inject()
            if what:
                self.notes.append(f"{self.tick_no}: {what}")
            self.one_tick()
            self.clock.advance(interval)
            if len(self.violations) > 20:
                break
        self.check_log(final=True)
        return self.violations

    def one_tick(self) -> None:
        pending_restart, self.restart_at = self.restart_at, None
        if pending_restart is not None and pending_restart[0] == "restart":
            self.restart(crashed=False)
            pending_restart = None
        before = self.halts_in_force()
        self.broker.first = None
        self.api.calls, self.api.failed_this_tick = 0, False
        if pending_restart is not None:
            self.api.crash_at, self.api.crash_after = pending_restart[1], pending_restart[2]
        try:
            report = self.rig.engine.tick()
        except Crash:
            self.api.crash_at = None
            self.restart(crashed=True)
            return
        except Exception as exc:  # the invariant: the tick never raises
            self.fail(f"tick raised {type(exc).__name__}: {exc}")
            return
        finally:
            self.api.crash_at = None
        if report.error is not None:
            self.fail(f"an exception was caught at the tick boundary: {report.error}")
        self.check_halts(before)
        self.check_positions()
        self.check_log()
        self.check_log_against_store()

    def restart(self, *, crashed: bool) -> None:
        """A new engine on the same SQLite file and log, with a new client (the process died; the broker did not)."""
        old = self.rig
        if crashed:
            old.engine.journal.discard()  # what the dead process had not written never reaches the log
        with contextlib.suppress(Exception):
            old.engine.journal.close()
        old.store.close()
        self.rig = self.build()
        self.notes.append(f"{self.tick_no}: restarted{' after a crash' if crashed else ''}")

    # --- the checks ------------------------------------------------------------------------------------------

    def halts_in_force(self) -> dict[int, Any]:
        now = self.clock.now()
        return {h.id: h for h in self.outside.halts(open_only=True) if h.in_force(now)}

    def check_halts(self, before: dict[int, Any]) -> None:
        with contextlib.closing(sqlite3.connect(f"file:{self.rig.store.path}?mode=ro", uri=True)) as db:
            rows = db.execute("SELECT id, scope, reason, until, ended_at, ended_by FROM halts").fetchall()
        for halt_id, scope, reason, until, ended_at, ended_by in rows:
            if ended_at is None:
                continue
            if ended_by == "cooloff":
                if until is None or datetime.fromisoformat(ended_at) < datetime.fromisoformat(until):
                    self.fail(f"halt {halt_id} ({scope}: {reason}) ended by cooloff at {ended_at}, before its until {until}")
            elif ended_by != "operator":
                self.fail(f"halt {halt_id} ({scope}: {reason}) ended by {ended_by!r}")
        held = any(h.scope == SYSTEM_SCOPE for h in before.values())  # since before this tick, and still
        state = self.rig.engine.system.state
        if held and any(h.scope == SYSTEM_SCOPE for h in self.halts_in_force().values()) and state != "halted":
            self.fail(f"a system halt is in force and the system machine is {state}")

    def check_positions(self) -> None:
        """The ExitBot lets a difference stand for MISMATCH_TICKS ticks (a fill racing the reads is not one): one
        seen at the end of that many successful ticks in a row, the system not halted, is a violation."""
        first, engine = self.broker.first, self.rig.engine
        seen, self.mismatches = self.mismatches, {}
        if first is None or not first.complete or self.api.failed_this_tick or not engine.reconciled:
            return
        if any(h.scope == SYSTEM_SCOPE for h in self.halts_in_force().values()) or engine.system.state == "halted":
            return
        owned: dict[str, float] = {}
        for row in self.outside.positions():
            owned[row.symbol] = owned.get(row.symbol, 0.0) + row.qty
        broker = {symbol: p.qty for symbol, p in self.exchange.positions.items()}
        for symbol in sorted(set(owned) | set(broker)):
            mine, theirs = owned.get(symbol, 0.0), broker.get(symbol, 0.0)
            if abs(mine - theirs) > 1e-6 * max(1.0, abs(theirs)):
                self.mismatches[symbol] = ticks = seen.get(symbol, 0) + 1
                if ticks >= MISMATCH_TICKS:
                    self.fail(f"position {symbol}: SQLite {mine:g}, broker {theirs:g} for {ticks} ticks; system "
                              f"{engine.system.state}, not halted")  # fmt: skip

    def check_log_against_store(self) -> None:
        """After a tick that ended (its log flushed): every halt SQLite holds was said in the log and every halt said
        is in SQLite (one said but not saved does not survive a restart); every fill SQLite booked was said."""
        events = self.events
        said = sorted((e["scope"], e["reason"]) for e in events if e.get("event") == "halt")
        saved = sorted((h.scope, h.reason) for h in self.outside.halts())
        if said != saved:
            self.fail(f"halts said in the log {sorted(set(said) ^ set(saved))} differ from SQLite's (said {len(said)}, saved {len(saved)})")
        filled: dict[str, float] = {}
        for e in events:
            if e.get("event") == "fill":
                filled[e["client_order_id"]] = filled.get(e["client_order_id"], 0.0) + float(e["qty"])
        for row in self.outside.orders():
            if abs(filled.get(row.client_order_id, 0.0) - row.filled_qty) > 1e-9 * max(1.0, row.filled_qty):
                self.fail(f"order {row.client_order_id}: SQLite has {row.filled_qty:g} filled, the log's fills say "
                          f"{filled.get(row.client_order_id, 0.0):g}")  # fmt: skip

    def check_log(self, *, final: bool = False) -> None:
        """Every line of the log parses, read from where the last check stopped (whole lines only: a line being
        written is read next time); no key in it."""
        if self.log_tail is None:
            self.log_tail = fuzzkit.LogTail(self.rig.log)
        self.events += self.log_tail.read(self.fail, (KEY, SECRET))
        if final:
            self.log_tail.ends_whole(self.fail)


def soak(seed: int, root: Path, ticks: int, **options: Any) -> Soak:
    run = Soak(seed, root, ticks, **options)
    with run.running():
        run.run()
    return run


SEEDS = [1, 2, 8]  # together: crashes and restarts, stray positions, operator halts and resumes, entries and exits


@pytest.mark.parametrize("seed", SEEDS)
def test_a_session_under_seeded_faults_keeps_every_invariant(tmp_path: Path, seed: int) -> None:
    """A few seeds, 150 ticks each (12.5 simulated minutes), about a second each: the soak that found the defects
    is the same code run over hundreds of seeds and whole sessions (`soak(seed, root, ticks=4680)`)."""
    run = soak(seed, tmp_path, ticks=150, fault_rate=0.15, timeouts=False)
    assert run.violations == [], "\n".join([*run.violations, "schedule:", *run.notes])
