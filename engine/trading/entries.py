"""What an entry would be, if a bot opened now: the contract, the size, the order.

Pure functions of the config, the snapshot, the bot's remaining risk budget and the capital left. The engine
plans an entry while it builds a bot's facts (so a signal that cannot be sized never fires `enter`) and sends
exactly the planned order once the risk gate grants it.

Nothing is sized from a quote that is not a price (a side at 0, crossed, or wider than `health.max_spread_pct`),
nor at a spread that puts the entry at its own exits.stop_loss_pct the moment it fills (`at_stop_on_fill`),
nothing is bought with more than the buying power that pays for it (crypto: `non_marginable_buying_power`,
options: `options_buying_power`, stocks: `buying_power`), and a crypto order is rounded to its pair's increments
and refused under its minimums (docs/alpaca.md, "Crypto"). Exits are planned elsewhere and never meet a minimum.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping, Sequence
from collections.abc import Set as AbstractSet
from dataclasses import dataclass
from datetime import date
from decimal import ROUND_CEILING, ROUND_FLOOR, Decimal

from engine.brokers.base import Account, Asset, OptionContract, Order, OrderRequest, Quote, Snapshot
from engine.brokers.symbols import contract_multiplier
from engine.config.checks import CRYPTO_MIN_USD
from engine.config.model import ChainRules, CryptoBotConfig, MomentumBotConfig, OptionsBotConfig, TradingBotConfig
from engine.core.money import money
from engine.trading.portfolio import shares_for

UNNUMBERED = ""  # the client_order_id is given when the gate grants the entry
_NOTHING: frozenset[str] = frozenset()


def spread_pct(bid: float, ask: float) -> float | None:
    """The spread in percent of the mid; None when the quote is not two-sided (a side at 0, or crossed)."""
    if bid <= 0 or ask <= 0 or ask < bid:
        return None
    return (ask - bid) / (ask + bid) * 200


def loss_at_fill_pct(bid: float, ask: float, *, option: bool) -> float:
    """What an entry bought at the ask has lost the moment it fills, before the price moves, in percent of what it
    cost: its position is valued as `facts_builder.positions_pnl_pct` values it, an option at what selling it gets
    (the mark, the mid, less half the spread: the bid), so its whole spread; a share or coin at the broker's price
    or the quote's mid, so half its spread. At exits.stop_loss_pct or past it (`at_stop_on_fill`), the stop loss
    sells the position the tick after it fills: the spread lost, one of the day's max_trades_per_day used, and the
    next entry the same. A two-sided quote only (`spread_pct` not None)."""
    lost = ask - bid if option else (ask - bid) / 2
    return lost / ask * 100


def at_stop_on_fill(bid: float, ask: float, stop_loss_pct: float, *, option: bool) -> bool:
    """Whether an entry at this quote is at its stop the moment it fills (`loss_at_fill_pct`): the stop loss fires
    at a loss of stop_loss_pct or more (rules/guards.yaml `stop_loss_hit`)."""
    return loss_at_fill_pct(bid, ask, option=option) >= stop_loss_pct


def spread_at_stop_pct(stop_loss_pct: float, *, option: bool) -> float:
    """The spread, in percent of the mid (as max_spread_pct limits are written), from which an entry is at its
    stop the moment it fills (`loss_at_fill_pct`); infinite when no spread reaches a stop that wide. For
    `--validate`'s warning of a spread limit that lets such entries in (`spread_limit_warnings`)."""
    lost = stop_loss_pct / 100  # a fraction of the ask: the whole spread (an option) or half of it
    # a spread s of the mid: the ask is mid (1 + s/2), the loss s (or s/2) / (1 + s/2); solved for s
    left = 1 - lost / 2 if option else 1 - lost
    if left <= 0:
        return math.inf
    return (lost if option else 2 * lost) / left * 100


def usable(quote: Quote | None, max_spread_pct: float) -> bool:
    """Whether a stock or crypto quote is a price: both sides present, not crossed, the spread within the limit."""
    if quote is None:
        return False
    # `spread_pct`, written out: asked of every quote every tick (`usable_quotes`)
    bid, ask = quote.bid, quote.ask
    if bid <= 0 or ask <= 0 or ask < bid:
        return False
    return (ask - bid) / (ask + bid) * 200 <= max_spread_pct


