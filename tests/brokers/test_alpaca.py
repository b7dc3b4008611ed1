"""The alpaca adapter through the real alpaca-py clients against the emulator: every call the engine uses,
and every failure kind mapped to the right BrokerError."""

from __future__ import annotations

from typing import Any

import pytest

from engine.brokers.alpaca import AlpacaAPI
from engine.brokers.base import BrokerError, DataNeeds, OrderRequest
from engine.brokers.emulator import Emulator, Fault
from engine.brokers.snapshot import SnapshotBroker
from engine.core.clock import ManualClock
from tests.brokers.conftest import KEY, SECRET, make_api

NEEDS = DataNeeds(stocks=("AAPL", "SPY"), crypto=("BTC/USD",), option_underlyings=("SPY",), option_dte_min=7, option_dte_max=45)


def test_snapshot_reads_everything_with_one_request_each(broker: SnapshotBroker) -> None:
    snap = broker.snapshot(NEEDS)
    assert snap.complete and snap.errors == ()
    assert snap.account is not None and snap.account.equity == 100_000 and snap.account.usable
    assert snap.positions == () and snap.open_orders == ()
    assert set(snap.quotes) == {"AAPL", "SPY", "BTC/USD"}
    assert all(q.ask > q.bid > 0 and q.timestamp.tzinfo is not None for q in snap.quotes.values())
    chain = snap.option_chains["SPY"]
    assert chain and all(7 <= (c.expiry - snap.taken_at.date()).days <= 45 for c in chain)
    with_greeks = [c for c in chain if c.greeks is not None]
    assert {c.option_type for c in chain} == {"call", "put"} and all(-1 <= c.delta <= 1 for c in with_greeks)
    assert 0 < len(with_greeks) < len(chain)  # thin contracts come without greeks, and are kept
    assert snap.clock is not None and snap.clock.is_open
    # account, positions, orders, stocks, crypto, one chain, clock
    assert snap.broker_requests == 7


def test_cached_chain_and_clock_are_not_fetched_again(broker: SnapshotBroker, clock: ManualClock) -> None:
    broker.snapshot(NEEDS)
    clock.advance(5)
    assert broker.snapshot(NEEDS).broker_requests == 5
    clock.advance(60)
    assert broker.snapshot(NEEDS).broker_requests == 7


def test_orders_positions_and_symbol_normalisation(broker: SnapshotBroker, emulator: Emulator, clock: ManualClock) -> None:
    stock = broker.submit_order(OrderRequest("AAPL", "buy", "mom_AAPL-20261123-0001", qty=3))
    assert (stock.status, stock.filled_qty, stock.client_order_id) == ("pending_new", 0.0, "mom_AAPL-20261123-0001")
    ask = broker.snapshot(DataNeeds(crypto=("BTC/USD",))).quotes["BTC/USD"].ask
    coin = broker.submit_order(OrderRequest("BTC/USD", "buy", "crypto-1", "limit", "gtc", notional=50, limit_price=ask * 1.01))
    assert coin.status == "pending_new" and coin.symbol == "BTC/USD"
    clock.advance(5)  # the fills come at the next step
    assert broker.get_order_by_client_id("crypto-1").status == "filled"  # type: ignore[union-attr]
    positions = {p.symbol: p for p in broker.snapshot(DataNeeds()).positions or ()}
    assert set(positions) == {"AAPL", "BTC/USD"}  # the wire says BTCUSD
    assert any(r.path == "/v2/positions" for r in emulator.requests)
    found = broker.get_order_by_client_id("mom_AAPL-20261123-0001")
    assert found is not None and found.id == stock.id
    assert broker.get_order_by_client_id("no-such-order") is None
    closed = broker.close_position("BTC/USD")
    assert closed.side == "sell" and any(r.path == "/v2/positions/BTCUSD" for r in emulator.requests)


