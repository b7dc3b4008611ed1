"""Entry planning on a real simulated snapshot: the contract inside the chain rules, sizes from budget and stop,
only from quotes that are prices, paid with the right buying power, rounded to the pair's increments."""

from __future__ import annotations

import dataclasses
import math
import re
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest

from engine.brokers.base import Asset, DataNeeds, OptionContract, Order, OrderRequest, Quote, Snapshot
from engine.brokers.factory import build_sim
from engine.config.loader import load_config
from engine.config.model import TradingBotConfig
from engine.core.clock import ManualClock
from engine.core.store import PositionRow
from engine.paths import PROJECT_ROOT
from engine.trading.entries import (
    ContractChoice,
    at_stop_on_fill,
    ceil_to,
    choose_contract,
    floor_to,
    loss_at_fill_pct,
    plan_entry,
    reason_kind,
    room_usd,
    spread_at_stop_pct,
    spread_pct,
    usable,
)
from engine.trading.facts_builder import positions_pnl_pct

CONFIG = load_config(PROJECT_ROOT / "config")
NOW = datetime(2026, 11, 23, 15, 0, tzinfo=timezone.utc)
MAX_SPREAD = CONFIG.settings.health.max_spread_pct
RULES = CONFIG.bots.optionsbot.chain_rules
MOMENTUM, OPTIONS, CRYPTO = CONFIG.bots.momentum_bots[0], CONFIG.bots.optionsbot, CONFIG.bots.cryptobot
STOP = OPTIONS.exits.stop_loss_pct
BTC = Asset("BTC/USD", "crypto", "CRYPTO", "active", True, True, min_order_size=0.0001, min_trade_increment=1e-9,
            price_increment=1.0)  # fmt: skip
ETH = Asset("ETH/USD", "crypto", "CRYPTO", "active", True, True, min_order_size=0.001, min_trade_increment=1e-9,
            price_increment=0.1)  # fmt: skip
ASSETS = {"BTC/USD": BTC, "ETH/USD": ETH}


@pytest.fixture(scope="module")
def snapshot() -> Snapshot:
    broker, _ = build_sim(CONFIG.settings, ManualClock(NOW))
    return broker.snapshot(DataNeeds(stocks=("AAPL", "SPY"), crypto=("BTC/USD", "ETH/USD"), option_underlyings=("SPY",),
                                     option_dte_min=7, option_dte_max=45))  # fmt: skip


def plan(
    cfg: TradingBotConfig, symbol: str, snapshot: Snapshot, risk: float = 250.0, room: float = 1e9, **kw: Any
) -> tuple[OrderRequest | None, ContractChoice | None]:
    request, choice, _why = explain(cfg, symbol, snapshot, risk, room, **kw)
    return request, choice


def with_quote(snapshot: Snapshot, symbol: str, bid: float, ask: float) -> Snapshot:
    quote = snapshot.quotes[symbol]
    return dataclasses.replace(snapshot, quotes={**snapshot.quotes, symbol: Quote(symbol, bid, ask, quote.timestamp)})


def with_account(snapshot: Snapshot, **fields: Any) -> Snapshot:
    assert snapshot.account is not None
    return dataclasses.replace(snapshot, account=dataclasses.replace(snapshot.account, **fields))


# --- the contract ---------------------------------------------------------------------------------------------


def test_the_contract_is_a_call_inside_the_chain_rules(snapshot: Snapshot) -> None:
    choice = choose_contract(RULES, "SPY", snapshot, NOW.date(), stop_loss_pct=STOP)
    assert choice is not None
    contract = choice.contract
    assert contract.option_type == "call"
    assert RULES.dte_min <= (contract.expiry - NOW.date()).days <= RULES.dte_max
    assert RULES.delta_min <= contract.delta <= RULES.delta_max
    middle = (RULES.delta_min + RULES.delta_max) / 2
    inside = [
        c for c in snapshot.option_chains["SPY"] if c.option_type == "call" and RULES.delta_min <= c.delta <= RULES.delta_max
    ]
    assert abs(contract.delta - middle) == min(abs(c.delta - middle) for c in inside)
    # the quote it was chosen on comes with it, for the contract_chosen event
    assert choice.quote_age_s == (snapshot.taken_at - contract.quote_time).total_seconds()
    assert choice.spread_pct == pytest.approx((contract.ask - contract.bid) / ((contract.ask + contract.bid) / 2) * 100)


