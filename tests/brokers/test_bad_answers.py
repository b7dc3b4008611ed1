"""Bad broker answers, class by class, through the real alpaca-py clients against the emulator on loopback.

The contract (README "Safety", docs/alpaca.md): an answer the engine cannot read is one BrokerError
(`bad_response`, or the transport's kind), never a value passed on (NaN, infinity, a negative price, a guessed
time zone, a default for a missing flag) and never an exception of another type; the next good answer is read
as usual. Faults edit the emulator's real answers (`Fault.patch` / `Fault.drop`), so each case names one field.
"""

from __future__ import annotations

import json
import uuid
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest

from engine.brokers.alpaca import AlpacaAPI
from engine.brokers.base import BrokerError, DataNeeds, OrderRequest
from engine.brokers.emulator import Emulator, Fault, edited
from engine.brokers.ratelimit import TokenBucket
from engine.brokers.sim.exchange import SimExchange
from engine.core.clock import ManualClock
from tests.brokers.conftest import KEY, SECRET, make_api

ACCOUNT, POSITIONS, ORDERS, CLOCK = "/v2/account", "/v2/positions", "/v2/orders", "/v2/clock"
STOCK_QUOTES, CRYPTO, CHAIN = "/v2/stocks/quotes/latest", "/v1beta3/crypto", "/v1beta1/options"
UNREADABLE_NUMBERS = ["NaN", "inf", "-Infinity", "1e400", "abc", {}, True, False]  # pydantic would read true as 1.0


def read(api: AlpacaAPI, path: str) -> Any:
    """The adapter's call that reads `path`."""
    if path == ACCOUNT:
        return api.get_account()
    if path == POSITIONS:
        return api.get_positions()
    if path == ORDERS:
        return api.get_open_orders()
    if path == CLOCK:
        return api.get_clock()
    if path == STOCK_QUOTES:
        return api.get_stock_quotes(["AAPL", "SPY"])
    if path == CRYPTO:
        return api.get_crypto_quotes(["BTC/USD"])
    return api.get_option_chain("SPY", datetime(2026, 11, 30).date(), datetime(2027, 1, 7).date())


@pytest.fixture
def held(api: AlpacaAPI, exchange: SimExchange) -> AlpacaAPI:
    """An account with a position and a working order, so every list has an item to spoil."""
    exchange.set_position("AAPL", 3, 190.0)
    api.submit_order(OrderRequest("MSFT", "buy", "rest-1", "limit", "day", qty=1, limit_price=1.0))
    return api


def assert_bad(api: AlpacaAPI, emulator: Emulator, path: str, fault: Fault, kind: str = "bad_response") -> BrokerError:
    emulator.faults.append(fault)
    with pytest.raises(BrokerError) as caught:
        read(api, path)
    assert caught.value.kind == kind, caught.value
    assert SECRET not in str(caught.value)
    assert not emulator.faults  # the fault was taken by the request meant
    read(api, path)  # and the next good answer is read: nothing was left broken
    return caught.value


NUMBER_FIELDS = [
    (ACCOUNT, "cash"), (ACCOUNT, "equity"), (ACCOUNT, "last_equity"), (ACCOUNT, "buying_power"),
    (ACCOUNT, "intraday_adjustments"), (ACCOUNT, "non_marginable_buying_power"), (ACCOUNT, "options_buying_power"),
    (POSITIONS, "*.qty"), (POSITIONS, "*.avg_entry_price"), (POSITIONS, "*.current_price"), (POSITIONS, "*.market_value"),
    (POSITIONS, "*.unrealized_pl"),
    (ORDERS, "*.qty"), (ORDERS, "*.filled_qty"), (ORDERS, "*.limit_price"), (ORDERS, "*.filled_avg_price"),
    (STOCK_QUOTES, "quotes.*.bp"), (STOCK_QUOTES, "quotes.*.ap"), (CRYPTO, "quotes.*.bp"), (CRYPTO, "quotes.*.ap"),
    (CHAIN, "snapshots.*.latestQuote.bp"), (CHAIN, "snapshots.*.latestQuote.ap"), (CHAIN, "snapshots.*.greeks.delta"),
    (CHAIN, "snapshots.*.impliedVolatility"),
]  # fmt: skip


