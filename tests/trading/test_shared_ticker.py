"""Several bots on one ticker: each owns a ledger of its own fills on Alpaca's one netted position
(examples/shared-ticker: two MomentumBots on AAPL and the OptionsBot on AAPL's options)."""

from __future__ import annotations

import shutil

import pytest

from engine.core.clock import ManualClock
from engine.core.store import EXITBOT_ID, SYSTEM_SCOPE
from engine.paths import PROJECT_ROOT
from engine.trading.exitbot import record_halt
from tests.conftest import ProjectCopy
from tests.trading.conftest import Rig, make_rig

FAST, SLOW = "mom_AAPL_fast", "mom_AAPL_slow"


@pytest.fixture
def shared(project: ProjectCopy, clock: ManualClock) -> Rig:
    for name in ("settings.yaml", "bots.yaml"):
        shutil.copy(PROJECT_ROOT / "examples" / "shared-ticker" / "config" / name, project.config / name)
    return make_rig(project, clock)


def ledgers(rig: Rig, symbol: str = "AAPL") -> dict[str, float]:
    return {p.bot_id: p.qty for p in rig.store.positions() if p.symbol == symbol}


def broker_qty(rig: Rig, symbol: str = "AAPL") -> float:
    held = rig.exchange.positions.get(symbol)
    return held.qty if held is not None else 0.0


def test_two_bots_hold_one_ticker_and_their_ledgers_sum_to_the_broker_at_every_tick(shared: Rig) -> None:
    together = 0
    for _ in range(1500):
        shared.ticks(1)
        owned = ledgers(shared)
        assert sum(owned.values()) == pytest.approx(broker_qty(shared)), (shared.clock.now(), owned, broker_qty(shared))
        together += FAST in owned and SLOW in owned
    assert together > 0  # both held AAPL at the same time
    exits = {r.bot_id for r in shared.store.orders() if r.purpose == "exit" and r.symbol == "AAPL" and r.status == "filled"}
    assert {FAST, SLOW} <= exits  # each left on its own, selling only what it owned
    assert shared.engine.system.state == "armed" and shared.events("anomaly") == []
    assert {t.bot_id for t in shared.store.trades() if t.symbol == "AAPL"} == {FAST, SLOW}
    assert not [e for e in shared.events("order") if e.get("action") == "refused"]  # no wash-trade refusal


def test_a_flatten_closes_the_net_position_once_and_each_ledger_with_it(shared: Rig) -> None:
    shared.until(lambda r: FAST in ledgers(r) and SLOW in ledgers(r), limit=1500)
    before = ledgers(shared)
    now = shared.clock.now()
    record_halt(shared.store, shared.engine.journal, scope=SYSTEM_SCOPE, reason="test flatten", conditions=("operator",),
                now=now, flatten=True)  # fmt: skip
    shared.ticks(5)
    flattens = [r for r in shared.store.orders() if r.symbol == "AAPL" and r.reason == "flatten"]
    assert [(r.bot_id, r.qty) for r in flattens] == [(EXITBOT_ID, pytest.approx(sum(before.values())))]  # once, the net
    assert ledgers(shared) == {} and broker_qty(shared) == 0
    closed = {t.bot_id: t for t in shared.store.trades() if t.symbol == "AAPL" and t.exit_trigger == "flatten"}
    assert set(closed) == {FAST, SLOW}
    assert closed[FAST].qty == pytest.approx(before[FAST]) and closed[SLOW].qty == pytest.approx(before[SLOW])