def test_no_contract_when_nothing_fits(snapshot: Snapshot) -> None:
    rules = dataclasses.replace(RULES, dte_min=100, dte_max=120)  # the chain reaches 45 days
    assert choose_contract(rules, "SPY", snapshot, NOW.date(), stop_loss_pct=STOP) is None


def _best(snapshot: Snapshot) -> OptionContract:
    choice = choose_contract(RULES, "SPY", snapshot, NOW.date(), stop_loss_pct=STOP)
    assert choice is not None
    return choice.contract


def _chain_with(snapshot: Snapshot, symbol: str, **fields: Any) -> Snapshot:
    chain = tuple(dataclasses.replace(c, **fields) if c.symbol == symbol else c for c in snapshot.option_chains["SPY"])
    return dataclasses.replace(snapshot, option_chains={**snapshot.option_chains, "SPY": chain})


@pytest.mark.parametrize(
    ("why", "fields"),
    [
        ("no greeks", {"delta": math.nan, "gamma": math.nan, "theta": math.nan, "vega": math.nan}),
        ("no bid", {"bid": 0.0}),
        ("no ask", {"ask": 0.0}),
        ("crossed", {"bid": 9.0, "ask": 8.0}),
        ("spread over chain_rules.max_spread_pct (10)", {"bid": 8.0, "ask": 9.0}),
        ("quote over chain_rules.max_quote_age_seconds (120)", {"quote_time": NOW - timedelta(seconds=121)}),
        ("quote stamped further ahead of the clock than that", {"quote_time": NOW + timedelta(seconds=121)}),
    ],
)
def test_a_contract_whose_quote_is_not_good_enough_is_skipped(snapshot: Snapshot, why: str, fields: dict) -> None:
    best = _best(snapshot)
    changed = _chain_with(snapshot, best.symbol, **fields)
    second = _best(changed)
    assert second.symbol != best.symbol, why
    # and the OptionsBot's entry goes to the next contract, never to the one skipped
    order, choice = plan(OPTIONS, "SPY", changed)
    assert order is not None and choice is not None and order.symbol == second.symbol


def test_the_quote_limits_are_the_configured_ones(snapshot: Snapshot) -> None:
    best = _best(snapshot)
    older = _chain_with(snapshot, best.symbol, quote_time=NOW - timedelta(seconds=100))
    assert _best(older).symbol == best.symbol  # 100 s is within the default 120 s
    strict = dataclasses.replace(RULES, max_quote_age_seconds=60)
    found = choose_contract(strict, "SPY", older, NOW.date(), stop_loss_pct=STOP)
    assert found is not None and found.contract.symbol != best.symbol


def test_a_contract_the_bot_holds_or_enters_is_not_bought_again(snapshot: Snapshot) -> None:
    best = _best(snapshot)
    order, choice = plan(OPTIONS, "SPY", snapshot, busy=frozenset({best.symbol}))
    assert order is not None and choice is not None and order.symbol != best.symbol


# --- sizing ---------------------------------------------------------------------------------------------------


def test_momentum_size_follows_budget_and_stop(snapshot: Snapshot) -> None:
    order, contract = plan(MOMENTUM, "AAPL", snapshot)
    quote = snapshot.quotes["AAPL"]
    assert contract is None and order is not None and order.side == "buy" and order.client_order_id == ""
    assert order.qty is not None  # shares, not a notional
    loss_at_stop = order.qty * (quote.ask * MOMENTUM.exits.stop_loss_pct / 100 + quote.ask - quote.bid)
    assert loss_at_stop <= 250.0 < loss_at_stop + quote.ask * 0.006


