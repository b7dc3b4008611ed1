"""The form of an order: what Alpaca refuses with 422 (a sub-penny stock limit, an option order that is not a day
order, a client_order_id past 128 characters, an amount past nine decimals) the emulator refuses too, as Alpaca
does, so that the real alpaca-py clients meet it; and the adapter never sends it. Amounts go out as plain decimal
strings, never a float's tail (0.30000000000000004) or an exponent (1e-05)."""

from __future__ import annotations

from typing import Any

import pytest
from alpaca.common.exceptions import APIError

from engine.brokers.alpaca import AlpacaAPI
from engine.brokers.base import BrokerError, OrderRequest
from engine.brokers.emulator import Emulator
from engine.brokers.sim.exchange import SimExchange
from engine.brokers.snapshot import SnapshotBroker
from engine.core.clock import ManualClock

ORDERS = "/v2/orders"  # as the emulator logs it; alpaca-py's post takes the path under /v2


def _option(exchange: SimExchange) -> str:
    return exchange.option_chain("SPY", 1, 30)[0].symbol


def _post(api: AlpacaAPI, body: dict[str, Any]) -> APIError:
    """A body posted by alpaca-py's own client, as another program (or an engine without the checks) would."""
    with pytest.raises(APIError) as caught:
        api.trading.post("/orders", {"side": "buy", "type": "market", "time_in_force": "day", **body})
    return caught.value


def _posts(emulator: Emulator) -> list[dict[str, Any]]:
    return [r.body for r in emulator.requests if r.method == "POST" and r.path == ORDERS]


# --- the emulator refuses as Alpaca does -------------------------------------------------------------------------


def test_a_sub_penny_stock_limit_is_refused_as_alpaca_refuses_it(api: AlpacaAPI) -> None:
    error = _post(api, {"symbol": "AAPL", "qty": "1", "type": "limit", "limit_price": "11.055", "client_order_id": "sp-1"})
    assert (error.status_code, error.code) == (422, 42210000)
    assert error.message == "invalid limit_price 11.055. sub-penny increment does not fulfill minimum pricing criteria"
    # under $1.00 a price takes four decimals; at or above, two
    with pytest.raises(APIError):
        api.trading.post("/orders", {"symbol": "AAPL", "qty": "1", "side": "buy", "type": "limit", "time_in_force": "day",
                                  "limit_price": "0.60135", "client_order_id": "sp-2"})  # fmt: skip
    answer = api.trading.post("/orders", {"symbol": "AAPL", "qty": "1", "side": "buy", "type": "limit",
                                       "time_in_force": "day", "limit_price": "0.6013", "client_order_id": "sp-3"})  # fmt: skip
    assert isinstance(answer, dict) and answer["client_order_id"] == "sp-3"


def test_an_option_order_that_is_not_a_day_order_is_refused(api: AlpacaAPI, exchange: SimExchange) -> None:
    error = _post(api, {"symbol": _option(exchange), "qty": "1", "time_in_force": "gtc", "client_order_id": "op-1"})
    assert (error.status_code, error.code) == (422, 42210000)
    assert error.message == "order_time_in_force provided not supported for options trading"


def test_a_client_order_id_past_128_characters_is_refused(api: AlpacaAPI) -> None:
    error = _post(api, {"symbol": "AAPL", "qty": "1", "client_order_id": "c" * 129})
    assert (error.status_code, error.code) == (422, 40010000)
    assert api.trading.post("/orders", {"symbol": "AAPL", "qty": "1", "side": "buy", "type": "market",
                                     "time_in_force": "day", "client_order_id": "c" * 128})  # fmt: skip


@pytest.mark.parametrize("qty", ["0.1234567891", 0.30000000000000004, "NaN", "inf"])
def test_an_amount_past_nine_decimals_or_not_a_number_is_refused(api: AlpacaAPI, qty: Any) -> None:
    error = _post(api, {"symbol": "BTC/USD", "qty": qty, "time_in_force": "gtc", "client_order_id": "q-1"})
    assert (error.status_code, error.code) == (422, 40010000)  # a 422, never the emulator's own 500


