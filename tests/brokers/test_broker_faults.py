"""Broker faults and unusual answers found by the hunt of hunt_brk, through the real alpaca-py clients against the
emulator on loopback (and the engine's own order path over real SQLite where the engine's decision is the point).

Each test names the answer, what the engine made of it, and what it must make of it instead."""

from __future__ import annotations

import dataclasses

import pytest

from engine.brokers.alpaca import AlpacaAPI
from engine.brokers.base import BrokerError, OrderRequest
from engine.brokers.emulator import Emulator, Fault
from tests.brokers.conftest import KEY, SECRET
from tests.brokers.test_hostile_lifecycle import Desk, desk  # noqa: F401  # the fixture, used by name

ORDERS, LOOKUP = "/v2/orders", "/v2/orders:by_client_order_id"
NOT_ALPACAS_404 = [
    Fault(status=404, body="<html><body><h1>404 Not Found</h1></body></html>", content_type="text/html"),
    Fault(status=404, body=""),
    Fault(status=404, body='{"message":"Not Found"}'),
    # a code, but not one of Alpaca's for a 404 (its codes begin with the HTTP status: 40410000); answerfuzz seed 1192
    Fault(status=404, body='{"code": 1}'),
    Fault(status=404, body='{"code": 42210000, "message": "order is not cancelable"}'),
]


@pytest.mark.parametrize("fault", NOT_ALPACAS_404, ids=["html", "empty", "no-code", "odd-code", "another-status-code"])
def test_a_404_that_is_not_alpacas_answer_is_not_a_missing_order(api: AlpacaAPI, emulator: Emulator, fault: Fault) -> None:
    """Alpaca answers a lookup of an order it does not have 404 with its own error body ({"code":40410000,...}). A
    404 without it (a proxy's page, an empty body) is not the broker saying the order does not exist: read as
    "not found", an order whose POST answer was lost was concluded never sent, and its bot entered again."""
    api.submit_order(OrderRequest("AAPL", "buy", "rest-1", "limit", "day", qty=1, limit_price=1.0))
    emulator.faults.append(Fault(**{**fault.__dict__, "path_prefix": LOOKUP}))
    with pytest.raises(BrokerError) as caught:
        api.get_order_by_client_id("rest-1")
    assert caught.value.kind == "bad_response" and caught.value.status == 404
    assert SECRET not in str(caught.value)
    assert api.get_order_by_client_id("nobody-1") is None  # Alpaca's own 404 is still "no such order"
    emulator.faults.append(Fault(**{**fault.__dict__, "path_prefix": "/v2/assets"}))
    with pytest.raises(BrokerError):
        api.get_asset("AAPL")


def test_a_foreign_404_quoting_the_keys_across_its_cut_keeps_no_part_of_them(api: AlpacaAPI, emulator: Emulator) -> None:
    """The message of a 404 that is not Alpaca's is quoted to 80 characters: a gateway's that quotes the request's
    key headers there, cut before masking, kept the first characters of a key straddling the cut, unmasked."""
    said = "x" * 70 + f" {KEY} {SECRET}"  # the key straddles character 80
    emulator.faults.append(Fault(status=404, body=f'{{"message": "{said}"}}', path_prefix=LOOKUP))
    with pytest.raises(BrokerError) as caught:
        api.get_order_by_client_id("rest-1")
    assert caught.value.status == 404 and "x" * 70 + " ***" in caught.value.message, caught.value.message
    assert KEY[:5] not in str(caught.value) and SECRET[:5] not in str(caught.value)


def test_an_order_whose_answer_was_lost_and_whose_lookups_meet_a_foreign_404_is_never_concluded_unsent(desk: Desk) -> None:  # noqa: F811
    """The POST's answer is lost after the broker took the order (a gateway timeout), the order fills at once (so it
    is never in the open-order list), and every lookup meets a 404 that is not Alpaca's. The order must stay
    `unknown` (looked up every tick), never `not_sent`: a bot whose entry ended `not_sent` may enter again."""
    desk.emulator.faults.append(Fault(status=504, body="<html>Gateway Timeout</html>", content_type="text/html",
                                      path_prefix=ORDERS, method="POST", after=True))  # fmt: skip
    desk.emulator.faults.append(Fault(status=404, body="<html>Not Found</html>", content_type="text/html",
                                      path_prefix=LOOKUP, times=0))  # fmt: skip
    day = desk.clock.now().date()
    request = OrderRequest("AAPL", "buy", desk.orders.next_client_order_id("b1", day), "limit", "day", qty=1,
                           limit_price=10_000.0)  # fmt: skip
    with desk.store.transaction():
        row = desk.orders.record_intent("b1", day, "entry", request, "test")
    desk.orders.send_pending()
    for _ in range(20):  # 100 s: past the minute after which an unfound order is concluded unsent
        desk.tick()
    assert desk.exchange.by_client_id.get(row.client_order_id)  # the broker has it
    stored = desk.store.order(row.client_order_id)
    assert stored is not None and stored.status == "unknown"
    assert {f.kind for f in desk.failures} >= {"bad_response"}