@pytest.mark.parametrize("value", UNREADABLE_NUMBERS)
@pytest.mark.parametrize(("path", "field"), NUMBER_FIELDS, ids=[f"{p}:{f}" for p, f in NUMBER_FIELDS])
def test_a_number_that_is_not_a_finite_number_is_a_bad_answer(
    held: AlpacaAPI, emulator: Emulator, path: str, field: str, value: object
) -> None:
    assert_bad(held, emulator, path, Fault(path_prefix=path, method="GET", patch={field: value}))


NEGATIVE = [(POSITIONS, "*.avg_entry_price"), (POSITIONS, "*.current_price"), (ORDERS, "*.qty"), (ORDERS, "*.filled_qty"),
            (ORDERS, "*.limit_price"), (STOCK_QUOTES, "quotes.*.bp"), (STOCK_QUOTES, "quotes.*.ap"), (CRYPTO, "quotes.*.ap"),
            (CHAIN, "snapshots.*.latestQuote.bp"), (CHAIN, "snapshots.*.impliedVolatility")]  # fmt: skip


@pytest.mark.parametrize(("path", "field"), NEGATIVE, ids=[f"{p}:{f}" for p, f in NEGATIVE])
def test_a_negative_price_or_quantity_is_a_bad_answer(held: AlpacaAPI, emulator: Emulator, path: str, field: str) -> None:
    assert_bad(held, emulator, path, Fault(path_prefix=path, method="GET", patch={field: "-5"}))


REQUIRED = [(ACCOUNT, "cash"), (ACCOUNT, "equity"), (ACCOUNT, "trading_blocked"), (ACCOUNT, "account_blocked"),
            (ACCOUNT, "trade_suspended_by_user"), (ACCOUNT, "status"), (POSITIONS, "*.qty"), (POSITIONS, "*.current_price"),
            (POSITIONS, "*.side"), (POSITIONS, "*.asset_class"), (ORDERS, "*.filled_qty"), (ORDERS, "*.symbol"),
            (ORDERS, "*.side"), (ORDERS, "*.asset_class"), (ORDERS, "*.created_at"), (ORDERS, "*.status"),
            (STOCK_QUOTES, "quotes.*.bp"), (STOCK_QUOTES, "quotes.*.t"), (CLOCK, "is_open"), (CLOCK, "next_close")]  # fmt: skip


@pytest.mark.parametrize("how", ["missing", None, ""])
@pytest.mark.parametrize(("path", "field"), REQUIRED, ids=[f"{p}:{f}" for p, f in REQUIRED])
def test_a_required_field_missing_or_null_is_a_bad_answer(
    held: AlpacaAPI, emulator: Emulator, path: str, field: str, how: str | None
) -> None:
    if how == "missing":
        fault = Fault(path_prefix=path, method="GET", drop=[field])
    else:
        fault = Fault(path_prefix=path, method="GET", patch={field: how})
    assert_bad(held, emulator, path, fault)


ENUMS = [(ACCOUNT, "status", "WEIRD"), (POSITIONS, "*.side", "sideways"), (POSITIONS, "*.asset_class", "crypto_perp"),
         (ORDERS, "*.status", "vanished"), (ORDERS, "*.side", "up"), (ORDERS, "*.asset_class", "bonds"),
         (POSITIONS, "*.symbol", "")]  # fmt: skip


@pytest.mark.parametrize(("path", "field", "value"), ENUMS, ids=[f"{p}:{f}={v}" for p, f, v in ENUMS])
def test_an_unknown_enum_value_is_a_bad_answer(held: AlpacaAPI, emulator: Emulator, path: str, field: str, value: str) -> None:
    assert_bad(held, emulator, path, Fault(path_prefix=path, method="GET", patch={field: value}))


