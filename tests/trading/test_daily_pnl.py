"""Daily P&L leaves out the day's deposits and withdrawals (issue 14, item 6): a withdrawal trips no daily loss
halt, and a deposit does not hide a loss. On the simulated exchange and through alpaca-py (`intraday_adjustments`,
and the day's account activities when the account leaves it out)."""

from __future__ import annotations

from datetime import timedelta

import pytest

from engine.brokers.emulator import Emulator
from engine.brokers.sim.exchange import SimExchange
from engine.brokers.snapshot import SnapshotBroker
from engine.core.clock import ManualClock
from engine.core.store import SYSTEM_SCOPE
from tests.brokers.conftest import KEY, SECRET, make_api
from tests.conftest import ProjectCopy
from tests.trading.conftest import Rig, make_rig


def halts(rig: Rig) -> list[str]:
    return [h.reason for h in rig.store.halts(SYSTEM_SCOPE)]


def test_a_withdrawal_is_not_a_loss(rig: Rig) -> None:
    rig.ticks(10)
    rig.exchange.move_cash(-5_000.0, "CSW")  # 5 % of the account, five times the daily loss limit
    rig.ticks(10)
    assert halts(rig) == [] and rig.engine.system.state == "armed"


def test_a_deposit_does_not_hide_a_loss(rig: Rig) -> None:
    rig.ticks(10)
    rig.exchange.last_equity = rig.exchange.equity() + 1_500.0  # down 1.5 % on the day
    rig.exchange.move_cash(5_000.0, "CSD")  # equity is now above last equity
    rig.ticks(1)
    assert halts(rig) == ["kill condition: max_daily_loss_halt (daily_pnl_pct -1.47783, risk_global_max_daily_loss_pct 1)"]


@pytest.mark.parametrize("intraday_adjustments", [True, False])
def test_a_withdrawal_through_alpaca_py_is_not_a_loss(
    project: ProjectCopy, clock: ManualClock, intraday_adjustments: bool
) -> None:
    exchange = SimExchange(clock, seed=7)
    with Emulator(exchange, key=KEY, secret=SECRET) as emulator:
        emulator.intraday_adjustments = intraday_adjustments  # without it, the adapter sums the day's activities
        rig = make_rig(project, clock, broker=SnapshotBroker(make_api(emulator, clock), clock), exchange=exchange)
        rig.ticks(3)
        exchange.move_cash(-5_000.0, "CSW")
        rig.ticks(3)
        assert halts(rig) == [] and rig.engine.system.state == "armed"
        exchange.cash -= 1_500.0  # and a real loss of 1.5 %, which no cash movement explains, still halts
        rig.ticks(1)
        assert halts(rig) == ["kill condition: max_daily_loss_halt (daily_pnl_pct -1.5, risk_global_max_daily_loss_pct 1)"]


def test_an_acats_cash_withdrawal_through_alpaca_py_is_not_a_loss(project: ProjectCopy, clock: ManualClock) -> None:
    """Without intraday_adjustments, 5,000 USD out by an ACATS cash transfer (ACATC) was not among the activity
    types read: a 5 % trading loss, the daily-loss kill condition, and its flatten sold every position."""
    exchange = SimExchange(clock, seed=7)
    with Emulator(exchange, key=KEY, secret=SECRET) as emulator:
        emulator.intraday_adjustments = False
        rig = make_rig(project, clock, broker=SnapshotBroker(make_api(emulator, clock), clock), exchange=exchange)
        rig.ticks(3)
        exchange.move_cash(-5_000.0, "ACATC")
        rig.ticks(3)
        assert halts(rig) == [] and rig.engine.system.state == "armed"


def test_securities_moved_out_halt_and_sell_nothing(project: ProjectCopy, clock: ManualClock) -> None:
    """Securities worth 5,000 USD moved out by ACATS: net_amount does not say what they were worth, so the day's
    cash moved is unknown. The daily P&L is missing: the kill condition halts, naming the activity, and sells
    nothing (it had read the transfer as a 5 % loss, and flattened every position)."""
    exchange = SimExchange(clock, seed=7)
    with Emulator(exchange, key=KEY, secret=SECRET) as emulator:
        emulator.intraday_adjustments = False
        rig = make_rig(project, clock, broker=SnapshotBroker(make_api(emulator, clock), clock), exchange=exchange)
        rig.until(lambda r: bool(exchange.positions), limit=400)
        held = {s: p.qty for s, p in exchange.positions.items()}
        exchange.transfer_holdings(-5_000.0, "ACATS")
        rig.ticks(3)
        system = rig.store.halts(SYSTEM_SCOPE)
        assert [h.reason for h in system if "max_daily_loss_halt" in h.reason], [h.reason for h in system]
        reason = next(h.reason for h in system if "max_daily_loss_halt" in h.reason)
        assert "daily_pnl_pct" in reason and "the ACATS activity" in reason, reason
        assert not any(h.flatten for h in system)
        assert {s: p.qty for s, p in exchange.positions.items()} == held  # nothing sold


def test_a_withdrawal_dated_only_booked_after_the_last_close_is_not_a_loss(project: ProjectCopy, clock: ManualClock) -> None:
    """An activity with `date` only (the NonTradeActivities shape of Alpaca's docs), booked at 18:00 after Monday's
    close: dated Monday, it was dropped as before that close although last_equity does not hold it, and Tuesday's
    daily P&L read it as a 5 % loss, the kill condition and a flatten. Its id's time places it after the close."""
    exchange = SimExchange(clock, seed=7)
    with Emulator(exchange, key=KEY, secret=SECRET) as emulator:
        emulator.intraday_adjustments, emulator.activity_created_at = False, False
        clock.set(clock.now().replace(hour=23))  # Monday 18:00 in New York
        exchange.move_cash(-5_000.0, "CSW")
        clock.set(clock.now().replace(hour=14, minute=30) + timedelta(days=1))  # Tuesday's open
        rig = make_rig(project, clock, broker=SnapshotBroker(make_api(emulator, clock), clock), exchange=exchange)
        rig.ticks(3)
        assert halts(rig) == [] and rig.engine.system.state == "armed"
