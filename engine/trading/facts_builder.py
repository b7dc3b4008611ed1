"""The guard vocabulary's values for one tick: pure functions of the view and the inputs they are given.

`system_facts` and `bot_facts` return new records and write nothing: no store, no journal, no bot. A fact the
engine could not read is None ("missing"), never a default; a guard that reads a missing fact fails closed.
Every name produced here is in engine/rules/facts.py (`python -m engine facts KIND` lists them), and a test
holds the two to each other.

A quote with a side at 0, crossed, or wider than `health.max_spread_pct` is not a price: it enters no signal's
history (`usable_quotes`), sizes no entry, and fails its bots' `quotes_usable`. Staleness is read from each
quote's own time, per symbol for the bots (`quote_age_s`) and per market for the kill switch (`feed_health`).
"""

from __future__ import annotations

import math
import signal
from collections.abc import Callable, Mapping, Sequence
from collections.abc import Set as AbstractSet
from dataclasses import dataclass
from datetime import datetime, time, timedelta
from typing import Any, NamedTuple, Protocol

from engine.brokers.base import Account, Asset, BrokerError, DataNeeds, OptionContract, OrderRequest, Quote, Snapshot
from engine.brokers.symbols import contract_multiplier
from engine.config.model import HealthSettings, OptionsBotConfig, TradingBotConfig
from engine.core import order_lifecycle as lifecycle
from engine.core.journal import quoted
from engine.core.stop import Terminated
from engine.core.store import EXITBOT_ID, OrderRow, PositionRow
from engine.strategy import described, process_state, type_name
from engine.strategy.watchdog import CALL, late
from engine.trading import entries
from engine.trading.bots import Bot
from engine.trading.portfolio import budget_left
from engine.trading.view import BotRecords, TickView

Facts = dict[str, Any]
PreflightCheck = Callable[[Mapping[str, Any]], tuple[str, ...]]  # facts -> the names of the checks that fail
_NOTHING: frozenset[str] = frozenset()
_CENTURY_SECONDS = 100 * 365.25 * 86400
# How much of what a signal raised is kept in its bot's halt: cut once the keys are masked (`journal.quoted`)
SIGNAL_ERROR_CHARS = 300
# A bot of the equity market whose session.trade_end or manage_until falls at or after the session's close (an
# early close, 13:00 in New York; a zone whose clocks change on other days than New York's), or inside this margin
# before it, is treated as past it this long before the close (longer on a slower loop: `close_margin_minutes`):
# its wall clock would otherwise flatten only once the market is shut, or too late for the order to fill, by an
# order that waits for the next session, and hold the position over the close.
CLOSE_MARGIN_MINUTES = 5.0


def close_margin_minutes(tick_seconds: float, ticks_to_fill: int = 1) -> float:
    """CLOSE_MARGIN_MINUTES, or longer when the ticks are further apart: the first tick within the margin must
    come at least a minute before the close with `ticks_to_fill` ticks still to go (a backtest that fills at the
    next bar needs one more), or the flatten is sent once the market is shut. A run on a 10-minute loop ticked at
    12:50 (ten minutes out: not yet) and 13:00 on an early close, and held its positions over the close."""
    return max(CLOSE_MARGIN_MINUTES, ticks_to_fill * tick_seconds / 60 + 1)


def history_gap_seconds(tick_seconds: float, health: HealthSettings) -> float:
    """The longest time between two ticks whose prices still follow one another in a signal's history: the ticks'
    spacing, and the staleness limit on top (a tick late by less than that is a late tick, not a gap)."""
    return tick_seconds + min(health.max_price_staleness_seconds, _CENTURY_SECONDS)


@dataclass(frozen=True)
class FeedHealth:
    """How fresh the quotes are this tick, per symbol and per market (`feed_health`, once a tick)."""

    stale_quotes: int  # watched symbols whose market is open (or unknown), missing or older than the limit
    stale_markets: int | None  # open markets whose feed is stale; None when a failed read leaves it unknown
    markets: tuple[str, ...] = ()  # the stale markets, by name


@dataclass(frozen=True)
class SystemInputs:
    """What the system's facts need beyond the view: the engine's own long-lived knowledge."""

    settings_facts: Mapping[str, Any]
    feed: FeedHealth  # `feed_health(...)`, once a tick
    reconciled: bool
    system_state: str
    api_failures: int | None  # None: unknown (the saved window could not be read), a missing fact
    anomalies: int
    portfolio_enabled: bool
    kill_triggered: bool


@dataclass(frozen=True)
class EntryPlan:
    """The order an entry would send now (its client_order_id is given when the gate grants it)."""

    request: OrderRequest
    contract: OptionContract | None  # the chosen contract, for options
    symbol: str  # the symbol whose signal fired
    quote_age_s: float | None = None  # options: the chosen contract's quote age, from its own quote time
    spread_pct: float | None = None  # options: the chosen contract's spread, in percent of its mid


class GateCounts(Protocol):
    """The risk gate's running counts (engine/trading/gate.py): a bot sees them as the bots before it left them."""

    orders_last_minute: int
    capital_room_usd: float


