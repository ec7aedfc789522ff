"""What each route costs, and which routes leave blocks behind.

A regression of per-request block deltas on route indicators, one
coefficient per route and no intercept. With one indicator per request it
reduces to a per-route mean, trimmed so that a garbage collection landing
inside an unrelated request, or one huge temporary buffer, cannot decide it.
Under threaded workers a request's delta also holds some of the overlapping
requests' allocations; that spreads cost across routes but keeps the
leaking route on top.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from memwarden.analysis.config import AnalysisConfig
from memwarden.analysis.lives import WorkerLife
from memwarden.analysis.model import RouteCost, Suspect, Verdict
from memwarden.analysis.records import RequestRecord
from memwarden.analysis.stats import median, normal_cdf, trimmed_mean, trimmed_mean_se
from memwarden.analysis.units import format_count, format_signed_bytes
from memwarden.analysis.verdict import LifeAssessment

__all__ = ["EVERY_ROUTE", "RouteEffect", "block_deltas", "route_costs", "route_effects",
           "route_suspects", "t_statistic"]

TRIM = 0.1
MIN_CALLS = 5
# Route suspects are scaled by how sure the overall verdict is: a per-route
# mean cannot tell a leak from garbage that a later collection frees.
ROUTE_WEIGHT: dict[Verdict, float] = {"leak": 1.0, "inconclusive": 0.6, "no_leak": 0.0}
# A route stands out when its cost exceeds the other routes' by this many
# standard errors; routes that do not are named with a fraction of the weight.
STANDOUT_T = 2.0
NOT_STANDOUT_WEIGHT = 0.3
EVERY_ROUTE = "(every route)"


@dataclass(frozen=True, slots=True)
class RouteEffect:
    """A route's trimmed-mean cost per call after warm-up, with its t statistic."""

    route: str
    calls: int
    blocks_per_call: float
    blocks_se: float
    blocks_t: float
    rss_per_call: float | None
    rss_t: float | None


def block_deltas(requests: Sequence[RequestRecord]) -> list[float | None]:
    """Each request's own block delta, or the change in absolute blocks since the previous one."""
    out: list[float | None] = []
    previous: float | None = None
    for request in requests:
        if request.blocks_delta is not None:
            out.append(request.blocks_delta)
        elif request.blocks is not None and previous is not None:
            out.append(request.blocks - previous)
        else:
            out.append(None)
        previous = request.blocks
    return out


def t_statistic(value: float, se: float) -> float:
    if se > 0 and math.isfinite(se):
        return value / se
    # No spread at all: every call did exactly the same thing.
    return math.copysign(math.inf, value) if value else 0.0


def _mean_se_t(values: Sequence[float]) -> tuple[float, float, float]:
    mean = trimmed_mean(values, TRIM)
    se = trimmed_mean_se(values, TRIM)
    return mean, se, t_statistic(mean, se)


def route_effects(lives: Iterable[tuple[WorkerLife, int]]) -> list[RouteEffect]:
    """Per-route costs over the requests after each life's warm-up.

    ``lives`` pairs each life with its warm-up length.
    """
    blocks: dict[str, list[float]] = {}
    rss: dict[str, list[float]] = {}
    for life, warmup in lives:
        deltas = block_deltas(life.requests)
        for request, delta in zip(life.requests[warmup:], deltas[warmup:], strict=True):
            key = request.route_key
            if delta is not None:
                blocks.setdefault(key, []).append(delta)
            if request.rss_delta_bytes is not None:
                rss.setdefault(key, []).append(request.rss_delta_bytes)
    effects = []
    for route, values in blocks.items():
        if len(values) < MIN_CALLS:
            continue
        mean, se, t = _mean_se_t(values)
        rss_values = rss.get(route, [])
        rss_mean: float | None = None
        rss_t: float | None = None
        if len(rss_values) >= MIN_CALLS:
            rss_mean, _rss_se, rss_t = _mean_se_t(rss_values)
        effects.append(RouteEffect(route, len(values), mean, se, t, rss_mean, rss_t))
    return effects


def route_costs(lives: Iterable[WorkerLife]) -> tuple[RouteCost, ...]:
    """The per-route cost table over every request, busiest route first."""
    calls: Counter[str] = Counter()
    failed: Counter[str] = Counter()
    rss: dict[str, list[float]] = {}
    blocks: dict[str, list[float]] = {}
    durations: dict[str, list[float]] = {}
    for life in lives:
        for request, delta in zip(life.requests, block_deltas(life.requests), strict=True):
            key = request.route_key
            calls[key] += 1
            failed[key] += request.failed
            if request.rss_delta_bytes is not None:
                rss.setdefault(key, []).append(request.rss_delta_bytes)
            if delta is not None:
                blocks.setdefault(key, []).append(delta)
            if request.duration_ms is not None:
                durations.setdefault(key, []).append(request.duration_ms)

    def mean(values: list[float] | None) -> float | None:
        return math.fsum(values) / len(values) if values else None

    return tuple(
        RouteCost(route=route, count=count, failed=failed[route],
                  mean_rss_delta_bytes=mean(rss.get(route)),
                  median_rss_delta_bytes=median(rss[route]) if rss.get(route) else None,
                  mean_blocks_delta=mean(blocks.get(route)),
                  mean_duration_ms=mean(durations.get(route)))
        for route, count in sorted(calls.items(), key=lambda item: (-item[1], item[0])))


