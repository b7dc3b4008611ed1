"""The sim's last_equity is Alpaca's: the equity at the previous trading day's close (docs/alpaca.md), not the
equity at New York midnight. A coin's price keeps moving after 16:00 (a stock's holds until the next open), and over
a weekend the midnight rule reset the daily loss on Saturday, Sunday and Monday, where Alpaca's builds from Friday's
close."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from engine.brokers.emulator import Emulator
from engine.brokers.sim.exchange import SimExchange
from engine.core.clock import ManualClock

FRIDAY_3PM = datetime(2026, 12, 4, 20, 0, tzinfo=timezone.utc)  # 15:00 New York, a full session
FRIDAY_CLOSE = datetime(2026, 12, 4, 21, 0, tzinfo=timezone.utc)
MONDAY_CLOSE = datetime(2026, 12, 7, 21, 0, tzinfo=timezone.utc)


def _valued_at(exchange: SimExchange, at: datetime) -> float:
    return exchange.cash + sum(p.qty * exchange.last_price(s, at) for s, p in exchange.positions.items())


def test_last_equity_is_fridays_close_all_weekend_and_on_monday() -> None:
    clock = ManualClock(FRIDAY_3PM)
    exchange = SimExchange(clock, seed=7)
    exchange.set_position("AAPL", 200, 190.0)
    exchange.set_position("BTC/USD", 1, 60_000.0)
    friday_close = _valued_at(exchange, FRIDAY_CLOSE)
    assert abs(_valued_at(exchange, FRIDAY_CLOSE + timedelta(hours=8)) - friday_close) > 0.01  # the coin moves after 16:00
    for hours in (1, 4):  # Friday evening: still the day before's
        clock.set(FRIDAY_3PM + timedelta(hours=hours))
        assert exchange.account().last_equity == exchange.starting_cash, hours
    for hours in (9, 33, 57, 63, 66):  # Saturday, Sunday, Monday before and in the session
        clock.set(FRIDAY_3PM + timedelta(hours=hours))
        assert exchange.account().last_equity == round(friday_close, 2), hours
    clock.set(MONDAY_CLOSE + timedelta(hours=8))  # Tuesday 03:00 New York
    assert exchange.account().last_equity == round(_valued_at(exchange, MONDAY_CLOSE), 2)


def test_a_weekend_withdrawal_is_no_loss_on_monday() -> None:
    """equity − last_equity − non-trade cash is the trading P&L: a Saturday withdrawal, counted only on Saturday,
    read as Monday's loss once last_equity stayed at Friday's close."""
    clock = ManualClock(FRIDAY_3PM)
    exchange = SimExchange(clock, seed=7)
    clock.set(FRIDAY_3PM + timedelta(hours=12))  # Saturday 03:00 New York
    exchange.move_cash(-5_000.0, "CSW")
    clock.set(FRIDAY_3PM + timedelta(hours=66))  # Monday 09:00
    account = exchange.account()
    assert account.non_trade_cash_today == -5_000.0
    assert account.equity - account.last_equity - account.non_trade_cash_today == 0.0


def test_the_emulator_dates_balance_asof_to_the_close_last_equity_is_from(emulator: Emulator, clock: ManualClock) -> None:
    clock.set(FRIDAY_3PM)
    emulator.exchange.process()
    clock.set(FRIDAY_3PM + timedelta(hours=66))  # Monday 09:00: Friday's close, not Sunday
    assert emulator.account_json()["balance_asof"] == "2026-12-04"
