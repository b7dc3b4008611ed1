"""What the broker holds that SQLite cannot explain: positions no bot owns (or owns in another amount), and
open orders no bot sent. At start-up anything here halts; while running, a difference that persists does.

Two differences are explained. A fill booked this tick that the positions, read before the orders, do not show
yet (`mid_fill`). And crypto fees. Alpaca takes them out of the coins a buy delivers while the order
reports the gross quantity, so the broker holds a little less than the bots' fills add up to. What the fees have
taken over a position's life, the fills' net quantity less what the broker holds, is adopted as what the bots
own while it is at most CRYPTO_FEE_TOLERANCE of what the position bought (`fee_shortfalls`), never a surplus.
Measured against the fills, not against what the bots own after the last adoption: 0.5 % missing again and
again would otherwise be adopted each time, and coins could drain away without a halt."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from collections.abc import Set as AbstractSet

from engine.brokers.base import Position, Snapshot
from engine.brokers.symbols import is_crypto
from engine.core.journal import Journal
from engine.core.store import PositionRow, StateStore

CRYPTO_FEE_TOLERANCE = 0.01  # 1 %: four times the highest taker fee, far below any real mismatch


def _held(owned: Iterable[PositionRow]) -> dict[str, float]:
    held: dict[str, float] = {}
    for p in owned:
        held[p.symbol] = held.get(p.symbol, 0.0) + p.qty
    return held


def differences(owned: Iterable[PositionRow], positions: Iterable[Position]) -> dict[str, tuple[float, float]]:
    """Symbol -> (what the bots own, what the broker holds), for every symbol where the two differ."""
    held = _held(owned)
    at_broker = {p.symbol: p.qty for p in positions}
    found = {}
    for symbol in sorted(set(held) | set(at_broker)):
        mine, theirs = held.get(symbol, 0.0), at_broker.get(symbol, 0.0)
        if abs(mine - theirs) > 1e-6 * max(1.0, abs(theirs)):
            found[symbol] = (mine, theirs)
    return found


Fills = Mapping[str, tuple[float, float]]  # crypto symbol -> (bought, sold) by its holders since their positions opened


def short_crypto(owned: Iterable[PositionRow], snapshot: Snapshot) -> dict[str, float]:
    """Crypto symbol -> the broker's quantity, where the broker holds less than the bots own, by no more than a
    fee could take: the symbols whose fills `fee_shortfalls` needs (none, nearly every tick)."""
    if snapshot.positions is None:
        return {}
    at_broker = {p.symbol: p.qty for p in snapshot.positions}
    return {
        symbol: at_broker[symbol]
        for symbol, mine in _held(owned).items()
        if is_crypto(symbol) and symbol in at_broker and 0 < mine - at_broker[symbol] <= CRYPTO_FEE_TOLERANCE * mine
    }


def fee_shortfalls(owned: Iterable[PositionRow], snapshot: Snapshot, fills: Fills) -> dict[str, float]:
    """Crypto symbol -> the broker's quantity, where all the fees taken since the position opened (its fills'
    net quantity less what the broker holds) are within CRYPTO_FEE_TOLERANCE of what it bought."""
    found = {}
    for symbol, at_broker in short_crypto(owned, snapshot).items():
        bought, sold = fills.get(symbol, (0.0, 0.0))
        taken = bought - sold - at_broker
        if bought > 0 and 0 < taken <= CRYPTO_FEE_TOLERANCE * bought:
            found[symbol] = at_broker
    return found


def holders_fills(owned: Iterable[PositionRow], symbols: Iterable[str]) -> dict[str, tuple[float, float]]:
    """(bought, sold) per symbol by the bots that hold it, since their positions opened: what each position row
    keeps of its round trip (a fee adoption keeps it; a flatten's sale is counted on the holder's row)."""
    wanted = set(symbols)
    fills: dict[str, tuple[float, float]] = {}
    for p in owned:
        if p.symbol in wanted:
            bought, sold = fills.get(p.symbol, (0.0, 0.0))
            fills[p.symbol] = (bought + p.bought_qty, sold + p.sold_qty)
    return fills


Moved = Mapping[str, tuple[float, float]]  # symbol -> (bought, sold) in the fills this tick's order sync booked


def mid_fill(symbol: str, mine: float, theirs: float, owned: Iterable[PositionRow], moved: Moved) -> bool:
    """Whether the broker's quantity of `symbol` is one it held while this tick's fills came in: between what the
    bots owned before them and what they own after (less what crypto fees may have taken from the coins bought).

    A snapshot reads the positions before the orders, so an order that fills between the two reads is booked from
    the orders while the positions predate its fill. A crypto buy filling in parts over many ticks showed the bots
    owning one part more than the broker, tick after tick, and the ExitBot halted on a difference that was only
    the order of two reads. It proves nothing for this tick; a real difference outside the band still counts."""
    bought, sold = moved.get(symbol, (0.0, 0.0))
    if bought <= 0 and sold <= 0:
        return False
    before = mine - bought + sold
    low, high = min(before, mine), max(before, mine)
    if is_crypto(symbol):
        low -= CRYPTO_FEE_TOLERANCE * sum(p.bought_qty for p in owned if p.symbol == symbol)
    slack = 1e-6 * max(1.0, abs(theirs))
    return low - slack <= theirs <= high + slack


def unexplained(
    owned: Iterable[PositionRow], known_client_ids: set[str], snapshot: Snapshot, fills: Fills, moved: Moved | None = None
) -> list[str]:
    """One line per difference; empty when the snapshot could not tell (a failed read proves nothing). `fills`:
    `holders_fills` of the symbols `short_crypto` names; `moved`: the fills this tick's sync booked (`mid_fill`)."""
    if snapshot.positions is None or snapshot.open_orders is None:
        return []
    owned = list(owned)
    fees = fee_shortfalls(owned, snapshot, fills)
    found = [
        f"position {symbol}: broker {theirs:g}, bots own {mine:g}"
        for symbol, (mine, theirs) in differences(owned, snapshot.positions).items()
        if symbol not in fees and not (moved and mid_fill(symbol, mine, theirs, owned, moved))
    ]
    for order in snapshot.open_orders:
        if order.client_order_id not in known_client_ids:
            found.append(f"open order {order.client_order_id} ({order.symbol}) belongs to no bot")
    return found


