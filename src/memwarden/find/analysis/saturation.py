"""Growth that levels off, or a steady rate after warm-up: which model fits.

A cache that fills and a leak that follows a warm-up both start steep and
slow down; they differ in where the rate settles. Two models are fitted to
the tested series by least squares:

- levels off: ``y = a + c * (1 - exp(-t / tau))``, the fill curve of a
  cache over a bounded key space (its rate decays to zero);
- steady after warm-up: ``y = a + b * t + c * (1 - exp(-t / tau_w))``, a
  warm-up that decays within the first quarter of the run, then a constant
  rate ``b``.

Both time constants are searched on a grid (the levelling one up to four
times the span, so a cache still filling at the end is a plateau model that
fits). Levelling off is ruled out when the steady model wins by a
log-likelihood ratio, ``n_eff / 2 * ln(SSE_level / SSE_steady)``, of
``SATURATION_LEAK_EVIDENCE`` (``n_eff``: the points left after the
residuals' autocorrelation, since a step or a slow wobble is not fresh
evidence at every census), or when the last half of the series rises
faster, at the low end of its 99% interval, than the best levelling curve
lets it. ``analysis.plateau`` turns that into a verdict; the false-leak rate
of the rule over simulated traps is measured by the tests and by
``benchmarks/recall.py``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from memwarden.find.analysis.stats import median, theil_sen, variance_inflation

__all__ = ["SATURATION_LEAK_EVIDENCE", "ModelComparison", "compare_models"]

# The steady rate beats levelling off outright when the log-likelihood ratio
# reaches this (about e^8 = 3,000 to 1).
SATURATION_LEAK_EVIDENCE = 8.0
# Time constants tried, as multiples of the tested span.
_LEVEL_TAUS = tuple(0.02 * (4.0 / 0.02) ** (k / 23) for k in range(24))
_WARMUP_TAUS = tuple(0.02 * (0.25 / 0.02) ** (k / 11) for k in range(12))
# Series are reduced to this many bin medians before fitting.
_MAX_POINTS = 400
# Fewer points than this and no comparison is made.
MIN_POINTS = 12


@dataclass(frozen=True, slots=True)
class ModelComparison:
    """Both fits of one series and the evidence between them.

    ``rate`` is the steady model's rate ``b`` (per request); ``tail_rate``
    the robust slope of the last half of the series, with ``tail_z`` its
    trend statistic; ``level_end_rate`` the rate the levelling model has at
    the end of the series; ``evidence`` the log-likelihood ratio in favour
    of the steady rate (negative: levelling off fits better).
    """

    rate: float
    warmup: float
    level_tau: float
    level_end_rate: float
    level_total: float
    # What the levelling model says the last half of the series grows per request.
    level_tail_rate: float
    sse_steady: float
    sse_level: float
    effective_points: float
    evidence: float
    tail_rate: float
    tail_z: float
    tail_low: float
    span: float

    @property
    def variance_ratio(self) -> float:
        if self.sse_steady <= 0.0:
            return math.inf if self.sse_level > 0.0 else 1.0
        return self.sse_level / self.sse_steady

    @property
    def levelling_contradicted(self) -> bool:
        """The last half rises faster than any levelling fit allows, or the
        best levelling curve does not level off within the run (it is a line)."""
        return (self.evidence >= SATURATION_LEAK_EVIDENCE
                or self.tail_low > self.level_tail_rate
                or self.level_tau >= self.span)

    def describe(self, unit: str, settled: bool = False) -> str:
        """Which model won and by how much, in words; ``settled``: a second witness
        (RSS) has it that the rate settled, and the last half outpaces the end of
        the levelling curve."""
        ratio = self.variance_ratio
        times = "many times" if not math.isfinite(ratio) else f"{ratio:.1f}x"
        tail = (f"the last half rises {self.tail_rate:,.2f} {unit}/request (99% interval "
                f"from {self.tail_low:,.2f})")
        if settled and not self.levelling_contradicted:
            return (f"{tail}, faster than the best levelling curve (time constant "
                    f"{self.level_tau:,.0f} requests) ends, at {self.level_end_rate:,.2f}: "
                    f"it has not levelled off (log-likelihood ratio {self.evidence:.1f} for "
                    f"a steady {self.rate:,.2f} {unit}/request after warm-up)")
        steady = f"a steady {self.rate:,.2f} {unit}/request after warm-up"
        if self.evidence >= SATURATION_LEAK_EVIDENCE:
            return (f"{steady} beats growth that levels off: residual variance {times} "
                    f"smaller, log-likelihood ratio {self.evidence:.1f}; {tail}")
        if self.tail_low > self.level_tail_rate:
            return (f"{steady} beats growth that levels off: {tail}, where the best "
                    f"levelling curve (time constant {self.level_tau:,.0f} requests) allows "
                    f"{self.level_tail_rate:,.2f}; log-likelihood ratio {self.evidence:.1f}")
        if self.levelling_contradicted:
            return (f"{steady} beats growth that levels off: the best levelling curve does "
                    f"not level off within the run (time constant {self.level_tau:,.0f} "
                    f"requests, over the {self.span:,.0f} tested), so it is a line; {tail}; "
                    f"log-likelihood ratio {self.evidence:.1f}")
        return (f"growth that levels off (time constant {self.level_tau:,.0f} requests) "
                f"explains it: it allows {self.level_tail_rate:,.2f} {unit}/request in the "
                f"last half, where {tail}; log-likelihood ratio {self.evidence:.1f} for a "
                f"steady rate, under the {SATURATION_LEAK_EVIDENCE:g} that would beat it")


def _bin(xs: Sequence[float], ys: Sequence[float]) -> tuple[list[float], list[float]]:
    n = len(xs)
    if n <= _MAX_POINTS:
        return list(xs), list(ys)
    size = -(-n // _MAX_POINTS)
    bx, by = [], []
    for start in range(0, n, size):
        stop = min(start + size, n)
        bx.append(xs[(start + stop - 1) // 2])
        by.append(median(ys[start:stop]))
    return bx, by


def _least_squares(columns: Sequence[Sequence[float]], ys: Sequence[float]
                   ) -> tuple[list[float], float] | None:
    """Coefficients and SSE of ys on the columns (normal equations, tiny systems)."""
    k = len(columns)
    gram = [[math.fsum(a * b for a, b in zip(columns[i], columns[j], strict=True))
             for j in range(k)] for i in range(k)]
    moment = [math.fsum(a * y for a, y in zip(columns[i], ys, strict=True)) for i in range(k)]
    aug = [[*gram[i], moment[i]] for i in range(k)]
    for col in range(k):
        pivot = max(range(col, k), key=lambda r: abs(aug[r][col]))
        if abs(aug[pivot][col]) < 1e-12 * max(1.0, abs(gram[col][col])):
            return None
        aug[col], aug[pivot] = aug[pivot], aug[col]
        for r in range(col + 1, k):
            factor = aug[r][col] / aug[col][col]
            for c in range(col, k + 1):
                aug[r][c] -= factor * aug[col][c]
    coef = [0.0] * k
    for r in range(k - 1, -1, -1):
        tail = math.fsum(aug[r][c] * coef[c] for c in range(r + 1, k))
        coef[r] = (aug[r][k] - tail) / aug[r][r]
    sse = math.fsum((y - math.fsum(coef[i] * columns[i][p] for i in range(k))) ** 2
                    for p, y in enumerate(ys))
    return coef, sse


def _residuals(columns: Sequence[Sequence[float]], coef: Sequence[float],
               ys: Sequence[float]) -> list[float]:
    return [y - math.fsum(coef[i] * columns[i][p] for i in range(len(coef)))
            for p, y in enumerate(ys)]


def compare_models(xs: Sequence[float], ys: Sequence[float]) -> ModelComparison | None:
    """Fit both models to a series over strictly increasing request numbers."""
    if len(xs) < MIN_POINTS or len(xs) != len(ys):
        return None
    bx, by = _bin(xs, ys)
    x0 = bx[0]
    span = bx[-1] - x0
    if not span > 0 or not all(math.isfinite(y) for y in by):
        return None
    ts = [(x - x0) / span for x in bx]
    ones = [1.0] * len(ts)
    best_level: tuple[float, list[float], float] | None = None
    for tau in _LEVEL_TAUS:
        fill = [1.0 - math.exp(-t / tau) for t in ts]
        fit = _least_squares((ones, fill), by)
        if fit is None:
            continue
        coef, sse = fit
        if coef[1] < 0.0:  # a fall is not a fill: the flat line is the levelling model then
            flat = _least_squares((ones,), by)
            if flat is None:
                continue
            coef, sse = [flat[0][0], 0.0], flat[1]
        if best_level is None or sse < best_level[2]:
            best_level = (tau, coef, sse)
    best_steady: tuple[float, list[float], float, list[float]] | None = None
    for tau in _WARMUP_TAUS:
        warm = [1.0 - math.exp(-t / tau) for t in ts]
        columns = (ones, ts, warm)
        fit = _least_squares(columns, by)
        if fit is None:
            continue
        coef, sse = fit
        if best_steady is None or sse < best_steady[2]:
            best_steady = (tau, coef, sse, _residuals(columns, coef, by))
    if best_level is None or best_steady is None:
        return None
    level_tau, level_coef, sse_level = best_level
    _warm_tau, steady_coef, sse_steady, residuals = best_steady
    n = len(by)
    n_eff = n / variance_inflation(residuals)
    floor = 1e-12 * max(1.0, max(abs(y) for y in by)) ** 2 * n
    evidence = 0.5 * n_eff * math.log((sse_level + floor) / (sse_steady + floor))
    mid = len(bx) // 2
    tail = theil_sen(bx[mid:], by[mid:])
    t_mid = ts[mid]
    level_tail = (level_coef[1] * (math.exp(-t_mid / level_tau) - math.exp(-1.0 / level_tau))
                  / (span * (1.0 - t_mid)) if t_mid < 1.0 else 0.0)
    return ModelComparison(
        rate=steady_coef[1] / span,
        warmup=steady_coef[2],
        level_tau=level_tau * span,
        level_end_rate=level_coef[1] / (level_tau * span) * math.exp(-1.0 / level_tau),
        level_total=level_coef[1],
        level_tail_rate=level_tail,
        sse_steady=sse_steady,
        sse_level=sse_level,
        effective_points=n_eff,
        evidence=evidence,
        tail_rate=tail.slope if tail is not None else 0.0,
        tail_z=tail.z if tail is not None else 0.0,
        tail_low=tail.low if tail is not None else 0.0,
        span=span,
    )
