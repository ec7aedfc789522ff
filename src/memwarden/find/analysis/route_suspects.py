"""Which routes are suspects: each route's effect set against the others',
weighed by how strong its witness is (blocks, RSS alone, a census count that
follows it, or failed calls that keep more than the rest).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from memwarden.find.analysis.config import AnalysisConfig
from memwarden.find.analysis.fit import (
    FAILED_SUFFIX,
    RouteFit,
    census_intervals,
    fit_routes,
    merge_failed,
)
from memwarden.find.analysis.model import Suspect, Verdict
from memwarden.find.analysis.resources import RouteLead
from memwarden.find.analysis.routes import (
    EVERY_ROUTE,
    MIN_CALLS,
    NOT_STANDOUT_WEIGHT,
    STANDOUT_T,
    TRIM,
    RouteEffect,
    _pooled,
    _pooled_bytes,
    _route_bytes,
    _t_text,
    block_deltas,
    route_effects,
    t_statistic,
)
from memwarden.find.analysis.series import EXACT_KEY
from memwarden.find.analysis.stats import median, normal_cdf, trimmed_mean, trimmed_mean_se
from memwarden.find.analysis.units import format_count, format_signed_bytes
from memwarden.find.analysis.verdict import LifeAssessment

__all__ = ["route_suspects"]

# Route suspects are scaled by how sure the overall verdict is: a per-route
# mean cannot tell a leak from garbage that a later collection frees.
ROUTE_WEIGHT: dict[Verdict, float] = {"leak": 1.0, "inconclusive": 0.6, "no_leak": 0.0}
# RSS per call alone names a route with this share of the confidence: it
# follows allocator pages, so it is the weaker witness.
RSS_ONLY_WEIGHT = 0.8
# A route named by the census count it follows ranks just below that count:
# the count says what leaks, the route where.
LEAD_WEIGHT = 0.95
# Failed calls keep this many times what the route's other calls keep: the
# leak is on the error path.
ERROR_PATH_RATIO = 2.0


def _route_evidence(effect: RouteEffect, others: Sequence[RouteEffect]) -> str:
    size = _route_bytes(effect)
    rss_text = f", RSS {format_signed_bytes(size)} per call" if size is not None else ""
    rest_text = ""
    if others:
        rest, _se = _pooled(others)
        rest_text = f"; the other {len(others)} routes {format_count(rest)}"
    if effect.exact:
        how = (f"least squares of the live heap between census points over "
               f"{effect.calls} calls after warm-up")
        what = "live blocks"
    else:
        how = f"trimmed mean of {effect.calls} calls after warm-up"
        what = "allocated blocks"
    return (f"{effect.route} adds {format_count(effect.blocks_per_call)} {what} per call "
            f"({how}, {_t_text(effect.blocks_t)}){rss_text}{rest_text}")


def _rss_evidence(effect: RouteEffect, others: Sequence[RouteEffect]) -> str:
    rest = [e.rss_per_call for e in others if e.rss_per_call is not None]
    rest_text = (f"; the other {len(rest)} routes {format_signed_bytes(median(rest))}"
                 if rest else "")
    return (f"{effect.route} grows RSS {format_signed_bytes(effect.rss_per_call or 0.0)} per "
            f"call (trimmed mean of {effect.calls} calls after warm-up, "
            f"{_t_text(effect.rss_t or 0.0)}) while adding only "
            f"{format_count(effect.blocks_per_call)} blocks: large objects (a buffer is one "
            f"block){rest_text}")


def _pooled_rss(effects: Sequence[RouteEffect]) -> tuple[float, float] | None:
    sized = [e for e in effects if e.rss_per_call is not None and e.rss_se is not None]
    if not sized:
        return None
    calls = sum(e.calls for e in sized)
    mean = math.fsum((e.rss_per_call or 0.0) * e.calls for e in sized) / calls
    se = math.sqrt(math.fsum(((e.rss_se or 0.0) * e.calls / calls) ** 2 for e in sized
                             if math.isfinite(e.rss_se or 0.0)))
    return mean, se


def _rss_confidence(effect: RouteEffect, others: Sequence[RouteEffect],
                    config: AnalysisConfig) -> float:
    """How surely a route's RSS per call, on its own, marks it."""
    if effect.rss_per_call is None or effect.rss_t is None or effect.rss_se is None:
        return 0.0
    if effect.rss_per_call < config.rss_support_bytes_per_request \
            or effect.rss_t < config.route_min_t:
        return 0.0
    pooled = _pooled_rss(others)
    if pooled is not None:
        rest, rest_se = pooled
        # RSS spills over: pages a leaking route touched show up in whatever
        # request the allocator hands them out next. Only a route that stands
        # out is named by RSS.
        if t_statistic(effect.rss_per_call - rest,
                       math.hypot(effect.rss_se, rest_se)) < STANDOUT_T:
            return 0.0
    return RSS_ONLY_WEIGHT * normal_cdf(effect.rss_t - config.route_min_t - 1.0)


