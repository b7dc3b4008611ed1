"""The PortfolioBot's arithmetic on the shipped config."""

from __future__ import annotations

import pytest

from engine.config.loader import load_config
from engine.trading.portfolio import PortfolioBot, allocate, budget_left, shares_for
from tests.conftest import ProjectCopy


def test_budgets_split_by_bucket_and_clamped_to_the_guardrails(project: ProjectCopy) -> None:
    bots = load_config(project.config).bots
    allocations = allocate(bots, equity=100_000, max_daily_loss_pct=1.0)
    assert allocations.daily_risk_usd == 1_000 and allocations.deployable_usd == 70_000
    budgets = {b: a.budget_usd for b, a in allocations.bots.items()}
    # momentum 25 % (one enabled bot), options 50 % cut to the 25 % maximum, crypto 25 %
    assert budgets == {"mom_AAPL": 250.0, "opt_core": 250.0, "crypto_core": 250.0}


def test_many_bots_in_a_bucket_are_raised_to_the_minimum(project: ProjectCopy) -> None:
    project.replace("config/bots.yaml", "    enabled: false\n    ticker: TSLA", "    enabled: true\n    ticker: TSLA")
    project.replace("config/bots.yaml", "momentum_bucket_pct_of_daily_risk: 25", "momentum_bucket_pct_of_daily_risk: 6")
    allocations = allocate(load_config(project.config).bots, equity=50_000, max_daily_loss_pct=2.0)
    assert allocations.bots["mom_AAPL"].pct_of_daily_risk == 5  # 6 / 2 = 3, raised to the 5 % minimum
    assert allocations.bots["mom_TSLA"].budget_usd == pytest.approx(50.0)


def test_size_follows_the_budget_and_the_stop_capped_by_capital() -> None:
    assert shares_for(250, price=200, stop_loss_pct=0.5, room_usd=1e9) == 250  # 250 / (200 x 0.5 %)
    assert shares_for(250, price=200, stop_loss_pct=0.5, room_usd=10_000) == 50
    assert shares_for(0, price=200, stop_loss_pct=0.5, room_usd=1e9) == 0
    assert shares_for(1, price=200, stop_loss_pct=0.5, room_usd=1e9) == 1


def test_the_spread_counts_against_the_budget() -> None:
    # an option at 10.00/10.10 (x100): the stop costs 3.03 a contract, the spread 10.00 more
    assert shares_for(250, price=1010, stop_loss_pct=0.3, room_usd=1e9) == 82
    assert shares_for(250, price=1010, stop_loss_pct=0.3, room_usd=1e9, spread=10.0) == 19


def test_a_bot_s_budget_is_known_only_while_the_portfoliobot_may_give_one(project: ProjectCopy) -> None:
    bots = load_config(project.config).bots
    portfolio = PortfolioBot(bots, max_daily_loss_pct=1.0, allow_fallback=False)
    assert portfolio.budgets(100_000, "armed") == {}  # no allocations yet, no fallback: unknown
    portfolio.allocate(100_000)
    assert portfolio.budgets(100_000, "armed") == {"mom_AAPL": 250.0, "opt_core": 250.0, "crypto_core": 250.0}
    assert portfolio.budgets(100_000, "halted") == {}  # the PortfolioBot's machine neither armed nor idle
    portfolio.allocate(50_000)  # the equity moved: worked out again, not the last answer kept
    assert portfolio.budgets(50_000, "idle")["mom_AAPL"] == 125.0
    assert budget_left(250.0, -100.0) == 150.0 and budget_left(250.0, 40.0) == 250.0  # gains add nothing
    assert budget_left(250.0, -400.0) == 0.0 and budget_left(None, -1.0) is None


def test_without_allocations_the_fallback_is_the_guardrail_minimum(project: ProjectCopy) -> None:
    bots = load_config(project.config).bots
    portfolio = PortfolioBot(bots, max_daily_loss_pct=1.0, allow_fallback=True)
    minimum = bots.portfoliobot.guardrails.per_bot_min_pct_of_daily_risk
    assert portfolio.budgets(100_000, "idle") == dict.fromkeys(("mom_AAPL", "opt_core", "crypto_core"), 1_000 * minimum / 100)
    assert portfolio.budgets(None, "idle") == {}  # no equity: nothing to take a share of


def test_shares_lifted_past_the_daily_risk_are_scaled_down_to_it(project: ProjectCopy) -> None:
    """A config validation would refuse (`guardrail_total`), given to the PortfolioBot all the same (a caller that
    never validated): the bots' budgets must never add up to more than the daily risk, whatever the minimum."""
    import dataclasses

    bots = load_config(project.config).bots
    guard = dataclasses.replace(bots.portfoliobot.guardrails, per_bot_min_pct_of_daily_risk=40.0, per_bot_max_pct_of_daily_risk=60.0)
    bots = dataclasses.replace(bots, portfoliobot=dataclasses.replace(bots.portfoliobot, guardrails=guard))
    allocations = allocate(bots, equity=100_000, max_daily_loss_pct=1.0)  # 40 + 50 + 40 = 130 % before scaling
    budgets = {b: a.budget_usd for b, a in allocations.bots.items()}
    assert sum(budgets.values()) == pytest.approx(1_000) and budgets["opt_core"] == pytest.approx(1_000 * 50 / 130)
    portfolio = PortfolioBot(bots, max_daily_loss_pct=1.0, allow_fallback=True)  # the fallback: 40 % each, 120 %
    assert sum(portfolio.budgets(100_000, "idle").values()) == pytest.approx(1_000)