def subject(problem: str) -> str:
    """What an `unexplained` line is about, without its quantities: `position AAPL` of "position AAPL: broker 5,
    bots own 0"; an open order's line is its own subject. A difference persists while its subject does: a
    position no bot owns that grows every tick is one difference, not a new one each tick."""
    return problem.split(":", 1)[0]


def fee_split(holders: list[PositionRow], at_broker: float) -> list[float]:
    """What each holder of one coin owns once the broker's `at_broker` is adopted: the fees charged to the bots whose
    buys paid them. The fee is a share of each buy, so of all the fees taken over the holders' round trips (their
    fills' net quantity less `at_broker`) each holder's fair part is in proportion to what it bought; what its
    ledger already gave up to fees (its own fills' net less what it owns) is deducted, and the shortfall is charged
    to the holders that still owe theirs. Split by quantity held instead, a bot that held before another bought paid
    part of the newcomer's fee, its ledger and P&L smaller for a purchase it never made. Falls back to the split by
    quantity held when the fills do not tell (no quantity bought recorded, nothing owed, or a share that would go
    below zero)."""
    total = sum(p.qty for p in holders)
    short = total - at_broker
    bought = sum(p.bought_qty for p in holders)
    taken = bought - sum(p.sold_qty for p in holders) - at_broker
    owed = [max(taken * p.bought_qty / bought - (p.bought_qty - p.sold_qty - p.qty), 0.0) if bought > 0 else 0.0
            for p in holders]  # fmt: skip
    if sum(owed) > 0:
        split = [p.qty - short * o / sum(owed) for p, o in zip(holders, owed, strict=True)]
        if min(split) >= 0:
            return split
    return [p.qty * at_broker / total for p in holders]


def adopt_fee_shortfalls(
    store: StateStore,
    journal: Journal,
    snapshot: Snapshot,
    bought: Mapping[str, float],
    unsettled: AbstractSet[str] | None = frozenset(),
) -> None:
    """The bots own what the broker delivered after crypto fees, each charged the fees of its own buys (`fee_split`).

    `bought`: symbol -> what the buys booked by this tick's sync bought (`OrderManager.bought_this_tick`). The
    snapshot reads the positions before the orders, so a buy that filled between the two reads is owned by a bot
    while the broker's positions do not show it yet; if it is small beside what the bots hold, its whole quantity
    looked like a fee, and was adopted as one: the holders' ledgers lost coins they had paid for (their entry
    prices raised by the cost) and the next read showed the broker holding more than they own, which no fee
    explains. A fee is a small share of a buy, never nearly all of it: where the shortfall is about what this tick's
    buys bought or more, the positions may predate them, and the shortfall waits for the next read.

    `unsettled`: the symbols whose working orders this tick's sync could not bring up to date, None when the open
    orders could not be read (`OrderManager.unsettled`). A sale filling in parts there has fills the ledger has not
    booked while the positions already show them gone: 0.0001 ETH of 0.0166 sold looked like a fee, was adopted, and
    once booked was sold a second time (the bots then owned less than the broker held). Those wait for a read."""
    if unsettled is None:
        return  # the orders could not be read: a shortfall may be a sale's fills not yet booked
    if not any(is_crypto(p.symbol) for p in snapshot.positions or ()):
        return  # fees are taken from crypto only: nothing to read
    owned = store.positions()
    short = short_crypto(owned, snapshot)
    if not short:
        return
    shortfalls = fee_shortfalls(owned, snapshot, holders_fills(owned, short))
    held = _held(owned)
    shortfalls = {
        symbol: at_broker
        for symbol, at_broker in shortfalls.items()
        if symbol not in unsettled
        and not (bought.get(symbol, 0.0) > 0 and held[symbol] - at_broker >= bought[symbol] * (1 - CRYPTO_FEE_TOLERANCE))
    }
    if not shortfalls:
        return
    with store.transaction():
        for symbol, at_broker in shortfalls.items():
            holders = [p for p in owned if p.symbol == symbol]
            for p, qty in zip(holders, fee_split(holders, at_broker), strict=True):
                store.set_position(p.bot_id, symbol, qty, cost_kept(p.avg_entry_price, p.qty, qty), p.opened_at)
                journal.log("fee_adjusted", bot=p.bot_id, symbol=symbol, qty_before=p.qty, qty_after=qty)


def cost_kept(avg_entry_price: float, qty_before: float, qty_after: float) -> float:
    """The entry price of a position the fee made smaller: what was paid, over the coins left. The bot paid for
    the coins the fee took; kept at the fill's price, their cost left the ledger, and every crypto round trip's
    realized P&L (the bot's budget, the run's and the backtest's figures) came out higher by the buy's fee."""
    if qty_after <= 0 or qty_before <= 0:
        return avg_entry_price
    return avg_entry_price * qty_before / qty_after
