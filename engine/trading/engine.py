"""The trading engine: one tick, as data flows (ARCHITECTURE.md "One tick"). Orchestration only; each step
lives in a module named for it.

 1. one broker snapshot; failures counted in the ExitBot's health window
 2. orders brought up to date (orders.py: fills move the bots' owned positions); start-up reconciliation
 3. the TickView (view.py): everything the tick needs from SQLite, in a few bulk queries
 4. the ExitBot (exitbot.py): anomalies, expired halts, kill conditions; the system machine steps
 5. the PortfolioBot (portfolio.py): today's budgets; its machine steps
 6. every bot: its facts (facts_builder.py, preflight included), then its machine steps
 7. actions dispatched from a registry (handlers.py); entries pass the risk gate (gate.py)
 8. one SQLite transaction: machine states, order intents, counters (and the simulated exchange)
 9. intents sent with deterministic client_order_ids; the broker's answers recorded
10. JSONL: transitions, blocked entries, preflight changes, order events, halts, a `tick` event
An exception anywhere in a tick is caught at the tick boundary and halts the system; it is never "logged and
ignored". The halt is in SQLite, so it survives a restart. A state file found damaged in a tick also ends the
run (the error goes on up once the halt is recorded, if the file still takes it).
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import gc
import marshal
import operator
import sqlite3
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from types import MappingProxyType
from typing import Any
from zoneinfo import ZoneInfo

from engine.brokers.base import Asset, Broker, BrokerError, DataNeeds, Position, Quote, Snapshot
from engine.config.checks import trading_bots
from engine.config.loader import Config
from engine.core import failpoints
from engine.core import order_lifecycle as lifecycle
from engine.core.clock import Clock
from engine.core.journal import Journal
from engine.core.store import SYSTEM_SCOPE, OrderRow, StateFileError, StateStore
from engine.machines.runtime import MachineModel, MachineRuntime, StepResult, build_runtime
from engine.machines.spec import MachineSpec
from engine.rules.book import CompiledRules, RuleBook
from engine.rules.facts import BOT_FACTS, SETTINGS_FACTS, SYSTEM_FACTS, settings_values
from engine.strategy import output, process_state
from engine.trading import entries, events, kept, reconcile, unsaved
from engine.trading.basis import DailyBasis
from engine.trading.bots import Bot, make_bot
from engine.trading.exitbot import ExitBot, KillVerdict, unexplained
from engine.trading.facts_builder import (
    BotInputs,
    Facts,
    FeedHealth,
    SignalAnswer,
    SystemInputs,
    TickBots,
    ask_signal,
    bot_facts,
    close_margin_minutes,
    feed_health,
    finite,
    fresh_window,
    history_gap_seconds,
    slow_reads,
    stale_at_send,
    system_facts,
    usable_quotes,
)
from engine.trading.gate import Gate
from engine.trading.handlers import TickContext, dispatch, flatten_shared
from engine.trading.orders import OrderManager
from engine.trading.portfolio import PortfolioBot
from engine.trading.preflight import PreflightTiers, TickPreflight
from engine.trading.startup import orphaned_halts, unmanaged, vanished_state
from engine.trading.universe import crypto_assets, data_needs
from engine.trading.view import TickView, read_view

# System-wide facts that the risk gate counts down within a tick: they differ from one bot to the next.
PER_BOT_SYSTEM_FACTS = frozenset({"orders_last_minute", "capital_room_usd"})
# The facts `why` keeps of each bot every tick (the rest are the system's, or config values from bots.yaml).
WHY_BOT_FACTS: tuple[str, ...] = (*(f.name for f in BOT_FACTS), *sorted(PER_BOT_SYSTEM_FACTS))
LAST_FACTS_SCOPE = "tick"  # the one row of `last_facts` the engine writes
ASSETS_RETRY_SECONDS = 60.0  # a crypto pair left out of /v2/assets is asked for again after this
RECONCILIATION = "reconciliation: "  # how a start-up reconciliation halt's reason begins
KEYS_REFUSED = "the broker refused the API keys"  # how the halt for refused keys begins: one a spell


GC_YOUNG_THRESHOLD = 50_000  # allocations between two collections of the young generation (Python's default: 700)


def freeze_long_lived() -> None:
    """Called once the engine is built, before the loop (`python -m engine run`, a backtest, the benches).

    Everything built so far (config, compiled rules, machines, the simulated exchange) lives as long as the
    process; moving it out of the cyclic collector's sight keeps its full collections (65 ms at 1,000 bots,
    measured) out of the tick. Then the young generation is collected every 50,000 allocations instead of every
    700: a tick allocates tens of thousands of short-lived containers that reference counting frees, and at
    1,000 bots the collector ran 3.5 times a tick to find next to nothing (56 objects in 200 ticks; 0.33 ms a
    tick). Cycles are still collected, only less often."""
    gc.collect()
    gc.freeze()
    _young, middle, old = gc.get_threshold()
    gc.set_threshold(GC_YOUNG_THRESHOLD, middle, old)


class StartupError(Exception):
    """The engine cannot start safely (e.g. SQLite holds a state the machines no longer have)."""


@dataclass
class TickReport:
    at: datetime
    duration_ms: float
    broker_requests: int
    transitions: int
    system_state: str
    error: str | None = None
    queries: int = 0


@dataclass
class Engine:
    config: Config
    book: RuleBook
    machines: Mapping[str, MachineSpec]
    broker: Broker
    store: StateStore
    journal: Journal
    clock: Clock
    on_persist: Callable[[], None] | None = None  # called inside the tick transaction (the sim saves its exchange there)
    # False: the log is flushed by the caller, not at the end of every tick. A backtest's log is read when it ends,
    # not tailed while it runs, and a write to the file every tick was a tenth of a one-symbol backtest's tick.
    flush_each_tick: bool = True
    reconciled: bool = False
    ticks: int = 0
    transitions: int = 0
    bots: list[Bot] = field(default_factory=list)
    # Recent mids by symbol, oldest first. Lost at a restart, safely: a signal without its history yet does not fire.
    _history: dict[str, tuple[float, ...]] = field(default_factory=dict)
    _remembered_at: datetime | None = None  # the tick whose prices `_history` ends with

    def __post_init__(self) -> None:
        settings = self.config.settings
        self.tz = ZoneInfo(settings.system.timezone)
        self.settings_facts = settings_values(settings)
        self.runtimes: dict[str, MachineRuntime] = {}
        self.compiled: dict[str, CompiledRules] = {}
        for kind, spec in self.machines.items():
            self.runtimes[kind], self.compiled[kind] = build_runtime(spec, self.book)
        self.exitbot = ExitBot(self.config, self.store, self.journal, self.runtimes["system"], self.compiled["system"])
        self.daily_basis = DailyBasis(self.store)
        self.portfolio = PortfolioBot(
            self.config.bots, settings.risk.global_max_daily_loss_pct, settings.safety.allow_budget_fallback
        )
        self.portfolio_model = MachineModel("portfolio")
        self.bots = [make_bot(bot, self.book) for _path, bot in trading_bots(self.config.bots) if bot.enabled]
        self._by_id = {bot.bot_id: bot for bot in self.bots}
        self.needs = data_needs(self.config.bots, self.config.settings)
        # how long before a close a bot whose window reaches it is treated as past it: a tick must fall in it
        # (a backtest, which ticks once a bar, sets its own)
        self.close_margin = close_margin_minutes(settings.runner.loop_interval_seconds)
        # the longest time between two ticks whose prices are still one a tick apart (`_remember_prices`): the loop's
        # interval and the staleness limit (a backtest, which ticks once a bar, sets its own)
        self.history_gap_s = history_gap_seconds(settings.runner.loop_interval_seconds, settings.health)
        # the crypto pairs' rules (`_read_assets`): read again at start, and no crypto entry is sized until they are
        self.assets: Mapping[str, Asset] | None = None
        self._assets_read_on: date | None = None
        self._assets_retry_at: datetime | None = None  # a pair missing from the last read: asked again from then
        self.orders = OrderManager(self.store, self.broker, self.journal, self.clock, self._record_failure, self.tz)
        self.orders.quote_max_age_s = settings.health.max_price_staleness_seconds  # a stale quote bands no fill
        self._keep = max((b.history for b in self.bots), default=0) + 2  # each signal's history (`Bot.history`)
        self._halt_writes_seen = 0
        self._unexplained_at_start: list[str] = []  # what start-up reconciliation last halted for
        # The subjects it last found on symbols with orders of ours working, waiting for one more read (`_reconcile`):
        # kept in the state file (`_restore_kept`), or a restart every tick waited again every time and never halted.
        self._unconfirmed: list[str] = []
        self._unconfirmed_changed = False
        self._view: TickView | None = None  # the last tick's, whose records are reused when nothing was written
        self._moves: list[tuple[str, str, str, datetime]] = []  # machine states changed this tick, not yet saved
        # (bot, symbol) -> (owned, sent) of the last exit sized below what the bots own (handlers._exit_qty): only
        # what was said in the log, so a restart says it once more
        self.exits_limited: dict[tuple[str, str], tuple[float, float]] = {}
        # The broker's positions as last read: exits are sized against them while a read fails (handlers._sellable).
        # Lost at a restart, safely: with none read yet an exit waits for a read (it is never sized blind).
        self.last_positions: tuple[Position, ...] | None = None
        self.last_positions_at: datetime | None = None
        # what the data API refused the account the last tick (`_note_denied`): ("option_chain", underlying), and
        # (operation, None) for quotes
        self._denied: frozenset[tuple[str, str | None]] = frozenset()
        self._split_preflight()
        self._refuse_unmanaged()
        self.store.keep_tick_reads = True  # this engine is the only writer of its orders and positions (the run lock)
        if self.flush_each_tick:  # a backtest's log is read when it ends: it is written in batches
            self.store.after_commit = self._log_committed
        self._restore_states()
        self._restore_kept()

    @property
    def system(self) -> MachineModel:
        return self.exitbot.model

    def bot(self, bot_id: str) -> Bot:
        return self._by_id[bot_id]

    def trading_date(self, now: datetime) -> date:
        return now.astimezone(self.tz).date()

    def _split_preflight(self) -> None:
        """Each kind's preflight checks in their tiers (engine/trading/preflight.py)."""
        shared_facts = {f.name for f in (*SYSTEM_FACTS, *SETTINGS_FACTS)} - PER_BOT_SYSTEM_FACTS
        self._preflight_tiers = {
            kind: PreflightTiers.split(self.compiled[kind], shared_facts, shared_facts | PER_BOT_SYSTEM_FACTS)
            for kind in {bot.kind for bot in self.bots}
        }
        self._preflight: dict[str, TickPreflight] = {}  # this tick's, by kind

    def _refuse_unmanaged(self) -> None:
        """A position or working order saved for a bot this bots.yaml removed, renamed, disabled or gave another
        kind: nobody would manage its exit (or the wrong rules would), and reconciliation cannot tell, since SQLite
        explains it; and a halt until `resume` of a bot removed or renamed (`startup.orphaned_halts`). `--validate`
        says so too (validate.persisted_state_problems)."""
        found = unmanaged(self.config.bots, self.store.positions(), self.store.orders(statuses=lifecycle.OPEN))
        found += orphaned_halts(self.config.bots, self.store.halts(open_only=True))
        if found:
            raise StartupError("\n".join(f"{self.store.path}: {line}" for _where, line in found))  # one line each

    def _restore_states(self) -> None:
        saved = {(s.kind, s.bot_id): s.state for s in self.store.machine_states()}
        models = [("system", self.system), ("portfolio", self.portfolio_model)]
        models += [(bot.kind, bot.model) for bot in self.bots]
        for kind, model in models:
            state = saved.get((kind, model.bot_id))
            spec = self.machines[kind]
            if state is not None and state not in spec.states:
                raise StartupError(f"{self.store.path}: {vanished_state(kind, model.bot_id, state, str(spec.doc.path))}")
            self.runtimes[kind].add(model, state)  # restored without running any action
            if state is None:
                self.store.save_machine_state(kind, model.bot_id, model.state, self.clock.now())

    def _restore_kept(self) -> None:
        """The counts and timers a fail-closed rule reads that an earlier run kept in the state file (kept.py): the
        broker failures' window, the exits the broker refused lately, start-up reconciliation's wait, the order path's
        patience with orders the broker took and no longer shows (OrderManager.restore_watch). What else this
        engine keeps only in memory is safe to lose, each where it is kept says why: the order rate is counted from
        the state file's orders (`view.read_view`); the prices' history, the crypto pairs' rules, the positions last
        read and `reconciled` start empty, which only holds entries and exits back until they are read again."""
        now = self.clock.now()
        self.exitbot.restore_failures(now)
        self.orders.restore_refused_exits(now)
        self.orders.restore_watch(now, self.trading_date(now))
        waiting = kept.unconfirmed(self.store, now, self.trading_date(now))
        if waiting is None:  # unreadable: nothing waits, a difference found at start halts at once
            self._unconfirmed, self._unconfirmed_changed = [], True
        else:
            self._unconfirmed = waiting

    def _kept_changed(self) -> bool:
        return self.exitbot.failures_changed or self._unconfirmed_changed or self.orders.watch_changed

    def _save_kept(self, now: datetime, *, again: bool = False) -> None:
        """What `_restore_kept` reads, written inside the caller's transaction when it changed (`again`: the
        transaction that held the last write was rolled back)."""
        self.exitbot.save_failures(now, again=again)
        self.orders.save_watch(now, self.trading_date(now), again=again)
        if self._unconfirmed_changed or again:
            kept.save_unconfirmed(self.store, now, self.trading_date(now), self._unconfirmed)
            self._unconfirmed_changed = False

    def _log_committed(self) -> None:
        """A commit's events (fills, halts, transitions, intents) go to the log as it commits: a tick commits in
        several transactions (each order's fills in sync, then its own) and asks the broker more after them
        (lookups, the crypto pairs' assets, reconciliation's reads), and a kill in one of those requests left
        SQLite holding what the log, its events still in the buffer, never said. A log that cannot take them now
        (a full disk) is not this commit's error: they stay held, and the flush that must succeed (before an
        order leaves, at the tick's end) raises it."""
        with contextlib.suppress(OSError):
            self.journal.flush()

    def _record_failure(self, error: BrokerError) -> None:
        """Every broker failure counts towards `api_failure_halt` (a request held back, unsent, during a server's
        rate-limit hold is logged but not counted again: `ExitBot.record_failure`). Two halt at once: the broker refusing our keys
        (they will not fix themselves, and every order would be refused), and an answer the engine cannot read
        (a number that is not one, a field missing, pages that never end): not a failure to reach the broker
        that a retry fixes, but a broker, or something between it and us, saying what we do not understand.
        Unknown means halt; the halt's cooloff ends it, and the system re-arms once the answers read again."""
        now = self.clock.now()
        self.exitbot.record_failure(error, now)
        if error.reason == "unauthorized" and not self._keys_halt_in_force(now):
            self._record_system_halt(now, f"{KEYS_REFUSED} ({error.operation}: {error.message})", "unauthorized")
        elif error.kind == "bad_response" and self.system.state != "halted":
            reason = f"the broker's answer could not be read ({error.operation}: {error.message})"
            self._record_system_halt(now, reason, "bad_response")

    def _keys_halt_in_force(self, now: datetime) -> bool:
        """Whether a halt for refused keys holds the system: one is recorded a spell, not a failed request. Once a
        process was not enough: keys still refused when that halt's cooloff ran out held the system only by the
        failures' count, and `status` named no refused keys."""
        return any(
            h.in_force(now) and h.reason.startswith(KEYS_REFUSED) for h in self.store.halts(SYSTEM_SCOPE, open_only=True)
        )

    def halt_for_log(self, error: OSError) -> None:
        """The log cannot take the run's events (a full disk, past the file size limit, read-only, a folder put in
        its place): no order may leave without its event on disk, so the run stops, and the system halt is recorded
        in the state file first (if it still takes it), where the next start and `status` read it. The run used to
        stop with no halt recorded, and the next start traded on from a log that had lost the end of this run.
        What the log could not take stays unsaid; a state file that refuses the halt too is the log's error's
        companion, said as `halt_not_saved` (which the log may not take either)."""
        now = self.clock.now()
        reason = f"the log cannot be written: {error}"
        try:
            if any(str(error) in h.reason for h in self.store.halts(SYSTEM_SCOPE, open_only=True) if h.in_force(now)):
                return  # halted for it already: the tick's own exception (`tick`), or a run before this one
            self._record_system_halt(now, reason, "anomaly")
        except Exception as saving:
            with contextlib.suppress(Exception):
                self._say_not_saved(now, reason, saving)

    def halt_for_state_file(self, error: StateFileError) -> None:
        """A write of the run's own outside a tick (a real-time run's `last_tick_at`) that the state file refused:
        the run stops, and as for a tick's exception (`tick`) the system halt is recorded if the file still takes
        it, else logged as `halt_not_saved`, which the next start records (engine/trading/unsaved.py). It stopped
        with no halt anywhere, and the next start, the disk freed, traded on without a word."""
        now = self.clock.now()
        reason = f"the state file cannot be written: {error.message}"
        try:
            self._record_system_halt(now, reason, "anomaly")
        except Exception as saving:
            with contextlib.suppress(Exception):
                self._say_not_saved(now, reason, saving)

    def _say_not_saved(self, now: datetime, reason: str, saving: BaseException) -> None:
        """A system halt decided now that the state file refused, logged with its scope and end (the end
        `ExitBot.anomaly_halt` gives it): the next start records it from there (engine/trading/unsaved.py)."""
        self.journal.log(unsaved.NOT_SAVED, reason=reason, error=f"{type(saving).__name__}: {saving}",
                         scope=SYSTEM_SCOPE, until=self.exitbot.anomaly_until(now))  # fmt: skip
        with contextlib.suppress(Exception):
            self.journal.flush()

    def _record_system_halt(self, now: datetime, reason: str, trigger: str) -> None:
        with self.store.transaction():
            source = self.exitbot.anomaly_halt(now, reason)
            if source is not None:
                self._record_transition("system", "system", source, "halted", trigger, (), now)
            self._save_moves()

    # --- the tick ------------------------------------------------------------------------------------------

    def tick(self) -> TickReport:
        started = time.perf_counter()
        now = self.clock.now()
        transitions_before, queries_before = self.transitions, self.store.statements
        requests = 0
        error = None
        try:
            requests, now = self._tick()
        except Exception as exc:  # the tick boundary: any exception halts the system, with the reason
            error = f"{type(exc).__name__}: {exc}"
            self.journal.log("anomaly", what="exception", detail=error)
            try:
                self.orders.rolled_back()  # its cancels and the intents it recorded, with the transaction
                with self.store.transaction():
                    self._moves.clear()  # the tick's transaction was rolled back with them
                    source = self.exitbot.anomaly_halt(now, f"exception in tick: {error}")
                    if source is not None:
                        self._record_transition("system", "system", source, "halted", "anomaly", (), now)
                    self._save_moves()
                    self._save_kept(now, again=True)  # the tick's transaction may have held their last write
            except Exception as saving:  # the halt and its transition are in the log already: say they are not saved
                self._say_not_saved(now, f"exception in tick: {error}", saving)
                raise
            if isinstance(exc, StateFileError) and not exc.runtime:
                # A damaged state file is not an anomaly of one tick: every later tick met it again while the run
                # went on halted, read its records from a file that no longer holds them whole, and ended 0. The
                # halt is recorded if the file still takes it; then the error goes up and the run stops (exit 2).
                with contextlib.suppress(Exception):
                    self.journal.flush()
                raise
        self.ticks += 1
        report = TickReport(
            now,
            (time.perf_counter() - started) * 1000,
            requests,
            self.transitions - transitions_before,
            self.system.state,
            error,
            self.store.statements - queries_before,
        )
        self.journal.log(
            "tick",
            duration_ms=round(report.duration_ms, 3),
            broker_requests=report.broker_requests,
            transitions=report.transitions,
            system=self.system.state,
            error=error,
        )
        if self.flush_each_tick or error is not None:
            self.journal.flush()
        return report

    def _tick(self) -> tuple[int, datetime]:
        """One tick; returns the broker requests it made and the tick's time.

        The tick's time is read once the snapshot is: everything is decided then, on reads as old as they are then.
        Read before it, a snapshot whose reads took long (a slow broker, the process suspended mid-read) had its
        quotes stamped after the tick's time, and quotes newer than the tick read as stamped in the future: stale,
        the feed halted (data_stale_halt, the kill switch's cooloff) while every quote was the newest there was.
        Reads that took longer than the staleness limit are a failed read (`slow_reads`), not a stale feed."""
        snapshot = self.broker.snapshot(self.needs)
        now = self.clock.now()
        slow = slow_reads(snapshot, now, self.config.settings.health.max_price_staleness_seconds)
        if slow is not None:  # reads spread over longer than the staleness limit: a failed read, not a stale feed
            snapshot = dataclasses.replace(snapshot, errors=(*snapshot.errors, slow))
        refused = self.daily_basis.refused(snapshot.account, now)
        if refused is not None:  # a last_equity an earlier run of the day did not read: the account is not read
            snapshot = dataclasses.replace(snapshot, account=None, errors=(*snapshot.errors, refused))
        calls_before = self._broker_calls()  # the snapshot counts its own requests
        if snapshot.positions is not None:
            self.last_positions, self.last_positions_at = snapshot.positions, now
        for err in snapshot.errors:
            self._record_failure(err)
        if snapshot.chains_denied or snapshot.quotes_denied or self._denied:
            self._note_denied(snapshot)
        self.orders.sync(snapshot)
        reconcile.adopt_fee_shortfalls(self.store, self.journal, snapshot, self.orders.bought_this_tick, self.orders.unsettled)
        if self._assets_read_on != self.trading_date(now) and (self._assets_retry_at is None or now >= self._assets_retry_at):
            self._read_assets(self.trading_date(now), now)
        usable = usable_quotes(snapshot, self.config.settings.health.max_spread_pct)  # judged once a tick
        self._remember_prices(usable, now)
        if not self.reconciled:
            self._reconcile(snapshot)
        view = self._view = read_view(self.store, snapshot, now, self.tz, self._view)
        signals = self._ask_signals(view)  # the user's code, each call up to its budget: the write lock not yet taken
        with self.store.transaction():
            # Read again (only what another process committed meanwhile: the same view otherwise): an operator's
            # halt written while the signals ran must stop this tick's entries, not only their send. Read inside
            # the transaction, whose write lock no other process can commit past: read before it, a halt committed
            # while this BEGIN waited on the halt's own write lock was missed, and the tick recorded its entries.
            view = self._view = read_view(self.store, snapshot, now, self.tz, view)
            self._halt_writes_seen = self.store.halt_writes
            moved = self.orders.moved_this_tick()
            anomalies = self.exitbot.anomalies(snapshot, view, self._with_records(view), self.reconciled, moved)
            self.exitbot.end_expired(view)
            view = self._halts_as_written(view)
            stale = feed_health(snapshot, self.needs, now, self.config.settings.health)
            before_kills = self._system_facts(view, anomalies, stale, kill_triggered=False)
            unknown = snapshot.account.non_trade_cash_unknown if snapshot.account else None
            notes = {"stale_markets": ", ".join(stale.markets)} | ({"daily_pnl_pct": unknown} if unknown else {})
            kills = self.exitbot.evaluate_kills(before_kills, notes)
            allocations = self.portfolio.allocate(finite(snapshot.account.equity) if snapshot.account else None)
            gate = Gate.open(view.orders_last_minute, allocations.deployable_usd if allocations else None, snapshot)
            tick = TickContext(self, view, gate, kills)
            # The kill switch's verdict is the one fact it changes (evaluating kill conditions writes nothing).
            system = {**before_kills, "kill_triggered": bool(kills.holding)}
            system_state, system_view = self.system.state, view
            self._step("system", self.system, system, tick)
            tick.view = view = self._halts_as_written(view)
            if kills.holding and not self.exitbot.kill_recorded(kills, view):
                self._kill_outside_machine(kills, system_state, view.now)
                tick.view = view = self._halts_as_written(view)
            if view is not system_view or self.system.state != system_state:  # a halt written or ended, a move
                system = self._system_facts(view, anomalies, stale, kill_triggered=bool(kills.holding))
            # armed, and no system halt in force: a machine may be left armed by a halt its step did not take
            tick.system_armed = self.system.state == "armed" and not view.system_halts
            self._step("portfolio", self.portfolio_model, system, tick)
            self.log_allocations(view.day, asked=False)
            self._step_bots(view, system, tick, usable, signals)
            tick.view = view = self._halts_as_written(view)  # a bot halted just now is closed this tick, not the next
            duties, shared = self.exitbot.duties(view, self._with_records(view), self.system.state == "halted")
            for intent in duties:
                dispatch(tick, intent)
            for symbol, holders in shared.items():
                flatten_shared(tick, symbol, holders)
            self._save_moves()
            self._save_kept(now)
            if self.on_persist is not None:
                self.on_persist()
        self.orders.tick_committed()
        failpoints.reach("tick_committed")  # the tick's states, intents and cancels asked for committed; none sent
        # before reconciliation no entry leaves (the system is not armed); the exits recorded meanwhile go out at
        # the next tick's recovery, looked up first (OrderManager.recover_pending), which needs the positions and
        # the open orders read, not the account (`_reconcile`)
        sent = self.orders.send_cancels()  # the kill switch's and the machines' cancels, the write lock released
        sent += self.orders.send_pending(self._entry_refusal(snapshot)) if self.reconciled else 0
        if sent and self.on_persist is not None:  # the simulated exchange now holds the orders just sent
            with self.store.transaction():
                self.on_persist()
        if self._kept_changed():  # a send, a cancel or a lookup after the tick's commit failed
            with self.store.transaction():
                self._save_kept(now)
        return snapshot.broker_requests + self._broker_calls() - calls_before, now

    def _entry_refusal(self, snapshot: Snapshot) -> Callable[[OrderRow], str | None]:
        """Why an entry may not leave in this tick (None: it may). An entry granted this tick passed its
        bot's preflight on this tick's snapshot; one held back behind an opposite order since an earlier tick
        (`OrderManager.send_pending`) was granted on that tick's, and went out later in a tick whose broker reads
        failed, with the system disarmed. Whatever the rules say, no entry leaves in a tick that read the broker
        incompletely, while the system is not armed, while its bot's preflight fails, or once the reads it was
        decided on are stale by the clock at its send (`stale_at_send`: the process suspended after the commit)."""
        if not snapshot.complete:
            failed = ", ".join(sorted({e.operation or e.kind for e in snapshot.errors}))
            return lambda _row: f"a broker read of this tick failed ({failed})"
        if self.system.state != "armed":
            state = self.system.state
            return lambda _row: f"the system is {state}, not armed"
        limit_s = self.config.settings.health.max_price_staleness_seconds

        def refusal(row: OrderRow) -> str | None:
            bot = self._by_id.get(row.bot_id)
            failed = bot.memory.last_failed_checks if bot is not None else None
            if bot is None or failed is None:
                return "its bot's preflight was not evaluated this tick"
            if failed:
                return f"its bot's preflight fails ({', '.join(failed)})"
            return stale_at_send(row, bot, snapshot, self.clock.now(), limit_s)

        return refusal

    def _kill_outside_machine(self, kills: KillVerdict, state: str, now: datetime) -> None:
        """A kill condition holds, no system halt in force records it (with its flatten, `ExitBot.kill_recorded`),
        and the machine's step wrote none: the system was already halted for something else (an operator's halt,
        a stale feed's, an anomaly's: the `kill` edge leaves only `idle` and `armed`), or the machine file has no
        `kill` edge from that state, one listed after another that fired first, or one without `record_halt`. The
        kill switch does not depend on the edges drawn, nor on the halts already in force: the ExitBot writes the
        halt itself (entries stop this tick, its flatten sells this tick; the machine enters `halted` through
        `halt_active` next tick). A machine that could not halt from `state` is said once (`kill_outside_machine`);
        one already halted has nothing to say but the halt's own event."""
        if state != "halted":
            self.journal.log("kill_outside_machine", state=state, conditions=list(kills.holding))
        self.exitbot.record_kill(kills, now)

    def _with_records(self, view: TickView) -> list[str]:
        """The bots SQLite holds anything about today, in config order: the only ones the ExitBot has to look
        at (a bot with no record has no halt, no counter, no order and no position)."""
        if len(view.bots) >= len(self._by_id):
            return list(self._by_id)
        return [bot_id for bot_id in self._by_id if bot_id in view.bots]

    def _halts_as_written(self, view: TickView) -> TickView:
        """The view with the halts the ExitBot wrote or ended since it was read (re-read only if any)."""
        if self.store.halt_writes == self._halt_writes_seen:
            return view
        self._halt_writes_seen = self.store.halt_writes
        return view.with_halts(tuple(self.store.halts(open_only=True)))

    def _system_facts(self, view: TickView, anomalies: int, stale: FeedHealth, *, kill_triggered: bool) -> Facts:
        inputs = SystemInputs(
            settings_facts=self.settings_facts,
            feed=stale,
            reconciled=self.reconciled,
            system_state=self.system.state,
            api_failures=self.exitbot.failures_in_window(view.now),
            anomalies=anomalies,
            portfolio_enabled=self.config.bots.portfoliobot.enabled,
            kill_triggered=kill_triggered,
        )
        return system_facts(view, inputs)

    def _ask_signals(self, view: TickView) -> dict[str, SignalAnswer]:
        """Every bot's signal, asked in config order before the tick's transaction opens (`ask_signal` says why).
        The prices they read are read-only to them; `_remember_prices` alone changes them. What they print is
        logged as `signal_output`, never written where the log may be (engine/strategy/output.py)."""
        history = MappingProxyType(self._history)
        answers: dict[str, SignalAnswer] = {}
        with output.captured() as printed:
            settled = process_state.Baseline()  # what no signal may change in the process: once for all of them
            for bot in self.bots:
                printed.bot = bot.bot_id
                answers[bot.bot_id] = ask_signal(view, bot, history, settled)
        if printed.text:
            for bot_id, streams in printed.by_bot().items():
                self.journal.log("signal_output", bot=bot_id, **streams)
        return answers

    def _step_bots(
        self, view: TickView, system: Facts, tick: TickContext, usable: Mapping[str, Quote], signals: Mapping[str, SignalAnswer]
    ) -> None:
        """Each bot in turn, gated one by one: what one bot is granted, the next one sees."""
        history = MappingProxyType(self._history)  # read-only for the bots; `_remember_prices` alone changes it
        # What `why` reads: this tick's facts, saved in its transaction as one record: the system's facts, and for
        # each bot only its own, as values in WHY_BOT_FACTS order (its config facts come from bots.yaml). At 1,000
        # bots this costs about 1 ms a tick; a row a bot cost 3.5 ms, a JSON dict of every fact 13 ms.
        explained: dict[str, tuple[Any, ...]] = {}
        own_facts = operator.itemgetter(*WHY_BOT_FACTS)
        account = view.snapshot.account
        equity = finite(account.equity) if account else None
        for kind, tiers in self._preflight_tiers.items():  # every kind some enabled bot has
            self._preflight[kind] = tiers.for_tick(system)
        inputs = BotInputs(
            history,
            self.portfolio.budgets(equity, self.portfolio_model.state),
            tick.gate,
            {kind: preflight.failed for kind, preflight in self._preflight.items()},
            self.assets or {},
            usable,
            signals,
            self.close_margin,
            TickBots(view, system, self.close_margin),  # what the bots share, worked out once for all of them
        )
        day, runtimes = view.day, self.runtimes
        reads_failed = not system["broker_ok"]  # a system fact, in every bot's facts as it is here (`_step`)
        faulted: dict[str, str] = {}  # a fault building a bot's facts -> the first bot it hit this tick
        for bot in self.bots:
            bot_id, memory, model = bot.bot_id, bot.memory, bot.model
            try:
                evaluated = bot_facts(view, bot, system, inputs)  # reads only: nothing is written before it returns
            except Exception as exc:
                if isinstance(exc, (sqlite3.Error, MemoryError, RecursionError)):  # the state file's, the process's
                    raise
                # data this bot's facts cannot be built from (an option chain, a position): the bot halts, and the
                # others, with every exit, go on; a fault that stopped the whole tick would stop those every tick.
                # The same fault in a second bot is the engine's, not one bot's data: the tick boundary's, which
                # halts the system without closing anything (halting bot after bot would sell what each holds).
                error = f"{type(exc).__name__}: {exc}"
                first = faulted.setdefault(error, bot_id)
                if first != bot_id:
                    raise RuntimeError(f"the same fault building the facts of {first} and {bot_id}: {error}") from exc
                self._halt_for_fault(bot, f"its facts could not be built: {error}", "facts_error", error, view)
                continue
            facts, plan, failed, signal_error, unsized = evaluated  # a BotFacts, unpacked at once
            if signal_error is not None:  # the user's words: the keys masked, then cut (`quoted`)
                failure = self.journal.scrubbed(signal_error)
                self._halt_for_fault(bot, f"signal failed: {failure}", "signal_error", failure, view)
                facts["bot_halted"] = True  # as it now is: its machine halts, never asks the missing signal
            tick.evaluated = {bot_id: evaluated}  # read by this bot's entry only; the rest are freed at once
            if failed != memory.last_failed_checks or (facts["entry_signal"] and plan is None):
                self._remember(bot, facts, failed, unsized, day)
            result = runtimes[bot.kind].step(model, facts, reads_failed=reads_failed)  # `_step`, inlined
            if result.source != result.dest or result.error is not None or result.intents:
                self._stepped(bot.kind, model, result, tick)
            # a sizing reason may carry its kind (`entries.Figured`, a str subclass): marshal takes plain str only
            explained[bot_id] = (own_facts(facts), failed, memory.last_denial, None if unsized is None else str(unsized))
        # Encoded when written (`save_last_facts`: a backtest writes one record in hundreds); nothing in it is
        # changed after this tick: `system` is not written to again, and every value is a fact's scalar.
        record = functools.partial(marshal.dumps, (system, WHY_BOT_FACTS, explained))
        self.store.save_last_facts([(LAST_FACTS_SCOPE, view.now, record)])

    def _halt_for_fault(self, bot: Bot, reason: str, condition: str, error: str, view: TickView) -> None:
        """A fault of this bot alone: its signal (the user's code) raised or gave no True/False answer, or its facts
        could not be built. The bot is halted, as for a guard that fails, until the operator resumes it (the code
        or the data needs looking at); the kill switch closes its positions. Said once, when the halt is written:
        the same fault again while the bot is halted adds nothing."""
        if view.bot(bot.bot_id).halt is not None or self.store.halt_in_force(bot.bot_id, view.now, pauses=False):
            return  # a pause is no halt for this: a paused bot's fault halts it, and its positions are closed
        if condition == "signal_error":
            self.journal.log(condition, bot=bot.bot_id, signal=bot.config.signal.mode, error=error)
        else:
            self.journal.log(condition, bot=bot.bot_id, error=error)
        self.exitbot.halt_bot(bot.bot_id, reason=reason, condition=condition, now=view.now)

    def _remember(self, bot: Bot, facts: Facts, failed: tuple[str, ...], unsized: str | None, day: date) -> None:
        """Log what changed since the last tick: preflight's answer, an unsizeable signal (once a day for each
        reason: a reason said early, the budget before the bot's window, hid a later one, chain rules that select
        no contract, for the rest of the day)."""
        memory = bot.memory
        if failed != memory.last_failed_checks:
            errors = {}
            if self._preflight[bot.kind].raised:  # only a failing check can have raised: those are asked again
                compiled = self.compiled[bot.kind]
                errors = compiled.check_errors({name: compiled.preflight[name] for name in failed}, facts)
            self.journal.log("preflight", bot=bot.bot_id, ok=not failed, failed=list(failed), errors=errors)
            memory.last_failed_checks = failed
        if facts["entry_signal"] and unsized is not None:
            # once a day for each reason until an entry is granted: the reason (budget or capital used up, no
            # contract in the chain rules) rarely changes sooner; its figures (the budget left) change every tick,
            # so it is known by its words alone (`entries.reason_kind`), said with the figures it first had
            if memory.size_blocked_on != day:
                memory.size_blocked_on = day
                memory.size_blocked_for.clear()
            kind = entries.reason_kind(unsized)
            if kind not in memory.size_blocked_for:
                self.journal.log("entry_blocked", bot=bot.bot_id, failed=["size"], reason=unsized)
                memory.size_blocked_for.add(kind)

    def _step(self, kind: str, model: MachineModel, facts: Mapping[str, Any], tick: TickContext) -> StepResult:
        result = self.runtimes[kind].step(model, facts, reads_failed=not facts["broker_ok"])
        if result.source != result.dest or result.error is not None or result.intents:
            self._stepped(kind, model, result, tick)
        return result

    def _stepped(self, kind: str, model: MachineModel, result: StepResult, tick: TickContext) -> None:
        """What a step that did something leads to: its errors logged (a bot's guard error halts it), its
        transition recorded, its intents dispatched."""
        now = tick.view.now
        if result.deferred:  # the broker failed us this tick; api_failure_halt deals with it if it goes on
            self.journal.log("step_deferred", machine=kind, bot=model.bot_id, state=result.source, error=result.error)
        elif result.error:
            self.journal.log("guard_error", machine=kind, bot=model.bot_id, error=result.error, state=result.dest)
            if kind not in ("system", "portfolio") and tick.view.bot(model.bot_id).halt is None and (
                self.store.halt_in_force(model.bot_id, now, pauses=False) is None  # halted since the view was read: once
            ):
                self.exitbot.halt_bot(model.bot_id, reason=f"guard failed: {result.error}", condition="guard_error", now=now)
        if result.source != result.dest:
            trigger = result.transition.trigger if result.transition else "forced_halt"
            self._record_transition(kind, model.bot_id, result.source, result.dest, trigger, result.guards_held, now)
        for intent in result.intents:
            dispatch(tick, intent)

    def _record_transition(
        self, kind: str, bot_id: str, source: str, dest: str, trigger: str, guards: Sequence[str], now: datetime
    ) -> None:
        """Logged now, saved with the tick's other moves in one statement (`_save_moves`), inside the tick's
        transaction."""
        self.transitions += 1
        self._moves.append((kind, bot_id, dest, now))
        events.log_transition(self.journal, machine=kind, bot=bot_id, source=source, dest=dest, trigger=trigger, guards=guards)

    def _save_moves(self) -> None:
        self.store.save_machine_states(self._moves)
        self._moves.clear()

    def log_allocations(self, day: date, *, asked: bool) -> None:
        summary = self.portfolio.should_log(day, asked)
        if summary is not None:
            self.journal.log("allocation", **summary)

    def _broker_calls(self) -> int:
        api = getattr(self.broker, "api", None)
        return int(getattr(api, "requests_made", 0))

    def _remember_prices(self, usable: Mapping[str, Quote], now: datetime) -> None:
        """Each usable quote's mid onto its symbol's recent prices (the last `_keep`). Tuples, replaced rather than
        changed: what the signals read, and a bot's signal may keep what it was given.

        The prices are one a tick, and a signal reads them so (`lookback_ticks`): a gap between them made a price of
        minutes ago read as one of a few ticks ago. So after a gap longer than `history_gap_s` since the last tick
        (the process suspended, a tick that lasted, a clock stepped either way) every history starts again, and a
        symbol without a fresh price this tick (missing, not a price, or older than the staleness limit by the
        tick's clock: stale, it repeated an old mid tick after tick) starts again from its next one."""
        keep, recent = self._keep, self._history
        last, self._remembered_at = self._remembered_at, now
        if last is not None and not 0 <= (now - last).total_seconds() <= self.history_gap_s:
            recent.clear()
        cutoff, ahead = fresh_window(now, self.config.settings.health.max_price_staleness_seconds)
        if len(recent) > len(usable) or not recent.keys() <= usable.keys():
            for symbol in recent.keys() - usable.keys():
                del recent[symbol]
        for symbol, quote in usable.items():
            if not cutoff <= quote.timestamp <= ahead:
                recent.pop(symbol, None)
                continue
            prices = recent.get(symbol, ()) + (quote.mid,)  # noqa: RUF005  # concatenation: half the cost of unpacking
            recent[symbol] = prices[1:] if len(prices) > keep else prices

    def _note_denied(self, snapshot: Snapshot) -> None:
        """Data the data API refuses to this account (`Snapshot.chains_denied`, `quotes_denied`: the plan lacks the
        feed): logged as a `broker_error` once a spell (`counted: false`; a chain's with its underlying as `symbol`,
        quotes' with the `symbols` refused), never counted towards api_failure_halt. Counted, `options.feed: opra`
        without the subscription halted the whole account for its cooloff every three ticks, the stocks and crypto
        bots with it; only the bots that need that data are blocked (`data_permitted`)."""
        said: dict[tuple[str, str | None], tuple[BrokerError, list[str]]] = {}
        for underlying, error in snapshot.chains_denied.items():
            said[error.operation, underlying] = (error, [underlying])
        for symbol, error in snapshot.quotes_denied.items():
            said.setdefault((error.operation, None), (error, []))[1].append(symbol)
        for key, (error, symbols) in said.items():
            if key not in self._denied:
                where = {"symbol": key[1]} if key[1] is not None else {"symbols": sorted(symbols)}
                self.journal.log("broker_error", operation=error.operation, kind=error.kind, reason=error.reason,
                                 status=error.status, code=error.code, message=error.message, held=False, counted=False,
                                 **where)  # fmt: skip
        self._denied = frozenset(said)

    def _read_assets(self, day: date, now: datetime) -> None:
        """The crypto pairs' minimums and increments, read once a trading day (Alpaca moves them with the price).
        A failed read is tried again next tick; meanwhile the last ones read stand (none at start: no crypto entry
        can be sized). A read that leaves a pair out (not listed, not tradable, or one field of its answer
        unreadable: `get_assets` drops it) is read again ASSETS_RETRY_SECONDS later, not the next trading day:
        one bad answer kept the pair's entries unsized the whole day."""
        try:
            assets = crypto_assets(self.broker, self.needs.crypto)
        except BrokerError as exc:
            self._record_failure(exc)
            return
        self.assets = assets
        if any(pair not in assets for pair in self.needs.crypto):
            self._assets_retry_at = now + timedelta(seconds=ASSETS_RETRY_SECONDS)
            return
        self._assets_retry_at = None
        self._assets_read_on = day

    # --- start-up reconciliation ---------------------------------------------------------------------------

    def _ours_working(self, problems: Sequence[str]) -> bool:
        """Whether a position problem names a symbol on which an order of ours is still open here."""
        named = {s for s in map(_problem_symbol, problems) if s is not None}
        return bool(named) and any(row.symbol in named for row in self.store.orders(statuses=lifecycle.OPEN))

    def _reconcile(self, snapshot: Snapshot) -> None:
        """Recover committed intents, then compare SQLite with the broker. Unexplained halts.

        Needs the positions and the open orders, never the account: recovery sends the exits committed before a
        restart or recorded since (reduce-only, sized on the positions), and reconciliation compares positions and
        orders only. Waiting on the account too, a failing account read (or `DailyBasis.refused` hiding it for its
        confirmation ticks) held every stop loss, time stop and flatten `pending` after a restart, for as long as
        it failed. Entries still need every read: the system arms only on a usable account (`system_ready`), and
        no entry leaves in a tick that read the broker incompletely (`_entry_refusal`)."""
        if snapshot.positions is None or snapshot.open_orders is None:
            return  # try again next tick; the system stays unarmed meanwhile
        try:
            self.orders.recover_pending(snapshot.positions)
        except BrokerError as exc:
            self._record_failure(exc)
            return
        self._cancel_abandoned_entries()
        # Read again after the recovery (it may have found or sent orders): positions and open orders are all
        # reconciliation compares, so no quote and no chain is asked for (the account is read with them, unused).
        # Its failures count as the tick's do; and a list it could not read proves nothing (`unexplained` finds
        # nothing in it): taken as "nothing unexplained", a position nobody owned passed reconciliation, and the
        # system armed beside it.
        reread = self.broker.snapshot(DataNeeds())
        for err in reread.errors:
            self._record_failure(err)
        if reread.positions is None or reread.open_orders is None:
            return  # try again next tick; the system stays unarmed meanwhile
        # The re-read's orders are booked before it is compared: an order filling in parts (a gtc crypto order in a
        # thin book) may fill between the tick's orders read and the re-read's positions read, which then show a
        # part the bots did not own yet, at every restart tick, and the second halted on it. Booked, that part is
        # owned, and one filling between the re-read's two reads is within this tick's fills (`reconcile.mid_fill`).
        self.orders.sync(reread, again=True)
        problems = unexplained(self.store, reread, self.orders.moved_this_tick())
        subjects = [reconcile.subject(p) for p in problems]
        if problems and not set(subjects) <= set(self._unconfirmed) and self._ours_working(problems):
            # An order of ours on a symbol named is working here: it may have filled between this tick's reads
            # (exits go out while unreconciled; recovery sends what was committed), its fill not yet synced. A
            # second reconciliation halt named a sale of our own as a position no bot explained. The next tick,
            # its fill read, says whether the difference stays: the same differences again halt, whatever their
            # quantities now (compared as text, a position that moved every tick kept the engine unreconciled,
            # unarmed and without a halt for as long as it moved).
            self._unconfirmed_changed = self._unconfirmed_changed or subjects != self._unconfirmed
            self._unconfirmed = subjects
            return
        self._unconfirmed_changed = self._unconfirmed_changed or bool(self._unconfirmed)
        self._unconfirmed = []
        if problems:
            if problems == self._unexplained_at_start and self.system.state == "halted":
                return  # halted for exactly this; checked again every tick, and halted again when the halt ends
            self._unexplained_at_start = problems
            self.journal.log("anomaly", what="reconciliation", details=problems)
            now = self.clock.now()
            if self.system.state == "halted" and _named_by_a_halt(problems, self.store, now):
                return  # the same things, moved (an order of ours filling meanwhile): said above, not a new cooloff
            with self.store.transaction():
                source = self.exitbot.anomaly_halt(now, RECONCILIATION + "; ".join(problems))
                if source is not None:
                    self._record_transition("system", "system", source, "halted", "anomaly", (), now)
                self._save_moves()
            return
        self.reconciled = True
        self.journal.log("reconciled", positions=len(snapshot.positions), open_orders=len(snapshot.open_orders))


    def _cancel_abandoned_entries(self) -> None:
        """Working entries of a bot that is no longer entering, left by the run that died: its machine left
        `entering` (abandoned the entry, cancel_entry, or halted) and committed that, and the process ended before
        the cancel was sent (cancels go out after the tick's commit). Nothing else would ever cancel it: a GTC entry
        would work on, and fill, for a bot that gave it up. A halted bot's included: the ExitBot cancels entries
        only while a halt is in force, and one the operator ended meanwhile left the machine `halted` with its
        entry working, never flat, so never resumed. The cancel is asked again until the broker takes it.

        An entry still `unknown` (its POST's answer lost, and recovery's lookup not finding it yet: a listing that
        lags) is one too: wanted until a lookup finds it working, then cancelled (`cancel_entries`). Taken only once
        working, it was left out when the restart's reads lagged, and then worked on, found by the next sync."""
        stale = [
            row
            for row in self.store.orders(statuses=lifecycle.WORKING | {"unknown"})
            if row.purpose == "entry"
            and (bot := self._by_id.get(row.bot_id)) is not None
            and bot.model.state != "entering"
        ]
        if stale:
            self.journal.log("order", action="abandoned_at_restart", orders=[row.client_order_id for row in stale])
            self.orders.cancel_entries(stale)


def _problem_symbol(problem: str) -> str | None:
    """The symbol of a `position SYMBOL: ...` problem (`reconcile.unexplained`); None for an order's."""
    head = problem.split(":", 1)[0]
    return head[len("position "):] if head.startswith("position ") else None


def _named_by_a_halt(problems: Sequence[str], store: StateStore, now: datetime) -> bool:
    """Whether every problem is about a position or an order (`position AAPL: ...`) that a reconciliation halt in
    force already names: whatever other halts came since (an operator's, a kill condition's). A new one is not."""
    halts = store.halts(SYSTEM_SCOPE, open_only=True)
    reasons = [h.reason for h in halts if h.in_force(now) and h.reason.startswith(RECONCILIATION)]
    return bool(reasons) and all(any(f"{p.split(':', 1)[0]}:" in r for r in reasons) for p in problems)