# --- numbers spelt in ways no JSON writer spells them -----------------------------------------------------------

ODD_SPELLINGS = [
    ("/v2/account", "buying_power", "99_429"),  # Python's float() reads digit separators: 99429
    ("/v2/account", "buying_power", "\u0669\u0669"),  # Arabic-Indic digits: float() reads 99
    ("/v2/account", "buying_power", "\uff19\uff19\uff14\uff12\uff19"),  # full-width digits: 99429
    ("/v2/account", "buying_power", " 99429 "),
    ("/v2/orders", "*.filled_qty", "0_0"),
    ("/v2/positions", "*.unrealized_pl", "0_0"),
    ("/v2/stocks/quotes/latest", "quotes.*.bp", "1_0"),  # pydantic reads it too: a bid of 10
    ("/v1beta3/crypto", "quotes.*.bp", "1_0"),
    ("/v1beta1/options", "snapshots.*.latestQuote.bp", "1_0"),
    ("/v1beta1/options", "snapshots.*.greeks.theta", "-0_1"),
]


@pytest.mark.parametrize(("path", "field", "value"), ODD_SPELLINGS, ids=[f"{p}:{f}:{v!r}" for p, f, v in ODD_SPELLINGS])
def test_a_number_in_a_spelling_no_json_writer_uses_is_a_bad_answer(
    api: AlpacaAPI, emulator: Emulator, path: str, field: str, value: str
) -> None:
    """Alpaca writes numbers as JSON numbers or plain decimal strings ("99429", "0.00005", "-5"). Python's float()
    and pydantic also read "1_0" as 10, Arabic-Indic or full-width digits as digits, and padding: a spelling no
    writer of JSON produces is a corrupted answer, and its number a guess."""
    from datetime import date

    exchange = emulator.exchange
    exchange.set_position("AAPL", 3, 190.0)
    api.submit_order(OrderRequest("MSFT", "buy", "rest-1", "limit", "day", qty=1, limit_price=1.0))
    reads = {
        "/v2/account": api.get_account,
        "/v2/orders": api.get_open_orders,
        "/v2/positions": api.get_positions,
        "/v2/stocks/quotes/latest": lambda: api.get_stock_quotes(["AAPL", "SPY"]),
        "/v1beta3/crypto": lambda: api.get_crypto_quotes(["BTC/USD"]),
        "/v1beta1/options": lambda: api.get_option_chain("SPY", date(2026, 11, 30), date(2027, 1, 7)),
    }
    emulator.faults.append(Fault(path_prefix=path, method="GET", patch={field: value}))
    with pytest.raises(BrokerError) as caught:
        reads[path]()
    assert caught.value.kind == "bad_response", caught.value
    reads[path]()  # the next good answer reads as usual


# --- the account: fields the engine never reads ----------------------------------------------------------------

UNREAD_ACCOUNT_FIELDS: dict[str, object] = {
    "sma": 0,  # a JSON number: alpaca-py's TradeAccount types every money field as text
    "accrued_fees": 0.0,
    "created_at": "2024-01-02",
    "id": "PA0EMULATOR1",  # not a UUID
    "daytrade_count": None,  # deprecated since 2026-04-27 (trading-api.json)
    "pattern_day_trader": None,
    "multiplier": 1,
    "new_field": {"nested": [1, 2]},
}


def test_an_account_with_values_the_sdk_does_not_know_in_unread_fields_is_read(api: AlpacaAPI, emulator: Emulator) -> None:
    """alpaca-py's TradeAccount validates fields the engine never reads (`sma` as text, `created_at` as a time,
    `id` as a UUID, the deprecated day-trade fields); one value it does not take made every account answer
    unreadable, and the engine halt every tick for ever, as positions and orders did before they were read raw.
    The id is read only for the run's start (which account a state file holds): one that is not a UUID, or none,
    is left unknown there (the start refuses), never an unreadable account."""
    expected = api.get_account()
    assert expected.account_id == emulator.account_id
    unknown_id = dataclasses.replace(expected, account_id=None)
    emulator.faults.append(Fault(path_prefix="/v2/account", method="GET", patch=UNREAD_ACCOUNT_FIELDS))
    assert api.get_account() == unknown_id
    emulator.faults.append(Fault(path_prefix="/v2/account", method="GET", drop=["id", "account_number", "created_at"]))
    assert api.get_account() == unknown_id
    emulator.faults.append(
        Fault(path_prefix="/v2/account", method="GET", patch={"cash": expected.cash, "buying_power": expected.buying_power})
    )
    assert api.get_account() == expected  # money as JSON numbers, as positions may send them


