"""What an entry would be, if a bot opened now: the contract, the size, the order.

Pure functions of the config, the snapshot, the bot's remaining risk budget and the capital left. The engine
plans an entry while it builds a bot's facts (so a signal that cannot be sized never fires `enter`) and sends
exactly the planned order once the risk gate grants it.
"""

from __future__ import annotations

from datetime import date

from engine.brokers.base import OptionContract, OrderRequest, Snapshot
from engine.brokers.symbols import contract_multiplier
from engine.config.model import ChainRules, CryptoBotConfig, MomentumBotConfig, OptionsBotConfig, TradingBotConfig
from engine.trading.portfolio import shares_for

UNNUMBERED = ""  # the client_order_id is given when the gate grants the entry


def room_usd(deployable_usd: float, snapshot: Snapshot) -> float:
    """Capital left to deploy: deployable less what is held, never more than the buying power."""
    if snapshot.account is None:
        return 0.0
    exposure = sum(abs(p.market_value) for p in snapshot.positions or ())
    return max(0.0, min(deployable_usd - exposure, snapshot.account.buying_power))


def cost_usd(request: OrderRequest, snapshot: Snapshot) -> float:
    """What an entry will cost at today's prices (for counting down the capital within a tick)."""
    if request.notional is not None:
        return request.notional
    quote = snapshot.quotes.get(request.symbol)
    chain_ask = next((c.ask for chain in snapshot.option_chains.values() for c in chain if c.symbol == request.symbol), None)
    price = request.limit_price or (quote.ask if quote else chain_ask) or 0.0
    return (request.qty or 0.0) * price * contract_multiplier(request.symbol)


def choose_contract(rules: ChainRules, underlying: str, snapshot: Snapshot, day: date) -> OptionContract | None:
    """A call within dte_min..dte_max and delta_min..delta_max: the delta nearest the middle, then the nearest expiry."""
    target = (rules.delta_min + rules.delta_max) / 2
    candidates = [
        c
        for c in snapshot.option_chains.get(underlying, ())
        if c.option_type == "call"
        and rules.dte_min <= (c.expiry - day).days <= rules.dte_max
        and rules.delta_min <= abs(c.delta) <= rules.delta_max
        and c.ask > 0
    ]
    return min(candidates, key=lambda c: (abs(abs(c.delta) - target), c.expiry), default=None)


def plan_entry(
    cfg: TradingBotConfig, symbol: str, risk_usd: float, room: float, snapshot: Snapshot, day: date
) -> tuple[OrderRequest | None, OptionContract | None]:
    """(the order, the chosen contract for options) or (None, None) when no entry can be sized: no budget, no
    capital, no quote, or no contract inside the chain rules. `symbol` is the one whose signal fired."""
    if risk_usd <= 0 or room <= 0:
        return None, None
    if isinstance(cfg, MomentumBotConfig):
        quote = snapshot.quotes.get(cfg.ticker)
        if quote is None:
            return None, None
        qty = shares_for(risk_usd, quote.ask, cfg.exits.stop_loss_pct, room, spread=quote.ask - quote.bid)
        return (OrderRequest(cfg.ticker, "buy", UNNUMBERED, "market", "day", qty=qty) if qty >= 1 else None), None
    if isinstance(cfg, CryptoBotConfig):
        quote = snapshot.quotes.get(symbol)
        if quote is None:
            return None, None
        loss_per_dollar = cfg.exits.stop_loss_pct / 100 + (quote.ask - quote.bid) / quote.ask
        notional = min(cfg.execution.default_notional_usd, room, risk_usd / loss_per_dollar)
        if notional < 1:
            return None, None
        execution = cfg.execution
        limit = round(quote.ask, 2) if execution.order_type == "limit" else None
        size = {"notional": round(notional, 2)} if execution.use_notional else {"qty": round(notional / quote.ask, 8)}
        return OrderRequest(symbol, "buy", UNNUMBERED, execution.order_type, execution.tif, limit_price=limit, **size), None
    assert isinstance(cfg, OptionsBotConfig)
    contract = choose_contract(cfg.chain_rules, symbol, snapshot, day)
    if contract is None:
        return None, None
    spread = (contract.ask - contract.bid) * 100
    contracts = shares_for(risk_usd, contract.ask * 100, cfg.exits.stop_loss_pct, room, spread=spread)
    if contracts < 1:
        return None, None
    return OrderRequest(contract.symbol, "buy", UNNUMBERED, "market", "day", qty=contracts), contract
