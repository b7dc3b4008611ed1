"""The simulated option chain: the vectorised model agrees with the scalar one, quotes to the cent, one price a tick."""

from __future__ import annotations

import dataclasses
import math
from datetime import datetime, timedelta, timezone

import numpy as np
import pytest

from engine.brokers.base import OptionContract, OrderRequest
from engine.brokers.sim import exchange as exchange_module
from engine.brokers.sim import options
from engine.brokers.sim.exchange import SPREAD, SimExchange
from engine.brokers.sim.prices import PricePaths
from engine.core.clock import ManualClock

MONDAY_10AM = datetime(2026, 11, 23, 15, 0, tzinfo=timezone.utc)


def test_erfc_keeps_relative_precision_over_the_whole_line() -> None:
    x = np.concatenate((np.linspace(-27.0, 27.0, 100_001), [0.0, 0.46875, -0.46875, 4.0, -4.0, 1e-20, -1e-20]))
    got = options.erfc(x)
    want = np.array([math.erfc(v) for v in x.tolist()])
    normal = want > 1e-300  # below, math.erfc itself is subnormal
    assert np.max(np.abs(got[normal] - want[normal]) / want[normal]) < 1e-14
    assert np.max(np.abs(got[~normal] - want[~normal])) < 1e-300


def _grid() -> tuple[list[float], list[float], list[float], list[bool]]:
    """Spots, strikes, years and types over what a chain holds and beyond: ±25 % of the money, 1 hour to 2 years."""
    spots: list[float] = []
    strikes: list[float] = []
    years: list[float] = []
    calls: list[bool] = []
    for spot in (12.5, 190.0, 500.0, 60_000.0):
        for moneyness in np.linspace(-0.25, 0.25, 41).tolist():
            for time_left in (1 / (365 * 24), 1 / 365, 7 / 365, 30 / 365, 0.25, 1.0, 2.0):
                for is_call in (True, False):
                    spots.append(spot)
                    strikes.append(spot * math.exp(moneyness))
                    years.append(time_left)
                    calls.append(is_call)
    return spots, strikes, years, calls


def _both_models(field: str) -> list[tuple[float, float, float, float, bool]]:
    """(scalar, vectorised, spot, strike, is_call) of `field` for every contract of the grid."""
    spots, strikes, years, calls = _grid()
    out = []
    for spot in sorted(set(spots)):
        rows = [i for i, s in enumerate(spots) if s == spot]
        many = options.black_scholes_many(
            spot, np.array([strikes[i] for i in rows]), np.array([years[i] for i in rows]), np.array([calls[i] for i in rows])
        )
        for j, i in enumerate(rows):
            vol = options.implied_vol("X", strikes[i], spot)
            scalar = options.black_scholes(spot, strikes[i], years[i], vol, "call" if calls[i] else "put")[field]
            out.append((scalar, float(getattr(many, field)[j]), spot, strikes[i], calls[i]))
    return out


def test_vectorised_prices_agree_with_the_scalar_model() -> None:
    worst = max(abs(vector - scalar) / scalar for scalar, vector, *_ in _both_models("price"))
    assert worst < 1e-6  # in practice below 1e-9


@pytest.mark.parametrize("field", ["delta", "gamma", "theta", "vega", "rho"])
def test_vectorised_greeks_agree_with_the_scalar_model(field: str) -> None:
    """Relative 1e-6, except where the value is below what the scalar model itself resolves: its put delta is
    N(d1) - 1, which near zero keeps only the absolute precision of 1 (about 1e-16), and so does theta."""
    for scalar, vector, spot, strike, is_call in _both_models(field):
        assert vector == pytest.approx(scalar, rel=1e-6, abs=1e-15), (field, spot, strike, is_call)


def test_the_vectorised_put_delta_is_the_precise_one() -> None:
    """Where the two models part (a far out-of-the-money put about to expire), the vectorised one is right."""
    spot, years = 500.0, 1 / (365 * 24)
    strikes = np.linspace(400.0, 600.0, 201)
    many = options.black_scholes_many(spot, strikes, np.full(strikes.shape, years), np.zeros(strikes.shape, dtype=bool))
    for strike, delta in zip(strikes.tolist(), many.delta.tolist(), strict=True):
        vol = options.implied_vol("X", strike, spot)
        d1 = (math.log(spot / strike) + (options.RATE + vol * vol / 2) * years) / (vol * math.sqrt(years))
        precise = -0.5 * math.erfc(d1 / math.sqrt(2))  # -N(-d1), with no cancellation
        assert delta == pytest.approx(precise, rel=1e-13, abs=1e-300)


