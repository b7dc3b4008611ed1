"""A synthetic option chain: real OCC symbols, Black-Scholes prices and greeks from the underlying's path.

Option prices move with the simulated underlying, so option positions gain and lose like real ones. A chain
(hundreds of contracts, every minute) is priced in one numpy pass; a contract asked for alone (a held option,
every tick) by the scalar model, which for one contract is ten times cheaper than numpy's per-call overhead.
"""

from __future__ import annotations

import functools
import math
from datetime import date, datetime, time, timedelta
from typing import NamedTuple

import numpy as np
import numpy.typing as npt

from engine.core.calendar import NEW_YORK

RATE = 0.04
MIN_PRICE = 0.01  # the model never quotes a contract below a cent

Floats = npt.NDArray[np.float64]
Bools = npt.NDArray[np.bool_]

# W. J. Cody, "Rational Chebyshev approximations for the error function", Math. Comp. 23 (1969) 631-638, with the
# coefficients of his netlib SPECFUN routine CALERF. Cody gives them to at least 18 significant digits; in IEEE
# double arithmetic the result is erfc to within a few units in the last place (relative error below 1e-14 over
# the whole real line, tested against math.erfc). Relative, not absolute: the far tails keep their precision,
# which a put's delta and a far out-of-the-money price need.
_THRESH = 0.46875
_ERF_A = (3.16112374387056560e00, 1.13864154151050156e02, 3.77485237685302021e02, 3.20937758913846947e03, 1.85777706184603153e-1)
_ERF_B = (2.36012909523441209e01, 2.44024637934444173e02, 1.28261652607737228e03, 2.84423683343917062e03)
_ERFC_C = (
    5.64188496988670089e-1, 8.88314979438837594e00, 6.61191906371416295e01, 2.98635138197400131e02, 8.81952221241769090e02,
    1.71204761263407058e03, 2.05107837782607147e03, 1.23033935479799725e03, 2.15311535474403846e-8,
)  # fmt: skip
_ERFC_D = (
    1.57449261107098347e01, 1.17693950891312499e02, 5.37181101862009858e02, 1.62138957456669019e03, 3.29079923573345963e03,
    4.36261909014324716e03, 3.43936767414372164e03, 1.23033935480374942e03,
)  # fmt: skip
_ERFC_P = (
    3.05326634961232344e-1, 3.60344899949804439e-1, 1.25781726111229246e-1, 1.60837851487422766e-2, 6.58749161529837803e-4,
    1.63153871373020978e-2,
)  # fmt: skip
_ERFC_Q = (2.56852019228982242e00, 1.87295284992346047e00, 5.27905102951428412e-1, 6.05183413124413191e-2, 2.33520497626869185e-3)
_ONE_OVER_SQRT_PI = 5.6418958354775628695e-1
_ONE_OVER_SQRT_2PI = 1 / math.sqrt(2 * math.pi)

# The six polynomials (numerator and denominator of each interval) run through one Horner loop on a 6-row array:
# numpy's cost here is per call, not per element. A shorter polynomial is padded with leading zero coefficients,
# which leave it bit for bit what it was (0 + c = c, 0 * v = 0).
_HORNER_LEAD = np.array([0.0, 0.0, _ERFC_C[8], 1.0, 0.0, 0.0])[:, None]
_HORNER_STEPS = np.array(
    [
        [0.0, 0.0, 0.0, _ERF_A[4], *_ERF_A[:3]],
        [0.0, 0.0, 0.0, 1.0, *_ERF_B[:3]],
        [*_ERFC_C[:7]],
        [*_ERFC_D[:7]],
        [0.0, 0.0, _ERFC_P[5], *_ERFC_P[:4]],
        [0.0, 0.0, 1.0, *_ERFC_Q[:4]],
    ]
).T[:, :, None]
_HORNER_LAST = np.array([_ERF_A[3], _ERF_B[3], _ERFC_C[7], _ERFC_D[7], _ERFC_P[4], _ERFC_Q[4]])[:, None]


def erfc(x: Floats) -> Floats:
    """The complementary error function of every element; see the note on Cody's approximation above."""
    y = np.abs(x)
    small = np.minimum(y, _THRESH)  # |x| <= 0.46875: erf by a rational function of x*x
    middle = np.clip(y, _THRESH, 4.0)  # 0.46875 < |x| <= 4: erfc by a rational function of |x|
    far = np.maximum(y, 4.0)  # |x| > 4: erfc by a rational function of 1/(x*x)
    inv = 1.0 / (far * far)
    ysq = small * small
    variable = np.stack((ysq, ysq, middle, middle, inv, inv))
    acc = _HORNER_LEAD * variable
    for step in _HORNER_STEPS:
        acc = (acc + step) * variable
    acc += _HORNER_LAST
    ratio = acc[0::2] / acc[1::2]
    # exp(-y*y) without the rounding error of forming y*y: y is split at 1/16 (Cody's own device)
    both = np.stack((middle, far))
    head = np.trunc(both * 16.0) / 16.0
    gauss = np.exp(-head * head) * np.exp(-(both - head) * (both + head))
    near = 1.0 - y * ratio[0]
    mid = gauss[0] * ratio[1]
    tail = gauss[1] * (_ONE_OVER_SQRT_PI - inv * ratio[2]) / far
    positive = np.where(y <= _THRESH, near, np.where(y <= 4.0, mid, tail))
    return np.where(x < 0, 2.0 - positive, positive)