def _exact_fits(assessments: Sequence[LifeAssessment]) -> tuple[RouteFit | None,
                                                                 RouteFit | None]:
    """The live-heap fit with failed calls apart, and the same folded back by route."""
    lives = [(a.life, a.signals.warmup) for a in assessments
             if a.heap_signal == "blocks_collected"]
    if not lives:
        return None, None
    split = fit_routes(census_intervals(lives, EXACT_KEY, split_failed=True))
    return (merge_failed(split) if split is not None else None), split


def _failed_costs(assessments: Sequence[LifeAssessment], route: str
                  ) -> tuple[float, float, float, int] | None:
    """Trimmed-mean block deltas of a route's failed and other calls: (failed, se, ok, n)."""
    failed: list[float] = []
    ok: list[float] = []
    for assessment in assessments:
        life, warmup = assessment.life, assessment.signals.warmup
        deltas = block_deltas(life.requests)
        for request, delta in zip(life.requests[warmup:], deltas[warmup:], strict=True):
            if delta is not None and request.route_key == route:
                (failed if request.failed else ok).append(delta)
    if len(failed) < MIN_CALLS or len(ok) < MIN_CALLS:
        return None
    return (trimmed_mean(failed, TRIM), trimmed_mean_se(failed, TRIM), trimmed_mean(ok, TRIM),
            len(failed))


def _error_path(route: str, split: RouteFit | None, assessments: Sequence[LifeAssessment],
                config: AnalysisConfig) -> str:
    """"; its failed calls keep ..." when the route leaks on its error path, else ""."""
    failed_key = route + FAILED_SUFFIX
    if split is not None and failed_key in split.per_call and route in split.per_call:
        failed, ok = split.per_call[failed_key], split.per_call[route]
        t = split.t(failed_key)
        n = split.calls.get(failed_key, 0)
        what = "live blocks"
    else:
        costs = _failed_costs(assessments, route)
        if costs is None:
            return ""
        failed, se, ok, n = costs
        t = t_statistic(failed, se)
        what = "allocated blocks"
    if failed < config.route_min_blocks_per_call or t < config.route_min_t \
            or failed < ERROR_PATH_RATIO * max(ok, 0.0):
        return ""
    return (f"; its {n} failed calls (status >= 500) keep {format_count(failed)} {what} "
            f"each, its other calls {format_count(ok)}: the leak is on the error path")


def _lead_suspects(leads: Sequence[RouteLead], weight: float,
                   config: AnalysisConfig) -> list[Suspect]:
    """One suspect per route that growing census counts follow."""
    by_route: dict[str, list[RouteLead]] = {}
    for lead in leads:
        by_route.setdefault(lead.route, []).append(lead)
    suspects = []
    for route, group in by_route.items():
        group.sort(key=lambda lead: -lead.confidence)
        best = group[0]
        significance = 1.0 if best.t >= config.route_min_t else 0.5
        adds = ", ".join(f"{format_count(lead.per_call)} {lead.kind} ({_t_text(lead.t)})"
                         for lead in group)
        suspects.append(Suspect(
            "route", route, best.per_call, None,
            weight * LEAD_WEIGHT * best.confidence * significance,
            f"{route}: each call adds {adds} (least squares of the census counts between "
            f"census points)"))
    return suspects


