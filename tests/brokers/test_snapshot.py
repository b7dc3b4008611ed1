"""The snapshot's reads (engine/brokers/snapshot.py): what a data read the account's plan does not permit is, and
what any other refusal stays. Through the real alpaca-py clients against the emulator on 127.0.0.1."""

from __future__ import annotations

import pytest

from engine.brokers.base import DataNeeds
from engine.brokers.emulator import Emulator, Fault
from engine.brokers.snapshot import SnapshotBroker
from engine.core.clock import ManualClock
from tests.brokers.conftest import make_api

NEEDS = DataNeeds(stocks=("AAPL",), crypto=("BTC/USD",))


@pytest.mark.parametrize(
    ("path", "message", "denied"),
    [
        ("/v2/stocks", "subscription does not permit querying recent SIP data", True),
        ("/v2/stocks", "access denied", False),
        ("/v1beta3/crypto", "request blocked", False),
    ],
)
def test_only_alpaca_s_plan_wording_is_a_denied_feed(
    emulator: Emulator, clock: ManualClock, path: str, message: str, denied: bool
) -> None:
    """Any data 403 whose words were not the keys' was taken as the plan lacking the feed: never counted, never stale,
    never a halt; a proxy's "access denied" on every crypto quote left the crypto bots blocked and the account armed,
    where it had halted on api_failure_halt. Only Alpaca's "subscription does not permit" is a denied feed; any other
    403 stays a failed read, counted as any."""
    emulator.faults.append(Fault(status=403, body=f'{{"message":"{message}"}}', path_prefix=path))
    snapshot = SnapshotBroker(make_api(emulator, clock), clock).snapshot(NEEDS)
    refused = [e for e in snapshot.errors if e.operation in ("stock_quotes", "crypto_quotes")]
    if denied:
        assert set(snapshot.quotes_denied) == {"AAPL"} and refused == []
    else:
        assert snapshot.quotes_denied == {} and [e.reason for e in refused] == ["forbidden"]
