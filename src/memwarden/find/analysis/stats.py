"""Robust statistics for memory series.

A Theil-Sen slope (the median of pairwise slopes: a few spikes or steps do
not move it) with a Mann-Kendall trend test whose variance is inflated by
the residuals' autocorrelation (Yue and Wang's effective sample size).
Memory series are strongly autocorrelated (every point carries all the
allocations before it), and a test that treats them as independent points
calls noise a trend.

Deterministic: the same series always gives the same answer, so a report
can be reproduced from its log. Pure Python, but for the pairwise slopes of
Theil-Sen (thousands a series): with numpy installed (``memwarden[fast]``)
those are drawn, divided and sorted in it, to the same floats bit for bit
(``_pair_slopes_numpy``), and numpy is imported only by a process that
fits a long series (a judge, not the reading process: ``use_numpy``).
"""

from __future__ import annotations

import math
import random
from array import array
from bisect import bisect_right
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from itertools import repeat
from operator import add, call, ge, itemgetter, mul, sub, truediv
from typing import Any

__all__ = [
    "SlopeFit",
    "exact_array",
    "median",
    "normal_cdf",
    "numpy_or_none",
    "quantile",
    "theil_sen",
    "trimmed_mean",
    "trimmed_mean_se",
    "use_numpy",
    "variance_inflation",
]

# Pairs drawn for the Theil-Sen median when a series has more than this many:
# the median of 6000 random pairs sits within ~1.3 percentile points of the
# exact one, far below the differences the verdict cares about.
MAX_PAIRS = 6000
# Longest lag summed into the autocorrelation correction.
MAX_LAG = 30
# The correction never claims fewer independent points than this: even a
# random walk has a few.
MIN_EFFECTIVE_POINTS = 3.0
# Two-sided 99% normal quantile, for the slope interval.
Z_99 = 2.5758293035489


def median(values: Sequence[float]) -> float:
    """The median of a non-empty sequence."""
    ordered = sorted(values)
    return quantile(ordered, 0.5)


def quantile(ordered: Sequence[float], q: float) -> float:
    """Linear-interpolated quantile of an already sorted, non-empty sequence."""
    if not ordered:
        raise ValueError("quantile of an empty sequence")
    q = min(max(q, 0.0), 1.0)
    position = q * (len(ordered) - 1)
    low = math.floor(position)
    high = min(low + 1, len(ordered) - 1)
    fraction = position - low
    return ordered[low] + (ordered[high] - ordered[low]) * fraction


def _trim_count(n: int, proportion: float) -> int:
    return int(n * proportion)


def trimmed_mean(values: Sequence[float], proportion: float = 0.1) -> float:
    """Mean after dropping ``proportion`` of the values at each end.

    Per-request deltas carry rare huge values (a garbage collection freeing
    thousands of blocks inside an unrelated request, a temporary buffer):
    trimming keeps them from deciding a route's cost.
    """
    ordered = sorted(values)
    k = _trim_count(len(ordered), proportion)
    kept = ordered[k:len(ordered) - k] or ordered
    return math.fsum(kept) / len(kept)


def trimmed_mean_se(values: Sequence[float], proportion: float = 0.1) -> float:
    """Standard error of the trimmed mean (Tukey-McLaughlin, from the winsorized variance)."""
    n = len(values)
    if n < 2:
        return math.inf
    ordered = sorted(values)
    k = _trim_count(n, proportion)
    if 2 * k >= n:
        k = 0
    low, high = ordered[k], ordered[n - 1 - k]
    winsorized = [min(max(v, low), high) for v in ordered]
    mean = math.fsum(winsorized) / n
    variance = math.fsum((v - mean) ** 2 for v in winsorized) / (n - 1)
    kept_share = 1.0 - 2.0 * k / n
    return math.sqrt(variance) / (kept_share * math.sqrt(n))


def normal_cdf(z: float) -> float:
    return 0.5 * math.erfc(-z / math.sqrt(2.0))


