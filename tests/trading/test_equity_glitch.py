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
        assert before.non_trade_cash_today is not None and deposited.non_trade_cash_today is not None
        assert (deposited.non_trade_cash_today, deposited.equity) == (before.non_trade_cash_today + 2_500, before.equity + 2_500)
        lone = f"{deposited.non_trade_cash_today + 4_000:.2f}"
        emulator.faults.append(Fault(patch={"intraday_adjustments": lone}, path_prefix="/v2/account", method="GET", times=0))
        for _ in range(LAST_EQUITY_CONFIRMATIONS - 1):
            with pytest.raises(BrokerError, match="intraday_adjustments"):
                api.get_account()
        assert api.get_account().non_trade_cash_today == deposited.non_trade_cash_today + 4_000


# One answer whose basis of the daily P&L (last_equity, and the balance_asof naming the close it is of) changed as
# no broker's day changes it, with last_equity doubled: a 50 % loss read from it flattened every position. The
# rig starts on Monday 2026-11-23, whose basis is Friday 2026-11-20's close.
BASIS_GLITCHES = {
    "went back": {"balance_asof": "2026-11-18"},
    "a close to come": {"balance_asof": "2026-11-23"},
    "the future": {"balance_asof": "2026-11-24"},
    "not a date": {"balance_asof": "yesterday"},
    "missing": None,
}


@pytest.mark.parametrize("patch", BASIS_GLITCHES.values(), ids=BASIS_GLITCHES.keys())
def test_one_glitched_basis_does_not_flatten(project: ProjectCopy, clock: ManualClock, patch: dict | None) -> None:
    exchange = SimExchange(clock, seed=7)
    with Emulator(exchange, key=KEY, secret=SECRET) as emulator:
        rig = make_rig(project, clock, broker=SnapshotBroker(make_api(emulator, clock), clock), exchange=exchange)
        rig.until(lambda r: bool(exchange.positions), limit=400)
        assert emulator.account_json()["balance_asof"] == "2026-11-20"
        held = {s: p.qty for s, p in exchange.positions.items()}
        doubled = {"last_equity": f"{exchange.account().last_equity * 2:.2f}"}
        emulator.faults.append(Fault(patch={**doubled, **(patch or {})}, drop=[] if patch else ["balance_asof"],
                                     path_prefix="/v2/account", method="GET"))  # fmt: skip
        rig.ticks(3)
        halts = rig.store.halts("system")
        assert halts and not any(h.flatten for h in halts), [(h.reason, h.flatten) for h in halts]
        assert "balance_asof" in halts[0].reason and "max_daily_loss" not in halts[0].reason, halts[0].reason
        assert {s: p.qty for s, p in exchange.positions.items()} == held  # nothing sold
        assert not [r for r in rig.store.orders() if r.purpose == "exit"]


def test_a_new_days_basis_is_read_at_once_and_a_close_to_come_only_once_confirmed(clock: ManualClock) -> None:
    """At New York midnight the basis moves to the day that closed (Monday's close, dated Monday): a new day's,
    read at once, the daily loss measured from it. A first answer naming a close still to come (Tuesday's, on
    Tuesday morning) is refused until the same basis comes back LAST_EQUITY_CONFIRMATIONS answers in a row."""
    from datetime import timedelta

    from engine.brokers.alpaca import LAST_EQUITY_CONFIRMATIONS
    from engine.brokers.base import BrokerError

    exchange = SimExchange(clock, seed=7)
    exchange.set_position("AAPL", 100, 190.0)  # Monday's close then differs from Friday's
    with Emulator(exchange, key=KEY, secret=SECRET) as emulator:
        api = make_api(emulator, clock)
        monday = api.get_account()
        for hours in (6, 7, 14):  # Monday 16:00 (just past the close), 17:00, Tuesday 00:00 New York
            clock.set(clock.now().replace(hour=15) + timedelta(hours=hours))
            exchange.process()
        assert emulator.account_json()["balance_asof"] == "2026-11-23"
        tuesday = api.get_account()  # no error: a new day's basis
        assert tuesday.last_equity != monday.last_equity
        fresh = make_api(emulator, clock)
        emulator.faults.append(Fault(patch={"balance_asof": "2026-11-24"}, path_prefix="/v2/account", method="GET", times=0))
        for _ in range(LAST_EQUITY_CONFIRMATIONS - 1):
            with pytest.raises(BrokerError, match="names a close still to come"):
                fresh.get_account()
        assert fresh.get_account().last_equity == tuesday.last_equity


