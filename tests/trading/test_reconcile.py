"""What the broker holds that SQLite cannot explain."""

from __future__ import annotations

from datetime import datetime, timezone

from engine.brokers.base import Order, Position, Snapshot
from engine.core.store import PositionRow
from engine.trading.reconcile import unexplained

NOW = datetime(2026, 11, 23, 15, 0, tzinfo=timezone.utc)


def snapshot(positions, orders) -> Snapshot:
    return Snapshot(NOW, None, positions, orders, {}, {}, None)


def position(symbol: str, qty: float) -> Position:
    return Position(symbol, qty, 100.0, 100.0, qty * 100, 0.0, "us_equity")


def owns(symbol: str, qty: float) -> PositionRow:
    return PositionRow("bot", symbol, qty, 100.0, NOW)


def order(cid: str) -> Order:
    return Order("id", cid, "AAPL", "buy", 1, None, 0, None, "limit", "day", 1.0, "new", NOW, "us_equity")


def test_owned_positions_and_known_orders_are_explained() -> None:
    owned = [owns("AAPL", 3.0), owns("AAPL", 2.0)]  # two bots, one symbol
    assert unexplained(owned, {"a-1"}, snapshot((position("AAPL", 5),), (order("a-1"),)), {}) == []


def test_differences_are_named() -> None:
    found = unexplained(
        [owns("AAPL", 3.0)], set(), snapshot((position("AAPL", 5), position("MSFT", 1)), (order("x"),)), {}
    )
    assert found == ["position AAPL: broker 5, bots own 3", "position MSFT: broker 1, bots own 0",
                     "open order x (AAPL) belongs to no bot"]  # fmt: skip


def test_a_failed_read_proves_nothing() -> None:
    assert unexplained([owns("AAPL", 3.0)], set(), snapshot(None, ()), {}) == []


def crypto(symbol: str, qty: float) -> Position:
    return Position(symbol, qty, 60_000.0, 60_000.0, qty * 60_000, 0.0, "crypto")


def test_a_crypto_fee_shortfall_is_explained_and_adopted() -> None:
    from engine.trading.reconcile import fee_shortfalls

    owned = [owns("BTC/USD", 0.001)]
    fills = {"BTC/USD": (0.001, 0.0)}
    snap = snapshot((crypto("BTC/USD", 0.0009975),), ())  # 0.25 % taken by the fee
    assert unexplained(owned, set(), snap, fills) == []
    assert fee_shortfalls(owned, snap, fills) == {"BTC/USD": 0.0009975}


def test_more_than_a_fee_or_a_surplus_is_not_a_fee() -> None:
    from engine.trading.reconcile import fee_shortfalls

    owned = [owns("BTC/USD", 0.001)]
    fills = {"BTC/USD": (0.001, 0.0)}
    for broker_qty in (0.0009, 0.0011):
        snap = snapshot((crypto("BTC/USD", broker_qty),), ())
        assert fee_shortfalls(owned, snap, fills) == {} and len(unexplained(owned, set(), snap, fills)) == 1
    stock = snapshot((position("AAPL", 4.99),), ())  # stocks pay no fee in shares
    assert len(unexplained([owns("AAPL", 5.0)], set(), stock, {})) == 1


def test_fees_are_held_to_the_tolerance_of_what_the_position_bought_not_of_what_is_left() -> None:
    """0.5 % missing, adopted; then another 0.5 %: each alone is within 1 % of what the bots own after the last
    adoption, but together they are 1 % and more of what the fills bought: coins draining, not fees."""
    from engine.trading.reconcile import fee_shortfalls

    fills = {"BTC/USD": (1.0, 0.0)}
    after_one = [owns("BTC/USD", 0.995)]  # the first 0.5 % adopted
    assert fee_shortfalls(after_one, snapshot((crypto("BTC/USD", 0.991),), ()), fills) == {"BTC/USD": 0.991}  # 0.9 % in all
    drained = snapshot((crypto("BTC/USD", 0.9899),), ())  # 1.01 % in all
    assert fee_shortfalls(after_one, drained, fills) == {} and len(unexplained(after_one, set(), drained, fills)) == 1
    sold_half = {"BTC/USD": (1.0, 0.5)}
    assert fee_shortfalls([owns("BTC/USD", 0.4975)], snapshot((crypto("BTC/USD", 0.4950),), ()), sold_half) == {
        "BTC/USD": 0.4950
    }
    assert fee_shortfalls(after_one, snapshot((crypto("BTC/USD", 0.99),), ()), {}) == {}  # no fills read: no fee
