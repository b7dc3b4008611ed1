"""Reconciliation and the reads it compares: a read that failed proves nothing, so it can neither pass start-up
reconciliation nor count as a difference gone (engine/trading/engine.py `_reconcile`, exitbot.py `anomalies`).

The broker is the emulator behind the real alpaca-py clients; its faults are the broker's."""

from __future__ import annotations

from typing import Any

import pytest

from engine.brokers.base import DataNeeds, OrderRequest
from engine.brokers.emulator import Emulator, Fault
from engine.brokers.sim.exchange import SimExchange
from engine.brokers.snapshot import SnapshotBroker
from engine.core.clock import ManualClock
from engine.core.store import SYSTEM_SCOPE
from tests.brokers.conftest import KEY, SECRET, make_api
from tests.conftest import ProjectCopy
from tests.trading.conftest import make_rig


class FailingReread:
    """The broker, whose reconciliation re-read (the snapshot that asks for no quotes) meets a fault of the
    emulator's on the path given, the first `times` times: the tick's own snapshot read everything."""

    def __init__(self, broker: Any, emulator: Emulator, path: str, times: int = 1) -> None:
        self._broker, self._emulator, self._path, self.left = broker, emulator, path, times

    def snapshot(self, needs: DataNeeds) -> Any:
        if needs == DataNeeds() and self.left > 0:
            self.left -= 1
            self._emulator.faults.append(Fault(status=503, path_prefix=self._path, method="GET"))
        return self._broker.snapshot(needs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._broker, name)


@pytest.mark.parametrize(("path", "operation"), [("/v2/positions", "positions"), ("/v2/orders", "open_orders")])
def test_a_failed_reread_does_not_pass_start_up_reconciliation(
    project: ProjectCopy, clock: ManualClock, path: str, operation: str
) -> None:
    """A position no bot owns is at the broker when the run starts. The tick's snapshot reads it; the re-read after
    recovery, which reconciliation compares, fails on the positions (or the open orders). Taken as "nothing
    unexplained", the run was reconciled and armed, and its bots entered beside a position nobody explained."""
    exchange = SimExchange(clock)
    with Emulator(exchange, key=KEY, secret=SECRET) as emulator:
        broker = FailingReread(SnapshotBroker(make_api(emulator, clock), clock), emulator, path)
        rig = make_rig(project, clock, broker=broker, exchange=exchange)
        exchange.submit(OrderRequest("AAPL", "buy", "manual-1", qty=5))
        rig.ticks(1)
        assert not rig.engine.reconciled and rig.engine.system.state != "armed"
        assert [e["operation"] for e in rig.events("broker_error")] == [operation]  # counted as the tick's failures
        rig.ticks(1)  # read again, whole: the position is named
        assert rig.engine.system.state == "halted" and not rig.engine.reconciled
        reasons = [h.reason for h in rig.store.halts(SYSTEM_SCOPE)]
        assert len(reasons) == 1 and reasons[0].startswith("reconciliation: position AAPL: broker 5, bots own 0")
        assert rig.store.orders() == []


def test_a_difference_is_not_forgotten_while_a_read_fails(project: ProjectCopy, clock: ManualClock) -> None:
    """A difference must persist MISMATCH_TICKS ticks before it is an anomaly (a fill racing the reads is not one).
    A tick whose positions could not be read proves nothing about it: taken as "gone", it started the count again,
    and a position nobody owned, with the positions read failing every other tick (failures the window allows),
    never halted anything while the bots went on trading beside it."""
    project.replace("config/settings.yaml", "max_api_failures_in_window: 5", "max_api_failures_in_window: 50")
    exchange = SimExchange(clock)
    with Emulator(exchange, key=KEY, secret=SECRET) as emulator:
        rig = make_rig(project, clock, broker=SnapshotBroker(make_api(emulator, clock), clock), exchange=exchange)
        rig.ticks(2)
        assert rig.engine.reconciled and rig.engine.system.state == "armed"
        exchange.submit(OrderRequest("MSFT", "buy", "placed-by-hand", qty=1))
        for _ in range(4):
            rig.ticks(1)
            emulator.faults.append(Fault(status=503, path_prefix="/v2/positions", method="GET"))
            rig.ticks(1)
        assert rig.engine.system.state == "halted"
        reasons = [h.reason for h in rig.store.halts(SYSTEM_SCOPE)]
        assert reasons == ["kill condition: anomaly_halt, position MSFT: broker 1, bots own 0"]
        # said once, when it was first found to persist: not again at each tick whose read failed
        assert [e["detail"] for e in rig.events("anomaly") if e.get("what") == "unexplained"] == [
            "position MSFT: broker 1, bots own 0"]
