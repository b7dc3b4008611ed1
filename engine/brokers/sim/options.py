"""A synthetic option chain: real OCC symbols, Black-Scholes prices and greeks from the underlying's path.

Option prices move with the simulated underlying, so option positions gain and lose like real ones.
"""

from __future__ import annotations

import math
from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from engine.brokers.symbols import occ_symbol

NEW_YORK = ZoneInfo("America/New_York")
RATE = 0.04
CONTRACT_SIZE = 100


def _cdf(x: float) -> float:
    return 0.5 * (1 + math.erf(x / math.sqrt(2)))


def _pdf(x: float) -> float:
    return math.exp(-x * x / 2) / math.sqrt(2 * math.pi)


def black_scholes(spot: float, strike: float, years: float, vol: float, option_type: str) -> dict[str, float]:
    """Price and greeks (theta per day, vega per vol point) of a European option."""
    years = max(years, 1e-6)
    sqrt_t = math.sqrt(years)
    d1 = (math.log(spot / strike) + (RATE + vol * vol / 2) * years) / (vol * sqrt_t)
    d2 = d1 - vol * sqrt_t
    discount = math.exp(-RATE * years)
    gamma = _pdf(d1) / (spot * vol * sqrt_t)
    vega = spot * _pdf(d1) * sqrt_t / 100
    if option_type == "call":
        price = spot * _cdf(d1) - strike * discount * _cdf(d2)
        delta = _cdf(d1)
        theta = (-spot * _pdf(d1) * vol / (2 * sqrt_t) - RATE * strike * discount * _cdf(d2)) / 365
        rho = strike * years * discount * _cdf(d2) / 100
    else:
        price = strike * discount * _cdf(-d2) - spot * _cdf(-d1)
        delta = _cdf(d1) - 1
        theta = (-spot * _pdf(d1) * vol / (2 * sqrt_t) + RATE * strike * discount * _cdf(-d2)) / 365
        rho = -strike * years * discount * _cdf(-d2) / 100
    return {"price": max(price, 0.01), "delta": delta, "gamma": gamma, "theta": theta, "vega": vega, "rho": rho}


def implied_vol(underlying: str, strike: float, spot: float) -> float:
    """A gentle smile: 25% at the money, higher away from it."""
    moneyness = math.log(strike / spot)
    return 0.25 + 0.4 * moneyness * moneyness


def years_to_expiry(expiry: date, now: datetime) -> float:
    close = datetime.combine(expiry, time(16, 0), NEW_YORK)
    return max((close - now).total_seconds(), 60.0) / (365 * 24 * 3600)


def expiries(today: date, dte_min: int, dte_max: int) -> list[date]:
    """Weekly Friday expiries between dte_min and dte_max days away."""
    out = []
    day = today + timedelta(days=max(dte_min, 0))
    while (day - today).days <= dte_max:
        if day.weekday() == 4:
            out.append(day)
        day += timedelta(days=1)
    return out


def strikes(spot: float) -> list[float]:
    step = 1.0 if spot < 200 else 5.0
    center = round(spot / step) * step
    return [center + step * k for k in range(-10, 11)]


def chain_symbols(underlying: str, spot: float, today: date, dte_min: int, dte_max: int) -> list[str]:
    return [
        occ_symbol(underlying, expiry, option_type, strike)
        for expiry in expiries(today, dte_min, dte_max)
        for strike in strikes(spot)
        for option_type in ("call", "put")
    ]
