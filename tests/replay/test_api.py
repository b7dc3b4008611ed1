"""`ReplayAPI` answers and refuses as `SimAPI` does, request for request; with an `on_change` it is SimAPI's path."""

from __future__ import annotations

from pathlib import Path

import pytest

from engine.brokers.base import BrokerError, OrderRequest
from engine.brokers.sim.api import SimAPI
from engine.replay.api import ReplayAPI
from tests.replay.test_exchange import Rig, bars


def _refusal(call: object) -> BrokerError:
    with pytest.raises(BrokerError) as raised:
        call()  # type: ignore[operator]
    return raised.value


def _fields(error: BrokerError) -> tuple[object, ...]:
    return error.kind, error.message, error.status, error.code, error.reason, error.operation


def test_the_snapshot_reads_answer_and_count_as_simapi_s(tmp_path: Path) -> None:
    bars(tmp_path)
    rig = Rig(tmp_path)
    rig.order("buy-1", qty=10)
    rig.step()
    rig.order("buy-2", qty=5, order_type="limit", limit_price=50.0)  # working: an open order, cash reserved
    replay, sim = ReplayAPI(rig.exchange), SimAPI(rig.exchange)
    for read in ("get_account", "get_positions", "get_open_orders", "get_clock"):
        assert getattr(replay, read)() == getattr(sim, read)(), read
    for read in ("get_stock_quotes", "get_crypto_quotes"):
        assert getattr(replay, read)(["AAPL", "MSFT"]) == getattr(sim, read)(["AAPL", "MSFT"]), read
    assert replay.requests_made == sim.requests_made == 6


@pytest.mark.parametrize("read", ["get_stock_quotes", "get_crypto_quotes"])
def test_a_refused_quote_read_is_simapi_s_broker_error(tmp_path: Path, read: str) -> None:
    bars(tmp_path)
    rig = Rig(tmp_path)
    replay, sim = ReplayAPI(rig.exchange), SimAPI(rig.exchange)
    refused = _refusal(lambda: getattr(replay, read)(["AAPL", "not a symbol!"]))
    assert _fields(refused) == _fields(_refusal(lambda: getattr(sim, read)(["AAPL", "not a symbol!"])))
    assert refused.status == 400 and replay.requests_made == 1


def test_a_refused_request_is_simapi_s_broker_error(tmp_path: Path) -> None:
    bars(tmp_path)
    rig = Rig(tmp_path)
    replay, sim = ReplayAPI(rig.exchange), SimAPI(rig.exchange)
    request = OrderRequest("AAPL", "buy", "too-big", qty=1e6)  # past the buying power
    refused = _refusal(lambda: replay.submit_order(request))
    assert _fields(refused) == _fields(_refusal(lambda: sim.submit_order(request)))
    assert refused.kind == "rejected"


def test_an_exchange_something_saves_is_saved_after_each_change(tmp_path: Path) -> None:
    bars(tmp_path)
    rig = Rig(tmp_path)
    saved: list[int] = []
    rig.exchange.on_change = lambda: saved.append(rig.exchange.revision)
    replay = ReplayAPI(rig.exchange)
    replay.get_account()
    assert saved == []  # nothing changed
    replay.submit_order(OrderRequest("AAPL", "buy", "buy-1", qty=1))
    assert saved == [rig.exchange.revision]
    frame = next(rig.frames)  # the 09:32 frame, the exchange not stepped: the order fills at the next read
    rig.feed.advance(frame)
    rig.clock.set(frame.at)
    replay.get_account()
    assert rig.exchange.find_by_client_id("buy-1").status == "filled"
    assert saved[-1] == rig.exchange.revision and len(saved) == 2
