"""What the broker holds that SQLite cannot explain: positions no bot owns (or owns in another amount), and
open orders no bot sent. At start-up anything here halts; while running, a difference that persists does."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from engine.brokers.base import Snapshot


def unexplained(owned: Iterable[Mapping[str, Any]], known_client_ids: set[str], snapshot: Snapshot) -> list[str]:
    """One line per difference; empty when the snapshot could not tell (a failed read proves nothing)."""
    if snapshot.positions is None or snapshot.open_orders is None:
        return []
    found = []
    held: dict[str, float] = {}
    for p in owned:
        held[p["symbol"]] = held.get(p["symbol"], 0.0) + p["qty"]
    at_broker = {p.symbol: p.qty for p in snapshot.positions}
    for symbol in sorted(set(held) | set(at_broker)):
        mine, theirs = held.get(symbol, 0.0), at_broker.get(symbol, 0.0)
        if abs(mine - theirs) > 1e-6 * max(1.0, abs(theirs)):
            found.append(f"position {symbol}: broker {theirs:g}, bots own {mine:g}")
    for order in snapshot.open_orders:
        if order.client_order_id not in known_client_ids:
            found.append(f"open order {order.client_order_id} ({order.symbol}) belongs to no bot")
    return found
