"""What must hold before a run may start: the broker accepts our keys, and every configured symbol exists and
trades. A failure here is a clear start-up error naming the bot, and a non-zero exit, never a run that
starts and then cannot trade (or trades what the user did not mean).
"""

from __future__ import annotations

from engine.brokers.base import Broker, BrokerError
from engine.config.checks import trading_bots
from engine.config.model import BotsConfig, CryptoBotConfig, MomentumBotConfig, OptionsBotConfig


def symbols_by_bot(bots: BotsConfig) -> list[tuple[str, str, bool]]:
    """(bot id, symbol, whether the bot sizes it in fractions) for every enabled bot's symbols."""
    out: list[tuple[str, str, bool]] = []
    for _path, bot in trading_bots(bots):
        if not bot.enabled:
            continue
        if isinstance(bot, MomentumBotConfig):
            out.append((bot.bot_id, bot.ticker, False))  # whole shares
        elif isinstance(bot, OptionsBotConfig):
            out += [(bot.bot_id, ticker, False) for ticker in bot.tickers]  # the underlyings; contracts are chosen live
        elif isinstance(bot, CryptoBotConfig):
            out += [(bot.bot_id, pair, True) for pair in bot.pairs]
    return out


def check_broker(broker: Broker, bots: BotsConfig) -> list[str]:
    """One line per reason the run cannot start; empty when it can. The broker refusing our keys, or not
    answering, stops at the first question: nothing else can be known."""
    problems: list[str] = []
    for bot_id, symbol, fractional in symbols_by_bot(bots):
        try:
            asset = broker.get_asset(symbol)
        except BrokerError as exc:
            if exc.reason == "unauthorized":
                return [f"the broker refused the API keys ({exc.message}): check ALPACA_KEY and ALPACA_SECRET in .env"]
            return [f"cannot check {symbol} for {bot_id}: {exc}"]
        if asset is None:
            problems.append(f"{bot_id}: '{symbol}' is not a symbol the broker knows")
        elif asset.status != "active" or not asset.tradable:
            state = f"status {asset.status}, tradable {asset.tradable}"
            problems.append(f"{bot_id}: '{symbol}' is not tradable at the broker ({state})")
        elif fractional and not asset.fractionable:
            problems.append(f"{bot_id}: '{symbol}' cannot be traded in fractions, which this bot's sizing needs")
    return problems