def test_implied_vols_agree_with_the_scalar_smile() -> None:
    strikes = np.linspace(400.0, 600.0, 81)
    vols = options.implied_vols(strikes, 500.0)
    for strike, vol in zip(strikes.tolist(), vols.tolist(), strict=True):
        assert vol == pytest.approx(options.implied_vol("SPY", strike, 500.0), rel=1e-14)


def test_round_cents_is_pythons_round_to_the_bit() -> None:
    rng = np.random.default_rng(3)
    cents = np.round(rng.uniform(0.0, 60.0, 50_000), 2)
    values = np.concatenate(
        (
            rng.uniform(0.0, 60.0, 50_000),
            rng.uniform(0.0, 60_000.0, 50_000),
            np.arange(0, 100_000) / 1000.0,  # every half cent below 100
            cents - 0.005,  # a cheap contract's bid: its mid minus half a cent
            cents + 0.005,
            cents * 1.001 / 2 + cents,  # mid + half spread
            np.arange(0, 10_000) / 800.0,  # exact binary ties (0.125, 0.375, ...)
            [0.0, 0.01, 0.005, 0.015, 0.125, 0.375, 1.005, 2.675, 0.285],
        )
    )
    got = options.round_cents(values)
    want = np.array([round(v, 2) for v in values.tolist()])
    assert np.array_equal(got, want)


def test_vectorised_quotes_are_the_scalar_cent_quotes() -> None:
    spot = 500.0
    strikes = np.linspace(300.0, 700.0, 401)
    for years in (1 / 365, 30 / 365):
        for is_call in (True, False):
            flags = np.full(strikes.shape, is_call)
            priced = options.price_contracts(spot, strikes, np.full(strikes.shape, years), flags, SPREAD["us_option"])
            for i in range(len(strikes)):
                assert priced.mid[i] == round(priced.price[i], 2)
                assert (priced.bid[i], priced.ask[i]) == options.cent_quote(priced.mid[i], SPREAD["us_option"])
                assert priced.ask[i] >= priced.bid[i] + 0.01 - 1e-12 and priced.bid[i] >= 0.01


def test_the_chain_is_todays_chain() -> None:
    """Pinned from the scalar chain this replaced (same seed, same instant): cents equal, greeks within 1e-9."""
    chain = SimExchange(ManualClock(MONDAY_10AM)).option_chain("SPY", 7, 45)
    assert len(chain) == 210
    pinned = {
        0: ("SPY261204C00450000", 50.56, 50.66, 0.9919925772602454, 0.0009822007810744604, -0.07058552847593481),
        1: ("SPY261204P00450000", 0.06, 0.07, -0.008007422739754633, 0.0009822007810744604, -0.02133122191861197),
        20: ("SPY261204C00500000", 9.05, 9.07, 0.5199527873929246, 0.01815626836963197, -0.4161164165676643),
        21: ("SPY261204P00500000", 8.43, 8.45, -0.4800472126070754, 0.01815626836963197, -0.36138940928175006),
        101: ("SPY261218P00490000", 8.07, 8.09, -0.3512311441519844, 0.011273155243356476, -0.22147623484462303),
        # the week of New Year's Day expires on Thursday 2026-12-31: the market is shut on Friday 2027-01-01
        209: ("SPY261231P00550000", 50.54, 50.64, -0.8573996454291357, 0.005489737033633168, -0.0684185637125076),
    }
    for i, (symbol, bid, ask, delta, gamma, theta) in pinned.items():
        c = chain[i]
        assert (c.symbol, c.bid, c.ask) == (symbol, bid, ask)
        assert c.delta == pytest.approx(delta, rel=1e-9) and c.gamma == pytest.approx(gamma, rel=1e-9)
        assert c.theta == pytest.approx(theta, rel=1e-9)