def variance_inflation(residuals: Sequence[float]) -> float:
    """How much autocorrelation inflates the variance of a trend statistic.

    ``n / n_eff = 1 + 2 * sum((1 - k/n) * rho_k)`` with ``rho_k`` the
    autocorrelations of the detrended series: Yue and Wang's (2004)
    effective-sample-size correction of the Mann-Kendall variance. Yue and
    Wang take ``rho_k = rho_1 ** k`` (an AR(1) series); here the sample
    autocorrelations are summed over their initial positive run instead (the
    way Geyer's initial positive sequence is truncated), which is the same
    for AR(1) noise and does not understate slower-decaying noise. (Hamed and
    Rao's 1998 correction is a different one: rank autocorrelations, only the
    significant ones, weighted by (n-k)(n-k-1)(n-k-2).) Negative
    autocorrelation (noise that cancels out, as allocator noise does) never
    tightens the test: the factor is at least 1.
    """
    n = len(residuals)
    if n < 4:
        return 1.0
    mean = math.fsum(residuals) / n
    centred = list(map(sub, residuals, repeat(mean)))
    energy = math.fsum(map(mul, centred, centred))
    if energy <= 0.0 or not math.isfinite(energy):
        return 1.0
    factor = 1.0
    for lag in range(1, min(MAX_LAG, n // 3) + 1):
        rho = math.fsum(map(mul, centred[:-lag], centred[lag:])) / energy
        if not rho > 0.0:
            break
        factor += 2.0 * (1.0 - lag / n) * rho
    return min(factor, max(1.0, n / MIN_EFFECTIVE_POINTS))


@dataclass(frozen=True, slots=True)
class SlopeFit:
    """A robust line through a series, with its trend test.

    ``z`` is the Mann-Kendall statistic after the autocorrelation correction
    (positive: rising). ``low``/``high`` bound the slope at 99% with the same
    corrected variance (Sen's interval). ``variance_factor`` is n / n_eff.
    """

    slope: float
    intercept: float
    low: float
    high: float
    z: float
    n: int
    variance_factor: float


@lru_cache(maxsize=32)
def _sampled_pairs(n: int) -> tuple[array[int], array[int]]:
    """The MAX_PAIRS index pairs (i != j) drawn for a series of ``n`` points.

    Seeded by the length so that a given series always gives the same fit; the
    draw is the same for every series of that length, so it is made once (series
    are binned to a few lengths, and a fleet's worker lives repeat them). Kept as
    4-byte arrays and few: 48 KiB a length, so analyze's memory stays flat.
    Drawn in that order: i from one draw, j from the next, j past i skipping i.
    """
    draw = random.Random(n * 7919 + 1).random
    # The draws, and int(draw * n) of each, all mapped in C (float * int is float * float).
    draws = list(map(call, repeat(draw, 2 * MAX_PAIRS)))
    firsts = array("I", map(int, map(mul, draws[0::2], repeat(float(n)))))
    others = list(map(int, map(mul, draws[1::2], repeat(float(n - 1)))))
    seconds = array("I", map(add, others, map(ge, others, firsts)))
    return firsts, seconds


def _pair_slopes(xs: Sequence[float], ys: Sequence[float]) -> list[float]:
    n = len(xs)
    if n >= NUMPY_MIN_POINTS:
        np = numpy_or_none()
        if np is not None:
            fast = _pair_slopes_numpy(np, xs, ys)
            if fast is not None:
                return fast
    slopes: list[float]
    if n * (n - 1) // 2 <= MAX_PAIRS:
        slopes = [(ys[j] - ys[i]) / dx for i in range(n - 1) for j in range(i + 1, n)
                  if (dx := xs[j] - xs[i])]
    else:
        firsts, seconds = _sampled_pairs(n)
        slopes = _sampled_slopes(xs, ys, firsts, seconds)
    slopes.sort()
    return slopes


# numpy takes over from this many points (fewer: its calls cost more than the loop).
NUMPY_MIN_POINTS = 32
# Values numpy's float64 holds exactly, and whose differences it holds exactly too:
# there (y_j - y_i) / (x_j - x_i) is the same float as Python's, ints included.
_EXACT_BELOW = 2.0 ** 52
_NUMPY: list[Any] = []  # the module once looked for (None: not installed)


def use_numpy(allowed: bool) -> None:
    """Whether this process may use numpy (looked for again on the next call when allowed).

    The numbers are the same either way. ``memwarden analyze``'s reading
    process turns it off once its judges run (``judges.Judges``): the long
    fits are theirs, and the 11 MiB numpy takes would count in its peak for
    the few fits of the report.
    """
    _NUMPY[:] = [] if allowed else [None]


def numpy_or_none() -> Any:
    if not _NUMPY:
        try:
            import numpy
        except ImportError:  # memwarden[fast] not installed: the pure Python path
            _NUMPY.append(None)
        else:
            _NUMPY.append(numpy)
    return _NUMPY[0]


def exact_array(np: Any, values: Sequence[float]) -> Any:
    """``values`` as a float64 array when it holds them and their differences exactly
    (finite numbers, ints included, below 2**52 in size; at least one); else None."""
    try:
        array = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError, OverflowError):
        return None
    if not len(array) or not abs(array).max() < _EXACT_BELOW:
        return None  # NaN and infinities fail the comparison too
    return array


@lru_cache(maxsize=32)
def _sampled_pairs_numpy(n: int) -> tuple[Any, Any]:
    """``_sampled_pairs(n)`` as numpy index arrays, drawn in bulk.

    ``random()`` is ``(a >> 5) * 2**26 + (b >> 6)`` over 2**53 for two successive
    32-bit outputs a, b of the generator, and ``getrandbits(32 * k)`` gives k
    successive outputs as the little-endian words of one int: the same draws,
    and every step of the arithmetic below exact, as in ``random()``.
    """
    np = numpy_or_none()
    words = 4 * MAX_PAIRS  # two draws a pair, two outputs a draw
    bits = random.Random(n * 7919 + 1).getrandbits(32 * words)
    out = np.frombuffer(bits.to_bytes(4 * words, "little"), dtype="<u4")
    draws = ((out[0::2] >> 5).astype(np.float64) * 67108864.0 + (out[1::2] >> 6)) \
        * (1.0 / 9007199254740992.0)
    firsts = (draws[0::2] * float(n)).astype(np.int32)
    others = (draws[1::2] * float(n - 1)).astype(np.int32)
    return firsts, others + (others >= firsts)


@lru_cache(maxsize=8)
def _all_pairs_numpy(n: int) -> tuple[Any, Any]:
    """Every pair i < j of ``n`` points, in the plain loop's order (i, then j)."""
    pairs: tuple[Any, Any] = numpy_or_none().triu_indices(n, 1)
    return pairs


def _pair_slopes_numpy(np: Any, xs: Sequence[float], ys: Sequence[float]
                       ) -> list[float] | None:
    """``_pair_slopes`` in numpy, the same floats in the same order; None (the plain path)
    unless every x and y is a finite number below 2**52 in size.

    The same pairs in the same order (pairs with equal xs left out), the same
    subtractions and divisions (IEEE, in float64 either way), then sorted. Equal
    floats are the same bits but for 0.0 and -0.0: Python's sort is stable, so
    its zeros keep the order they came in, and here they are put back in it.
    """
    x = exact_array(np, xs)
    y = exact_array(np, ys)
    if x is None or y is None:
        return None
    n = len(x)
    if n * (n - 1) // 2 <= MAX_PAIRS:
        firsts, seconds = _all_pairs_numpy(n)
    else:
        firsts, seconds = _sampled_pairs_numpy(n)
    dx = x[seconds] - x[firsts]
    dy = y[seconds] - y[firsts]
    if not dx.all():
        kept = dx != 0.0
        dx, dy = dx[kept], dy[kept]
    slopes = dy / dx
    ordered = np.sort(slopes)
    low, high = ordered.searchsorted(0.0, "left"), ordered.searchsorted(0.0, "right")
    if high > low:
        ordered[low:high] = slopes[slopes == 0.0]
    result: list[float] = ordered.tolist()
    return result


def _sampled_slopes(xs: Sequence[float], ys: Sequence[float], firsts: array[int],
                    seconds: array[int]) -> list[float]:
    """(ys[j] - ys[i]) / (xs[j] - xs[i]) for each pair, pairs with xs[j] == xs[i] left out.

    The same divisions, done in C: the points picked by itemgetter, differences and
    quotients by map. Strictly increasing xs never divide by zero; should they tie,
    the pairs are taken one by one instead.
    """
    if len(firsts) >= 2:
        pick_i, pick_j = itemgetter(*firsts), itemgetter(*seconds)
        try:
            return list(map(truediv, map(sub, pick_j(ys), pick_i(ys)),
                            map(sub, pick_j(xs), pick_i(xs))))
        except ZeroDivisionError:
            pass
    return [(ys[j] - ys[i]) / dx for i, j in zip(firsts, seconds, strict=True)
            if (dx := xs[j] - xs[i])]


def _mann_kendall_s(ys: Sequence[float]) -> int:
    """Exact S = concordant - discordant pairs, for xs already increasing.

    Of the pairs a point closes with the points before it, those above it are
    discordant, those equal tie, the rest concord: S = all pairs - tied pairs
    - 2 * discordant. Each point costs one bisect and one insertion into a
    sorted list (a memmove, in C): fast for the few thousand points a test
    sees (series are binned before they get here).
    """
    seen: list[float] = []
    insert = seen.insert
    discordant = 0
    for y in ys:
        at = bisect_right(seen, y)
        discordant += len(seen) - at
        insert(at, y)
    n = len(seen)
    tied = sum(t * (t - 1) // 2 for t in Counter(seen).values())
    return n * (n - 1) // 2 - tied - 2 * discordant


def _mann_kendall_variance(ys: Sequence[float]) -> float:
    n = len(ys)
    total = n * (n - 1) * (2 * n + 5)
    # Integer counts (threads, fds) tie constantly; ties carry no information.
    for t in Counter(ys).values():
        if t > 1:
            total -= t * (t - 1) * (2 * t + 5)
    return total / 18.0


def theil_sen(xs: Sequence[float], ys: Sequence[float]) -> SlopeFit | None:
    """Fit ``ys`` against strictly increasing ``xs``; None with fewer than 3 points."""
    n = len(xs)
    if n < 3 or len(ys) != n:
        return None
    slopes = _pair_slopes(xs, ys)
    if not slopes:
        return None
    slope = quantile(slopes, 0.5)
    # y - slope * x, then less the intercept: the same operations, mapped in C.
    offsets = list(map(sub, ys, map(mul, repeat(slope), xs)))
    intercept = median(offsets)
    residuals = list(map(sub, offsets, repeat(intercept)))
    factor = variance_inflation(residuals)
    variance = _mann_kendall_variance(ys) * factor
    s = _mann_kendall_s(ys)
    # The continuity correction (S - sign S) keeps tiny series from overclaiming.
    z = (s - math.copysign(1.0, s)) / math.sqrt(variance) if variance > 0.0 and s else 0.0
    pairs = n * (n - 1) / 2.0
    half_width = Z_99 * math.sqrt(max(variance, 0.0))
    low = quantile(slopes, (pairs - half_width) / 2.0 / pairs)
    high = quantile(slopes, (pairs + half_width) / 2.0 / pairs)
    return SlopeFit(slope=slope, intercept=intercept, low=low, high=high, z=z, n=n,
                    variance_factor=factor)