TIMES = [(ORDERS, "*.created_at"), (STOCK_QUOTES, "quotes.*.t"), (CRYPTO, "quotes.*.t"), (CHAIN, "snapshots.*.latestQuote.t"),
         (CLOCK, "timestamp"), (CLOCK, "next_open")]  # fmt: skip


@pytest.mark.parametrize(
    "value", ["2026-11-23T10:00:00", "yesterday", "9999-12-31T00:00:00Z"], ids=["no-zone", "junk", "far-future"]
)
@pytest.mark.parametrize(("path", "field"), TIMES, ids=[f"{p}:{f}" for p, f in TIMES])
def test_a_time_without_a_zone_or_unreadable_is_a_bad_answer(
    held: AlpacaAPI, emulator: Emulator, path: str, field: str, value: str
) -> None:
    if value.startswith("9999") and path in (STOCK_QUOTES, CRYPTO, CHAIN):
        pytest.skip("a quote stamped ahead of the clock is read, and judged stale by the engine (facts_builder.fresh_window)")
    assert_bad(held, emulator, path, Fault(path_prefix=path, method="GET", patch={field: value}))


def test_a_long_position_with_a_negative_qty_and_more_filled_than_ordered(held: AlpacaAPI, emulator: Emulator) -> None:
    assert_bad(held, emulator, POSITIONS, Fault(path_prefix=POSITIONS, patch={"*.qty": "-3"}))
    assert_bad(held, emulator, ORDERS, Fault(path_prefix=ORDERS, method="GET", patch={"*.filled_qty": "2"}))


@pytest.mark.parametrize(
    "patch",
    [
        {"*.status": "filled"},  # filled, with filled_qty "0": booked, it would own nothing of the broker's fill
        {"*.status": "partially_filled"},
        {"*.status": "filled", "*.filled_qty": "1", "*.filled_avg_price": None},  # a fill at no price
        # filled, with less filled than ordered: the order ends, and the rest of it is neither owned nor working
        {"*.status": "filled", "*.filled_qty": "0.5", "*.filled_avg_price": "1"},
    ],
)
def test_a_fill_of_nothing_or_at_no_price_is_a_bad_answer(held: AlpacaAPI, emulator: Emulator, patch: dict[str, Any]) -> None:
    assert_bad(held, emulator, ORDERS, Fault(path_prefix=ORDERS, method="GET", patch=patch))


def test_a_notional_order_filled_past_its_amount_is_a_bad_answer(api: AlpacaAPI, emulator: Emulator) -> None:
    api.submit_order(OrderRequest("BTC/USD", "buy", "note-1", "limit", "gtc", notional=50.0, limit_price=1.0))
    fault = Fault(path_prefix=ORDERS, method="GET", patch={"*.status": "filled", "*.filled_qty": "999", "*.filled_avg_price": "60000"})
    error = assert_bad(api, emulator, ORDERS, fault)
    assert "more than its notional" in error.message


def test_the_same_position_or_order_listed_twice_is_a_bad_answer(held: AlpacaAPI, emulator: Emulator) -> None:
    position = next(iter(held.get_positions()))
    assert position.symbol == "AAPL"
    held.submit_order(OrderRequest("SPY", "buy", "rest-2", "limit", "day", qty=1, limit_price=1.0))
    orders = [o.id for o in held.get_open_orders()]
    assert_bad(held, emulator, ORDERS, Fault(path_prefix=ORDERS, method="GET", patch={"1.id": orders[0]}))
    assert_bad(held, emulator, ORDERS, Fault(path_prefix=ORDERS, method="GET", patch={"1.client_order_id": "rest-1"}))
    emulator.exchange.set_position("MSFT", 1, 400.0)
    assert_bad(held, emulator, POSITIONS, Fault(path_prefix=POSITIONS, patch={"*.symbol": "AAPL"}))


