"""The ExitBot: the kill switch, and the only writer of halts.

Every halt, whoever asks for it (a kill condition, an anomaly, an exception at the tick boundary, a bot's
failing guard, repeated rejections, the operator), is written by `record_halt` and ended by `end_halt` /
`end_halts`, keyword-only, each logging its one event. The ExitBot also keeps the health window (broker
failures), evaluates the kill conditions, steps the system machine, and says each tick what the kill switch
requires of the bots (cancel entries, close positions).

A kill condition is never skipped. One that cannot be evaluated because a broker read failed this tick (a
missing fact with `broker_ok` false) trips nothing: entries are blocked by preflight this tick and the failed
read counts towards `api_failure_halt`. Any other error trips it: the system halts with the condition's name
and the error in the reason, and without the condition's flatten, which only a value that holds calls for.
"""

from __future__ import annotations

import operator
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any

from engine.brokers.base import BrokerError, Snapshot
from engine.config.loader import Config
from engine.core import failpoints
from engine.core.journal import Journal
from engine.core.store import SYSTEM_SCOPE, StateStore
from engine.machines.actions import Intent
from engine.machines.runtime import MachineModel, MachineRuntime, StepResult
from engine.rules.book import CompiledRules
from engine.rules.errors import MissingFact
from engine.trading import events, kept, reconcile
from engine.trading.view import TickView

REJECTIONS_BEFORE_ANOMALY = 3
REFUSALS_BEFORE_PAUSE = 3  # of one kind (insufficient funds, below minimum, wash trade, forbidden)
REFUSAL_PAUSE = timedelta(minutes=30)  # the bot's, not the account's: the other bots trade on
MISMATCH_TICKS = 2  # a broker/SQLite mismatch must persist this many ticks (a fill racing the reads is not one)
# How far behind the latest tick the clock may read before it is an anomaly: NTP slews by milliseconds and steps by
# fractions of a second on a healthy host; a step of seconds or more (a bad time source, a VM restored from a
# snapshot, a hand-set clock) makes every time the engine wrote (an order's, a position's, a halt's) later than now.
CLOCK_BACKWARDS_TOLERANCE = timedelta(seconds=1)
LAST_TICK_SCOPE = "tick"  # the `last_facts` row the engine writes each tick (engine.LAST_FACTS_SCOPE), with its time


# --- the one writer of halts ---------------------------------------------------------------------------------


def record_halt(
    store: StateStore,
    journal: Journal,
    *,
    scope: str,
    reason: str,
    conditions: Iterable[str],
    now: datetime,
    until: datetime | None = None,
    flatten: bool = False,
    by: str = "exitbot",
) -> int:
    """Write a halt (system-wide when `scope` is SYSTEM_SCOPE, else one bot's) and log its event."""
    conditions = tuple(conditions)
    # The reason is kept in SQLite, which `status`, `why` and the status page print, and which the journal's masking
    # never sees: masked here (an error the reason quotes may hold a key), as every event is
    reason = journal.scrubbed(reason)
    halt_id = store.start_halt(scope, reason, conditions, flatten, now, until)
    failpoints.reach("halt_recorded")  # the halt's row written (committed, outside a transaction), its event not logged
    events.log_halt(journal, scope=scope, reason=reason, conditions=conditions, flatten=flatten, until=until, by=by)
    return halt_id


def end_halt(store: StateStore, journal: Journal, *, halt_id: int, scope: str, reason: str, now: datetime, by: str) -> None:
    """End one halt (a cooloff that ran out), leaving any other halt of its scope in force."""
    store.end_halt(halt_id, now, by)
    events.log_resume(journal, scope=scope, by=by, reason=reason)


def end_halts(store: StateStore, journal: Journal, *, now: datetime, by: str) -> int:
    """End every halt in force (the operator's resume); the system re-arms only through preflight."""
    ended = sum(store.end_halts(scope, now, by) for scope in {h.scope for h in store.halts(open_only=True)})
    events.log_resume(journal, scope="all", by=by, ended=ended)
    return ended


