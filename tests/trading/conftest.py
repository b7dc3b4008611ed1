"""A harness for the loop: an engine on the simulated exchange (or the emulator), real SQLite, real JSONL."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest

from engine.brokers.base import Broker, OrderRequest
from engine.brokers.factory import build_sim
from engine.core.clock import ManualClock
from engine.core.journal import Journal, read_events
from engine.core.store import StateStore
from engine.trading.engine import Engine
from engine.validate import load_valid
from tests.conftest import ProjectCopy

OPEN = datetime(2026, 11, 23, 14, 30, tzinfo=timezone.utc)  # Monday 09:30 New York, 06:30 Los Angeles


@dataclass
class Rig:
    project: ProjectCopy
    clock: ManualClock
    engine: Engine
    exchange: Any
    store: StateStore
    log: Path

    def ticks(self, n: int) -> None:
        for _ in range(n):
            self.engine.tick()
            self.clock.advance(self.engine.config.settings.runner.loop_interval_seconds)

    def until(self, predicate: Any, limit: int = 2000) -> int:
        """Tick until `predicate(rig)` holds; the number of ticks it took."""
        for n in range(limit):
            if predicate(self):
                return n
            self.ticks(1)
        raise AssertionError("condition never held")

    def events(self, name: str | None = None) -> list[dict[str, Any]]:
        self.engine.journal.flush()
        return [e for e in read_events(self.log) if name is None or e["event"] == name]

    def restart(self, broker: Broker | None = None) -> Rig:
        """A new engine on the same SQLite file and the same broker (the process died; the broker did not)."""
        return make_rig(self.project, self.clock, broker=broker or self.engine.broker, exchange=self.exchange)


def make_rig(
    project: ProjectCopy, clock: ManualClock, *, broker: Broker | None = None, exchange: Any = None, secrets: tuple[str, ...] = ()
) -> Rig:
    report = load_valid(project.config, project.machines, project.rules)
    assert report.config is not None and report.book is not None
    if broker is None:
        broker, exchange = build_sim(report.config.settings, clock)
    db, log = project.root / "state.db", project.root / "app.jsonl"
    store = StateStore(db)
    engine = Engine(report.config, report.book, report.machines, broker, store, Journal(log, clock, secrets), clock)
    return Rig(project, clock, engine, exchange, store, log)


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(OPEN)


@pytest.fixture
def rig(project: ProjectCopy, clock: ManualClock) -> Rig:
    return make_rig(project, clock)


def working_entry(rig: Rig) -> OrderRequest:
    """mom_AAPL's entry, sent and working (a limit far from the market), once the engine is armed."""
    rig.ticks(3)  # reconciled and armed
    orders, day = rig.engine.orders, rig.engine.trading_date(rig.clock.now())
    with rig.store.transaction():
        entry = OrderRequest("AAPL", "buy", orders.next_client_order_id("mom_AAPL", day), "limit", "day", qty=1, limit_price=1.0)
        orders.record_intent("mom_AAPL", day, "entry", entry, "test")
    orders.send_pending()
    return entry
