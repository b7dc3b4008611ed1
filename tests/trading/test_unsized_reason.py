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


def test_an_entry_its_stop_would_close_the_moment_it_fills_is_not_sent_and_why_says_so(
    project: ProjectCopy, clock: ManualClock
) -> None:
    """An entry is bought at the ask and valued at what selling it gets (an option: the mark less half the spread; a
    share or coin: the mid): with a stop inside that, every entry was at its stop the tick after it filled, its
    spread lost, up to max_trades_per_day a day (audit 21a s5: the shipped 10 % chain_rules.max_spread_pct beside a
    0.30 % stop). Stops set inside the simulation's spreads: no bot sends an entry, each says why once a day, and
    `why BOT` shows it."""
    from engine.operator.why import explain
    from engine.trading.entries import reason_kind
    from engine.validate import load_valid

    project.replace("config/bots.yaml", "stop_loss_pct: 0.30", "stop_loss_pct: 0.10")  # options: 0.16-0.3 % wide
    project.replace("config/bots.yaml", "stop_loss_pct: 0.50", "stop_loss_pct: 0.005")  # AAPL: 0.02 % wide
    project.replace("config/bots.yaml", "stop_loss_pct: 0.75", "stop_loss_pct: 0.02")  # crypto: 0.05 % wide
    rig = make_rig(project, clock)
    rig.until(lambda r: any(e["bot"] == "opt_core" for e in r.events("entry_blocked")), limit=400)
    record = explain(rig.store, load_valid(project.config, project.machines, project.rules), "opt_core")
    assert "narrow enough for exits.stop_loss_pct (0.1 %)" in record["unsized_signal"], record["unsized_signal"]
    rig.ticks(600)
    blocked: dict[str, list[str]] = {e["bot"]: [] for e in rig.events("entry_blocked")}
    for e in rig.events("entry_blocked"):
        blocked[e["bot"]].append(e["reason"])
    assert any("narrow enough for exits.stop_loss_pct (0.1 %)" in r for r in blocked["opt_core"]), blocked
    assert any(r.startswith("a share of AAPL is at exits.stop_loss_pct (0.005 %)") for r in blocked["mom_AAPL"]), blocked
    assert any("is at exits.stop_loss_pct (0.02 %) the moment it fills" in r for r in blocked["crypto_core"]), blocked
    for reasons in blocked.values():  # once a day by its words, its figures moving every tick
        assert len(reasons) == len({reason_kind(r) for r in reasons}), reasons
    assert not [o for o in rig.store.orders() if o.purpose == "entry"]
