"""Broker errors classified by meaning: status, Alpaca's code and its message (sources in engine/brokers/errors.py)."""

from __future__ import annotations

import pytest

from engine.brokers.base import BrokerError
from engine.brokers.errors import classify


@pytest.mark.parametrize(
    ("status", "code", "message", "data_api", "reason"),
    [
        (401, 40110000, "request is not authorized", False, "unauthorized"),
        (403, None, "forbidden.", False, "unauthorized"),  # Alpaca-API #228: wrong key headers
        (403, None, "forbidden.", True, "unauthorized"),  # the data API's answer to bad keys
        (403, None, "subscription does not permit querying recent SIP data", True, "forbidden"),
        (403, 40310000, "insufficient buying power", False, "insufficient_funds"),
        (403, 40310000, "insufficient balance for USD", False, "insufficient_funds"),
        (403, 40310000, "insufficient qty available for order (requested: 1000, available: 0)", False, "insufficient_funds"),
        (403, 40310000, "cost basis must be >= minimal amount of order 10", False, "below_minimum"),  # ccxt #30101
        (422, 42210000, "notional amount must be >= 1.00", False, "below_minimum"),
        (422, 42210000, "potential wash trade detected. use complex orders", False, "wash_trade"),  # alpaca-java #145
        (403, 40310000, "potential wash trade detected. use complex orders", False, "wash_trade"),
        (403, 40310000, "cannot open a long buy while a short sell order is open", False, "wash_trade"),
        (403, 40310000, "account not eligible to trade uncovered option contracts", False, "forbidden"),
        (403, 40310100, "trade denied due to pattern day trading protection", False, "forbidden"),
        (403, 40310000, "account is not allowed to short", False, "forbidden"),
        (403, 40310000, "account is not authorized to trade", False, "forbidden"),  # coded: business, not keys
        (429, 42910000, "rate limit exceeded", False, "rate_limited"),
        (500, 50010000, "internal server error", False, "server_error"),
        (504, None, "HTTP 504 with a non-JSON body", False, "server_error"),
        (404, 40410000, "order not found", False, "not_found"),
        (422, 40010001, "client_order_id must be unique", False, "invalid"),
        (400, None, "invalid symbol: aapl!", True, "invalid"),
        (None, None, "unexpected answer", False, "bad_response"),
    ],
)
def test_classify(status: int | None, code: int | None, message: str, data_api: bool, reason: str) -> None:
    assert classify(status, code, message, data_api=data_api) == reason


def test_broker_errors_carry_a_reason_and_keep_their_kind() -> None:
    assert BrokerError("timeout", "no answer in time").reason == "timeout"
    assert BrokerError("server", "down", status=502).reason == "server_error"
    assert BrokerError("config", "no keys").reason == "config"
    refused = BrokerError("rejected", "cost basis must be >= minimal amount of order 10", status=403, code=40310000)
    assert (refused.kind, refused.reason, refused.code) == ("rejected", "below_minimum", 40310000)
    named_later = BrokerError("rejected", "x", status=422)
    named_later.operation = "submit_order"
    assert str(named_later) == "submit_order: rejected (422): x"


@pytest.mark.parametrize(
    "text",
    [
        "2021-05-10T14:01:04Z",
        "2021-05-10T14:01:04.650275Z",
        "2024-04-25T20:00:00.259610112Z",
        "2025-06-24T14:15:22.123456789-04:00",
    ],
)
def test_raw_times_with_any_fraction_are_read(text: str) -> None:
    from engine.brokers.alpaca import _timestamp

    parsed = _timestamp(text)
    assert parsed is not None and parsed.tzinfo is not None and parsed.year in (2021, 2024, 2025)
