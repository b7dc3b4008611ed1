"""An option trades in whole contracts: Alpaca refuses an order for part of one, so it never holds or fills part
of one either. A position or an order answer with a fraction of a contract is a wrong figure, not a holding: read
as it came, a position of 2.5 contracts was sold as 2.5 (refused, each minute, for ever) and an order filled 1.5
booked a half contract no exit could ever sell."""

from __future__ import annotations

import pytest

from engine.brokers.alpaca import AlpacaAPI
from engine.brokers.base import BrokerError, OrderRequest
from engine.brokers.emulator import Emulator, Fault
from engine.brokers.sim.exchange import SimExchange

CONTRACT = "SPY261204C00500000"


def test_a_position_in_part_of_a_contract_is_a_bad_answer(api: AlpacaAPI, emulator: Emulator, exchange: SimExchange) -> None:
    exchange.set_position(CONTRACT, 2, 5.0)
    (good,) = api.get_positions()
    patch = {"*.qty": "2.5", "*.qty_available": "2.5", "*.market_value": f"{2.5 * good.current_price * 100:.2f}"}
    emulator.faults.append(Fault(path_prefix="/v2/positions", patch=patch))
    with pytest.raises(BrokerError) as caught:
        api.get_positions()
    assert caught.value.kind == "bad_response" and CONTRACT in caught.value.message
    assert api.get_positions() == [good]  # the next answer is read


def test_an_order_for_part_of_a_contract_is_a_bad_answer(api: AlpacaAPI, emulator: Emulator, exchange: SimExchange) -> None:
    exchange.submit(OrderRequest(CONTRACT, "buy", "c-1", "limit", "day", qty=3, limit_price=0.01))  # works, unfilled
    (good,) = api.get_open_orders()
    for patch in ({"*.qty": "2.5"}, {"*.filled_qty": "1.5", "*.filled_avg_price": "0.01", "*.status": "partially_filled"}):
        emulator.faults.append(Fault(path_prefix="/v2/orders", patch=patch))
        with pytest.raises(BrokerError) as caught:
            api.get_open_orders()
        assert caught.value.kind == "bad_response" and "c-1" in caught.value.message, patch
    assert api.get_open_orders() == [good]


def test_a_share_may_still_be_fractional(api: AlpacaAPI, exchange: SimExchange) -> None:
    exchange.set_position("AAPL", 2.5, 190.0)
    (position,) = api.get_positions()
    assert position.qty == 2.5
