"""Answers Alpaca's own API spec says it sends (trading-api.json as synced in alpacahq/alpaca-mcp-server, version
2.0.1), through the real alpaca-py clients against the emulator on loopback: each one pins a value the spec lists
that the adapter refused, or a request the emulator answered otherwise than the spec says Alpaca does."""

from __future__ import annotations

from datetime import date, datetime, timedelta
from typing import Any

import pytest
import requests

from engine.brokers.alpaca import AlpacaAPI
from engine.brokers.base import BrokerError, OrderRequest
from engine.brokers.emulator import Emulator, Fault
from engine.brokers.sim.exchange import SimExchange
from engine.core.clock import ManualClock
from tests.brokers.conftest import KEY, SECRET, make_api
from tests.brokers.test_real_shapes import raw

ACCOUNT = "/v2/account"


@pytest.mark.parametrize("field", ["status", "crypto_status"])
def test_an_account_closing_is_read_as_not_active_not_as_an_unreadable_answer(
    api: AlpacaAPI, emulator: Emulator, field: str
) -> None:
    """trading-api.json's AccountStatus lists ACCOUNT_CLOSED_PENDING, which alpaca-py 0.44.0's enum lacks. Held to
    alpaca-py's list, the answer of an account being closed was unreadable: the system halted every tick, saying the
    broker's answer could not be read, where preflight names the status and blocks entries (it is not ACTIVE)."""
    emulator.faults.append(Fault(path_prefix=ACCOUNT, method="GET", patch={field: "ACCOUNT_CLOSED_PENDING"}))
    account = api.get_account()
    assert getattr(account, field) == "ACCOUNT_CLOSED_PENDING"
    assert not account.usable if field == "status" else account.usable


def test_the_account_statuses_are_alpaca_pys_and_the_spec_s() -> None:
    """Every status either source names is read; one neither names is still an unreadable answer."""
    from alpaca.trading.enums import AccountStatus

    from engine.brokers.alpaca import ACCOUNT_STATUSES

    assert {s.value for s in AccountStatus} | {"ACCOUNT_CLOSED_PENDING"} == ACCOUNT_STATUSES


MALFORMED = [
    ("/v1beta1/options/snapshots/SPY", {"strike_price_gte": "abc"}),
    ("/v1beta1/options/snapshots/SPY", {"strike_price_lte": "nan"}),
    ("/v1beta1/options/snapshots/SPY", {"expiration_date_gte": "2026-13-01"}),
    ("/v2/options/contracts", {"underlying_symbols": "SPY", "expiration_date_lte": "tomorrow"}),
    ("/v2/account/activities", {"after": "yesterday"}),
    ("/v2/account/activities", {"date": "2026-02-30"}),
    ("/v2/stocks/bars", {"symbols": "AAPL", "timeframe": "1Day", "start": "garbage"}),
    ("/v1beta3/crypto/us/bars", {"symbols": "BTC/USD", "timeframe": "1Min", "end": "2026-11-23T25:00:00Z"}),
]


@pytest.mark.parametrize(("path", "params"), MALFORMED)
def test_a_query_value_that_cannot_be_read_is_answered_400(emulator: Emulator, path: str, params: dict[str, str]) -> None:
    """market-data-api.json: "One of the request parameters is invalid. See the returned message for details." The
    emulator raised ValueError out of its handler instead: a traceback on its console and a connection closed with
    no answer at all (requests' ConnectionError), where Alpaca answers with a status and a message."""
    answer = raw(emulator, "GET", path, params=params)
    (name,) = (k for k in params if k not in ("symbols", "timeframe", "underlying_symbols"))
    assert (answer.status_code, answer.json()) == (400, {"message": f"invalid {name}: {params[name]}"})
    assert raw(emulator, "GET", "/v2/clock").status_code == 200  # the emulator answers on


# --- /v2/options/contracts and the option chain filter as Alpaca's do ---------------------------------------------


def contracts(emulator: Emulator, **params: Any) -> list[dict[str, Any]]:
    """Every page of /v2/options/contracts, through alpaca-py's own request and model."""
    from alpaca.trading.client import TradingClient
    from alpaca.trading.models import OptionContractsResponse
    from alpaca.trading.requests import GetOptionContractsRequest

    client = TradingClient(KEY, SECRET, url_override=emulator.url)
    found: list[dict[str, Any]] = []
    token = None
    while True:
        page = client.get_option_contracts(GetOptionContractsRequest(**params, page_token=token))
        assert isinstance(page, OptionContractsResponse)  # a dict only with raw_data=True
        found += [c.model_dump() for c in page.option_contracts or []]
        token = page.next_page_token
        if not token:
            return found


