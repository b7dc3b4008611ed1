"""HTTP faults a real API, a proxy or a network gives, through the real alpaca-py clients against the emulator on
loopback (and the engine's own order path over real SQLite where what the engine does next is the point).

The contract (README "Safety", docs/alpaca.md): each fault ends as one BrokerError, in bounded time, that the
engine halts on; never a value read one way of two, a traceback, a hang, or an order POSTed twice. Cases here are
the ones the other files leave out: JSON that two readers read two ways (a key given twice, NaN), a 2xx that is not
said to be JSON, a body slower than the timeout, a connection closed mid-body.
"""

from __future__ import annotations

import dataclasses
import json
import time
from datetime import date
from typing import Any

import pytest
import requests

from engine.brokers.alpaca import AlpacaAPI
from engine.brokers.base import BrokerError, OrderRequest
from engine.brokers.emulator import Emulator, Fault
from engine.brokers.sim.exchange import SimExchange
from engine.core.clock import ManualClock
from tests.brokers.conftest import KEY, SECRET, make_api
from tests.brokers.test_bad_answers import read  # the adapter's call that reads a path
from tests.brokers.test_hostile_lifecycle import Desk, desk  # noqa: F401  # the fixture, used by name

ACCOUNT, POSITIONS, ORDERS, STOCK_QUOTES = "/v2/account", "/v2/positions", "/v2/orders", "/v2/stocks/quotes/latest"
CHAIN = "/v1beta1/options/snapshots/SPY"
FIRST, LAST = date(2026, 11, 30), date(2027, 1, 7)  # the chain's expiries asked for


def wire(emulator: Emulator, path: str, params: dict[str, str] | None = None) -> str:
    """The emulator's real answer to `path`, as the text on the wire."""
    headers = {"APCA-API-KEY-ID": KEY, "APCA-API-SECRET-KEY": SECRET}
    answer = requests.get(emulator.url + path, params=params, headers=headers, timeout=5)
    assert answer.status_code == 200, answer.text
    return answer.text


def twice(text: str, key: str, first: Any) -> str:
    """`text` with `key` given twice in its first object that has it: `first`, then the value it had (which Python's
    json, and Go's, keep)."""
    spelt = f'"{key}": '
    assert spelt in text, (key, text[:200])
    return text.replace(spelt, f"{spelt}{json.dumps(first)}, {spelt}", 1)


def refused(api: AlpacaAPI, emulator: Emulator, path: str, fault: Fault, kind: str = "bad_response") -> BrokerError:
    """The fault's answer is one BrokerError of `kind`, and the next good answer reads as usual."""
    emulator.faults.append(fault)
    with pytest.raises(BrokerError) as caught:
        read(api, path)
    assert caught.value.kind == kind, caught.value
    assert SECRET not in str(caught.value) and KEY not in str(caught.value)
    read(api, path)
    return caught.value


@pytest.fixture
def held(api: AlpacaAPI, exchange: SimExchange) -> AlpacaAPI:
    """A position and a working order, so the lists have an item to spoil."""
    exchange.set_position("AAPL", 3, 190.0)
    api.submit_order(OrderRequest("MSFT", "buy", "rest-1", "limit", "day", qty=1, limit_price=1.0))
    return api


# --- JSON that two readers read two ways -------------------------------------------------------------------------

CHAIN_QUERY = {"feed": "indicative", "limit": "1000", "expiration_date_gte": str(FIRST), "expiration_date_lte": str(LAST)}
TWICE = [
    # Python keeps the last value: trading blocked, then not, was read as not blocked
    (ACCOUNT, None, "trading_blocked", True),
    (POSITIONS, None, "side", "short"),  # a long read as a long, a short as whatever came last
    (ORDERS, {"status": "open"}, "status", "canceled"),
    (ORDERS, {"status": "open"}, "filled_qty", "1"),
    (STOCK_QUOTES, {"symbols": "AAPL,SPY", "feed": "iex"}, "AAPL", {"t": "2026-11-23T15:00:00Z", "bp": 1.0, "bs": 1,
                                                                     "ap": 1.01, "as": 1}),  # two quotes for one symbol
    (CHAIN, CHAIN_QUERY, "delta", -0.5),
]  # fmt: skip


