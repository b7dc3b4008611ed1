"""A seeded, deterministic chaos driver: the real Engine on the simulated exchange, with broker faults and crashes
thrown at it at seeded random ticks, and the invariants that must always hold checked after every tick.

The engine is built as a run builds it (`build_sim`, a `ManualClock`, a `StateStore` in a temporary folder, a
`Journal`), over the shipped config/, machines/ and rules/. Between the engine and the exchange sits `ChaosAPI`,
the simulator's `BrokerAPI` with faults: reads that fail (a 5xx, a timeout), an order POST refused, or lost after
the exchange took it, orders that vanish from the broker's lists and lookups and come back. Beside it the driver
works the exchange itself: partial fills (a thin book), orders the broker cancels, positions no bot opened,
quotes that go stale, one-sided or crossed, price gaps, a crypto position short by a fee, and the clock stepped
forward or back, the engine restarted on its state file (cleanly, or killed mid-tick, its unwritten log lost),
the operator halting and resuming. The schedule is the seed's alone: `--seed S --ticks N` replays it exactly.

The invariants (each a line of `check_*` below):
- a tick never raises and never ends in an exception caught at its boundary;
- no entry is sent while a halt of the system or of its bot is in force, while the system is not armed, or in a
  tick whose broker reads failed; no entry risks more at its stop than its bot's budget left;
- no client_order_id is sent twice (but the resend a restart makes by design, said in the log first);
- every position at the broker is owned by the bots in SQLite, or the engine has halted the system for it;
- every machine state saved is a state of its machine;
- a halt ends only by its cooloff (at or after `until`) or the operator's resume, across restarts too; a system
  halt in force is the system machine's state by the end of the next tick;
- the log is JSONL, whole lines only.

A violation prints the seed, the tick, the invariant and the fault history, and the command that replays it;
the exit status is then 1. Many seeds at once, on one core:

    PYTHONPATH=. .venv/bin/python tools/chaos.py --seeds 1-300 --ticks 600

docs/chaos.md says more.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import marshal
import random
import sqlite3
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
for _folder in (ROOT, ROOT / "tools"):  # run as a script from anywhere: the engine and fuzzkit beside this file
    if str(_folder) not in sys.path:
        sys.path.insert(0, str(_folder))

from fuzzkit import LogTail, seed_folder, seed_range  # noqa: E402

from engine.brokers.base import BrokerError, Order, OrderRequest  # noqa: E402
from engine.brokers.factory import build_sim  # noqa: E402
from engine.brokers.sim import exchange as sim_exchange  # noqa: E402
from engine.brokers.sim.api import SimAPI  # noqa: E402
from engine.brokers.sim.exchange import QuoteMode, SimExchange  # noqa: E402
from engine.brokers.snapshot import SnapshotBroker  # noqa: E402
from engine.brokers.symbols import contract_multiplier  # noqa: E402
from engine.core import order_lifecycle as lifecycle  # noqa: E402
from engine.core.clock import ManualClock  # noqa: E402
from engine.core.journal import Journal  # noqa: E402
from engine.core.store import SYSTEM_SCOPE, StateStore  # noqa: E402
from engine.trading.engine import LAST_FACTS_SCOPE, Engine  # noqa: E402
from engine.trading.exitbot import MISMATCH_TICKS  # noqa: E402
from engine.trading.runner import operator_halt, operator_resume  # noqa: E402
from engine.validate import Report, load_valid  # noqa: E402

OPEN = datetime(2026, 11, 23, 14, 30, tzinfo=timezone.utc)  # Monday 09:30 New York
STOCKS = ("AAPL", "SPY", "QQQ")
COINS = ("BTC/USD", "ETH/USD")
STRAYS = [("AAPL", 3.0, 190.0), ("MSFT", 2.0, 400.0), ("SPY", 1.0, 590.0), ("BTC/USD", 0.001, 90_000.0)]
LIQUIDITY = dict(sim_exchange.LIQUIDITY)  # the simulated exchange's own, restored after a thin spell
FEES = dict(sim_exchange.CRYPTO_FEE)  # its maker and taker fees, restored after a spell of the highest tier's
HIGH_FEES = {"limit": 0.0025, "market": 0.004}  # above Alpaca's top rates, within what the engine adopts as a fee
# The snapshot's reads: a failure of one of them makes the tick's snapshot incomplete (no entry may leave).
SNAPSHOT_READS = ("get_account", "get_positions", "get_open_orders", "get_stock_quotes", "get_crypto_quotes",
                  "get_option_chain", "get_clock")  # fmt: skip
READS = (*SNAPSHOT_READS, "get_assets", "get_order_by_client_id", "get_order")
WRITES = ("submit_order", "cancel_order", "close_position")
REFUSALS = [
    (403, 40310000, "insufficient buying power"),
    (422, 42210000, "order is rejected"),
    (403, 40310000, "asset is not tradable"),
    (422, 40010001, "qty must be > 0"),
]
# complete ticks in a row a broker position may differ from what the bots own before the system must be halted:
# the ExitBot's own MISMATCH_TICKS, and a tick for the halt to be written
SETTLE_TICKS = MISMATCH_TICKS + 1
# what a budget check allows above the budget: float rounding, never a real excess
BUDGET_SLACK = 1e-6


class Crash(BaseException):
    """The process dies here (kill -9): no `except Exception` of the engine catches it, nothing after it runs."""


@dataclass
class ChaosAPI:
    """The simulator's BrokerAPI with faults armed by the driver. Each call counts as the request it stands for."""

    inner: SimAPI
    chaos: Chaos
    name: str = "sim"
    failing: dict[str, list[tuple[str, bool]]] = field(default_factory=dict)  # method -> [(kind, after)] in turn
    hidden: dict[str, int] = field(default_factory=dict)  # exchange order id -> listings and lookups it misses yet
    crash_at: int | None = None  # the call of this tick to die at
    crash_after: bool = False
    calls: int = 0
    snapshot_failed: bool = False  # a snapshot read of this tick failed (no entry may leave in it)

    @property
    def requests_made(self) -> int:
        return self.inner.requests_made

    @property
    def exchange(self) -> SimExchange:
        return self.inner.exchange

    def __getattr__(self, name: str) -> Any:
        target = getattr(self.inner, name)
        if not callable(target) or name.startswith("_"):
            return target

        def call(*args: Any, **kwargs: Any) -> Any:
            return self._call(name, target, *args, **kwargs)

        return call

    def _call(self, name: str, target: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        self.calls += 1
        dying = self.crash_at is not None and self.calls == self.crash_at
        if dying and not self.crash_after:
            raise Crash(f"before {name}")
        if name == "submit_order":
            request: OrderRequest = args[0] if args else kwargs["request"]
            self.chaos.before_post(request)
            if request.client_order_id in self.exchange.by_client_id:  # as Alpaca: an id is taken once
                raise BrokerError("rejected", "client_order_id must be unique", status=422, code=40010001, operation=name)
        fault = self.failing.get(name, [])
        kind, after = fault.pop(0) if fault else (None, False)
        if not fault:
            self.failing.pop(name, None)
        if kind is not None and not after:
            self._fail(name, kind)
        result = target(*args, **kwargs)
        if kind is not None:  # the broker did it; its answer is lost
            self._fail(name, kind)
        if dying:
            raise Crash(f"after {name}")
        return self._hide(name, result)

    def _fail(self, name: str, kind: str) -> None:
        if name in SNAPSHOT_READS:
            self.snapshot_failed = True
        if kind == "timeout":
            raise BrokerError("timeout", "read timed out", operation=name)
        if kind == "refused":
            status, code, message = self.chaos.rng.choice(REFUSALS)
            raise BrokerError("rejected", message, status=status, code=code, operation=name)
        raise BrokerError("server", "internal server error", status=503, code=50010000, operation=name)

    def _hide(self, name: str, result: Any) -> Any:
        """An order hidden is missing from the open orders and its lookups answer 'not found', a while."""
        if not self.hidden or name not in ("get_open_orders", "get_order_by_client_id", "get_order"):
            return result
        if name == "get_open_orders":
            kept = []
            for order in result:
                if order.id in self.hidden:
                    self._seen_hidden(order.id)
                else:
                    kept.append(order)
            return kept
        if isinstance(result, Order) and result.id in self.hidden:
            self._seen_hidden(result.id)
            return None
        return result

    def _seen_hidden(self, order_id: str) -> None:
        self.hidden[order_id] -= 1
        if self.hidden[order_id] <= 0:
            del self.hidden[order_id]


@dataclass
class Chaos:
    seed: int
    ticks: int
    root: Path
    fault_rate: float = 0.12
    config_dir: Path = ROOT / "config"
    violations: list[str] = field(default_factory=list)
    history: list[str] = field(default_factory=list)
    tick_no: int = 0
    mismatch: dict[str, int] = field(default_factory=dict)  # symbol -> complete ticks in a row it differed
    quote_faults: dict[str, int] = field(default_factory=dict)  # symbol -> the tick its quote is itself again
    gaps: dict[str, float] = field(default_factory=dict)  # symbol -> its price's factor since a gap
    strays: list[tuple[str, int]] = field(default_factory=list)  # a stray's symbol, the tick the operator closes it
    thin_until: int | None = None
    fees_until: int | None = None
    bitten: dict[str, float] = field(default_factory=dict)  # coin -> what the broker held after its last fee fault
    suspended: dict[str, int] = field(default_factory=dict)  # exchange order id -> the tick the broker resumes it
    restart_next: tuple[str, int, bool] | None = None  # ("restart"|"crash", the call to die at, after it)
    entries_checked: int = 0  # entries whose send was checked (a run that sent none proved little)

    def __post_init__(self) -> None:
        self.rng = random.Random(self.seed)
        self.report = _load(self.config_dir)
        assert self.report.config is not None
        self.settings = self.report.config.settings
        self.interval = self.settings.runner.loop_interval_seconds
        minutes = self.rng.choice([0, 5, 10, 30, 60, 180, 300, 385])  # after the open; the close is at 390
        self.clock = ManualClock(OPEN + timedelta(minutes=minutes))
        _broker, self.exchange = build_sim(self.settings, self.clock)
        self.real_paths = self.exchange.paths
        self.db, self.log = self.root / "state.db", self.root / "app.jsonl"
        self.log_tail = LogTail(self.log)
        self.outside = StateStore(self.db)  # the operator's connection, as `halt` and `resume` open it
        self.operator_journal = Journal(self.log, self.clock)
        self.engine = self._build()

    # --- the parts ------------------------------------------------------------------------------------------

    def _build(self) -> Engine:
        report = self.report
        assert report.config is not None and report.book is not None
        self.api = ChaosAPI(SimAPI(self.exchange), self)
        broker = SnapshotBroker(self.api, self.clock, self.settings.broker)  # type: ignore[arg-type]
        store, journal = StateStore(self.db), Journal(self.log, self.clock)
        return Engine(report.config, report.book, report.machines, broker, store, journal, self.clock)

    def fail(self, what: str) -> None:
        self.violations.append(f"tick {self.tick_no} ({self.clock.now().isoformat()}): {what}")

    def note(self, what: str) -> None:
        self.history.append(f"{self.tick_no}: {what}")

    # --- the schedule ---------------------------------------------------------------------------------------

    def inject(self) -> None:
        """This tick's disturbances (drawn from the seed alone), and the end of earlier ones that are due."""
        x, rng = self.exchange, self.rng
        for symbol, until in list(self.quote_faults.items()):
            if self.tick_no >= until:
                x.set_quote_mode(symbol, None)
                del self.quote_faults[symbol]
        for symbol, at in list(self.strays):
            if self.tick_no >= at:  # the operator closes the stray at the broker, then resumes
                self.strays.remove((symbol, at))
                if symbol in x.positions:
                    x.set_position(symbol, 0.0, x.last_price(symbol))
                self.note(f"operator closed the stray {symbol}; resume")
                operator_resume(self.outside, self.operator_journal, self.clock.now())
        if self.thin_until is not None and self.tick_no >= self.thin_until:
            sim_exchange.LIQUIDITY.update(LIQUIDITY)
            self.thin_until = None
        for order_id, at in list(self.suspended.items()):
            if self.tick_no >= at:
                x.resume_order(order_id)
                del self.suspended[order_id]
        if self.fees_until is not None and self.tick_no >= self.fees_until:
            sim_exchange.CRYPTO_FEE.update(FEES)
            self.fees_until = None
        if rng.random() >= self.fault_rate:
            return
        kind = rng.choices(
            ["read", "write", "refused", "partial", "broker_cancel", "vanish", "stray", "quote", "gap", "clock_forward",
             "clock_back", "restart", "crash", "fee", "halt", "resume", "suspend"],
            weights=[12, 6, 5, 4, 4, 5, 2, 8, 4, 3, 2, 4, 4, 4, 2, 6, 3],
        )[0]  # fmt: skip
        getattr(self, f"_inject_{kind}")()

    def _inject_read(self) -> None:
        method, how = self.rng.choice(READS), self.rng.choice(["server", "timeout"])
        times = self.rng.randint(1, 4)
        self.api.failing.setdefault(method, []).extend([(how, False)] * times)
        self.note(f"{method} fails ({how}) {times} time(s)")

    def _inject_write(self) -> None:
        method, how, after = self.rng.choice(WRITES), self.rng.choice(["server", "timeout"]), self.rng.random() < 0.5
        self.api.failing.setdefault(method, []).append((how, after))
        self.note(f"the next {method} fails ({how}, {'after the broker did it' if after else 'before'})")

    def _inject_refused(self) -> None:
        times = self.rng.randint(1, 3)
        self.api.failing.setdefault("submit_order", []).extend([("refused", False)] * times)
        self.note(f"the next {times} order(s) refused")

    def _inject_partial(self) -> None:
        sim_exchange.LIQUIDITY.update({"us_equity": 1.0, "crypto": 0.0001, "us_option": 1.0})
        self.thin_until = self.tick_no + self.rng.randint(5, 60)
        self.note(f"thin book (partial fills) until tick {self.thin_until}")

    def _working(self) -> list[Any]:
        return [o for o in self.exchange.orders.values() if o.open and o.status not in ("suspended", "pending_replace")]

    def _inject_broker_cancel(self) -> None:
        working = self._working()
        if working:
            order = self.rng.choice(working)
            order.status = self.rng.choice(["canceled", "expired", "rejected"])
            order.updated_at = self.clock.now()
            self.exchange.changed()
            self.note(f"the broker ended {order.request.client_order_id} ({order.status})")

    def _inject_vanish(self) -> None:
        working = self._working()
        if working:
            order, times = self.rng.choice(working), self.rng.randint(1, 30)
            self.api.hidden[order.id] = times
            self.note(f"{order.request.client_order_id} vanishes for {times} listing(s)/lookup(s)")

    def _inject_suspend(self) -> None:
        working = [o for o in self._working() if o.status != "pending_cancel"]
        if working:
            order, ticks = self.rng.choice(working), self.rng.randint(1, 40)
            self.exchange.suspend_order(order.id)
            self.suspended[order.id] = self.tick_no + ticks
            self.note(f"{order.request.client_order_id} suspended by the broker for {ticks} tick(s)")

    def _inject_stray(self) -> None:
        symbol, qty, price = self.rng.choice(STRAYS)
        if symbol not in self.exchange.positions:
            self.exchange.set_position(symbol, qty, price)
            at = self.tick_no + self.rng.randint(5, 120)
            self.strays.append((symbol, at))
            self.note(f"a stray position {symbol} {qty:g} (the operator closes it at tick {at})")

    def _inject_quote(self) -> None:
        symbol = self.rng.choice((*STOCKS, *COINS))
        how = self.rng.choice(["stale", "no_bid", "no_ask", "crossed"])
        if how == "stale":
            mode = QuoteMode(frozen_at=self.clock.now() - timedelta(seconds=self.rng.choice([0, 30, 600])))
        else:
            mode = QuoteMode(no_bid=how == "no_bid", no_ask=how == "no_ask", crossed=how == "crossed")
        self.exchange.set_quote_mode(symbol, mode)
        self.quote_faults[symbol] = until = self.tick_no + self.rng.randint(1, 40)
        self.note(f"{symbol}'s quote {how} until tick {until}")

    def _inject_gap(self) -> None:
        symbol, factor = self.rng.choice((*STOCKS, *COINS)), self.rng.choice([0.9, 0.95, 0.98, 1.02, 1.05, 1.1])
        self.gaps[symbol] = self.gaps.get(symbol, 1.0) * factor
        self.exchange.paths = GappedPaths(self.real_paths, dict(self.gaps))
        self.exchange.set_quote_mode(symbol, self.exchange.quote_modes.get(symbol))  # the memo of this instant dropped
        self.note(f"{symbol}'s price gaps by x{factor:g}")

    def _inject_clock_forward(self) -> None:
        seconds = self.rng.choice([20, 60, 300, 1800, 3600, 6 * 3600])
        self.clock.advance(seconds)
        self.note(f"the clock steps forward {seconds} s")

    def _inject_clock_back(self) -> None:
        seconds = self.rng.choice([2, 10, 60, 300])
        self.clock.advance(-seconds)
        self.note(f"the clock steps back {seconds} s")

    def _inject_restart(self) -> None:
        self.restart_next = ("restart", 0, False)

    def _inject_crash(self) -> None:
        self.restart_next = ("crash", self.rng.randint(1, 14), self.rng.random() < 0.5)

    def _inject_fee(self) -> None:
        """A crypto position the broker holds a fee's worth short of: the fee Alpaca takes out of a buy's coins, read
        after the buy was booked (as a fill between the snapshot's reads leaves it). Never under a sell of ours that
        is working: a sell is sized to the coins held, and taking coins from under it would sell what is not held.
        Or the fees raised for a spell (above Alpaca's top rates, within what the engine adopts as a fee)."""
        held = [s for s in COINS if s in self.exchange.positions and self.exchange.positions[s].qty > 0]
        selling = {o.request.symbol for o in self.exchange.orders.values() if o.open and o.request.side == "sell"}
        # once a buy: a fee is a share of the coins a buy delivered, and bites on bites add up past any fee
        free = [s for s in held if s not in selling and self.exchange.positions[s].qty > self.bitten.get(s, 0.0)]
        if free and self.rng.random() < 0.5:
            symbol = self.rng.choice(free)
            position = self.exchange.positions[symbol]
            position.qty *= 1 - sim_exchange.CRYPTO_FEE["market"]
            self.bitten[symbol] = position.qty
            self.exchange.changed()
            self.note(f"{symbol} held a fee short at the broker")
            return
        sim_exchange.CRYPTO_FEE.update(HIGH_FEES)
        self.fees_until = until = self.tick_no + self.rng.randint(10, 120)
        self.note(f"crypto fees raised until tick {until}")

    def _inject_halt(self) -> None:
        operator_halt(self.outside, self.operator_journal, f"chaos halt at tick {self.tick_no}", self.clock.now())
        self.note("operator halt")

    def _inject_resume(self) -> None:
        operator_resume(self.outside, self.operator_journal, self.clock.now())
        self.note("operator resume")

    # --- the run --------------------------------------------------------------------------------------------

    def run(self) -> list[str]:
        try:
            for tick_no in range(self.ticks):
                self.tick_no = tick_no
                self.inject()
                self.one_tick()
                self.clock.advance(self.interval)
                if self.violations:
                    break
            self.check_log(final=True)
        finally:
            sim_exchange.LIQUIDITY.update(LIQUIDITY)
            sim_exchange.CRYPTO_FEE.update(FEES)
            with contextlib.suppress(Exception):
                self.engine.journal.close()
            with contextlib.suppress(Exception):
                self.engine.store.close()
            self.operator_journal.close()
            self.outside.close()
        return self.violations

    def one_tick(self) -> None:
        pending, self.restart_next = self.restart_next, None
        if pending is not None and pending[0] == "restart":
            self.restart(crashed=False)
            pending = None
        before = self.halts_in_force()
        self.api.calls, self.api.snapshot_failed = 0, False
        if pending is not None:
            self.api.crash_at, self.api.crash_after = pending[1], pending[2]
        try:
            report = self.engine.tick()
        except Crash as crash:
            self.note(f"killed mid-tick ({crash})")
            self.restart(crashed=True)
            return
        except Exception as exc:
            self.fail(f"the tick raised {type(exc).__name__}: {exc}")
            return
        finally:
            self.api.crash_at = None
        if report.error is not None:
            self.fail(f"an exception was caught at the tick boundary: {report.error}")
        self.check_states()
        self.check_halts(before)
        self.check_positions()
        self.check_orders()
        self.check_log()

    def restart(self, *, crashed: bool) -> None:
        """A new engine on the same state file and log (the process ended; the broker did not)."""
        old = self.engine
        if crashed:
            old.journal.discard()  # what the dead process had not written never reaches the log
        with contextlib.suppress(Exception):
            old.journal.close()
        old.store.close()
        kept = self.halts_in_force()
        try:
            self.engine = self._build()
        except Exception as exc:
            self.fail(f"the engine did not start again: {type(exc).__name__}: {exc}")
            raise
        if not crashed:
            self.note("restarted")
        gone = set(kept) - set(self.halts_in_force())
        if gone:
            self.fail(f"halts {sorted(gone)} in force before the restart are not after it")

    # --- the invariants -------------------------------------------------------------------------------------

    def before_post(self, request: OrderRequest) -> None:
        """At the moment an order leaves: it has an intent; an entry has everything in its favour."""
        engine = self.engine
        cid = request.client_order_id
        if cid in self.exchange.by_client_id and not self._resent_by_design(cid):
            self.fail(f"client_order_id {cid} sent again after the broker took it")
        row = engine.store.order(cid)
        if row is None:
            self.fail(f"{cid} sent with no intent in SQLite")
            return
        if request.side == "sell":
            self._check_sell(request)
        if row.purpose != "entry":
            return
        self.entries_checked += 1
        now = self.clock.now()
        halts = [h for h in self.outside.halts(open_only=True) if h.in_force(now) and h.scope in (SYSTEM_SCOPE, row.bot_id)]
        if halts:
            self.fail(f"entry {cid} sent under the halt {halts[-1].reason!r}")
        if engine.system.state != "armed":
            self.fail(f"entry {cid} sent while the system is {engine.system.state}")
        if engine.bot(row.bot_id).model.state == "halted":
            self.fail(f"entry {cid} sent while {row.bot_id} is halted")
        if self.api.snapshot_failed:
            self.fail(f"entry {cid} sent in a tick whose broker reads failed")
        self._check_budget(row.bot_id, request, row.created_at)

    def _check_sell(self, request: OrderRequest) -> None:
        """A sell never asks for more than the broker holds and no other sell of ours holds already: the engine sells
        only what it owns (exits are reduce-only), and it owns what the broker holds."""
        held = self.exchange.positions.get(request.symbol)
        selling = sum(
            (o.qty or 0.0) - o.filled_qty
            for o in self._working()
            if o.request.symbol == request.symbol and o.request.side == "sell" and o.status != "suspended"
        )
        free = (held.qty if held is not None else 0.0) - selling
        if (request.qty or 0.0) > free + 1e-9 * max(1.0, abs(free)):
            self.fail(f"sell {request.client_order_id} of {request.qty:g} {request.symbol}: the broker holds {free:g} free")

    def _resent_by_design(self, cid: str) -> bool:
        """An intent a dead run left, looked up at start-up and not found, is sent again with its id (Alpaca refuses
        a second order with an id it has, so it cannot be doubled); its event is on disk before the request."""
        said = [e.get("action") for e in self._read_log() if e.get("event") == "order" and e.get("client_order_id") == cid]
        return bool(said) and said[-1] in ("resend_after_restart", "send_before_reconciled")

    def _check_budget(self, bot_id: str, request: OrderRequest, created_at: datetime) -> None:
        """What the bot holds and enters, this entry included, risks at its stop no more than its budget left (the
        `budget_usd` fact of the tick that granted the entry; an entry held back since an earlier tick is skipped)."""
        engine = self.engine
        saved = engine.store.last_facts(LAST_FACTS_SCOPE)
        if saved is None or saved[0] != created_at:
            return
        _system, names, by_bot = marshal.loads(saved[1])
        if bot_id not in by_bot:
            return
        budget = dict(zip(names, by_bot[bot_id][0], strict=True)).get("budget_usd")
        if budget is None:
            self.fail(f"entry {request.client_order_id} sent while {bot_id}'s budget is unknown")
            return
        stop = engine.bot(bot_id).config.exits.stop_loss_pct / 100
        cost = sum(p.qty * p.avg_entry_price * contract_multiplier(p.symbol) for p in engine.store.positions(bot_id))
        for row in engine.store.orders(bot_id=bot_id, statuses=lifecycle.OPEN):
            if row.purpose == "entry" and row.client_order_id != request.client_order_id:
                cost += _order_cost(row.notional, row.qty, row.filled_qty, row.limit_price, self.exchange, row.symbol)
        cost += _order_cost(request.notional, request.qty, 0.0, request.limit_price, self.exchange, request.symbol)
        if cost * stop > budget * (1 + BUDGET_SLACK) + 0.01:
            self.fail(f"entry {request.client_order_id}: {bot_id} would risk {cost * stop:.2f} at its stop, over its budget "
                      f"left {budget:.2f}")  # fmt: skip

    def halts_in_force(self) -> dict[int, str]:
        now = self.clock.now()
        return {h.id: f"{h.scope}: {h.reason}" for h in self.outside.halts(open_only=True) if h.in_force(now)}

    def check_states(self) -> None:
        """Every machine state saved is one its machine has, and the one the engine holds once its tick ended (a
        restart restores what is saved); no position at the broker is short (nothing here sells what it lacks)."""
        engine = self.engine
        running = {("system", "system"): engine.system.state, ("portfolio", "portfolio"): engine.portfolio_model.state}
        running.update({(bot.kind, bot.bot_id): bot.model.state for bot in engine.bots})
        for saved in self.outside.machine_states():
            spec = self.report.machines.get(saved.kind)
            if spec is None or saved.state not in spec.states:
                self.fail(f"the state file holds {saved.kind}/{saved.bot_id} in {saved.state!r}, not a state of its machine")
            elif running.get((saved.kind, saved.bot_id), saved.state) != saved.state:
                self.fail(f"the state file holds {saved.kind}/{saved.bot_id} in {saved.state!r}, the engine in "
                          f"{running[(saved.kind, saved.bot_id)]!r}")  # fmt: skip
        for symbol, position in self.exchange.positions.items():
            if position.qty < -1e-9:
                self.fail(f"the broker holds {symbol} short ({position.qty:g})")

    def check_halts(self, before: dict[int, str]) -> None:
        """A halt ends by its cooloff (not before `until`) or the operator's resume; a system halt in force since
        before this tick holds the system machine halted."""
        with contextlib.closing(sqlite3.connect(f"file:{self.db}?mode=ro", uri=True)) as db:
            rows = db.execute("SELECT id, reason, until, ended_at, ended_by FROM halts WHERE ended_at IS NOT NULL").fetchall()
        for halt_id, reason, until, ended_at, ended_by in rows:
            if ended_by == "cooloff" and (until is None or datetime.fromisoformat(ended_at) < datetime.fromisoformat(until)):
                self.fail(f"halt {halt_id} ({reason}) ended by cooloff at {ended_at}, before its until {until}")
            elif ended_by not in ("cooloff", "operator"):
                self.fail(f"halt {halt_id} ({reason}) ended by {ended_by!r}")
        now_in_force = self.halts_in_force()
        system_held = [i for i in before if i in now_in_force and now_in_force[i].startswith(f"{SYSTEM_SCOPE}: ")]
        if system_held and self.engine.system.state != "halted":
            self.fail(f"the system halt {now_in_force[system_held[0]]!r} is in force and the system machine is "
                      f"{self.engine.system.state}")  # fmt: skip

    def check_positions(self) -> None:
        """A broker position the bots do not own (in that amount) for SETTLE_TICKS complete ticks in a row with no
        system halt in force: the system must be halted by then (reconciliation or the ExitBot's anomaly)."""
        seen, self.mismatch = self.mismatch, {}
        if self.api.snapshot_failed:
            return
        owned: dict[str, float] = {}
        for row in self.outside.positions():
            owned[row.symbol] = owned.get(row.symbol, 0.0) + row.qty
        broker = {symbol: p.qty for symbol, p in self.exchange.positions.items()}
        if any(h.startswith(f"{SYSTEM_SCOPE}: ") for h in self.halts_in_force().values()):
            return  # halted: counted again from the halt's end (the operator's resume, with the cause still there)
        for symbol in sorted(set(owned) | set(broker)):
            mine, theirs = owned.get(symbol, 0.0), broker.get(symbol, 0.0)
            if abs(mine - theirs) <= 1e-6 * max(1.0, abs(theirs)):
                continue
            self.mismatch[symbol] = ticks = seen.get(symbol, 0) + 1
            if ticks >= SETTLE_TICKS:
                self.fail(f"position {symbol}: broker {theirs:g}, bots own {mine:g} for {ticks} ticks, and the system "
                          f"is {self.engine.system.state} with no halt in force")  # fmt: skip

    def check_orders(self) -> None:
        """SQLite never holds as ended (filled, cancelled, refused, never sent) an order of ours the broker still
        works, once a complete tick has read it: a bot would act as if it were gone (enter again, size its exit
        without it) while it can still fill. Orders hidden by a fault are left out while hidden."""
        if self.api.snapshot_failed:
            return
        for order in self.exchange.orders.values():
            if not order.open or order.id in self.api.hidden:
                continue
            row = self.outside.order(order.request.client_order_id)
            if row is not None and row.status in lifecycle.ENDED:
                self.fail(f"{row.client_order_id} is {row.status} in SQLite and {order.status} at the broker")

    def _read_log(self) -> list[dict[str, Any]]:
        if not self.log.exists():
            return []
        events = []
        for line in self.log.read_bytes().split(b"\n"):
            with contextlib.suppress(ValueError):
                event = json.loads(line)
                if isinstance(event, dict):
                    events.append(event)
        return events

    def check_log(self, *, final: bool = False) -> None:
        """Every line of the log parses as one event, read from where the last check stopped (a line being written
        is read next time); the last ends in a newline."""
        self.log_tail.read(self.fail)
        if final:
            self.log_tail.ends_whole(self.fail)


class GappedPaths:
    """The exchange's price source with some symbols' prices moved by a factor from now on (a gap): quotes, fills,
    positions' values and options' underlyings all read it."""

    def __init__(self, paths: Any, factors: dict[str, float]):
        self._paths, self._factors = paths, factors

    def __getattr__(self, name: str) -> Any:
        return getattr(self._paths, name)

    def price(self, symbol: str, at: datetime) -> float:
        return float(self._paths.price(symbol, at)) * self._factors.get(symbol, 1.0)

    def quote_sides(self, symbol: str, at: datetime) -> tuple[float, float] | None:
        sides = self._paths.quote_sides(symbol, at)
        factor = self._factors.get(symbol, 1.0)
        return None if sides is None else (sides[0] * factor, sides[1] * factor)

    def quotes(self, symbols: Any, at: datetime) -> tuple[list[float], list[float], list[datetime]]:
        bids, asks, times = self._paths.quotes(symbols, at)
        factors = [self._factors.get(s, 1.0) for s in symbols]
        return [b * f for b, f in zip(bids, factors, strict=True)], [a * f for a, f in zip(asks, factors, strict=True)], times


def _order_cost(
    notional: float | None, qty: float | None, filled: float, limit: float | None, x: SimExchange, symbol: str
) -> float:
    """What the unfilled part of an entry costs: its notional, or its quantity at its limit (the ask for a market
    order)."""
    if notional is not None:
        return notional
    price = limit or x.quote(symbol).ask
    return max((qty or 0.0) - filled, 0.0) * price * contract_multiplier(symbol)


_REPORTS: dict[Path, Report] = {}


def _load(config_dir: Path) -> Report:
    """`config_dir`'s settings and bots with the shipped machines and rules, validated once a process (they are
    only read)."""
    if config_dir not in _REPORTS:
        _REPORTS[config_dir] = load_valid(config_dir, ROOT / "machines", ROOT / "rules")
    return _REPORTS[config_dir]


def run_seed(
    seed: int, ticks: int, *, fault_rate: float = 0.12, keep: Path | None = None, config_dir: Path | None = None
) -> Chaos:
    """One seed's run; its `violations` are empty when every invariant held."""
    with seed_folder(keep, seed, "chaos") as root:
        chaos = Chaos(seed, ticks, root, fault_rate=fault_rate, config_dir=(config_dir or ROOT / "config").resolve())
        chaos.run()
    return chaos


def describe(chaos: Chaos) -> str:
    lines = [f"seed {chaos.seed}: {v}" for v in chaos.violations]
    where = "" if chaos.config_dir == (ROOT / "config").resolve() else f" --config {chaos.config_dir}"
    lines.append(f"reproduce: python tools/chaos.py --seed {chaos.seed} --ticks {chaos.ticks} --rate {chaos.fault_rate:g}{where}")
    lines.append("fault history (tick: fault):")
    lines += [f"  {h}" for h in chaos.history] or ["  (none)"]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seed", type=int, help="one seed")
    parser.add_argument("--seeds", help="a range of seeds, e.g. 1-300")
    parser.add_argument("--ticks", type=int, default=600, help="ticks a seed (default 600: 50 simulated minutes)")
    parser.add_argument("--rate", type=float, default=0.12, help="the chance of a fault at each tick (default 0.12)")
    parser.add_argument("--keep", type=Path, help="keep each seed's state file and log under this folder")
    parser.add_argument("--config", type=Path, help="the folder of settings.yaml and bots.yaml (default: config/)")
    args = parser.parse_args(argv)
    if (args.seed is None) == (args.seeds is None):
        parser.error("give --seed S or --seeds A-B")
    seeds = [args.seed] if args.seed is not None else seed_range(args.seeds)
    failed = 0
    for seed in seeds:
        chaos = run_seed(seed, args.ticks, fault_rate=args.rate, keep=args.keep, config_dir=args.config)
        if chaos.violations:
            failed += 1
            print(describe(chaos), flush=True)
        else:
            print(f"seed {seed}: ok ({len(chaos.history)} faults, {chaos.entries_checked} entries sent)", flush=True)
    if len(seeds) > 1:
        print(f"{failed} of {len(seeds)} seeds broke an invariant")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