def room_usd(deployable_usd: float, snapshot: Snapshot) -> float:
    """Capital left to deploy: the deployable part of the equity less what is held and less what the working buys
    (entries granted in earlier ticks, still resting: a limit, a GTC crypto order) will cost once they fill
    (`working_cost_usd`), never more than the account's `buying_power` (Alpaca's widest figure, the margin one:
    each entry is also capped by the one that pays for it, `buying_power` here). Counting positions only, each tick
    started from the whole deployable room again, granted entries against capital already committed, and the cash
    reserve was breached once they filled. No room is left when the account, the positions or the open orders
    could not be read, or a working buy's cost cannot be told: what is committed is then unknown, never nothing."""
    if snapshot.account is None or snapshot.positions is None or snapshot.open_orders is None:
        return 0.0
    exposure = sum(abs(p.market_value) for p in snapshot.positions)
    for order in snapshot.open_orders:
        if order.side != "buy":
            continue
        cost = working_cost_usd(order, snapshot)
        if cost is None:
            return 0.0
        exposure += cost
    if not math.isfinite(exposure):
        return 0.0
    return max(0.0, min(deployable_usd - exposure, snapshot.account.buying_power))


def working_cost_usd(order: Order, snapshot: Snapshot) -> float | None:
    """What the unfilled part of a working buy will cost, priced as `cost_usd` prices an entry (its amount; else
    its limit price, or the ask now); None when that cannot be told (no price, no quantity, a fill without a
    price), never 0."""
    filled = order.filled_qty
    if order.notional is not None:
        if filled and order.filled_avg_price is None:
            return None
        left = order.notional - filled * (order.filled_avg_price or 0.0)
    else:
        price = _price(order.symbol, order.limit_price, snapshot)
        if order.qty is None or price is None:
            return None
        left = (order.qty - filled) * price * contract_multiplier(order.symbol)
    return max(0.0, left) if math.isfinite(left) else None


def _price(symbol: str, limit_price: float | None, snapshot: Snapshot) -> float | None:
    """What an order on `symbol` is priced at for the capital: its limit, else the ask of this tick's quote or of
    the contract in this tick's chains; None when there is none."""
    if limit_price:
        return limit_price
    quote = snapshot.quotes.get(symbol)
    if quote is not None:
        return quote.ask or None
    contract = chain_contract(snapshot, symbol)
    return contract.ask or None if contract is not None else None


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


def chain_contract(snapshot: Snapshot, symbol: str) -> OptionContract | None:
    """The contract `symbol` in the snapshot's option chains (its ask, its quote's age), None when no chain holds it.
    A chain may be one reused from the cache, read up to broker.option_chain_cache_seconds ago
    (`Snapshot.chains_read_at`): its quote is as old as its `quote_time` says, never this tick's by being here."""
    return next((c for chain in snapshot.option_chains.values() for c in chain if c.symbol == symbol), None)


def cost_usd(request: OrderRequest, snapshot: Snapshot) -> float | None:
    """What an entry will cost at today's prices (for counting down the capital within a tick); None when that
    cannot be told (no price, no quantity): never 0, which would leave the room whole for the next entry."""
    if request.notional is not None:
        return request.notional
    price = _price(request.symbol, request.limit_price, snapshot)
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
    rules: ChainRules,
    underlying: str,
    snapshot: Snapshot,
    day: date,
    exclude: AbstractSet[str] = _NOTHING,
    *,
    stop_loss_pct: float,
) -> ContractChoice | None:
    """A call that passes every one of `_chain_filters` (within dte_min..dte_max and delta_min..delta_max, with
    greeks, a two-sided quote no wider than max_spread_pct, whose spread alone does not put it at the bot's
    exits.stop_loss_pct once bought, no older than max_quote_age_seconds, not in `exclude`: the contracts the bot
    holds or is entering): the delta nearest the middle, then the nearest expiry."""
    target = (rules.delta_min + rules.delta_max) / 2
    filters = [keeps for _what, keeps in _chain_filters(rules, snapshot, day, exclude, stop_loss_pct)]
    best: tuple[float, date] | None = None
    chosen = None
    for c in snapshot.option_chains.get(underlying, ()):
        if c.option_type != "call" or not all(keeps(c) for keeps in filters):
            continue
        assert c.greeks is not None  # a filter's
        key = (abs(abs(c.greeks.delta) - target), c.expiry)
        if best is None or key < best:
            spread = spread_pct(c.bid, c.ask)
            assert spread is not None  # a filter's
            best, chosen = key, ContractChoice(c, (snapshot.taken_at - c.quote_time).total_seconds(), spread)
    return chosen