def test_a_negative_long_market_value_that_keeps_the_sum_does_not_flatten(project: ProjectCopy, clock: ManualClock) -> None:
    """equity and long_market_value both lowered by a third of the equity: the sum still held (cash + long + short
    = equity), and the 30 % loss tripped the daily-loss kill condition, whose flatten sold every position. Long
    positions are worth 0 or more: the answer is unreadable, the system halts and sells nothing."""
    exchange = SimExchange(clock, seed=7)
    with Emulator(exchange, key=KEY, secret=SECRET) as emulator:
        rig = make_rig(project, clock, broker=SnapshotBroker(make_api(emulator, clock), clock), exchange=exchange)
        rig.until(lambda r: bool(exchange.positions), limit=400)
        held = {s: p.qty for s, p in exchange.positions.items()}
        account = emulator.account_json()
        drop = float(account["equity"]) * 0.3
        patch = {name: f"{float(account[name]) - drop:.2f}" for name in ("equity", "portfolio_value", "long_market_value")}
        emulator.faults.append(Fault(patch=patch, path_prefix="/v2/account", method="GET"))
        rig.ticks(3)
        halts = rig.store.halts("system")
        assert halts and not any(h.flatten for h in halts), [(h.reason, h.flatten) for h in halts]
        assert "long_market_value" in halts[0].reason, halts[0].reason
        assert {s: p.qty for s, p in exchange.positions.items()} == held  # nothing sold


def test_a_short_market_value_above_zero_is_unreadable(clock: ManualClock) -> None:
    from engine.brokers.base import BrokerError

    exchange = SimExchange(clock, seed=7)
    with Emulator(exchange, key=KEY, secret=SECRET) as emulator:
        api = make_api(emulator, clock)
        account = emulator.account_json()
        patch = {"short_market_value": "500.00", "cash": f"{float(account['cash']) - 500:.2f}"}  # the sum still holds
        emulator.faults.append(Fault(patch=patch, path_prefix="/v2/account", method="GET"))
        with pytest.raises(BrokerError, match=r"short_market_value is 500\.00, above 0"):
            api.get_account()
        api.get_account()  # the next, right answer is read


def test_a_glitched_basis_in_the_first_answer_after_a_restart_does_not_flatten(project: ProjectCopy, clock: ManualClock) -> None:
    """The adapter compares last_equity with what its own process read: the first answer after a restart (a crash
    loop restarts the engine all day) had nothing to be compared with, and one with last_equity doubled read as a
    50 % loss, and the flatten sold every position. The basis an earlier run read that New York day is kept in
    SQLite: a first read that differs from it is an unreadable account (the system halts, sells nothing) until the
    same value comes back three reads in a row (a correction made while the engine was down): then it is the basis."""
    from engine.brokers.alpaca import LAST_EQUITY_CONFIRMATIONS
    from engine.trading.basis import BASIS_KEY

    exchange = SimExchange(clock, seed=7)
    with Emulator(exchange, key=KEY, secret=SECRET) as emulator:
        rig = make_rig(project, clock, broker=SnapshotBroker(make_api(emulator, clock), clock), exchange=exchange)
        rig.until(lambda r: bool(exchange.positions), limit=400)
        held = {s: p.qty for s, p in exchange.positions.items()}
        basis = exchange.account().last_equity
        doubled = f"{basis * 2:.2f}"
        emulator.faults.append(Fault(patch={"last_equity": doubled}, path_prefix="/v2/account", method="GET"))
        rig = rig.restart(broker=SnapshotBroker(make_api(emulator, clock), clock))  # a new process, a new adapter
        rig.ticks(3)
        halts = rig.store.halts("system")
        assert halts and not any(h.flatten for h in halts), [(h.reason, h.flatten) for h in halts]
        assert f"last_equity {doubled} is not the {basis:.2f} read before this run" in halts[0].reason, halts[0].reason
        assert {s: p.qty for s, p in exchange.positions.items()} == held  # nothing sold
        # a correction while the engine was down: the same new value, read again and again, becomes the basis
        corrected = basis + 300.0
        emulator.faults.append(Fault(patch={"last_equity": f"{corrected:.2f}"}, path_prefix="/v2/account", method="GET", times=0))
        rig = rig.restart(broker=SnapshotBroker(make_api(emulator, clock), clock))
        before = len(rig.events("broker_error"))
        rig.ticks(LAST_EQUITY_CONFIRMATIONS + 2)
        assert len(rig.events("broker_error")) - before == LAST_EQUITY_CONFIRMATIONS - 1
        assert f'"last_equity": {corrected}' in (rig.store.meta(BASIS_KEY) or "")
        assert {s: p.qty for s, p in exchange.positions.items()} == held
