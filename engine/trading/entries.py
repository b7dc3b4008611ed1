"""What an entry would be, if a bot opened now: the contract, the size, the order.

Pure functions of the config, the snapshot, the bot's remaining risk budget and the capital left. The engine
plans an entry while it builds a bot's facts (so a signal that cannot be sized never fires `enter`) and sends
exactly the planned order once the risk gate grants it.

Nothing is sized from a quote that is not a price (a side at 0, crossed, or wider than `health.max_spread_pct`),
nothing is bought with more than the buying power that pays for it (crypto: `non_marginable_buying_power`,
options: `options_buying_power`, stocks: `buying_power`), and a crypto order is rounded to its pair's increments
and refused under its minimums (docs/alpaca.md, "Crypto"). Exits are planned elsewhere and never meet a minimum.
"""

from __future__ import annotations

from collections.abc import Mapping
from collections.abc import Set as AbstractSet
from dataclasses import dataclass
from datetime import date
from decimal import ROUND_CEILING, ROUND_FLOOR, Decimal

from engine.brokers.base import Account, Asset, OptionContract, OrderRequest, Quote, Snapshot
from engine.brokers.symbols import contract_multiplier
from engine.config.checks import CRYPTO_MIN_USD
from engine.config.model import ChainRules, CryptoBotConfig, MomentumBotConfig, OptionsBotConfig, TradingBotConfig
from engine.trading.portfolio import shares_for

UNNUMBERED = ""  # the client_order_id is given when the gate grants the entry
_NOTHING: frozenset[str] = frozenset()


def spread_pct(bid: float, ask: float) -> float | None:
    """The spread in percent of the mid; None when the quote is not two-sided (a side at 0, or crossed)."""
    if bid <= 0 or ask <= 0 or ask < bid:
        return None
    return (ask - bid) / (ask + bid) * 200


def usable(quote: Quote | None, max_spread_pct: float) -> bool:
    """Whether a stock or crypto quote is a price: both sides present, not crossed, the spread within the limit."""
    if quote is None:
        return False
    spread = spread_pct(quote.bid, quote.ask)
    return spread is not None and spread <= max_spread_pct


def room_usd(deployable_usd: float, snapshot: Snapshot) -> float:
    """Capital left to deploy: the deployable part of the equity less what is held, never more than the account's
    buying power (the loosest of its buying powers: each entry is also capped by its own, `buying_power`)."""
    if snapshot.account is None:
        return 0.0
    exposure = sum(abs(p.market_value) for p in snapshot.positions or ())
    return max(0.0, min(deployable_usd - exposure, snapshot.account.buying_power))


def buying_power(cfg: TradingBotConfig, account: Account | None) -> float | None:
    """What this bot's entries are paid with. `buying_power` is a margin figure (up to 4x the equity on a margin
    account), crypto cannot be bought on margin and options have their own; None when the broker did not say."""
    if account is None:
        return None
    if isinstance(cfg, CryptoBotConfig):
        return account.non_marginable_buying_power
    if isinstance(cfg, OptionsBotConfig):
        return account.options_buying_power
    return account.buying_power


def cost_usd(request: OrderRequest, snapshot: Snapshot) -> float | None:
    """What an entry will cost at today's prices (for counting down the capital within a tick); None when that
    cannot be told (no price, no quantity): never 0, which would leave the room whole for the next entry."""
    if request.notional is not None:
        return request.notional
    quote = snapshot.quotes.get(request.symbol)
    chain_ask = next((c.ask for chain in snapshot.option_chains.values() for c in chain if c.symbol == request.symbol), None)
    price = request.limit_price or (quote.ask if quote else chain_ask)
    if not price or not request.qty:
        return None
    return request.qty * price * contract_multiplier(request.symbol)


@dataclass(frozen=True)
class ContractChoice:
    """The contract chosen, and its quote as it was when chosen (logged with the entry)."""

    contract: OptionContract
    quote_age_s: float  # from the contract's own quote time to the snapshot
    spread_pct: float  # of the contract's mid


def choose_contract(
    rules: ChainRules, underlying: str, snapshot: Snapshot, day: date, exclude: AbstractSet[str] = _NOTHING
) -> ContractChoice | None:
    """A call within dte_min..dte_max and delta_min..delta_max whose quote is two-sided, no older than
    max_quote_age_seconds and no wider than max_spread_pct, with greeks (a contract without them cannot be
    placed in the delta range), and not in `exclude` (the contracts the bot holds or is entering): the delta
    nearest the middle, then the nearest expiry."""
    target = (rules.delta_min + rules.delta_max) / 2
    best: tuple[float, date] | None = None
    chosen = None
    for c in snapshot.option_chains.get(underlying, ()):
        if c.option_type != "call" or c.symbol in exclude or not rules.dte_min <= (c.expiry - day).days <= rules.dte_max:
            continue
        greeks = c.greeks
        if greeks is None or not rules.delta_min <= abs(greeks.delta) <= rules.delta_max:
            continue
        spread = spread_pct(c.bid, c.ask)
        if spread is None or spread > rules.max_spread_pct:
            continue
        age = (snapshot.taken_at - c.quote_time).total_seconds()
        if not -rules.max_quote_age_seconds <= age <= rules.max_quote_age_seconds:  # too old, or stamped ahead of us
            continue
        key = (abs(abs(greeks.delta) - target), c.expiry)
        if best is None or key < best:
            best, chosen = key, ContractChoice(c, age, spread)
    return chosen