def test_an_option_entry_is_a_day_limit_never_above_the_ask_it_was_sized_at(snapshot: Snapshot) -> None:
    """A market order filled at the live ask, which had moved from the chain's (tests/trading/test_options_entries.py)."""
    order, choice = plan(OPTIONS, "SPY", snapshot)
    assert order is not None and choice is not None
    assert (order.order_type, order.time_in_force, order.limit_price) == ("limit", "day", choice.contract.ask)
    # an ask of more than a cent's decimals (no feed sends one) is floored to the cent an option limit takes
    odd = _chain_with(snapshot, choice.contract.symbol, ask=choice.contract.ask + 0.004)
    lower, _ = plan(OPTIONS, "SPY", odd)
    assert lower is not None and lower.limit_price == choice.contract.ask


def test_crypto_is_notional_and_capped_by_capital(snapshot: Snapshot) -> None:
    order, _ = plan(CRYPTO, "BTC/USD", snapshot)
    assert order is not None and (order.notional, order.qty, order.order_type, order.time_in_force) == (
        50.0,
        None,
        "limit",
        "gtc",
    )
    small, _ = plan(CRYPTO, "BTC/USD", snapshot, room=20.0)
    assert small is not None and small.notional == 20.0


def test_nothing_without_budget_or_capital(snapshot: Snapshot) -> None:
    assert plan(MOMENTUM, "AAPL", snapshot, risk=0.0) == (None, None)
    assert plan(MOMENTUM, "AAPL", snapshot, room=0.0) == (None, None)
    assert room_usd(70_000, snapshot) == 70_000  # nothing held yet; buying power is 100,000


# --- item 1: a quote that is not a price sizes nothing ---------------------------------------------------------


def test_a_quote_is_a_price_only_with_both_sides_uncrossed_and_narrow() -> None:
    t = NOW
    assert usable(Quote("AAPL", 99.9, 100.1, t), 1.0) and spread_pct(99.9, 100.1) == pytest.approx(0.2)
    assert not usable(Quote("AAPL", 0.0, 100.0, t), 1.0)  # no bid: the mid would be half the ask
    assert not usable(Quote("AAPL", 100.0, 0.0, t), 1.0)  # no ask
    assert not usable(Quote("AAPL", 100.2, 100.0, t), 1.0)  # crossed
    assert not usable(Quote("AAPL", 98.0, 100.0, t), 1.0)  # 2 % wide
    assert usable(Quote("AAPL", 98.0, 100.0, t), 2.5)
    assert not usable(None, 1.0)


@pytest.mark.parametrize(("bot", "symbol"), [(MOMENTUM, "AAPL"), (CRYPTO, "BTC/USD")])
@pytest.mark.parametrize(("bid", "ask"), [(0.0, 100.0), (100.0, 0.0), (101.0, 100.0), (95.0, 100.0)])
def test_no_entry_is_sized_from_a_quote_that_is_not_a_price(
    snapshot: Snapshot, bot: TradingBotConfig, symbol: str, bid: float, ask: float
) -> None:
    assert plan(bot, symbol, with_quote(snapshot, symbol, bid, ask)) == (None, None)


# --- item 5: which buying power -------------------------------------------------------------------------------


def test_crypto_is_capped_by_non_marginable_buying_power(snapshot: Snapshot) -> None:
    margin = with_account(snapshot, buying_power=400_000.0, non_marginable_buying_power=30.0)
    order, _ = plan(CRYPTO, "BTC/USD", margin)
    assert order is not None and order.notional == 30.0
    assert plan(CRYPTO, "BTC/USD", with_account(snapshot, non_marginable_buying_power=None)) == (None, None)


def test_options_are_capped_by_options_buying_power(snapshot: Snapshot) -> None:
    order, choice = plan(OPTIONS, "SPY", snapshot)
    assert order is not None and choice is not None and order.qty and order.qty > 1
    one = choice.contract.ask * 100 * 1.5  # room for one contract, not two
    order, _ = plan(OPTIONS, "SPY", with_account(snapshot, buying_power=400_000.0, options_buying_power=one))
    assert order is not None and order.qty == 1
    assert plan(OPTIONS, "SPY", with_account(snapshot, options_buying_power=0.0)) == (None, None)
    assert plan(OPTIONS, "SPY", with_account(snapshot, options_buying_power=None)) == (None, None)


def test_stocks_are_capped_by_buying_power(snapshot: Snapshot) -> None:
    quote = snapshot.quotes["AAPL"]
    order, _ = plan(MOMENTUM, "AAPL", with_account(snapshot, buying_power=quote.ask * 3.5, non_marginable_buying_power=1e9))
    assert order is not None and order.qty == 3


