"""Is a series growing, and does the growth hold up across the run?

One overall robust slope is not enough: a cache that fills and stops, a
lazy import, or a single high-water step all give a positive slope. The
post-warm-up series is split into windows and growth has to show up in
every one of them (the rule CPython's refleak hunter applies to its runs);
the pattern of windows that do and do not grow names what was seen.

A middle window may show its growth either by its own trend test or by a
lift of its level over the window before (levels.py): the lift sees a
steady leak with far more certainty than a quarter of the points' slope
does. The first and the last windows keep to their own trend test, since
they are the ones that tell a leak from growth that started late or has
stopped (a cache that filled in the third window lifts the fourth's level
without the fourth growing).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import pairwise
from operator import gt
from typing import Literal

from memwarden.find.analysis.levels import Level, lift_z, long_run_variance, window_level
from memwarden.find.analysis.stats import (
    NUMPY_MIN_POINTS,
    SlopeFit,
    exact_array,
    median,
    numpy_or_none,
    theil_sen,
)

__all__ = ["Trend", "TrendRule", "TrendState", "assess_trend"]

TrendState = Literal[
    "insufficient",  # too few points to say anything
    "flat",          # no window grows
    "below_floor",   # grows everywhere, but by less than the floor that matters
    "growing",       # grows in every window, significantly, above the floor
    "plateau",       # grew, then the last window stopped growing
    "slowing",       # grows everywhere, but each window less: a cache nearing full?
    "late",          # only the last windows grow: started late, run longer
    "mixed",         # windows disagree
]

# One-sided thresholds of the autocorrelation-corrected Mann-Kendall z: the
# whole series must be very unlikely under no trend (p < 0.0013), each window
# merely unlikely (p < 0.05); requiring all windows makes the joint test strict.
Z_OVERALL = 3.0
Z_WINDOW = 1.645
# A middle window whose level sits this many standard errors above the
# previous window's grows without its own trend test passing (one-sided
# p < 0.0013, as strict as the whole series' test).
Z_LIFT = 3.0
# A window "grows" when its slope reaches this share of the floor.
WINDOW_FLOOR_SHARE = 0.5
# The last window grows at under this share of the earlier ones: slowing.
PLATEAU_SHARE = 0.2
# The last window grows at under this share of the first, all decreasing: slowing.
SLOWING_SHARE = 1.0 / 3.0
# A window needs this many points before its own trend test can pass.
MIN_WINDOW_POINTS = 5
# Longer series are reduced to this many bin medians before testing: the
# trend survives, the cost stays flat for logs of a million lines.
MAX_TEST_POINTS = 2000


@dataclass(frozen=True, slots=True)
class TrendRule:
    """What counts as growth for one kind of series.

    ``floor`` is the smallest slope (per request) worth calling growth;
    ``min_growth`` the smallest total rise over the tested span.
    ``min_rises`` is how many of a window's steps must go up for the window
    to grow: a leak keeps adding, while a lazy import or a one-off load is a
    single step that a robust slope can still read as growth when it lands
    mid-window. For exact series (the live heap after a collection), where a
    step up is never noise.
    ``level_lift`` lets a middle window's level lift stand in for its own
    trend test (off: every window needs its own test, the earlier rule).
    """

    floor: float
    min_growth: float = 0.0
    windows: int = 4
    min_rises: int = 0
    level_lift: bool = True

    def __post_init__(self) -> None:
        if not self.floor > 0.0:
            raise ValueError(f"TrendRule.floor must be positive, got {self.floor!r}")
        if self.windows < 2:
            raise ValueError(f"TrendRule.windows must be at least 2, got {self.windows!r}")
        if self.min_rises < 0:
            raise ValueError(f"TrendRule.min_rises must be >= 0, got {self.min_rises!r}")

    @property
    def min_points(self) -> int:
        """Points needed for the full test (the sparse test runs below it)."""
        return self.windows * MIN_WINDOW_POINTS


@dataclass(frozen=True, slots=True)
class Trend:
    """The outcome of ``assess_trend``.

    ``sparse`` marks a series too short for per-window trend tests: there
    each window's growth is judged from its end points alone.
    """

    state: TrendState
    n: int
    fit: SlopeFit | None
    window_slopes: tuple[float, ...]
    window_growth: tuple[bool, ...]
    span: float
    first: float | None
    last: float | None
    sparse: bool = False
    # Per window, its lowest point: a leak lifts every one of them.
    window_lows: tuple[float, ...] = ()
    # Every point above the one before it.
    strictly_rising: bool = False
    # Per window, how many steps (point to next point) went up.
    window_rises: tuple[int, ...] = ()
    # Per window, its level's lift over the previous window in standard
    # errors (0 for the first window).
    window_lifts: tuple[float, ...] = ()

    @property
    def slope(self) -> float:
        return self.fit.slope if self.fit is not None else 0.0

    @property
    def growth(self) -> float:
        """Total rise over the tested span implied by the slope."""
        return self.slope * self.span

    @property
    def windows_growing(self) -> int:
        return sum(self.window_growth)

    @property
    def floor_drops(self) -> int:
        """Windows whose low point fell back to (or below) the previous window's."""
        return sum(b <= a for a, b in pairwise(self.window_lows))

    @property
    def last_drop(self) -> float:
        """How far the last window's low point fell below the one before (0 if it rose)."""
        if len(self.window_lows) < 2:
            return 0.0
        return max(0.0, self.window_lows[-2] - self.window_lows[-1])