def test_a_contract_alone_and_in_its_chain_agree() -> None:
    clock = ManualClock(MONDAY_10AM)
    chain = SimExchange(clock).option_chain("SPY", 7, 45)
    alone = SimExchange(clock)
    for contract in chain:
        quote = alone.quote(contract.symbol)
        greeks = alone.greeks(contract.symbol)
        assert (quote.bid, quote.ask, quote.timestamp) == (contract.bid, contract.ask, contract.quote_time)
        assert greeks["delta"] == pytest.approx(contract.delta, rel=1e-9, abs=1e-15)
        assert greeks["gamma"] == pytest.approx(contract.gamma, rel=1e-9)


def test_within_a_tick_a_contract_has_one_price_whichever_way_it_was_asked() -> None:
    clock = ManualClock(MONDAY_10AM)
    exchange = SimExchange(clock)
    held = exchange.option_chain("SPY", 7, 45)[41].symbol  # a put: its delta differs in the last bits between models
    exchange.submit(OrderRequest(held, "buy", "opt", qty=1))
    clock.advance(3600)
    first = exchange.quote(held)  # the position is priced alone first, as a snapshot does
    greeks = exchange.greeks(held)
    in_chain = next(c for c in exchange.option_chain("SPY", 7, 45) if c.symbol == held)
    assert (in_chain.bid, in_chain.ask) == (first.bid, first.ask)
    assert (in_chain.delta, in_chain.gamma) == (greeks["delta"], greeks["gamma"])
    assert exchange.greeks(held) == greeks and exchange.quote(held) == first  # and after the chain too
    assert exchange.position_views()[0].current_price == exchange.last_price(held)


def test_a_chain_is_priced_once_an_instant() -> None:
    clock = ManualClock(MONDAY_10AM)
    exchange = SimExchange(clock)
    first, again = exchange.option_chain("SPY", 7, 45), exchange.option_chain("SPY", 7, 45)
    assert first == again and all(a is b for a, b in zip(first, again, strict=True))
    first.clear()  # the caller's list is its own
    assert len(exchange.option_chain("SPY", 7, 45)) == 210
    clock.advance(60)
    later = exchange.option_chain("SPY", 7, 45)
    assert later[20].symbol == again[20].symbol and later[20] != again[20]  # a minute on, the underlying moved


def test_contracts_built_from_their_fields_are_ordinary_option_contracts() -> None:
    clock = ManualClock(MONDAY_10AM)
    exchange = SimExchange(clock)
    exchange.option_chain("SPY", 7, 45)
    layout, priced = exchange._memo.tables[0]
    fast = exchange_module._contracts(layout, priced, clock.now(), from_state=True)
    built = exchange_module._contracts(layout, priced, clock.now(), from_state=False)
    assert fast == built and [hash(c) for c in fast] == [hash(c) for c in built]
    assert all(type(c) is OptionContract and repr(c) == repr(b) for c, b in zip(fast, built, strict=True))
    with pytest.raises(dataclasses.FrozenInstanceError):
        fast[0].bid = 1.0  # type: ignore[misc]


def test_a_step_fills_an_order_once_however_often_the_account_is_read() -> None:
    clock = ManualClock(MONDAY_10AM)
    exchange = SimExchange(clock, starting_cash=10_000_000)
    order = exchange.submit(OrderRequest("AAPL", "buy", "big", qty=5_000))  # 2,000 now, the rest over two steps
    clock.advance(5)
    assert exchange.find(order.id).filled_qty == 4_000
    assert exchange.find(order.id).filled_qty == 4_000  # the same step: no second fill
    exchange.submit(OrderRequest("AAPL", "buy", "small", "limit", "day", qty=1, limit_price=1.0))
    clock.advance(5)
    assert exchange.find(order.id).status == "filled"


def test_no_contract_expires_on_a_day_the_market_is_closed() -> None:
    """A week whose Friday is a holiday expires on its last trading day before it (Good Friday 2026-04-03:
    Thursday 04-02); the chain listed contracts expiring on the holiday itself, which do not exist."""
    from datetime import date

    from engine.core.calendar import market_calendar

    assert options.expiries(date(2026, 3, 30), 0, 10) == (date(2026, 4, 2),)
    assert options.expiries(date(2026, 3, 30), 4, 10) == ()  # Thursday is 3 days away: outside 4..10
    assert options.expiries(date(2026, 6, 15), 0, 4) == (date(2026, 6, 18),)  # Juneteenth, a Friday
    calendar = market_calendar()
    for week in range(104):
        monday = date(2026, 1, 5) + timedelta(weeks=week)
        for expiry in options.expiries(monday, 0, 60):
            assert calendar.is_trading_day(expiry), expiry
    chain = SimExchange(ManualClock(datetime(2026, 3, 30, 15, 0, tzinfo=timezone.utc))).option_chain("SPY", 0, 10)
    assert chain and {c.expiry for c in chain} == {date(2026, 4, 2)}