def test_resting_order_is_listed_and_cancelled(broker: SnapshotBroker, clock: ManualClock) -> None:
    bid = broker.snapshot(DataNeeds(stocks=("AAPL",))).quotes["AAPL"].bid
    order = broker.submit_order(OrderRequest("AAPL", "buy", "rest-1", "limit", "day", qty=1, limit_price=round(bid * 0.9, 2)))
    assert order.status == "pending_new"
    clock.advance(5)
    assert [(o.id, o.status) for o in broker.snapshot(DataNeeds()).open_orders or ()] == [(order.id, "new")]
    broker.cancel_order(order.id)  # 204: asked for, not done
    assert [o.status for o in broker.snapshot(DataNeeds()).open_orders or ()] == ["pending_cancel"]
    clock.advance(5)
    assert broker.snapshot(DataNeeds()).open_orders == ()
    assert broker.get_order_by_client_id("rest-1").status == "canceled"  # type: ignore[union-attr]


def test_the_wire_format(broker: SnapshotBroker, emulator: Emulator) -> None:
    broker.snapshot(DataNeeds(stocks=("AAPL", "MSFT"), crypto=("BTC/USD", "ETH/USD")))
    broker.submit_order(OrderRequest("AAPL", "buy", "wire-1", qty=2))
    orders = next(r for r in emulator.requests if r.path == "/v2/orders" and r.method == "GET")
    assert orders.query["status"] == ["open"] and orders.query["limit"] == ["500"]
    stocks = next(r for r in emulator.requests if r.path == "/v2/stocks/quotes/latest")
    assert stocks.query["symbols"] == ["AAPL,MSFT"] and stocks.query["feed"] == ["iex"]
    crypto = next(r for r in emulator.requests if r.path.startswith("/v1beta3/crypto"))
    assert crypto.query["symbols"] == ["BTC/USD,ETH/USD"]
    post = next(r for r in emulator.requests if r.method == "POST")
    assert post.body == {
        "symbol": "AAPL",
        "qty": "2",  # a decimal string, as trading-api.json types it: never a float's tail or an exponent
        "side": "buy",
        "type": "market",
        "time_in_force": "day",
        "client_order_id": "wire-1",
    }
    assert all(SECRET not in str(r.headers) for r in emulator.requests)


def test_504_after_acceptance_then_lookup_leaves_exactly_one_order(broker: SnapshotBroker, emulator: Emulator) -> None:
    emulator.faults.append(
        Fault(status=504, body="<html>gateway timeout</html>", content_type="text/html", after=True, path_prefix="/v2/orders")
    )
    request = OrderRequest("AAPL", "buy", "mom_AAPL-20261123-0007", qty=1)
    with pytest.raises(BrokerError) as caught:
        broker.submit_order(request)
    assert (caught.value.kind, caught.value.status) == ("server", 504)
    found = broker.get_order_by_client_id(request.client_order_id)  # the engine's lookup, never a blind re-POST
    assert found is not None and found.status == "pending_new"
    assert len([r for r in emulator.requests if r.method == "POST"]) == 1  # the SDK's retry is off
    assert len(emulator.exchange.orders) == 1


def test_a_second_post_with_the_same_client_order_id_is_refused(broker: SnapshotBroker) -> None:
    broker.submit_order(OrderRequest("AAPL", "buy", "dup-1", qty=1))
    with pytest.raises(BrokerError) as caught:
        broker.submit_order(OrderRequest("AAPL", "buy", "dup-1", qty=1))
    assert (caught.value.kind, caught.value.status) == ("rejected", 422)


