"""The recent prices a signal reads are one a tick, oldest first: a gap in them (the process suspended for minutes, a
tick that lasted, a clock stepped forward, a quote that went stale) made a price of minutes ago read as one of a
few ticks ago, and a momentum signal measured a ten-minute move as a move of its lookback ticks. After a gap the
history starts again from the first fresh price; a stale quote enters none."""

from __future__ import annotations

import dataclasses
from datetime import timedelta

from engine.brokers.base import Snapshot
from tests.trading.conftest import Rig


def test_a_suspension_starts_the_prices_again(rig: Rig) -> None:
    rig.ticks(10)
    assert len(rig.engine._history["AAPL"]) > 2
    rig.clock.advance(600)  # stopped ten minutes between two ticks
    rig.ticks(1)
    assert {symbol: len(prices) for symbol, prices in rig.engine._history.items()} == dict.fromkeys(rig.engine._history, 1)
    rig.ticks(2)
    assert len(rig.engine._history["AAPL"]) == 3


def test_a_late_tick_within_the_staleness_limit_keeps_the_prices(rig: Rig) -> None:
    rig.ticks(10)
    before = len(rig.engine._history["AAPL"])
    rig.clock.advance(14)  # a tick late by less than health.max_price_staleness_seconds (15 s)
    rig.ticks(1)
    assert len(rig.engine._history["AAPL"]) == before + 1


def test_a_clock_set_back_starts_the_prices_again(rig: Rig) -> None:
    rig.ticks(10)
    rig.clock.advance(-60)
    rig.ticks(1)
    assert len(rig.engine._history["AAPL"]) == 1


def test_a_stale_quote_enters_no_history_and_breaks_it(rig: Rig) -> None:
    rig.ticks(10)
    broker = rig.engine.broker
    real = broker.snapshot

    def frozen(needs: object) -> Snapshot:
        snapshot = real(needs)  # type: ignore[arg-type]
        quote = snapshot.quotes["AAPL"]
        old = dataclasses.replace(quote, timestamp=snapshot.taken_at - timedelta(seconds=60))
        return dataclasses.replace(snapshot, quotes={**snapshot.quotes, "AAPL": old})

    broker.snapshot = frozen  # type: ignore[method-assign]
    rig.ticks(1)
    assert "AAPL" not in rig.engine._history and len(rig.engine._history["SPY"]) > 1
    broker.snapshot = real  # type: ignore[method-assign]
    rig.ticks(1)
    assert len(rig.engine._history["AAPL"]) == 1