@pytest.mark.parametrize(("path", "params", "key", "first"), TWICE, ids=[f"{p}:{k}" for p, _, k, _ in TWICE])
def test_a_key_given_twice_in_one_object_is_a_bad_answer(
    held: AlpacaAPI, emulator: Emulator, path: str, params: dict[str, str] | None, key: str, first: Any
) -> None:
    """A key twice in one object has two values, and which one a reader keeps is the reader's choice (Python's json
    and Go's the last, others the first, strict ones refuse): `"trading_blocked": true, "trading_blocked": false`
    was read as an account free to trade. Not a value to choose from: the whole answer is unreadable."""
    body = twice(wire(emulator, path, params), key, first)
    error = refused(held, emulator, path, Fault(status=200, body=body, path_prefix=path.split("?")[0]))
    assert f"the key '{key}' is given twice" in error.message


UNREAD = [(ACCOUNT, None, "sma"), (STOCK_QUOTES, {"symbols": "AAPL,SPY", "feed": "iex"}, "bs")]  # fields the engine never reads


@pytest.mark.parametrize("literal", ["NaN", "Infinity", "-Infinity"])
@pytest.mark.parametrize(("path", "params", "key"), UNREAD, ids=[f"{p}:{k}" for p, _, k in UNREAD])
def test_nan_and_infinity_are_no_json_even_where_the_engine_does_not_look(
    held: AlpacaAPI, emulator: Emulator, path: str, params: dict[str, str] | None, key: str, literal: str
) -> None:
    """RFC 8259 has no NaN or Infinity (Alpaca's Go servers cannot write them), though Python's json reads them.
    Fields the engine reads already refuse a number that is not finite; a body that holds one anywhere is not
    the API's JSON, and is refused whole, not read around."""
    text = wire(emulator, path, params)
    start = text.index(f'"{key}": ') + len(f'"{key}": ')
    end = min(i for i in (text.find(",", start), text.find("}", start)) if i != -1)
    error = refused(held, emulator, path, Fault(status=200, body=text[:start] + literal + text[end:], path_prefix=path))
    assert f"{literal} is not a JSON number" in error.message


@pytest.mark.parametrize("content_type", ["text/html", "text/plain; charset=utf-8", "application/octet-stream", ""])
def test_a_2xx_answer_not_said_to_be_json_is_a_bad_answer(api: AlpacaAPI, emulator: Emulator, content_type: str) -> None:
    """Alpaca says its answers are application/json. A 200 said to be a web page, text or bytes is someone else's
    answer (a proxy's, a captive portal's), even when its body parses: it was read as the account, its text decoded
    as requests guesses (Latin-1 for text/*, a charset detector's guess for the rest)."""
    body = wire(emulator, ACCOUNT)
    error = refused(api, emulator, ACCOUNT, Fault(status=200, body=body, content_type=content_type, path_prefix=ACCOUNT))
    assert "not JSON" in error.message


@pytest.mark.parametrize("content_type", ["application/json; charset=utf-8", "Application/JSON", "application/problem+json"])
def test_json_said_in_any_of_its_spellings_is_read(api: AlpacaAPI, emulator: Emulator, content_type: str) -> None:
    """The check is of the media type, not of one spelling of the header."""
    emulator.faults.append(Fault(status=200, body=wire(emulator, ACCOUNT), content_type=content_type, path_prefix=ACCOUNT))
    assert api.get_account().equity == 100_000


# --- bodies that arrive slowly, or not whole ---------------------------------------------------------------------


def test_a_body_slower_than_the_timeout_ends_at_the_deadline_not_when_it_has_all_come(
    emulator: Emulator, clock: ManualClock
) -> None:
    """Each piece of the body comes within the read timeout, the whole of it long after. Read by requests'
    iter_content (which waits for a 64 KB chunk to fill), the call lasted until the last byte came: an account of
    1 KB at 8 bytes every 50 ms held the tick for 6 s against a timeout of 0.2 s (a chain page, for hours). It
    ends at twice the timeout, as a timeout, and the next call reads as usual."""
    api = make_api(emulator, clock, timeout=0.2)
    assert len(wire(emulator, ACCOUNT)) > 900  # 110 pieces and more: 5.5 s and more on the wire
    emulator.faults.append(Fault(status=0, trickle_seconds=0.05, trickle_bytes=8, path_prefix=ACCOUNT))
    started = time.monotonic()
    with pytest.raises(BrokerError) as caught:
        api.get_account()
    assert caught.value.kind == "timeout", caught.value
    assert time.monotonic() - started < 2.0
    assert api.get_account().equity == 100_000


