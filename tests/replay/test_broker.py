"""`ReplayBroker` reads a backtest's snapshot straight from the exchange, and must give what `SnapshotBroker` gives
through the request layers: the same account, positions, orders, quotes and clock, the same failed reads (each
with its class, status and operation, logged once), the same symbols missing and the same request count, frame
after frame. Two exchanges on the same data get the same orders; one is read each way, and their snapshots are
compared whole, including where replay data makes a read fail: a symbol without data, a malformed symbol (its
request refused, the others answered), a quote the recording did not get, a position that cannot be priced."""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable
from pathlib import Path

import pytest

from engine.brokers.base import DataNeeds, Snapshot
from engine.brokers.sim.exchange import SimReject
from engine.brokers.snapshot import SnapshotBroker
from engine.config.model import BrokerSettings
from engine.replay.api import ReplayAPI
from engine.replay.broker import ReplayBroker
from engine.replay.exchange import ReplayExchange
from tests.replay.test_exchange import Rig, bars

NEEDS = DataNeeds(stocks=("MSFT", "AAPL", "ZZZZ", "AAPL", "not a symbol!", "QQQ"), crypto=("BTC/USD",))


def _seen(snapshot: Snapshot) -> tuple[Snapshot, list[tuple[object, ...]]]:
    """The snapshot without its errors (an exception is equal to itself alone), and the errors' fields."""
    fields: list[tuple[object, ...]] = [(e.kind, e.message, e.status, e.code, e.reason, e.operation) for e in snapshot.errors]
    return dataclasses.replace(snapshot, errors=()), fields


class Pair:
    """Two exchanges on the same data, told the same things: one read by ReplayBroker, one by SnapshotBroker."""

    def __init__(self, folder: Path, settings: BrokerSettings):
        self.rigs = Rig(folder), Rig(folder)
        self.fast = ReplayBroker(ReplayAPI(self.rigs[0].exchange), self.rigs[0].clock, settings)
        self.layered = SnapshotBroker(ReplayAPI(self.rigs[1].exchange), self.rigs[1].clock, settings)

    def both(self, action: Callable[[Rig], object]) -> None:
        for rig in self.rigs:
            action(rig)

    def advance(self) -> None:
        for rig in self.rigs:
            frame = next(rig.frames)
            rig.feed.advance(frame)
            rig.clock.set(frame.at)

    def compare(self, caplog: pytest.LogCaptureFixture, needs: DataNeeds = NEEDS) -> Snapshot:
        caplog.clear()
        fast = self.fast.snapshot(needs)
        fast_log = [r.getMessage() for r in caplog.records]
        caplog.clear()
        layered = self.layered.snapshot(needs)
        assert _seen(fast) == _seen(layered)
        fields = {f.name: getattr(fast, f.name) for f in dataclasses.fields(fast)}
        assert set(vars(fast)) == set(fields) and Snapshot(**fields) == fast  # built without __init__, the same
        assert list(fast.quotes) == list(layered.quotes)  # the same order too
        assert fast_log == [r.getMessage() for r in caplog.records]  # each failure logged once, the same way
        assert self.fast.api.requests_made == self.layered.api.requests_made
        return fast


@pytest.fixture
def data(tmp_path: Path) -> Path:
    bars(tmp_path)
    bars(tmp_path, "MSFT")
    return tmp_path


@pytest.mark.parametrize("per_request", [2, 100])
def test_the_snapshot_is_the_layered_one_frame_after_frame(
    data: Path, caplog: pytest.LogCaptureFixture, per_request: int
) -> None:
    """Orders filled, working and held, symbols without data or malformed, in requests of two and in one."""
    caplog.set_level(logging.INFO, logger="engine.brokers")
    pair = Pair(data, BrokerSettings(symbols_per_request=per_request))
    first = pair.compare(caplog)
    refused = ("AAPL", "MSFT") if per_request == 100 else ()  # the malformed symbol refuses its request, theirs too
    assert first.missing_quotes == (*refused, "QQQ", "ZZZZ", "not a symbol!", "BTC/USD")
    assert [e.status for e in first.errors] == [400]
    pair.both(lambda rig: rig.order("buy-1", qty=10))
    pair.both(lambda rig: rig.order("buy-2", qty=5, order_type="limit", limit_price=50.0))
    for _ in range(3):
        pair.advance()
        snapshot = pair.compare(caplog)
        assert snapshot.positions and snapshot.open_orders and snapshot.account is not None


def test_a_quote_the_recording_did_not_get_stays_missing(data: Path, caplog: pytest.LogCaptureFixture) -> None:
    """A recording's `missing/`: the symbol is left out of the answer, not given its last quote."""
    pair = Pair(data, BrokerSettings())
    pair.advance()
    pair.both(lambda rig: setattr(rig.feed, "missing", ("AAPL",)))
    snapshot = pair.compare(caplog, DataNeeds(stocks=("AAPL", "MSFT")))
    assert snapshot.missing_quotes == ("AAPL",) and list(snapshot.quotes) == ["MSFT"]


def test_a_position_without_a_price_fails_its_reads(data: Path, caplog: pytest.LogCaptureFixture) -> None:
    """A held symbol the data has no price for: the account and the positions are failed reads (404), the quotes
    and the clock are still read."""
    caplog.set_level(logging.INFO, logger="engine.brokers")
    pair = Pair(data, BrokerSettings())
    pair.both(lambda rig: rig.exchange.set_position("ZZZZ", 3, 10.0))
    snapshot = pair.compare(caplog)
    assert snapshot.account is None and snapshot.positions is None and snapshot.clock is not None
    assert [e.operation for e in snapshot.errors] == ["account", "positions", "stock_quotes"]


def test_an_exchange_something_saves_reads_through_the_api(data: Path, caplog: pytest.LogCaptureFixture) -> None:
    """With an `on_change` every read must pass SimAPI's saving check: the layered path is taken, and saves."""
    pair = Pair(data, BrokerSettings())
    saved: list[int] = []
    pair.rigs[0].exchange.on_change = lambda: saved.append(pair.rigs[0].exchange.revision)
    pair.both(lambda rig: rig.order("buy-1", qty=1))
    pair.advance()
    pair.compare(caplog)
    assert saved  # the fill at this read was saved


def test_an_exchange_that_cannot_step_fails_each_read_that_steps_it(
    data: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A step that fails (a price the replay does not hold, as at a session's close) fails the account read, and
    each following read tries the step again, as through the API: none of them skips it because the account was
    read first. Once the step works again, every read answers."""
    pair = Pair(data, BrokerSettings())
    pair.both(lambda rig: rig.order("buy-1", qty=10))
    failing = [True]
    step = ReplayExchange.process

    def process(exchange: ReplayExchange) -> None:
        if failing[0]:
            raise SimReject(404, 40410000, "no price is kept for that instant")
        step(exchange)

    monkeypatch.setattr(ReplayExchange, "process", process)
    pair.advance()
    snapshot = pair.compare(caplog, DataNeeds(stocks=("AAPL",)))
    assert [e.operation for e in snapshot.errors] == ["account", "positions", "open_orders"]
    failing[0] = False
    pair.advance()
    assert pair.compare(caplog, DataNeeds(stocks=("AAPL",))).positions