def _insufficient(n: int) -> Trend:
    return Trend("insufficient", n, None, (), (), 0.0, None, None)


def _bin_medians(xs: Sequence[float], ys: Sequence[float],
                 max_points: int) -> tuple[list[float], list[float]]:
    n = len(xs)
    if n <= max_points:
        return list(xs), list(ys)
    size = -(-n // max_points)
    bx = [xs[(start + min(start + size, n) - 1) // 2] for start in range(0, n, size)]
    by: list[float] = []
    # median() of each bin, its interpolation inlined: a full bin's two middle
    # points and their weight are the same for every bin.
    middle = 0.5 * (size - 1)
    low = math.floor(middle)
    high = min(low + 1, size - 1)
    fraction = middle - low
    full = n - n % size
    fast = _full_bin_medians_numpy(ys, full, size, low, high, fraction)
    if fast is not None:
        by = fast
    else:
        for start in range(0, full, size):
            ordered = sorted(ys[start:start + size])
            by.append(ordered[low] + (ordered[high] - ordered[low]) * fraction)
    if full < n:
        by.append(median(ys[full:n]))
    return bx, by


def _full_bin_medians_numpy(ys: Sequence[float], full: int, size: int, low: int, high: int,
                            fraction: float) -> list[float] | None:
    """The full bins' medians in numpy, each bin a row of a sorted copy: the same floats
    (the same arithmetic, IEEE either way); None (the plain loop) without numpy, for
    values it does not hold exactly, and where a -0.0 is (an unstable sort may put it on
    either side of a 0.0, where Python's stable one keeps the order they came in)."""
    if full < NUMPY_MIN_POINTS:
        return None
    np = numpy_or_none()
    if np is None:
        return None
    values = exact_array(np, ys[:full])
    if values is None or np.signbit(values[values == 0.0]).any():
        return None
    rows = np.sort(values.reshape(-1, size), axis=1)
    medians: list[float] = (rows[:, low] + (rows[:, high] - rows[:, low]) * fraction).tolist()
    return medians


def _split(n: int, parts: int) -> list[tuple[int, int]]:
    return [(k * n // parts, (k + 1) * n // parts) for k in range(parts)]


def _classify(grows: Sequence[bool], slopes: Sequence[float], fit: SlopeFit,
              rule: TrendRule, growth: float) -> TrendState:
    if all(grows):
        if fit.slope < rule.floor or growth < rule.min_growth:
            return "below_floor"
        if fit.z < Z_OVERALL or fit.low <= 0.0:
            return "mixed"
        first, last = slopes[0], slopes[-1]
        decreasing = all(b <= a for a, b in pairwise(slopes))
        if (decreasing and last < SLOWING_SHARE * first) or (
                last < PLATEAU_SHARE * median(slopes[:-1])):
            return "slowing"
        return "growing"
    if not grows[-1]:
        return "plateau" if any(grows) else "flat"
    first_growing = grows.index(True)
    if first_growing > 0 and all(grows[first_growing:]):
        return "late"
    return "mixed"


def _sparse_trend(xs: Sequence[float], ys: Sequence[float], rule: TrendRule) -> Trend:
    n = len(xs)
    fit = theil_sen(xs, ys)
    if fit is None:
        return _insufficient(n)
    parts = min(rule.windows, n - 1)
    slopes: list[float] = []
    grows: list[bool] = []
    for start, stop in _split(n - 1, parts):
        # Windows share their boundary point so that each one has two ends.
        dx = xs[stop] - xs[start]
        slope = (ys[stop] - ys[start]) / dx if dx else 0.0
        slopes.append(slope)
        grows.append(ys[stop] > ys[start] and slope >= WINDOW_FLOOR_SHARE * rule.floor)
    span = xs[-1] - xs[0]
    growth = fit.slope * span
    if all(grows):
        state: TrendState = (
            "below_floor" if fit.slope < rule.floor or growth < rule.min_growth else "growing")
    elif not grows[-1]:
        state = "plateau" if any(grows) else "flat"
    else:
        state = "mixed"
    rising = all(b > a for a, b in pairwise(ys))
    return Trend(state, n, fit, tuple(slopes), tuple(grows), span, ys[0], ys[-1], sparse=True,
                 strictly_rising=rising)


@dataclass(frozen=True, slots=True)
class _Window:
    """One window's figures, whatever the rule (its trend test, level lift, low point)."""

    slope: float
    z: float
    lift: float
    low: float
    up: int


@dataclass(frozen=True, slots=True)
class _Fits:
    """What ``assess_trend`` computes from the series alone: the rule only weighs it."""

    fit: SlopeFit
    windows: tuple[_Window, ...]


# The fits of the last few series tested, by identity of their (immutable) xs and ys:
# a life's RSS series is tested under two rules (rss support, and RSS alone), and the
# fits, nearly all of the cost, do not depend on the rule.
_RECENT = 8
_recent: list[tuple[tuple[float, ...], tuple[float, ...], int, _Fits | None]] = []


def _series_fits(xs: Sequence[float], ys: Sequence[float], windows: int) -> _Fits | None:
    immutable = type(xs) is tuple and type(ys) is tuple
    if immutable:
        for seen_xs, seen_ys, seen_windows, fits in _recent:
            if seen_xs is xs and seen_ys is ys and seen_windows == windows:
                return fits
    fits = _fits(xs, ys, windows)
    if immutable:
        _recent.append((xs, ys, windows, fits))  # type: ignore[arg-type]
        if len(_recent) > _RECENT:
            del _recent[0]
    return fits


def _fits(xs: Sequence[float], ys: Sequence[float], windows: int) -> _Fits | None:
    bx, by = _bin_medians(xs, ys, MAX_TEST_POINTS)
    fit = theil_sen(bx, by)
    if fit is None:
        return None
    found: list[_Window] = []
    previous_level: Level | None = None
    # Computed with the lift off too, so that window_lifts mean the same either way.
    series_long_run = long_run_variance(bx, by, fit)
    for start, stop in _split(len(bx), windows):
        window_fit = theil_sen(bx[start:stop], by[start:stop])
        slope = window_fit.slope if window_fit is not None else 0.0
        z = window_fit.z if window_fit is not None else 0.0
        level = (window_level(bx[start:stop], by[start:stop], window_fit, series_long_run)
                 if window_fit is not None else None)
        lift = (lift_z(previous_level, level)
                if previous_level is not None and level is not None else 0.0)
        previous_level = level
        # Steps that end in this window, the one from the previous window included.
        first = max(start, 1)
        up = sum(map(gt, by[first:stop], by[first - 1:stop - 1]))
        found.append(_Window(slope, z, lift, min(by[start:stop]), up))
    return _Fits(fit, tuple(found))


def assess_trend(xs: Sequence[float], ys: Sequence[float], rule: TrendRule) -> Trend:
    """Judge the growth of ``ys`` over strictly increasing ``xs`` (request numbers)."""
    n = len(xs)
    if n < 3 or len(ys) != n:
        return _insufficient(n)
    if n < rule.min_points:
        return _sparse_trend(xs, ys, rule)
    fits = _series_fits(xs, ys, rule.windows)
    if fits is None:
        return _insufficient(n)
    fit = fits.fit
    slopes: list[float] = []
    grows: list[bool] = []
    previous_low: float | None = None
    for k, window in enumerate(fits.windows):
        middle = 0 < k < rule.windows - 1
        trend_shown = window.z >= Z_WINDOW or (rule.level_lift and middle and window.z > 0.0
                                                and window.lift >= Z_LIFT)
        # The floor must rise too. Garbage that survives into the oldest
        # generation ramps up like a leak until a full collection drops it
        # back; a window holding such a drop reaches back down to the
        # earlier floor, while a leak lifts every floor.
        floor_rises = previous_low is None or window.low > previous_low
        previous_low = window.low
        slopes.append(window.slope)
        grows.append(window.slope >= WINDOW_FLOOR_SHARE * rule.floor and trend_shown
                     and floor_rises and window.up >= rule.min_rises)
    span = xs[-1] - xs[0]
    state = _classify(grows, slopes, fit, rule, fit.slope * span)
    rising = all(map(gt, ys[1:], ys[:-1]))
    return Trend(state, n, fit, tuple(slopes), tuple(grows), span, ys[0], ys[-1],
                 window_lows=tuple(w.low for w in fits.windows), strictly_rising=rising,
                 window_rises=tuple(w.up for w in fits.windows),
                 window_lifts=tuple(w.lift for w in fits.windows))
