"""`round(x, places)`, bit for bit, at a fraction of its cost: the simulator rounds every quote's two sides and the
account's figures every tick, and `round` formats the number as decimal text and reads it back (about 280 ns).

The result of `round(x, p)` is the float nearest to n / 10^p, n the integer nearest to x * 10^p exactly (ties to
even). `n / 10.0**p` is that float too: one correctly rounded division of two exact numbers. Only n is in question:
`x * 10.0**p` is off from the exact product by half a unit in its last place at most (about 1e-16 of it), so away
from a half (`_TIE`, ten thousand times that margin) its floor and fraction give n exactly. Near a half, and for
zero, huge or non-finite values, `round` itself decides. `round` is symmetric (ties to even), so a negative value
is the positive one's negation.
"""

from __future__ import annotations

import math
from typing import cast

import numpy as np
import numpy.typing as npt

_TIE = 1e-12  # how near to a half, relative to the scaled value, is left to `round`
_EXACT_BELOW = 4e15  # below 2**52 the floor and the fraction of a float are exact
_SCALES = tuple(10.0**places for places in range(16))  # each exact


def round_to(x: float, places: int) -> float:
    """`round(x, places)` for 0 <= places < 16 (an int stays an int, as `round` leaves it)."""
    if type(x) is not float:
        return round(x, places)
    scale = _SCALES[places]
    scaled = x * scale
    if 0.0 < scaled < _EXACT_BELOW:
        whole = math.floor(scaled)
        fraction = scaled - whole
        if abs(fraction - 0.5) > _TIE * (scaled + 1.0):
            return (whole + (fraction > 0.5)) / scale
    elif -_EXACT_BELOW < scaled < 0.0:
        return -round_to(-x, places)
    return round(x, places)


def round_many(values: npt.NDArray[np.float64], places: int) -> list[float]:
    """`round_to` of each value, as a list of floats: numpy's arithmetic is Python's, operation for operation."""
    scale = _SCALES[places]
    with np.errstate(over="ignore", invalid="ignore"):  # huge and non-finite values are left to `round` below
        scaled = values * scale
        whole = np.floor(scaled)
        fraction = scaled - whole
        rounded = ((whole + (fraction > 0.5)) / scale).tolist()
        sure = (scaled > 0.0) & (scaled < _EXACT_BELOW) & (np.abs(fraction - 0.5) > _TIE * (scaled + 1.0))
    if not sure.all():
        for i in np.flatnonzero(~sure).tolist():
            rounded[i] = round_to(float(values[i]), places)
    return cast(list[float], rounded)
