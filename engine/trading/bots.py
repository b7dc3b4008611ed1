"""A trading bot at run time: its config, its machine model, the symbols it watches, its signal."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date
from typing import Any

from engine.brokers.base import OptionContract, OrderRequest
from engine.config.checks import bot_kind
from engine.config.model import CryptoBotConfig, MomentumBotConfig, OptionsBotConfig, TradingBotConfig
from engine.machines.runtime import MachineModel
from engine.rules.book import RuleBook
from engine.rules.facts import bot_config_values
from engine.strategy.signals import SIGNALS, SignalFunction


@dataclass
class Bot:
    config: TradingBotConfig
    kind: str
    model: MachineModel
    symbols: tuple[str, ...]
    signal: SignalFunction
    signal_params: Mapping[str, Any]
    config_facts: dict[str, Any]
    signal_symbol: str | None = None
    last_failed_checks: tuple[str, ...] | None = None
    entry_blocked: bool = False
    size_blocked_on: date | None = None  # the day an unsizeable signal was last logged
    planned_entry: OrderRequest | None = None
    planned_contract: OptionContract | None = None
    facts: dict[str, Any] = field(default_factory=dict)

    @property
    def bot_id(self) -> str:
        return self.config.bot_id

    @property
    def lookback(self) -> int:
        return int(self.signal_params.get("lookback_ticks", 12))


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
    return Bot(
        config=config,
        kind=kind,
        model=MachineModel(config.bot_id),
        symbols=symbols,
        signal=SIGNALS[declared["implementation"]],
        signal_params=params,
        config_facts=bot_config_values(config),
    )
