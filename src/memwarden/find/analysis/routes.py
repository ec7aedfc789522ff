"""What each route costs, and what it leaves behind (which routes are suspects:
:mod:`memwarden.find.analysis.route_suspects`).

When the census counts the live heap after a collection (``blocks_collected``),
its increments between census points are regressed on the calls of each route
in between (one coefficient per route, no intercept): garbage never enters,
so a route that keeps one object per call shows as one block per call.

Otherwise, a regression of per-request block deltas on route indicators,
which with one indicator per request reduces to a per-route mean, trimmed so
that a garbage collection landing inside an unrelated request, or one huge
temporary buffer, cannot decide it. Every route's deltas carry the same
garbage, so routes are compared with each other rather than with zero.
Under threaded workers a request's delta also holds some of the overlapping
requests' allocations; that spreads cost across routes but keeps the
leaking route on top.

RSS per call names a route on its own when a route keeps a few large
objects (a 64 KiB buffer is one block), and a census count that follows a
route (threads, fds, child processes) names it too.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from memwarden.find.analysis.fit import (
    RouteFit,
)
from memwarden.find.analysis.lives import WorkerLife
from memwarden.find.analysis.model import RouteCost
from memwarden.find.analysis.records import RequestRecord
from memwarden.find.analysis.stats import median, trimmed_mean, trimmed_mean_se

__all__ = ["EVERY_ROUTE", "RouteEffect", "block_deltas", "route_costs", "route_effects",
           "t_statistic"]

TRIM = 0.1
MIN_CALLS = 5
# A route stands out when its cost exceeds the other routes' by this many
# standard errors; routes that do not are named with a fraction of the weight.
STANDOUT_T = 2.0
NOT_STANDOUT_WEIGHT = 0.3
EVERY_ROUTE = "(every route)"


@dataclass(frozen=True, slots=True)
class RouteEffect:
    """A route's cost per call after warm-up, with its t statistic.

    ``exact`` marks block costs from the live-heap fit; otherwise they are
    trimmed means of per-request deltas.
    """

    route: str
    calls: int
    blocks_per_call: float
    blocks_se: float
    blocks_t: float
    rss_per_call: float | None
    rss_t: float | None
    rss_se: float | None = None
    exact: bool = False


def block_deltas(requests: Sequence[RequestRecord]) -> list[float | None]:
    """Each request's own block delta, or the change in absolute blocks since the previous one.

    A census runs after the request's own reading, and may collect garbage
    first; the next request's delta would carry that drop. When the census
    logged its closing block count, the next delta starts from it instead.
    """
    out: list[float | None] = []
    previous: float | None = None
    after_census: float | None = None
    for request in requests:
        if after_census is not None and request.blocks is not None:
            out.append(request.blocks - after_census)
        elif request.blocks_delta is not None:
            out.append(request.blocks_delta)
        elif request.blocks is not None and previous is not None:
            out.append(request.blocks - previous)
        else:
            out.append(None)
        previous = request.blocks
        after_census = request.census.get("blocks") if request.census else None
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


def route_effects(lives: Iterable[tuple[WorkerLife, int]],
                  exact: RouteFit | None = None) -> list[RouteEffect]:
    """Per-route costs over the requests after each life's warm-up.

    ``lives`` pairs each life with its warm-up length; ``exact``, a fit of
    the live heap, replaces the block costs of the routes it covers.
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
        is_exact = exact is not None and route in exact.per_call
        if exact is not None and is_exact:
            mean, se, t = exact.per_call[route], exact.se[route], exact.t(route)
        rss_values = rss.get(route, [])
        rss_mean: float | None = None
        rss_t: float | None = None
        rss_se: float | None = None
        if len(rss_values) >= MIN_CALLS:
            rss_mean, rss_se, rss_t = _mean_se_t(rss_values)
        effects.append(RouteEffect(route, len(values), mean, se, t, rss_mean, rss_t, rss_se,
                                   is_exact))
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
