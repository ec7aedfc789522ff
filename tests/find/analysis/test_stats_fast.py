"""The fast statistics give the numbers of their plain definitions, bit for bit.

The trend tests' inner loops run in C (bisect, itemgetter, map) instead of
Python loops; the verdicts stay the same because every number does. Each
fast function is held here to a plain reference on random series, ties and
repeated values included.
"""

from __future__ import annotations

import math
import random
from array import array
from itertools import pairwise

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from memwarden.find.analysis import stats, trend
from memwarden.find.analysis.life_buffer import OpenLife
from memwarden.find.analysis.stats import _mann_kendall_s, median

# Integer counts tie constantly; floats of a few magnitudes; both mixed.
values = st.one_of(st.integers(-20, 20).map(float), st.integers(-3, 3),
                   st.floats(-1e6, 1e6, allow_nan=False, allow_infinity=False))
PROPERTY = settings(max_examples=200, deadline=None, derandomize=True)


@pytest.fixture(autouse=True)
def _numpy_allowed() -> None:
    """As in a judge: a stream with judges made earlier in this process turned it off."""
    stats.use_numpy(True)


def _s_by_definition(ys: list[float]) -> int:
    return sum((ys[j] > ys[i]) - (ys[j] < ys[i])
               for i in range(len(ys)) for j in range(i + 1, len(ys)))


@PROPERTY
@given(ys=st.lists(values, max_size=120))
def test_mann_kendall_s_is_the_sum_of_pair_signs(ys: list[float]) -> None:
    assert _mann_kendall_s(ys) == _s_by_definition(ys)


