"""Dollar figures as the engine shows and logs them for a person: to the cent, except that a figure that is not 0
never reads as 0. A crypto fee or round trip on a few dollars is a fraction of a cent: `:+.2f` wrote +0.00 or
-0.00 for it, a loss shown as minus nothing and fees paid as none. One place, so the run's summary, status, why,
report, the status page's record, the backtest's table and the `trade` event agree."""

from __future__ import annotations

import math
from collections.abc import Iterable

# Below Alpaca's nine decimals: what float sums leave of a figure that is 0, not money.
NOISE_USD = 1e-9


def cents(value: float) -> float:
    """A dollar figure kept for a person, in cents, except one that is not 0 and rounds to 0: kept to nine
    decimals, so that a fee of 0.004 or a loss of 0.003 is not recorded as 0.00 (or -0.00)."""
    if abs(value) < NOISE_USD:
        return 0.0
    return round(value, 2) + 0.0 if abs(value) >= 0.005 else round(value, 9)


def total(amounts: Iterable[float]) -> float:
    """The one way P&L is totalled, so that every view says the same figure: a bot's day is its unrounded realized
    P&L rounded once (`cents`: the realized_pnl table, as `status` and `report` show it), and a total over bots, days
    or both adds those figures as they are shown, the sum kept in cents. Adding unrounded figures across bots, or
    trades already rounded to the cent, said a cent more or less than `status` for the same day (the alerts'
    summary, the status page's equity curve). Each amount is rounded here: a bot's day may be given unrounded."""
    return cents(sum(cents(amount) for amount in amounts))


def money(value: float, *, sign: bool = True, group: bool = False) -> str:
    """Dollars as every command shows them: to the cent, except that a figure that is not 0 never reads as 0.
    One below half a cent (a crypto fee or round trip on a few dollars) is shown to its first significant digit,
    +0.004 or -0.0003, where `:+.2f` gave +0.00 and -0.00; float noise below NOISE_USD is 0, shown +0.00."""
    spec = ("+" if sign else "") + ("," if group else "")
    if abs(value) < NOISE_USD:
        return format(0.0, spec + ".2f")
    if abs(value) >= 0.005:
        return format(value, spec + ".2f")
    return format(value, f"{spec}.{min(9, -math.floor(math.log10(abs(value))))}f")