def test_margin_never_enlarges_the_capital_to_deploy(snapshot: Snapshot) -> None:
    margin = with_account(snapshot, buying_power=400_000.0)  # 4x the equity
    assert room_usd(70_000, margin) == 70_000  # deployable comes from equity, not from buying power
    assert room_usd(70_000, with_account(snapshot, buying_power=5_000.0)) == 5_000  # but never past it


# --- item 11: crypto increments and minimums ------------------------------------------------------------------


def test_decimal_rounding_to_an_increment() -> None:
    assert floor_to(0.30000000000000004, 0.1) == 0.3 and ceil_to(0.3, 0.1) == 0.3
    assert ceil_to(60112.72, 1.0) == 60113.0 and floor_to(60112.72, 1.0) == 60112.0
    assert ceil_to(3009.9453, 0.1) == 3010.0
    assert floor_to(0.000831770713419, 1e-9) == 0.000831770


def test_a_crypto_limit_is_rounded_up_to_the_pair_s_price_increment(snapshot: Snapshot) -> None:
    btc = with_quote(snapshot, "BTC/USD", 60110.11, 60112.72)
    order, _ = plan(CRYPTO, "BTC/USD", btc)
    assert order is not None and order.limit_price == 60113.0  # BTC/USD's increment is 1: a cent-rounded limit is wrong
    eth = with_quote(snapshot, "ETH/USD", 3009.80, 3009.9453)
    order, _ = plan(CRYPTO, "ETH/USD", eth)
    assert order is not None and order.limit_price == 3010.0  # still marketable at the ask


def test_a_crypto_quantity_is_rounded_down_to_the_pair_s_increment(snapshot: Snapshot) -> None:
    by_qty = dataclasses.replace(CRYPTO, execution=dataclasses.replace(CRYPTO.execution, use_notional=False))
    coarse = {**ASSETS, "BTC/USD": dataclasses.replace(BTC, min_trade_increment=0.0001)}
    btc = with_quote(snapshot, "BTC/USD", 60110.11, 60112.72)
    order, _ = plan(by_qty, "BTC/USD", btc, assets=coarse)
    assert order is not None and order.qty == 0.0008 and order.notional is None  # 50 / 60113 = 0.000831...
    assert order.qty * 60113.0 <= CRYPTO.execution.default_notional_usd


def test_a_usd_crypto_buy_under_10_usd_is_not_sized(snapshot: Snapshot) -> None:
    order, _ = plan(CRYPTO, "BTC/USD", snapshot, room=10.0)
    assert order is not None and order.notional == 10.0
    assert plan(CRYPTO, "BTC/USD", snapshot, room=9.99) == (None, None)
    # the risk budget sizes it under 10 USD: refused too, never sent to be refused
    assert plan(CRYPTO, "BTC/USD", snapshot, risk=0.05) == (None, None)


def test_an_order_under_the_pair_s_min_order_size_is_not_sized(snapshot: Snapshot) -> None:
    big_minimum = {**ASSETS, "BTC/USD": dataclasses.replace(BTC, min_order_size=0.01)}  # about 600 USD at 60,000
    assert plan(CRYPTO, "BTC/USD", snapshot, assets=big_minimum) == (None, None)


def test_a_pair_whose_rules_are_unknown_is_not_sized(snapshot: Snapshot) -> None:
    assert plan(CRYPTO, "BTC/USD", snapshot, assets={}) == (None, None)
    no_increment = {"BTC/USD": dataclasses.replace(BTC, price_increment=None)}
    assert plan(CRYPTO, "BTC/USD", snapshot, assets=no_increment) == (None, None)  # a limit order cannot be priced


def test_a_price_increment_that_lifts_the_limit_past_a_spread_is_not_used(snapshot: Snapshot) -> None:
    """An asset answer with ETH/USD's increment at 100,000 sent a buy limit at 100,000, the ask at 3,010: no limit."""
    junk = {**ASSETS, "ETH/USD": dataclasses.replace(ETH, price_increment=100_000.0)}
    request, _choice, why = explain(CRYPTO, "ETH/USD", snapshot, assets=junk)
    assert request is None and "price increment for ETH/USD" in (why or "")
    coarse = {**ASSETS, "BTC/USD": dataclasses.replace(BTC, price_increment=10.0)}  # ten dollars on 60,000: a price
    assert plan(CRYPTO, "BTC/USD", snapshot, assets=coarse)[0] is not None


