"""The fact vocabulary: every name a guard expression may use, with its type, unit and meaning.

Facts are computed once per tick from the broker snapshot and the engine's own records (see
engine/trading/facts_builder.py). Guards read nothing else. Config values are facts too: a bot's
`exits.stop_loss_pct` is the fact `exits_stop_loss_pct`, settings' `health.max_price_staleness_seconds` is
`health_max_price_staleness_seconds`, so bots.yaml and settings.yaml keep driving every threshold.

A fact the engine could not read is None ("missing"); a guard that touches a missing fact raises, and a guard
that raises fails closed (the transition does not fire and the bot halts).
"""

from __future__ import annotations

import dataclasses
import typing
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from engine.brokers.base import ACCOUNT_STATUSES
from engine.config import model

FactType = Literal["bool", "float", "int", "str"]
Scope = Literal["system", "bot"]
BOT_KINDS = ("momentum", "options", "crypto")
SYSTEM_KINDS = ("system", "portfolio")


@dataclass(frozen=True)
class Fact:
    name: str
    type: FactType
    unit: str
    description: str
    scope: Scope
    # A text fact's every possible value, when they are a closed set (the account's statuses, a config choice): a
    # rule comparing it with any other (`account_status == 'ACTVE'`) can never hold, or always holds, and is refused
    # (`book.fact_values`). None: any text.
    values: frozenset[str] | None = None


def _f(
    name: str, type_: FactType, unit: str, description: str, scope: Scope = "bot", values: frozenset[str] | None = None
) -> Fact:
    return Fact(name, type_, unit, description, scope, values)


# Facts every machine can read (the account, the market, the system).
SYSTEM_FACTS: tuple[Fact, ...] = (
    _f("account_ok", "bool", "", "The account was read this tick, is ACTIVE, and nothing is blocked or suspended.", "system"),
    _f(
        "account_status",
        "str",
        "",
        "The account's status as the broker sends it ('ACTIVE' when it may trade).",
        "system",
        ACCOUNT_STATUSES,  # the adapter refuses any other as a bad answer: the fact is then missing
    ),
    _f("trading_blocked", "bool", "", "The broker blocks the account's trading (trading_blocked).", "system"),
    _f("account_blocked", "bool", "", "The broker blocks the account (account_blocked).", "system"),
    _f("trade_suspended_by_user", "bool", "", "The account's owner suspended trading (trade_suspended_by_user).", "system"),
    _f(
        "crypto_status",
        "str",
        "",
        "The account's crypto status ('ACTIVE' when it may trade crypto).",
        "system",
        ACCOUNT_STATUSES,
    ),
    _f(
        "options_trading_level",
        "int",
        "level",
        "The account's effective options level (the lower of the approved level and the owner's cap); 2 buys calls and puts.",
        "system",
    ),
    _f("broker_ok", "bool", "", "Every broker read of this tick succeeded.", "system"),
    _f("reconciled", "bool", "", "Start-up reconciliation of SQLite with the broker found nothing unexplained.", "system"),
    _f("market_open", "bool", "", "The broker's clock says the equity market is open.", "system"),
    _f("minutes_to_close", "float", "min", "Minutes until the market's next close (0 when closed).", "system"),
    _f("system_armed", "bool", "", "The global machine is armed.", "system"),
    _f("system_halted", "bool", "", "A system-wide halt is in force (kill condition or operator).", "system"),
    _f("halt_active", "bool", "", "A halt record is in force in SQLite (it has not ended or expired).", "system"),
    _f("kill_triggered", "bool", "", "At least one enabled kill condition holds this tick.", "system"),
    _f("flatten_requested", "bool", "", "A system halt in force (any of them) asks for every position to be closed.", "system"),
    _f(
        "daily_pnl_pct",
        "float",
        "%",
        "Today's P&L in percent of last equity: equity - last_equity - the day's non-trade cash (deposits, withdrawals,"
        " fees, dividends, interest); unrealized included.",
        "system",
    ),
    _f("equity_usd", "float", "USD", "Account equity.", "system"),
    _f("api_failures_in_window", "int", "count", "Broker failures in the last health.api_failure_window_seconds.", "system"),
    _f(
        "stale_quotes",
        "int",
        "count",
        "Watched symbols whose market is open that are missing or older than health.max_price_staleness_seconds.",
        "system",
    ),
    _f(
        "stale_markets",
        "int",
        "count",
        "Open markets (stocks, crypto) whose feed is stale: its health.reference_symbols symbol, else every symbol"
        " watched in it, missing or older than health.max_price_staleness_seconds.",
        "system",
    ),
    _f("anomalies", "int", "count", "Unexplained events this tick: unowned positions or orders, rejections, errors.", "system"),
    _f("orders_last_minute", "int", "count", "Orders the engine sent in the last 60 seconds.", "system"),
    _f("budgets_allocated", "bool", "", "The PortfolioBot computed today's budgets from a known equity.", "system"),
    _f(
        "capital_room_usd",
        "float",
        "USD",
        "Capital left to deploy: deployable less exposure and entries granted this tick.",
        "system",
    ),
)

