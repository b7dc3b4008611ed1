"""The risk gate under load: many bots signalling in the same tick never exceed the order rate or the
capital, and a bot with no budget does not trade."""

from __future__ import annotations

from datetime import timedelta

from tests.brokers.test_requests_per_snapshot import config_with_momentum_bots
from tests.conftest import ProjectCopy
from tests.trading.conftest import make_rig


def eager(project: ProjectCopy, bots: int) -> None:
    config_with_momentum_bots(project, bots)
    text = (project.config / "bots.yaml").read_text()
    text = text.replace('trade_start: "06:35"', 'trade_start: "06:30"')
    text = text.replace("params: {}}", "params: {lookback_ticks: 2, min_move_pct: 0.0}}")
    (project.config / "bots.yaml").write_text(text)


def test_many_bots_signalling_together_respect_the_order_rate_and_capital(project: ProjectCopy, clock) -> None:
    eager(project, 40)
    project.replace("config/settings.yaml", "max_orders_per_minute: 10", "max_orders_per_minute: 3")
    rig = make_rig(project, clock)
    rig.ticks(60)
    entries = sorted(r.created_at for r in rig.store.orders() if r.purpose == "entry")
    assert len(entries) > 3  # the bots did want to trade, over several minutes
    limit = rig.engine.config.settings.risk.max_orders_per_minute
    orders = sorted(r.created_at for r in rig.store.orders())
    for start in orders:
        assert sum(1 for t in entries if start <= t < start + timedelta(seconds=60)) <= limit
    assert not [r for r in rig.store.orders() if r.status == "rejected"]  # never more than the broker allows
    blocked = {c for e in rig.events("preflight") for c in e["failed"]}
    assert "order_rate_ok" in blocked


def test_no_budget_no_trade(project: ProjectCopy, clock) -> None:
    project.replace("config/bots.yaml", "portfoliobot:\n  enabled: true", "portfoliobot:\n  enabled: false")
    rig = make_rig(project, clock)
    rig.ticks(300)
    assert rig.store.orders() == []
    assert any("budget_known" in e["failed"] for e in rig.events("preflight"))