def norm_cdf(x: Floats) -> Floats:
    return 0.5 * erfc(-x / math.sqrt(2))


class Models(NamedTuple):
    """Price and greeks (theta per day, vega and rho per vol/rate point) of each contract, one array each."""

    price: Floats
    delta: Floats
    gamma: Floats
    theta: Floats
    vega: Floats
    rho: Floats
    iv: Floats


def _cdf(x: float) -> float:
    return 0.5 * (1 + math.erf(x / math.sqrt(2)))


def _pdf(x: float) -> float:
    return math.exp(-x * x / 2) / math.sqrt(2 * math.pi)


def black_scholes(spot: float, strike: float, years: float, vol: float, option_type: str) -> dict[str, float]:
    """Price and greeks (theta per day, vega per vol point) of a European option: the model itself, one
    contract at a time (a held contract, every tick). `black_scholes_many` prices a chain the same way."""
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
    return {"price": max(price, MIN_PRICE), "delta": delta, "gamma": gamma, "theta": theta, "vega": vega, "rho": rho}


def implied_vol(underlying: str, strike: float, spot: float) -> float:
    """A gentle smile: 25% at the money, higher away from it."""
    moneyness = math.log(strike / spot)
    return 0.25 + 0.4 * moneyness * moneyness


def implied_vols(strikes: Floats, spot: float) -> Floats:
    """`implied_vol` of every strike."""
    moneyness = np.log(strikes / spot)
    return 0.25 + 0.4 * moneyness * moneyness


def black_scholes_many(spot: float, strikes: Floats, years: Floats, is_call: Bools) -> Models:
    """`black_scholes` of many contracts on one underlying in one numpy pass (agreeing to about 1e-9 relative,
    rounding apart). A put's terms use N(-d) directly: its delta is -N(-d1), not N(d1) - 1, which keeps a far
    out-of-the-money put's delta precise where the scalar form loses digits to cancellation."""
    vol = implied_vols(strikes, spot)
    years = np.maximum(years, 1e-6)
    sqrt_t = np.sqrt(years)
    vol_sqrt_t = vol * sqrt_t
    d1 = (np.log(spot / strikes) + (RATE + vol * vol / 2) * years) / vol_sqrt_t
    d2 = d1 - vol_sqrt_t
    sign = np.where(is_call, 1.0, -1.0)  # a call's N(d), a put's N(-d): both in one pass
    n1, n2 = np.split(norm_cdf(np.concatenate((sign * d1, sign * d2))), 2)
    discount = np.exp(-RATE * years)
    pdf1 = np.exp(-d1 * d1 / 2) * _ONE_OVER_SQRT_2PI
    strike_pv = strikes * discount
    price = sign * (spot * n1 - strike_pv * n2)
    theta = (-spot * pdf1 * vol / (2 * sqrt_t) - sign * RATE * strike_pv * n2) / 365
    return Models(
        price=np.maximum(price, MIN_PRICE),
        delta=sign * n1,
        gamma=pdf1 / (spot * vol_sqrt_t),
        theta=theta,
        vega=spot * pdf1 * sqrt_t / 100,
        rho=sign * strike_pv * years * n2 / 100,
        iv=vol,
    )


def round_cents(x: Floats) -> Floats:
    """`round(v, 2)` of every element (v >= 0), to the bit, without a Python call per element.

    rint(fl(100 v)) is the right cent unless 100 v is within the product's rounding error of a half cent, and
    half cents are common here (a cheap contract's bid is its mid minus half a cent). For those, the exact
    100 v is split into two doubles (Dekker: v's high half times 100 is exact, so is its low half times 100)
    and its side of the half cent read from the sign of an exactly computed difference; an exact tie goes to
    the even cent, as `round` does. k / 100 is then the double nearest k cents, which is what `round` returns.
    """
    scaled = x * 100.0
    cents = np.rint(scaled)
    below = np.floor(scaled)
    near_half = np.abs(scaled - below - 0.5) < 1e-6
    if near_half.any():
        split = 134217729.0 * x  # 2**27 + 1
        high = split - (split - x)
        side = ((high * 100.0) - (below + 0.5)) + (x - high) * 100.0
        tie_up = np.remainder(below, 2.0) == 1.0  # to even: up from an odd cent
        up = (side > 0) | ((side == 0) & tie_up)
        cents = np.where(near_half, below + up, cents)
    return cents / 100.0