# Facts about one trading bot.
BOT_FACTS: tuple[Fact, ...] = (
    _f(
        "in_trade_window",
        "bool",
        "",
        "Local time is between session.trade_start and session.trade_end (for stocks and options, not in the"
        " last 5 min (a tick interval and a minute, if longer) before a close that trade_end reaches or falls within:"
        " an early close).",
    ),
    _f(
        "past_trade_end",
        "bool",
        "",
        "Local time is after session.trade_end, or 5 min (a tick interval and a minute, if longer) before a close"
        " it reaches or falls within (stocks and options), or the bot holds a position opened on an earlier"
        " trading date.",
    ),
    _f(
        "past_manage_until",
        "bool",
        "",
        "Local time is at or after session.manage_until, or 5 min (a tick interval and a minute, if longer) before a"
        " close it reaches or falls within (stocks and options), or the bot holds a position opened on an earlier"
        " trading date.",
    ),
    _f("tradable_now", "bool", "", "The bot's market is open (the equity market; always true for crypto)."),
    _f("preflight_ok", "bool", "", "Every preflight check for an entry by this bot passes."),
    _f(
        "bot_halted",
        "bool",
        "",
        "This bot is halted on its own (a guard or its signal failed, repeated rejections): its positions are closed.",
    ),
    _f(
        "data_denied",
        "bool",
        "",
        "The broker refused this bot data its entries need (403: the account's plan lacks the feed, an OptionsBot's"
        " option chains under options.feed opra without that subscription).",
    ),
    _f(
        "bot_paused",
        "bool",
        "",
        "This bot is paused (the broker refused its orders repeatedly on their merits): no new entries, its positions"
        " kept and managed by its exits.",
    ),
    _f("budget_usd", "float", "USD", "The bot's risk budget for today (missing when unknown)."),
    _f("trades_today", "int", "count", "Entries the bot made today."),
    _f(
        "open_positions",
        "int",
        "count",
        "Distinct symbols the bot holds or has a working entry on (an entry never adds to a symbol already counted).",
    ),
    _f("holds_position", "bool", "", "The bot holds at least one position."),
    _f("entry_order_open", "bool", "", "An entry order of the bot is working at the broker."),
    _f("exit_order_open", "bool", "", "An exit order of the bot, or the ExitBot's flatten of a symbol it holds, is working."),
    _f("entry_failed", "bool", "", "The bot's last entry order ended (canceled, rejected, expired) with nothing filled."),
    _f("minutes_since_entry_order", "float", "min", "Minutes since the bot's working entry order was sent (0 if none)."),
    _f("position_pnl_pct", "float", "%", "Unrealized P&L of the bot's positions against their cost, in percent."),
    _f(
        "worst_position_pnl_pct",
        "float",
        "%",
        "Unrealized P&L of the bot's worst position against its own cost, in percent (position_pnl_pct with one).",
    ),
    _f("minutes_in_position", "float", "min", "Minutes since the bot's oldest open position was entered."),
    _f("quote_age_s", "float", "s", "Age of the oldest quote the bot uses, from its own time (missing when one is missing)."),
    _f(
        "quotes_usable",
        "bool",
        "",
        "Every quote the bot uses is a price: both sides above 0, not crossed, spread within health.max_spread_pct.",
    ),
    _f("trades_crypto", "bool", "", "The bot trades crypto (the account's crypto_status applies to it)."),
    _f("trades_options", "bool", "", "The bot buys options (the account's options_trading_level applies to it)."),
    _f("entry_signal", "bool", "", "The bot's configured signal (signal.mode) says enter now."),
    _f("entry_sized", "bool", "", "An entry can be sized now from the budget and capital left (and, for options, the chain)."),
)


