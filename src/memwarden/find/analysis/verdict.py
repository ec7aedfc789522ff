"""Leak, no leak, or cannot tell: per worker life and overall.

Evidence is weighed in a fixed order, strongest first:

1. Resource counts that a healthy worker keeps bounded whatever the traffic
   (threads, fds, child processes, open event loops, browser contexts, MCP
   sessions) growing in every window: a leak, even when the Python heap is
   flat (an fd leaks without a Python object).
2. The live heap, the strongest heap signal the lines carry:
   a. ``blocks_collected`` (allocated blocks right after a ``gc.collect()``
      on each census): exact, so a steady rise in every window is a leak,
      with no allowance for garbage; bytes come from RSS.
   b. ``blocks_after_full_gc`` at each new full collection, when a life saw
      enough of them: the same, sampled at CPython's own full collections.
   c. Otherwise allocated blocks per request, which carry garbage that waits
      in the oldest generation for a full collection: growth is a leak only
      past a share of the heap that garbage cannot reach.
   RSS is quoted in support only, because allocator high-water marks make
   RSS rise in runs without a leak.
3. RSS alone (blocks absent, or flat while RSS climbs far past high-water
   noise: memory outside the Python allocator) only with a large absolute
   rise.

Every decision carries a one-line reason a person can check.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from memwarden.find.analysis.config import AnalysisConfig
from memwarden.find.analysis.evidence import rss_only, rss_support, window_slopes
from memwarden.find.analysis.live_heap import (
    HEAP_SIGNALS,
    HeapSignal,
    exact_points_needed,
    exact_verdict,
    full_gc_verdict,
)
from memwarden.find.analysis.lives import WorkerLife
from memwarden.find.analysis.model import Verdict
from memwarden.find.analysis.series import LifeSignals, Signal, life_signals
from memwarden.find.analysis.trend import (
    WINDOW_FLOOR_SHARE,
    Z_OVERALL,
    Trend,
    TrendRule,
    assess_trend,
)
from memwarden.find.analysis.units import format_count, format_signed_bytes

__all__ = ["BOUNDED_RESOURCES", "HEAP_SIGNALS", "HeapSignal", "LifeAssessment", "assess_life",
           "overall_verdict", "rule_for_kind"]

# Counts a healthy worker keeps bounded regardless of traffic. Counts that
# legitimately follow traffic (sessions, tasks, user kinds, gc types,
# children's PSS, which grows with a browser's own caches) are suspects,
# never the verdict on their own.
# The specific ones first: the reason names an event loop before the fds it holds.
BOUNDED_RESOURCES = ("playwright.contexts", "mcp.sessions", "asyncio.loops", "children",
                     "threads", "fds")
CHILDREN_PSS = "children_pss_bytes"
# A last window whose low point fell by more than this share of the run's
# growth "fell back" (a collection, a cleared cache) rather than levelled off.
FELL_BACK_SHARE = 0.1
# The smallest pymalloc block: RSS that grows by less per new block is not
# following the blocks.
MIN_BYTES_PER_BLOCK = 16.0
GC_PREFIX = "gc."


@dataclass(frozen=True, slots=True)
class LifeAssessment:
    life: WorkerLife
    signals: LifeSignals
    verdict: Verdict
    reason: str
    blocks: Trend | None
    rss: Trend | None
    resources: dict[str, Trend]
    more_requests_needed: int | None = None  # set when the life is too short
    # The heap series that decided (or would have), and its trend.
    heap_signal: HeapSignal | None = None
    heap: Trend | None = None

    @property
    def conflicting(self) -> bool:
        """Inconclusive for a reason other than length."""
        return self.verdict == "inconclusive" and self.more_requests_needed is None


def rule_for_kind(kind: str, config: AnalysisConfig) -> TrendRule:
    if kind == CHILDREN_PSS:
        return TrendRule(config.children_pss_bytes_per_request, windows=config.windows)
    if kind.startswith(GC_PREFIX):
        return TrendRule(config.type_per_request, config.type_min_growth, config.windows)
    return TrendRule(config.resource_per_request, config.resource_min_growth, config.windows)


def _assess(signal: Signal | None, rule: TrendRule) -> Trend | None:
    return assess_trend(signal.xs, signal.ys, rule) if signal is not None else None


def _heap_share(trend: Trend, heap: float | None) -> str:
    if heap is None or heap <= 0:
        return ""
    return f"; +{trend.growth:,.0f} blocks in all, {trend.growth / heap:.0%} of the heap"


def _blocks_reason(trend: Trend, rss: Trend | None, floor: float, heap: float | None) -> str:
    slope = format_count(trend.slope)
    windows = len(trend.window_growth)
    support = rss_support(rss)
    drops = (f"; in {trend.floor_drops} the low point fell back (a garbage collection)"
             if trend.floor_drops else "")
    if trend.state == "below_floor":
        return (f"allocated blocks grow {slope}/request, under the {format_count(floor)}/request "
                f"that counts as a leak (garbage awaiting a full collection grows this way); "
                f"{support}")
    if trend.state == "plateau":
        if trend.last_drop > FELL_BACK_SHARE * max(trend.growth, 0.0):
            return (f"allocated blocks grew, then fell back in the last window (window slopes "
                    f"{window_slopes(trend, '/request')}): garbage that a collection freed, "
                    f"not a leak{_heap_share(trend, heap)}; {support}")
        if trend.window_slopes[-1] < WINDOW_FLOOR_SHARE * floor:
            return (f"allocated blocks grew, then stopped (window slopes "
                    f"{window_slopes(trend, '/request')}): a cache that filled up, not a leak;"
                    f" {support}")
        return (f"allocated blocks grew unevenly (window slopes "
                f"{window_slopes(trend, '/request')}; the last rise is not significant), "
                f"within what garbage awaiting a full collection reaches, not a leak"
                f"{_heap_share(trend, heap)}; {support}")
    if trend.state == "slowing":
        return (f"allocated blocks grow less in each window ({window_slopes(trend, '/request')}):"
                f" a cache nearing full or a slow leak; run longer to tell")
    if trend.state == "late":
        return (f"allocated blocks grow only in the last {trend.windows_growing} of {windows} "
                f"windows{drops}{_heap_share(trend, heap)}: growth started late; "
                f"run longer to confirm")
    if trend.state == "mixed":
        return (f"windows disagree: allocated blocks grow in {trend.windows_growing} of "
                f"{windows} windows ({window_slopes(trend, '/request')}){drops}"
                f"{_heap_share(trend, heap)}")
    return f"allocated blocks flat after warm-up ({slope}/request); {support}"


def _fell_back_after_outgrowing_garbage(blocks: Trend, signals: LifeSignals,
                                        config: AnalysisConfig) -> bool:
    """A drop at the end that follows real growth is not a plateau to trust.

    A cache that filled stops: its last window is flat. A last window that
    still climbs but whose low point fell (a collection, a cleared cache)
    after the heap grew past the garbage allowance could be a leak caught
    mid-sawtooth.
    """
    last_still_climbs = bool(blocks.window_slopes) and (
        blocks.window_slopes[-1] >= WINDOW_FLOOR_SHARE * config.min_blocks_per_request)
    fell_back = blocks.last_drop > FELL_BACK_SHARE * max(blocks.growth, 0.0)
    heap = signals.heap_blocks
    outgrew = heap is None or blocks.growth >= config.garbage_allowance * heap
    return outgrew and (last_still_climbs or fell_back)


def _rss_follows(rss: Trend | None, blocks_slope: float, config: AnalysisConfig) -> bool:
    if rss is None or rss.fit is None:
        return False
    floor = max(config.rss_support_bytes_per_request, MIN_BYTES_PER_BLOCK * blocks_slope)
    return rss.fit.z >= Z_OVERALL and rss.slope >= floor


def _growing_blocks(blocks: Trend, rss: Trend | None, signals: LifeSignals,
                    config: AnalysisConfig) -> tuple[Verdict, str]:
    """Steady block growth: a leak once it outgrows what uncollected garbage can hold."""
    windows = len(blocks.window_growth)
    head = (f"allocated blocks grow {format_count(blocks.slope)}/request in every window "
            f"({windows}/{windows})")
    support = rss_support(rss)
    heap = signals.heap_blocks
    if heap is not None and heap > 0:
        allowance = config.garbage_allowance * heap
        rise = f"+{blocks.growth:,.0f} blocks ({blocks.growth / heap:.0%} of the heap)"
        if blocks.growth >= allowance:
            return "leak", (f"{head}, {rise}: more than garbage awaiting a full collection "
                            f"can hold; {support}")
        more = math.ceil((allowance - blocks.growth) / blocks.slope)
        return "inconclusive", (
            f"{head}, but only {rise}, which garbage awaiting a full collection can reach: "
            f"run about {more} more requests in this worker (growth past "
            f"{config.garbage_allowance:.0%} of the heap decides); {support}")
    if _rss_follows(rss, blocks.slope, config):
        return "leak", f"{head}, and RSS follows: {support}"
    return "inconclusive", (
        f"{head}, but RSS does not follow ({support}) and, without an absolute block count, "
        f"garbage awaiting a full collection cannot be ruled out")


def _decides(trend: Trend, config: AnalysisConfig) -> bool:
    """Whether a bounded resource's growth is strong enough to decide the verdict.

    A sparse census (a sample every 100 requests) has too few points for
    per-window tests, so it must rise at every single sample: a count that
    merely wanders (keep-alive connections) rises 8 times in a row once in
    40,000 runs.
    """
    if trend.state != "growing" or trend.n < config.resource_min_points:
        return False
    return trend.strictly_rising or not trend.sparse


def _resource_reason(kinds: Sequence[str], resources: dict[str, Trend]) -> str:
    parts = []
    for kind in kinds:
        trend = resources[kind]
        parts.append(f"{kind} grows {format_count(trend.slope)}/request "
                     f"({format_count(trend.first or 0)} -> {format_count(trend.last or 0)})")
    return "; ".join(parts) + " in every window"


def _too_short(life: WorkerLife, signals: LifeSignals, config: AnalysisConfig
               ) -> LifeAssessment:
    needed = config.requests_needed()
    more = needed - signals.requests
    reason = (f"only {signals.requests} requests ({signals.tested} after a {signals.warmup}-"
              f"request warm-up); a verdict needs {config.min_requests} after warm-up: run about "
              f"{more} more requests in this worker ({needed} in all)")
    return LifeAssessment(life, signals, "inconclusive", reason, None, None, {}, more)


def _exact_too_short(life: WorkerLife, signals: LifeSignals, config: AnalysisConfig
                     ) -> LifeAssessment:
    """Too short for the live-heap series (which needs fewer requests than the others)."""
    points = len(signals.exact.xs) if signals.exact is not None else 0
    needed_points = exact_points_needed(config)
    every = signals.census_every or 1.0
    tested = max(config.exact_min_requests,
                 signals.tested + math.ceil(max(0, needed_points - points) * every))
    needed = config.requests_needed(tested)
    more = max(1, needed - signals.requests)
    reason = (f"only {signals.requests} requests ({signals.tested} after a {signals.warmup}-"
              f"request warm-up, {points} census points with the live heap); a verdict needs "
              f"{config.exact_min_requests} after warm-up and {needed_points} census points: "
              f"run about {more} more requests in this worker ({needed} in all)")
    return LifeAssessment(life, signals, "inconclusive", reason, None, None, {}, more,
                          heap_signal="blocks_collected")


def _fallback_verdict(signals: LifeSignals, blocks: Trend | None, rss: Trend | None,
                      config: AnalysisConfig) -> tuple[Verdict, str]:
    """Allocated blocks with the garbage allowance; RSS when there are no blocks."""
    if blocks is not None and blocks.state != "insufficient":
        if blocks.state == "growing":
            return _growing_blocks(blocks, rss, signals, config)
        reason = _blocks_reason(blocks, rss, config.min_blocks_per_request,
                                signals.heap_blocks)
        if blocks.state in ("slowing", "late", "mixed"):
            return "inconclusive", reason
        if blocks.state == "plateau" and _fell_back_after_outgrowing_garbage(blocks, signals,
                                                                            config):
            return "inconclusive", (
                f"allocated blocks grew {format_count(blocks.slope)}/request"
                f"{_heap_share(blocks, signals.heap_blocks)}, more than uncollected garbage "
                f"explains, then fell back in the last window: run longer to see whether "
                f"growth resumes")
        rss_leak = rss_only(signals, rss, config, blocks_flat=True)
        if rss_leak is not None:
            return rss_leak
        return "no_leak", reason
    rss_leak = rss_only(signals, rss, config, blocks_flat=False)
    if rss_leak is not None:
        return rss_leak
    if rss is None or rss.state == "insufficient":
        return "inconclusive", "no allocated-block or RSS measurements in the lines"
    if rss.state in ("growing", "slowing", "late", "mixed"):
        return "inconclusive", (
            f"no block counts in the lines, and RSS alone ({format_signed_bytes(rss.slope)}"
            f"/request, {rss.windows_growing} of {len(rss.window_growth)} windows growing) "
            f"is not enough: allocator high-water marks look like this too")
    return "no_leak", f"no block counts in the lines; {rss_support(rss)}, no consistent growth"


def _uses_exact(signals: LifeSignals, config: AnalysisConfig) -> bool:
    return (signals.exact is not None
            and len(signals.exact.xs) >= exact_points_needed(config)
            and signals.tested >= config.exact_min_requests)


def assess_life(life: WorkerLife, config: AnalysisConfig,
                signals: LifeSignals | None = None) -> LifeAssessment:
    """Judge one life; ``signals``: its ``life_signals``, when already taken (from the
    columns of a buffered life, whose ``life`` then holds no requests)."""
    if signals is None:
        signals = life_signals(life, config)
    exact = _uses_exact(signals, config)
    if not exact and signals.tested < config.min_requests:
        if signals.exact is not None:
            return _exact_too_short(life, signals, config)
        return _too_short(life, signals, config)
    blocks = _assess(signals.blocks, TrendRule(config.min_blocks_per_request,
                                               windows=config.windows))
    rss = _assess(signals.rss, TrendRule(config.rss_support_bytes_per_request,
                                         windows=config.windows))
    resources = {kind: assess_trend(signal.xs, signal.ys, rule_for_kind(kind, config))
                 for kind, signal in sorted(signals.census.items())}
    heap_signal: HeapSignal | None = None
    heap: Trend | None = None
    decision: tuple[Verdict, str] | None = None
    if exact:
        verdict, reason, heap = exact_verdict(signals, rss, config)
        heap_signal, decision = "blocks_collected", (verdict, reason)
    else:
        full_gc = full_gc_verdict(signals, rss, config)
        if full_gc is not None:
            verdict, reason, heap = full_gc
            heap_signal, decision = "blocks_after_full_gc", (verdict, reason)
        elif blocks is not None:
            heap_signal, heap = ("blocks" if signals.blocks_source == "blocks"
                                 else "blocks_delta"), blocks

    def decided(verdict: Verdict, reason: str) -> LifeAssessment:
        return LifeAssessment(life, signals, verdict, reason, blocks, rss, resources,
                              heap_signal=heap_signal, heap=heap)

    bounded = [kind for kind in BOUNDED_RESOURCES
               if kind in resources and _decides(resources[kind], config)]
    if bounded:
        return decided("leak", _resource_reason(bounded, resources))
    if decision is not None:
        return decided(*decision)
    return decided(*_fallback_verdict(signals, blocks, rss, config))


def overall_verdict(assessments: Sequence[LifeAssessment],
                    config: AnalysisConfig) -> tuple[Verdict, str]:
    """Combine worker lives: any leak wins, then disagreement, then no leak."""
    if not assessments:
        return "inconclusive", "no memwarden request lines found"
    total = len(assessments)
    leaks = [a for a in assessments if a.verdict == "leak"]
    if leaks:
        strongest = max(leaks, key=lambda a: a.signals.requests)
        return "leak", f"{len(leaks)} of {total} worker lives leak; " \
                       f"{strongest.life.label}: {strongest.reason}"
    conflicting = [a for a in assessments if a.conflicting]
    if conflicting:
        first = max(conflicting, key=lambda a: a.signals.requests)
        return "inconclusive", f"{first.life.label}: {first.reason}"
    clean = [a for a in assessments if a.verdict == "no_leak"]
    if clean:
        longest = max(clean, key=lambda a: a.signals.requests)
        short = total - len(clean)
        note = f" ({short} too short to judge)" if short else ""
        return "no_leak", (f"no leak in {len(clean)} of {total} worker lives{note}; "
                           f"{longest.life.label}: {longest.reason}")
    longest = max(assessments, key=lambda a: a.signals.requests)
    return "inconclusive", f"too few requests: {longest.life.label}: {longest.reason}"