@pytest.mark.parametrize("when", ["before_the_post", "after_the_post"])
def test_a_crash_around_the_post_with_two_bots_on_a_ticker_leaves_exactly_one_order(project: ProjectCopy, clock, when: str) -> None:
    from engine.brokers.base import Order, OrderRequest
    from engine.brokers.emulator import Emulator
    from engine.brokers.sim.exchange import SimExchange
    from engine.brokers.snapshot import SnapshotBroker
    from tests.brokers.conftest import KEY, SECRET, make_api
    from tests.trading.test_crash_recovery import Crash

    for name in ("settings.yaml", "bots.yaml"):
        shutil.copy(PROJECT_ROOT / "examples" / "shared-ticker" / "config" / name, project.config / name)
    exchange = SimExchange(clock)
    with Emulator(exchange, key=KEY, secret=SECRET) as emulator:
        broker = SnapshotBroker(make_api(emulator, clock), clock)
        real_submit = broker.submit_order

        def crashing_submit(request: OrderRequest) -> Order:
            if request.symbol == "AAPL" and when == "after_the_post":
                real_submit(request)
            if request.symbol == "AAPL":
                raise Crash
            return real_submit(request)

        broker.submit_order = crashing_submit  # type: ignore[method-assign]
        rig = make_rig(project, clock, broker=broker, exchange=exchange)
        with pytest.raises(Crash):
            rig.ticks(1500)
        broker.submit_order = real_submit  # type: ignore[method-assign]
        restarted = rig.restart(broker)
        restarted.ticks(200)
        posts = [r.body.get("client_order_id") for r in emulator.requests if r.method == "POST" and r.path == "/v2/orders"]
        assert len(posts) == len(set(posts))  # no order twice
        assert set(exchange.by_client_id) <= {r.client_order_id for r in restarted.store.orders()}  # none unknown
        assert sum(ledgers(restarted).values()) == pytest.approx(broker_qty(restarted))
        assert restarted.engine.system.state == "armed"


def test_the_emulator_refuses_a_crossing_order_and_the_engine_never_sends_one(project: ProjectCopy, clock) -> None:
    """Through the real alpaca-py clients: Alpaca's rule is enforced by the emulator (422 42210000), and the
    engine holds the crossing order instead of sending it."""
    from engine.brokers.base import BrokerError, OrderRequest
    from engine.brokers.emulator import Emulator
    from engine.brokers.sim.exchange import SimExchange
    from engine.brokers.snapshot import SnapshotBroker
    from tests.brokers.conftest import KEY, SECRET, make_api

    with Emulator(SimExchange(clock), key=KEY, secret=SECRET) as emulator:  # the rule, as Alpaca has it
        broker = SnapshotBroker(make_api(emulator, clock), clock)
        broker.submit_order(OrderRequest("AAPL", "buy", "manual-1", "limit", "day", qty=1, limit_price=1.0))
        with pytest.raises(BrokerError) as refused:
            broker.submit_order(OrderRequest("AAPL", "sell", "manual-2", "market", "day", qty=1))
        assert refused.value.status == 422 and refused.value.reason == "wash_trade"

    for name in ("settings.yaml", "bots.yaml"):
        shutil.copy(PROJECT_ROOT / "examples" / "shared-ticker" / "config" / name, project.config / name)
    exchange = SimExchange(clock)
    with Emulator(exchange, key=KEY, secret=SECRET) as emulator:  # the engine never meets it
        broker = SnapshotBroker(make_api(emulator, clock), clock)
        rig = make_rig(project, clock, broker=broker, exchange=exchange)
        rig.ticks(3)
        orders, day = rig.engine.orders, rig.engine.trading_date(clock.now())
        with rig.store.transaction():
            entry = OrderRequest("AAPL", "buy", orders.next_client_order_id(FAST, day), "limit", "day", qty=1, limit_price=1.0)
            orders.record_intent(FAST, day, "entry", entry, "test")
        orders.send_pending()
        with rig.store.transaction():
            crossing = OrderRequest("AAPL", "sell", orders.next_client_order_id(SLOW, day), "market", "day", qty=1)
            orders.record_intent(SLOW, day, "exit", crossing, "test")
        orders.send_pending()
        posts = [r.body.get("client_order_id") for r in emulator.requests if r.method == "POST" and r.path == "/v2/orders"]
        assert entry.client_order_id in posts and crossing.client_order_id not in posts  # held, never sent to be refused
        assert [e["client_order_id"] for e in rig.events("order") if e.get("action") == "held"] == [crossing.client_order_id]