def _merge(suspects: Sequence[Suspect]) -> list[Suspect]:
    """One suspect per route: the most confident, with the others' evidence appended."""
    by_name: dict[str, list[Suspect]] = {}
    for suspect in suspects:
        by_name.setdefault(suspect.name, []).append(suspect)
    merged = []
    for group in by_name.values():
        group.sort(key=lambda s: -s.confidence)
        best = group[0]
        extra = [s.evidence for s in group[1:] if s.evidence != best.evidence]
        evidence = "; ".join([best.evidence, *extra])
        size = best.bytes_per_request if best.bytes_per_request is not None else next(
            (s.bytes_per_request for s in group if s.bytes_per_request is not None), None)
        merged.append(Suspect(best.kind, best.name, best.per_request, size, best.confidence,
                              evidence))
    return merged


def route_suspects(assessments: Sequence[LifeAssessment], verdict: Verdict,
                   config: AnalysisConfig, leads: Sequence[RouteLead] = ()) -> list[Suspect]:
    """Routes whose calls each leave memory or resources behind, and whether one stands out.

    A route is named with full confidence only when its cost stands out from
    the other routes' (a contrast t of at least STANDOUT_T). When every route
    costs the same, the leak is in code all requests run, and one suspect
    says so rather than naming the busiest route. ``leads`` are routes that
    growing census counts follow.
    """
    weight = ROUTE_WEIGHT[verdict]
    if weight <= 0:
        return []
    exact, split = _exact_fits(assessments)
    effects = route_effects(((a.life, a.signals.warmup) for a in assessments), exact)
    # The live heap has no garbage, but warm-up that outlasts the warm-up
    # window spreads a block or so per call over every route.
    floor = config.route_min_blocks_per_call if exact is None else max(
        config.route_min_blocks_per_call, config.exact_route_min_blocks_per_call)
    suspects = []
    standouts = 0
    block_candidates = 0
    for effect in effects:
        others = [e for e in effects if e is not effect]
        blocks_confidence = 0.0
        # Failed calls that keep far more than the route's other calls single
        # the route out on their own, however noisy the comparison of routes.
        error_path = _error_path(effect.route, split, assessments, config)
        if effect.blocks_per_call >= floor and effect.blocks_t >= config.route_min_t:
            block_candidates += 1
            contrast = math.inf
            if others:
                rest, rest_se = _pooled(others)
                contrast = t_statistic(effect.blocks_per_call - rest,
                                       math.hypot(effect.blocks_se, rest_se))
            standout = contrast >= STANDOUT_T or bool(error_path)
            standouts += standout
            blocks_confidence = weight * normal_cdf(effect.blocks_t - config.route_min_t - 1.0) \
                * (1.0 if standout else NOT_STANDOUT_WEIGHT)
        rss_confidence = weight * _rss_confidence(effect, others, config)
        if blocks_confidence <= 0 and rss_confidence <= 0:
            continue
        if blocks_confidence >= rss_confidence:
            evidence = _route_evidence(effect, others)
        else:
            evidence = _rss_evidence(effect, others)
        evidence += error_path
        suspects.append(Suspect("route", effect.route, effect.blocks_per_call,
                                _route_bytes(effect), max(blocks_confidence, rss_confidence),
                                evidence))
    # Shared code: every route keeps blocks (not merely "none stands out").
    if block_candidates == len(effects) > 1 and not standouts:
        mean, se = _pooled(effects)
        t = t_statistic(mean, se)
        if mean >= floor and t >= config.route_min_t:
            costs = ", ".join(format_count(e.blocks_per_call)
                              for e in sorted(effects, key=lambda e: -e.calls)[:5])
            evidence = (f"all {len(effects)} routes add about {format_count(mean)} allocated "
                        f"blocks per call ({costs}): the leak is in code every request runs "
                        f"(middleware, request hooks, a global)")
            suspects.append(Suspect("route", EVERY_ROUTE, mean, _pooled_bytes(effects),
                                    weight * normal_cdf(t - config.route_min_t - 1.0),
                                    evidence))
    suspects += _lead_suspects(leads, weight, config)
    return _merge(suspects)
