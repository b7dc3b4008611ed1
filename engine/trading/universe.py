"""What the enabled bots trade: the symbols to quote and the option chains to read, from bots.yaml; and the
crypto pairs' trading rules (minimum order, increments), read from the broker."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from engine.brokers.base import Asset, Broker, DataNeeds
from engine.config.checks import trading_bots
from engine.config.model import BotsConfig, CryptoBotConfig, MomentumBotConfig, OptionsBotConfig, Settings


def data_needs(bots: BotsConfig, settings: Settings | None = None) -> DataNeeds:
    """With `settings`, `health.reference_symbols` too: they are quoted every tick, traded or not, because the
    data-stale kill condition judges their market's feed by them."""
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
    if settings is not None:
        reference = settings.health.reference_symbols
        stocks += [reference.stocks] if reference.stocks else []
        crypto += [reference.crypto] if reference.crypto else []
    rules = bots.optionsbot.chain_rules
    return DataNeeds(
        stocks=tuple(dict.fromkeys(stocks)),
        crypto=tuple(dict.fromkeys(crypto)),
        option_underlyings=tuple(dict.fromkeys(underlyings)),
        option_dte_min=rules.dte_min,
        option_dte_max=rules.dte_max,
        option_max_quote_age_s=rules.max_quote_age_seconds,
    )


def crypto_assets(broker: Broker, pairs: Iterable[str]) -> Mapping[str, Asset]:
    """The pairs' assets (minimum order size, quantity and price increments) from one `/v2/assets` read.

    Alpaca changes the increments with the price, so they are read, never written down. A pair the broker does
    not list, or lists as not active or not tradable, is left out, and an entry on it cannot be sized (fail
    closed: Alpaca would refuse the order, and repeated refusals halt). Raises BrokerError when the read fails:
    the caller decides when to try again."""
    wanted = set(pairs)
    if not wanted:
        return {}
    found = broker.get_assets("crypto")
    return {a.symbol: a for a in found if a.symbol in wanted and a.tradable and a.status == "active"}