def test_a_symbol_the_bot_holds_is_not_entered_again(snapshot: Snapshot) -> None:
    assert plan(CRYPTO, "BTC/USD", snapshot, busy=frozenset({"BTC/USD"})) == (None, None)
    assert plan(CRYPTO, "ETH/USD", snapshot, busy=frozenset({"BTC/USD"}))[0] is not None


# --- why no entry was sized: the `entry_blocked` event's reason -------------------------------------------------


def explain(
    cfg: TradingBotConfig, symbol: str, snapshot: Snapshot, risk: float = 250.0, room: float = 1e9, **kw: Any
) -> tuple[OrderRequest | None, ContractChoice | None, str | None]:
    kw = {"max_spread_pct": MAX_SPREAD, "assets": ASSETS, **kw}
    return plan_entry(cfg, symbol, risk, room, snapshot, NOW.date(), **kw)


def test_a_sized_entry_has_no_reason(snapshot: Snapshot) -> None:
    for cfg, symbol in ((MOMENTUM, "AAPL"), (OPTIONS, "SPY"), (CRYPTO, "BTC/USD")):
        request, _choice, why = explain(cfg, symbol, snapshot)
        assert request is not None and why is None
        assert explain(cfg, symbol, snapshot)[:2] == plan(cfg, symbol, snapshot)


def test_chain_rules_that_select_nothing_are_named_not_the_budget(snapshot: Snapshot) -> None:
    # A delta range no call reaches was logged as `size` alone, and `why` read it as a budget too small for one
    # contract: a bot configured into never trading looked like one short of money.
    no_delta = dataclasses.replace(OPTIONS, chain_rules=dataclasses.replace(RULES, delta_min=0.999, delta_max=1.0))
    assert explain(no_delta, "SPY", snapshot) == (
        None,
        None,
        "no call of SPY with greeks and an absolute delta within delta_min..delta_max (0.999-1)",
    )
    far = dataclasses.replace(OPTIONS, chain_rules=dataclasses.replace(RULES, dte_min=100, dte_max=120))
    assert explain(far, "SPY", snapshot)[2] == "no call of SPY within chain_rules dte_min..dte_max (100-120 days)"
    tight = dataclasses.replace(OPTIONS, chain_rules=dataclasses.replace(RULES, max_spread_pct=1e-9))
    assert "max_spread_pct" in (explain(tight, "SPY", snapshot)[2] or "")
    # the chain is read for the DTE range only: an empty one says so
    assert "dte_min..dte_max (7-45 days)" in (explain(OPTIONS, "QQQ", snapshot)[2] or "")  # QQQ's chain not read


def test_each_reason_an_entry_is_not_sized(snapshot: Snapshot) -> None:
    assert explain(MOMENTUM, "AAPL", snapshot, risk=0.0)[2] == "the bot's risk budget for today is used up"
    assert "no capital left" in (explain(MOMENTUM, "AAPL", snapshot, room=0.0)[2] or "")
    assert "one share of AAPL risks" in (explain(MOMENTUM, "AAPL", snapshot, risk=0.01)[2] or "")
    assert "one contract on SPY" in (explain(OPTIONS, "SPY", snapshot, risk=0.01)[2] or "")
    assert "already holds" in (explain(MOMENTUM, "AAPL", snapshot, busy=frozenset({"AAPL"}))[2] or "")
    assert "no usable quote" in (explain(MOMENTUM, "AAPL", with_quote(snapshot, "AAPL", 0.0, 1.0))[2] or "")
    assert "buying power" in (explain(MOMENTUM, "AAPL", dataclasses.replace(snapshot, account=None))[2] or "")
    assert "not known" in (explain(CRYPTO, "BTC/USD", snapshot, assets={})[2] or "")