SignalAnswer = tuple[str | None, str | None]  # (the symbol to enter, why the signal could not be asked): `_signal`


class BotInputs(NamedTuple):
    """What the bots' facts need beyond the view and the system's facts: one for the whole tick, read by every
    bot (a named tuple, as is BotFacts: cheap to build and to read)."""

    history: Mapping[str, Sequence[float]]  # recent mids per symbol, oldest first (usable quotes only)
    budgets: Mapping[str, float]  # bot id -> today's budget before its losses (`PortfolioBot.budgets`); absent: unknown
    gate: GateCounts  # entries granted earlier this tick counted and their capital deducted
    preflight: Mapping[str, PreflightCheck]  # by bot kind
    assets: Mapping[str, Asset]  # the crypto pairs' minimums and increments (`universe.crypto_assets`)
    usable: Mapping[str, Quote] | None = None  # this tick's `usable_quotes`, judged once for every bot (None: here)
    # bot id -> its signal's answer this tick (`ask_signal`), asked before the tick's transaction; None: asked here
    signals: Mapping[str, SignalAnswer] | None = None
    close_margin: float = CLOSE_MARGIN_MINUTES  # `close_margin_minutes` of the run's tick interval
    shared: TickBots | None = None  # what this tick's (view, system) bots share (None: worked out for each bot)


_new_tuple = tuple.__new__  # a named tuple built from all its fields, without its __new__'s Python call


class BotFacts(NamedTuple):
    facts: Facts
    plan: EntryPlan | None
    failed_checks: tuple[str, ...]
    signal_error: str | None = None  # the bot's signal raised or answered neither True nor False (`_signal`)
    unsized: str | None = None  # the signal fired and no entry could be sized: why (`entries.plan_entry`)


def system_facts(view: TickView, inputs: SystemInputs) -> Facts:
    snapshot = view.snapshot
    account, clock, now = snapshot.account, snapshot.clock, view.now
    return {
        **inputs.settings_facts,
        "account_ok": account is not None and account.usable,
        "account_status": account.status if account else None,
        "trading_blocked": account.trading_blocked if account else None,
        "account_blocked": account.account_blocked if account else None,
        "trade_suspended_by_user": account.trade_suspended_by_user if account else None,
        "crypto_status": account.crypto_status if account else None,
        "options_trading_level": account.options_trading_level if account else None,
        "broker_ok": snapshot.complete,
        "reconciled": inputs.reconciled,
        "market_open": clock.is_open if clock else None,
        "minutes_to_close": ((clock.next_close - now).total_seconds() / 60 if clock.is_open else 0.0) if clock else None,
        "system_armed": inputs.system_state == "armed",
        "system_halted": inputs.system_state == "halted",
        "halt_active": bool(view.system_halts),
        "flatten_requested": view.flatten_requested,  # any system halt in force that flattens
        "daily_pnl_pct": daily_pnl_pct(account),
        "equity_usd": finite(account.equity) if account else None,
        "api_failures_in_window": inputs.api_failures,
        "stale_quotes": inputs.feed.stale_quotes,
        "stale_markets": inputs.feed.stale_markets,
        "anomalies": inputs.anomalies,
        "orders_last_minute": view.orders_last_minute,
        "budgets_allocated": bool(account is not None and inputs.portfolio_enabled),
        "capital_room_usd": None,  # per bot: the gate's room when the bot is evaluated
        "kill_triggered": inputs.kill_triggered,
    }


def daily_pnl_pct(account: Account | None) -> float | None:
    """Today's P&L in percent of last equity, the day's deposits, withdrawals, fees, dividends and interest left
    out: `equity - last_equity` alone counts a withdrawal as a loss and lets a deposit hide one. Missing when the
    broker could not say how much cash moved."""
    if account is None or not account.last_equity or account.non_trade_cash_today is None:
        return None
    return finite((account.equity - account.last_equity - account.non_trade_cash_today) / account.last_equity * 100)


def finite(value: float | None) -> float | None:
    """A number a guard can compare, else missing: NaN compares false with everything, so a NaN loss would never
    reach a loss limit and a NaN P&L never a stop. The broker adapters refuse such values already; this holds the
    facts to it whatever the source."""
    return value if value is not None and math.isfinite(value) else None


def usable_quotes(snapshot: Snapshot, max_spread_pct: float) -> dict[str, Quote]:
    """The quotes that are prices (`entries.usable`): only these enter a signal's history."""
    return {symbol: quote for symbol, quote in snapshot.quotes.items() if entries.usable(quote, max_spread_pct)}


def fresh_window(now: datetime, limit_seconds: float) -> tuple[datetime, datetime]:
    """The span a quote's own time must fall in to count as fresh: no older than the limit, and no further ahead
    of the engine's clock than the limit either. A quote stamped in the future is a feed or a clock that is wrong,
    and one that stays there would never grow old: a frozen feed would pass every staleness check for ever. A
    limit past any date ("never stale") is held to a century."""
    span = timedelta(seconds=min(limit_seconds, _CENTURY_SECONDS))
    return now - span, now + span


