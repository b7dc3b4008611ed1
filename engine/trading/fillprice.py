"""A fill's price held to what the order could have traded at: its own limit, and the quotes the engine saw.

The broker's fill quantities are the truth of what is held, and are always booked. Its price is another matter:
one answer whose `filled_avg_price` was a tenth or ten times the market (tools/answerfuzz.py `--meaning`, `fill far`)
was booked as it came, and the bot's entry price carried it: a +900 % gain its take profit sold on, or a loss that
stopped it out and counted against the day's loss limit. Nothing read later contradicted it (the order had ended,
and reconciliation compares quantities, not prices).

So every fill the engine books (`OrderManager._record`, whichever broker answered) is judged here first. Its price
is implausible when it is not a positive finite number, when it is worse than its order's own limit, or when it lies
outside the band around the quotes seen for the order: from the lowest bid to the highest ask of every two-sided
quote of its symbol the engine read from the tick the order was recorded in (after a restart: the first tick this
process read it in) to the tick the fill is read in, widened by FILL_BAND_PCT (OPTION_FILL_BAND_PCT for an option
contract). Only quotes of the market at their tick count: an option contract's come from a chain read then, never
from one the snapshot reuses from its cache, and no quote older than the staleness limit by its own time (`quote_of`).
A price that moved a lot between two ticks is not implausible when the quotes since moved with it: the band follows
every quote read while the order works.

An implausible price halts the system (an answer the engine cannot explain: `bad_response`, naming the order, the
price and the band), and the fill's quantity is booked at a stand-in price (`stand_in`): the mid of the last quote
seen, no worse than the order's limit, so that neither the bot's exit rules nor its realized P&L move on a price
nobody could have traded at. The order's row keeps the broker's price as it was said (later answers are held to it,
`orders._contradicts`), and the `fill` event says both (`price_unverified`, `broker_price`).

The broker's own position `avg_entry_price` is not used as the stand-in: the snapshot reads positions before orders,
so it may not include the fill yet, and it is made from the same fills the broker's answer reports; one glitched
answer may be in both or in neither. The quotes are a read of their own.

Without any usable quote seen for the order (a feed failing since it was recorded, a contract no chain holds) the
band cannot be told: the price is held to its limit and to being a price, nothing more. A price refused then has no
stand-in unless the order has a limit: nothing of the answer is booked (`Contradiction`, which halts) until a quote
is read and the next answer can be judged.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from engine.brokers.base import OptionContract, Snapshot, worse_than_limit
from engine.brokers.symbols import asset_class_of
from engine.core.store import OrderRow
from engine.trading.entries import spread_pct
from engine.trading.facts_builder import fresh_window

# How far beyond the quotes seen a fill may be (percent of the lowest bid below, of the highest ask above): a share
# or a coin moves well under this between two ticks seconds apart, and every answer of the fuzzer's `fill far`
# (a half, twice, a tenth, ten times) is far outside it.
FILL_BAND_PCT = 10.0
# An option contract's price moves several times its underlying's between two ticks (its quotes are read only with a
# chain read at the tick, `quote_of`): a wider band, still refusing half or twice the price.
OPTION_FILL_BAND_PCT = 40.0


def band_pct(symbol: str) -> float:
    return OPTION_FILL_BAND_PCT if asset_class_of(symbol) == "us_option" else FILL_BAND_PCT


@dataclass(frozen=True)
class Seen:
    """The quotes of `symbol` seen for one order since it was recorded: the lowest bid, the highest ask, the last
    quote's mid."""

    symbol: str
    low: float
    high: float
    last: float

    def add(self, bid: float, ask: float) -> Seen:
        return Seen(self.symbol, min(self.low, bid), max(self.high, ask), (bid + ask) / 2)

    def band(self) -> tuple[float, float]:
        """The prices a fill may be at: the quotes seen, widened by `band_pct`."""
        pct = band_pct(self.symbol) / 100
        return self.low * (1 - pct), self.high * (1 + pct)


def quote_of(snapshot: Snapshot, symbol: str, max_age_s: float | None = None) -> tuple[float, float] | None:
    """(bid, ask) of `symbol` read for this snapshot (its quote, or an option contract's in a chain read now), when
    two-sided and no wider than the band itself: a quote wider than that is no price to hold a fill to (one with a
    bid of 1 and an ask of 1,000 would let any price through).

    A chain reused from the cache (`Snapshot.chains_read_at`: up to broker.option_chain_cache_seconds old) is not:
    a 0DTE contract falls by a third in less than that, and its true fills, judged against the cached quote, were
    refused, halted the system and were booked at the old quote (a stop's loss of 1,638 booked as a gain of 812).
    Nor is a quote read now whose own time is further than `max_age_s` from the snapshot's (health.
    max_price_staleness_seconds, `fresh_window`): a feed that stopped moving says the price of minutes ago, and a
    true fill since is as far from it as from a cached one."""
    quote = snapshot.quotes.get(symbol)
    if quote is not None:
        bid, ask, at = quote.bid, quote.ask, quote.timestamp
    else:
        contract = _contract_read_now(snapshot, symbol) if snapshot.option_chains else None
        if contract is None:
            return None
        bid, ask, at = contract.bid, contract.ask, contract.quote_time
    if max_age_s is not None:
        earliest, latest = fresh_window(snapshot.taken_at, max_age_s)
        if not earliest <= at <= latest:
            return None
    spread = spread_pct(bid, ask)
    if spread is None or spread > band_pct(symbol):
        return None
    return bid, ask


def _contract_read_now(snapshot: Snapshot, symbol: str) -> OptionContract | None:
    """The contract `symbol` in a chain of this snapshot read for it (`Snapshot.chain_read_now`), or None."""
    for underlying, chain in snapshot.option_chains.items():
        if snapshot.chain_read_now(underlying):
            contract = next((c for c in chain if c.symbol == symbol), None)
            if contract is not None:
                return contract
    return None


def implausible(row: OrderRow, price: float, seen: Seen | None, *, slack: float = 0.0) -> str | None:
    """Why `price`, a fill of `row`'s order, is not one anybody could have traded at, or None. `slack`: how far the
    price is uncertain by the rounding of the averages it was worked out from (the part of a fill added between
    two answers, `base.added_fill_price`)."""
    if not math.isfinite(price) or price <= 0:
        return f"filled at {price:g}, which is no price"
    if row.order_type == "limit" and row.limit_price:
        best = price - slack if row.side == "buy" else price + slack  # the price at its most favourable
        if worse_than_limit(row.side, row.limit_price, best):
            return f"a {row.side} limit at {row.limit_price:g} filled at {price:g}, worse than its limit"
    if seen is None:
        return None
    low, high = seen.band()
    if price + slack < low or price - slack > high:
        return (
            f"filled at {price:g}, outside the band {low:.6g}..{high:.6g} (the quotes seen since it was sent, "
            f"{seen.low:g}..{seen.high:g}, and {band_pct(row.symbol):g} % beyond)"
        )
    return None


def stand_in(row: OrderRow, seen: Seen | None) -> float | None:
    """The price a fill whose own is implausible is booked at: the mid of the last quote seen for its order, no
    worse than its limit (a buy at no more, a sell at no less); its limit when no quote was seen; None when neither
    is known."""
    limit = row.limit_price if row.order_type == "limit" and row.limit_price else None
    if seen is None:
        return limit
    if limit is None:
        return seen.last
    return min(seen.last, limit) if row.side == "buy" else max(seen.last, limit)
