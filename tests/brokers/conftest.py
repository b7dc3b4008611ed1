"""The emulator on 127.0.0.1 and the real alpaca-py clients pointed at it: no patched SDK, no network."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timezone

import pytest

from engine.brokers.alpaca import AlpacaAPI
from engine.brokers.emulator import Emulator
from engine.brokers.ratelimit import TokenBucket
from engine.brokers.sim.exchange import SimExchange
from engine.brokers.snapshot import SnapshotBroker
from engine.core.clock import ManualClock

KEY = "PKTESTKEY0123456789"
SECRET = "testsecret0123456789abcdefghijklmnopqrstu"
OPEN = datetime(2026, 11, 23, 15, 0, tzinfo=timezone.utc)  # a Monday, 10:00 in New York


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(OPEN)


@pytest.fixture
def exchange(clock: ManualClock) -> SimExchange:
    return SimExchange(clock, seed=7)


@pytest.fixture
def emulator(exchange: SimExchange) -> Iterator[Emulator]:
    with Emulator(exchange, key=KEY, secret=SECRET) as running:
        yield running


def make_api(
    emulator: Emulator,
    clock: ManualClock,
    *,
    timeout: float = 2.0,
    per_minute: int = 190,
    data_per_minute: int = 190,
    options_feed: str = "indicative",
    feed: str = "iex",
) -> AlpacaAPI:
    return AlpacaAPI(
        KEY,
        SECRET,
        paper=True,
        api_base_url=emulator.url,
        data_base_url=emulator.url,
        timeout_seconds=timeout,
        bucket=TokenBucket(per_minute, clock),
        data_bucket=TokenBucket(data_per_minute, clock),
        feed=feed,
        options_feed=options_feed,
        clock=clock,
    )


@pytest.fixture
def api(emulator: Emulator, clock: ManualClock) -> AlpacaAPI:
    return make_api(emulator, clock)


@pytest.fixture
def broker(api: AlpacaAPI, clock: ManualClock) -> SnapshotBroker:
    return SnapshotBroker(api, clock)