# --- the adapter never sends it ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "request_",
    [
        OrderRequest("AAPL", "buy", "nf-1", "limit", "day", qty=1, limit_price=11.055),
        OrderRequest("AAPL", "buy", "nf-2", "limit", "day", qty=1, limit_price=0.60135),
        OrderRequest("AAPL", "buy", "nf-3", "limit", "day", notional=100, limit_price=11.05),
        OrderRequest("AAPL", "buy", "nf-4", "market", "gtc", qty=0.5),
        OrderRequest("AAPL", "buy", "c" * 129, qty=1),
        OrderRequest("AAPL", "buy", "bot one/2", qty=1),
        OrderRequest("AAPL", "buy", "nf-5", qty=float("nan")),
        OrderRequest("BTC/USD", "buy", "nf-6", "market", "day", qty=0.01),
    ],
    ids=["sub-penny", "sub-penny-under-1", "notional-limit", "fraction-gtc", "long-id", "id-chars", "nan", "crypto-day"],
)
def test_an_order_alpaca_would_refuse_is_not_sent(broker: SnapshotBroker, emulator: Emulator, request_: OrderRequest) -> None:
    with pytest.raises(BrokerError) as caught:
        broker.submit_order(request_)
    assert (caught.value.kind, caught.value.reason, caught.value.status) == ("rejected", "invalid", None)
    assert caught.value.message.startswith("not sent: ")
    assert _posts(emulator) == []


def test_an_option_order_is_sent_only_as_a_day_order_of_whole_contracts(
    broker: SnapshotBroker, emulator: Emulator, exchange: SimExchange
) -> None:
    occ = _option(exchange)
    for request in (OrderRequest(occ, "buy", "o-1", "market", "gtc", qty=1), OrderRequest(occ, "buy", "o-2", qty=1.5)):
        with pytest.raises(BrokerError) as caught:
            broker.submit_order(request)
        assert caught.value.reason == "invalid"
    assert _posts(emulator) == []
    assert broker.submit_order(OrderRequest(occ, "buy", "o-3", qty=1)).symbol == occ


def test_an_option_limit_goes_out_as_a_day_limit_and_never_fills_above_it(
    broker: SnapshotBroker, emulator: Emulator, exchange: SimExchange, clock: ManualClock
) -> None:
    """The OptionsBot's entry (entries.plan_entry) through alpaca-py: a limit under the ask rests, one at the ask
    fills there, never higher."""
    occ = _option(exchange)
    ask = exchange.quote(occ).ask
    broker.submit_order(OrderRequest(occ, "buy", "ol-1", "limit", "day", qty=1, limit_price=round(ask - 0.05, 2)))
    broker.submit_order(OrderRequest(occ, "buy", "ol-2", "limit", "day", qty=1, limit_price=ask))
    clock.advance(5)
    found = {cid: broker.get_order_by_client_id(cid) for cid in ("ol-1", "ol-2")}
    assert found["ol-1"] is not None and found["ol-1"].status == "new" and found["ol-1"].filled_qty == 0
    assert found["ol-2"] is not None and found["ol-2"].status == "filled"
    assert found["ol-2"].filled_avg_price is not None and found["ol-2"].filled_avg_price <= ask
    assert [(b["type"], b["time_in_force"], b["limit_price"]) for b in _posts(emulator)] == [
        ("limit", "day", f"{round(ask - 0.05, 2):g}"),
        ("limit", "day", f"{ask:g}"),
    ]


