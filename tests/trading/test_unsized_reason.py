"""A signal that fires and cannot be sized says why in its `entry_blocked` event: `size` alone covered a budget
used up, chain rules selecting no contract and a crypto order rounding under Alpaca's minimum, so a bot configured
into never trading looked like one short of money, and a first reason of the day hid every later one."""

from __future__ import annotations

from engine.core.clock import ManualClock
from tests.conftest import ProjectCopy
from tests.trading.conftest import make_rig


def test_a_crypto_order_rounded_under_the_minimum_is_named(project: ProjectCopy, clock: ManualClock) -> None:
    project.replace("config/bots.yaml", "use_notional: true", "use_notional: false")
    project.replace("config/bots.yaml", "default_notional_usd: 50", "default_notional_usd: 10")
    rig = make_rig(project, clock)
    rig.ticks(200)
    blocked = [e for e in rig.events("entry_blocked") if e["bot"] == "crypto_core"]
    assert blocked and all(e["failed"] == ["size"] for e in blocked)
    assert all("10 USD minimum" in e["reason"] and "rounded down" in e["reason"] for e in blocked), blocked
    assert not [r for r in rig.store.orders(bot_id="crypto_core") if r.purpose == "entry"]


def test_each_reason_is_said_once_a_day(project: ProjectCopy, clock: ManualClock) -> None:
    project.replace("config/bots.yaml", "delta_min: 0.25", "delta_min: 0.999")
    project.replace("config/bots.yaml", "delta_max: 0.60", "delta_max: 1.0")
    rig = make_rig(project, clock)
    rig.ticks(400)  # the OptionsBot's window opens at 06:40, 120 ticks in; its signal fires several times
    reasons = [e["reason"] for e in rig.events("entry_blocked") if e["bot"] == "opt_core"]
    assert reasons and len(reasons) == len(set(reasons)), reasons
    assert any("delta_min..delta_max (0.999-1)" in reason for reason in reasons), reasons


def test_a_reason_whose_figures_change_every_tick_is_said_once_a_day_with_the_limit_that_bit(
    project: ProjectCopy, clock: ManualClock
) -> None:
    """A budget too small for one share: the reason now carries its figures (what a share risks at the ask, the
    budget and capital left), which move with every quote. Said once a day by its words; and it names the budget,
    where "the budget ... or the capital" left the trader to guess (issue 10)."""
    from engine.trading.entries import reason_kind

    project.replace("config/settings.yaml", "global_max_daily_loss_pct: 1.0", "global_max_daily_loss_pct: 0.0001")
    rig = make_rig(project, clock)
    rig.ticks(400)
    reasons = [e["reason"] for e in rig.events("entry_blocked") if e["bot"] == "mom_AAPL" and e["failed"] == ["size"]]
    assert reasons and len(reasons) == len({reason_kind(r) for r in reasons}), reasons
    assert "more than the bot's budget left today: " in reasons[0] and "(the budget used up, not the capital: " in reasons[0]