def stale_at_send(row: OrderRow, bot: Bot, snapshot: Snapshot, now: datetime, limit_s: float) -> str | None:
    """Why an entry may not leave at `now`, its send, on the reads it was decided on (None: they are still fresh).

    Preflight judged the bot's quotes at the tick's start; the entry leaves after the tick's transaction, or ticks
    later when it was held behind an opposite order. A process suspended in between (SIGSTOP, a VM paused, a
    laptop's sleep), a slow commit or a long hold sent, minutes later, an order decided and priced on quotes long
    past the staleness limit. So at the send the same limit is applied again, by the clock as it reads then: the
    decision (the intent's time) and each of the bot's quotes no older than `limit_s`, and an OptionsBot's
    contract quote no older than its chain_rules.max_quote_age_seconds, found in the snapshot it was chosen from."""
    span = min(limit_s, _CENTURY_SECONDS)
    decided = (now - row.created_at).total_seconds()
    if decided > span:
        return f"decided {decided:.1f} s before its send, past the staleness limit of {limit_s:g} s"
    for symbol in bot.symbols:
        quote = snapshot.quotes.get(symbol)
        age = (now - quote.timestamp).total_seconds() if quote is not None else None
        if age is None or age > span:
            told = "missing" if age is None else f"{age:.1f} s old"
            return f"its quote of {symbol} is {told} at its send, past the staleness limit of {limit_s:g} s"
    contract_limit = _quote_age_limit(bot.config)
    if contract_limit is not None and row.symbol not in bot.symbols:
        contract = entries.chain_contract(snapshot, row.symbol)
        age = (now - contract.quote_time).total_seconds() if contract is not None else None
        if age is None or age > contract_limit:
            told = "not in this tick's chains" if age is None else f"{age:.1f} s old"
            return (f"its contract's quote ({row.symbol}) is {told} at its send, past "
                    f"chain_rules.max_quote_age_seconds ({contract_limit:g} s)")  # fmt: skip
    return None


SLOW_READS = "snapshot"  # the operation of the failure `slow_reads` adds to a snapshot


def slow_reads(snapshot: Snapshot, now: datetime, limit_s: float) -> BrokerError | None:
    """A failed read when the snapshot's reads took longer than the staleness limit (`now`: the tick's time, read
    once they are done): a read that hung, or the process suspended mid-read. Its quotes are then not the market of
    one moment: those read before the stall are stale by now, those after it are not, and judged as a feed, an
    open market read as stale and halted the system for the kill switch's cooloff (390 minutes as shipped) over
    one slow answer. As a failed read it blocks this tick's entries, the feed's staleness is unknown (the kill
    conditions that read it wait for the next tick), and it counts towards `api_failure_halt` like any other."""
    took = (now - snapshot.taken_at).total_seconds()
    if took <= min(limit_s, _CENTURY_SECONDS):
        return None
    return BrokerError("timeout", f"the tick's broker reads took {took:.1f} s, longer than "
                       f"health.max_price_staleness_seconds ({limit_s:g} s)", operation=SLOW_READS)  # fmt: skip


def feed_health(snapshot: Snapshot, needs: DataNeeds, now: datetime, health: HealthSettings) -> FeedHealth:
    """Staleness per symbol and per market, from each quote's own time.

    A market's feed is stale when its reference symbol (`health.reference_symbols`), or else every symbol the
    bots watch in it, is missing or older than `health.max_price_staleness_seconds`, and only while that market
    is open: stocks by the broker's clock, crypto always. So one thin ticker, or stock quotes going quiet after
    the close, halt nothing: a stale symbol blocks its own bots, through preflight. A market that looks stale
    because its quote read or the clock read failed this tick, or the tick's reads took too long (`slow_reads`), is
    unknown (None), not stale."""
    cutoff, ahead = fresh_window(now, health.max_price_staleness_seconds)
    quotes, clock = snapshot.quotes, snapshot.clock
    failed = {error.operation for error in snapshot.errors}
    # quotes the data API refuses to the account (the plan lacks the feed) are no stale feed: their bots are blocked
    # (`data_denied`), and a whole market refused halted the account (data_stale_halt) for every other market's bots
    denied = snapshot.quotes_denied

    def stale(symbol: str) -> bool:
        if symbol in denied:
            return False
        quote = quotes.get(symbol)
        return quote is None or not cutoff <= quote.timestamp <= ahead

    reference = health.reference_symbols
    stale_quotes = 0
    markets: list[str] = []
    unknown = False
    for market, symbols, judge_by, is_open, read in (
        ("stocks", needs.stocks, reference.stocks, clock.is_open if clock else None, "stock_quotes"),
        ("crypto", needs.crypto, reference.crypto, True, "crypto_quotes"),
    ):
        if is_open is not False:
            stale_quotes += sum(1 for symbol in symbols if stale(symbol))
        judged = (judge_by,) if judge_by else symbols
        if not judged or is_open is False or not all(stale(symbol) for symbol in judged):
            continue
        if is_open is None or read in failed or SLOW_READS in failed:
            unknown = True
        else:
            markets.append(market)
    return FeedHealth(stale_quotes, None if unknown and not markets else len(markets), tuple(markets))


