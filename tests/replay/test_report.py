"""The report's plot thinning: a long curve is cut to about PLOT_POINTS points without losing its extremes."""

from __future__ import annotations

import numpy as np

from engine.replay.report import thinned


def test_a_short_series_is_kept_whole() -> None:
    assert thinned(np.arange(10.0), points=40).tolist() == list(range(10))


def test_a_long_series_keeps_its_ends_its_spike_and_its_worst_fall() -> None:
    values = np.full(100_003, 100.0)
    values[51_234] = 180.0  # a spike a stride of 25 would step over
    values[77_777] = 20.0  # the worst drawdown
    kept = thinned(values, points=4000)
    assert len(kept) <= 4000 + 2
    assert kept[0] == 0 and kept[-1] == len(values) - 1
    assert 51_234 in kept and 77_777 in kept
    assert np.all(np.diff(kept) > 0)  # in order, each once


def test_the_last_short_bucket_keeps_its_extremes_too() -> None:
    values = np.zeros(1001)
    values[1000] = -5.0  # alone in the last bucket
    values[999] = 5.0
    kept = thinned(values, points=40)
    assert {999, 1000} <= set(kept.tolist())
