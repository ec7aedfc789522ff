"""Which routes a sampled count follows: increments regressed on call counts.

A census (or the live heap after a collection) is sampled every few
requests. Between two samples the count changes by what each route's calls
added, plus noise; ordinary least squares with one coefficient per route and
no intercept recovers the per-call increments, and the residuals give each
coefficient a standard error.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from memwarden.find.analysis.lives import WorkerLife

__all__ = ["FAILED_SUFFIX", "OTHER", "RouteFit", "census_intervals", "census_route_fit",
           "fit_routes", "merge_failed"]

# Routes beyond this many (by calls) share one coefficient.
MAX_FIT_ROUTES = 30
OTHER = "(other routes)"

Interval = tuple[Counter[str], float]
# Appended to a route's name to fit its failed calls (status >= 500) apart.
FAILED_SUFFIX = " (failed)"


def census_intervals(lives: Iterable[tuple[WorkerLife, int]], kind: str,
                     split_failed: bool = False) -> list[Interval]:
    """(calls per route, change in ``kind``) between consecutive census samples.

    ``lives`` pairs each life with its warm-up length; only requests after
    warm-up count. ``split_failed`` counts failed calls under the route's
    name plus FAILED_SUFFIX.
    """
    intervals: list[Interval] = []
    for life, warmup in lives:
        calls: Counter[str] = Counter()
        previous: float | None = None
        for request in life.requests[warmup:]:
            key = request.route_key
            calls[key + FAILED_SUFFIX if split_failed and request.failed else key] += 1
            value = request.census.get(kind) if request.census else None
            if value is None:
                continue
            if previous is not None:
                intervals.append((calls, value - previous))
            previous = value
            calls = Counter()
    return intervals


def _solve(matrix: list[list[float]], vector: list[float]) -> list[float] | None:
    """Gaussian elimination with partial pivoting; None when singular."""
    n = len(vector)
    a = [[*row, vector[i]] for i, row in enumerate(matrix)]
    for col in range(n):
        pivot = max(range(col, n), key=lambda r: abs(a[r][col]))
        if abs(a[pivot][col]) < 1e-12:
            return None
        a[col], a[pivot] = a[pivot], a[col]
        for r in range(col + 1, n):
            factor = a[r][col] / a[col][col]
            if factor:
                for c in range(col, n + 1):
                    a[r][c] -= factor * a[col][c]
    solution = [0.0] * n
    for r in range(n - 1, -1, -1):
        tail = math.fsum(a[r][c] * solution[c] for c in range(r + 1, n))
        solution[r] = (a[r][n] - tail) / a[r][r]
    return solution


@dataclass(frozen=True, slots=True)
class RouteFit:
    """Per-call increments of each route, their standard errors, and the calls seen."""

    per_call: dict[str, float]
    se: dict[str, float]
    calls: Counter[str]
    intervals: int

    def t(self, route: str) -> float:
        value, se = self.per_call[route], self.se[route]
        if se > 0 and math.isfinite(se):
            return value / se
        return math.copysign(math.inf, value) if value else 0.0


def fit_routes(intervals: Sequence[Interval]) -> RouteFit | None:
    """Least squares (no intercept) of increments on route call counts.

    Each interval is (calls per route since the previous sample, change in the
    count). None when the fit is not identified (too few intervals, or routes
    that always come together).
    """
    totals: Counter[str] = Counter()
    for calls, _delta in intervals:
        totals.update(calls)
    routes = [route for route, _count in totals.most_common(MAX_FIT_ROUTES)]
    if len(totals) > MAX_FIT_ROUTES:
        routes.append(OTHER)
    size = len(routes)
    if size == 0 or len(intervals) < size + 2:
        return None
    index = {route: i for i, route in enumerate(routes)}
    gram = [[0.0] * size for _ in range(size)]
    moment = [0.0] * size
    rows: list[tuple[list[tuple[int, float]], float]] = []
    for calls, delta in intervals:
        row = [0.0] * size
        for route, count in calls.items():
            row[index.get(route, size - 1)] += count
        nonzero = [(i, v) for i, v in enumerate(row) if v]
        rows.append((nonzero, delta))
        for i, vi in nonzero:
            moment[i] += vi * delta
            for j, vj in nonzero:
                gram[i][j] += vi * vj
    # A touch of ridge keeps rarely-called routes from blowing up the fit.
    trace = sum(gram[i][i] for i in range(size))
    for i in range(size):
        gram[i][i] += 1e-9 * trace + 1e-12
    solution = _solve(gram, moment)
    if solution is None or not all(math.isfinite(v) for v in solution):
        return None
    residual = math.fsum((delta - math.fsum(solution[i] * v for i, v in nonzero)) ** 2
                         for nonzero, delta in rows)
    variance = residual / (len(rows) - size)
    se: dict[str, float] = {}
    for i, route in enumerate(routes):
        unit = [0.0] * size
        unit[i] = 1.0
        column = _solve(gram, unit)
        diagonal = column[i] if column is not None else math.inf
        se[route] = math.sqrt(max(variance * diagonal, 0.0))
    calls = Counter({route: totals[route] for route in routes if route != OTHER})
    if OTHER in index:
        calls[OTHER] = sum(totals.values()) - sum(calls.values())
    return RouteFit(dict(zip(routes, solution, strict=True)), se, calls, len(rows))


def merge_failed(fit: RouteFit) -> RouteFit:
    """Fold each route's failed calls back into the route: call-weighted costs.

    Fitting failed calls apart explains a leak on the error path far better
    (its cost is all in a few calls); the route is still the name to report.
    The standard error ignores the covariance of the two estimates.
    """
    groups: dict[str, list[str]] = {}
    for key in fit.per_call:
        route = key[:-len(FAILED_SUFFIX)] if key.endswith(FAILED_SUFFIX) else key
        groups.setdefault(route, []).append(key)
    per_call: dict[str, float] = {}
    se: dict[str, float] = {}
    calls: Counter[str] = Counter()
    for route, keys in groups.items():
        n = sum(fit.calls.get(k, 0) for k in keys)
        if n <= 0:
            continue
        per_call[route] = math.fsum(fit.per_call[k] * fit.calls.get(k, 0) for k in keys) / n
        se[route] = math.sqrt(math.fsum((fit.se[k] * fit.calls.get(k, 0)) ** 2
                                        for k in keys)) / n
        calls[route] = n
    return RouteFit(per_call, se, calls, fit.intervals)


def census_route_fit(intervals: Sequence[Interval]) -> dict[str, float]:
    """Units per call for each route; empty when the fit is not identified."""
    fit = fit_routes(intervals)
    return dict(fit.per_call) if fit is not None else {}