# The facts `bot_facts` sets for every bot, whatever its state and inputs, beside those of its kind (`_KIND`).
_OWN = (
    "orders_last_minute",
    "capital_room_usd",
    "in_trade_window",
    "past_trade_end",
    "past_manage_until",
    "bot_halted",
    "bot_paused",
    "data_denied",
    "budget_usd",
    "trades_today",
    "open_positions",
    "holds_position",
    "entry_order_open",
    "exit_order_open",
    "entry_failed",
    "minutes_since_entry_order",
    "position_pnl_pct",
    "worst_position_pnl_pct",
    "minutes_in_position",
    "quote_age_s",
    "quotes_usable",
    "entry_signal",
    "entry_sized",
    "preflight_ok",
)


class TickBots:
    """What the bots of one tick share, worked out once for all of them instead of once a bot (`bot_facts`):

    - the time-window facts of each distinct session (trade_start, trade_end, manage_until, around the clock or
      not): they read the tick alone (its local time, the clock, the close margin, the system's market_open and
      minutes_to_close), never the bot's records;
    - for each kind, the dict every bot's facts are copied from: the system's facts, the facts its kind fixes
      (trades_crypto, trades_options, tradable_now), and a missing value (None) for each fact `bot_facts` then
      sets for the bot (`_OWN`, every one of them set on every path). Holding every key already, the copy takes
      the bot's config facts and its own without growing (a dict that grows is rebuilt: most of the cost of
      adding the config facts to a copy of the system's, measured).

    One for a (view, system) pair: `bot_facts` builds its own when handed one made for another."""

    __slots__ = ("_bases", "_parts", "margin", "system", "view")

    def __init__(self, view: TickView, system: Facts, margin: float) -> None:
        self.view, self.system, self.margin = view, system, margin
        self._parts: dict[tuple[str, bool, time, time, time], tuple[Facts, bool, bool, bool]] = {}
        self._bases: dict[tuple[str, bool], Facts] = {}

    def parts(self, bot: Bot) -> tuple[Facts, bool, bool, bool]:
        """(the dict the bot's facts are copied from, never handed out itself; in_trade_window, past_trade_end,
        past_manage_until, the last two before a position held from an earlier day, the bot's own, is added)."""
        key = (bot.kind, bot.trades_around_the_clock, bot.trade_start, bot.trade_end, bot.manage_until)
        parts = self._parts.get(key)
        if parts is None:
            parts = self._parts[key] = (self._base(*key[:2]), *self._windows(*key[1:]))
        return parts

    def _base(self, kind: str, around: bool) -> Facts:
        base = self._bases.get((kind, around))
        if base is None:
            base = self._bases[(kind, around)] = self.system.copy()
            base["trades_crypto"] = kind == "crypto"
            base["trades_options"] = kind == "options"
            base["tradable_now"] = True if around else self.system["market_open"]
            base.update(dict.fromkeys(_OWN))
        return base

    def _windows(self, around: bool, start: time, end: time, manage_until: time) -> tuple[bool, bool, bool]:
        view, system, margin = self.view, self.system, self.margin
        local = view.local_time
        closing = (
            not around
            and system["market_open"] is True
            and system["minutes_to_close"] is not None
            and system["minutes_to_close"] <= margin
        )
        ends_at_close = closing and _at_or_after_close(view, end, margin)
        return (
            start <= local <= end and not ends_at_close,
            local > end or ends_at_close,
            local >= manage_until or (closing and _at_or_after_close(view, manage_until, margin)),
        )