@pytest.mark.parametrize(
    ("patch", "said"),
    [({"status": 1}, "status"), ({"crypto_status": ["ACTIVE"]}, "crypto_status"), ({"crypto_status": "WEIRD"}, "crypto_status"), ({"options_trading_level": "2.5"}, "options_trading_level"),
     ({"options_approved_level": -1}, "options_approved_level"), ({"options_trading_level": "high"}, "options_trading_level"),
     # the effective level is the least of the approved one and the owner's cap: never above what was approved
     ({"options_approved_level": 1, "options_trading_level": 3}, "above options_approved_level 1")],
)  # fmt: skip
def test_an_account_field_the_engine_reads_is_still_checked(
    api: AlpacaAPI, emulator: Emulator, patch: dict[str, object], said: str
) -> None:
    emulator.faults.append(Fault(path_prefix="/v2/account", method="GET", patch=patch))
    with pytest.raises(BrokerError) as caught:
        api.get_account()
    assert caught.value.kind == "bad_response" and said in caught.value.message


# --- times at the ends of the calendar --------------------------------------------------------------------------

EDGE_TIMES = ["0001-01-01T00:00:00+05:00", "9999-12-31T23:59:59-05:00"]


@pytest.mark.parametrize("stamp", EDGE_TIMES)
def test_a_time_that_cannot_be_told_in_utc_is_a_bad_answer(api: AlpacaAPI, emulator: Emulator, stamp: str) -> None:
    """A quote stamped in year 1 east of UTC (year 0 in UTC) was read, then judged stale; converting it raised
    OverflowError wherever it was told in UTC (the recorder's file, whose writes stopped for the rest of the run).
    Refused where the answer is read, as any time that cannot be a time."""
    emulator.faults.append(Fault(path_prefix="/v2/stocks/quotes/latest", method="GET", patch={"quotes.*.t": stamp}))
    with pytest.raises(BrokerError) as caught:
        api.get_stock_quotes(["AAPL", "SPY"])
    assert caught.value.kind == "bad_response", caught.value
    assert "cannot be told in UTC" in caught.value.message
    api.submit_order(OrderRequest("MSFT", "buy", "edge-1", "limit", "day", qty=1, limit_price=1.0))
    emulator.faults.append(Fault(path_prefix="/v2/orders", method="GET", patch={"*.created_at": stamp}))
    with pytest.raises(BrokerError) as caught:
        api.get_open_orders()
    assert caught.value.kind == "bad_response", caught.value
    assert api.get_stock_quotes(["AAPL"])["AAPL"].timestamp.year == 2026  # the next good answer reads as usual


def test_an_error_body_nested_past_the_recursion_limit_is_a_broker_error(api: AlpacaAPI, emulator: Emulator) -> None:
    """json.loads raises RecursionError, not ValueError, for a body of 100,000 '[': reading the error's code from
    it raised out of the adapter's error mapping, a traceback instead of a failed read."""
    emulator.faults.append(Fault(status=500, body="[" * 100_000, path_prefix="/v2/account"))
    with pytest.raises(BrokerError) as caught:
        api.get_account()
    assert caught.value.kind == "server", caught.value


# Values of an answer quoted in an error are shown cut to 40 characters; each of these puts both keys across the
# cut (the value's repr is cut at 37), in a field the adapter quotes when it refuses the answer.
STRADDLING = "x" * 30 + KEY + SECRET
QUOTED_FIELDS = [
    ("/v2/account", {"currency": STRADDLING}, lambda api: api.get_account()),
    ("/v2/account", {"status": STRADDLING}, lambda api: api.get_account()),
    ("/v2/account", {"crypto_status": STRADDLING}, lambda api: api.get_account()),
]


@pytest.mark.parametrize(("path", "patch", "call"), QUOTED_FIELDS, ids=["currency", "status", "crypto_status"])
def test_a_quoted_value_holding_the_keys_across_its_cut_keeps_no_part_of_them(
    api: AlpacaAPI, emulator: Emulator, path: str, patch: dict, call: object
) -> None:
    """A value quoted in an error is cut to 40 characters. Cut before the keys were masked, a key straddling the
    cut kept its first characters, which no mask then found ('xxx...PKTEST...' in the error and the log)."""
    emulator.faults.append(Fault(patch=patch, path_prefix=path))
    with pytest.raises(BrokerError) as caught:
        call(api)  # type: ignore[operator]
    said = str(caught.value)
    assert caught.value.kind == "bad_response" and "x" * 10 in said, said
    assert KEY[:3] not in said and SECRET[:4] not in said, said
    assert "\x1e" not in said and "\x1f" not in said and len(caught.value.message) <= 300, said


def test_an_order_id_that_is_no_uuid_is_quoted_cut_and_masked(api: AlpacaAPI, emulator: Emulator) -> None:
    """An order id from the state file that is not a UUID is refused before anything is sent, the id quoted: cut,
    and without the marks that tell the scrubber where the quote is."""
    with pytest.raises(BrokerError) as caught:
        api.get_order("y" * 33 + KEY)  # cut at 37 before masking: 'yyy...PKT'; masked first: 'yyy...***'
    said = str(caught.value)
    assert caught.value.message.startswith("not sent: the order id 'yyy") and "***" in said, said
    assert KEY[:3] not in said and KEY[:3] not in repr(caught.value) and "\x1e" not in said and "\x1f" not in said, said
    assert not [r for r in emulator.requests if r.path.startswith("/v2/orders")]