def test_a_unit_too_big_says_which_limit_stopped_it_with_both_figures(snapshot: Snapshot) -> None:
    """One text, "risks more than the budget left ... or costs more than the capital left", was said of a budget of
    0.35 USD beside 69,596 USD of capital and of a capital used up beside a whole budget: the trader could not tell
    the budget used up from the capital reserved (issue 10). Each now says which, with both figures."""
    budget = explain(MOMENTUM, "AAPL", snapshot, risk=0.35, room=69596.12)[2] or ""
    assert "more than the bot's budget left today: 0.35 USD (the budget used up, not the capital: 69,596.12 USD" in budget
    assert "costs" not in budget
    capital = explain(MOMENTUM, "AAPL", snapshot, risk=125.0, room=12.0)[2] or ""
    assert "more than the capital left to deploy: 12.00 USD (the capital reserved, not the budget: 125.00 USD" in capital
    assert "risks" not in capital
    both = explain(MOMENTUM, "AAPL", snapshot, risk=0.35, room=12.0)[2] or ""
    assert "budget left today: 0.35 USD" in both and "capital left to deploy: 12.00 USD" in both
    option = explain(OPTIONS, "SPY", snapshot, risk=0.01, room=1e6)[2] or ""
    assert option.startswith("one contract on SPY risks ") and "budget used up" in option
    none_left = explain(MOMENTUM, "AAPL", snapshot, room=0.0)[2] or ""
    assert "deployable less what is held 0.00 USD, buying power" in none_left
    # crypto: the least of three limits sized the order, and which one was said nowhere
    starved = explain(CRYPTO, "BTC/USD", snapshot, risk=0.001)[2] or ""
    assert "sized by the bot's budget left today at the stop" in starved and "under its minimum order size 0.0001" in starved
    assert "e-0" not in starved  # a quantity in plain digits


def test_a_reason_is_known_by_its_words_not_its_figures() -> None:
    """The engine says a sizing reason once a day; with its figures in it (the budget left, what a share risks at
    the ask) each tick's reason was new text and was logged every tick."""
    a = (
        "one share of AAPL risks 0.99 USD at exits.stop_loss_pct (the spread included), more than the bot's budget left "
        "today: 0.35 USD (the budget used up, not the capital: 69,596.12 USD left to deploy)"
    )
    b = a.replace("0.99", "1.02").replace("69,596.12", "1,234.50")
    assert reason_kind(a) == reason_kind(b) and "AAPL" in reason_kind(a) and "0.35" not in reason_kind(a)
    assert reason_kind(a) != reason_kind(a.replace("AAPL", "SPY"))


def test_a_crypto_quantity_rounded_under_10_usd_says_so(snapshot: Snapshot) -> None:
    # default_notional_usd 10 by quantity: rounded down to the increment it is always under Alpaca's minimum, and
    # the bot never traded with nothing but `size` to say why
    execution = dataclasses.replace(CRYPTO.execution, use_notional=False, default_notional_usd=10.0)
    by_qty = dataclasses.replace(CRYPTO, execution=execution)
    coarse = {**ASSETS, "BTC/USD": dataclasses.replace(BTC, min_trade_increment=0.0001)}
    request, _choice, why = explain(by_qty, "BTC/USD", snapshot, assets=coarse)
    assert request is None
    assert why is not None and "rounded down" in why and "10 USD minimum" in why


# --- an entry its own stop would close the moment it fills ----------------------------------------------------


def _with_stop(cfg: Any, stop_loss_pct: float) -> Any:
    return dataclasses.replace(cfg, exits=dataclasses.replace(cfg.exits, stop_loss_pct=stop_loss_pct))