def test_a_crossed_or_one_sided_quote_is_passed_on_as_sent(api: AlpacaAPI, emulator: Emulator) -> None:
    """Not unreadable: the engine judges these (entries.usable); the adapter does not hide them."""
    emulator.faults.append(
        Fault(path_prefix=STOCK_QUOTES, patch={"quotes.AAPL.bp": 500.0, "quotes.AAPL.ap": 100.0, "quotes.SPY.bp": 0})
    )
    quotes = api.get_stock_quotes(["AAPL", "SPY"])
    assert (quotes["AAPL"].bid, quotes["AAPL"].ask, quotes["SPY"].bid) == (500.0, 100.0, 0.0)
    assert not quotes["AAPL"].two_sided and not quotes["SPY"].two_sided


HOLIDAY = datetime(2026, 11, 26, 15, 0, tzinfo=timezone.utc)  # Thanksgiving, 10:00 in New York


def test_a_clock_that_says_open_on_a_holiday_is_a_bad_answer(emulator: Emulator, clock: ManualClock) -> None:
    clock.set(HOLIDAY)
    api = make_api(emulator, clock)
    assert api.get_clock().is_open is False  # the emulator keeps the calendar
    close = (HOLIDAY + timedelta(hours=6)).isoformat()
    error = assert_bad(api, emulator, CLOCK, Fault(path_prefix=CLOCK, patch={"is_open": True, "next_close": close}))
    assert "calendar" in error.message


EARLY_CLOSE_DAY = datetime(2026, 11, 27, 15, 0, tzinfo=timezone.utc)  # 10:00 New York; the market closes at 13:00


def test_a_clock_that_closes_later_than_an_early_close_is_a_bad_answer(emulator: Emulator, clock: ManualClock) -> None:
    """Believed, 16:00 would keep every flatten-before-the-close rule waiting past the real close."""
    clock.set(EARLY_CLOSE_DAY)
    api = make_api(emulator, clock)
    assert api.get_clock().next_close == datetime(2026, 11, 27, 18, 0, tzinfo=timezone.utc)
    late = datetime(2026, 11, 27, 21, 0, tzinfo=timezone.utc).isoformat()
    error = assert_bad(api, emulator, CLOCK, Fault(path_prefix=CLOCK, patch={"next_close": late}))
    assert "calendar" in error.message and "closes at" in error.message


def test_a_clock_that_closes_earlier_than_the_calendar_is_believed(emulator: Emulator, clock: ManualClock) -> None:
    """A closure the calendar does not know yet: closing earlier fails closed on its own."""
    clock.set(EARLY_CLOSE_DAY)
    api = make_api(emulator, clock)
    early = datetime(2026, 11, 27, 16, 0, tzinfo=timezone.utc)
    emulator.faults.append(Fault(path_prefix=CLOCK, patch={"next_close": early.isoformat()}))
    assert api.get_clock().next_close == early


def test_a_clock_that_contradicts_itself_is_a_bad_answer(api: AlpacaAPI, emulator: Emulator) -> None:
    assert api.get_clock().is_open
    assert_bad(api, emulator, CLOCK, Fault(path_prefix=CLOCK, patch={"is_open": False}))
    assert_bad(api, emulator, CLOCK, Fault(path_prefix=CLOCK, patch={"next_close": "2000-01-01T00:00:00Z"}))


@pytest.mark.parametrize("path", [CHAIN, STOCK_QUOTES, CRYPTO])
def test_pages_that_never_end_are_a_bad_answer(api: AlpacaAPI, emulator: Emulator, path: str) -> None:
    emulator.faults.append(Fault(path_prefix=path, patch={"next_page_token": "U1BZ"}, times=0))
    with pytest.raises(BrokerError) as caught:
        read(api, path)
    assert caught.value.kind == "bad_response" and "never end" in caught.value.message
    assert len([r for r in emulator.requests if r.path.startswith(path)]) <= 2


