"""The facts builder: exactly the documented vocabulary for every kind, computed without writing anything."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from datetime import date, datetime, time, timedelta, timezone
from typing import Any

import pytest

from engine.brokers.base import Account, BrokerError, DataNeeds, MarketClock, OptionContract, Quote, Snapshot
from engine.config.model import HealthSettings, ReferenceSymbols
from engine.core.clock import ManualClock
from engine.core.store import PositionRow
from engine.rules.facts import BOT_KINDS, vocabulary
from engine.trading.facts_builder import (
    CLOSE_MARGIN_MINUTES,
    BotInputs,
    FeedHealth,
    PreflightCheck,
    SystemInputs,
    TickBots,
    bot_facts,
    daily_pnl_pct,
    feed_health,
    position_pnl_pct,
    positions_pnl_pct,
    system_facts,
)
from engine.trading.gate import Gate
from engine.trading.view import TickView, read_view
from tests.trading.conftest import Rig

FRESH = FeedHealth(0, 0)


BOTS = ("mom_AAPL", "opt_core", "crypto_core")


def inputs(preflight: PreflightCheck = lambda facts: ()) -> BotInputs:
    return BotInputs(history={}, budgets=dict.fromkeys(BOTS, 100.0), gate=Gate(0, 1000.0),
                     preflight=dict.fromkeys(BOT_KINDS, preflight), assets={})  # fmt: skip


def current_view(rig: Rig) -> TickView:
    engine = rig.engine
    return read_view(engine.store, engine.broker.snapshot(engine.needs), rig.clock.now(), engine.tz)


@pytest.mark.parametrize("kind", ["system", "portfolio"])
def test_system_facts_are_exactly_the_vocabulary(rig: Rig, kind: str) -> None:
    rig.ticks(3)
    facts = rig.engine._system_facts(current_view(rig), 0, FRESH, kill_triggered=False)
    assert set(facts) == set(vocabulary(kind))


def test_each_bot_kind_gets_exactly_its_vocabulary(rig: Rig) -> None:
    rig.ticks(3)
    view = current_view(rig)
    system = rig.engine._system_facts(view, 0, FRESH, kill_triggered=False)
    kinds = set()
    for bot in rig.engine.bots:
        facts = bot_facts(view, bot, system, inputs()).facts
        assert set(facts) == set(vocabulary(bot.kind)), bot.kind
        kinds.add(bot.kind)
    assert kinds == {"momentum", "options", "crypto"}


def test_building_facts_writes_nothing_and_gives_the_same_answer_twice(rig: Rig) -> None:
    rig.ticks(3)
    view = current_view(rig)
    engine = rig.engine
    statements, log_size = engine.store.statements, rig.log.stat().st_size
    system = engine._system_facts(view, 0, FRESH, kill_triggered=False)
    first = [bot_facts(view, bot, system, inputs()) for bot in engine.bots]
    second = [bot_facts(view, bot, system, inputs()) for bot in engine.bots]
    assert first == second
    engine.journal.flush()
    assert engine.store.statements == statements and rig.log.stat().st_size == log_size


def test_the_bots_of_a_tick_share_only_what_the_tick_decides(rig: Rig) -> None:
    """`TickBots` works out once for the bots of a tick what only the tick decides (the windows of each session, the
    dict their facts are copied from): each bot's facts must still be the ones built for it alone, a bot with a
    session of its own gets its own windows, the dict copied from is never handed out (a caller's change to one
    bot's facts reaches no other bot), and one made for other system facts is never used."""
    rig.ticks(3)
    view = current_view(rig)
    engine = rig.engine
    system = engine._system_facts(view, 0, FRESH, kill_triggered=False)
    alone = {bot.bot_id: bot_facts(view, bot, system, inputs()).facts for bot in engine.bots}
    shared = inputs()._replace(shared=TickBots(view, system, CLOSE_MARGIN_MINUTES))
    for bot in engine.bots:
        facts = bot_facts(view, bot, system, shared).facts
        assert facts == alone[bot.bot_id], bot.bot_id
        facts["bot_halted"] = facts["system_armed"] = facts["trades_crypto"] = "changed"
    assert [bot_facts(view, bot, system, shared).facts for bot in engine.bots] == list(alone.values())
    bot = next(b for b in engine.bots if b.kind == "momentum")
    inside = alone[bot.bot_id]["in_trade_window"]
    other = dataclasses.replace(bot, trade_start=time(0, 0), trade_end=time(0, 1) if inside else time(23, 59))
    assert bot_facts(view, other, system, shared).facts == bot_facts(view, other, system, inputs()).facts
    assert bot_facts(view, other, system, shared).facts["in_trade_window"] is not inside
    closed = {**system, "market_open": not system["market_open"]}
    assert bot_facts(view, bot, closed, shared).facts == bot_facts(view, bot, closed, inputs()).facts
    assert bot_facts(view, bot, closed, shared).facts["tradable_now"] is closed["market_open"]


def test_preflight_is_answered_from_the_facts_and_its_failures_returned(rig: Rig) -> None:
    rig.ticks(3)
    view = current_view(rig)
    system = system_facts(view, _inputs(rig))
    bot = rig.engine.bots[0]
    seen: list[float] = []

    def preflight(facts: Mapping[str, Any]) -> tuple[str, ...]:
        seen.append(facts["budget_usd"])
        return ("budget_known",)

    built = bot_facts(view, bot, system, inputs(preflight))
    assert seen == [100.0] and built.failed_checks == ("budget_known",) and built.facts["preflight_ok"] is False


def _inputs(rig: Rig) -> SystemInputs:
    return SystemInputs(rig.engine.settings_facts, FRESH, True, "armed", 0, 0, True, False)


def test_a_missing_price_makes_the_pnl_missing_never_a_guess(clock: ManualClock) -> None:
    held = (PositionRow("b", "AAPL", 2.0, 100.0, clock.now() - timedelta(minutes=1)),)
    empty = Snapshot(clock.now(), None, (), (), {}, {}, None)
    assert position_pnl_pct(held, {}, empty, max_spread_pct=1.0) is None
    assert position_pnl_pct((), {}, empty, max_spread_pct=1.0) == 0.0
    assert position_pnl_pct(held, {"AAPL": 101.0}, empty, max_spread_pct=1.0) == pytest.approx(1.0)
    quoted = Snapshot(clock.now(), None, (), (), {"AAPL": Quote("AAPL", 100.9, 101.1, clock.now())}, {}, None)
    assert position_pnl_pct(held, {}, quoted, max_spread_pct=1.0) == pytest.approx(1.0)
    one_sided = Snapshot(clock.now(), None, (), (), {"AAPL": Quote("AAPL", 0.0, 101.1, clock.now())}, {}, None)
    assert position_pnl_pct(held, {}, one_sided, max_spread_pct=1.0) is None  # no mid from a quote with a side at 0


def test_the_worst_position_is_judged_on_its_own(clock: ManualClock) -> None:
    """ETH held from 3086.36 to 3012.23 (-2.4 %) beside BTC up 5.7 %: together the bot was up, and a 0.75 % stop
    judged on that never saw the loss. The worst position's own P&L is a fact of its own, the stop's."""
    opened = clock.now() - timedelta(minutes=5)
    held = (PositionRow("c", "ETH/USD", 1.0, 3086.36, opened), PositionRow("c", "BTC/USD", 0.1, 90000.0, opened))
    empty = Snapshot(clock.now(), None, (), (), {}, {}, None)
    prices = {"ETH/USD": 3012.23, "BTC/USD": 95130.0}
    together, worst = positions_pnl_pct(held, prices, empty, max_spread_pct=1.0)
    assert together is not None and together > 0
    assert worst == pytest.approx(100 * (3012.23 / 3086.36 - 1))
    assert positions_pnl_pct(held, {"BTC/USD": 95130.0}, empty, max_spread_pct=1.0) == (None, None)  # ETH unpriced
    assert positions_pnl_pct((), {}, empty, max_spread_pct=1.0) == (0.0, 0.0)


def test_an_option_is_valued_at_what_selling_it_gets_not_at_its_mark(clock: ManualClock) -> None:
    """Bought at the ask 12.25; the broker's mark is the mid, 12.30, but a sale fills at the bid. Judged at the
    mark, the position showed +0.41 % and a take profit of 0.40 % fired on a gain the sale would not get."""
    occ, now = "SPY261231C00510000", clock.now()
    held = (PositionRow("opt_core", occ, 3.0, 12.25, now - timedelta(minutes=1)),)
    contract = OptionContract(occ, "SPY", "call", 510.0, date(2026, 12, 31), 12.28, 12.32, now - timedelta(seconds=30),
                              0.43, 0.01, -0.1, 0.5, 0.2)  # fmt: skip
    chains = Snapshot(now, None, (), (), {}, {"SPY": (contract,)}, None)
    mark = {occ: 12.30}
    assert position_pnl_pct(held, mark, chains, max_spread_pct=1.0) == pytest.approx(100 * (12.30 / 12.25 - 1))
    at_bid = 100 * (12.28 / 12.25 - 1)  # the mark less half the chain's spread: 0.24 %, under the 0.40 % target
    assert position_pnl_pct(held, mark, chains, max_spread_pct=1.0, max_quote_age_s=120) == pytest.approx(at_bid)
    assert position_pnl_pct(held, {}, chains, max_spread_pct=1.0, max_quote_age_s=120) == pytest.approx(at_bid)
    # a chain quote the chain rules would not take (too old, one-sided): the mark, as the broker gives it
    assert position_pnl_pct(held, mark, chains, max_spread_pct=1.0, max_quote_age_s=20) == pytest.approx(100 * (12.30 / 12.25 - 1))
    one_sided = Snapshot(now, None, (), (), {}, {"SPY": (dataclasses.replace(contract, bid=0.0),)}, None)
    assert position_pnl_pct(held, mark, one_sided, max_spread_pct=1.0, max_quote_age_s=120) == pytest.approx(100 * (12.30 / 12.25 - 1))
    assert position_pnl_pct(held, {}, one_sided, max_spread_pct=1.0, max_quote_age_s=120) is None  # nothing to value it at


def test_the_options_bot_s_pnl_is_at_the_sale_price(rig: Rig) -> None:
    """bot_facts gives position_pnl_pct the OptionsBot's chain rules: its contract is valued below the mark."""
    rig.until(lambda r: any(p.bot_id == "opt_core" for p in r.store.positions()))
    view = current_view(rig)
    [held] = view.bot("opt_core").positions
    [contract] = [c for chain in view.snapshot.option_chains.values() for c in chain if c.symbol == held.symbol]
    sale = view.broker_prices[held.symbol] - (contract.ask - contract.bid) / 2
    system = rig.engine._system_facts(view, 0, FRESH, kill_triggered=False)
    facts = bot_facts(view, rig.engine.bot("opt_core"), system, inputs()).facts
    assert facts["position_pnl_pct"] == pytest.approx((sale / held.avg_entry_price - 1) * 100)


# --- item 2: staleness per symbol, per market ----------------------------------------------------------------

T0 = datetime(2026, 11, 23, 15, 0, tzinfo=timezone.utc)


def health(**fields: Any) -> HealthSettings:
    base = HealthSettings(max_price_staleness_seconds=15, max_api_failures_in_window=5, api_failure_window_seconds=60)
    return dataclasses.replace(base, **fields)


def feed_snapshot(ages: dict[str, float | None], *, market_open: bool | None = True, failed: tuple[str, ...] = ()) -> Snapshot:
    """Quotes `ages[symbol]` seconds old (None: left out of the answer) at T0."""
    quotes = {s: Quote(s, 99.9, 100.1, T0 - timedelta(seconds=age)) for s, age in ages.items() if age is not None}
    clock = None if market_open is None else MarketClock(T0, market_open, T0 + timedelta(hours=17), T0 + timedelta(hours=1))
    errors = tuple(BrokerError("server", "down", status=503, operation=op) for op in failed)
    return Snapshot(T0, None, (), (), quotes, {}, clock, errors=errors)


NEEDS = DataNeeds(stocks=("AAPL", "SPY", "QQQ"), crypto=("BTC/USD", "ETH/USD"))
FRESH_ALL: dict[str, float | None] = {"AAPL": 1.0, "SPY": 1.0, "QQQ": 1.0, "BTC/USD": 1.0, "ETH/USD": 1.0}


def test_one_thin_ticker_is_a_stale_quote_not_a_stale_market() -> None:
    feed = feed_health(feed_snapshot({**FRESH_ALL, "AAPL": 600.0}), NEEDS, T0, health())
    assert (feed.stale_quotes, feed.stale_markets) == (1, 0)
    feed = feed_health(feed_snapshot({**FRESH_ALL, "AAPL": None}), NEEDS, T0, health())  # left out of the answer
    assert (feed.stale_quotes, feed.stale_markets) == (1, 0)


def test_a_market_whose_every_watched_symbol_is_stale_is_a_stale_market() -> None:
    feed = feed_health(feed_snapshot({**FRESH_ALL, "AAPL": 20.0, "SPY": 30.0, "QQQ": None}), NEEDS, T0, health())
    assert (feed.stale_quotes, feed.stale_markets, feed.markets) == (3, 1, ("stocks",))
    feed = feed_health(feed_snapshot({**FRESH_ALL, "BTC/USD": 16.0, "ETH/USD": 99.0}), NEEDS, T0, health())
    assert (feed.stale_markets, feed.markets) == (1, ("crypto",))


def test_a_quote_exactly_the_limit_old_is_not_stale_and_one_microsecond_more_is() -> None:
    at_limit = feed_health(feed_snapshot({**FRESH_ALL, "AAPL": 15.0}), NEEDS, T0, health())
    past_it = feed_health(feed_snapshot({**FRESH_ALL, "AAPL": 15.000001}), NEEDS, T0, health())
    assert (at_limit.stale_quotes, past_it.stale_quotes) == (0, 1)
    fractional = health(max_price_staleness_seconds=2.5)
    assert feed_health(feed_snapshot({**FRESH_ALL, "AAPL": 2.5}), NEEDS, T0, fractional).stale_quotes == 0
    assert feed_health(feed_snapshot({**FRESH_ALL, "AAPL": 2.6}), NEEDS, T0, fractional).stale_quotes == 1
    never = health(max_price_staleness_seconds=1e11)  # "never stale": past any date, held to a century
    assert feed_health(feed_snapshot({**FRESH_ALL, "AAPL": 86400.0 * 3650}), NEEDS, T0, never).stale_quotes == 0


def test_a_quote_stamped_ahead_of_the_clock_by_more_than_the_limit_is_stale() -> None:
    """A feed frozen on a quote from the future would never grow old: beyond the limit ahead, it is stale too."""
    within = feed_health(feed_snapshot({**FRESH_ALL, "AAPL": -15.0}), NEEDS, T0, health())  # 15 s ahead: clock skew
    beyond = feed_health(feed_snapshot({**FRESH_ALL, "AAPL": -15.000001}), NEEDS, T0, health())
    assert (within.stale_quotes, beyond.stale_quotes) == (0, 1)
    years_ahead = {**FRESH_ALL, "AAPL": -86400.0 * 365, "SPY": -86400.0 * 365, "QQQ": -86400.0 * 365}
    assert feed_health(feed_snapshot(years_ahead), NEEDS, T0, health()).markets == ("stocks",)


def test_a_bot_whose_quote_is_stamped_ahead_of_the_clock_has_no_quote_age(rig: Rig) -> None:
    rig.ticks(3)
    view = current_view(rig)
    bot = rig.engine.bot("mom_AAPL")
    system = system_facts(view, _inputs(rig))
    limit = system["health_max_price_staleness_seconds"]

    def age_with_aapl_at(offset_s: float) -> object:
        quote = dataclasses.replace(view.snapshot.quotes["AAPL"], timestamp=view.now + timedelta(seconds=offset_s))
        snapshot = dataclasses.replace(view.snapshot, quotes={**view.snapshot.quotes, "AAPL": quote})
        return bot_facts(dataclasses.replace(view, snapshot=snapshot), bot, system, inputs()).facts["quote_age_s"]

    assert age_with_aapl_at(-2.0) == pytest.approx(2.0)
    assert age_with_aapl_at(limit) == pytest.approx(-limit)  # within the limit ahead: skew, still an age
    assert age_with_aapl_at(limit + 1) is None  # an age that cannot be trusted is missing: quotes_fresh fails closed


def test_stock_quotes_going_stale_after_the_close_do_not_make_a_stale_market() -> None:
    closed = feed_snapshot({**FRESH_ALL, "AAPL": 3600.0, "SPY": 3600.0, "QQQ": 3600.0}, market_open=False)
    feed = feed_health(closed, NEEDS, T0, health())
    assert (feed.stale_quotes, feed.stale_markets) == (0, 0)


def test_a_reference_symbol_judges_its_market_alone() -> None:
    spy = health(reference_symbols=ReferenceSymbols(stocks="SPY"))
    feed = feed_health(feed_snapshot({**FRESH_ALL, "SPY": 60.0}), NEEDS, T0, spy)
    assert (feed.stale_markets, feed.markets) == (1, ("stocks",))  # SPY is stale although AAPL and QQQ are fresh
    thin = feed_snapshot({**FRESH_ALL, "AAPL": 600.0, "QQQ": 600.0})
    assert feed_health(thin, NEEDS, T0, spy).stale_markets == 0  # SPY is fresh: the others are only thin
    btc = health(reference_symbols=ReferenceSymbols(crypto="BTC/USD"))
    assert feed_health(feed_snapshot({**FRESH_ALL, "BTC/USD": 20.0}), NEEDS, T0, btc).markets == ("crypto",)


def test_a_market_that_looks_stale_because_a_read_failed_is_unknown_not_stale() -> None:
    gone: dict[str, float | None] = {"AAPL": None, "SPY": None, "QQQ": None, "BTC/USD": 1.0, "ETH/USD": 1.0}
    assert feed_health(feed_snapshot(gone, failed=("stock_quotes",)), NEEDS, T0, health()).stale_markets is None
    old = {**FRESH_ALL, "AAPL": 60.0, "SPY": 60.0, "QQQ": 60.0}
    assert feed_health(feed_snapshot(old, market_open=None, failed=("clock",)), NEEDS, T0, health()).stale_markets is None
    # ...unless another market is stale for certain
    both = {**gone, "BTC/USD": 60.0, "ETH/USD": 60.0}
    assert feed_health(feed_snapshot(both, failed=("stock_quotes",)), NEEDS, T0, health()).stale_markets == 1


# --- item 6: daily P&L without deposits and withdrawals ------------------------------------------------------


def account(**fields: Any) -> Account:
    base = Account(equity=100_000.0, last_equity=100_000.0, cash=100_000.0, buying_power=100_000.0, status="ACTIVE",
                   trading_blocked=False, account_blocked=False, non_trade_cash_today=0.0)  # fmt: skip
    return dataclasses.replace(base, **fields)


def test_a_withdrawal_is_not_a_loss_and_a_deposit_does_not_hide_one() -> None:
    assert daily_pnl_pct(account(equity=95_000.0, non_trade_cash_today=-5_000.0)) == pytest.approx(0.0)
    assert daily_pnl_pct(account(equity=94_000.0, non_trade_cash_today=-5_000.0)) == pytest.approx(-1.0)
    assert daily_pnl_pct(account(equity=109_000.0, non_trade_cash_today=10_000.0)) == pytest.approx(-1.0)
    assert daily_pnl_pct(account(equity=101_000.0)) == pytest.approx(1.0)
    assert daily_pnl_pct(account(non_trade_cash_today=None)) is None  # not known: missing, never guessed as 0
    assert daily_pnl_pct(account(last_equity=0.0)) is None
    assert daily_pnl_pct(None) is None


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_a_number_no_guard_can_compare_is_missing(rig: Rig, bad: float) -> None:
    """NaN compares false with everything: a NaN loss would never reach the loss limit, a NaN P&L never a stop."""
    assert daily_pnl_pct(account(equity=bad)) is None
    assert daily_pnl_pct(account(non_trade_cash_today=bad)) is None
    held = (PositionRow("b", "AAPL", 2.0, 100.0, T0),)
    empty = Snapshot(T0, None, (), (), {}, {}, None)
    assert position_pnl_pct(held, {"AAPL": bad}, empty, max_spread_pct=1.0) is None
    rig.ticks(1)
    view = current_view(rig)
    assert view.snapshot.account is not None
    odd = dataclasses.replace(view.snapshot, account=dataclasses.replace(view.snapshot.account, equity=bad))
    facts = system_facts(dataclasses.replace(view, snapshot=odd), _inputs(rig))
    assert facts["equity_usd"] is None and facts["daily_pnl_pct"] is None


# --- item 4: the account's flags, as facts --------------------------------------------------------------------


def test_the_account_s_flags_are_facts(rig: Rig) -> None:
    rig.exchange.flags = dataclasses.replace(rig.exchange.flags, crypto_status="INACTIVE", options_trading_level=1,
                                             trade_suspended_by_user=True)  # fmt: skip
    facts = system_facts(current_view(rig), _inputs(rig))
    assert facts["account_ok"] is False
    assert (facts["account_status"], facts["trading_blocked"], facts["account_blocked"]) == ("ACTIVE", False, False)
    assert (facts["trade_suspended_by_user"], facts["crypto_status"], facts["options_trading_level"]) == (True, "INACTIVE", 1)


# --- item 13: a position is a symbol, held or being entered ---------------------------------------------------


def test_open_positions_counts_distinct_symbols_held_or_being_entered(rig: Rig) -> None:
    from engine.core.store import OrderRow
    from engine.trading.view import BotRecords

    rig.ticks(3)
    view = current_view(rig)
    bot = rig.engine.bot("crypto_core")
    system = system_facts(view, _inputs(rig))
    t = rig.clock.now()
    btc = PositionRow("crypto_core", "BTC/USD", 0.001, 60_000.0, t)
    entry = OrderRow("crypto_core-20261123-0009", "crypto_core", t.date(), "entry", "BTC/USD", "buy", None, 50.0, "limit",
                     60_000.0, "gtc", "new", "b1", 0.0, None, "add", None, t, t)  # fmt: skip

    def count(positions: tuple[PositionRow, ...], working: tuple[OrderRow, ...]) -> int:
        records = BotRecords(positions=positions, open_entries=working)
        counted = dataclasses.replace(view, bots={**view.bots, "crypto_core": records})
        return bot_facts(counted, bot, system, inputs()).facts["open_positions"]

    assert count((btc,), ()) == 1
    assert count((btc,), (entry,)) == 1  # a second entry on a held pair is one position, not two...
    eth = dataclasses.replace(entry, symbol="ETH/USD")
    assert count((btc,), (eth,)) == 2  # ...a pair being entered is one
    assert count((), (eth,)) == 1