@pytest.mark.parametrize(
    ("fault", "kind", "status"),
    [
        (Fault(status=500), "server", 500),
        (Fault(status=502, body="<html><body>Bad Gateway</body></html>", content_type="text/html"), "server", 502),
        (Fault(status=503, body="{}"), "server", 503),
        (Fault(status=429, body='{"code":42910000,"message":"rate limit exceeded"}'), "rate_limited", 429),
        (Fault(status=401, body='{"code":40110000,"message":"request is not authorized"}'), "unauthorized", 401),
        (Fault(status=403, body='{"code":40310000,"message":"forbidden"}'), "rejected", 403),
        (Fault(status=404, body='{"code":40410000,"message":"not found"}'), "not_found", 404),
        (Fault(status=200, body="<html>maintenance</html>", content_type="text/html"), "bad_response", None),
        (Fault(status=200, body='{"account_number": 12'), "bad_response", None),
        (Fault(status=200, body='{"unexpected": "shape"}'), "bad_response", None),
        (Fault(status=200, body=""), "bad_response", None),
    ],
    ids=["500", "502-html", "503", "429", "401", "403", "404", "200-html", "200-malformed", "200-bad-shape", "200-empty"],
)
def test_each_failure_becomes_one_typed_error(
    api: AlpacaAPI, emulator: Emulator, fault: Fault, kind: str, status: int | None
) -> None:
    emulator.faults.append(fault)
    with pytest.raises(BrokerError) as caught:
        api.get_account()
    assert (caught.value.kind, caught.value.status, caught.value.operation) == (kind, status, "account")
    assert SECRET not in str(caught.value)
    assert api.get_account().equity == 100_000  # the next call is fine: nothing was corrupted


def test_429_is_not_retried_silently(api: AlpacaAPI, emulator: Emulator) -> None:
    emulator.faults.extend([Fault(status=429, body="{}"), Fault(status=429, body="{}")])
    with pytest.raises(BrokerError):
        api.get_account()
    assert len([r for r in emulator.requests if r.path == "/v2/account"]) == 1


def test_a_stalled_server_times_out(emulator: Emulator, clock: ManualClock) -> None:
    api = make_api(emulator, clock, timeout=0.2)
    emulator.faults.append(Fault(status=0, hang_seconds=5))
    with pytest.raises(BrokerError) as caught:
        api.get_account()
    assert caught.value.kind == "timeout"


def test_a_refused_connection(clock: ManualClock) -> None:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again: nothing listens there
    from engine.brokers.ratelimit import TokenBucket

    api = AlpacaAPI(
        "PKTESTKEY0123456789",
        SECRET,
        paper=True,
        api_base_url=f"http://127.0.0.1:{port}",
        data_base_url=f"http://127.0.0.1:{port}",
        timeout_seconds=1,
        bucket=TokenBucket(190, clock),
    )
    with pytest.raises(BrokerError) as caught:
        api.get_clock()
    assert caught.value.kind == "connection"


def test_wrong_keys_are_unauthorized(emulator: Emulator, clock: ManualClock) -> None:
    from engine.brokers.ratelimit import TokenBucket

    api = AlpacaAPI(
        "PKWRONGKEY000000",
        "wrongsecret00000000",
        paper=True,
        api_base_url=emulator.url,
        data_base_url=emulator.url,
        timeout_seconds=1,
        bucket=TokenBucket(190, clock),
    )
    with pytest.raises(BrokerError) as caught:
        api.get_account()
    assert caught.value.kind == "unauthorized" and "wrongsecret" not in str(caught.value)


def test_failed_reads_leave_fields_empty_and_are_recorded(broker: SnapshotBroker, emulator: Emulator) -> None:
    emulator.faults.append(Fault(status=500, path_prefix="/v2/positions"))
    snap = broker.snapshot(NEEDS)
    assert snap.positions is None and snap.account is not None
    assert [(e.operation, e.kind) for e in snap.errors] == [("positions", "server")]
    assert not snap.complete


def test_the_client_side_budget_refuses_without_sending(emulator: Emulator, clock: ManualClock) -> None:
    api = make_api(emulator, clock, per_minute=2)
    api.get_account()
    api.get_account()
    sent = len(emulator.requests)
    with pytest.raises(BrokerError) as caught:
        api.get_account()
    assert caught.value.kind == "rate_limited" and len(emulator.requests) == sent
    clock.advance(30)  # one token back
    api.get_account()


