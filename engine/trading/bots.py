"""A trading bot at run time: its config, its machine model, the symbols it watches, its signal, and the
little it must remember from one tick to the next (`BotMemory`), kept apart so that everything else about a
tick can be computed from the view alone."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, time
from typing import Any

from engine.config.checks import bot_kind
from engine.config.model import CryptoBotConfig, MomentumBotConfig, OptionsBotConfig, TradingBotConfig
from engine.core.clock import parse_hhmm
from engine.machines.runtime import MachineModel
from engine.rules.book import RuleBook, history_of
from engine.rules.facts import bot_config_values
from engine.strategy import SignalFunction


@dataclass
class BotMemory:
    """What a bot carries from one tick to the next, written only by the engine's tick."""

    last_failed_checks: tuple[str, ...] | None = None  # logged when it changes
    entry_blocked: bool = False  # the gate refused the entry the machine asked for; `entry_failed` says so
    size_blocked_on: date | None = None  # the day of the reasons in `size_blocked_for`
    size_blocked_for: set[str] = field(default_factory=set)  # why an unsizeable signal was logged that day
    last_denial: tuple[str, ...] = ()  # why the gate last refused an entry (cleared by a grant): for `why`


@dataclass
class Bot:
    config: TradingBotConfig
    kind: str
    model: MachineModel
    symbols: tuple[str, ...]
    signal: SignalFunction
    signal_params: Mapping[str, Any]
    config_facts: dict[str, Any]
    trade_start: time
    trade_end: time
    manage_until: time
    trades_around_the_clock: bool
    history: int  # how many ticks back its signal reads (`history_of`): the engine keeps that many prices, and two
    memory: BotMemory = field(default_factory=BotMemory)

    bot_id: str = field(init=False)  # read several times a tick for every bot: an attribute, not a property

    def __post_init__(self) -> None:
        self.bot_id = self.config.bot_id


def make_bot(config: TradingBotConfig, book: RuleBook) -> Bot:
    kind = bot_kind(config)
    if isinstance(config, MomentumBotConfig):
        symbols: tuple[str, ...] = (config.ticker,)
    elif isinstance(config, OptionsBotConfig):
        symbols = config.tickers
    else:
        assert isinstance(config, CryptoBotConfig)
        symbols = config.pairs
    declared = book.signals[config.signal.mode].body
    params = {name: spec["default"] for name, spec in (declared.get("params") or {}).items()}
    params.update(config.signal.params)
    session = config.session
    return Bot(
        config=config,
        kind=kind,
        model=MachineModel(config.bot_id),
        symbols=symbols,
        signal=book.signal_functions[declared["implementation"]],
        signal_params=params,
        config_facts=bot_config_values(config),
        trade_start=parse_hhmm(session.trade_start),
        trade_end=parse_hhmm(session.trade_end),
        manage_until=parse_hhmm(session.manage_until),
        trades_around_the_clock=isinstance(config, CryptoBotConfig),
        history=_history(history_of(declared), params),
    )


def _history(history: int | str, params: Mapping[str, Any]) -> int:
    """The ticks back this bot's signal reads: the declared count, or its parameter's value for this bot (the
    book's check makes it an integer parameter; a value under 0 reads nothing back)."""
    return max(0, history if isinstance(history, int) else int(params[history]))
