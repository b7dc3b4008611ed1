"""Entry planning on a real simulated snapshot: the contract inside the chain rules, sizes from budget and stop."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest

from engine.brokers.base import DataNeeds
from engine.brokers.factory import build_sim
from engine.config.loader import load_config
from engine.core.clock import ManualClock
from engine.paths import PROJECT_ROOT
from engine.trading.entries import choose_contract, plan_entry, room_usd

CONFIG = load_config(PROJECT_ROOT / "config")
NOW = datetime(2026, 11, 23, 15, 0, tzinfo=timezone.utc)


@pytest.fixture(scope="module")
def snapshot():
    broker, _ = build_sim(CONFIG.settings, ManualClock(NOW))
    return broker.snapshot(DataNeeds(stocks=("AAPL", "SPY"), crypto=("BTC/USD",), option_underlyings=("SPY",),
                                     option_dte_min=7, option_dte_max=45))  # fmt: skip


def test_the_contract_is_a_call_inside_the_chain_rules(snapshot) -> None:
    rules = CONFIG.bots.optionsbot.chain_rules
    contract = choose_contract(rules, "SPY", snapshot, NOW.date())
    assert contract is not None and contract.option_type == "call"
    assert rules.dte_min <= (contract.expiry - NOW.date()).days <= rules.dte_max
    assert rules.delta_min <= contract.delta <= rules.delta_max
    middle = (rules.delta_min + rules.delta_max) / 2
    inside = [
        c for c in snapshot.option_chains["SPY"] if c.option_type == "call" and rules.delta_min <= c.delta <= rules.delta_max
    ]
    assert abs(contract.delta - middle) == min(abs(c.delta - middle) for c in inside)


def test_no_contract_when_nothing_fits(snapshot) -> None:
    from dataclasses import replace

    rules = replace(CONFIG.bots.optionsbot.chain_rules, dte_min=100, dte_max=120)  # the chain reaches 45 days
    assert choose_contract(rules, "SPY", snapshot, NOW.date()) is None


def test_momentum_size_follows_budget_and_stop(snapshot) -> None:
    bot = CONFIG.bots.momentum_bots[0]
    order, contract = plan_entry(bot, "AAPL", 250.0, 1e9, snapshot, NOW.date())
    quote = snapshot.quotes["AAPL"]
    assert contract is None and order is not None and order.side == "buy" and order.client_order_id == ""
    loss_at_stop = order.qty * (quote.ask * bot.exits.stop_loss_pct / 100 + quote.ask - quote.bid)  # type: ignore[operator]
    assert loss_at_stop <= 250.0 < loss_at_stop + quote.ask * 0.006


def test_crypto_is_notional_and_capped_by_capital(snapshot) -> None:
    bot = CONFIG.bots.cryptobot
    order, _ = plan_entry(bot, "BTC/USD", 250.0, 1e9, snapshot, NOW.date())
    assert order is not None and (order.notional, order.qty, order.order_type, order.time_in_force) == (
        50.0,
        None,
        "limit",
        "gtc",
    )
    small, _ = plan_entry(bot, "BTC/USD", 250.0, 20.0, snapshot, NOW.date())
    assert small is not None and small.notional == 20.0


def test_nothing_without_budget_or_capital(snapshot) -> None:
    bot = CONFIG.bots.momentum_bots[0]
    assert plan_entry(bot, "AAPL", 0.0, 1e9, snapshot, NOW.date()) == (None, None)
    assert plan_entry(bot, "AAPL", 250.0, 0.0, snapshot, NOW.date()) == (None, None)
    assert room_usd(70_000, snapshot) == 70_000  # nothing held yet; buying power is 100,000
