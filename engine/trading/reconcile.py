"""What the broker holds that SQLite cannot explain: positions no bot owns (or owns in another amount), and
open orders no bot sent. At start-up anything here halts; while running, a difference that persists does.

One difference is explained: crypto fees. Alpaca takes them out of the coins a buy delivers while the order
reports the gross quantity, so the broker holds a little less than the bots' fills add up to. A shortfall of
at most CRYPTO_FEE_TOLERANCE is adopted as what the bots own (`fee_shortfalls`), never a surplus."""

from __future__ import annotations

from collections.abc import Iterable

from engine.brokers.base import Snapshot
from engine.brokers.symbols import is_crypto
from engine.core.journal import Journal
from engine.core.store import PositionRow, StateStore

CRYPTO_FEE_TOLERANCE = 0.01  # 1 %: four times the highest taker fee, far below any real mismatch


def _held(owned: Iterable[PositionRow]) -> dict[str, float]:
    held: dict[str, float] = {}
    for p in owned:
        held[p.symbol] = held.get(p.symbol, 0.0) + p.qty
    return held


def fee_shortfalls(owned: Iterable[PositionRow], snapshot: Snapshot) -> dict[str, float]:
    """Crypto symbol -> the broker's quantity, where the broker holds less than the bots own by a fee's worth."""
    if snapshot.positions is None:
        return {}
    at_broker = {p.symbol: p.qty for p in snapshot.positions}
    return {
        symbol: at_broker[symbol]
        for symbol, mine in _held(owned).items()
        if is_crypto(symbol) and symbol in at_broker and 0 < mine - at_broker[symbol] <= CRYPTO_FEE_TOLERANCE * mine
    }


def unexplained(owned: Iterable[PositionRow], known_client_ids: set[str], snapshot: Snapshot) -> list[str]:
    """One line per difference; empty when the snapshot could not tell (a failed read proves nothing)."""
    if snapshot.positions is None or snapshot.open_orders is None:
        return []
    found = []
    owned = list(owned)
    held = _held(owned)
    fees = fee_shortfalls(owned, snapshot)
    at_broker = {p.symbol: p.qty for p in snapshot.positions}
    for symbol in sorted(set(held) | set(at_broker)):
        mine, theirs = held.get(symbol, 0.0), at_broker.get(symbol, 0.0)
        if symbol in fees:
            continue
        if abs(mine - theirs) > 1e-6 * max(1.0, abs(theirs)):
            found.append(f"position {symbol}: broker {theirs:g}, bots own {mine:g}")
    for order in snapshot.open_orders:
        if order.client_order_id not in known_client_ids:
            found.append(f"open order {order.client_order_id} ({order.symbol}) belongs to no bot")
    return found


def adopt_fee_shortfalls(store: StateStore, journal: Journal, snapshot: Snapshot) -> None:
    """The bots own what the broker delivered after crypto fees, split in proportion to their fills."""
    if not any(is_crypto(p.symbol) for p in snapshot.positions or ()):
        return  # fees are taken from crypto only: nothing to read
    owned = store.positions()
    shortfalls = fee_shortfalls(owned, snapshot)
    if not shortfalls:
        return
    with store.transaction():
        for symbol, at_broker in shortfalls.items():
            holders = [p for p in owned if p.symbol == symbol]
            total = sum(p.qty for p in holders)
            for p in holders:
                qty = p.qty * at_broker / total
                store.set_position(p.bot_id, symbol, qty, p.avg_entry_price, p.opened_at)
                journal.log("fee_adjusted", bot=p.bot_id, symbol=symbol, qty_before=p.qty, qty_after=qty)