def _t_text(t: float) -> str:
    return "t>100" if t > 100 else f"t={t:.1f}"


def _pooled(effects: Sequence[RouteEffect]) -> tuple[float, float]:
    """Call-weighted mean of route costs, and its standard error."""
    calls = sum(e.calls for e in effects)
    mean = math.fsum(e.blocks_per_call * e.calls for e in effects) / calls
    se = math.sqrt(math.fsum((e.blocks_se * e.calls / calls) ** 2 for e in effects
                             if math.isfinite(e.blocks_se)))
    return mean, se


def _route_bytes(effect: RouteEffect) -> int | None:
    if effect.rss_per_call is None or effect.rss_t is None:
        return None
    if effect.rss_per_call <= 0 or effect.rss_t < 2.0:
        return None
    return round(effect.rss_per_call)


def _pooled_bytes(effects: Sequence[RouteEffect]) -> int | None:
    """Call-weighted RSS per call over all routes, when every route shows one."""
    sizes = [(_route_bytes(e), e.calls) for e in effects]
    if any(size is None for size, _calls in sizes):
        return None
    calls = sum(c for _size, c in sizes)
    return round(math.fsum((size or 0) * c for size, c in sizes) / calls)


def _route_evidence(effect: RouteEffect, others: Sequence[RouteEffect]) -> str:
    size = _route_bytes(effect)
    rss_text = f", RSS {format_signed_bytes(size)} per call" if size is not None else ""
    rest_text = ""
    if others:
        rest, _se = _pooled(others)
        rest_text = f"; the other {len(others)} routes {format_count(rest)}"
    return (f"{effect.route} adds {format_count(effect.blocks_per_call)} allocated blocks "
            f"per call (trimmed mean of {effect.calls} calls after warm-up, "
            f"{_t_text(effect.blocks_t)}){rss_text}{rest_text}")


def route_suspects(assessments: Sequence[LifeAssessment], verdict: Verdict,
                   config: AnalysisConfig) -> list[Suspect]:
    """Routes whose calls each leave blocks behind, and whether one stands out.

    A route is named with full confidence only when its cost stands out from
    the other routes' (a contrast t of at least STANDOUT_T). When every route
    costs the same, the leak is in code all requests run, and one suspect
    says so rather than naming the busiest route.
    """
    weight = ROUTE_WEIGHT[verdict]
    if weight <= 0:
        return []
    effects = route_effects((a.life, a.signals.warmup) for a in assessments)
    candidates = [e for e in effects if e.blocks_per_call >= config.route_min_blocks_per_call
                  and e.blocks_t >= config.route_min_t]
    suspects = []
    standouts = 0
    for effect in candidates:
        others = [e for e in effects if e is not effect]
        contrast = math.inf
        if others:
            rest, rest_se = _pooled(others)
            contrast = t_statistic(effect.blocks_per_call - rest,
                                   math.hypot(effect.blocks_se, rest_se))
        standout = contrast >= STANDOUT_T
        standouts += standout
        confidence = weight * normal_cdf(effect.blocks_t - config.route_min_t - 1.0) \
            * (1.0 if standout else NOT_STANDOUT_WEIGHT)
        suspects.append(Suspect("route", effect.route, effect.blocks_per_call,
                                _route_bytes(effect), confidence,
                                _route_evidence(effect, others)))
    if candidates and not standouts and len(effects) > 1:
        mean, se = _pooled(effects)
        t = t_statistic(mean, se)
        if mean >= config.route_min_blocks_per_call and t >= config.route_min_t:
            costs = ", ".join(format_count(e.blocks_per_call)
                              for e in sorted(effects, key=lambda e: -e.calls)[:5])
            evidence = (f"all {len(effects)} routes add about {format_count(mean)} allocated "
                        f"blocks per call ({costs}): the leak is in code every request runs "
                        f"(middleware, request hooks, a global)")
            suspects.append(Suspect("route", EVERY_ROUTE, mean, _pooled_bytes(effects),
                                    weight * normal_cdf(t - config.route_min_t - 1.0),
                                    evidence))
    return suspects