def test_rate_limit_headers_tighten_the_budget(emulator: Emulator, clock: ManualClock) -> None:
    emulator.rate_limit = 3
    api = make_api(emulator, clock)
    for _ in range(3):
        api.get_account()  # the server now says 0 remaining until the next minute
    with pytest.raises(BrokerError) as caught:
        api.get_account()
    assert caught.value.kind == "rate_limited"


def test_faults_can_be_queued_over_http(api: AlpacaAPI, emulator: Emulator) -> None:
    import requests

    control = f"{emulator.url}/__emulator/faults"
    answer = requests.post(control, json=[{"status": 503, "path_prefix": "/v2/account"}], timeout=5)
    assert answer.status_code == 200 and answer.json() == {"queued": 1}
    assert requests.post(control, json=[{"bogus": 1}], timeout=5).status_code == 422
    with pytest.raises(BrokerError) as caught:
        api.get_account()
    assert caught.value.status == 503
    assert api.get_account().equity == 100_000
    log = requests.get(f"{emulator.url}/__emulator/requests", timeout=5).json()
    assert [r["path"] for r in log] == ["/v2/account", "/v2/account"]  # the controls are not in the log



@pytest.mark.parametrize(
    "fault",
    [{"status": "503"}, {"status": 99}, {"status": True}, {"hang_seconds": "5"}, {"hang_seconds": -1},
     {"times": 1.5}, {"after": 1}, {"drop": "id"}, {"headers": {"Retry-After": 5}}, "503", {"rewrite": None}],
)  # fmt: skip
def test_a_fault_that_cannot_be_played_is_refused_when_queued(api: AlpacaAPI, emulator: Emulator, fault: Any) -> None:
    """A fault queued over HTTP was taken as it came: a status given as text, a hang as text, or a body as a JSON
    object broke the request it was meant for (no answer at all, a traceback in the emulator's output) and was used
    up. Each is refused with 422 when queued, the queue left as it was, and the next request answered normally."""
    import requests

    answer = requests.post(f"{emulator.url}/__emulator/faults", json=[fault], timeout=5)
    assert answer.status_code == 422 and "not a fault" in answer.json()["message"]
    assert not emulator.faults and api.get_account().equity == 100_000


def test_a_fault_s_body_may_be_given_as_json(api: AlpacaAPI, emulator: Emulator) -> None:
    """Alpaca's error bodies are JSON objects; one given so is sent as that JSON, and read by the adapter."""
    import requests

    body: dict[str, Any] = {"code": 40310000, "message": "insufficient balance for USD"}
    queued = requests.post(f"{emulator.url}/__emulator/faults", timeout=5,
                           json=[{"status": 403, "body": body, "path_prefix": "/v2/account"}])  # fmt: skip
    assert queued.status_code == 200
    with pytest.raises(BrokerError) as caught:
        api.get_account()
    assert caught.value.status == 403 and caught.value.code == 40310000

DATA_429 = '{"message":"too many requests"}'


def _data_requests(emulator: Emulator, since: int) -> list[str]:
    return [r.path for r in emulator.requests[since:] if r.path.startswith(("/v2/stocks", "/v1beta3", "/v1beta1"))]


