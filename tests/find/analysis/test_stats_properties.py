"""Properties of the trend statistics that hold for every series, not just the examples.

Theil-Sen and Mann-Kendall only look at the order of values and at pair
slopes: negating a series negates the slope and the test, adding a line
adds its slope, and any strictly increasing transform leaves the test's
sign alone. The trend rule's false-leak guard is pinned on a seeded batch
of stationary AR(1) noise, across lengths and autocorrelations.
"""

from __future__ import annotations

import math
import random

from hypothesis import example, given, settings
from hypothesis import strategies as st

from memwarden.find.analysis.levels import Level, lift_z, window_level
from memwarden.find.analysis.stats import _mann_kendall_s, theil_sen, variance_inflation
from memwarden.find.analysis.trend import TrendRule, assess_trend

from .synthetic import ar1

# Values a memory series takes: finite, within a few orders of magnitude of
# each other, some repeated (integer counts tie).
values = st.one_of(st.integers(-1000, 1000).map(float),
                   st.floats(-1e6, 1e6, allow_nan=False, allow_infinity=False))
series = st.lists(values, min_size=3, max_size=150)
# Deterministic runs: a property test that fails must fail again.
PROPERTY = settings(max_examples=80, deadline=None, derandomize=True)


def _xs(n: int) -> list[float]:
    return [float(i) for i in range(n)]


def _close(a: float, b: float, scale: float) -> bool:
    return math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-9 * max(scale, 1.0))


@PROPERTY
@given(ys=series)
def test_negating_a_series_negates_its_slope_and_its_test(ys: list[float]) -> None:
    fit, mirrored = theil_sen(_xs(len(ys)), ys), theil_sen(_xs(len(ys)), [-y for y in ys])
    assert fit is not None and mirrored is not None
    scale = max(abs(y) for y in ys)
    assert _close(mirrored.slope, -fit.slope, scale)
    assert _close(mirrored.z, -fit.z, abs(fit.z))
    assert _close(mirrored.low, -fit.high, scale) and _close(mirrored.high, -fit.low, scale)


@PROPERTY
@given(ys=series, a=st.floats(0.01, 100.0), b=st.floats(-100.0, 100.0),
       c=st.floats(-1e6, 1e6))
def test_slope_follows_scaling_and_an_added_line(ys: list[float], a: float, b: float,
                                                 c: float) -> None:
    xs = _xs(len(ys))
    fit = theil_sen(xs, ys)
    moved = theil_sen(xs, [a * y + b * x + c for x, y in zip(xs, ys, strict=True)])
    assert fit is not None and moved is not None
    scale = a * max(abs(y) for y in ys) + abs(b) * len(ys) + abs(c)
    assert math.isclose(moved.slope, a * fit.slope + b, rel_tol=1e-7, abs_tol=1e-7 * scale)


@PROPERTY
@given(ys=series, transform=st.sampled_from([
    lambda y: y ** 3, lambda y: math.atan(y / 1000.0), lambda y: 2.0 * y - 7.0,
    lambda y: math.copysign(math.log1p(abs(y)), y)]))
def test_strictly_increasing_transforms_keep_the_mann_kendall_count(ys: list[float],
                                                                    transform: object) -> None:
    assert callable(transform)
    moved = [float(transform(y)) for y in ys]
    # Distinct values must stay distinct for the count to be the same.
    if len(set(moved)) != len(set(ys)):
        return
    assert _mann_kendall_s(moved) == _mann_kendall_s(ys)
    fit, moved_fit = theil_sen(_xs(len(ys)), ys), theil_sen(_xs(len(ys)), moved)
    assert fit is not None and moved_fit is not None
    assert math.copysign(1.0, fit.z) == math.copysign(1.0, moved_fit.z) or fit.z == moved_fit.z


@PROPERTY
@given(ys=series, b=st.floats(0.0, 1e4))
def test_adding_growth_never_lowers_the_mann_kendall_count(ys: list[float], b: float) -> None:
    grown = [y + b * i for i, y in enumerate(ys)]
    assert _mann_kendall_s(grown) >= _mann_kendall_s(ys)


@PROPERTY
@given(ys=st.lists(values, min_size=5, max_size=150), shift=st.floats(-1e6, 1e6))
def test_a_level_moves_with_the_series_and_its_uncertainty_does_not(ys: list[float],
                                                                    shift: float) -> None:
    xs = _xs(len(ys))
    fit, shifted_fit = theil_sen(xs, ys), theil_sen(xs, [y + shift for y in ys])
    assert fit is not None and shifted_fit is not None
    level = window_level(xs, ys, fit)
    shifted = window_level(xs, [y + shift for y in ys], shifted_fit)
    scale = max(abs(y) for y in ys) + abs(shift)
    assert _close(shifted.median, level.median + shift, scale)
    assert math.isclose(shifted.variance, level.variance, rel_tol=1e-6,
                        abs_tol=1e-9 * scale * scale)
    assert lift_z(level, level) == 0.0
    assert lift_z(Level(0.0, 1.0), Level(1.0, 1.0)) == -lift_z(Level(1.0, 1.0), Level(0.0, 1.0))


@settings(max_examples=12, deadline=None, derandomize=True)
@given(phi=st.floats(0.0, 0.8), seed=st.integers(0, 2**32))
def test_the_correction_approaches_the_ar1_variance_factor(phi: float, seed: int) -> None:
    # The variance of a mean of AR(1) points is (1 + phi) / (1 - phi) times
    # that of independent ones (for n much longer than 1 / (1 - phi)).
    factor = variance_inflation(ar1(random.Random(seed), 4000, phi, 1.0))
    ideal = (1.0 + phi) / (1.0 - phi)
    assert 0.6 * ideal <= factor <= 1.5 * ideal


@settings(max_examples=40, deadline=None, derandomize=True)
@given(phi=st.floats(0.0, 0.9), n=st.integers(120, 2048), seed=st.integers(0, 2**32),
       sd=st.floats(1.0, 1e6))
def test_stationary_ar1_noise_is_never_a_growing_series(phi: float, n: int, seed: int,
                                                        sd: float) -> None:
    # The floor sits far below the noise: only the tests can hold the line.
    ys = ar1(random.Random(seed), n, phi, sd)
    trend = assess_trend(_xs(n), ys, TrendRule(floor=sd * 1e-6))
    assert trend.state != "growing"


@settings(max_examples=40, deadline=None, derandomize=True)
@given(phi=st.floats(0.5, 0.95), n=st.integers(120, 600), seed=st.integers(0, 2**32))
@example(phi=0.9, n=120, seed=107)
def test_level_lifts_of_noise_stay_within_normal_bounds(phi: float, n: int, seed: int) -> None:
    # Short windows of slow noise: a lift's variance taken from a 30-point
    # window alone (its mean and slope soak up the slow part) put lifts of
    # noise at 5 to 11 standard errors here; measured over 1,000 such series,
    # the largest lift is under 3.
    ys = ar1(random.Random(seed), n, phi, 100.0)
    trend = assess_trend(_xs(n), ys, TrendRule(floor=1e-4))
    assert max(abs(lift) for lift in trend.window_lifts) < 4.0