def test_a_body_that_trickles_within_the_deadline_is_read(api: AlpacaAPI, emulator: Emulator) -> None:
    """Read as it arrives, a body in many small pieces is the same body."""
    emulator.faults.append(Fault(status=0, trickle_seconds=0.001, trickle_bytes=64, path_prefix=ACCOUNT))
    assert api.get_account().equity == 100_000


@pytest.mark.parametrize("path", [ACCOUNT, STOCK_QUOTES])
def test_headers_slower_than_the_timeout_end_at_the_same_deadline_as_the_body(
    emulator: Emulator, clock: ManualClock, path: str
) -> None:
    """A server that sends its headers a line at a time, each line within the read timeout: the read timeout bounds
    each line, not the answer, and the body's deadline only began once the headers were in, so 90 lines at 10 ms
    held the call for a second against a timeout of 0.1 s (100 lines at just under Alpaca's 10 s timeout: more than
    16 minutes). The whole answer, headers and body, ends at twice the timeout, as a timeout, on the trading and
    the data API alike; the next call reads as usual."""
    api = make_api(emulator, clock, timeout=0.1)
    emulator.faults.append(Fault(status=0, header_seconds=0.01, header_lines=90, path_prefix=path))
    started = time.monotonic()
    with pytest.raises(BrokerError) as caught:
        read(api, path)
    assert time.monotonic() - started < 0.5  # the deadline is 0.2 s after the request; the headers take 0.9 s
    assert (caught.value.kind, caught.value.message) == ("timeout", "the answer was still arriving at its deadline")
    assert not emulator.faults
    read(api, path)


def test_headers_that_come_slowly_within_the_deadline_are_read(api: AlpacaAPI, emulator: Emulator) -> None:
    """A line at a time, all of them well within the deadline: the same answer."""
    emulator.faults.append(Fault(status=0, header_seconds=0.002, header_lines=5, path_prefix=ACCOUNT))
    assert api.get_account().equity == 100_000
    assert not emulator.faults


@pytest.mark.parametrize("cut_at", [0, 40])
def test_a_connection_closed_mid_body_is_a_connection_error(api: AlpacaAPI, emulator: Emulator, cut_at: int) -> None:
    """The headers promise more bytes than come before the connection closes: never half a body parsed."""
    refused(api, emulator, ACCOUNT, Fault(status=0, cut_at=cut_at, path_prefix=ACCOUNT), kind="connection")


# --- the order path: whatever the answer to our POST, one order ---------------------------------------------------

POST_ANSWERS = {
    "cut-mid-body": Fault(status=0, cut_at=60),  # the order placed, its answer lost halfway
    "key-twice": Fault(status=200, body='{"status": "new", "status": "rejected"}', after=True),
    "text-plain": Fault(status=200, body='{"status": "new"}', content_type="text/plain", after=True),
    "422-html": Fault(status=422, body="<html><body>Unprocessable</body></html>", content_type="text/html"),
    "422-empty": Fault(status=422, body=""),
}


@pytest.mark.parametrize("name", list(POST_ANSWERS))
def test_a_post_whose_answer_cannot_be_read_is_never_sent_twice(desk: Desk, name: str) -> None:  # noqa: F811
    """The order is looked up by its client_order_id, never POSTed again: one the broker took is tracked, one it
    did not ends owning nothing; the failure is counted (the health window halts on a run of them)."""
    desk.emulator.faults.append(dataclasses.replace(POST_ANSWERS[name], path_prefix=ORDERS, method="POST"))
    row = desk.intent(qty=1)
    desk.orders.send_pending()
    for _ in range(20):  # 100 s: past the minute an unfound order may take to show up
        desk.tick()
    posts = [r for r in desk.emulator.requests if r.method == "POST" and r.path == ORDERS]
    assert len(posts) == 1
    stored = desk.store.order(row.client_order_id)
    assert stored is not None
    if desk.exchange.by_client_id.get(row.client_order_id):
        assert stored.status == "new" and stored.broker_order_id
    else:
        assert name.startswith("422") and stored.status in ("not_sent", "rejected")
    assert desk.failures
