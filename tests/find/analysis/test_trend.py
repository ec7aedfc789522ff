"""The window rule names what a series does: growing, plateau, late, slowing..."""

from __future__ import annotations

import random

import pytest

from memwarden.find.analysis.trend import TrendRule, assess_trend

RULE = TrendRule(floor=4.0)


def _xs(n: int) -> list[float]:
    return [float(i) for i in range(n)]


def test_steady_growth_with_noise_is_growing_in_every_window() -> None:
    rng = random.Random(1)
    ys = [16.0 * i + rng.uniform(-50, 50) for i in range(300)]
    trend = assess_trend(_xs(300), ys, RULE)
    assert trend.state == "growing"
    assert trend.window_growth == (True, True, True, True)
    assert trend.slope == pytest.approx(16.0, rel=0.05)


def test_bounded_noise_is_flat() -> None:
    rng = random.Random(2)
    trend = assess_trend(_xs(1000), [rng.uniform(-50, 50) for _ in range(1000)], RULE)
    assert trend.state == "flat"


def test_growth_under_the_floor_is_reported_as_such() -> None:
    # 3 per request: every window grows (at least half the floor), the whole
    # series by less than the floor.
    rng = random.Random(3)
    ys = [3.0 * i + rng.uniform(-5, 5) for i in range(1000)]
    trend = assess_trend(_xs(1000), ys, TrendRule(floor=4.0))
    assert trend.state == "below_floor"
    assert trend.window_growth == (True, True, True, True)
    assert trend.slope == pytest.approx(3.0, rel=0.02)


def test_growth_under_half_the_floor_grows_in_no_window() -> None:
    rng = random.Random(3)
    ys = [1.0 * i + rng.uniform(-5, 5) for i in range(1000)]
    trend = assess_trend(_xs(1000), ys, TrendRule(floor=4.0))
    assert trend.state == "flat"
    assert trend.window_growth == (False, False, False, False)


def test_a_cache_that_fills_then_stops_is_a_plateau() -> None:
    ys = [100.0 * min(i, 500) for i in range(900)]
    assert assess_trend(_xs(900), ys, RULE).state == "plateau"


def test_growth_only_at_the_end_is_late() -> None:
    ys = [0.0 if i < 500 else 50.0 * (i - 500) for i in range(1000)]
    assert assess_trend(_xs(1000), ys, RULE).state == "late"


def test_saturating_growth_is_slowing() -> None:
    # A cache that fills ever more slowly (random keys): each window grows less.
    ys = [100_000.0 * (1 - 0.997 ** i) for i in range(1000)]
    trend = assess_trend(_xs(1000), ys, RULE)
    assert trend.state == "slowing"
    assert trend.window_growth == (True, True, True, True)
    assert list(trend.window_slopes) == sorted(trend.window_slopes, reverse=True)


def test_garbage_freed_by_full_collections_is_not_growth() -> None:
    # Ramps of uncollected garbage that a full collection drops back: every
    # window rises inside, but its floor returns to the old floor.
    ys = [20.0 * (i % 120) for i in range(1000)]
    trend = assess_trend(_xs(1000), ys, RULE)
    # Only the first window, with no earlier floor to return to, can count.
    assert trend.window_growth == (True, False, False, False)
    assert trend.state == "plateau" and trend.floor_drops == 3


def test_sparse_series_judged_from_window_end_points() -> None:
    rising = assess_trend(_xs(8), [14.0 + 3 * i for i in range(8)], TrendRule(0.01, 3.0))
    assert rising.sparse and rising.state == "growing"
    flat = assess_trend(_xs(8), [14.0, 15, 14, 14, 15, 14, 14, 14], TrendRule(0.01, 3.0))
    assert flat.sparse and flat.window_growth == (True, False, False, False)
    assert flat.state == "plateau"


def test_steps_do_not_make_a_window_grow_when_rises_are_required() -> None:
    """One lazy import per window lands mid-window: a robust slope still reads it
    as growth, but a leak keeps adding and a step adds once."""
    ys = [0.0] * 200
    for start in (25, 75, 125, 175):
        for i in range(start, 200):
            ys[i] += 500.0
    stepped = assess_trend(_xs(200), ys, TrendRule(floor=1.0, min_rises=3))
    assert stepped.window_rises == (1, 1, 1, 1)
    assert stepped.state == "flat" and stepped.window_growth == (False, False, False, False)
    steady = assess_trend(_xs(200), [2.0 * i for i in range(200)],
                          TrendRule(floor=1.0, min_rises=3))
    assert steady.state == "growing"


def test_too_few_points_are_insufficient() -> None:
    assert assess_trend([1.0, 2.0], [1.0, 2.0], RULE).state == "insufficient"


def test_rule_rejects_nonsense() -> None:
    with pytest.raises(ValueError):
        TrendRule(floor=0.0)
    with pytest.raises(ValueError):
        TrendRule(floor=1.0, windows=1)
    with pytest.raises(ValueError):
        TrendRule(floor=1.0, min_rises=-1)
