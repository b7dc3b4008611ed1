"""A position answer whose market value is not its quantity times its price is one wrong figure; a stock or a coin
priced at 0 is no price. The engine values the bots' positions at the broker's `current_price` first
(facts_builder.position_pnl_pct): read as it came, one glitched positions answer (current_price "0", the market
value still right) was a 100 % loss on every position, and every bot's stop loss sold all it held at market,
with no halt."""

from __future__ import annotations

from typing import Any

import pytest

from engine.brokers.alpaca import AlpacaAPI
from engine.brokers.base import BrokerError, OrderRequest
from engine.brokers.emulator import Emulator, Fault
from engine.brokers.sim.exchange import SimExchange
from engine.brokers.snapshot import SnapshotBroker
from engine.core.clock import ManualClock
from tests.brokers.conftest import KEY, SECRET, make_api
from tests.conftest import ProjectCopy
from tests.trading.conftest import make_rig

POSITIONS = "/v2/positions"


@pytest.mark.parametrize(
    "patch",
    [
        {"*.current_price": "0"},  # the glitch: a price of nothing, the market value still the real one
        {"*.current_price": "1.9"},  # a hundredth of the price
        {"*.market_value": "19"},
        {"*.current_price": "0", "*.market_value": "0", "*.unrealized_pl": "-570"},  # consistent, and still no price
    ],
)
def test_a_position_whose_value_is_not_its_qty_times_its_price_is_a_bad_answer(
    api: AlpacaAPI, emulator: Emulator, exchange: SimExchange, patch: dict[str, Any]
) -> None:
    exchange.set_position("AAPL", 3, 190.0)
    good = api.get_positions()
    emulator.faults.append(Fault(path_prefix=POSITIONS, patch=patch))
    with pytest.raises(BrokerError) as caught:
        api.get_positions()
    assert caught.value.kind == "bad_response" and "AAPL" in caught.value.message
    assert api.get_positions() == good  # the next answer is read


@pytest.mark.parametrize("symbol", ["AAPL", "BTC/USD", "SPY261204C00500000"])
def test_longs_shorts_and_contracts_are_read_as_before(api: AlpacaAPI, exchange: SimExchange, symbol: str) -> None:
    exchange.set_position(symbol, -2 if symbol == "AAPL" else 2, 5.0)
    (position,) = api.get_positions()
    assert position.symbol == symbol and position.market_value == pytest.approx(
        position.qty * position.current_price * (100 if symbol.startswith("SPY2") else 1)
    )


def test_cents_of_rounding_are_not_a_wrong_figure(api: AlpacaAPI, emulator: Emulator, exchange: SimExchange) -> None:
    exchange.set_position("AAPL", 3, 190.0)
    (good,) = api.get_positions()
    emulator.faults.append(Fault(path_prefix=POSITIONS, patch={"*.market_value": f"{good.market_value + 0.5:.2f}"}))
    (read,) = api.get_positions()
    assert read.market_value == pytest.approx(good.market_value + 0.5)


def test_a_position_priced_at_nothing_halts_and_nothing_is_sold(project: ProjectCopy, clock: ManualClock) -> None:
    exchange = SimExchange(clock, seed=7)
    with Emulator(exchange, key=KEY, secret=SECRET) as emulator:
        rig = make_rig(project, clock, broker=SnapshotBroker(make_api(emulator, clock), clock), exchange=exchange)
        rig.until(lambda r: "AAPL" in exchange.positions, limit=600)
        rig.ticks(2)
        held = exchange.positions["AAPL"].qty
        sent = len([r for r in emulator.requests if r.method in ("POST", "DELETE")])
        trades = len(rig.events("trade"))
        emulator.faults.append(Fault(path_prefix=POSITIONS, method="GET", patch={"*.current_price": "0"}))
        rig.ticks(6)
        assert [r.body for r in emulator.requests if r.method in ("POST", "DELETE")][sent:] == []
        assert exchange.positions["AAPL"].qty == held
        (halt,) = [h.reason for h in rig.store.halts("system")]
        assert "the broker's answer could not be read (positions:" in halt and "current_price" in halt
        assert len(rig.events("trade")) == trades


@pytest.mark.parametrize(
    ("symbol", "asset_class"),
    [("AAPL", "us_option"), ("AAPL", "crypto"), ("SPY261204C00500000", "us_equity"), ("SPY261204C00500000", "crypto")],
)
def test_a_position_whose_class_is_not_its_symbol_s_is_a_bad_answer(
    api: AlpacaAPI, emulator: Emulator, exchange: SimExchange, symbol: str, asset_class: str
) -> None:
    exchange.set_position(symbol, 2, 5.0)
    good = api.get_positions()
    emulator.faults.append(Fault(path_prefix=POSITIONS, patch={"*.asset_class": asset_class}))
    with pytest.raises(BrokerError) as caught:
        api.get_positions()
    assert caught.value.kind == "bad_response" and f"its asset_class {asset_class}" in caught.value.message
    assert api.get_positions() == good


def test_an_order_whose_class_is_not_its_symbol_s_is_a_bad_answer(api: AlpacaAPI, emulator: Emulator) -> None:
    api.submit_order(OrderRequest("MSFT", "buy", "rest-1", "limit", "day", qty=1, limit_price=1.0))
    emulator.faults.append(Fault(path_prefix="/v2/orders", method="GET", patch={"*.asset_class": "us_option"}))
    with pytest.raises(BrokerError) as caught:
        api.get_open_orders()
    assert caught.value.kind == "bad_response" and "its asset_class us_option" in caught.value.message


def test_shares_said_to_be_a_contract_worth_nothing_halt_and_nothing_is_sold(project: ProjectCopy, clock: ManualClock) -> None:
    """An option may be priced at 0; AAPL said to be one was, and the momentum bot's stop loss sold every share."""
    exchange = SimExchange(clock, seed=7)
    with Emulator(exchange, key=KEY, secret=SECRET) as emulator:
        rig = make_rig(project, clock, broker=SnapshotBroker(make_api(emulator, clock), clock), exchange=exchange)
        rig.until(lambda r: "AAPL" in exchange.positions, limit=600)
        rig.ticks(2)
        held = exchange.positions["AAPL"].qty
        sent = len([r for r in emulator.requests if r.method in ("POST", "DELETE")])
        assert min(exchange.positions) == "AAPL"  # the first position listed
        patch = {"0.asset_class": "us_option", "0.current_price": "0", "0.market_value": "0"}
        emulator.faults.append(Fault(path_prefix=POSITIONS, method="GET", patch=patch, times=0))
        rig.ticks(6)
        assert [r.body for r in emulator.requests if r.method in ("POST", "DELETE")][sent:] == []
        assert exchange.positions["AAPL"].qty == held
        (halt,) = [h.reason for h in rig.store.halts("system")]
        assert "the broker's answer could not be read (positions:" in halt and "its asset_class us_option" in halt