def test_a_data_429_holds_data_reads_until_its_retry_after_and_only_them(
    api: AlpacaAPI, emulator: Emulator, clock: ManualClock
) -> None:
    """The market-data API has its own budget (reference §7), and its 429 says when to ask again. Its answers'
    headers were not read at all: every tick asked again, each refusal one more failure towards api_failure_halt, so
    a `data fetch` beside the engine on the Basic plan halted it within seconds. A hold on the data host holds data
    reads only, each held request says it was held (`held`: the engine counts the hold once), and ends on time."""
    emulator.faults.append(Fault(status=429, body=DATA_429, path_prefix="/v2/stocks", headers={"Retry-After": "60"}))
    sent = len(emulator.requests)
    with pytest.raises(BrokerError) as caught:
        api.get_stock_quotes(["AAPL"])
    assert (caught.value.status, caught.value.held) == (429, False)  # the server's refusal: a failure
    clock.advance(30)
    for read in (lambda: api.get_stock_quotes(["AAPL"]), lambda: api.get_crypto_quotes(["BTC/USD"])):
        with pytest.raises(BrokerError) as caught:
            read()
        assert (caught.value.kind, caught.value.status, caught.value.held) == ("rate_limited", None, True)
    assert _data_requests(emulator, sent) == ["/v2/stocks/quotes/latest"]  # one data host, one budget: nothing more sent
    assert api.get_account().equity == 100_000  # the trading API's budget is its own
    clock.advance(31)
    assert "AAPL" in api.get_stock_quotes(["AAPL"])  # the hold's end is honoured


def test_data_rate_limit_headers_tighten_the_data_budget(api: AlpacaAPI, emulator: Emulator, clock: ManualClock) -> None:
    """X-RateLimit-Remaining 0 on a good data answer: the data host is out until X-RateLimit-Reset, so the next data
    read is held back (not sent), while trading reads go on."""
    reset = str(int(clock.now().timestamp()) + 20)
    emulator.faults.append(
        Fault(status=0, path_prefix="/v1beta3", headers={"X-RateLimit-Remaining": "0", "X-RateLimit-Reset": reset})
    )
    assert "BTC/USD" in api.get_crypto_quotes(["BTC/USD"])
    sent = len(emulator.requests)
    with pytest.raises(BrokerError) as caught:
        api.get_stock_quotes(["AAPL"])
    assert caught.value.held and _data_requests(emulator, sent) == []
    api.get_clock()
    clock.advance(21)
    assert "AAPL" in api.get_stock_quotes(["AAPL"])


def test_the_data_budget_is_its_own_bucket(emulator: Emulator, clock: ManualClock) -> None:
    """Data requests spend a bucket of their own (`broker.max_data_requests_per_minute`): spent, data reads are refused
    unsent (our own count, not a server's hold: `held` false), and the trading budget is untouched."""
    api = make_api(emulator, clock, data_per_minute=2)
    api.get_stock_quotes(["AAPL"])
    api.get_crypto_quotes(["BTC/USD"])
    with pytest.raises(BrokerError) as caught:
        api.get_stock_quotes(["AAPL"])
    assert (caught.value.kind, caught.value.held) == ("rate_limited", False) and "data requests" in caught.value.message
    assert api.get_account().equity == 100_000


def test_retry_after_as_an_http_date_holds_until_then(api: AlpacaAPI, emulator: Emulator, clock: ManualClock) -> None:
    """RFC 9110 allows Retry-After as an HTTP date; it was read as no header at all, and the next request was sent."""
    from datetime import timedelta
    from email.utils import format_datetime

    when = format_datetime(clock.now() + timedelta(seconds=40), usegmt=True)
    emulator.faults.append(Fault(status=429, body="{}", path_prefix="/v2/account", headers={"Retry-After": when}))
    with pytest.raises(BrokerError):
        api.get_account()
    sent = len(emulator.requests)
    clock.advance(30)
    with pytest.raises(BrokerError) as caught:
        api.get_clock()
    assert caught.value.held and len(emulator.requests) == sent
    clock.advance(11)
    assert api.get_clock().is_open


