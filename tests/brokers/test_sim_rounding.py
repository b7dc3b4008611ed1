"""The simulator's fast rounding is `round`, bit for bit: quotes and account figures must not move by a last bit."""

from __future__ import annotations

import math
import random
import struct

import numpy as np
import pytest

from engine.brokers.sim.rounding import round_many, round_to


def values(seed: int) -> list[float]:
    """Prices, amounts, near-ties from both sides, exact ties, negatives, extremes and random bit patterns."""
    rng = random.Random(seed)
    found = [0.0, -0.0, 5e-5, 0.00015, 1.00005, 2.675, -2.675, 1e-300, -1e-300, 1e20, -1e20, 4e11, math.inf, -math.inf]
    found += [rng.uniform(0, 100_000) for _ in range(20_000)]
    found += [rng.uniform(-10, 10) * 10 ** rng.randint(-8, 12) for _ in range(20_000)]
    for _ in range(10_000):
        k = rng.randint(0, 10**10)
        for places in (2, 4):
            tie, exact = (k + 0.5) / 10**places, k / 10**places
            found += [tie, math.nextafter(tie, 0), math.nextafter(tie, math.inf), exact, math.nextafter(exact, 0), -tie]
    for _ in range(10_000):
        x = struct.unpack("d", struct.pack("Q", rng.getrandbits(64)))[0]
        found.append(x)
    return found


def same(a: float, b: float) -> bool:
    return (math.isnan(a) and math.isnan(b)) or (a == b and math.copysign(1, a) == math.copysign(1, b))


@pytest.mark.parametrize("places", [0, 2, 4, 6])
def test_round_to_is_round_bit_for_bit(places: int) -> None:
    wrong = [x for x in values(places) if not same(round_to(x, places), round(x, places))]
    assert wrong == []


@pytest.mark.parametrize("places", [2, 4])
def test_round_many_is_round_bit_for_bit(places: int) -> None:
    xs = values(10 + places)
    got = round_many(np.array(xs, dtype=np.float64), places)
    assert all(type(v) is float for v in got)
    wrong = [x for x, v in zip(xs, got, strict=True) if not same(v, round(x, places))]
    assert wrong == []
