"""A bot's entries together risk no more than its budget: an entry is sized to what the budget leaves once the
positions the bot already holds are stopped out. Sized each to the whole budget, an OptionsBot with
risk.max_concurrent_positions 3 put three budgets at risk at once (250 USD allowed, 732 lost in one morning)."""

from __future__ import annotations

from datetime import datetime, timezone

from engine.core.clock import ManualClock
from tests.conftest import ProjectCopy
from tests.trading.conftest import make_rig

FRIDAY = datetime(2026, 11, 27, 14, 30, tzinfo=timezone.utc)  # the open, the day after Thanksgiving


def test_entries_held_together_risk_no_more_than_the_budget(project: ProjectCopy) -> None:
    bots = "config/bots.yaml"
    project.replace(bots, "  - bot_id: mom_AAPL\n    enabled: true", "  - bot_id: mom_AAPL\n    enabled: false")
    project.replace(bots, "cryptobot:\n  enabled: true", "cryptobot:\n  enabled: false")
    for old, new in (
        ("dte_min: 7", "dte_min: 0"), ("dte_max: 45", "dte_max: 0"), ("delta_min: 0.25", "delta_min: 0.0"),
        ("delta_max: 0.60", "delta_max: 1.0"), ("stop_loss_pct: 0.30", "stop_loss_pct: 95"),
        ("take_profit_pct: 0.40", "take_profit_pct: 100"),
    ):  # fmt: skip
        project.replace(bots, old, new)
    rig = make_rig(project, ManualClock(FRIDAY))
    rig.ticks(200)  # the window opens at 06:40, 120 ticks in
    entries = [r for r in rig.store.orders(bot_id="opt_core") if r.purpose == "entry" and r.filled_qty]
    assert entries, "the bot never entered"
    budget = next(e["bots"]["opt_core"]["budget_usd"] for e in rig.events("allocation"))
    held = rig.store.positions("opt_core")
    assert len(held) == len({r.symbol for r in entries})  # nothing exited: every entry is still at risk
    at_risk = sum(p.qty * p.avg_entry_price * 100 * 0.95 for p in held)
    assert at_risk <= budget * 1.1, (budget, at_risk, [(p.symbol, p.qty, p.avg_entry_price) for p in held])