def bot_facts(view: TickView, bot: Bot, system: Facts, inputs: BotInputs) -> BotFacts:
    # Once per bot per tick: the result is built with tuple.__new__ rather than the named tuple's own __new__ (a
    # Python function: three times the cost).
    bot_id = bot.bot_id
    records = view.bot(bot_id)
    snapshot, now = view.snapshot, view.now
    owned = records.positions
    entries_open = records.open_entries
    gate = inputs.gate
    budget_usd = budget_left(inputs.budgets.get(bot_id), records.realized_pnl)
    busy = _busy(records) if owned or entries_open else _NOTHING  # most bots: no call
    answer = inputs.signals.get(bot_id) if inputs.signals is not None else None
    signal_symbol, signal_error = answer if answer is not None else ask_signal(view, bot, inputs.history)
    max_spread_pct = system["health_max_spread_pct"]
    usable = inputs.usable if inputs.usable is not None else usable_quotes(snapshot, max_spread_pct)
    quote_age_s, quotes_usable = _quotes_state(
        bot.symbols, snapshot.quotes, usable, now, system["health_max_price_staleness_seconds"]
    )
    shared = inputs.shared
    if shared is None or shared.view is not view or shared.system is not system:
        shared = TickBots(view, system, inputs.close_margin)
    base, in_window, past_end, past_manage = shared.parts(bot)
    # In the order they were always worked out, so that of two that raise, the same one is reported.
    held_over = bool(owned) and _held_from_an_earlier_day(view, owned)
    exit_open = bool(records.open_exits) or (bool(owned) and _flatten_working(view, owned))
    if entries_open:
        entry_failed = False
        since_entry = (now - min(r.created_at for r in entries_open)).total_seconds() / 60
    else:
        last_entry = records.last_entry
        entry_failed = (
            bot.memory.entry_blocked  # the gate refused the entry the machine last asked for
            or last_entry is None
            or (last_entry.status in lifecycle.ENDED and last_entry.status != "filled" and not last_entry.filled_qty)
        )
        since_entry = 0.0
    if owned:  # holding (most bots, most ticks: flat, none of this)
        pnl, worst = positions_pnl_pct(
            owned, view.broker_prices, snapshot, max_spread_pct=max_spread_pct, max_quote_age_s=_quote_age_limit(bot.config)
        )
        in_position = (now - min(p.opened_at for p in owned)).total_seconds() / 60
    else:
        pnl = worst = in_position = 0.0
    # Copied (the system's facts, the kind's, a place for each of the bot's own: `TickBots.base`), then filled.
    facts: Facts = base.copy()
    facts.update(bot.config_facts)
    facts["orders_last_minute"] = gate.orders_last_minute
    facts["capital_room_usd"] = gate.capital_room_usd
    facts["in_trade_window"] = in_window
    facts["past_trade_end"] = past_end or held_over
    facts["past_manage_until"] = past_manage or held_over
    facts["bot_halted"] = records.halt is not None
    facts["bot_paused"] = records.paused is not None
    facts["data_denied"] = _data_denied(bot, snapshot) if snapshot.chains_denied or snapshot.quotes_denied else False
    facts["budget_usd"] = budget_usd
    facts["trades_today"] = records.counters.get("entries", 0)  # `records.counter`, without its call
    facts["open_positions"] = len(busy)
    facts["holds_position"] = bool(owned)
    facts["entry_order_open"] = bool(entries_open)
    facts["exit_order_open"] = exit_open
    facts["entry_failed"] = entry_failed
    facts["minutes_since_entry_order"] = since_entry
    facts["position_pnl_pct"] = pnl
    facts["worst_position_pnl_pct"] = worst
    facts["minutes_in_position"] = in_position
    facts["quote_age_s"] = quote_age_s
    facts["quotes_usable"] = quotes_usable
    facts["entry_signal"] = signal_symbol is not None if signal_error is None else None  # missing: it failed
    plan = None
    unsized = None
    if signal_symbol is not None and budget_usd is None:
        unsized = "the bot's budget is unknown (no equity, or the PortfolioBot is not armed)"
    elif signal_symbol is not None and (flattening := _flattening(bot.config, system)) is not None:
        unsized = flattening
    elif signal_symbol is not None and budget_usd is not None:
        left = _risk_left(bot.config, budget_usd, owned, entries_open, snapshot)
        if left is None:
            unsized = "what the bot's working entry risks is unknown (no price for it): its budget left cannot be told"
        elif left <= 0 < budget_usd:
            unsized = "what the bot holds and is entering risks its whole budget for today at exits.stop_loss_pct"
        else:
            request, choice, unsized = entries.plan_entry(
                bot.config,
                signal_symbol,
                left,
                gate.capital_room_usd,
                snapshot,
                view.exchange_day,  # expiries are New York dates (the chain was read from New York's date too)
                max_spread_pct=max_spread_pct,
                assets=inputs.assets,
                busy=busy,
            )
            if request is not None and choice is not None:
                plan = EntryPlan(request, choice.contract, signal_symbol, choice.quote_age_s, choice.spread_pct)
            elif request is not None:
                plan = EntryPlan(request, None, signal_symbol)
    facts["entry_sized"] = plan is not None
    # preflight_ok is still missing (None, from the base): read by no preflight check; set from their answers
    failed = inputs.preflight[bot.kind](facts)
    facts["preflight_ok"] = not failed
    return _new_tuple(BotFacts, (facts, plan, failed, signal_error, unsized))  # BotFacts(facts, plan, ...)


def _risk_left(
    config: TradingBotConfig,
    budget_usd: float,
    owned: Sequence[PositionRow],
    entries_open: Sequence[OrderRow],
    snapshot: Snapshot,
) -> float | None:
    """The budget an entry may risk: today's budget less what the bot's positions, and the unfilled part of its
    working entries, lose at exits.stop_loss_pct. Each entry is sized to risk the budget it is given, so given
    the whole budget again while earlier entries are held, an OptionsBot at risk.max_concurrent_positions 3 put
    three budgets at risk at once. None when a working entry's price is unknown (its risk is then unknown, never
    nothing)."""
    if not (owned or entries_open):
        return budget_usd
    stop = config.exits.stop_loss_pct / 100
    at_risk = sum(p.qty * p.avg_entry_price * contract_multiplier(p.symbol) for p in owned)
    for row in entries_open:
        if row.notional is not None:
            at_risk += max(row.notional - (row.filled_qty * (row.filled_avg_price or 0.0)), 0.0)
            continue
        quote = snapshot.quotes.get(row.symbol)
        contract = entries.chain_contract(snapshot, row.symbol) if quote is None else None
        price = row.limit_price or (quote.ask if quote is not None else contract.ask if contract else None)
        if not price or row.qty is None:
            return None
        at_risk += max(row.qty - row.filled_qty, 0.0) * price * contract_multiplier(row.symbol)
    return max(0.0, budget_usd - at_risk * stop)


