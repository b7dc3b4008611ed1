"""One account answer with a wrong equity (chaos harness, seed runs 500+) must not flatten the book: it tripped
max_daily_loss_halt, whose flatten sold every position of an account that had lost nothing. It is a bad response
instead (its equity is not its cash and market values summed): the system halts, nothing is sold."""

from __future__ import annotations

import pytest

from engine.brokers.emulator import Emulator, Fault
from engine.brokers.sim.exchange import SimExchange
from engine.brokers.snapshot import SnapshotBroker
from engine.core.clock import ManualClock
from tests.brokers.conftest import KEY, SECRET, make_api
from tests.conftest import ProjectCopy
from tests.trading.conftest import make_rig


@pytest.mark.parametrize(("field", "factor"), [("equity", 0.5), ("equity", 1.6), ("last_equity", 2.0)])
def test_one_glitched_figure_does_not_flatten(project: ProjectCopy, clock: ManualClock, field: str, factor: float) -> None:
    exchange = SimExchange(clock, seed=7)
    with Emulator(exchange, key=KEY, secret=SECRET) as emulator:
        rig = make_rig(project, clock, broker=SnapshotBroker(make_api(emulator, clock), clock), exchange=exchange)
        rig.until(lambda r: bool(exchange.positions), limit=400)
        held = {s: p.qty for s, p in exchange.positions.items()}
        value = getattr(exchange.account(), field)
        emulator.faults.append(Fault(patch={field: f"{value * factor:.2f}"}, path_prefix="/v2/account", method="GET"))
        rig.ticks(3)
        halts = rig.store.halts("system")
        assert halts and not any(h.flatten for h in halts), [(h.reason, h.flatten) for h in halts]
        assert all("max_daily_loss" not in h.reason for h in halts)
        assert {s: p.qty for s, p in exchange.positions.items()} == held  # nothing sold
        assert not [r for r in rig.store.orders() if r.purpose == "exit"]


def test_a_last_equity_corrected_for_good_is_taken_after_a_few_answers(clock: ManualClock) -> None:
    """A new last_equity for the same day is refused while it may be a glitch; the same value three answers in a row
    is a correction, and is read from then on (the system would otherwise never trade again that day)."""
    from engine.brokers.alpaca import LAST_EQUITY_CONFIRMATIONS
    from engine.brokers.base import BrokerError

    exchange = SimExchange(clock, seed=7)
    with Emulator(exchange, key=KEY, secret=SECRET) as emulator:
        api = make_api(emulator, clock)
        first = api.get_account().last_equity
        corrected = f"{first + 250:.2f}"
        emulator.faults.append(Fault(patch={"last_equity": corrected}, path_prefix="/v2/account", method="GET", times=0))
        for _ in range(LAST_EQUITY_CONFIRMATIONS - 1):
            with pytest.raises(BrokerError, match="last_equity"):
                api.get_account()
        assert api.get_account().last_equity == first + 250


@pytest.mark.parametrize("factor", [0.3, -0.3])
def test_one_glitched_cash_movement_does_not_flatten(project: ProjectCopy, clock: ManualClock, factor: float) -> None:
    """The day's non-trade cash (`intraday_adjustments`) is taken out of the daily P&L: one answer saying 30 % of the
    equity was deposited, with the equity where it was, read as a 30 % trading loss and flattened every position.
    A deposit moves the equity with it; a figure that moves alone is a bad response (the system halts, sells
    nothing)."""
    exchange = SimExchange(clock, seed=7)
    with Emulator(exchange, key=KEY, secret=SECRET) as emulator:
        rig = make_rig(project, clock, broker=SnapshotBroker(make_api(emulator, clock), clock), exchange=exchange)
        rig.until(lambda r: bool(exchange.positions), limit=400)
        held = {s: p.qty for s, p in exchange.positions.items()}
        moved = f"{exchange.account().equity * factor:.2f}"
        emulator.faults.append(Fault(patch={"intraday_adjustments": moved}, path_prefix="/v2/account", method="GET"))
        rig.ticks(3)
        halts = rig.store.halts("system")
        assert halts and not any(h.flatten for h in halts), [(h.reason, h.flatten) for h in halts]
        assert "intraday_adjustments" in halts[0].reason
        assert {s: p.qty for s, p in exchange.positions.items()} == held  # nothing sold
        assert not [r for r in rig.store.orders() if r.purpose == "exit"]


def test_cash_moved_with_the_equity_is_read_and_a_lone_one_after_a_few_answers(clock: ManualClock) -> None:
    """A deposit moves the equity and the day's cash movements together: read at once. A movement the equity does
    not show is refused while it may be a glitch; the same value three answers in a row is read (a broker that
    books the movement a moment after the cash)."""
    from engine.brokers.alpaca import LAST_EQUITY_CONFIRMATIONS
    from engine.brokers.base import BrokerError

    exchange = SimExchange(clock, seed=7)
    with Emulator(exchange, key=KEY, secret=SECRET) as emulator:
        api = make_api(emulator, clock)
        before = api.get_account()
        exchange.move_cash(2_500.0, "CSD")
        deposited = api.get_account()
        assert (deposited.non_trade_cash_today, deposited.equity) == (before.non_trade_cash_today + 2_500, before.equity + 2_500)
        lone = f"{deposited.non_trade_cash_today + 4_000:.2f}"
        emulator.faults.append(Fault(patch={"intraday_adjustments": lone}, path_prefix="/v2/account", method="GET", times=0))
        for _ in range(LAST_EQUITY_CONFIRMATIONS - 1):
            with pytest.raises(BrokerError, match="intraday_adjustments"):
                api.get_account()
        assert api.get_account().non_trade_cash_today == deposited.non_trade_cash_today + 4_000
