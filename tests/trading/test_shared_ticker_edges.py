"""Several bots on one symbol, at the edges: what each bot's ledger is charged with when the netted position moves
for one of them (engine/trading/reconcile.py, orders.py, handlers.py)."""

from __future__ import annotations

import shutil
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest

from engine.brokers.base import Order, OrderRequest, Position, Snapshot
from engine.core.clock import ManualClock
from engine.core.journal import Journal
from engine.core.store import EXITBOT_ID, SYSTEM_SCOPE, PositionRow, StateStore
from engine.paths import PROJECT_ROOT
from engine.trading.exitbot import record_halt
from engine.trading.reconcile import adopt_fee_shortfalls
from tests.conftest import ProjectCopy
from tests.trading.conftest import Rig, make_rig
from tests.trading.test_shared_ticker import FAST, SLOW, broker_qty, ledgers

NOW = datetime(2026, 11, 23, 15, 0, tzinfo=timezone.utc)


def coins(qty: float) -> Snapshot:
    position = Position("BTC/USD", qty, 60_000.0, 60_000.0, qty * 60_000, 0.0, "crypto")
    return Snapshot(NOW, None, (position,), (), {}, {}, None)


def after_fees(tmp_path: Path, *, a: tuple[float, float], b: tuple[float, float], broker: float) -> dict[str, float]:
    """What crypto_a and crypto_b own of BTC/USD (each given as held and bought) once the broker's `broker` coins
    are adopted, in a real state file."""
    store, journal = StateStore(tmp_path / "s.db"), Journal(tmp_path / "j.jsonl", ManualClock(NOW))
    with store.transaction():
        store.save_position(PositionRow("crypto_a", "BTC/USD", a[0], 60_000.0, NOW, bought_qty=a[1]))
        store.save_position(PositionRow("crypto_b", "BTC/USD", b[0], 61_000.0, NOW, bought_qty=b[1]))
    adopt_fee_shortfalls(store, journal, coins(broker), {})
    return {p.bot_id: p.qty for p in store.positions()}


def test_a_crypto_fee_is_charged_to_the_bot_whose_buy_paid_it_not_to_one_that_held_before(tmp_path: Path) -> None:
    """A held 0.9975 BTC (its own buy's 0.25 % fee adopted); B then buys 1 BTC and receives 0.9975. B's fee is B's:
    A's ledger, and its P&L, must not shrink for another bot's purchase."""
    owned = after_fees(tmp_path, a=(0.9975, 1.0), b=(1.0, 1.0), broker=1.995)
    assert owned == {"crypto_a": pytest.approx(0.9975), "crypto_b": pytest.approx(0.9975)}


def test_fees_of_buys_made_together_are_split_in_proportion_to_what_each_bought(tmp_path: Path) -> None:
    owned = after_fees(tmp_path, a=(3.0, 3.0), b=(1.0, 1.0), broker=3.99)
    assert owned == {"crypto_a": pytest.approx(2.9925), "crypto_b": pytest.approx(0.9975)}


def shared_rig(project: ProjectCopy, clock: ManualClock) -> Rig:
    for name in ("settings.yaml", "bots.yaml"):
        shutil.copy(PROJECT_ROOT / "examples" / "shared-ticker" / "config" / name, project.config / name)
    return make_rig(project, clock)


def test_holders_wait_on_the_exitbot_s_flatten_of_their_shares_instead_of_retrying_every_tick(
    project: ProjectCopy, clock: ManualClock
) -> None:
    """A kill-switch flatten of AAPL, which both bots hold, that the market does not fill at once (placed while the
    market is closed it waits for the open: hours of ticks). Each holder's exit is that working order: its machine
    waits in `exiting`. Before, `exit_order_open` saw only the bot's own orders, so every tick each holder found its
    exit stalled, went back to `in_position` and exited again (two transitions a bot a tick, all night)."""
    rig = shared_rig(project, clock)
    rig.until(lambda r: FAST in ledgers(r) and SLOW in ledgers(r), limit=1500)
    exchange, submit = rig.exchange, rig.exchange.submit
    exchange.fill_at_submit = False

    def not_filled(request: OrderRequest) -> Order:  # the flatten waits, as for the open
        order = submit(request)
        if request.client_order_id.startswith(EXITBOT_ID):
            exchange.suspend_order(order.id)
        return exchange.find(order.id)

    exchange.submit = not_filled
    seen = len(rig.events("transition"))
    record_halt(rig.store, rig.engine.journal, scope=SYSTEM_SCOPE, reason="test flatten", conditions=("operator",),
                now=clock.now(), flatten=True)  # fmt: skip
    rig.ticks(20)
    moves: list[dict[str, Any]] = [e for e in rig.events("transition")[seen:] if e["bot"] in (FAST, SLOW)]
    assert [e for e in moves if e["trigger"] == "retry_exit"] == []
    assert sum(e["trigger"] == "exit" for e in moves) <= 2  # each holder exits once
    flatten = next(r for r in rig.store.orders() if r.bot_id == EXITBOT_ID)
    exchange.resume_order(flatten.broker_order_id)
    rig.ticks(5)
    assert ledgers(rig) == {} and broker_qty(rig) == 0
    assert {rig.engine.bot(b).model.state for b in (FAST, SLOW)} == {"halted"}


def test_entries_held_behind_the_other_bot_s_exit_and_never_sent_do_not_use_up_the_trade_cap(
    project: ProjectCopy, clock: ManualClock
) -> None:
    """FAST's exit of AAPL works for minutes (the market slow to take it); SLOW's entries on AAPL would cross it, so
    each is held, and ends `not_sent` after a minute. Before, each still counted as one of SLOW's
    max_trades_per_day (3): three entries that never left the process ended SLOW's day without a trade. Now an entry
    that ends with no request made gives its count back."""
    rig = shared_rig(project, clock)
    slow = rig.engine.bot(SLOW)
    slow.signal = lambda prices, params: False
    rig.until(lambda r: FAST in ledgers(r), limit=1500)
    exchange, submit = rig.exchange, rig.exchange.submit
    exchange.fill_at_submit = False

    def exit_waits(request: OrderRequest) -> Order:  # FAST's exit is taken, and not matched until resumed
        order = submit(request)
        if request.client_order_id.startswith(FAST) and request.side == "sell":
            exchange.suspend_order(order.id)
        return exchange.find(order.id)

    exchange.submit = exit_waits
    rig.engine.bot(FAST).signal = lambda prices, params: False
    rig.until(lambda r: any(o.bot_id == FAST and o.purpose == "exit" for o in r.store.orders()), limit=2000)
    slow.signal = lambda prices, params: True
    rig.until(lambda r: len([o for o in r.store.orders(bot_id=SLOW) if o.status == "not_sent"]) >= 3, limit=200)
    assert [o for o in rig.store.orders(bot_id=SLOW) if o.status != "not_sent" and o.status != "pending"] == []  # none sent
    day = rig.engine.trading_date(clock.now())
    assert rig.store.counter(day, SLOW, "entries") == 0
    (fast_exit,) = [o for o in rig.store.orders(bot_id=FAST) if o.purpose == "exit"]
    exchange.resume_order(fast_exit.broker_order_id)
    rig.until(lambda r: SLOW in ledgers(r), limit=100)  # its day's trades still ahead of it