def test_contracts_are_filtered_by_type_and_strike(emulator: Emulator) -> None:
    """Asked for SPY's puts at 500 and up, the emulator answered calls from 450 (every filter but the expiry
    window was ignored); alpaca-py's request sends each filter, and Alpaca applies them."""
    found = contracts(emulator, underlying_symbols=["SPY"], type="put", strike_price_gte="500", strike_price_lte="520", limit="7")
    assert found and {(c["type"], c["underlying_symbol"]) for c in found} == {("put", "SPY")}
    assert all(500 <= c["strike_price"] <= 520 for c in found)


def test_contracts_expire_by_the_next_weekend_unless_asked_otherwise(emulator: Emulator, clock: ManualClock) -> None:
    """trading-api.json: expiration_date_lte "By default this is set to the next weekend" (the emulator's default was
    60 days out). An exact expiration_date is served whatever that default."""
    today = clock.now().date()  # Monday 2026-11-23
    assert {c["expiration_date"] for c in contracts(emulator, underlying_symbols=["SPY"], limit="10000")} <= {
        today + timedelta(days=n) for n in range(6)
    }
    far = date(2027, 1, 15)
    exact = contracts(emulator, underlying_symbols=["SPY"], expiration_date=far, limit="10000")
    assert exact and {c["expiration_date"] for c in exact} == {far}


def test_contracts_carry_their_multiplier_and_are_filtered_by_root(emulator: Emulator) -> None:
    """trading-api.json's OptionContract requires `multiplier`, which the emulator left out; `root_symbol` filters."""
    wire = raw(emulator, "GET", "/v2/options/contracts", params={"underlying_symbols": "SPY", "limit": "1"}).json()
    assert wire["option_contracts"][0]["multiplier"] == "100"
    assert wire["option_contracts"][0]["root_symbol"] == "SPY"
    by_root = raw(emulator, "GET", "/v2/options/contracts", params={"underlying_symbols": "SPY", "root_symbol": "SPYW"})
    assert by_root.json()["option_contracts"] == []


@pytest.mark.parametrize(("params", "empty"), [({"status": "inactive"}, True), ({"style": "european"}, True),
                                               ({"status": "active", "style": "american"}, False)])  # fmt: skip
def test_every_simulated_contract_is_an_active_american_one(emulator: Emulator, params: dict[str, str], empty: bool) -> None:
    wire = raw(emulator, "GET", "/v2/options/contracts", params={"underlying_symbols": "SPY", **params}).json()
    assert (wire["option_contracts"] == []) == empty


def test_the_chain_filters_by_exact_expiry_and_root(emulator: Emulator, clock: ManualClock) -> None:
    """market-data-api.json: the chain takes an exact expiration_date and a root_symbol too; the emulator ignored both."""
    from alpaca.data.historical import OptionHistoricalDataClient
    from alpaca.data.requests import OptionChainRequest

    client = OptionHistoricalDataClient(KEY, SECRET, url_override=emulator.url)
    day = date(2026, 12, 18)
    chain = client.get_option_chain(OptionChainRequest(underlying_symbol="SPY", expiration_date=day, root_symbol="SPY"))
    assert chain and {occ[3:9] for occ in chain} == {f"{day:%y%m%d}"}
    assert client.get_option_chain(OptionChainRequest(underlying_symbol="SPY", root_symbol="SPYW")) == {}


# --- GET /v2/orders filters as trading-api.json says ---------------------------------------------------------------


