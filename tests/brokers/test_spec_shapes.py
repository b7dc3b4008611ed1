"""Answers Alpaca's own API spec says it sends (trading-api.json as synced in alpacahq/alpaca-mcp-server, version
2.0.1), through the real alpaca-py clients against the emulator on loopback: each one pins a value the spec lists
that the adapter refused, or a request the emulator answered otherwise than the spec says Alpaca does."""

from __future__ import annotations

import pytest

from engine.brokers.alpaca import AlpacaAPI
from engine.brokers.emulator import Emulator, Fault
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
