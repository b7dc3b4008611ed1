"""Answers Alpaca's own API spec says it sends (trading-api.json as synced in alpacahq/alpaca-mcp-server, version
2.0.1), through the real alpaca-py clients against the emulator on loopback: each one pins a value the spec lists
that the adapter refused, or a request the emulator answered otherwise than the spec says Alpaca does."""

from __future__ import annotations

import pytest

from engine.brokers.alpaca import AlpacaAPI
from engine.brokers.emulator import Emulator, Fault

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
