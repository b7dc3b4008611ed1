"""Crypto fees through the whole engine: Alpaca takes them out of the coins a buy delivers, the engine adopts
the shortfall, and it stays bounded by what the position bought (engine/trading/reconcile.py)."""

from __future__ import annotations

from datetime import datetime, timedelta

from engine.core.clock import ManualClock
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
