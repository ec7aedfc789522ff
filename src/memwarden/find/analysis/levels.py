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
spread of the points around the window's Theil-Sen line, inflated by the
same autocorrelation factor as the trend test.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from memwarden.find.analysis.stats import SlopeFit, median

__all__ = ["Level", "lift_z", "window_level"]

# Variance of the median of Gaussian points over that of their mean.
MEDIAN_VARIANCE_RATIO = math.pi / 2.0


@dataclass(frozen=True, slots=True)
class Level:
    """A window's median and the variance of that median."""

    median: float
    variance: float


def window_level(xs: Sequence[float], ys: Sequence[float], fit: SlopeFit) -> Level:
    """The level of one window, given its fitted line (for the noise around it)."""
    n = len(ys)
    residuals = [y - fit.slope * x - fit.intercept for x, y in zip(xs, ys, strict=True)]
    mean = math.fsum(residuals) / n
    spread = math.fsum((r - mean) ** 2 for r in residuals) / max(n - 1, 1)
    variance = MEDIAN_VARIANCE_RATIO * spread * fit.variance_factor / n
    return Level(median(ys), variance)


def lift_z(before: Level, after: Level) -> float:
    """How many standard errors ``after`` sits above ``before`` (negative: below)."""
    difference = after.median - before.median
    se = math.sqrt(before.variance + after.variance)
    if se > 0.0 and math.isfinite(se):
        return difference / se
    # Exact series (no noise around the lines): any lift is certain.
    return math.copysign(math.inf, difference) if difference else 0.0