def test_an_asset_can_be_delisted_or_stopped_over_http(api: AlpacaAPI, emulator: Emulator) -> None:
    """Every well-formed symbol is an active, tradable asset in the emulator's universe, and `set_asset` was in-process
    only: a user of `python -m engine emulator` could not rehearse the start-up refusal of an unknown or untradable
    symbol. POST /__emulator/asset changes one over HTTP; a change that cannot be made is refused, 422."""
    import requests

    control = f"{emulator.url}/__emulator/asset"
    assert api.get_asset("ZZZZQ") is not None
    assert requests.post(control, json={"symbol": "ZZZZQ", "exists": False}, timeout=5).status_code == 200
    assert api.get_asset("ZZZZQ") is None
    assert requests.post(control, json={"symbol": "AAPL", "tradable": False}, timeout=5).status_code == 200
    asset = api.get_asset("AAPL")
    assert asset is not None and not asset.tradable
    refused: list[dict[str, Any]] = [{"symbol": "AAPL", "tradable": "no"}, {"symbol": "AAPL", "status": "halted"},
                                     {"exists": False}, {"symbol": "AAPL", "listed": False}]  # fmt: skip
    for bad in refused:
        assert requests.post(control, json=bad, timeout=5).status_code == 422


def test_each_quote_endpoint_answers_only_its_own_class(emulator: Emulator) -> None:
    """The emulator quoted any well-formed symbol on either endpoint: BTC/USD on the stock endpoint (Alpaca answers
    400 there) and BTCUSD on the crypto endpoint as if it were a share (about $88). A pair on the stock endpoint is
    malformed (400, Alpaca's `invalid symbol` body), a ticker on the crypto endpoint names no pair (left out)."""
    import requests

    auth = {"APCA-API-KEY-ID": KEY, "APCA-API-SECRET-KEY": SECRET}
    stocks = requests.get(f"{emulator.url}/v2/stocks/quotes/latest", params={"symbols": "AAPL,BTC/USD"},
                          headers=auth, timeout=5)  # fmt: skip
    assert stocks.status_code == 400 and "invalid symbol: BTC/USD" in stocks.json()["message"]
    crypto = requests.get(f"{emulator.url}/v1beta3/crypto/us/latest/quotes", params={"symbols": "BTC/USD,BTCUSD"},
                          headers=auth, timeout=5)  # fmt: skip
    assert crypto.status_code == 200 and set(crypto.json()["quotes"]) == {"BTC/USD"}


def test_once_the_run_is_stopping_no_read_is_asked_and_every_write_still_goes(
    broker: SnapshotBroker, api: AlpacaAPI, emulator: Emulator
) -> None:
    """A SIGTERM with the broker hung: the tick in progress and the summary after it waited out every read, each its
    own timeout (50 to 130 s, past systemd's TimeoutStopSec of 60). Once `stopping` names a reason, no read is sent:
    each fails at once as held (not a failure of the broker's, never api_failure_halt) and of its own kind, and a
    lookup is an error, never "no such order" (read so, an order that did arrive would be sent again). Writes still
    go: the tick's committed order is sent, and a cancel it asked for is asked."""
    request = OrderRequest("AAPL", "buy", "stop-1", qty=1, order_type="limit", limit_price=1.0)
    working = broker.submit_order(request)
    api.stopping = lambda: "SIGTERM"
    sent = len(emulator.requests)
    snap = broker.snapshot(NEEDS)
    assert snap.account is None and snap.positions is None and snap.open_orders is None and snap.quotes == {}
    assert snap.errors and all((e.kind, e.reason, e.held) == ("stopping", "stopping", True) for e in snap.errors)
    assert "the run is stopping (SIGTERM)" in snap.errors[0].message
    with pytest.raises(BrokerError) as caught:
        broker.get_order_by_client_id("stop-1")
    assert caught.value.kind == "stopping"
    assert len(emulator.requests) == sent  # not one read reached the broker
    broker.submit_order(OrderRequest("AAPL", "buy", "stop-2", qty=1))
    broker.cancel_order(working.id)
    assert [r.method for r in emulator.requests[sent:]] == ["POST", "DELETE"]