def _chain_filters(
    rules: ChainRules, snapshot: Snapshot, day: date, exclude: AbstractSet[str], stop_loss_pct: float
) -> list[tuple[str, Callable[[OptionContract], bool]]]:
    """The chain rules, each a test of a contract and the words for none passing it (`no_contract_reason`), in
    the order they are told: one definition for the choice and for the reason no contract was chosen.

    A contract is bought at its ask and valued at what selling it gets (the mark less half the spread), so one
    whose spread is as wide as the stop is at its stop the tick after it fills (`at_stop_on_fill`): under the
    shipped 10 % chain_rules.max_spread_pct and 0.30 % stop, every contract over about 0.3 % wide was bought and
    sold a tick later, its spread lost, up to max_trades_per_day a day. No spread limit lets one in."""
    return [
        (f"within chain_rules dte_min..dte_max ({rules.dte_min}-{rules.dte_max} days)",
         lambda c: rules.dte_min <= (c.expiry - day).days <= rules.dte_max),
        (f"with greeks and an absolute delta within delta_min..delta_max ({rules.delta_min:g}-{rules.delta_max:g})",
         lambda c: c.greeks is not None and rules.delta_min <= abs(c.greeks.delta) <= rules.delta_max),
        (f"with a two-sided quote no wider than chain_rules.max_spread_pct ({rules.max_spread_pct:g} %)",
         lambda c: (spread := spread_pct(c.bid, c.ask)) is not None and spread <= rules.max_spread_pct),
        (_AT_STOP, lambda c: spread_pct(c.bid, c.ask) is not None
         and not at_stop_on_fill(c.bid, c.ask, stop_loss_pct, option=True)),
        # too old, or stamped ahead of us
        (f"with a quote no older than chain_rules.max_quote_age_seconds ({rules.max_quote_age_seconds:g} s)",
         lambda c: abs((snapshot.taken_at - c.quote_time).total_seconds()) <= rules.max_quote_age_seconds),
        ("that the bot does not already hold or enter", lambda c: c.symbol not in exclude),
    ]  # fmt: skip


_AT_STOP = "narrow enough for exits.stop_loss_pct"  # `_spread_at_stop` words it, with its figures