class Priced(NamedTuple):
    """Contracts' model values and cent quotes as lists (row i is contract i): what the exchange hands out."""

    price: list[float]
    delta: list[float]
    gamma: list[float]
    theta: list[float]
    vega: list[float]
    rho: list[float]
    iv: list[float]
    mid: list[float]
    bid: list[float]
    ask: list[float]


def price_contracts(spot: float, strikes: Floats, years: Floats, is_call: Bools, spread: float) -> Priced:
    """Model values, and `cent_quote` around the model price rounded to cents, element by element."""
    models = black_scholes_many(spot, strikes, years, is_call)
    mid = round_cents(models.price)
    half = mid * spread / 2
    bid = round_cents(np.maximum(mid - np.maximum(0.005, half), 0.01))
    ask = np.maximum(round_cents(mid + half), round_cents(bid + 0.01))
    m = models
    return Priced(
        m.price.tolist(), m.delta.tolist(), m.gamma.tolist(), m.theta.tolist(), m.vega.tolist(), m.rho.tolist(), m.iv.tolist(),
        mid.tolist(), bid.tolist(), ask.tolist(),
    )  # fmt: skip


def cent_quote(mid: float, spread: float) -> tuple[float, float]:
    """Bid and ask around a mid in cents: `spread` times the mid wide, at least a cent apart, never under a cent."""
    half = mid * spread / 2
    bid = round(max(mid - max(0.005, half), 0.01), 2)
    return bid, max(round(mid + half, 2), round(bid + 0.01, 2))


def price_one(spot: float, strike: float, years: float, option_type: str, spread: float) -> Priced:
    """`price_contracts` of one contract, by the scalar model."""
    vol = implied_vol("", strike, spot)
    model = black_scholes(spot, strike, years, vol, option_type)
    mid = round(model["price"], 2)
    bid, ask = cent_quote(mid, spread)
    return Priced(
        [model["price"]], [model["delta"]], [model["gamma"]], [model["theta"]], [model["vega"]], [model["rho"]], [vol],
        [mid], [bid], [ask],
    )  # fmt: skip


def years_to_expiry(expiry: date, now: datetime) -> float:
    return max((expiry_close(expiry) - now).total_seconds(), 60.0) / (365 * 24 * 3600)


@functools.lru_cache(maxsize=256)
def expiry_close(expiry: date) -> datetime:
    """When a contract expiring on `expiry` stops trading: its session's close, 13:00 New York on an early close
    (the day after Thanksgiving, Christmas Eve, where a weekly moved from a Christmas Friday expires). Taken as
    16:00, a contract was priced with three hours of time left at its last trade, and its price fell to what it
    was worth only at the settlement. 16:00 on a day without a session (`expiries` never lists one)."""
    from engine.core.calendar import market_calendar  # the exchange's sessions (its own import is lazy)

    session = market_calendar().session(expiry)
    return session.close if session is not None else datetime.combine(expiry, time(16, 0), NEW_YORK)


@functools.lru_cache(maxsize=64)
def expiries(today: date, dte_min: int, dte_max: int) -> tuple[date, ...]:
    """Weekly expiries between dte_min and dte_max days away (a chain asks the same every minute of a day): each
    week's Friday, or, when the market is shut that Friday (Good Friday, Juneteenth, Christmas, New Year's Day),
    the last trading day before it in the same week, as the listed weeklies move. A contract expiring on a day the
    market is closed does not exist: the chain offered one for every Friday holiday (SPY270101), which no broker
    lists and which could never be traded on its expiry day."""
    from engine.core.calendar import market_calendar  # the exchange's sessions (its own import is lazy)

    calendar = market_calendar()
    out = []
    first = today + timedelta(days=max(dte_min, 0))
    friday = first + timedelta(days=(4 - first.weekday()) % 7)
    while (friday - today).days <= dte_max + 4:  # a Friday past dte_max may move back inside it
        expiry = friday
        while expiry.weekday() > 0 and not calendar.is_trading_day(expiry):
            expiry -= timedelta(days=1)
        if calendar.is_trading_day(expiry) and max(dte_min, 0) <= (expiry - today).days <= dte_max:
            out.append(expiry)
        friday += timedelta(days=7)
    return tuple(out)


def strikes(spot: float) -> list[float]:
    step = 1.0 if spot < 200 else 5.0
    center = round(spot / step) * step
    return [center + step * k for k in range(-10, 11)]