def floor_to(value: float, step: float) -> float:
    """`value` rounded down to a multiple of `step`, in decimal (0.3 stays 0.3, never 0.30000000000000004)."""
    unit = Decimal(repr(step))
    return float((Decimal(repr(value)) / unit).to_integral_value(ROUND_FLOOR) * unit)


def ceil_to(value: float, step: float) -> float:
    unit = Decimal(repr(step))
    return float((Decimal(repr(value)) / unit).to_integral_value(ROUND_CEILING) * unit)


def plan_entry(
    cfg: TradingBotConfig,
    symbol: str,
    risk_usd: float,
    room: float,
    snapshot: Snapshot,
    day: date,
    *,
    max_spread_pct: float,
    assets: Mapping[str, Asset],
    busy: AbstractSet[str] = _NOTHING,
) -> tuple[OrderRequest | None, ContractChoice | None]:
    """(the order, the chosen contract for options) or (None, None) when no entry can be sized: no budget, no
    capital or buying power, no usable quote, no contract inside the chain rules, or (crypto) the pair's rules
    unknown or the order under its minimums. `symbol` is the one whose signal fired; `busy` the symbols the bot
    holds or is entering (an entry never adds to one: each counts once against max_concurrent_positions)."""
    power = buying_power(cfg, snapshot.account)
    if power is None:
        return None, None
    room = min(room, power)
    if risk_usd <= 0 or room <= 0:
        return None, None
    if isinstance(cfg, OptionsBotConfig):
        choice = choose_contract(cfg.chain_rules, symbol, snapshot, day, busy)
        if choice is None:
            return None, None
        contract = choice.contract
        spread = (contract.ask - contract.bid) * 100
        contracts = shares_for(risk_usd, contract.ask * 100, cfg.exits.stop_loss_pct, room, spread=spread)
        if contracts < 1:
            return None, None
        return OrderRequest(contract.symbol, "buy", UNNUMBERED, "market", "day", qty=contracts), choice
    quote = snapshot.quotes.get(symbol)
    if symbol in busy or quote is None or not usable(quote, max_spread_pct):
        return None, None
    if isinstance(cfg, MomentumBotConfig):
        qty = shares_for(risk_usd, quote.ask, cfg.exits.stop_loss_pct, room, spread=quote.ask - quote.bid)
        return (OrderRequest(symbol, "buy", UNNUMBERED, "market", "day", qty=qty) if qty >= 1 else None), None
    assert isinstance(cfg, CryptoBotConfig)
    return _crypto_entry(cfg, symbol, risk_usd, room, quote, assets.get(symbol)), None


def _crypto_entry(
    cfg: CryptoBotConfig, symbol: str, risk_usd: float, room: float, quote: Quote, asset: Asset | None
) -> OrderRequest | None:
    """A buy limit sits at the ask rounded up to the pair's price increment (BTC/USD's is 1 dollar), so that it
    stays marketable; a quantity is rounded down to the pair's quantity increment. The order must reach the
    pair's min_order_size and, for a USD-quoted pair, Alpaca's 10 USD minimum."""
    if asset is None:
        return None  # the pair's rules are unknown: nothing to round to
    execution = cfg.execution
    loss_per_dollar = cfg.exits.stop_loss_pct / 100 + (quote.ask - quote.bid) / quote.ask
    notional = min(execution.default_notional_usd, room, risk_usd / loss_per_dollar)
    limit = None
    if execution.order_type == "limit":
        if not asset.price_increment:
            return None
        limit = ceil_to(quote.ask, asset.price_increment)
    price = limit or quote.ask
    if execution.use_notional:
        notional = floor_to(notional, 0.01)
        qty = notional / price
        size = {"notional": notional}
    else:
        if not asset.min_trade_increment:
            return None
        qty = floor_to(notional / price, asset.min_trade_increment)
        notional = qty * price
        size = {"qty": qty}
    if qty <= 0 or qty < (asset.min_order_size or 0.0):
        return None
    if symbol.endswith("/USD") and notional < CRYPTO_MIN_USD:
        return None
    return OrderRequest(symbol, "buy", UNNUMBERED, execution.order_type, execution.tif, limit_price=limit, **size)
