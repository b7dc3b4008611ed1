"""What the enabled bots trade: the symbols to quote and the option chains to read, from bots.yaml."""

from __future__ import annotations

from engine.brokers.base import DataNeeds
from engine.config.checks import trading_bots
from engine.config.model import BotsConfig, CryptoBotConfig, MomentumBotConfig, OptionsBotConfig


def data_needs(bots: BotsConfig) -> DataNeeds:
    stocks: list[str] = []
    crypto: list[str] = []
    underlyings: list[str] = []
    for _path, bot in trading_bots(bots):
        if not bot.enabled:
            continue
        if isinstance(bot, MomentumBotConfig):
            stocks.append(bot.ticker)
        elif isinstance(bot, OptionsBotConfig):
            stocks.extend(bot.tickers)
            underlyings.extend(bot.tickers)
        elif isinstance(bot, CryptoBotConfig):
            crypto.extend(bot.pairs)
    rules = bots.optionsbot.chain_rules
    return DataNeeds(
        stocks=tuple(dict.fromkeys(stocks)),
        crypto=tuple(dict.fromkeys(crypto)),
        option_underlyings=tuple(dict.fromkeys(underlyings)),
        option_dte_min=rules.dte_min,
        option_dte_max=rules.dte_max,
    )
