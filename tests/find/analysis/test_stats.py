"""Robust estimators: exact on clean data, unmoved by spikes, honest about autocorrelation."""

from __future__ import annotations

import math
import random

import pytest

from memwarden.find.analysis.stats import (
    median,
    quantile,
    theil_sen,
    trimmed_mean,
    trimmed_mean_se,
    variance_inflation,
)


def test_quantile_interpolates_between_sorted_values() -> None:
    assert quantile([0.0, 10.0], 0.25) == 2.5
    assert median([3.0, 1.0, 2.0]) == 2.0
    with pytest.raises(ValueError):
        quantile([], 0.5)


def test_trimmed_mean_ignores_a_garbage_collection_inside_one_request() -> None:
    deltas = [10.0] * 50 + [-50_000.0]
    assert trimmed_mean(deltas) == 10.0
    assert math.fsum(deltas) / len(deltas) < 0  # the plain mean is fooled


def test_trimmed_mean_se_shrinks_with_more_calls() -> None:
    rng = random.Random(1)
    few = [rng.gauss(0, 10) for _ in range(20)]
    many = [rng.gauss(0, 10) for _ in range(2000)]
    assert trimmed_mean_se(many) < trimmed_mean_se(few) / 5


def test_theil_sen_recovers_an_exact_line() -> None:
    xs = [float(i) for i in range(1, 101)]
    fit = theil_sen(xs, [3.0 * x + 7.0 for x in xs])
    assert fit is not None
    assert fit.slope == pytest.approx(3.0)
    assert fit.intercept == pytest.approx(7.0)
    assert fit.low == pytest.approx(3.0) and fit.high == pytest.approx(3.0)
    assert fit.z > 10


def test_theil_sen_is_not_moved_by_one_huge_spike() -> None:
    xs = [float(i) for i in range(200)]
    ys = [0.5 * x for x in xs]
    ys[100] += 1e9
    fit = theil_sen(xs, ys)
    assert fit is not None
    assert fit.slope == pytest.approx(0.5, rel=0.01)


def test_theil_sen_subsamples_long_series_and_stays_deterministic() -> None:
    rng = random.Random(2)
    xs = [float(i) for i in range(5000)]
    ys = [2.0 * x + rng.uniform(-100, 100) for x in xs]
    first, second = theil_sen(xs, ys), theil_sen(xs, ys)
    assert first == second
    assert first is not None and first.slope == pytest.approx(2.0, rel=0.02)


def test_noise_without_trend_is_not_significant() -> None:
    rng = random.Random(3)
    xs = [float(i) for i in range(500)]
    fit = theil_sen(xs, [rng.uniform(-50, 50) for _ in xs])
    assert fit is not None
    assert abs(fit.z) < 3
    assert fit.low < 0 < fit.high


def test_random_walk_inflates_the_variance() -> None:
    rng = random.Random(4)
    walk, y = [], 0.0
    for _ in range(500):
        y += rng.uniform(-1, 1)
        walk.append(y)
    independent = [rng.uniform(-1, 1) for _ in range(500)]
    assert variance_inflation(walk) > 10
    assert variance_inflation(independent) < 2
    # Noise that cancels out (negative autocorrelation) never tightens the test.
    alternating = [(-1.0) ** i for i in range(100)]
    assert variance_inflation(alternating) == 1.0


def test_too_short_series_give_no_fit() -> None:
    assert theil_sen([1.0, 2.0], [1.0, 2.0]) is None
    constant = theil_sen([1.0, 2.0, 3.0, 4.0], [5.0, 5.0, 5.0, 5.0])
    assert constant is not None and constant.z == 0.0 and constant.slope == 0.0
