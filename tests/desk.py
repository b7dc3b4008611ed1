"""An order desk for tests of the order path: the engine's OrderManager on a real SQLite file, trading through the
real alpaca-py clients against the emulator on 127.0.0.1 (the simulated exchange behind it). Each test module adds
the orders it needs in a subclass; `open_desk` builds one, and closes it with the emulator."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, tzinfo
from pathlib import Path
from typing import Any, TypeVar

from engine.brokers.base import BrokerError, DataNeeds
from engine.brokers.emulator import Emulator
from engine.brokers.sim.exchange import SimExchange
from engine.brokers.snapshot import SnapshotBroker
from engine.core.clock import ManualClock
from engine.core.journal import Journal
from engine.core.store import StateStore
from engine.trading.orders import OrderManager
from tests.brokers.conftest import KEY, SECRET, make_api


@dataclass
class Desk:
    clock: ManualClock
    exchange: SimExchange
    emulator: Emulator
    store: StateStore
    orders: OrderManager
    failures: list[BrokerError]  # every broker failure the order manager reported

    def tick(self, seconds: float = 5.0) -> None:
        self.clock.advance(seconds)
        self.orders.sync(self.orders.broker.snapshot(DataNeeds()))

    def status(self, cid: str) -> str:
        row = self.store.order(cid)
        assert row is not None
        return row.status


D = TypeVar("D", bound=Desk)


@contextmanager
def open_desk(
    kind: type[D],
    folder: Path,
    start: datetime,
    tz: tzinfo,
    *,
    fill_at_submit: bool = True,
    api: Callable[[Any, ManualClock], Any] | None = None,
) -> Iterator[D]:
    """A `kind` of desk at `start`, its state and log in `folder`, its trading dates in `tz`. `fill_at_submit=False`:
    as Alpaca, an order is answered first and fills at a later step. `api(adapter, clock)` wraps the Alpaca adapter
    (a test's own timing of the broker's answers)."""
    clock = ManualClock(start)
    exchange = SimExchange(clock, seed=7)
    exchange.fill_at_submit = fill_at_submit
    with Emulator(exchange, key=KEY, secret=SECRET) as emulator:
        adapter = make_api(emulator, clock)
        broker = SnapshotBroker(api(adapter, clock) if api is not None else adapter, clock)
        store = StateStore(folder / "state.db")
        failures: list[BrokerError] = []
        orders = OrderManager(store, broker, Journal(folder / "app.jsonl", clock), clock, failures.append, tz)
        yield kind(clock, exchange, emulator, store, orders, failures)
        store.close()