# --- the kill switch -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class KillVerdict:
    holding: tuple[str, ...]  # enabled conditions that hold, or that tripped because they could not be read
    errors: Mapping[str, str]  # condition -> why it could not be evaluated (tripped ones included)
    deferred: tuple[str, ...]  # could not be read because a broker read failed this tick: blocks, no halt
    anomalies: tuple[str, ...] = ()  # what the anomalies are, named in the reason when anomaly_halt holds
    readings: Mapping[str, str] = field(default_factory=dict)  # condition -> the facts it read, as read (`reading`)

    @property
    def measured(self) -> tuple[str, ...]:
        """The conditions that hold as evaluated: only these may flatten. One that tripped because it could not be
        evaluated (a fact missing while the broker answered, an error) halts, as unknown must, but a flatten sells
        every position on what is then no measured loss, only an unknown."""
        return tuple(name for name in self.holding if name not in self.errors)

    def _said(self, name: str) -> str:
        """A condition in the reason: with why it could not be evaluated, or with the facts it read (an
        anomaly_halt's anomalies are named after it instead)."""
        if name in self.errors:
            return f"{name} ({self.errors[name]})"
        if self.readings.get(name) and not (name == "anomaly_halt" and self.anomalies):
            return f"{name} ({self.readings[name]})"
        return name

    @property
    def reason(self) -> str:
        parts = [self._said(name) for name in self.holding]
        if "anomaly_halt" in self.holding and self.anomalies:
            parts.append("; ".join(self.anomalies))
        return "kill condition: " + ", ".join(parts)


def reading(facts: Mapping[str, Any], names: Iterable[str], notes: Mapping[str, str]) -> str:
    """The facts `names` as read, for a halt's reason: `daily_pnl_pct -3.42, risk_global_max_daily_loss_pct 3`."""
    shown = []
    for name in sorted(names):
        value = facts.get(name)
        text = "missing" if value is None else str(value).lower() if isinstance(value, bool) else (
            f"{value:.6g}" if isinstance(value, float) else str(value))  # fmt: skip
        shown.append(f"{name} {text}: {notes[name]}" if notes.get(name) else f"{name} {text}")
    return ", ".join(shown)


