"""A leak at twice the floor, under autocorrelated noise, grows in its middle windows.

Each window's own trend test sees a quarter of the points: at a rise of one
noise deviation per window its z is about 2, and four such tests all passing
is rare. A leak also lifts each window's level above the one before, which
a level comparison sees with far more certainty; the rule counts that lift
for the middle windows (the first and last keep their own test: they tell
a leak from growth that started late or has stopped).
"""

from __future__ import annotations

import math
import random

import pytest

from memwarden.find.analysis.levels import Level, lift_z
from memwarden.find.analysis.trend import TrendRule, assess_trend

from .synthetic import ar1

RULE = TrendRule(floor=1.0)
EARLIER = TrendRule(floor=1.0, level_lift=False)
N = 2048
SEEDS = range(40)


def _doubled_slope(seed: int) -> list[float]:
    # Slope 2 (twice the floor) over 2,048 points under AR(1) noise with
    # phi 0.8: each window rises by one noise deviation.
    rng = random.Random(seed)
    return [2.0 * i + e for i, e in enumerate(ar1(rng, N, 0.8, 2.0 * N / 4))]


def _xs(n: int) -> list[float]:
    return [float(i) for i in range(n)]


def test_middle_windows_of_a_doubled_slope_grow() -> None:
    # Measured on these seeds: 48 of 80 middle windows grow by their own
    # trend test alone, 66 with the level lift.
    grown = 0
    for seed in SEEDS:
        trend = assess_trend(_xs(N), _doubled_slope(seed), RULE)
        grown += trend.window_growth[1] + trend.window_growth[2]
    assert grown >= 60, f"{grown}/80 middle windows grow"


def test_the_lift_adds_growing_series_and_only_middle_windows() -> None:
    called = earlier_called = 0
    for seed in SEEDS:
        ys = _doubled_slope(seed)
        new, old = assess_trend(_xs(N), ys, RULE), assess_trend(_xs(N), ys, EARLIER)
        called += new.state == "growing"
        earlier_called += old.state == "growing"
        assert new.window_growth[0] == old.window_growth[0]
        assert new.window_growth[-1] == old.window_growth[-1]
        assert all(n or not o for n, o in zip(new.window_growth, old.window_growth, strict=True))
    assert called > earlier_called


def test_a_cache_that_filled_in_the_third_window_stays_a_plateau() -> None:
    # The fourth window sits above the third (whose median is still on the
    # ramp), but does not grow: the last window is judged by its own trend.
    for stop in (0.55, 0.6, 0.65, 0.7):
        rng = random.Random(5)
        ys = [4.0 * min(i, stop * N) + e for i, e in enumerate(ar1(rng, N, 0.8, 100.0))]
        trend = assess_trend(_xs(N), ys, RULE)
        assert trend.window_lifts[-1] >= 0.0
        assert trend.state == "plateau" and trend.window_growth == (True, True, True, False)


def test_lift_is_in_standard_errors_and_certain_without_noise() -> None:
    assert lift_z(Level(10.0, 2.0), Level(14.0, 2.0)) == pytest.approx(2.0)
    assert lift_z(Level(14.0, 2.0), Level(10.0, 2.0)) == pytest.approx(-2.0)
    assert lift_z(Level(1.0, 0.0), Level(2.0, 0.0)) == math.inf
    assert lift_z(Level(1.0, 0.0), Level(1.0, 0.0)) == 0.0