def test_a_short_window_without_a_friday_is_an_empty_chain() -> None:
    exchange = SimExchange(ManualClock(MONDAY_10AM))
    assert exchange.option_chain("SPY", 0, 2) == []  # Monday to Wednesday


def test_prices_are_todays_prices() -> None:
    """Pinned from the path generator as it was before it generated ahead: the same seed gives the same prices."""
    paths = PricePaths(7, MONDAY_10AM)
    assert paths.price("AAPL", MONDAY_10AM + timedelta(hours=2)) == 187.21010940586063
    assert paths.price("BTC/USD", MONDAY_10AM + timedelta(hours=5, seconds=7)) == 67611.40823946218
    assert paths.price("ZZZ", MONDAY_10AM + timedelta(minutes=61)) == 337.44345303040984


def test_a_path_is_the_same_however_it_is_walked() -> None:
    later = MONDAY_10AM + timedelta(hours=3)
    at_once = PricePaths(7, MONDAY_10AM).history("TSLA", later, 2161)
    walker = PricePaths(7, MONDAY_10AM)
    stepwise = [walker.price("TSLA", MONDAY_10AM + timedelta(seconds=5 * i)) for i in range(2161)]
    assert stepwise == at_once and len(at_once) == 2161


FRIDAY_EXPIRY = datetime(2026, 11, 27, 15, 0, tzinfo=timezone.utc)  # 10:00 New York, the day after Thanksgiving (13:00 close)
NEXT_MONDAY = datetime(2026, 11, 30, 15, 0, tzinfo=timezone.utc)


def test_a_contract_held_past_its_expiry_is_settled_at_that_close_not_priced_on() -> None:
    """An option held through its expiry's close is gone the next session, as at Alpaca: out of the money it
    expires worthless, in the money it is exercised into 100 shares a contract at the strike. The simulator kept
    both as positions, priced at the underlying's later price (a weekend's walk sold a 0.75 call at 716), and took
    orders in them."""
    from engine.brokers.sim.exchange import SimReject
    from engine.brokers.symbols import occ_symbol

    clock = ManualClock(FRIDAY_EXPIRY)
    exchange = SimExchange(clock, starting_cash=1_000_000)
    spot = exchange.last_price("SPY")
    expiry = FRIDAY_EXPIRY.date()
    inside, outside = (
        occ_symbol("SPY", expiry, "call", float(round(spot) - 50)),
        occ_symbol("SPY", expiry, "call", float(round(spot) + 200)),
    )
    for i, symbol in enumerate((inside, outside)):
        exchange.submit(OrderRequest(symbol, "buy", f"b{i}", qty=2))
    clock.advance(5)
    assert {inside, outside} <= set(exchange.positions)
    cash_before = exchange.cash
    clock.set(NEXT_MONDAY)
    exchange.process()
    held = {s: p.qty for s, p in exchange.positions.items()}
    assert inside not in held and outside not in held
    assert held.get("SPY") == 200  # two contracts exercised, 100 shares each
    assert exchange.cash == pytest.approx(cash_before - 200 * (round(spot) - 50))
    with pytest.raises(SimReject):
        exchange.submit(OrderRequest(outside, "buy", "late", qty=1))  # no longer listed


def test_a_contract_expiring_on_an_early_close_has_the_time_to_that_close_left() -> None:
    """The day after Thanksgiving closes at 13:00 New York: at 12:00 a contract expiring that day has an hour left,
    not four. Priced to 16:00, the last trades before the close carried three hours of time value the contract no
    longer had, and its price fell to what it was worth only at the settlement."""
    expiry = datetime(2026, 11, 27, 17, 0, tzinfo=timezone.utc)  # 12:00 New York
    assert options.years_to_expiry(expiry.date(), expiry) == pytest.approx(3600 / (365 * 24 * 3600))
    monday = datetime(2026, 11, 23, 20, 0, tzinfo=timezone.utc)  # 15:00 New York, a regular close
    assert options.years_to_expiry(monday.date(), monday) == pytest.approx(3600 / (365 * 24 * 3600))
