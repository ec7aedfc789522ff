"""How far a window's level sits above the window before it, in standard errors.

A window's own trend test sees only its own points: for a steady leak whose
rise per window is about one noise deviation its z is near 2, so four
windows all passing at z >= 1.645 is a coin toss or worse. A leak also lifts
each window's level above the previous one by the same rise, and a
difference of two levels is known far better than a slope inside one window
(about 2.4 times the z for the same points: a slope is fixed mostly by the
few points at the window's ends, a level by all of them).

The level is the window's median (a spike or a collection does not move
it). Its variance is the Gaussian median's, pi/2 times the mean's, from the
long-run variance of the noise: the spread of the points around a line
times the autocorrelation factor of the trend test. A short window
understates both (its own mean and slope soak up part of slow noise: at 30
points of AR(1) noise with phi 0.8 the factor comes out near 3 against a
true 6 to 9), which made lifts of noise reach z 3 in 4% of windows; so the
larger of the window's own long-run variance and the whole series' is used.
Around one line through the whole series the bias is small, and where one
line fits badly (a cache that filled and stopped) its residuals only grow,
which errs toward no lift.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import repeat
from operator import mul, sub

from memwarden.find.analysis.stats import SlopeFit, median

__all__ = ["Level", "lift_z", "long_run_variance", "window_level"]

# Variance of the median of Gaussian points over that of their mean.
MEDIAN_VARIANCE_RATIO = math.pi / 2.0


@dataclass(frozen=True, slots=True)
class Level:
    """A window's median and the variance of that median."""

    median: float
    variance: float


def long_run_variance(xs: Sequence[float], ys: Sequence[float], fit: SlopeFit) -> float:
    """Variance of the points around ``fit``'s line times its autocorrelation factor."""
    n = len(ys)
    # y - slope * x - intercept and (r - mean) ** 2, each mapped in C.
    residuals = list(map(sub, map(sub, ys, map(mul, repeat(fit.slope), xs)),
                         repeat(fit.intercept)))
    mean = math.fsum(residuals) / n
    spread = math.fsum(map(pow, map(sub, residuals, repeat(mean)), repeat(2))) / max(n - 1, 1)
    return spread * fit.variance_factor


def window_level(xs: Sequence[float], ys: Sequence[float], fit: SlopeFit,
                 series_long_run: float = 0.0) -> Level:
    """The level of one window, given its fitted line (for the noise around it).

    ``series_long_run`` is the whole series' long-run variance
    (``long_run_variance`` over all points): the level's variance is taken
    from the larger of it and the window's own.
    """
    long_run = max(long_run_variance(xs, ys, fit), series_long_run)
    return Level(median(ys), MEDIAN_VARIANCE_RATIO * long_run / len(ys))


def lift_z(before: Level, after: Level) -> float:
    """How many standard errors ``after`` sits above ``before`` (negative: below)."""
    difference = after.median - before.median
    se = math.sqrt(before.variance + after.variance)
    if se > 0.0 and math.isfinite(se):
        return difference / se
    # Exact series (no noise around the lines): any lift is certain.
    return math.copysign(math.inf, difference) if difference else 0.0