def _spread_at_stop(unit: str, quotes: Sequence[Quote | OptionContract], stop_loss_pct: float, *, option: bool) -> str:
    """Why no entry was sized at `quotes` (two-sided, each at its stop once bought: `at_stop_on_fill`): the stop and
    the loss a fill would start at (the narrowest of them, for a chain), as `why BOT` and the `entry_blocked` event
    say it; once a day by its words (`Figured`): the quote changes every tick."""
    best = min(quotes, key=lambda q: loss_at_fill_pct(q.bid, q.ask, option=option))
    loss = loss_at_fill_pct(best.bid, best.ask, option=option)
    stop = f"exits.stop_loss_pct ({stop_loss_pct:g} %)"
    if option:
        kind = f"no {unit} {_AT_STOP} ({stop_loss_pct:g} %)"
        text = (f"{kind}: bought at the ask and valued at what selling it gets (the mark less half the spread), each is "
                f"at its stop the moment it fills; the narrowest, {best.symbol} (bid {_qty(best.bid)}, ask "
                f"{_qty(best.ask)}), loses its spread, {loss:.3g} % of the ask, at once")  # fmt: skip
        return Figured(text, kind)
    mid = (best.bid + best.ask) / 2
    kind = f"a {unit} is at {stop} the moment it fills"
    text = (f"{kind}: bought at the ask ({_qty(best.ask)}) and valued at the mid ({_qty(mid)}), it loses half the "
            f"spread, {loss:.3g} % of the ask, at once")  # fmt: skip
    return Figured(text, kind)


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
) -> tuple[OrderRequest | None, ContractChoice | None, str | None]:
    """(the order, the chosen contract for options, None) or (None, None, why no entry can be sized): no budget, no
    capital or buying power, no usable quote, no contract inside the chain rules, or (crypto) the pair's rules
    unknown or the order under its minimums. `symbol` is the one whose signal fired; `busy` the symbols the bot
    holds or is entering (an entry never adds to one: each counts once against max_concurrent_positions).
    `day` is New York's date (`TickView.exchange_day`): an option's days to expiry count from the exchange's date,
    not from system.timezone's.

    The reason is what the `entry_blocked` event says: one word, `size`, covered everything from a budget used up
    to chain rules that select no contract, so a bot configured into never trading (dte_min 0 on a day without an
    expiry, a crypto order that rounds to under 10 USD) looked like one short of money. A limit that bit says
    which, with its figures (the budget left, the capital left, what one unit risks or costs): "the budget or the
    capital" left the trader to guess between a budget of 0.35 USD and a capital of 69,596 USD. The engine says a
    reason once a day by its words without their figures (`reason_kind`), which change every tick."""
    power = buying_power(cfg, snapshot.account)
    if power is None:
        return None, None, "the broker did not say the buying power that pays for this entry"
    if risk_usd <= 0:
        return None, None, "the bot's risk budget for today is used up"
    if min(room, power) <= 0:
        none_left = "no capital left to deploy (cash_reserve_pct, positions held, buying power)"
        return None, None, f"{none_left}: deployable less what is held {_usd(room)} USD, buying power {_usd(power)} USD"
    room = min(room, power)
    if isinstance(cfg, OptionsBotConfig):
        stop = cfg.exits.stop_loss_pct
        choice = choose_contract(cfg.chain_rules, symbol, snapshot, day, busy, stop_loss_pct=stop)
        if choice is None:
            return None, None, no_contract_reason(cfg.chain_rules, symbol, snapshot, day, busy, stop_loss_pct=stop)
        contract = choice.contract
        spread = (contract.ask - contract.bid) * 100
        contracts = shares_for(risk_usd, contract.ask * 100, cfg.exits.stop_loss_pct, room, spread=spread)
        if contracts < 1:  # the underlying, not the contract: one reason a day for the bot's chain
            reason = _too_big(f"one contract on {symbol}", risk_usd, contract.ask * 100, cfg.exits.stop_loss_pct, room, spread)
            return None, None, reason
        # A limit at the ask it was sized at: a market order filled at the live price, which had moved away from the
        # chain's quote (read up to broker.option_chain_cache_seconds earlier): sized at 12.23, one filled at 12.44.
        # Floored to the cent an option limit takes (order_rules), never lifted above the sized price. Options
        # take day orders only; one that does not fill is cancelled by the machine (`entry_timed_out`).
        limit = floor_to(contract.ask, 0.01)
        order = OrderRequest(contract.symbol, "buy", UNNUMBERED, "limit", "day", qty=contracts, limit_price=limit)
        return order, choice, None
    quote = snapshot.quotes.get(symbol)
    if symbol in busy:
        return None, None, f"the bot already holds or is entering {symbol}"
    if quote is None or not usable(quote, max_spread_pct):
        return None, None, f"no usable quote for {symbol} (none, a side at 0, crossed, or wider than health.max_spread_pct)"
    if at_stop_on_fill(quote.bid, quote.ask, cfg.exits.stop_loss_pct, option=False):
        return None, None, _spread_at_stop(f"share of {symbol}" if isinstance(cfg, MomentumBotConfig) else f"buy of {symbol}",
                                           [quote], cfg.exits.stop_loss_pct, option=False)  # fmt: skip
    if isinstance(cfg, MomentumBotConfig):
        qty = shares_for(risk_usd, quote.ask, cfg.exits.stop_loss_pct, room, spread=quote.ask - quote.bid)
        if qty < 1:
            spread = quote.ask - quote.bid
            return None, None, _too_big(f"one share of {symbol}", risk_usd, quote.ask, cfg.exits.stop_loss_pct, room, spread)
        return OrderRequest(symbol, "buy", UNNUMBERED, "market", "day", qty=qty), None, None
    assert isinstance(cfg, CryptoBotConfig)
    request, why = _crypto_entry(cfg, symbol, risk_usd, room, quote, assets.get(symbol), max_spread_pct)
    return request, None, why


