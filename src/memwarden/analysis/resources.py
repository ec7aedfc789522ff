"""Resource and object-type suspects from the census.

A census kind is a suspect when its count grows by the same window rule as
the heap. For kinds whose memory lives in child processes, the growth of
children_pss_bytes over the same requests gives the bytes. Which route a
count follows comes from a least-squares fit (one coefficient per route, no
intercept) of the count's increments between census samples on the number
of calls of each route in between.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

from memwarden.analysis.model import Suspect
from memwarden.analysis.stats import median, normal_cdf
from memwarden.analysis.trend import Trend
from memwarden.analysis.units import format_count, format_signed_bytes
from memwarden.analysis.verdict import CHILDREN_PSS, GC_PREFIX, LifeAssessment

__all__ = ["census_route_fit", "resource_suspects"]

# Kinds whose memory lives in child processes: their bytes come from the
# growth of children_pss_bytes over the same requests.
CHILD_PROCESS_KINDS = frozenset({"children", "playwright.contexts", "mcp.sessions"})
# Trend states that point at growth without proving it.
WEAK_STATES = frozenset({"slowing", "late", "mixed"})
# Routes beyond this many (by calls) share one coefficient in the census fit.
MAX_FIT_ROUTES = 30
OTHER = "(other routes)"


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


def census_route_fit(intervals: Sequence[tuple[Counter[str], float]]) -> dict[str, float]:
    """Least squares (no intercept) of census increments on route call counts.

    Each interval is (calls per route since the previous sample, change in the
    count). Returns units per call for each route; empty when the fit is not
    identified (too few intervals, or routes that always come together).
    """
    totals: Counter[str] = Counter()
    for calls, _delta in intervals:
        totals.update(calls)
    routes = [route for route, _count in totals.most_common(MAX_FIT_ROUTES)]
    if len(totals) > MAX_FIT_ROUTES:
        routes.append(OTHER)
    if len(intervals) < len(routes) + 2:
        return {}
    index = {route: i for i, route in enumerate(routes)}
    size = len(routes)
    gram = [[0.0] * size for _ in range(size)]
    moment = [0.0] * size
    for calls, delta in intervals:
        row = [0.0] * size
        for route, count in calls.items():
            row[index.get(route, size - 1)] += count
        nonzero = [(i, v) for i, v in enumerate(row) if v]
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
        return {}
    return dict(zip(routes, solution, strict=True))


@dataclass(frozen=True, slots=True)
class _KindGrowth:
    kind: str
    trends: list[tuple[LifeAssessment, Trend]]  # lives where the kind grows
    assessed: int                               # lives where it could be tested
    agreement: float


def _kind_growth(assessments: Sequence[LifeAssessment], kind: str) -> _KindGrowth | None:
    strong: list[tuple[LifeAssessment, Trend]] = []
    weak: list[tuple[LifeAssessment, Trend]] = []
    assessed = 0
    for assessment in assessments:
        trend = assessment.resources.get(kind)
        if trend is None or trend.state == "insufficient":
            continue
        assessed += 1
        if trend.state == "growing":
            strong.append((assessment, trend))
        elif trend.state in WEAK_STATES:
            weak.append((assessment, trend))
    if not strong and not weak:
        return None
    agreement = (len(strong) + 0.5 * len(weak)) / assessed
    return _KindGrowth(kind, strong or weak, assessed, agreement)


def _census_intervals(assessments: Sequence[LifeAssessment], kind: str
                      ) -> list[tuple[Counter[str], float]]:
    intervals: list[tuple[Counter[str], float]] = []
    for assessment in assessments:
        requests = assessment.life.requests[assessment.signals.warmup:]
        calls: Counter[str] = Counter()
        previous: float | None = None
        for request in requests:
            calls[request.route_key] += 1
            value = request.census.get(kind) if request.census else None
            if value is None:
                continue
            if previous is not None:
                intervals.append((calls, value - previous))
            previous = value
            calls = Counter()
    return intervals


def _follows_route(assessments: Sequence[LifeAssessment], kind: str, slope: float) -> str:
    """", follows POST /chat (+3 per call)" when one route explains most of the growth."""
    intervals = _census_intervals(assessments, kind)
    fit = census_route_fit(intervals)
    if not fit:
        return ""
    calls: Counter[str] = Counter()
    for interval_calls, _delta in intervals:
        calls.update(interval_calls)
    total_requests = sum(calls.values())
    route, per_call = max(fit.items(), key=lambda item: item[1] * calls.get(item[0], 0))
    share = per_call * calls.get(route, 0) / max(total_requests, 1)
    if per_call <= 0 or slope <= 0 or share < 0.5 * slope:
        return ""
    return f"; follows {route} (+{format_count(per_call)} per call)"


def _trend_confidence(growth: _KindGrowth) -> float:
    zs = [trend.fit.z for _a, trend in growth.trends if trend.fit is not None]
    significance = normal_cdf(median(zs) - 2.5) if zs else 0.0
    sparse = all(trend.sparse for _a, trend in growth.trends)
    return growth.agreement * significance * (0.7 if sparse else 1.0)


def _trend_evidence(growth: _KindGrowth, label: str, unit: str) -> str:
    assessment, trend = max(growth.trends, key=lambda item: item[1].n)
    requests = assessment.signals
    windows = len(trend.window_growth)
    text = (f"{label} rose from {format_count(trend.first or 0)} to "
            f"{format_count(trend.last or 0)} over {requests.tested} requests of "
            f"{assessment.life.label} ({format_count(trend.slope)}{unit}/request, growing in "
            f"{trend.windows_growing}/{windows} windows)")
    if growth.assessed > 1:
        text += f", in {len(growth.trends)} of {growth.assessed} worker lives"
    return text


def _children_bytes(assessments: Sequence[LifeAssessment], growth: _KindGrowth) -> float | None:
    slopes = []
    for assessment, _trend in growth.trends:
        pss = assessment.resources.get(CHILDREN_PSS)
        if pss is not None and pss.fit is not None and pss.slope > 0 \
                and pss.state in ("growing", *WEAK_STATES):
            slopes.append(pss.slope)
    return median(slopes) if slopes else None


def resource_suspects(assessments: Sequence[LifeAssessment]) -> list[Suspect]:
    """Census kinds that grow: resources, and object types from the gc census."""
    kinds = sorted({kind for a in assessments for kind in a.resources})
    suspects = []
    for kind in kinds:
        if kind == CHILDREN_PSS and "children" in kinds:
            continue  # reported as the bytes of "children"
        growth = _kind_growth(assessments, kind)
        if growth is None:
            continue
        slope = median([trend.slope for _a, trend in growth.trends])
        confidence = _trend_confidence(growth)
        if kind.startswith(GC_PREFIX):
            name = kind[len(GC_PREFIX):]
            evidence = _trend_evidence(growth, f"live {name} objects", "")
            suspects.append(Suspect("type", name, slope, None, confidence, evidence))
            continue
        unit = " B" if kind == CHILDREN_PSS else ""
        evidence = _trend_evidence(growth, kind, unit) + _follows_route(assessments, kind, slope)
        child_bytes = _children_bytes(assessments, growth) if kind in CHILD_PROCESS_KINDS \
            else None
        if kind == CHILDREN_PSS:
            child_bytes = slope
        elif child_bytes is not None:
            evidence += f"; children PSS {format_signed_bytes(child_bytes)}/request"
        suspects.append(Suspect("resource", kind, slope,
                                round(child_bytes) if child_bytes is not None else None,
                                confidence, evidence))
    return suspects
