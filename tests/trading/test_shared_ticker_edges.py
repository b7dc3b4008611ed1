"""Several bots on one symbol, at the edges: what each bot's ledger is charged with when the netted position moves
for one of them (engine/trading/reconcile.py, orders.py, handlers.py)."""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

import pytest

from engine.brokers.base import Position, Snapshot
from engine.core.clock import ManualClock
from engine.core.journal import Journal
from engine.core.store import PositionRow, StateStore
from engine.trading.reconcile import adopt_fee_shortfalls

NOW = datetime(2026, 11, 23, 15, 0, tzinfo=timezone.utc)


def coins(qty: float) -> Snapshot:
    position = Position("BTC/USD", qty, 60_000.0, 60_000.0, qty * 60_000, 0.0, "crypto")
    return Snapshot(NOW, None, (position,), (), {}, {}, None)


def test_a_crypto_fee_is_charged_to_the_bot_whose_buy_paid_it_not_to_one_that_held_before(tmp_path: Path) -> None:
    """A held 0.9975 BTC (its own buy's 0.25 % fee adopted); B then buys 1 BTC and receives 0.9975. B's fee is B's:
    A's ledger, and its P&L, must not shrink for another bot's purchase."""
    store, journal = StateStore(tmp_path / "s.db"), Journal(tmp_path / "j.jsonl", ManualClock(NOW))
    with store.transaction():
        store.save_position(PositionRow("crypto_a", "BTC/USD", 0.9975, 60_000.0, NOW, bought_qty=1.0))
        store.save_position(PositionRow("crypto_b", "BTC/USD", 1.0, 61_000.0, NOW, bought_qty=1.0))
    adopt_fee_shortfalls(store, journal, coins(1.995))
    owned = {p.bot_id: p.qty for p in store.positions()}
    assert owned == {"crypto_a": pytest.approx(0.9975), "crypto_b": pytest.approx(0.9975)}


def test_fees_of_buys_made_together_are_split_in_proportion_to_what_each_bought(tmp_path: Path) -> None:
    store, journal = StateStore(tmp_path / "s.db"), Journal(tmp_path / "j.jsonl", ManualClock(NOW))
    with store.transaction():
        store.save_position(PositionRow("crypto_a", "BTC/USD", 3.0, 60_000.0, NOW, bought_qty=3.0))
        store.save_position(PositionRow("crypto_b", "BTC/USD", 1.0, 61_000.0, NOW, bought_qty=1.0))
    adopt_fee_shortfalls(store, journal, coins(3.99))
    owned = {p.bot_id: p.qty for p in store.positions()}
    assert owned == {"crypto_a": pytest.approx(2.9925), "crypto_b": pytest.approx(0.9975)}
