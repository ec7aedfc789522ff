"""Resource and object-type suspects from the census.

A census kind is a suspect when its count grows by the same window rule as
the heap. For kinds whose memory lives in child processes, the growth of
children_pss_bytes over the same requests gives the bytes. Which route a
count follows comes from a least-squares fit (one coefficient per route, no
intercept) of the count's increments between census samples on the number
of calls of each route in between.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

from memwarden.find.analysis.fit import OTHER, census_intervals, census_route_fit, fit_routes
from memwarden.find.analysis.model import Suspect
from memwarden.find.analysis.stats import median, normal_cdf
from memwarden.find.analysis.trend import Trend
from memwarden.find.analysis.units import format_count, format_signed_bytes
from memwarden.find.analysis.verdict import CHILDREN_PSS, GC_PREFIX, LifeAssessment

__all__ = ["OWNERS", "RouteLead", "census_route_fit", "resource_suspects"]

# Kinds whose memory lives in child processes: their bytes come from the
# growth of children_pss_bytes over the same requests.
CHILD_PROCESS_KINDS = frozenset({"children", "playwright.contexts", "mcp.sessions"})
# Trend states that point at growth without proving it.
WEAK_STATES = frozenset({"slowing", "late", "mixed"})
# Generic counts and the specific resources that hold them: an unclosed event
# loop holds 3 fds, a browser context a child process, an MCP stdio session
# a server process and its pipes. When the holder grows too, it is the better
# name for the leak, and the generic count ranks below it.
OWNERS: dict[str, tuple[str, ...]] = {
    "fds": ("asyncio.loops", "children", "playwright.contexts", "mcp.sessions"),
    "threads": ("asyncio.loops", "playwright.contexts", "mcp.sessions"),
    "children": ("playwright.contexts", "mcp.sessions"),
    "asyncio.tasks": ("asyncio.loops", "mcp.sessions"),
    "asyncio.loops_alive": ("asyncio.loops",),
}
HELD_WEIGHT = 0.5


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
        elif trend.state in WEAK_STATES and trend.slope > 0:
            # A kind that shrinks overall is no suspect, however it wobbled.
            weak.append((assessment, trend))
    if not strong and not weak:
        return None
    agreement = (len(strong) + 0.5 * len(weak)) / assessed
    return _KindGrowth(kind, strong or weak, assessed, agreement)


def _census_intervals(assessments: Sequence[LifeAssessment], kind: str
                      ) -> list[tuple[Counter[str], float]]:
    return census_intervals(((a.life, a.signals.warmup) for a in assessments), kind)


@dataclass(frozen=True, slots=True)
class RouteLead:
    """A route that a growing census kind follows: the fit's per-call increment."""

    route: str
    kind: str
    per_call: float
    t: float
    confidence: float  # the kind's own confidence


def _follows_route(assessments: Sequence[LifeAssessment], kind: str, slope: float
                   ) -> tuple[str, float, float] | None:
    """(route, per call, t) when one route explains most of the kind's growth."""
    intervals = _census_intervals(assessments, kind)
    fit = fit_routes(intervals)
    if fit is None:
        return None
    total_requests = sum(fit.calls.values())
    route, per_call = max(fit.per_call.items(),
                          key=lambda item: item[1] * fit.calls.get(item[0], 0))
    share = per_call * fit.calls.get(route, 0) / max(total_requests, 1)
    if route == OTHER or per_call <= 0 or slope <= 0 or share < 0.5 * slope:
        return None
    return route, per_call, fit.t(route)


def _trend_confidence(growth: _KindGrowth) -> float:
    zs = [trend.fit.z for _a, trend in growth.trends if trend.fit is not None]
    significance = normal_cdf(median(zs) - 2.5) if zs else 0.0
    sparse = all(trend.sparse for _a, trend in growth.trends)
    return growth.agreement * significance * (0.7 if sparse else 1.0)


def _trend_evidence(growth: _KindGrowth, label: str, unit: str) -> str:
    assessment, trend = max(growth.trends, key=lambda item: item[1].n)
    requests = assessment.signals
    windows = len(trend.window_growth)
    text = (f"{label} went from {format_count(trend.first or 0)} to "
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


def _demote_held(suspects: list[Suspect]) -> list[Suspect]:
    """Rank a generic count below a specific resource that grows with it and holds it."""
    by_name = {s.name: s for s in suspects if s.kind == "resource"}
    out = []
    for suspect in suspects:
        holders = [by_name[o] for o in OWNERS.get(suspect.name, ()) if o in by_name
                   and by_name[o].confidence >= HELD_WEIGHT * suspect.confidence]
        if suspect.kind == "resource" and holders:
            holder = max(holders, key=lambda h: h.confidence)
            ratio = suspect.per_request / holder.per_request if holder.per_request else 0.0
            suspect = Suspect(suspect.kind, suspect.name, suspect.per_request,
                              suspect.bytes_per_request, suspect.confidence * HELD_WEIGHT,
                              f"{suspect.evidence}; probably held by {holder.name}, which grows "
                              f"too ({format_count(ratio)} per {holder.name})")
        out.append(suspect)
    return out


def resource_suspects(assessments: Sequence[LifeAssessment]
                      ) -> tuple[list[Suspect], list[RouteLead]]:
    """Census kinds that grow (resources, object types from the gc census), and the
    routes they follow."""
    kinds = sorted({kind for a in assessments for kind in a.resources})
    suspects = []
    leads = []
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
        evidence = _trend_evidence(growth, kind, unit)
        follows = _follows_route(assessments, kind, slope)
        if follows is not None:
            route, per_call, t = follows
            evidence += f"; follows {route} (+{format_count(per_call)} per call)"
            leads.append(RouteLead(route, kind, per_call, t, confidence))
        child_bytes = _children_bytes(assessments, growth) if kind in CHILD_PROCESS_KINDS \
            else None
        if kind == CHILDREN_PSS:
            child_bytes = slope
        elif child_bytes is not None:
            evidence += f"; children PSS {format_signed_bytes(child_bytes)}/request"
        suspects.append(Suspect("resource", kind, slope,
                                round(child_bytes) if child_bytes is not None else None,
                                confidence, evidence))
    return _demote_held(suspects), leads
