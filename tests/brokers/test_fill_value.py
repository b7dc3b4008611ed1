"""An order's fills read from two answers about it (filled quantity and average price each): the price of what was
added between them, and the answers that cannot both be true (engine/brokers/base.py)."""

from __future__ import annotations

import pytest

from engine.brokers.base import added_fill_price, fill_value_contradicts


@pytest.mark.parametrize(
    ("old_qty", "old_avg", "new_qty", "new_avg", "price"),
    [
        (5, 100.0, 10, 101.0, 102.0),  # 5 more at 102
        (0, None, 4, 50.0, 50.0),  # the first fill
        (99, 100.0, 100, 99.4, 40.0),  # a GTC limit's last share after a crash: far below the average, and real
        (5, 100.0, 6, 83.34, 83.34),  # 0.04 of value added, within the rounding: the average, not a share at 0.04
        (5, 100.0, 6, 83.333, 83.333),  # the value level within the rounding
    ],
)
def test_the_added_part_is_priced_from_the_value_it_added_unless_the_rounding_hides_it(
    old_qty: float, old_avg: float | None, new_qty: float, new_avg: float, price: float
) -> None:
    assert not fill_value_contradicts(old_qty, old_avg, new_qty, new_avg)
    assert added_fill_price(old_qty, old_avg, new_qty, new_avg) == pytest.approx(price)


def test_a_tiny_fill_of_a_large_order_is_priced_at_the_average_not_by_the_rounding() -> None:
    """0.0001 BTC more of a 50 BTC order at 90,000: $9 added, against $450 the averages' rounding may move."""
    price = added_fill_price(50.0, 90_000.0, 50.0001, 89_999.99)
    assert price == 89_999.99


@pytest.mark.parametrize(
    ("old_qty", "old_avg", "new_qty", "new_avg"),
    [
        (5, 100.0, 6, 50.0),  # a sixth share at -200
        (5, 100.0, 5, 50.0),  # the same fill repriced
    ],
)
def test_answers_that_cannot_both_be_true(old_qty: float, old_avg: float, new_qty: float, new_avg: float) -> None:
    assert fill_value_contradicts(old_qty, old_avg, new_qty, new_avg)