def _usd(value: float) -> str:
    return money(value, sign=False, group=True)


class Figured(str):
    """A reason with figures that change every tick, carrying its words without them (`kind`): the engine says a
    reason once a day by its kind (`reason_kind`), asked every tick a bot's signal fires and its entry is too big;
    worked out again from the text each time, that was a regular expression a bot a tick (3 µs, measured)."""

    kind: str

    def __new__(cls, text: str, kind: str) -> Figured:
        made = super().__new__(cls, text)
        made.kind = kind
        return made

    def __reduce__(self) -> tuple[type[Figured], tuple[str, str]]:  # pickled whole (a str's own way drops `kind`)
        return Figured, (str(self), self.kind)


def _too_big(unit: str, risk_usd: float, price: float, stop_loss_pct: float, room: float, spread: float) -> str:
    """Why `shares_for` sized less than one unit, as the limit that bit with its figures: what one unit loses at
    the stop (the spread included) against the bot's budget left today, or what it costs against the capital left
    to deploy (cash_reserve_pct, positions held, buying power), and the other limit's figure beside it. Only the
    branch's own words are built: this runs each tick a bot's signal fires while its entry cannot be sized."""
    loss = price * stop_loss_pct / 100 + max(spread, 0.0)
    over_budget, over_capital = loss > risk_usd, price > room
    risks = f"{unit} risks {_usd(loss)} USD at exits.stop_loss_pct (the spread included)"
    if over_budget and over_capital:
        text = (f"{risks}, more than the bot's budget left today: {_usd(risk_usd)} USD; and it costs {_usd(price)} "
                f"USD, more than the capital left to deploy: {_usd(room)} USD")  # fmt: skip
        return Figured(text, f"{unit}: the budget used up and the capital reserved")
    if over_budget:
        text = (f"{risks}, more than the bot's budget left today: {_usd(risk_usd)} USD (the budget used up, not the "
                f"capital: {_usd(room)} USD left to deploy)")  # fmt: skip
        return Figured(text, f"{unit}: the budget used up")
    if over_capital:
        text = (f"{unit} costs {_usd(price)} USD, more than the capital left to deploy: {_usd(room)} USD (the capital "
                f"reserved, not the budget: {_usd(risk_usd)} USD left today)")  # fmt: skip
        return Figured(text, f"{unit}: the capital reserved")
    text = (f"{unit} sizes to less than one unit: {risks}, the bot's budget left today: {_usd(risk_usd)} USD; {unit} "
            f"costs {_usd(price)} USD, the capital left to deploy: {_usd(room)} USD")  # at a float's last digit
    return Figured(text, f"{unit}: less than one unit")


_FIGURE = re.compile(r"\d[\d,]*(\.\d+)?")


def _least(notional: float, room: float, by_budget: float) -> str:
    """A crypto order's size in words: the least of three limits, which one it was, and each one's figure."""
    limits = {
        "execution.default_notional_usd": notional,
        "the capital left to deploy": room,
        "the bot's budget left today at the stop (the spread included)": by_budget,
    }
    which = min(limits, key=limits.__getitem__)
    others = ", ".join(f"{name} {_usd(value)} USD" for name, value in limits.items() if name != which)
    return f"sized by {which} ({_usd(limits[which])} USD; the least of three: {others})"


def _qty(value: float) -> str:
    """A quantity in plain digits (1.9995e-06 is 0.0000019995), as the broker's minimums are written."""
    return format(Decimal(repr(value)), "f")


def reason_kind(reason: str) -> str:
    """A sizing reason without its figures, by which the engine says it once a day: the budget and capital left
    change every tick, and a reason keyed with them was logged every tick."""
    if isinstance(reason, Figured):
        return reason.kind
    return _FIGURE.sub("#", reason)


