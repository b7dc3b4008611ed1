"""Start-up reconciliation and an order of ours filling between its reads (chaos harness, seed 532): the tick's
snapshot showed our exit still open, the re-read after recovery showed its sale, and the difference halted the
system as a position no bot explained (or, while halted for something else, added a second reconciliation halt
naming it). The fill, read the next tick, explains it: no halt; a difference that stays still halts."""

from __future__ import annotations

from typing import Any

from engine.brokers.base import DataNeeds
from engine.brokers.factory import build_sim
from engine.core.clock import ManualClock
from engine.validate import load_valid
from tests.conftest import ProjectCopy
from tests.trading.conftest import Rig, make_rig


class FillBetweenReads:
    """The simulated broker, whose clock steps a second before the reconciliation's re-read (the one that asks
    for no quotes): what was sent at the tick's instant fills between the tick's snapshot and that re-read."""

    def __init__(self, broker: Any, clock: ManualClock) -> None:
        self._broker, self._clock = broker, clock

    def snapshot(self, needs: DataNeeds) -> Any:
        if needs == DataNeeds():
            self._clock.advance(1)
        return self._broker.snapshot(needs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._broker, name)


def working_exit(rig: Rig) -> bool:
    return any(r.purpose == "exit" and r.status in ("new", "accepted", "pending_new") for r in rig.store.orders(bot_id="mom_AAPL"))


def start_with_an_exit_in_flight(project: ProjectCopy, clock: ManualClock) -> tuple[Rig, Any]:
    project.replace("config/bots.yaml", "time_stop_minutes: 25", "time_stop_minutes: 1")
    report = load_valid(project.config, project.machines, project.rules)
    assert report.config is not None
    broker, exchange = build_sim(report.config.settings, clock)
    exchange.fill_at_submit = False  # as Alpaca: answered pending_new, filled at a later step
    rig = make_rig(project, clock, broker=broker, exchange=exchange)
    rig.until(lambda r: any(r.purpose == "entry" and r.status == "filled" for r in r.store.orders(bot_id="mom_AAPL")))
    for _ in range(400):  # ticked without the clock moving after the tick: the exit sent is still open at the broker
        rig.engine.tick()
        if working_exit(rig):
            break
        clock.advance(5)
    assert working_exit(rig)
    rig.engine.journal.close()
    rig.store.close()
    return rig, broker


def test_our_exit_filling_between_the_reads_is_no_unexplained_position(project: ProjectCopy, clock: ManualClock) -> None:
    rig, broker = start_with_an_exit_in_flight(project, clock)
    restarted = rig.restart(FillBetweenReads(broker, clock))  # type: ignore[arg-type]
    restarted.ticks(3)
    assert restarted.engine.reconciled
    assert restarted.store.halts("system") == [], [h.reason for h in restarted.store.halts("system")]
    assert not working_exit(restarted)


def test_a_difference_that_stays_still_halts(project: ProjectCopy, clock: ManualClock) -> None:
    rig, broker = start_with_an_exit_in_flight(project, clock)
    rig.exchange.set_position("MSFT", 3, 400.0)  # no bot's: unexplained however the exit ends
    restarted = rig.restart(FillBetweenReads(broker, clock))  # type: ignore[arg-type]
    restarted.ticks(3)
    halts = restarted.store.halts("system")
    assert [h.reason for h in halts] == ["reconciliation: position MSFT: broker 3, bots own 0"]
    assert not restarted.engine.reconciled