def _flatten_working(view: TickView, owned: Sequence[PositionRow]) -> bool:
    """The ExitBot's flatten of a symbol several bots hold is working on one of the bot's own positions: that order
    is the bot's exit (its fills are split among the holders, orders.py), so the bot's machine waits on it in
    `exiting`. Counted as the bot's own orders only, the bot found its exit stalled each tick while the flatten
    worked (hours of ticks for one placed while the market is closed), and went back to `in_position` and out again."""
    flattens = view.bot(EXITBOT_ID).open_exits
    return bool(flattens) and any(r.symbol == p.symbol for r in flattens for p in owned)


def _flattening(config: TradingBotConfig, system: Facts) -> str | None:
    """Why an OptionsBot may not open now: the close is within its exits.flatten_before_close_minutes, so what it
    bought would be sold at the next tick (`near_close`), losing the spread each time, up to max_trades_per_day
    times a day (a flatten of 300 minutes, or one inside the window of an early close). None when it may."""
    if not isinstance(config, OptionsBotConfig):
        return None
    minutes, to_close = config.exits.flatten_before_close_minutes, system["minutes_to_close"]
    if system["market_open"] is not True or to_close is None or to_close > minutes:
        return None
    return f"the close is within exits.flatten_before_close_minutes ({minutes}): an entry would be flattened at once"


def _busy(records: BotRecords) -> AbstractSet[str]:
    """The bot's positions, as symbols: one it holds or is entering. An entry never adds to one, so
    risk.max_concurrent_positions caps the distinct symbols held or being entered."""
    owned, entries_open = records.positions, records.open_entries
    return {p.symbol for p in owned} | {r.symbol for r in entries_open} if owned or entries_open else _NOTHING


def ask_signal(
    view: TickView, bot: Bot, history: Mapping[str, Sequence[float]], settled: process_state.Baseline | None = None
) -> SignalAnswer:
    """The bot's signal's answer this tick (`_signal`), or none at all while the bot is halted for its signal's
    fault: not asked again until resumed (a hung one would cost its budget each tick).

    The engine asks every bot's signal before the tick's transaction opens (`Engine._ask_signals`): a signal is the
    user's code and may take its whole budget (health.max_signal_seconds), and inside the transaction SQLite's
    write lock would be held meanwhile, an operator's `halt` waiting on it. What the answer depends on, the recent
    prices and the bot's own positions and working entries, no step of the tick before the bots' changes.
    `settled`: the process's settings before the tick's signals (`process_state.Baseline`), taken once for all
    of them; None: taken before each call."""
    records = view.bot(bot.bot_id)
    if records.halt is not None and any(h.scope == bot.bot_id and "signal_error" in h.conditions for h in view.halts):
        return None, None
    return _signal(bot, history, _busy(records) if records.positions or records.open_entries else _NOTHING, settled)


def _data_denied(bot: Bot, snapshot: Snapshot) -> bool:
    """Whether the data API refused the account data this bot's entries need (the plan lacks the feed): the quotes of
    a symbol it watches (`Snapshot.quotes_denied`), or, for an OptionsBot, an underlying's chain (`chains_denied`)."""
    if any(symbol in snapshot.quotes_denied for symbol in bot.symbols):
        return True
    config = bot.config
    return isinstance(config, OptionsBotConfig) and any(t in snapshot.chains_denied for t in config.tickers)


def _held_from_an_earlier_day(view: TickView, owned: Sequence[PositionRow]) -> bool:
    """Does the bot hold a position opened on an earlier trading date (system.timezone) than today's: its windows
    are wall-clock times of one date (validation refuses one that wraps past midnight), so that position's
    manage_until is over, though the wall clock starts again at 00:00. A tick need not fall between manage_until
    and midnight (a backtest on minute bars ticks at 23:59:00, then at 00:00:00): the bot carried the position
    into the next day and managed it as that day's, where a run on 5-second ticks had flattened it. The same holds
    for a position left overnight by a run that stopped mid-session."""
    zone = view.zone
    if zone is None:
        return False
    day = view.day
    return any(p.opened_at.astimezone(zone).date() < day for p in owned)


def _at_or_after_close(view: TickView, at: time, margin_minutes: float) -> bool:
    """Is `at` (a wall-clock time of the session's trading date, in system.timezone) inside the close margin of
    the session open now, or past its close: the bot's own clock cannot act on it in time. One after the close
    would act only once the market is shut; one inside the margin may fall after the last tick that can still
    get an order filled (on 5-minute bars, manage_until 15:55 New York acted at 15:55 by an order that would fill
    at the next bar, at 16:00, shut), so it is met where the margin begins."""
    clock = view.snapshot.clock
    if clock is None or view.zone is None:
        return False
    return datetime.combine(view.day, at, view.zone) >= clock.next_close - timedelta(minutes=margin_minutes)