def test_the_loss_at_fill_is_what_the_position_is_valued_at_the_tick_it_fills(snapshot: Snapshot) -> None:
    """The check an entry is held to is the stop loss's own arithmetic (`positions_pnl_pct`): an option bought at
    the ask is valued at what selling it gets (the mark less half the spread), so it starts its whole spread down;
    a share or coin is valued at the mid (or the broker's price), half its spread down."""
    best = _best(snapshot)
    wide = _chain_with(snapshot, best.symbol, bid=9.70, ask=10.00)
    held = (PositionRow("opt_core", best.symbol, 2.0, 10.00, NOW),)
    _together, worst = positions_pnl_pct(held, {best.symbol: 9.85}, wide, max_spread_pct=MAX_SPREAD, max_quote_age_s=120)
    assert worst == pytest.approx(-loss_at_fill_pct(9.70, 10.00, option=True)) == pytest.approx(-3.0)
    quoted = with_quote(snapshot, "AAPL", 99.80, 100.00)
    share = (PositionRow("mom_AAPL", "AAPL", 5.0, 100.00, NOW),)
    _together, worst = positions_pnl_pct(share, {}, quoted, max_spread_pct=MAX_SPREAD)
    assert worst == pytest.approx(-loss_at_fill_pct(99.80, 100.00, option=False)) == pytest.approx(-0.1)
    # the spread (of the mid, as max_spread_pct limits are written) from which an entry is at its stop
    for option in (True, False):
        limit = spread_at_stop_pct(0.30, option=option)
        half = limit / 200
        assert loss_at_fill_pct(1 - half, 1 + half, option=option) == pytest.approx(0.30)
    assert spread_at_stop_pct(100.0, option=False) == math.inf  # no spread loses a whole share at once


def test_a_contract_whose_spread_puts_it_at_its_stop_is_not_bought(snapshot: Snapshot) -> None:
    """The shipped OptionsBot allows spreads up to 10 % (chain_rules.max_spread_pct) beside a 0.30 % stop: a contract
    3 % wide was bought at the ask, valued at the bid the next tick, and sold at the stop, its spread lost, up to
    max_trades_per_day a day (audit 21a s5). Such a contract is skipped like one outside the chain rules."""
    best = _best(snapshot)
    wide = _chain_with(snapshot, best.symbol, bid=9.70, ask=10.00)  # 3 % of the mid: inside the 10 % limit
    assert (spread_pct(9.70, 10.00) or 99) <= RULES.max_spread_pct and at_stop_on_fill(9.70, 10.00, STOP, option=True)
    second = _best(wide)
    assert second.symbol != best.symbol
    order, choice = plan(OPTIONS, "SPY", wide)
    assert order is not None and choice is not None and order.symbol == second.symbol
    # narrower than the stop: still the one chosen
    narrow = _chain_with(snapshot, best.symbol, bid=9.98, ask=10.00)  # 0.2 % of the ask
    assert _best(narrow).symbol == best.symbol


def test_with_every_contract_at_its_stop_once_bought_the_entry_is_unsized_and_says_both_figures(
    snapshot: Snapshot,
) -> None:
    """No contract left: the entry is not sized, and the reason says the stop and what the narrowest contract would
    lose at once; once a day by its words (`reason_kind`), as its figures move every tick."""
    chain = snapshot.option_chains["SPY"]
    wide = {c.symbol: dataclasses.replace(c, bid=round(c.ask * 0.97, 2)) for c in chain if c.ask > 0.5}
    spread_out = dataclasses.replace(snapshot, option_chains={**snapshot.option_chains, "SPY": tuple(wide.values())})
    request, choice, why = explain(OPTIONS, "SPY", spread_out)
    assert request is None and choice is None and why is not None
    assert why.startswith("no call of SPY narrow enough for exits.stop_loss_pct (0.3 %): "), why
    said = re.search(r"the narrowest, (SPY\S+) \(bid ([\d.]+), ask ([\d.]+)\), loses its spread, ([\d.]+) % of the ask", why)
    assert said is not None and said[1] in wide, why
    assert float(said[4]) == pytest.approx(loss_at_fill_pct(float(said[2]), float(said[3]), option=True), abs=0.01)
    assert 2.5 < float(said[4]) < 3.5  # 3 % wide, a cent's rounding either way
    wider = {s: dataclasses.replace(c, bid=round(c.ask * 0.96, 2)) for s, c in wide.items()}
    other = explain(OPTIONS, "SPY", dataclasses.replace(snapshot, option_chains={"SPY": tuple(wider.values())}))[2]
    assert other is not None and other != why and reason_kind(other) == reason_kind(why)
    # the chain rules told first: a reason of an earlier filter is still that one
    no_delta = dataclasses.replace(OPTIONS, chain_rules=dataclasses.replace(RULES, delta_min=0.999, delta_max=1.0))
    assert "delta_min..delta_max" in (explain(no_delta, "SPY", spread_out)[2] or "")


