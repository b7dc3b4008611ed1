"""A crash between committing an intent and sending it, then a restart: exactly one order at the broker.

The broker is the emulator behind the real alpaca-py clients: it outlives the engine, as Alpaca would.
"""

from __future__ import annotations

import pytest

from engine.brokers.base import OrderRequest
from engine.brokers.emulator import Emulator
from engine.brokers.sim.exchange import SimExchange
from engine.brokers.snapshot import SnapshotBroker
from tests.brokers.conftest import KEY, SECRET, make_api
from tests.conftest import ProjectCopy
from tests.trading.conftest import make_rig


class Crash(BaseException):
    """The process dies (kill -9, power loss): nothing after this point runs."""


@pytest.mark.parametrize("when", ["before_the_post", "after_the_post"])
def test_crash_then_restart_leaves_exactly_one_order(project: ProjectCopy, clock, when: str) -> None:
    exchange = SimExchange(clock)
    with Emulator(exchange, key=KEY, secret=SECRET) as emulator:
        broker = SnapshotBroker(make_api(emulator, clock), clock)
        real_submit = broker.submit_order

        def crashing_submit(request: OrderRequest):
            if when == "after_the_post":
                real_submit(request)  # the broker has it; the engine never hears back
            raise Crash

        broker.submit_order = crashing_submit  # type: ignore[method-assign]
        rig = make_rig(project, clock, broker=broker, exchange=exchange)
        with pytest.raises(Crash):
            rig.ticks(500)
        pending = rig.store.orders(statuses=("pending",))
        assert len(pending) == 1  # the intent was committed before the send
        cid = pending[0].client_order_id

        broker.submit_order = real_submit  # type: ignore[method-assign]
        restarted = rig.restart(broker)
        restarted.ticks(3)
        at_broker = [o for o in exchange.orders.values() if o.request.client_order_id == cid]
        assert len(at_broker) == 1
        assert len([r for r in emulator.requests if r.method == "POST" and r.body.get("client_order_id") == cid]) == 1
        assert restarted.store.order(cid).status == "filled"  # type: ignore[union-attr]
        assert restarted.engine.reconciled and restarted.engine.system.state == "armed"
        actions = [e["action"] for e in restarted.events("order") if e.get("client_order_id") == cid]
        assert ("recovered" in actions) if when == "after_the_post" else ("resend_after_restart" in actions)


def test_an_old_unsent_intent_is_dropped_not_sent(project: ProjectCopy, clock) -> None:
    exchange = SimExchange(clock)
    with Emulator(exchange, key=KEY, secret=SECRET) as emulator:
        broker = SnapshotBroker(make_api(emulator, clock), clock)
        real_submit = broker.submit_order

        def crash(request: OrderRequest):
            raise Crash

        broker.submit_order = crash  # type: ignore[method-assign]
        rig = make_rig(project, clock, broker=broker, exchange=exchange)
        with pytest.raises(Crash):
            rig.ticks(500)
        cid = rig.store.orders(statuses=("pending",))[0].client_order_id
        clock.advance(600)  # the process was down for ten minutes: the signal is stale
        broker.submit_order = real_submit  # type: ignore[method-assign]
        restarted = rig.restart(broker)
        restarted.ticks(1)
        assert restarted.store.order(cid).status == "not_sent"  # type: ignore[union-attr]
        assert not [r for r in emulator.requests if r.method == "POST"]