def _quotes_state(
    symbols: Sequence[str], quotes: Mapping[str, Quote], usable_now: Mapping[str, Quote], now: datetime, limit_s: float
) -> tuple[float | None, bool]:
    """(seconds since the oldest of the symbols' quotes, from each quote's own time; whether every one is a
    price). The age is missing, and the quotes not usable, when any quote is missing. The age is missing too when
    a quote is stamped further ahead of the clock than the staleness limit (`fresh_window`): an age that cannot
    be trusted is not a small one."""
    if len(symbols) == 1:  # a MomentumBot's one ticker: the loop below for one symbol, without the loop
        symbol = symbols[0]
        quote = quotes.get(symbol)
        if quote is None:
            return None, False
        stamp = quote.timestamp
        if stamp is None:  # typed never None; the loop below answers so for one that is
            return None, symbol in usable_now
        if stamp > now and (stamp - now).total_seconds() > min(limit_s, _CENTURY_SECONDS):
            return None, symbol in usable_now
        return (now - stamp).total_seconds(), symbol in usable_now
    oldest = newest = None
    usable = True
    for symbol in symbols:
        quote = quotes.get(symbol)
        if quote is None:
            return None, False
        if usable and symbol not in usable_now:
            usable = False
        if oldest is None or quote.timestamp < oldest:
            oldest = quote.timestamp
        if newest is None or quote.timestamp > newest:
            newest = quote.timestamp
    if oldest is None or newest is None:
        return None, usable
    if newest > now and (newest - now).total_seconds() > min(limit_s, _CENTURY_SECONDS):
        return None, usable
    return (now - oldest).total_seconds(), usable


def _signal(
    bot: Bot, history: Mapping[str, Sequence[float]], busy: AbstractSet[str], settled: process_state.Baseline | None = None
) -> tuple[str | None, str | None]:
    """(the first of the bot's symbols, not one it holds or is entering, whose signal says enter now; why the signal
    could not be asked). A signal is the user's own code: one that raises, or answers anything but True or False,
    is this bot's fault, not the tick's: the bot stops there (its `entry_signal` is missing, and the engine halts
    it), while the other bots, and every exit, go on. So is code that changes what the engine relies on in the
    process (a signal handler, the working directory: `process_state`), which is set back after the call.

    The time budget (health.max_signal_seconds) is the bot's for the tick, all its symbols' calls together: a
    call per symbol each with a budget of its own let a bot of ten pairs whose signal took 4.9 s hold the tick,
    every exit and the kill switch with it, for 49 s, its signal never once stopped."""
    spent = 0.0  # by this bot's earlier calls this tick, on the watchdog's clock
    for symbol in bot.symbols:
        if symbol in busy:
            continue
        prices = history.get(symbol)
        if not prices:
            continue
        before = settled if settled is not None else process_state.Baseline()  # what the call may not change
        threads = process_state.threads()
        error: str | None = None  # why the answer is none: what the code raised, or what it answered
        try:
            started = CALL.clock()
            CALL.since = started - spent  # the watchdog's stamp (engine/strategy/watchdog.py): a hung signal is stopped
            try:
                try:
                    # a dict of its own each call: a signal that writes to it changed bots.yaml's value for every
                    # later tick, silently; a read-only mapping broke copy.deepcopy and json.dumps of it
                    answer = bot.signal(prices, dict(bot.signal_params))
                    # numpy's bool (np.mean(p) > x) is an answer too; its truth is read here, where what it raises
                    # is the code's (an object posing as one, whose __bool__ raised, was taken for the engine's
                    # fault), and so are its type's name and module (a metaclass may make them raise), and its repr
                    unanswered = answer is not True and answer is not False and not _numpy_bool(answer)
                    fired = answer is True or (not unanswered and answer is not False and bool(answer))
                    if unanswered:
                        kind = type_name(answer, "a type whose name could not be read")
                        error = f"answered {_shown(answer)} ({kind}), not True or False"
                # What the code raised halts its bot, named. Its message (the exception's __str__) is the code's
                # too, read while the call is timed: one that never returned, read after, held the tick for ever.
                except Exception as exc:
                    error, fired = quoted(described(exc), SIGNAL_ERROR_CHARS), False
                except BaseException as exc:  # sys.exit(), GeneratorExit, ...: ended the whole run, every exit with it
                    if _operators(exc):
                        raise
                    error, fired = quoted(described(exc), SIGNAL_ERROR_CHARS), False
            finally:
                CALL.since = None
                spent += CALL.clock() - started
                try:
                    changed = process_state.restored(before, threads)
                except BaseException:  # a trace or profile function the code set raised on this call (Python then
                    process_state.restored(before, threads)  # unsets it): the rest set back, and what it raised halts
                    raise
        except BaseException as exc:  # the watchdog's SignalTimeout while the code's error was read, a tracer's
            if _operators(exc):
                raise
            return None, quoted(described(exc), SIGNAL_ERROR_CHARS)
        if error is not None:
            return None, error
        if changed is not None:  # set back, but the code did it: it may do worse next tick
            return None, quoted(changed, SIGNAL_ERROR_CHARS)
        if spent > CALL.budget:  # it swallowed the watchdog's SignalTimeout: an answer that came too late is none
            return None, f"{late(CALL.budget)}, and answered all the same (it caught the SignalTimeout raised in it)"
        if fired:
            return symbol, None
    return None, None


