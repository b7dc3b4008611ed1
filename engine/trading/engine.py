"""The trading engine: one tick, as data flows (ARCHITECTURE.md "One tick").

 1. one broker snapshot; failures counted in the health window
 2. orders brought up to date (fills move the bots' owned positions)
 3. facts: the system's, then each bot's (the guard vocabulary)
 4. the ExitBot: kill conditions, halts and their expiry; the system machine steps
 5. the PortfolioBot: today's budgets; its machine steps
 6. every bot's preflight, then its machine steps; transitions yield intents
 7. the risk gate: entries need preflight; exits and cancels always pass
 8. one SQLite transaction: machine states, order intents, counters (and the simulated exchange)
 9. intents sent with deterministic client_order_ids; the broker's answers recorded
10. JSONL: transitions, blocked entries, preflight changes, order events, halts, a `tick` event
An exception anywhere in a tick is caught at the tick boundary and halts the system; it is never "logged and
ignored". The halt is in SQLite, so it survives a restart.
"""

from __future__ import annotations

import dataclasses
import time
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from engine.brokers.base import Broker, BrokerError, OrderRequest, Snapshot
from engine.brokers.symbols import asset_class_of, is_crypto
from engine.config.checks import trading_bots
from engine.config.loader import Config
from engine.config.model import CryptoBotConfig
from engine.core.clock import Clock, parse_hhmm
from engine.core.journal import Journal
from engine.core.store import SYSTEM_SCOPE, StateStore
from engine.machines.runtime import MachineModel, MachineRuntime, StepResult, build_runtime
from engine.machines.spec import MachineSpec
from engine.rules.book import CompiledRules, RuleBook
from engine.rules.facts import SETTINGS_FACTS, SYSTEM_FACTS, settings_values
from engine.trading import entries, portfolio, reconcile
from engine.trading.bots import Bot, make_bot
from engine.trading.orders import OrderManager
from engine.trading.universe import data_needs

REJECTIONS_BEFORE_ANOMALY = 3
MISMATCH_TICKS = 2  # a broker/SQLite mismatch must persist this many ticks (a fill racing the reads is not one)
# System-wide facts that the risk gate counts down within a tick: they differ from one bot to the next.
PER_BOT_SYSTEM_FACTS = frozenset({"orders_last_minute", "capital_room_usd"})


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