def test_pages_with_a_new_token_each_time_stop_at_the_budget(emulator: Emulator, clock: ManualClock) -> None:
    api = AlpacaAPI(KEY, SECRET, paper=True, api_base_url=emulator.url, data_base_url=emulator.url, timeout_seconds=2,
                    bucket=TokenBucket(190, clock), clock=clock, max_requests_per_call=3)  # fmt: skip
    tokens = iter(["QQ==", "Qg==", "Qw==", "RA==", "RQ=="])
    for token in tokens:  # each page points at a page of its own, as a server that pages for ever would
        emulator.faults.append(Fault(path_prefix=CHAIN, patch={"next_page_token": token}))
    with pytest.raises(BrokerError) as caught:
        read(api, CHAIN)
    assert "more than 3 requests" in caught.value.message
    emulator.faults.clear()
    assert read(api, CHAIN)  # the budget is per call


def test_a_body_larger_than_the_limit_is_refused(emulator: Emulator, clock: ManualClock) -> None:
    api = AlpacaAPI(KEY, SECRET, paper=True, api_base_url=emulator.url, data_base_url=emulator.url, timeout_seconds=2,
                    bucket=TokenBucket(190, clock), clock=clock, max_body_bytes=100_000)  # fmt: skip
    body = '{"pad": "' + "x" * 200_000 + '"}'
    emulator.faults.append(Fault(status=200, body=body, path_prefix=ACCOUNT))
    with pytest.raises(BrokerError) as caught:
        api.get_account()
    assert caught.value.kind == "bad_response" and "bytes" in caught.value.message
    assert api.get_account().equity == 100_000


@pytest.mark.parametrize(
    "body",
    ['{"code": NaN, "message": "x"}', '{"code": 1e400, "message": "x"}', '{"code": "40010000", "message": ["a"]}', "[1, 2]",
     "<html><body>502 Bad Gateway</body></html>", ""],
)  # fmt: skip
def test_an_error_body_we_cannot_read_is_still_one_typed_error(api: AlpacaAPI, emulator: Emulator, body: str) -> None:
    emulator.faults.append(Fault(status=500, body=body, path_prefix=ACCOUNT))
    with pytest.raises(BrokerError) as caught:
        api.get_account()
    assert (caught.value.kind, caught.value.status, caught.value.code) == ("server", 500, None)


def test_a_dropped_connection_is_a_connection_error(api: AlpacaAPI, emulator: Emulator) -> None:
    assert_bad(api, emulator, ACCOUNT, Fault(disconnect=True, path_prefix=ACCOUNT), kind="connection")
    emulator.faults.append(Fault(disconnect=True, after=True, path_prefix=ORDERS, method="POST"))
    with pytest.raises(BrokerError) as caught:
        api.submit_order(OrderRequest("AAPL", "buy", "dropped-1", qty=1))
    assert caught.value.kind == "connection"
    assert api.get_order_by_client_id("dropped-1") is not None  # it landed: the lookup, never a blind re-POST, says so


@pytest.mark.parametrize("status", [301, 302, 304, 307])
def test_a_redirect_is_not_an_answer(held: AlpacaAPI, emulator: Emulator, status: int) -> None:
    """alpaca-py follows no redirect and raises only from 400 up: a 3xx with an empty body was a cancel the broker
    took (DELETE answers 204 with no body), and one with a JSON body would be read as the answer."""
    order_id = held.get_open_orders()[0].id
    emulator.faults.append(Fault(status=status, body="", path_prefix=f"{ORDERS}/{order_id}", method="DELETE"))
    with pytest.raises(BrokerError) as caught:
        held.cancel_order(order_id)
    assert caught.value.kind == "bad_response" and caught.value.status == status
    account = held.get_account()
    body = json.dumps({"id": str(uuid.uuid4()), "account_number": "PA1", "status": "ACTIVE", "currency": "USD", "cash": "1.00"})
    assert_bad(held, emulator, ACCOUNT, Fault(status=status, body=body, path_prefix=ACCOUNT))
    assert held.get_account().cash == account.cash
    assert [o.id for o in held.get_open_orders()] == [order_id]  # the order was never cancelled