@dataclass
class ExitBot:
    config: Config
    store: StateStore
    journal: Journal
    runtime: MachineRuntime
    rules: CompiledRules
    model: MachineModel = field(default_factory=lambda: MachineModel("system"))
    # The broker failures of the last window, oldest first: kept in the state file too (`restore_failures`,
    # `save_failures`), or a crash loop started the count again at every start and never tripped api_failure_halt.
    _failures: deque[datetime] = field(default_factory=deque)
    _failures_changed: bool = False  # a failure recorded since the window was last saved
    _failures_unknown_until: datetime | None = None  # the saved window could not be read: the count is missing till then
    # Ticks in a row each subject differed (`anomalies`). Kept only here, and safely so: a new process is not
    # reconciled, and its start-up reconciliation compares afresh and halts on the first unexplained difference, with
    # no MISMATCH_TICKS wait; the one wait it allows (an order of ours working on the symbol) is kept in the state file
    # (`Engine._reconcile`, kept.UNCONFIRMED_KEY).
    _mismatch: dict[str, int] = field(default_factory=dict)
    _differences: list[str] = field(default_factory=list)  # the differences as last read
    _latest: datetime | None = None  # the latest tick's time: this process's, or the latest the state file holds
    _latest_read: bool = False
    _behind_logged: bool = False
    _anomalies: list[str] = field(default_factory=list)  # this tick's, for the halt's reason
    _behind_halted: bool = False  # the halt for this time behind is written (`_halt_while_behind`)
    # `unexplained`'s last answer, with what it was worked out from (`_unexplained`)
    _explained: tuple[tuple[Any, ...], list[str]] | None = None
    # bot id -> the counters (the view's own mapping) last found to call for no halt and no pause (`anomalies`)
    _quiet: dict[str, Mapping[str, int]] = field(default_factory=dict)
    # the last verdict that found no condition holding, with what it was worked out from (`evaluate_kills`)
    _kills_quiet: tuple[Any, CompiledRules, tuple[Any, ...], KillVerdict] | None = None
    # the compiled rules -> what reads the facts `_kill_inputs` keys on from them
    _kill_names: tuple[CompiledRules, Callable[[Mapping[str, Any]], tuple[Any, ...]]] | None = None

    # --- health --------------------------------------------------------------------------------------------

    def record_failure(self, error: BrokerError, now: datetime) -> None:
        """One broker failure into the window, and the log. A request the adapter held back while the server's rate
        limit said to wait (`BrokerError.held`) is logged but not counted: the answer that started the hold (the 429)
        was, and counting each request never sent halted the engine within two ticks of one 429. The read still
        failed: the snapshot is incomplete and broker_ok false, so entries stay blocked for the hold. An order
        refused on its merits (`BrokerError.refusal`) is logged but not counted either: the broker answered, and the
        refusal is its bot's denial (and pause), not a broker failing the account."""
        counted = not error.held and not error.refusal
        if counted:
            self._failures.append(now)
            self._failures_changed = True
        self.journal.log(
            "broker_error",
            operation=error.operation,
            kind=error.kind,
            reason=error.reason,
            status=error.status,
            code=error.code,
            message=error.message,
            held=error.held,
            counted=counted,
        )

    def failures_in_window(self, now: datetime) -> int | None:
        """The failures of the last window; None (a missing fact: api_failure_halt trips, api_failures_ok fails)
        while what an earlier run saved could not be read and may still be in the window."""
        window = timedelta(seconds=self.config.settings.health.api_failure_window_seconds)
        while self._failures and now - self._failures[0] > window:
            self._failures.popleft()
        if self._failures_unknown_until is not None:
            if now < self._failures_unknown_until:
                return None
            self._failures_unknown_until = None
        return len(self._failures)

    @property
    def failures_changed(self) -> bool:
        """A failure was recorded since the window was last saved (`save_failures`)."""
        return self._failures_changed

    def restore_failures(self, now: datetime) -> None:
        """At start: the failures an earlier run saved, each at its time or, if later, at `now` (the clock went
        back: counted, for one window from now, not for as long as the clock takes to catch up). A record that
        cannot be read leaves the count missing for one window from now (`failures_in_window`), after which whatever
        it held is out of the window anyway."""
        try:
            saved = kept.failure_times(self.store)
        except ValueError:
            window = timedelta(seconds=self.config.settings.health.api_failure_window_seconds)
            self._failures_unknown_until = now + window
            self._failures_changed = True  # written over with a readable window at the first save
            return
        self._failures.extendleft(reversed([kept.as_of(at, now) for at in saved]))

    def save_failures(self, now: datetime, *, again: bool = False) -> None:
        """Write the window (inside the caller's transaction) if a failure was recorded since the last write, or
        `again` (the transaction that held the last write was rolled back). Only the failures still in the window,
        and of those the latest `max_api_failures_in_window`: what api_failure_halt reads is the same (the latest
        ones stay in the window the longest), and a broker failing thousands of calls writes a short record."""
        if not (self._failures_changed or again):
            return
        health = self.config.settings.health
        self.failures_in_window(now)  # drops what left the window
        latest = list(self._failures)[-health.max_api_failures_in_window :]
        kept.save_failure_times(self.store, latest)
        self._failures_changed = False

    # --- kill conditions -----------------------------------------------------------------------------------

    def evaluate_kills(self, facts: Mapping[str, Any], notes: Mapping[str, str] | None = None) -> KillVerdict:
        """The kill conditions against the system's facts. Each one that holds is named in the halt's reason with
        the facts it read, as read (`reading`; `notes` adds words to a fact's value: the stale markets' names), so
        `status` says "data_stale_halt (stale_markets 1: crypto)", not only which condition held; to a missing
        fact, why it is missing (the daily P&L's: the activity that made the day's cash moved unknown)."""
        exitbot = self.config.bots.exitbot
        holding: list[str] = []
        errors: dict[str, str] = {}
        deferred: list[str] = []
        if not exitbot.enabled:
            return KillVerdict((), {}, ())
        key = self._kill_inputs(facts, notes)
        quiet = self._kills_quiet
        if key is not None and quiet is not None and quiet[0] is exitbot and quiet[1] is self.rules and quiet[2] == key:
            return quiet[3]
        for name, predicate in self.rules.kill_conditions.items():
            if not getattr(exitbot.kill_conditions, name, False):
                continue
            try:
                if predicate(facts):
                    holding.append(name)
            except MissingFact as exc:  # with why it is missing, when the tick knows (`notes`)
                why = (notes or {}).get(exc.name)
                errors[name] = f"{exc}: {why}" if why else str(exc)
                if facts.get("broker_ok") is False:
                    deferred.append(name)
                else:
                    holding.append(name)
            except Exception as exc:  # a kill condition is never skipped: what cannot be evaluated trips
                errors[name] = f"{type(exc).__name__}: {exc}"
                holding.append(name)
        readings = {
            name: reading(facts, self.rules.kill_facts.get(name, frozenset()), notes or {})
            for name in holding
            if name not in errors
        }
        verdict = KillVerdict(tuple(holding), errors, tuple(deferred), tuple(self._anomalies), readings)
        self._kills_quiet = None if holding or key is None else (exitbot, self.rules, key, verdict)
        return verdict

    def _kill_inputs(self, facts: Mapping[str, Any], notes: Mapping[str, str] | None) -> tuple[Any, ...] | None:
        """Everything a verdict is worked out from besides the config: each fact a kill condition reads
        (`CompiledRules.kill_facts`, every name its expression may read, guards it names included) and broker_ok,
        with their types (a bool and an int compare equal, but a fact of the wrong type fails its check); the
        notes; this tick's anomalies. None when one of those facts is absent (the system's facts hold them all):
        that verdict is worked out and not kept. Read with one `itemgetter`: worked out name by name, the key
        cost about what the four shipped conditions cost to answer. The kill conditions are pure functions of the
        facts, so the same inputs give the same verdict: a tick whose inputs are those of the last quiet one (most ticks: nothing
        holds, and the facts read are counts and flags that rarely move) takes that verdict, which nothing changes
        (read only, by the machine's actions and the engine). Only a verdict with nothing holding is kept: one that
        holds names the facts as read (`reading`, where -0.0 and 0.0 differ) and halts, which is rare."""
        rules, kept_names = self.rules, self._kill_names
        if kept_names is None or kept_names[0] is not rules:
            names = sorted({"broker_ok"}.union(*rules.kill_facts.values()))
            read = operator.itemgetter(*names) if len(names) > 1 else lambda facts: (facts[names[0]],)  # a tuple
            kept_names = self._kill_names = (rules, read)
        try:
            values = kept_names[1](facts)
        except KeyError:
            return None
        return (values, tuple(map(type, values)), tuple(notes.items()) if notes else (), tuple(self._anomalies))

    # --- anomalies -----------------------------------------------------------------------------------------

    def anomalies(
        self, snapshot: Snapshot, view: TickView, bot_ids: Iterable[str], reconciled: bool, moved: reconcile.Moved | None = None
    ) -> int:
        """Unexplained differences that persist, and bots whose orders are rejected repeatedly (each of which
        is halted on its own: its rules can no longer be trusted). `moved`: the fills this tick's order sync booked,
        which the snapshot's positions, read before its orders, may not show yet (`reconcile.mid_fill`)."""
        count = 0
        self._anomalies = []
        self._halt_while_behind(view.now)
        if reconciled:
            if snapshot.positions is not None and snapshot.open_orders is not None:
                self._differences = self._unexplained(snapshot, moved or {})
                # counted by subject, not by text: a difference whose quantities move every tick (a position no bot
                # owns, growing) persists all the same, and counted by its text it never reached MISMATCH_TICKS
                self._mismatch = {s: self._mismatch.get(s, 0) + 1 for s in map(reconcile.subject, self._differences)}
                read = True
            else:  # a read failed: it proves nothing, so the differences stand as last counted (taken as gone, each
                read = False  # failed read started their count again, and one failing every other tick never halted)
            for problem in self._differences:
                ticks = self._mismatch[reconcile.subject(problem)]
                if read and ticks == MISMATCH_TICKS:  # said once, when it is first found to persist
                    self.journal.log("anomaly", what="unexplained", detail=problem)
                if ticks >= MISMATCH_TICKS:
                    count += 1
                    self._anomalies.append(problem)
        quiet = self._quiet
        for bot_id in bot_ids:
            records = view.bot(bot_id)
            if records.halt is not None:
                continue
            counters = records.counters
            if quiet.get(bot_id) is counters:  # the same counters called for nothing last time: nor do they now
                continue
            if records.counter("rejections") >= REJECTIONS_BEFORE_ANOMALY:
                self.halt_bot(bot_id, reason="orders rejected repeatedly", condition="anomaly", now=view.now)
                self.journal.log("anomaly", what="repeated_rejections", bot=bot_id)
                count += 1
                self._anomalies.append(f"{bot_id}'s orders rejected repeatedly")
                continue
            if records.paused is not None:  # paused already: its refusals meanwhile (of exits) add no second pause
                continue
            if not self._pause_if_refused(bot_id, counters, view.now, view.day):
                quiet[bot_id] = counters
        return count

    def _unexplained(self, snapshot: Snapshot, moved: reconcile.Moved) -> list[str]:
        """`unexplained(store, snapshot)`, worked out again only when what it reads moved: the bots' positions and
        the orders SQLite holds (the store's own stamp of its kept reads, `StateStore.reads_stamp`), and the
        quantities and open orders the broker shows. The same inputs give the same answer (it is a pure function of
        them), so a tick whose account and records did not move skips the lookup of every open order's id.
        Only while the store keeps its tick reads (the engine's own connection): otherwise each call reads."""
        store = self.store
        if not store.keep_tick_reads or snapshot.positions is None or snapshot.open_orders is None:
            return unexplained(store, snapshot, moved)
        key = (
            store.reads_stamp(),
            tuple([(p.symbol, p.qty) for p in snapshot.positions]),
            tuple([(o.client_order_id, o.symbol) for o in snapshot.open_orders]),
            tuple(sorted(moved.items())),
        )
        last = self._explained
        if last is not None and last[0] == key:
            return list(last[1])
        problems = unexplained(store, snapshot, moved)
        self._explained = (key, list(problems))
        return problems

    def _halt_while_behind(self, now: datetime) -> None:
        """A clock that went backwards halts the system until it has caught up: the engine cannot tell whether
        the times it wrote or the time it reads now are wrong, and every rule that measures time (a position's
        age for the time stop, the orders of the last minute, a cooloff, today's counters) would measure from a
        wrong instant. The halt is written once, when the clock falls behind, and lasts until the latest tick's
        time, when the clock reads the time it read before (not a kill switch's cooloff: a two-second NTP step
        must not stop a day's trading). Exits are still managed. `resume` ends it like any halt: the operator's
        word that the clock is right."""
        if self.clock_behind(now) is None or self._behind_halted:
            return
        self._behind_halted = True
        latest = self._latest
        assert latest is not None
        record_halt(
            self.store,
            self.journal,
            scope=SYSTEM_SCOPE,
            reason=f"the clock went back {(latest - now).total_seconds():.1f} s "
            f"(behind the last tick or a position's opening, {latest.isoformat()})",
            conditions=("clock_backwards",),
            now=now,
            until=latest,
        )

    def clock_behind(self, now: datetime) -> float | None:
        """Seconds the clock reads behind the latest tick (this run's, or the last one the state file holds), when
        that is more than CLOCK_BACKWARDS_TOLERANCE; else None. Logged once each time the clock falls behind.
        The latest time is read from the state file once a process, then kept here: nothing per tick but a
        comparison."""
        if not self._latest_read:
            # the last tick, or a position opened after it (a fill is written at the tick's time, never later): a
            # position whose opening lay ahead of the clock had a negative age, and its time stop never fired
            last = self.store.last_facts(LAST_TICK_SCOPE)
            written = [last[0]] if last is not None else []
            written += [p.opened_at for p in self.store.positions()]
            self._latest = max(written, default=None)
            self._latest_read = True
        latest = self._latest
        if latest is not None and now < latest - CLOCK_BACKWARDS_TOLERANCE:
            behind = (latest - now).total_seconds()
            if not self._behind_logged:
                self._behind_logged = True
                self.journal.log("anomaly", what="clock_backwards", behind_s=behind, latest=latest.isoformat())
            return behind
        self._behind_logged = self._behind_halted = False
        if latest is None or now > latest:
            self._latest = now
        return None

    def _pause_if_refused(self, bot_id: str, counters: Mapping[str, int], now: datetime, day: date) -> bool:
        """The broker refused this bot's orders on their merits (`refused:<reason>` counters, by orders.py)
        several times of one kind since its last pause: the bot pauses for REFUSAL_PAUSE. Not an anomaly: the
        account and the other bots are fine; nor a fault of its rules: what it holds stays managed by its own exits
        (a pause, `store.is_pause`, is not a halt that closes its positions). True when it paused the bot."""
        for name, refused in counters.items():
            if not name.startswith("refused:"):
                continue
            kind = name.split(":", 1)[1]
            since_pause = refused - counters.get(f"paused_at:{kind}", 0)
            if since_pause >= REFUSALS_BEFORE_PAUSE:
                self.store.bump_counter(day, bot_id, f"paused_at:{kind}", since_pause)
                reason = f"orders refused repeatedly ({kind})"
                self.halt_bot(bot_id, reason=reason, condition="refusals", now=now, until=now + REFUSAL_PAUSE)
                return True
        return False

    def halt_bot(self, bot_id: str, *, reason: str, condition: str, now: datetime, until: datetime | None = None) -> None:
        record_halt(self.store, self.journal, scope=bot_id, reason=reason, conditions=(condition,), now=now, until=until)

    def anomaly_until(self, now: datetime) -> datetime:
        """When an anomaly's system halt decided now ends (safety.global_cooldown_minutes)."""
        return now + timedelta(minutes=self.config.settings.safety.global_cooldown_minutes)

    def anomaly_halt(self, now: datetime, reason: str) -> str | None:
        """A system halt for what cannot be explained: reconciliation, an exception at the tick boundary. The
        system machine is put in `halted` at once; returns the state it left, if it moved. The same anomaly
        again while its halt is in force (an exception every tick) is recorded once, not once a tick."""
        if self.model.state == "halted":
            current = self.store.halt_in_force(SYSTEM_SCOPE, now)
            if current is not None and current.reason == reason:
                return None
        record_halt(
            self.store, self.journal, scope=SYSTEM_SCOPE, reason=reason, conditions=("anomaly_halt",), now=now,
            until=self.anomaly_until(now),
        )
        if self.model.state == "halted":
            return None
        source = self.model.state
        self.runtime.force_halt(self.model)
        return source

    # --- the system machine --------------------------------------------------------------------------------

    def end_expired(self, view: TickView) -> bool:
        """End the halts whose cooloff ran out (only those: an operator's halt stays). True if any ended."""
        ended = False
        for halt in view.open_halts:
            if halt.until is not None and view.now >= halt.until:
                end_halt(
                    self.store, self.journal, halt_id=halt.id, scope=halt.scope, reason=halt.reason, now=view.now, by="cooloff"
                )
                ended = True
        return ended

    def step(self, facts: Mapping[str, Any], verdict: KillVerdict, now: datetime) -> StepResult:
        """Step the system machine; a kill that fires records its halt (with its cooloff)."""
        result = self.runtime.step(self.model, facts, reads_failed=not facts["broker_ok"])
        for intent in result.intents:
            if intent.action == "record_halt":
                self.record_kill(verdict, now)
        return result

    def kill_recorded(self, verdict: KillVerdict, view: TickView) -> bool:
        """Whether the system halts in force already do what the kill conditions of `verdict` that hold ask: with no
        system halt in force, nothing does (the kill is recorded whatever state the machine is in); under one, every
        measured condition that flattens (`record_kill`) must be named by a halt in force that flattens. A daily
        loss passed under an operator's halt, a stale feed's or an anomaly's was recorded by nothing (the system
        machine's `kill` edge leaves only `idle` and `armed`), and nothing was sold for the whole halt. A condition
        that only halts adds nothing to a halt in force (no order leaves either way): it is recorded by the machine's
        `kill` edge if it still holds when that halt ends, as before, and the halt records stay one per cause."""
        halts = view.system_halts
        if not halts:
            return False
        flattens = [name for name in verdict.measured if name in self.rules.flatten_on]
        return all(any(name in h.conditions and h.flatten for h in halts) for name in flattens)

    def record_kill(self, verdict: KillVerdict, now: datetime) -> None:
        flatten = any(c in self.rules.flatten_on for c in verdict.measured)
        until = now + timedelta(minutes=self.config.bots.exitbot.cooloff_minutes)
        record_halt(
            self.store,
            self.journal,
            scope=SYSTEM_SCOPE,
            reason=verdict.reason,
            conditions=verdict.holding,
            now=now,
            until=until,
            flatten=flatten,
        )

    # --- standing orders -----------------------------------------------------------------------------------

    def duties(self, view: TickView, bot_ids: Iterable[str], system_halted: bool) -> tuple[list[Intent], dict[str, list[str]]]:
        """What the kill switch requires of the bots this tick:
        - a bot halted on its own (a guard or its signal failed, repeated rejections) has its entries cancelled and
          its positions closed: its rules can no longer be trusted to manage them;
        - a bot paused (the broker refused its orders on their merits, `store.is_pause`) has its entries cancelled;
          what it holds is kept, managed by its own exits (stop loss, take profit, time stop, manage_until);
        - while the system is halted, working entries are cancelled; with flatten, every position is closed, and
          a symbol several bots hold is closed once, by one order for the account's net position (returned apart:
          symbol -> the bots holding it), not once per bot."""
        flatten = view.flatten_requested
        out: list[Intent] = []
        holders: dict[str, list[str]] = {}
        for bot_id in bot_ids:
            records = view.bot(bot_id)
            bot_halted = records.halt is not None  # a halt that is not a pause (`BotRecords.halt`)
            if (system_halted or bot_halted or records.paused is not None) and records.open_entries:
                out.append(Intent("cancel_entry", bot_id, "halted"))
            if flatten:
                for position in records.positions:
                    holders.setdefault(position.symbol, []).append(bot_id)
            elif bot_halted and records.positions:
                out.append(Intent("close_position", bot_id, "bot_halted"))
        shared = {symbol: bots for symbol, bots in holders.items() if len(bots) > 1}
        alone = sorted({bots[0] for bots in holders.values() if len(bots) == 1})
        out += [Intent("close_position", bot_id, "flatten") for bot_id in alone]
        return out, shared


def unexplained(store: StateStore, snapshot: Snapshot, moved: reconcile.Moved | None = None) -> list[str]:
    """What the broker holds that SQLite cannot explain (primary-key lookups only: no scan of history). `moved`:
    the fills booked since the snapshot read the positions (`reconcile.mid_fill`)."""
    if snapshot.open_orders is None:
        return []
    known = store.known_client_order_ids(o.client_order_id for o in snapshot.open_orders)
    owned = store.positions()
    short = reconcile.short_crypto(owned, snapshot)
    fills = reconcile.holders_fills(owned, short) if short else {}
    return reconcile.unexplained(owned, known, snapshot, fills, moved)
