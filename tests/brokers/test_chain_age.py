"""A cached option chain is reused no longer than the chain rules let its quotes age. Cached for
broker.option_chain_cache_seconds (60 by default) whatever chain_rules.max_quote_age_seconds said, a chain read
at 10:00:00 was still the one the bot chose from at 10:00:55: with max_quote_age_seconds 30, every contract in it
was too old for half of each minute, and the bot said no contract had a fresh enough quote, the engine's own
cache being the reason."""

from __future__ import annotations

from datetime import datetime, timezone

from engine.brokers.base import DataNeeds
from engine.brokers.sim.api import SimAPI
from engine.brokers.sim.exchange import SimExchange
from engine.brokers.snapshot import SnapshotBroker
from engine.config.model import BrokerSettings
from engine.core.clock import ManualClock
from engine.trading import fillprice

MONDAY_10AM = datetime(2026, 11, 23, 15, 0, tzinfo=timezone.utc)


def _oldest_quote_age(needs: DataNeeds, wait_s: float) -> float:
    clock = ManualClock(MONDAY_10AM)
    broker = SnapshotBroker(SimAPI(SimExchange(clock)), clock, BrokerSettings())
    assert broker.settings.option_chain_cache_seconds == 60
    broker.snapshot(needs)
    clock.advance(wait_s)
    snapshot = broker.snapshot(needs)
    chain = snapshot.option_chains["SPY"]
    return max((snapshot.taken_at - c.quote_time).total_seconds() for c in chain)


def test_a_chain_older_than_its_quotes_may_be_is_read_again() -> None:
    needs = DataNeeds(
        stocks=("SPY",), option_underlyings=("SPY",), option_dte_min=7, option_dte_max=45, option_max_quote_age_s=30
    )
    assert _oldest_quote_age(needs, 35) <= 30


def test_within_both_limits_the_chain_is_reused() -> None:
    needs = DataNeeds(
        stocks=("SPY",), option_underlyings=("SPY",), option_dte_min=7, option_dte_max=45, option_max_quote_age_s=120
    )
    assert _oldest_quote_age(needs, 35) >= 35


def test_the_snapshot_says_when_each_chain_was_read() -> None:
    """A chain reused from the cache is no quote of the market at the tick that reuses it: the snapshot says when it
    was read (`chains_read_at`), and a fill is held to a contract's quote only from a chain read at its tick
    (engine/trading/fillprice.py `quote_of`)."""
    needs = DataNeeds(stocks=("SPY",), option_underlyings=("SPY",), option_dte_min=7, option_dte_max=45)
    clock = ManualClock(MONDAY_10AM)
    broker = SnapshotBroker(SimAPI(SimExchange(clock)), clock, BrokerSettings())
    read = broker.snapshot(needs)
    contract = next(c for c in read.option_chains["SPY"] if fillprice.quote_of(read, c.symbol) is not None)
    assert read.chains_read_at == {"SPY": MONDAY_10AM} and read.chain_read_now("SPY")
    clock.advance(10)
    reused = broker.snapshot(needs)
    assert reused.option_chains["SPY"] == read.option_chains["SPY"]
    assert reused.chains_read_at == {"SPY": MONDAY_10AM} and not reused.chain_read_now("SPY")
    assert fillprice.quote_of(reused, contract.symbol) is None
    clock.advance(60)
    again = broker.snapshot(needs)
    assert again.chain_read_now("SPY") and fillprice.quote_of(again, contract.symbol) is not None