@dataclass
class Engine:
    config: Config
    book: RuleBook
    machines: Mapping[str, MachineSpec]
    broker: Broker
    store: StateStore
    journal: Journal
    clock: Clock
    on_persist: Any = None  # called inside the tick transaction (the sim saves its exchange there)
    reconciled: bool = False
    ticks: int = 0
    transitions: int = 0
    bots: list[Bot] = field(default_factory=list)
    _failures: deque[datetime] = field(default_factory=deque)
    _history: dict[str, deque[float]] = field(default_factory=dict)
    _mismatch: dict[str, int] = field(default_factory=dict)
    _allocation_logged: tuple[date, dict[str, float]] | None = None
    _requests: int = 0
    _orders_this_minute: int = 0
    _room: float = 0.0
    _realized_today: dict[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        settings = self.config.settings
        self.tz = ZoneInfo(settings.system.timezone)
        self.settings_facts = settings_values(settings)
        self.runtimes: dict[str, MachineRuntime] = {}
        self.compiled: dict[str, CompiledRules] = {}
        for kind, spec in self.machines.items():
            self.runtimes[kind], self.compiled[kind] = build_runtime(spec, self.book)
        self.system = MachineModel("system")
        self.portfolio_model = MachineModel("portfolio")
        self.bots = [make_bot(bot, self.book) for _path, bot in trading_bots(self.config.bots) if bot.enabled]
        self.needs = data_needs(self.config.bots)
        self.orders = OrderManager(self.store, self.broker, self.journal, self.clock, self._record_failure)
        self.allocations: portfolio.Allocations | None = None
        self._split_preflight()
        self._restore_states()

    def _split_preflight(self) -> None:
        """Preflight checks that read only system-wide facts give one answer per tick for every bot of a kind;
        they are evaluated once per tick, the others once per bot."""
        shared_facts = {f.name for f in (*SYSTEM_FACTS, *SETTINGS_FACTS)} - PER_BOT_SYSTEM_FACTS
        self._shared_checks: dict[str, dict[str, Any]] = {}
        self._own_checks: dict[str, dict[str, Any]] = {}
        self._shared_failed: dict[str, set[str]] = {}
        for kind in {bot.kind for bot in self.bots}:
            compiled = self.compiled[kind]
            shared = {n for n in compiled.preflight if compiled.preflight_facts[n] <= shared_facts}
            self._shared_checks[kind] = {n: p for n, p in compiled.preflight.items() if n in shared}
            self._own_checks[kind] = {n: p for n, p in compiled.preflight.items() if n not in shared}

    # --- start-up ------------------------------------------------------------------------------------------

    def _models(self) -> list[tuple[str, MachineModel]]:
        out = [("system", self.system)]
        if "portfolio" in self.runtimes:
            out.append(("portfolio", self.portfolio_model))
        out += [(bot.kind, bot.model) for bot in self.bots]
        return out

    def _restore_states(self) -> None:
        saved = {(s.kind, s.bot_id): s.state for s in self.store.machine_states()}
        for kind, model in self._models():
            state = saved.get((kind, model.bot_id))
            spec = self.machines[kind]
            if state is not None and state not in spec.states:
                raise StartupError(
                    f"{self.store.path}: {kind} '{model.bot_id}' is in state '{state}', which {spec.doc.path} no longer has"
                )
            self.runtimes[kind].add(model, state)  # restored without running any action
            if state is None:
                self.store.save_machine_state(kind, model.bot_id, model.state, self.clock.now())

    # --- health --------------------------------------------------------------------------------------------

    def _record_failure(self, error: BrokerError) -> None:
        self._failures.append(self.clock.now())
        self.journal.log("broker_error", operation=error.operation, kind=error.kind, status=error.status, message=error.message)

    def _failures_in_window(self, now: datetime) -> int:
        window = timedelta(seconds=self.config.settings.health.api_failure_window_seconds)
        while self._failures and now - self._failures[0] > window:
            self._failures.popleft()
        return len(self._failures)

    def trading_date(self, now: datetime) -> date:
        return now.astimezone(self.tz).date()

    # --- the tick ------------------------------------------------------------------------------------------

    def tick(self) -> TickReport:
        started = time.perf_counter()
        now = self.clock.now()
        self._requests = 0
        transitions_before = self.transitions
        error = None
        try:
            self._tick(now)
        except Exception as exc:  # the tick boundary: any exception halts the system, with the reason
            error = f"{type(exc).__name__}: {exc}"
            self._halt_on_exception(now, error)
        self.ticks += 1
        report = TickReport(
            now,
            (time.perf_counter() - started) * 1000,
            self._requests,
            self.transitions - transitions_before,
            self.system.state,
            error,
        )
        self.journal.log(
            "tick",
            duration_ms=round(report.duration_ms, 3),
            broker_requests=report.broker_requests,
            transitions=report.transitions,
            system=self.system.state,
            error=error,
        )
        self.journal.flush()
        return report

    def _tick(self, now: datetime) -> None:
        snapshot = self.broker.snapshot(self.needs)
        self._requests += snapshot.broker_requests
        for err in snapshot.errors:
            self._record_failure(err)
        day = self.trading_date(now)
        calls_before = self._broker_calls()
        self.orders.sync(snapshot)
        self._realized_today = self.store.realized_pnl(day)  # read once: budgets of every bot come from it
        self._adopt_fee_shortfalls(snapshot, now)
        self._remember_prices(snapshot)
        if not self.reconciled:
            self._reconcile(snapshot)
        anomalies = self._anomalies(snapshot, day)
        system_facts = self._system_facts(snapshot, now, anomalies)

        with self.store.transaction():
            self._step_system(system_facts, now)
            system_facts["system_halted"] = self.system.state == "halted"
            system_facts["system_armed"] = self.system.state == "armed"
            self._step_portfolio(system_facts, snapshot, now, day)
            self._open_gate(snapshot, now)
            for kind, checks in self._shared_checks.items():
                self._shared_failed[kind] = set(self.compiled[kind].failed_checks(checks, system_facts))
            for bot in self.bots:  # gated one by one: what one bot is granted, the next one sees
                facts = self._bot_facts(bot, system_facts, snapshot, now, day)
                result = self._step(bot.kind, bot.model, facts, now)
                self._gate_and_record([(bot, intent) for intent in result.intents], snapshot, now, day)
            self._exitbot_duties(system_facts, now, day)
            if self.on_persist is not None:
                self.on_persist()
        self.orders.send_pending()
        if self.on_persist is not None:  # the simulated exchange now holds the orders just sent
            with self.store.transaction():
                self.on_persist()
        self._requests += self._broker_calls() - calls_before

    def _broker_calls(self) -> int:
        api = getattr(self.broker, "api", None)
        return int(getattr(api, "requests_made", 0))

    # --- facts ---------------------------------------------------------------------------------------------

    def _remember_prices(self, snapshot: Snapshot) -> None:
        keep = max((b.lookback for b in self.bots), default=12) + 2
        for symbol, quote in snapshot.quotes.items():
            self._history.setdefault(symbol, deque(maxlen=keep)).append(quote.mid)

    def _system_facts(self, snapshot: Snapshot, now: datetime, anomalies: int) -> dict[str, Any]:
        account = snapshot.account
        clock = snapshot.clock
        halt = self.store.halt_in_force(SYSTEM_SCOPE, now)
        health = self.config.settings.health
        stale = 0
        for symbol in (*self.needs.stocks, *self.needs.crypto):
            active = is_crypto(symbol) or clock is None or clock.is_open
            quote = snapshot.quotes.get(symbol)
            if active and (quote is None or (now - quote.timestamp).total_seconds() > health.max_price_staleness_seconds):
                stale += 1
        facts: dict[str, Any] = {
            **self.settings_facts,
            "account_ok": account is not None and account.usable,
            "broker_ok": snapshot.complete,
            "reconciled": self.reconciled,
            "market_open": clock.is_open if clock else None,
            "minutes_to_close": ((clock.next_close - now).total_seconds() / 60 if clock.is_open else 0.0) if clock else None,
            "system_armed": self.system.state == "armed",
            "system_halted": self.system.state == "halted",
            "halt_active": halt is not None,
            "flatten_requested": bool(halt and halt.flatten),
            "daily_pnl_pct": (account.equity / account.last_equity - 1) * 100 if account and account.last_equity else None,
            "equity_usd": account.equity if account else None,
            "api_failures_in_window": self._failures_in_window(now),
            "stale_quotes": stale,
            "anomalies": anomalies,
            "orders_last_minute": self.store.orders_since(now - timedelta(seconds=60)),
            "budgets_allocated": bool(account is not None and self.config.bots.portfoliobot.enabled),
        }
        facts["kill_triggered"] = bool(self._kills_holding(facts))
        return facts

    def _kills_holding(self, facts: Mapping[str, Any]) -> list[str]:
        exitbot = self.config.bots.exitbot
        if not exitbot.enabled:
            return []
        holding = []
        for name, predicate in self.compiled["system"].kill_conditions.items():
            if not getattr(exitbot.kill_conditions, name, False):
                continue
            try:
                if predicate(facts):
                    holding.append(name)
            except Exception:  # unreadable: it does not fire, but the same missing fact fails preflight
                continue
        return holding

    def _bot_facts(self, bot: Bot, system: dict[str, Any], snapshot: Snapshot, now: datetime, day: date) -> dict[str, Any]:
        cfg = bot.config
        local = now.astimezone(self.tz).time()
        start, end, until = (
            parse_hhmm(cfg.session.trade_start),
            parse_hhmm(cfg.session.trade_end),
            parse_hhmm(cfg.session.manage_until),
        )
        owned = self.store.positions(bot.bot_id)
        working = self.orders.working(bot.bot_id)
        entries_open, exits_open = working["entry"], working["exit"]
        last_entry = self.orders.last_entry(bot.bot_id, day)
        quotes = [snapshot.quotes.get(s) for s in bot.symbols]
        quote_age = None if any(q is None for q in quotes) else max((now - q.timestamp).total_seconds() for q in quotes if q)
        budget = self._budget(bot, snapshot, day)
        facts = {
            **system,
            "orders_last_minute": self._orders_this_minute,
            "capital_room_usd": self._room,
            **bot.config_facts,
            "in_trade_window": start <= local <= end,
            "past_trade_end": local > end,
            "past_manage_until": local >= until,
            "tradable_now": True if isinstance(cfg, CryptoBotConfig) else system["market_open"],
            "bot_halted": self.store.halt_in_force(bot.bot_id, now) is not None,
            "budget_usd": budget,
            "trades_today": self.store.counter(day, bot.bot_id, "entries"),
            "open_positions": len(owned),
            "holds_position": bool(owned),
            "entry_order_open": bool(entries_open),
            "exit_order_open": bool(exits_open),
            "entry_failed": not entries_open
            and (
                bot.entry_blocked
                or last_entry is None
                or (last_entry["status"] in ("canceled", "expired", "rejected", "not_sent") and not last_entry["filled_qty"])
            ),
            "minutes_since_entry_order": max(
                ((now - datetime.fromisoformat(r["created_at"])).total_seconds() / 60 for r in entries_open), default=0.0
            ),
            "position_pnl_pct": self._pnl_pct(owned, snapshot),
            "minutes_in_position": max(
                ((now - datetime.fromisoformat(p["opened_at"])).total_seconds() / 60 for p in owned), default=0.0
            ),
            "quote_age_s": quote_age,
            "entry_signal": self._signal(bot),
        }
        bot.planned_entry, bot.planned_contract = (
            entries.plan_entry(cfg, bot.signal_symbol, budget or 0.0, self._room, snapshot, day)
            if facts["entry_signal"] and bot.signal_symbol and self.allocations
            else (None, None)
        )
        facts["entry_sized"] = bot.planned_entry is not None
        if facts["entry_signal"] and bot.planned_entry is None and bot.size_blocked_on != day:
            # once a day until an entry is granted: the reason (budget or capital used up) rarely changes sooner
            self.journal.log("entry_blocked", bot=bot.bot_id, failed=["size"], symbol=bot.signal_symbol)
            bot.size_blocked_on = day
        compiled = self.compiled[bot.kind]
        own = set(compiled.failed_checks(self._own_checks[bot.kind], facts))
        failed = tuple(n for n in compiled.preflight if n in own or n in self._shared_failed[bot.kind])
        facts["preflight_ok"] = not failed
        if failed != bot.last_failed_checks:
            self.journal.log("preflight", bot=bot.bot_id, ok=not failed, failed=list(failed))
            bot.last_failed_checks = failed
        bot.facts = facts
        return facts

    def _pnl_pct(self, owned: list[dict[str, Any]], snapshot: Snapshot) -> float | None:
        if not owned:
            return 0.0
        prices = {p.symbol: p.current_price for p in snapshot.positions or ()}
        cost = value = 0.0
        for p in owned:
            price = prices.get(p["symbol"])
            if price is None:
                quote = snapshot.quotes.get(p["symbol"])
                if quote is None:
                    return None  # missing, never guessed
                price = quote.mid
            cost += p["avg_entry_price"] * p["qty"]
            value += price * p["qty"]
        return (value / cost - 1) * 100 if cost else None

    def _signal(self, bot: Bot) -> bool:
        bot.signal_symbol = None
        for symbol in bot.symbols:
            history = self._history.get(symbol)
            if history and bot.signal(list(history), bot.signal_params):
                bot.signal_symbol = symbol
                return True
        return False

    def _budget(self, bot: Bot, snapshot: Snapshot, day: date) -> float | None:
        allocation = self.allocations.bots.get(bot.bot_id) if self.allocations else None
        if allocation is None and self.config.settings.safety.allow_budget_fallback and snapshot.account:
            allocation = portfolio.fallback_allocation(
                self.config.bots, bot.config, snapshot.account.equity, self.config.settings.risk.global_max_daily_loss_pct
            )
        # idle: the PortfolioBot has no budgets of its own (disabled), but the fallback may still apply
        if allocation is None or self.portfolio_model.state not in ("armed", "idle"):
            return None
        lost = min(0.0, self._realized_today.get(bot.bot_id, 0.0))
        return max(0.0, allocation.budget_usd + lost)

    # --- stepping ------------------------------------------------------------------------------------------

    def _step(self, kind: str, model: MachineModel, facts: Mapping[str, Any], now: datetime) -> StepResult:
        result = self.runtimes[kind].step(model, facts, reads_failed=not facts["broker_ok"])
        if result.deferred:  # the broker failed us this tick; api_failure_halt deals with it if it goes on
            self.journal.log("step_deferred", machine=kind, bot=model.bot_id, state=result.source, error=result.error)
        elif result.error:
            self.journal.log("guard_error", machine=kind, bot=model.bot_id, error=result.error, state=result.dest)
            if kind not in ("system", "portfolio") and self.store.halt_in_force(model.bot_id, now) is None:
                self.store.start_halt(model.bot_id, f"guard failed: {result.error}", ("guard_error",), False, now, None)
        if result.source != result.dest:
            self.transitions += 1
            self.store.save_machine_state(kind, model.bot_id, result.dest, now)
            self.journal.log(
                "transition",
                machine=kind,
                bot=model.bot_id,
                **{"from": result.source, "to": result.dest},
                trigger=result.transition.trigger if result.transition else "forced_halt",
                guards=list(result.guards_held),
            )
        return result

    def _step_system(self, facts: dict[str, Any], now: datetime) -> None:
        self._end_expired_halts(now)
        facts["halt_active"] = self.store.halt_in_force(SYSTEM_SCOPE, now) is not None
        result = self._step("system", self.system, facts, now)
        for intent in result.intents:
            if intent.action == "record_halt":
                conditions = tuple(self._kills_holding(facts))
                flatten = any(c in self.compiled["system"].flatten_on for c in conditions)
                until = now + timedelta(minutes=self.config.bots.exitbot.cooloff_minutes)
                reason = "kill condition: " + ", ".join(conditions)
                self.store.start_halt(SYSTEM_SCOPE, reason, conditions, flatten, now, until)
                self.journal.log("halt", reason=reason, conditions=list(conditions), flatten=flatten, until=until)
                facts["flatten_requested"] = flatten
                facts["halt_active"] = True

    def _end_expired_halts(self, now: datetime) -> None:
        for halt in self.store.halts(open_only=True):
            if halt.until is not None and now >= halt.until:
                self.store.end_halt(halt.id, now, "expired")  # only this one: an operator's halt stays
                self.journal.log("resume", scope=halt.scope, by="cooloff", reason=halt.reason)

    def _step_portfolio(self, facts: dict[str, Any], snapshot: Snapshot, now: datetime, day: date) -> None:
        account = snapshot.account
        if account is not None and self.config.bots.portfoliobot.enabled:
            self.allocations = portfolio.allocate(
                self.config.bots, account.equity, self.config.settings.risk.global_max_daily_loss_pct
            )
        else:
            self.allocations = None
        if "portfolio" not in self.runtimes:
            return
        result = self._step("portfolio", self.portfolio_model, facts, now)
        if self.allocations is not None and (result.intents or self._allocation_changed(day)):
            self.journal.log("allocation", **self.allocations.summary())
            self._allocation_logged = (day, {b: a.budget_usd for b, a in self.allocations.bots.items()})

    def _allocation_changed(self, day: date) -> bool:
        assert self.allocations is not None
        if self._allocation_logged is None or self._allocation_logged[0] != day:
            return True
        before = self._allocation_logged[1]
        return any(
            abs(a.budget_usd - before.get(b, 0.0)) > 0.01 * max(before.get(b, 0.0), 1.0) for b, a in self.allocations.bots.items()
        )

    # --- the risk gate and order intents -------------------------------------------------------------------

    def _open_gate(self, snapshot: Snapshot, now: datetime) -> None:
        """The order rate and the capital left, counted down as entries are granted within this tick."""
        self._orders_this_minute = self.store.orders_since(now - timedelta(seconds=60))
        self._room = entries.room_usd(self.allocations.deployable_usd, snapshot) if self.allocations else 0.0

    def _gate_and_record(self, intents: list[tuple[Bot, Any]], snapshot: Snapshot, now: datetime, day: date) -> None:
        for bot, intent in intents:
            if intent.action == "cancel_entry":
                self.orders.cancel_entries(bot.bot_id)
            elif intent.action == "close_position":
                self._close_bot(bot, day, intent.trigger)
            elif intent.action == "open_entry":
                self._open_entry(bot, snapshot, day, intent.trigger)

    def _open_entry(self, bot: Bot, snapshot: Snapshot, day: date, trigger: str) -> None:
        facts = bot.facts
        failed = list(bot.last_failed_checks or ())
        if not facts.get("preflight_ok") or self.system.state != "armed":
            self._blocked(bot, failed or ["system_armed"])
            return
        if self._orders_this_minute >= self.config.settings.risk.max_orders_per_minute:
            self._blocked(bot, ["order_rate_ok"])
            return
        planned = bot.planned_entry
        if planned is None:
            self._blocked(bot, ["size"])
            return
        request = dataclasses.replace(planned, client_order_id=self.orders.next_client_order_id(bot.bot_id, day))
        bot.entry_blocked = False
        bot.size_blocked_on = None
        self.orders.record_intent(bot.bot_id, day, "entry", request, trigger)
        self.store.bump_counter(day, bot.bot_id, "entries")
        contract = bot.planned_contract
        if contract is not None and contract.symbol == request.symbol:
            self.journal.log(
                "contract_chosen",
                bot=bot.bot_id,
                symbol=contract.symbol,
                underlying=contract.underlying,
                expiry=contract.expiry,
                dte=(contract.expiry - day).days,
                delta=round(contract.delta, 4),
                ask=contract.ask,
            )
        self._orders_this_minute += 1
        self._room -= entries.cost_usd(request, snapshot)

    def _blocked(self, bot: Bot, failed: list[str]) -> None:
        bot.entry_blocked = True
        self.journal.log("entry_blocked", bot=bot.bot_id, failed=failed)

    def _close_bot(self, bot: Bot, day: date, reason: str) -> None:
        """Exit orders for every owned position of the bot that has no working exit order: reduce-only."""
        busy = {r["symbol"] for r in self.orders.working(bot.bot_id)["exit"]}
        for position in self.store.positions(bot.bot_id):
            symbol = position["symbol"]
            if symbol in busy:
                continue
            crypto = asset_class_of(symbol) == "crypto"
            request = OrderRequest(
                symbol,
                "sell",
                self.orders.next_client_order_id(bot.bot_id, day),
                "market",
                "gtc" if crypto else "day",
                qty=position["qty"],
            )
            self.orders.record_intent(bot.bot_id, day, "exit", request, reason)

    def _exitbot_duties(self, facts: Mapping[str, Any], now: datetime, day: date) -> None:
        """The kill switch's standing orders, every tick:
        - a bot halted on its own (a guard failed, repeated rejections) has its entries cancelled and its
          positions closed: its rules can no longer be trusted to manage them;
        - while the system is halted, working entries are cancelled; with flatten, every position is closed."""
        for bot in self.bots:
            if facts["system_halted"] or bot.facts.get("bot_halted"):
                self.orders.cancel_entries(bot.bot_id)
            if bot.facts.get("bot_halted") or facts.get("flatten_requested"):
                self._close_bot(bot, day, "flatten" if facts.get("flatten_requested") else "bot_halted")

    # --- reconciliation and anomalies ----------------------------------------------------------------------

    def _adopt_fee_shortfalls(self, snapshot: Snapshot, now: datetime) -> None:
        """The bots own what the broker delivered after crypto fees, split in proportion to their fills."""
        shortfalls = reconcile.fee_shortfalls(self.store.positions(), snapshot)
        if not shortfalls:
            return
        with self.store.transaction():
            for symbol, at_broker in shortfalls.items():
                holders = [p for p in self.store.positions() if p["symbol"] == symbol]
                total = sum(p["qty"] for p in holders)
                for p in holders:
                    qty = p["qty"] * at_broker / total
                    opened = datetime.fromisoformat(p["opened_at"])
                    self.store.set_position(p["bot_id"], symbol, qty, p["avg_entry_price"], opened)
                    self.journal.log("fee_adjusted", bot=p["bot_id"], symbol=symbol, qty_before=p["qty"], qty_after=qty)

    def _unexplained_now(self, snapshot: Snapshot) -> list[str]:
        known = {r["client_order_id"] for r in self.store.orders()}
        return reconcile.unexplained(self.store.positions(), known, snapshot)

    def _reconcile(self, snapshot: Snapshot) -> None:
        """Start-up: recover committed intents, then compare SQLite with the broker. Unexplained halts."""
        if snapshot.account is None or snapshot.positions is None or snapshot.open_orders is None:
            return  # try again next tick; the system stays unarmed meanwhile
        try:
            self.orders.recover_pending()
        except BrokerError as exc:
            self._record_failure(exc)
            return
        problems = self._unexplained_now(self.broker.snapshot(self.needs))
        if problems:
            self.journal.log("anomaly", what="reconciliation", details=problems)
            self._anomaly_halt(self.clock.now(), "reconciliation: " + "; ".join(problems))
            return
        self.reconciled = True
        self.journal.log("reconciled", positions=len(snapshot.positions), open_orders=len(snapshot.open_orders))

    def _anomalies(self, snapshot: Snapshot, day: date) -> int:
        count = 0
        if self.reconciled:
            current = set(self._unexplained_now(snapshot))
            self._mismatch = {k: self._mismatch.get(k, 0) + 1 for k in current}
            for problem, ticks in self._mismatch.items():
                if ticks == MISMATCH_TICKS:
                    self.journal.log("anomaly", what="unexplained", detail=problem)
                if ticks >= MISMATCH_TICKS:
                    count += 1
        for bot in self.bots:
            rejected = self.store.counter(day, bot.bot_id, "rejections") >= REJECTIONS_BEFORE_ANOMALY
            if rejected and self.store.halt_in_force(bot.bot_id, self.clock.now()) is None:
                self.store.start_halt(bot.bot_id, "orders rejected repeatedly", ("anomaly",), False, self.clock.now(), None)
                self.journal.log("anomaly", what="repeated_rejections", bot=bot.bot_id)
                count += 1
        return count

    def _anomaly_halt(self, now: datetime, reason: str) -> None:
        minutes = self.config.settings.safety.global_cooldown_minutes
        with self.store.transaction():
            self.store.start_halt(SYSTEM_SCOPE, reason, ("anomaly_halt",), False, now, now + timedelta(minutes=minutes))
            if self.system.state != "halted":
                source = self.system.state
                self.runtimes["system"].force_halt(self.system)
                self.store.save_machine_state("system", "system", "halted", now)
                self.journal.log(
                    "transition", machine="system", bot="system", trigger="anomaly", guards=[], **{"from": source, "to": "halted"}
                )
                self.transitions += 1
        self.journal.log(
            "halt", reason=reason, conditions=["anomaly_halt"], flatten=False, until=now + timedelta(minutes=minutes)
        )

    def _halt_on_exception(self, now: datetime, error: str) -> None:
        self.journal.log("anomaly", what="exception", detail=error)
        self._anomaly_halt(now, f"exception in tick: {error}")