def _operators(exc: BaseException) -> bool:
    """Whether a KeyboardInterrupt that came out of a signal is the operator's Ctrl-C or SIGTERM, which must stop
    the command (a backtest, a sweep: Python's default SIGINT handler raises it wherever the code stands, a
    signal's included), or the user's code raising it: under `run`, whose own handler only records a stop
    (`runner.StopSignals`), none can come from the operator. Any other BaseException is the code's."""
    if not isinstance(exc, KeyboardInterrupt):
        return False
    return isinstance(exc, Terminated) or signal.getsignal(signal.SIGINT) is signal.default_int_handler


def _shown(answer: object, limit: int = 200) -> str:
    """The repr of a signal's answer that is no answer, to be cut short once the keys are masked (`quoted`: the
    engine scrubs `signal_error` with its journal), and never raising (a __repr__ that raises would have been
    taken for a fault of the engine's)."""
    try:
        text = repr(answer)
    except Exception:
        return "(an object whose repr failed)"
    return quoted(text, limit)


def _numpy_bool(value: object) -> bool:
    """numpy's own True and False (`numpy.bool_`, named `bool` since numpy 2), told without importing numpy."""
    kind = type(value)
    return kind.__module__ == "numpy" and kind.__name__ in ("bool", "bool_")


def position_pnl_pct(
    owned: Sequence[PositionRow],
    prices: Mapping[str, float],
    snapshot: Snapshot,
    *,
    max_spread_pct: float,
    max_quote_age_s: float | None = None,
) -> float | None:
    """Unrealized P&L of the owned positions together against their cost (`positions_pnl_pct`'s first figure)."""
    return positions_pnl_pct(owned, prices, snapshot, max_spread_pct=max_spread_pct, max_quote_age_s=max_quote_age_s)[0]


def positions_pnl_pct(
    owned: Sequence[PositionRow],
    prices: Mapping[str, float],
    snapshot: Snapshot,
    *,
    max_spread_pct: float,
    max_quote_age_s: float | None = None,
) -> tuple[float | None, float | None]:
    """Unrealized P&L of the owned positions, together against their cost and the worst one's against its own, at
    the broker's price of the position (else the quote's mid, when the quote is a price); both missing when a
    price is missing.

    The worst one is the stop loss's (`worst_position_pnl_pct`): judged on the positions together, a CryptoBot's
    ETH held from 3086 to 3012 (-2.4 % against a 0.75 % stop) hid behind its BTC's gain, and was sold at the take
    profit as if it had made one.

    An OptionsBot's contract (`max_quote_age_s` given: its chain_rules.max_quote_age_seconds; None for other
    bots, whose positions no chain is searched for) is valued at what selling it now would get: its exit is a
    sale at the bid, and it was bought at the ask. At the broker's price, the mark (the mid), a take profit fired
    on a gain the sale did not get and a stop loss fired half a spread late (`_option_sale_price`)."""
    if not owned:
        return 0.0, 0.0
    cost = value = 0.0
    worst: float | None = None
    for p in owned:
        price = prices.get(p.symbol)
        if max_quote_age_s is not None:
            price = _option_sale_price(p.symbol, price, snapshot, max_quote_age_s)
        if price is None:
            quote = snapshot.quotes.get(p.symbol)
            if quote is None or not entries.usable(quote, max_spread_pct):
                return None, None  # missing, never guessed
            price = quote.mid
        position_cost = p.avg_entry_price * p.qty
        cost += position_cost
        value += price * p.qty
        if position_cost:  # one without a cost has no P&L in percent of it
            own = (price * p.qty / position_cost - 1) * 100
            worst = own if worst is None or own < worst else worst
    return (finite((value / cost - 1) * 100) if cost else None), (finite(worst) if worst is not None else None)


def _option_sale_price(symbol: str, mark: float | None, snapshot: Snapshot, max_quote_age_s: float) -> float | None:
    """What selling `symbol` now would get, when this tick's chains hold a two-sided quote for it no older than
    `max_quote_age_s`: the broker's mark less half that quote's spread, or the quote's bid when the broker gave
    no mark. The chain may be up to broker.option_chain_cache_seconds old, and its bid alone would hold a stop
    loss still for as long; the mark is read every tick. Without such a quote (a contract whose expiry left
    dte_min..dte_max, a one-sided quote), the mark as it is."""
    c = entries.chain_contract(snapshot, symbol)
    if c is None or entries.spread_pct(c.bid, c.ask) is None:
        return mark
    if abs((snapshot.taken_at - c.quote_time).total_seconds()) > max_quote_age_s:
        return mark
    return c.bid if mark is None else max(mark - (c.ask - c.bid) / 2, 0.0)


def _quote_age_limit(config: TradingBotConfig) -> float | None:
    """How old an option's quote may be to value a position (an OptionsBot's chain_rules), None for other bots."""
    return config.chain_rules.max_quote_age_seconds if isinstance(config, OptionsBotConfig) else None