def _config_facts(cls: type, prefix: str, scope: Scope, path: str = "") -> Iterator[Fact]:
    """Flatten a config dataclass into facts: `exits.stop_loss_pct` -> `exits_stop_loss_pct`. `path` is the dotted
    key the fact's description names, built key by key: read back from the fact's name (its first `_` a dot) it
    named keys no file has (`bot.id`, `chain.rules_dte_min`, `health.reference_symbols_stocks`)."""
    hints = typing.get_type_hints(cls)
    for field in dataclasses.fields(cls):
        hint = hints[field.name]
        name = f"{prefix}{field.name}"
        key = f"{path}{field.name}"
        if isinstance(hint, type) and dataclasses.is_dataclass(hint):
            yield from _config_facts(hint, f"{name}_", scope, f"{key}.")
            continue
        kinds: dict[Any, FactType] = {bool: "bool", int: "int", float: "float", str: "str"}
        kind: FactType | None = kinds.get(hint)
        values: frozenset[str] | None = None
        if typing.get_origin(hint) is Literal:  # the schema's enum: a config holding another is refused
            kind, values = "str", frozenset(typing.get_args(hint))
        if kind is not None:
            yield Fact(name, kind, "config", f"Config value {key} (see the schemas).", scope, values)


_BOT_CONFIG = {"momentum": model.MomentumBotConfig, "options": model.OptionsBotConfig, "crypto": model.CryptoBotConfig}
SETTINGS_FACTS: tuple[Fact, ...] = tuple(
    fact
    for section in ("safety", "risk", "health")
    for fact in _config_facts(typing.get_type_hints(model.Settings)[section], f"{section}_", "system", f"{section}.")
)


def vocabulary(kind: str) -> Mapping[str, Fact]:
    """Every fact a machine of `kind` may read, by name."""
    facts: list[Fact] = [*SYSTEM_FACTS, *SETTINGS_FACTS]
    if kind in BOT_KINDS:
        facts += [*BOT_FACTS, *_config_facts(_BOT_CONFIG[kind], "", "bot")]
    elif kind not in SYSTEM_KINDS:
        raise KeyError(kind)
    return {fact.name: fact for fact in facts}


def all_kinds() -> tuple[str, ...]:
    return (*SYSTEM_KINDS, *BOT_KINDS)


def settings_values(settings: model.Settings) -> dict[str, Any]:
    """The settings' fact values, by fact name."""
    return _flat_values(settings, "", sections=("safety", "risk", "health"))


def bot_config_values(bot: model.TradingBotConfig) -> dict[str, Any]:
    """A bot's config fact values, by fact name."""
    return _flat_values(bot, "")


def _flat_values(obj: Any, prefix: str, sections: tuple[str, ...] | None = None) -> dict[str, Any]:
    values: dict[str, Any] = {}
    for field in dataclasses.fields(obj):
        if sections is not None and field.name not in sections:
            continue
        value = getattr(obj, field.name)
        name = f"{prefix}{field.name}"
        if dataclasses.is_dataclass(value):
            values.update(_flat_values(value, f"{name}_"))
        elif isinstance(value, (bool, int, float, str)):
            values[name] = value
    return values
