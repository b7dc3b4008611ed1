"""Crypto fees through the whole engine: Alpaca takes them out of the coins a buy delivers, the engine adopts
the shortfall, and it stays bounded by what the position bought (engine/trading/reconcile.py)."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest

from engine.core.clock import ManualClock
from engine.core.store import TradeRow
from tests.conftest import ProjectCopy
from tests.trading.conftest import OPEN, make_rig


class TickingClock(ManualClock):
    """A clock that moves a microsecond each time it is read, as a real one does between two reads in one tick:
    an order stamped and then its position opened are not at the same instant."""

    def now(self) -> datetime:
        self._now += timedelta(microseconds=1)
        return self._now


def test_a_crypto_buy_s_fee_is_adopted_on_a_clock_that_moves_between_reads(project: ProjectCopy) -> None:
    rig = make_rig(project, TickingClock(OPEN))
    rig.until(lambda r: bool(r.events("fee_adjusted")), limit=3000)
    rig.ticks(10)  # long enough for a mismatch to be called an anomaly (MISMATCH_TICKS)
    assert [e for e in rig.events("anomaly") if e["what"] == "unexplained"] == []
    assert rig.store.halts() == [] and rig.engine.system.state == "armed"
    adjusted = rig.events("fee_adjusted")[0]
    assert 0 < adjusted["qty_before"] - adjusted["qty_after"] <= 0.01 * adjusted["qty_before"]


def test_the_coins_a_buy_s_fee_took_keep_their_cost_in_the_round_trip_s_p_and_l(project: ProjectCopy) -> None:
    """The fee's coins were paid for: the position's entry price rises so that what it cost stays whole. Kept at
    the fill's price, the round trip's realized P&L left the buy's fee out (0.15 % to 0.25 % of each buy)."""
    rig = make_rig(project, TickingClock(OPEN))
    rig.until(lambda r: bool(r.events("fee_adjusted")), limit=3000)
    adjusted = rig.events("fee_adjusted")[0]
    bought = next(e for e in rig.events("fill") if e["client_order_id"].startswith(adjusted["bot"]) and e["side"] == "buy")
    held = next(p for p in rig.store.positions(adjusted["bot"]) if p.symbol == adjusted["symbol"])
    assert held.qty == adjusted["qty_after"] < bought["qty"]
    assert abs(held.qty * held.avg_entry_price - bought["qty"] * bought["price"]) < 1e-6  # what the buy cost
    def closed(r: object) -> list[TradeRow]:
        return [t for t in rig.store.trades() if (t.bot_id, t.symbol, t.opened_at) == (held.bot_id, held.symbol, held.opened_at)]

    rig.until(lambda r: bool(closed(r)), limit=5000)
    trade = closed(rig)[0]
    assert trade.qty == bought["qty"]  # one buy, sold whole
    assert abs(trade.pnl - (trade.exit_price * held.qty - bought["qty"] * bought["price"])) < 1e-6
    # the record says it plainly: the fill's price, the fee seen (the coins it took, at that price), the P&L net of it
    assert trade.entry_price == pytest.approx(bought["price"], rel=1e-12)
    assert trade.fees == pytest.approx((bought["qty"] - held.qty) * bought["price"], rel=1e-9) and trade.fees > 0
    assert trade.pnl == pytest.approx((trade.exit_price - trade.entry_price) * held.qty - trade.fees, rel=1e-9)
    logged = next(e for e in rig.events("trade") if e["bot"] == held.bot_id and e["symbol"] == held.symbol)
    assert logged["fees"] == trade.fees
