"""A positions answer some of whose positions cannot be read, through the real alpaca-py clients against the emulator.

Why: one unreadable field of one position (a `current_price: null`) made the whole answer unreadable, which is right
for everything that values or reconciles the account (the engine halts on it), but it also left exits with nothing
to size against once the positions last read were too old to stand in: the kill switch could sell nothing, though
every other position, and the quantity of the bad one, could be read. The answer stays a bad_response naming every
unreadable position; what is known of each is kept beside it for exits alone (`Snapshot.positions_in_part`).
"""

from __future__ import annotations

from typing import Any

import pytest

from engine.brokers.alpaca import AlpacaAPI
from engine.brokers.base import BrokerError, DataNeeds, Holding, PositionsUnreadable
from engine.brokers.emulator import Emulator, Fault
from engine.brokers.sim.exchange import SimExchange
from engine.brokers.snapshot import SnapshotBroker

POSITIONS = "/v2/positions"


@pytest.fixture
def held(api: AlpacaAPI, exchange: SimExchange) -> AlpacaAPI:
    """Three positions: a long share, a coin and a short, so each kind of quantity is read."""
    exchange.set_position("AAPL", 10, 190.0)
    exchange.set_position("BTC/USD", 0.5, 50_000.0)
    exchange.set_position("TSLA", -2, 250.0)
    return api


def index_of(api: AlpacaAPI, symbol: str) -> int:
    """Where `symbol`'s position is in the emulator's list (the fault's patch names a position by its index)."""
    return [p.symbol for p in api.get_positions()].index(symbol)


def spoiled(api: AlpacaAPI, emulator: Emulator, edits: dict[str, Any]) -> PositionsUnreadable:
    emulator.faults.append(Fault(path_prefix=POSITIONS, method="GET", patch=edits))
    with pytest.raises(BrokerError) as caught:
        api.get_positions()
    assert isinstance(caught.value, PositionsUnreadable), caught.value
    assert caught.value.kind == "bad_response" and caught.value.operation == "positions"
    return caught.value


def test_one_unreadable_price_keeps_every_quantity_for_exits(held: AlpacaAPI, emulator: Emulator) -> None:
    error = spoiled(held, emulator, {f"{index_of(held, 'BTC/USD')}.current_price": None})
    assert "BTCUSD's current_price" in error.message
    assert set(error.known.holdings) == {
        Holding("AAPL", 10.0, 10.0),
        Holding("BTC/USD", 0.5, 0.5),  # its price unreadable, its quantity and side read as any other's
        Holding("TSLA", -2.0, None),
    }
    assert error.known.unknown == frozenset()


def test_every_unreadable_position_is_named_and_an_unreadable_quantity_is_unknown(held: AlpacaAPI, emulator: Emulator) -> None:
    """All at once, not the first alone; a position whose qty (or side) cannot be read is held in an unknown
    amount: its exit waits, the others' do not."""
    aapl, tsla = index_of(held, "AAPL"), index_of(held, "TSLA")
    error = spoiled(held, emulator, {f"{aapl}.qty": "NaN", f"{tsla}.side": "sideways"})
    assert "AAPL's qty" in error.message and "TSLA's side" in error.message
    assert error.known.holdings == (Holding("BTC/USD", 0.5, 0.5),)
    assert error.known.unknown == {"AAPL", "TSLA"}


def test_an_unreadable_qty_available_is_not_said_rather_than_guessed(held: AlpacaAPI, emulator: Emulator) -> None:
    aapl = index_of(held, "AAPL")
    error = spoiled(held, emulator, {f"{aapl}.qty_available": "11", f"{aapl}.market_value": "1"})
    assert Holding("AAPL", 10.0, None) in error.known.holdings


def test_the_snapshot_keeps_what_is_known_for_exits_and_still_records_the_bad_answer(
    held: AlpacaAPI, broker: SnapshotBroker, emulator: Emulator
) -> None:
    emulator.faults.append(Fault(path_prefix=POSITIONS, method="GET", patch={f"{index_of(held, 'AAPL')}.current_price": None}))
    snapshot = broker.snapshot(DataNeeds())
    assert snapshot.positions is None and not snapshot.complete  # nothing values or enters on it: the engine halts
    assert [(e.operation, e.kind) for e in snapshot.errors] == [("positions", "bad_response")]
    assert snapshot.positions_in_part is not None
    assert {h.symbol: h.qty for h in snapshot.positions_in_part.holdings} == {"AAPL": 10.0, "BTC/USD": 0.5, "TSLA": -2.0}
    assert broker.snapshot(DataNeeds()).positions_in_part is None  # read whole again: the positions themselves