@pytest.mark.parametrize("reset", ["32503680000", "99999999999999999999", "-5", "soon"])
def test_a_rate_limit_reset_we_cannot_believe_holds_back_a_minute_at_most(
    api: AlpacaAPI, emulator: Emulator, clock: ManualClock, reset: str
) -> None:
    emulator.faults.append(
        Fault(status=0, path_prefix=ACCOUNT, headers={"X-RateLimit-Remaining": "0", "X-RateLimit-Reset": reset})
    )
    assert api.get_account().equity == 100_000  # a good answer with odd headers is still a good answer
    clock.advance(61)
    assert api.get_account().equity == 100_000  # and the engine can always ask again


@pytest.mark.parametrize("wait", ["99999999999999999999", "1e300", "-5", "inf", "Wed, 21 Oct 2015 07:28:00 GMT"])
def test_a_retry_after_we_cannot_believe_holds_back_a_minute_at_most(
    api: AlpacaAPI, emulator: Emulator, clock: ManualClock, wait: str
) -> None:
    """A 429 is a rate limit whatever its Retry-After says: a wait past any date was an OverflowError, read as a
    bad answer, and so a system halt for global_cooldown_minutes instead of a minute's wait at most."""
    emulator.faults.append(Fault(status=0, path_prefix=ACCOUNT, headers={"Retry-After": wait}))
    assert api.get_account().equity == 100_000  # a good answer with an odd header is still a good answer
    clock.advance(61)
    emulator.faults.append(Fault(status=429, body='{"code":42910000,"message":"rate limit exceeded"}', path_prefix=ACCOUNT,
                                 headers={"Retry-After": wait}))  # fmt: skip
    with pytest.raises(BrokerError) as caught:
        api.get_account()
    assert (caught.value.kind, caught.value.reason) == ("rate_limited", "rate_limited")
    clock.advance(61)
    assert api.get_account().equity == 100_000  # and the engine can always ask again


def test_retry_after_holds_trading_requests_back_until_then(api: AlpacaAPI, emulator: Emulator, clock: ManualClock) -> None:
    emulator.faults.append(Fault(status=429, body="{}", path_prefix=ACCOUNT, headers={"Retry-After": "30"}))
    with pytest.raises(BrokerError):
        api.get_account()
    sent = len(emulator.requests)
    with pytest.raises(BrokerError) as caught:
        api.get_clock()
    assert caught.value.kind == "rate_limited" and len(emulator.requests) == sent  # not sent: the server asked us to wait
    clock.advance(31)
    assert api.get_clock().is_open


def test_a_snapshot_with_one_bad_answer_records_it_and_keeps_the_others(broker: Any, emulator: Emulator) -> None:
    emulator.faults.append(Fault(path_prefix=ACCOUNT, patch={"equity": "NaN"}))
    snap = broker.snapshot(DataNeeds(stocks=("AAPL",)))
    assert snap.account is None and snap.positions == () and "AAPL" in snap.quotes
    assert [(e.operation, e.kind) for e in snap.errors] == [("account", "bad_response")]


def test_the_emulator_edits_real_answers() -> None:
    answer: dict[str, Any] = {"quotes": {"A": {"bp": 1, "ap": 2}, "B": {"bp": 3, "ap": 4}}, "list": [{"x": 1}, {"x": 2}]}
    out = edited(answer, {"quotes.*.bp": "NaN", "list.1.x": None, "new": 1}, ["quotes.B.ap", "list.0.x", "absent.path"])
    assert out == {"quotes": {"A": {"bp": "NaN", "ap": 2}, "B": {"bp": "NaN"}}, "list": [{}, {"x": None}], "new": 1}
    assert answer["quotes"]["A"]["bp"] == 1  # a copy