def test_amounts_go_out_as_plain_decimal_strings(broker: SnapshotBroker, emulator: Emulator) -> None:
    broker.submit_order(OrderRequest("BTC/USD", "buy", "w-1", "limit", "gtc", qty=0.1 + 0.2, limit_price=60000.0))
    broker.submit_order(OrderRequest("ETH/USD", "buy", "w-2", "market", "gtc", qty=0.01 - 0.00099))
    broker.submit_order(OrderRequest("AAPL", "buy", "w-3", "limit", "day", qty=2, limit_price=0.1 + 0.7))
    with pytest.raises(BrokerError):  # no coins to sell: refused, but sent as Alpaca reads it
        broker.submit_order(OrderRequest("BTC/USD", "sell", "w-4", "market", "gtc", qty=5e-05))
    sent = _posts(emulator)
    assert [(b["qty"], b.get("limit_price")) for b in sent] == [
        ("0.3", "60000"),
        ("0.00901", None),
        ("2", "0.8"),
        ("0.00005", None),
    ]
    assert all(isinstance(b["qty"], str) and "e" not in b["qty"] for b in sent)


@pytest.mark.parametrize("order_id", ["not-a-uuid", "../account", ""])
def test_an_order_id_that_is_not_a_uuid_is_said_so_and_not_sent(
    broker: SnapshotBroker, emulator: Emulator, order_id: str
) -> None:
    for call in (broker.cancel_order, broker.get_order):
        with pytest.raises(BrokerError) as caught:
            call(order_id)
        assert "is not a UUID" in caught.value.message and "unexpected answer" not in caught.value.message
    assert [r for r in emulator.requests if r.path.startswith("/v2/orders/")] == []


def test_an_order_id_in_another_spelling_is_asked_for_in_alpacas(broker: SnapshotBroker, emulator: Emulator) -> None:
    order = broker.submit_order(OrderRequest("AAPL", "buy", "u-1", qty=1))
    found = broker.get_order("{" + order.id.upper() + "}")
    assert found is not None and found.id == order.id
    broker.cancel_order(order.id.replace("-", "").upper())
    assert [r.path for r in emulator.requests if r.path.startswith("/v2/orders/")] == [f"/v2/orders/{order.id}"] * 2


def _raw_post(api: AlpacaAPI, body: dict[str, Any]) -> APIError:
    """A body exactly as given: no type or time in force filled in."""
    with pytest.raises(APIError) as caught:
        api.trading.post("/orders", {"symbol": "AAPL", "qty": "1", "side": "buy", **body})
    return caught.value


@pytest.mark.parametrize(
    ("body", "code", "message"),
    [
        ({"type": "bogus", "time_in_force": "day"}, 40010001, "invalid order type"),
        ({"time_in_force": "day"}, 40010001, "invalid order type"),
        ({"type": "market", "time_in_force": "forever"}, 40010001, "invalid time_in_force"),
        ({"type": "market"}, 40010001, "invalid time_in_force"),
        ({"type": "stop", "time_in_force": "day"}, 40010000, "stop_price is required for stop orders"),
        (
            {"type": "stop_limit", "time_in_force": "day", "limit_price": "1"},
            40010000,
            "stop_price is required for stop_limit orders",
        ),
        (
            {"type": "trailing_stop", "time_in_force": "day"},
            40010000,
            "trail_price or trail_percent is required for trailing_stop orders",
        ),
    ],
    ids=["unknown-type", "no-type", "unknown-tif", "no-tif", "stop-no-price", "stop-limit-no-price", "trailing-no-trail"],
)
def test_an_order_of_an_unknown_type_or_without_its_fields_is_refused_not_filled(
    api: AlpacaAPI, emulator: Emulator, exchange: SimExchange, body: dict[str, Any], code: int, message: str
) -> None:
    """It was filled as a market day order ({"type": "stop"} with no stop_price bought at once); Alpaca answers 422."""
    error = _raw_post(api, {**body, "client_order_id": "form-1"})
    assert (error.status_code, error.code, error.message) == (422, code, message)
    assert not exchange.orders and "AAPL" not in exchange.positions


def test_a_well_formed_stop_order_the_sim_does_not_model_is_refused_never_filled_at_market(
    api: AlpacaAPI, exchange: SimExchange
) -> None:
    error = _raw_post(api, {"type": "stop", "time_in_force": "day", "stop_price": "1000", "client_order_id": "st-1"})
    assert (error.status_code, error.code) == (422, 40010000)
    assert "not modelled" in error.message
    assert not exchange.orders