def no_contract_reason(
    rules: ChainRules,
    underlying: str,
    snapshot: Snapshot,
    day: date,
    exclude: AbstractSet[str] = _NOTHING,
    *,
    stop_loss_pct: float,
) -> str:
    """Which of `choose_contract`'s filters left no contract of `underlying`'s chain: the first that none passed,
    in the order it applies them. Read only when no contract was chosen (off the path of a tick that enters)."""
    chain = snapshot.option_chains.get(underlying)
    if not chain:
        # the chain is read for dte_min..dte_max only (`DataNeeds`): empty, no contract expires in the range
        return (
            f"no contract of {underlying} expires within chain_rules dte_min..dte_max ({rules.dte_min}-{rules.dte_max} "
            "days), or its chain could not be read"
        )
    left = [c for c in chain if c.option_type == "call"]
    if not left:
        return f"no call in the option chain of {underlying}"
    for what, keeps in _chain_filters(rules, snapshot, day, exclude, stop_loss_pct):
        kept = [c for c in left if keeps(c)]
        if not kept and what == _AT_STOP:
            return _spread_at_stop(f"call of {underlying}", left, stop_loss_pct, option=True)
        if not kept:
            return f"no call of {underlying} {what}"
        left = kept
    return f"no call of {underlying} passes chain_rules"  # not reached: the filters are choose_contract's


def _crypto_entry(
    cfg: CryptoBotConfig,
    symbol: str,
    risk_usd: float,
    room: float,
    quote: Quote,
    asset: Asset | None,
    max_spread_pct: float,
) -> tuple[OrderRequest | None, str | None]:
    """A buy limit sits at the ask rounded up to the pair's price increment (BTC/USD's is 1 dollar), so that it
    stays marketable; a quantity is rounded down to the pair's quantity increment. The order must reach the
    pair's min_order_size and, for a USD-quoted pair, Alpaca's 10 USD minimum. With no order, why not.

    A limit the rounding lifts further above the ask than `max_spread_pct` (the widest quote that is a price) is
    no limit: an increment of 100,000 (an asset answer that is junk) sent ETH/USD's buy at 100,000 with the ask at
    3,010. The pair is then not sized, as for an increment the broker does not give."""
    if asset is None:
        return None, f"{symbol}'s trading rules (minimums, increments) are not known: read from the broker's assets"
    if asset.min_order_size is None:
        # Alpaca gives every pair its minimum (a stock has none): an answer without it says nothing of it, never
        # "no minimum", under which any size was sent
        return None, f"the broker gives {symbol} no minimum order size: an order cannot be held to it"
    execution = cfg.execution
    loss_per_dollar = cfg.exits.stop_loss_pct / 100 + (quote.ask - quote.bid) / quote.ask
    by_budget = risk_usd / loss_per_dollar
    notional = min(execution.default_notional_usd, room, by_budget)
    limit = None
    if execution.order_type == "limit":
        if not asset.price_increment:
            return None, f"the broker gives {symbol} no price increment: a limit price cannot be set"
        limit = ceil_to(quote.ask, asset.price_increment)
        if limit > quote.ask * (1 + max_spread_pct / 100):
            return None, (
                f"the broker's price increment for {symbol} lifts a limit at the ask by more than health.max_spread_pct: "
                "a limit price cannot be set"
            )
    price = limit or quote.ask
    if execution.use_notional:
        notional = floor_to(notional, 0.01)
        qty = notional / price
        size = {"notional": notional}
    else:
        if not asset.min_trade_increment:
            return None, f"the broker gives {symbol} no quantity increment: a quantity cannot be rounded"
        qty = floor_to(notional / price, asset.min_trade_increment)
        notional = qty * price
        size = {"qty": qty}
    least = _least(execution.default_notional_usd, room, by_budget)
    if qty <= 0 or qty < asset.min_order_size:
        minimum = _qty(asset.min_order_size)
        return None, f"the order, {least}, comes to {_qty(qty)} {symbol}: under its minimum order size {minimum}"
    if symbol.endswith("/USD") and notional < CRYPTO_MIN_USD:
        rounded = "" if execution.use_notional else ", its quantity rounded down to the pair's increment"
        return None, (
            f"the order, {least}{rounded}, comes to {_usd(notional)} USD: under Alpaca's {CRYPTO_MIN_USD:g} USD minimum "
            f"for a buy of {symbol}"
        )
    order = OrderRequest(symbol, "buy", UNNUMBERED, execution.order_type, execution.tif, limit_price=limit, **size)
    return order, None
