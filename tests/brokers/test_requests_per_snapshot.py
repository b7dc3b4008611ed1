"""Requests per snapshot do not grow with the number of bots."""

from __future__ import annotations

from pathlib import Path

import pytest

from engine.brokers.snapshot import SnapshotBroker
from engine.config.loader import load_config
from engine.core.clock import ManualClock
from engine.trading.universe import data_needs
from tests.conftest import ProjectCopy


def config_with_momentum_bots(project: ProjectCopy, count: int) -> Path:
    blocks = []
    for i in range(count):
        ticker = "T" + "".join(chr(ord("A") + int(d)) for d in f"{i:03d}")
        blocks.append(
            f"  - bot_id: mom_{ticker}\n    enabled: true\n    ticker: {ticker}\n"
            '    session: {trade_start: "06:35", trade_end: "09:30", manage_until: "12:55"}\n'
            "    risk: {max_trades_per_day: 3, max_concurrent_positions: 1}\n"
            "    exits: {stop_loss_pct: 0.5, take_profit_pct: 1.0, time_stop_minutes: 25}\n"
            '    signal: {mode: "placeholder_momentum_v1", params: {}}\n'
        )
    text = (project.config / "bots.yaml").read_text(encoding="utf-8")
    # no minimum share: a hundred bots lifted to the shipped 5 % would hold 500 % of the daily risk (refused)
    text = text.replace("per_bot_min_pct_of_daily_risk: 5", "per_bot_min_pct_of_daily_risk: 0")
    start, end = text.index("momentum_bots:\n"), text.index("optionsbot:")
    rest = text[end:].replace("optionsbot:\n  enabled: true", "optionsbot:\n  enabled: false", 1)
    (project.config / "bots.yaml").write_text(text[:start] + "momentum_bots:\n" + "".join(blocks) + "\n" + rest, encoding="utf-8")
    return project.config


@pytest.mark.parametrize("via", ["sim", "alpaca-emulator"])
def test_requests_per_snapshot_equal_for_1_10_100_bots(project: ProjectCopy, via: str, request: pytest.FixtureRequest) -> None:
    counts = {}
    for bots in (1, 10, 100):
        config = load_config(config_with_momentum_bots(project, bots))
        needs = data_needs(config.bots)
        assert len(needs.stocks) == bots
        if via == "sim":
            from engine.brokers.factory import build_sim

            broker, _ = build_sim(config.settings, ManualClock(request.getfixturevalue("clock").now()))
        else:
            broker = SnapshotBroker(request.getfixturevalue("api"), request.getfixturevalue("clock"))
        first = broker.snapshot(needs)
        assert first.complete and not first.missing_quotes
        counts[bots] = first.broker_requests
    assert counts[1] == counts[10] == counts[100], counts


def test_symbols_beyond_a_chunk_take_one_more_request(project: ProjectCopy, clock: ManualClock) -> None:
    from engine.brokers.factory import build_sim

    sizes = {}
    for bots in (100, 101):
        config = load_config(config_with_momentum_bots(project, bots))
        broker, _ = build_sim(config.settings, ManualClock(clock.now()))
        sizes[bots] = broker.snapshot(data_needs(config.bots)).broker_requests
    assert sizes[101] == sizes[100] + 1  # chunks of broker.symbols_per_request (100)