@pytest.mark.parametrize(("bot", "symbol", "ask"), [(MOMENTUM, "AAPL", 100.0), (CRYPTO, "BTC/USD", 60_000.0)])
def test_a_share_or_coin_whose_spread_puts_it_at_its_stop_is_not_bought(
    snapshot: Snapshot, bot: TradingBotConfig, symbol: str, ask: float
) -> None:
    """A share or coin is bought at the ask and valued at the mid: half its spread is lost the moment it fills. A
    stop of 0.2 % beside health.max_spread_pct 1 % let in quotes whose entry the stop closed the next tick."""
    tight = _with_stop(bot, 0.2)
    at_stop = with_quote(snapshot, symbol, ask * 0.996, ask)  # 0.4 %: half of it 0.2 % of the ask
    assert usable(at_stop.quotes[symbol], MAX_SPREAD)
    request, _choice, why = explain(tight, symbol, at_stop)
    assert request is None and why is not None
    unit = f"a share of {symbol}" if bot is MOMENTUM else f"a buy of {symbol}"
    assert why.startswith(f"{unit} is at exits.stop_loss_pct (0.2 %) the moment it fills: bought at the ask"), why
    assert "it loses half the spread, 0.2 % of the ask, at once" in why, why
    inside = with_quote(snapshot, symbol, ask * 0.997, ask)  # half of 0.3 %: 0.15 %
    assert explain(tight, symbol, inside)[0] is not None
    assert explain(bot, symbol, at_stop)[0] is not None  # the shipped stop is wider than half that spread


# --- the capital room counts the entries still working -----------------------------------------------------------


def _working(symbol: str, qty: float | None, *, limit: float | None = None, notional: float | None = None,
             filled: float = 0.0, filled_price: float | None = None, side: str = "buy") -> Order:  # fmt: skip
    return Order("b1", "x-1", symbol, side, qty, notional, filled, filled_price, "limit" if limit else "market",  # type: ignore[arg-type]
                 "day", limit, "partially_filled" if filled else "new", NOW, "us_equity")  # fmt: skip


def test_the_room_is_less_what_working_buys_will_cost_once_filled(snapshot: Snapshot) -> None:
    """An entry granted in an earlier tick and still resting is in no position yet: counted by nothing, the next
    tick had the whole deployable room again, granted entries against the same capital, and the cash reserve was
    breached once they filled. Its unfilled part is priced as a new entry is (`cost_usd`)."""
    ask = snapshot.quotes["AAPL"].ask

    def room(*orders: Order) -> float:
        return room_usd(70_000, dataclasses.replace(snapshot, open_orders=orders))

    assert room(_working("AAPL", 100, limit=150.0)) == pytest.approx(70_000 - 15_000)  # at its limit
    assert room(_working("AAPL", 100)) == pytest.approx(70_000 - 100 * ask)  # a market order: at the ask now
    assert room(_working("AAPL", 100, limit=150.0, filled=40, filled_price=150.0)) == pytest.approx(70_000 - 9_000)
    assert room(_working("BTC/USD", None, notional=5_000.0, filled=0.01, filled_price=100_000.0)) == pytest.approx(66_000)
    assert room(_working("AAPL", 100, limit=150.0, side="sell")) == 70_000  # an exit commits no capital
    assert room(_working("AAPL", 600, limit=150.0)) == 0.0  # past the deployable: none left, never below 0


def test_a_working_buy_whose_cost_cannot_be_told_leaves_no_room(snapshot: Snapshot) -> None:
    """Unknown is not nothing: a working buy with no price (a market order on a symbol quoted nowhere this tick),
    a fill without its price, or the open orders not read at all, and no entry is sized."""
    assert room_usd(70_000, dataclasses.replace(snapshot, open_orders=(_working("MSFT", 100),))) == 0.0
    odd = _working("BTC/USD", None, notional=5_000.0, filled=0.01, filled_price=None)
    assert room_usd(70_000, dataclasses.replace(snapshot, open_orders=(odd,))) == 0.0
    assert room_usd(70_000, dataclasses.replace(snapshot, open_orders=None)) == 0.0