def test_the_order_list_is_filtered_by_symbol_side_class_and_time(
    api: AlpacaAPI, emulator: Emulator, exchange: SimExchange, clock: ManualClock
) -> None:
    """trading-api.json GET /v2/orders: "A currency pair is required for crypto orders (ex. "BTCUSD,...")", and
    `side`, `asset_class`, `after`/`until` (submission time, exclusive). The emulator matched a pair only as BTC/USD
    and ignored the rest: every order of the account came back, whatever was asked."""
    from alpaca.trading.client import TradingClient
    from alpaca.trading.enums import OrderSide, QueryOrderStatus
    from alpaca.trading.requests import GetOrdersRequest

    exchange.set_position("ETH/USD", 1, 3000.0)
    first = api.submit_order(OrderRequest("BTC/USD", "buy", "f-1", "limit", "gtc", qty=0.02, limit_price=1000.0))
    clock.advance(5)
    middle = api.submit_order(OrderRequest("AAPL", "buy", "f-2", "limit", "day", qty=1, limit_price=1.0))
    clock.advance(5)
    sell = api.submit_order(OrderRequest("ETH/USD", "sell", "f-3", "limit", "gtc", qty=0.01, limit_price=99999.0))
    client = TradingClient(KEY, SECRET, url_override=emulator.url)

    def ids(**params: Any) -> list[str]:
        return [str(o.id) for o in client.get_orders(GetOrdersRequest(status=QueryOrderStatus.ALL, **params))]  # type: ignore[union-attr]

    assert ids(symbols=["BTCUSD"]) == ids(symbols=["BTC/USD"]) == [first.id]
    assert ids(side=OrderSide.BUY) == [middle.id, first.id]
    assert ids(after=first.created_at, until=sell.created_at) == [middle.id]
    assert ids(direction="asc") == [first.id, middle.id, sell.id]
    crypto = raw(emulator, "GET", "/v2/orders", params={"status": "all", "asset_class": "crypto"}).json()
    assert [o["id"] for o in crypto] == [sell.id, first.id]
    assert raw(emulator, "GET", "/v2/orders", params={"status": "filled"}).status_code == 400


def test_a_cancel_of_a_filled_order_is_refused_in_alpaca_s_words(api: AlpacaAPI, emulator: Emulator, clock: ManualClock) -> None:
    """Alpaca answers the cancel of a filled order 422 {"code":42210000,"message":"order is already in \\"filled\\"
    state"} (logged by many public projects); the emulator said "order is not cancelable (status: filled)"."""
    order = api.submit_order(OrderRequest("AAPL", "buy", "c-1", qty=1))
    clock.advance(5)
    assert api.get_order(order.id).status == "filled"  # type: ignore[union-attr]
    answer = raw(emulator, "DELETE", f"/v2/orders/{order.id}")
    assert (answer.status_code, answer.json()) == (422, {"code": 42210000, "message": 'order is already in "filled" state'})


# --- the stock feed a free plan may ask for ------------------------------------------------------------------------

RECENT_SIP = {"message": "subscription does not permit querying recent SIP data"}


def test_recent_sip_quotes_need_a_sip_subscription(emulator: Emulator, clock: ManualClock) -> None:
    """reference §9: without a SIP subscription (Alpaca's free plan) recent SIP data is refused 403; the emulator
    served latest quotes whatever the feed, so an engine set to `broker.stock_feed: sip` quoted every stock against
    it and none against a free account."""
    sip = make_api(emulator, clock, feed="sip")
    with pytest.raises(BrokerError) as caught:
        sip.get_stock_quotes(["AAPL"])
    assert (caught.value.status, caught.value.reason, caught.value.message) == (403, "forbidden", RECENT_SIP["message"])
    assert make_api(emulator, clock, feed="iex").get_stock_quotes(["AAPL"])["AAPL"].two_sided
    assert make_api(emulator, clock, feed="delayed_sip").get_stock_quotes(["AAPL"])["AAPL"].two_sided
    bad = raw(emulator, "GET", "/v2/stocks/quotes/latest", params={"symbols": "AAPL", "feed": "nasdaq"})
    assert (bad.status_code, bad.json()) == (400, {"message": "invalid feed: nasdaq"})
    emulator.sip_subscription = True
    assert sip.get_stock_quotes(["AAPL"])["AAPL"].two_sided


def test_sip_bars_older_than_fifteen_minutes_need_no_subscription(emulator: Emulator, clock: ManualClock) -> None:
    now = clock.now()

    def bars(end: datetime) -> requests.Response:
        window = {"start": f"{now - timedelta(hours=1):%Y-%m-%dT%H:%M:%SZ}", "end": f"{end:%Y-%m-%dT%H:%M:%SZ}"}
        return raw(emulator, "GET", "/v2/stocks/bars", params={"symbols": "AAPL", "timeframe": "1Min", "feed": "sip", **window})

    assert bars(now - timedelta(minutes=16)).status_code == 200
    late = bars(now - timedelta(minutes=5))
    assert (late.status_code, late.json()) == (403, RECENT_SIP)