def test_mann_kendall_s_on_long_series_with_many_ties() -> None:
    rng = random.Random(5)
    for n in (300, 1000):
        ys = [float(rng.randrange(12)) + 0.01 * i // 50 for i in range(n)]
        assert _mann_kendall_s(ys) == _s_by_definition(ys)


def _pairs_one_by_one(n: int) -> tuple[list[int], list[int]]:
    draw = random.Random(n * 7919 + 1).random
    firsts, seconds = [], []
    for _ in range(stats.MAX_PAIRS):
        i = int(draw() * n)
        j = int(draw() * (n - 1))
        if j >= i:
            j += 1
        firsts.append(i)
        seconds.append(j)
    return firsts, seconds


def test_sampled_pairs_are_the_pairs_drawn_one_by_one() -> None:
    for n in (111, 500, 1639, 2000, 70_000):
        firsts, seconds = stats._sampled_pairs(n)
        assert (list(firsts), list(seconds)) == _pairs_one_by_one(n)


def _slopes_one_by_one(xs: list[float], ys: list[float]) -> list[float]:
    firsts, seconds = _pairs_one_by_one(len(xs))
    return sorted((ys[j] - ys[i]) / dx for i, j in zip(firsts, seconds, strict=True)
                  if (dx := xs[j] - xs[i]))


@PROPERTY
@given(ys=st.lists(values, min_size=111, max_size=300), data=st.data())
def test_sampled_slopes_are_the_slopes_taken_one_by_one(ys: list[float],
                                                        data: st.DataObject) -> None:
    steps = data.draw(st.lists(st.integers(0, 3), min_size=len(ys), max_size=len(ys)))
    # Ties in xs (steps of 0) take the careful path, strictly increasing ones the fast.
    xs = [float(sum(steps[:k + 1])) for k in range(len(ys))]
    assert stats._pair_slopes(xs, ys) == _slopes_one_by_one(xs, ys)
    increasing = [float(k) for k in range(len(ys))]
    assert stats._pair_slopes(increasing, tuple(ys)) == _slopes_one_by_one(increasing, ys)


def _signed(values: list[float]) -> list[tuple[float, float]]:
    """Values with their signs: 0.0 and -0.0 compare equal, and print differently."""
    return [(v, math.copysign(1.0, v)) for v in values]


def _plain_pair_slopes(xs: list[float], ys: list[float]) -> list[float]:
    """``_pair_slopes`` with numpy left out: the pure Python path."""
    stats._NUMPY[:] = [None]
    try:
        return stats._pair_slopes(xs, ys)
    finally:
        stats._NUMPY.clear()


def _slopes_of_every_pair(xs: list[float], ys: list[float]) -> list[float]:
    n = len(xs)
    return sorted((ys[j] - ys[i]) / dx for i in range(n) for j in range(i + 1, n)
                  if (dx := xs[j] - xs[i]))


def test_numpy_draws_the_pairs_drawn_one_by_one() -> None:
    for n in (111, 500, 1639, 2000, 70_000):
        firsts, seconds = stats._sampled_pairs_numpy(n)
        assert (firsts.tolist(), seconds.tolist()) == _pairs_one_by_one(n)


@PROPERTY
@given(ys=st.lists(values, min_size=32, max_size=300), data=st.data())
def test_numpy_pair_slopes_are_the_plain_ones_signs_of_zero_included(
        ys: list[float], data: st.DataObject) -> None:
    steps = data.draw(st.lists(st.integers(0, 3), min_size=len(ys), max_size=len(ys)))
    stepped = [float(sum(steps[:k + 1])) for k in range(len(ys))]
    # Ties in xs (pairs left out), strictly increasing xs, and integer xs and ys.
    for xs in (stepped, [float(k) for k in range(len(ys))], list(range(3, 3 + 2 * len(ys), 2))):
        fast = stats._pair_slopes(xs, ys)
        assert stats._pair_slopes_numpy(stats.numpy_or_none(), xs, ys) is not None
        plain = _plain_pair_slopes(xs, ys)
        assert _signed(fast) == _signed(plain)
        if len(ys) <= 110:
            assert _signed(fast) == _signed(_slopes_of_every_pair(xs, ys))
        else:
            assert _signed(fast) == _signed(_slopes_one_by_one(xs, ys))


def test_numpy_leaves_values_it_cannot_hold_exactly_to_the_plain_path() -> None:
    xs = [float(k) for k in range(200)]
    for odd in (math.nan, math.inf, -math.inf, 2.0 ** 52, -(2 ** 60) - 1, 10 ** 400):
        ys = [float(k % 7) for k in range(200)]
        ys[50] = odd  # type: ignore[call-overload]
        assert stats._pair_slopes_numpy(stats.numpy_or_none(), xs, ys) is None
        assert stats._pair_slopes_numpy(stats.numpy_or_none(), ys, xs) is None
    fine = [float(k % 7) for k in range(200)]
    assert stats._pair_slopes_numpy(stats.numpy_or_none(), xs, fine) is not None


def test_the_plain_path_runs_without_numpy() -> None:
    xs = [float(k) for k in range(300)]
    ys = [float(k % 11) - 0.5 * (k % 3) for k in range(300)]
    assert _signed(_plain_pair_slopes(xs, ys)) == _signed(_slopes_one_by_one(xs, ys))
    assert stats.numpy_or_none() is not None  # and numpy is looked for again after


def _bins_one_by_one(xs: list[float], ys: list[float], most: int
                     ) -> tuple[list[float], list[float]]:
    n = len(xs)
    if n <= most:
        return list(xs), list(ys)
    size = -(-n // most)
    bx, by = [], []
    for start in range(0, n, size):
        stop = min(start + size, n)
        bx.append(xs[(start + stop - 1) // 2])
        by.append(median(ys[start:stop]))
    return bx, by


@PROPERTY
@given(ys=st.lists(values, max_size=400), most=st.integers(1, 60))
def test_bin_medians_are_each_bins_median(ys: list[float], most: int) -> None:
    xs = [float(k) for k in range(len(ys))]
    fast = trend._bin_medians(xs, ys, most)
    slow = _bins_one_by_one(xs, ys, most)
    # Equal, and with the same signs of zero.
    assert [(v, math.copysign(1.0, v)) for v in fast[1]] == \
        [(v, math.copysign(1.0, v)) for v in slow[1]]
    assert fast[0] == slow[0]


def test_worker_life_out_of_seq_order_is_sorted_by_seq() -> None:
    life = OpenLife(7, 1, 0)
    for seq in (3, 1, 2):
        life.add((seq, seq % 2, 200.0, 1.0, float(seq), math.nan, 1.0, 10.0 + seq,
                  math.nan, math.nan, None))
    built = life.worker_life([("/a", "GET"), ("/b", None)], records=False)
    assert [r.seq for r in built.requests] == [1, 2, 3]
    assert [r.route for r in built.requests] == ["/b", "/a", "/b"]
    assert [r.method for r in built.requests] == [None, "GET", None]
    assert [r.blocks for r in built.requests] == [11.0, 12.0, 13.0]
    assert [r.rss_delta_bytes for r in built.requests] == [None, None, None]
    assert life.seqs == array("q", [3, 1, 2])


def _inflation_by_loops(residuals: list[float]) -> float:
    n = len(residuals)
    if n < 4:
        return 1.0
    mean = math.fsum(residuals) / n
    centred = [r - mean for r in residuals]
    energy = math.fsum(c * c for c in centred)
    if energy <= 0.0 or not math.isfinite(energy):
        return 1.0
    factor = 1.0
    for lag in range(1, min(stats.MAX_LAG, n // 3) + 1):
        rho = math.fsum(centred[i] * centred[i + lag] for i in range(n - lag)) / energy
        if not rho > 0.0:
            break
        factor += 2.0 * (1.0 - lag / n) * rho
    return min(factor, max(1.0, n / stats.MIN_EFFECTIVE_POINTS))


@PROPERTY
@given(ys=st.lists(values, min_size=3, max_size=200))
def test_theil_sen_residuals_and_levels_are_the_plain_arithmetic(ys: list[float]) -> None:
    from memwarden.find.analysis.levels import long_run_variance

    xs = [float(3 * k + 1) for k in range(len(ys))]
    fit = stats.theil_sen(xs, ys)
    assert fit is not None
    intercept = median([y - fit.slope * x for x, y in zip(xs, ys, strict=True)])
    residuals = [y - fit.slope * x - intercept for x, y in zip(xs, ys, strict=True)]
    assert fit.intercept == intercept or (math.isnan(fit.intercept) and math.isnan(intercept))
    assert fit.variance_factor == _inflation_by_loops(residuals)
    mean = math.fsum(residuals) / len(ys)
    spread = math.fsum((r - mean) ** 2 for r in residuals) / max(len(ys) - 1, 1)
    assert long_run_variance(xs, ys, fit) == spread * fit.variance_factor


def _rising_steps(by: list[float], start: int, stop: int) -> int:
    return sum(by[i] > by[i - 1] for i in range(max(start, 1), stop))


@PROPERTY
@given(ys=st.lists(values, min_size=20, max_size=200))
def test_window_rises_count_the_steps_up(ys: list[float]) -> None:
    xs = [float(k) for k in range(len(ys))]
    got = trend.assess_trend(xs, ys, trend.TrendRule(1.0))
    if got.fit is None:
        return
    bounds = trend._split(len(ys), 4)
    assert got.window_rises == tuple(_rising_steps(ys, a, b) for a, b in bounds)
    assert got.strictly_rising == all(b > a for a, b in pairwise(ys))


@PROPERTY
@given(ys=st.lists(values, min_size=32, max_size=400), most=st.integers(1, 60))
def test_numpy_bin_medians_are_the_plain_loops(ys: list[float], most: int) -> None:
    xs = [float(k) for k in range(len(ys))]
    fast = trend._bin_medians(xs, ys, most)
    stats._NUMPY[:] = [None]
    try:
        plain = trend._bin_medians(xs, ys, most)
    finally:
        stats._NUMPY.clear()
    assert fast == plain
    assert [math.copysign(1.0, v) for v in fast[1]] == [math.copysign(1.0, v) for v in plain[1]]
    ints = [int(y) for y in ys]  # integer counts, as a census gives them
    assert trend._bin_medians(xs, ints, most) == _bins_one_by_one(xs, ints, most)
