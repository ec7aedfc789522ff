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
from itertools import pairwise
from typing import Literal

from memwarden.analysis.config import AnalysisConfig
from memwarden.analysis.lives import WorkerLife
from memwarden.analysis.model import Verdict
from memwarden.analysis.series import LifeSignals, Signal, life_signals
from memwarden.analysis.stats import median, theil_sen, trimmed_mean
from memwarden.analysis.trend import (
    MIN_WINDOW_POINTS,
    WINDOW_FLOOR_SHARE,
    Z_OVERALL,
    Trend,
    TrendRule,
    assess_trend,
)
from memwarden.analysis.units import format_bytes, format_count, format_signed_bytes

__all__ = ["BOUNDED_RESOURCES", "HEAP_SIGNALS", "HeapSignal", "LifeAssessment", "assess_life",
           "overall_verdict", "rule_for_kind"]

# Counts a healthy worker keeps bounded regardless of traffic. Counts that
# legitimately follow traffic (sessions, tasks, user kinds, gc types,
# children's PSS, which grows with a browser's own caches) are suspects,
# never the verdict on their own.
BOUNDED_RESOURCES = ("threads", "fds", "children", "asyncio.loops", "playwright.contexts",
                     "mcp.sessions")
CHILDREN_PSS = "children_pss_bytes"
# A last window whose low point fell by more than this share of the run's
# growth "fell back" (a collection, a cleared cache) rather than levelled off.
FELL_BACK_SHARE = 0.1
# The smallest pymalloc block: RSS that grows by less per new block is not
# following the blocks.
MIN_BYTES_PER_BLOCK = 16.0
GC_PREFIX = "gc."
# The live heap's second half growing at under this share of its first half's
# rate is slowing down: a cache filling up, not (yet) a leak.
HALF_SLOWING_SHARE = 0.5

HeapSignal = Literal["blocks_collected", "blocks_after_full_gc", "blocks", "blocks_delta"]
# What each heap signal is, in the words of a reason.
HEAP_SIGNALS: dict[HeapSignal, str] = {
    "blocks_collected": "the live heap (allocated blocks after a collection at each census)",
    "blocks_after_full_gc": "the live heap after each full collection",
    "blocks": "allocated blocks",
    "blocks_delta": "allocated blocks (summed per-request deltas)",
}


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


def _window_slopes(trend: Trend, per_request: str) -> str:
    return ", ".join(format_count(s) for s in trend.window_slopes) + per_request


def _rss_support(rss: Trend | None) -> str:
    if rss is None or rss.fit is None:
        return "no RSS in the lines"
    text = f"RSS {format_signed_bytes(rss.slope)}/request"
    if rss.state == "growing":
        return text + " (grows in every window)"
    return text


def _heap_share(trend: Trend, heap: float | None) -> str:
    if heap is None or heap <= 0:
        return ""
    return f"; +{trend.growth:,.0f} blocks in all, {trend.growth / heap:.0%} of the heap"


def _blocks_reason(trend: Trend, rss: Trend | None, floor: float, heap: float | None) -> str:
    slope = format_count(trend.slope)
    windows = len(trend.window_growth)
    support = _rss_support(rss)
    drops = (f"; in {trend.floor_drops} the low point fell back (a garbage collection)"
             if trend.floor_drops else "")
    if trend.state == "below_floor":
        return (f"allocated blocks grow {slope}/request, under the {format_count(floor)}/request "
                f"that counts as a leak (garbage awaiting a full collection grows this way); "
                f"{support}")
    if trend.state == "plateau":
        if trend.last_drop > FELL_BACK_SHARE * max(trend.growth, 0.0):
            return (f"allocated blocks grew, then fell back in the last window (window slopes "
                    f"{_window_slopes(trend, '/request')}): garbage that a collection freed, "
                    f"not a leak{_heap_share(trend, heap)}; {support}")
        if trend.window_slopes[-1] < WINDOW_FLOOR_SHARE * floor:
            return (f"allocated blocks grew, then stopped (window slopes "
                    f"{_window_slopes(trend, '/request')}): a cache that filled up, not a leak;"
                    f" {support}")
        return (f"allocated blocks grew unevenly (window slopes "
                f"{_window_slopes(trend, '/request')}; the last rise is not significant), "
                f"within what garbage awaiting a full collection reaches, not a leak"
                f"{_heap_share(trend, heap)}; {support}")
    if trend.state == "slowing":
        return (f"allocated blocks grow less in each window ({_window_slopes(trend, '/request')}):"
                f" a cache nearing full or a slow leak; run longer to tell")
    if trend.state == "late":
        return (f"allocated blocks grow only in the last {trend.windows_growing} of {windows} "
                f"windows{drops}{_heap_share(trend, heap)}: growth started late; "
                f"run longer to confirm")
    if trend.state == "mixed":
        return (f"windows disagree: allocated blocks grow in {trend.windows_growing} of "
                f"{windows} windows ({_window_slopes(trend, '/request')}){drops}"
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
    support = _rss_support(rss)
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


def _exact_points_needed(config: AnalysisConfig) -> int:
    return config.windows * MIN_WINDOW_POINTS


def _exact_too_short(life: WorkerLife, signals: LifeSignals, config: AnalysisConfig
                     ) -> LifeAssessment:
    """Too short for the live-heap series (which needs fewer requests than the others)."""
    points = len(signals.exact.xs) if signals.exact is not None else 0
    needed_points = _exact_points_needed(config)
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


def _rss_only(signals: LifeSignals, rss: Trend | None, config: AnalysisConfig,
              blocks_flat: bool) -> tuple[Verdict, str] | None:
    """A leak seen in RSS alone, or None when RSS does not show one."""
    if signals.rss is None:
        return None
    strict = assess_trend(signals.rss.xs, signals.rss.ys,
                          TrendRule(config.rss_only_bytes_per_request,
                                    config.rss_only_min_growth_bytes, config.windows))
    if strict.state != "growing":
        return None
    where = ("while allocated blocks stay flat: memory outside the Python allocator "
             "(C extensions, native buffers)" if blocks_flat else "(no block counts in the lines)")
    return "leak", (f"RSS grows {format_signed_bytes(strict.slope)}/request in every window, "
                    f"{format_bytes(strict.growth)} in all, {where}")


def _rss_grows(rss: Trend | None) -> bool:
    return rss is not None and rss.state == "growing"


def _bytes_from_rss(rss: Trend | None) -> str:
    """What RSS says the growth costs."""
    if rss is None or rss.fit is None:
        return "no RSS in the lines to size it"
    if rss.fit.z >= Z_OVERALL and rss.slope > 0:
        text = f"about {format_bytes(rss.slope)}/request by RSS"
        return text + (" (RSS grows in every window)" if rss.state == "growing" else "")
    return f"RSS does not show it yet ({format_signed_bytes(rss.slope)}/request)"


def _rises(trend: Trend) -> str:
    steps = sum(trend.window_rises)
    return f"up at {steps} of {max(trend.n - 1, 1)} census steps"


def _decelerates(xs: Sequence[float], ys: Sequence[float]) -> bool:
    """The second half grows at under HALF_SLOWING_SHARE of the first half's rate.

    A cache filling from a large key space slows down as it fills; a leak
    keeps its pace (its halves differ by the noise of the traffic mix).
    """
    rates = [(y1 - y0) / (x1 - x0) for (x0, y0), (x1, y1) in pairwise(zip(xs, ys, strict=True))
             if x1 > x0]
    if len(rates) < 4:
        return False
    middle = len(rates) // 2
    # Trimmed means of the step rates: a lazy import is one huge step, trimmed away.
    first, second = trimmed_mean(rates[:middle], 0.1), trimmed_mean(rates[middle:], 0.1)
    return first > 0 and second < HALF_SLOWING_SHARE * first


def _wobble(xs: Sequence[float], ys: Sequence[float], trend: Trend) -> float:
    """Robust spread (scaled MAD) of a series around its fitted line."""
    if trend.fit is None or len(xs) < 3:
        return 0.0
    fit = trend.fit
    residuals = [y - fit.slope * x - fit.intercept for x, y in zip(xs, ys, strict=True)]
    centre = median(residuals)
    return 1.4826 * median([abs(r - centre) for r in residuals])


def _late_growth_holds(xs: Sequence[float], ys: Sequence[float], heap: Trend,
                       config: AnalysisConfig, allowance: float) -> bool:
    """Whether the growing last windows, taken together, rise as steadily as a leak must.

    One window out of four passes its own test by chance now and then (requests
    in flight at a census wobble the live heap); a leak that started late passes
    the overall test over the windows since it started, and outgrows warm-up.
    """
    first = len(heap.window_growth) - heap.windows_growing
    start = first * len(xs) // len(heap.window_growth)
    fit = theil_sen(xs[start:], ys[start:])
    return (fit is not None and fit.z >= Z_OVERALL and fit.low > 0
            and fit.slope >= config.exact_min_blocks_per_request
            and fit.slope * (xs[-1] - xs[start]) >= allowance)


def _exact_verdict(signals: LifeSignals, rss: Trend | None, config: AnalysisConfig
                   ) -> tuple[Verdict, str, Trend]:
    """The verdict from ``blocks_collected``: exact, so no garbage allowance."""
    signal = signals.exact
    if signal is None:  # pragma: no cover - the caller checked
        raise ValueError("no blocks_collected series")
    what = HEAP_SIGNALS["blocks_collected"]
    windows = config.windows
    floor = (config.exact_long_run_blocks_per_request
             if signals.tested >= config.exact_long_run_requests
             else config.exact_min_blocks_per_request)
    heap = assess_trend(signal.xs, signal.ys,
                        TrendRule(floor, windows=windows, min_rises=config.exact_min_rises))
    slope = format_count(heap.slope)
    slopes = _window_slopes(heap, " blocks/request")
    total = f"{heap.growth:+,.0f} blocks over {format_count(heap.span)} requests"
    allowance = max(config.exact_warmup_allowance_blocks,
                    config.exact_warmup_heap_share * signal.ys[0],
                    config.exact_noise_multiple * _wobble(signal.xs, signal.ys, heap))
    # The rate that holds in every window: one window with a step (a lazy
    # import) must not lift it.
    steady = median(heap.window_slopes) if heap.window_slopes else 0.0
    if heap.state == "growing" and _decelerates(signal.xs, signal.ys):
        return "inconclusive", (
            f"{what} grows in every window ({slopes}), but less than half as fast in the "
            f"second half of the run as in the first: a cache nearing full or a slowing "
            f"leak; run longer to tell"), heap
    if heap.state == "growing" and steady * heap.span >= allowance:
        return "leak", (f"{what} grows {slope} blocks/request in every window "
                        f"({windows}/{windows}, {_rises(heap)}), {total}; "
                        f"{_bytes_from_rss(rss)}"), heap
    large = assess_trend(signal.xs, signal.ys,
                         TrendRule(config.exact_large_objects_blocks_per_request,
                                   windows=windows, min_rises=config.exact_min_rises))
    if large.state == "growing" and _rss_grows(rss) and rss is not None \
            and rss.slope >= config.exact_large_objects_rss_bytes_per_request \
            and rss.slope >= config.exact_large_objects_bytes_per_block * large.slope:
        return "leak", (f"{what} grows {format_count(large.slope)} blocks/request in every "
                        f"window ({_rises(large)}) while RSS grows "
                        f"{format_signed_bytes(rss.slope)}/request in every window: a few "
                        f"large objects (buffers, arrays) kept per request"), large
    if heap.state == "growing":
        more = math.ceil((allowance - steady * heap.span) / max(steady, heap.slope))
        return "inconclusive", (
            f"{what} grows in every window ({windows}/{windows}, {format_count(steady)} "
            f"blocks/request in the median window), but {steady * heap.span:+,.0f} blocks "
            f"of steady growth over {format_count(heap.span)} requests is what warm-up (lazy "
            f"imports, caches filling) can reach: run "
            f"about {more} more requests in this worker (a steady rise past "
            f"{allowance:,.0f} blocks decides); {_bytes_from_rss(rss)}"), heap
    if heap.state == "slowing":
        return "inconclusive", (f"{what} grows less in each window ({slopes}): a cache "
                                f"nearing full or a slowing leak; run longer to tell"), heap
    if heap.state == "late" and _late_growth_holds(signal.xs, signal.ys, heap, config,
                                                       allowance):
        return "inconclusive", (f"{what} grows only in the last {heap.windows_growing} of "
                                f"{windows} windows ({slopes}): growth started late; run "
                                f"longer to confirm"), heap
    fit = heap.fit
    if (heap.state == "mixed" and heap.windows_growing >= windows - 1 and fit is not None
            and fit.z >= Z_OVERALL and heap.slope >= floor):
        return "inconclusive", (f"{what} grows {slope} blocks/request overall but in only "
                                f"{heap.windows_growing} of {windows} windows ({slopes}); "
                                f"run longer to tell"), heap
    native = _rss_only(signals, rss, config, blocks_flat=True)
    if native is not None:
        return native[0], native[1], heap
    grows = list(heap.window_growth)
    grew_first = (heap.state == "plateau" and grows[0]
                  and True not in grows[grows.index(False):])
    if grew_first:
        reason = (f"{what} grew, then stopped ({slopes}): a cache that filled up or "
                  f"warm-up, not a leak; {total}")
    elif heap.state == "plateau":
        reason = (f"{what} moves up and down with no steady rise ({slopes}): requests in "
                  f"flight at the census and one-off loads, not a leak; {total}")
    elif heap.state == "late":
        reason = (f"{what} rises only in the last {heap.windows_growing} of {windows} windows "
                  f"({slopes}), by less than warm-up reaches: not a leak; {total}")
    elif heap.state == "mixed":
        reason = (f"{what} rises in steps, not steadily ({slopes}, {_rises(heap)}): "
                  f"lazy imports and one-off loads, not a leak; {total}")
    else:
        reason = (f"{what} stays flat after warm-up ({slope} blocks/request, {total}), under "
                  f"the {format_count(floor)} blocks/request that count as a leak")
    return "no_leak", f"{reason}; {_rss_support(rss)}", heap


def _full_gc_verdict(signals: LifeSignals, rss: Trend | None, config: AnalysisConfig
                     ) -> tuple[Verdict, str, Trend] | None:
    """The verdict from the live heap at CPython's own full collections, if there were enough."""
    signal = signals.full_gc
    if signal is None or len(signal.xs) < config.full_gc_min_samples:
        return None
    xs, ys = signal.xs, signal.ys
    fit = theil_sen(xs, ys)
    if fit is None:
        return None
    n = len(xs)
    span = xs[-1] - xs[0]
    rising = all(b > a for a, b in pairwise(ys))
    grows = [b > a for a, b in pairwise(ys)]
    trend = Trend("growing" if rising else "flat", n, fit, (), tuple(grows), span, ys[0],
                  ys[-1], sparse=True, strictly_rising=rising)
    what = HEAP_SIGNALS["blocks_after_full_gc"]
    values = f"{format_count(ys[0])} -> {format_count(ys[-1])} blocks over {n} collections"
    floor = config.exact_min_blocks_per_request
    allowance = max(config.exact_warmup_allowance_blocks,
                    config.exact_warmup_heap_share * ys[0])
    growth = fit.slope * span
    if fit.slope < floor or (not rising and growth < allowance):
        trend = Trend("below_floor" if fit.slope > 0 else "flat", n, fit, (), tuple(grows),
                      span, ys[0], ys[-1], sparse=True, strictly_rising=rising)
        return "no_leak", (f"{what} does not grow steadily ({values}, "
                           f"{format_count(fit.slope)} blocks/request): growth between them "
                           f"was garbage; {_rss_support(rss)}"), trend
    if rising and growth >= allowance:
        return "leak", (f"{what} rose at every one of them ({values}, "
                        f"{format_count(fit.slope)} blocks/request); {_bytes_from_rss(rss)}"
                        ), trend
    if rising:
        more = math.ceil((allowance - growth) / fit.slope)
        return "inconclusive", (f"{what} rose at every one of them ({values}), but by less "
                                f"than warm-up can reach: run about {more} more requests in "
                                f"this worker"), trend
    trend = Trend("mixed", n, fit, (), tuple(grows), span, ys[0], ys[-1], sparse=True)
    return "inconclusive", (f"{what} grows {format_count(fit.slope)} blocks/request overall "
                            f"but fell back {grows.count(False)} time(s) ({values}); run "
                            f"longer to tell"), trend


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
        rss_leak = _rss_only(signals, rss, config, blocks_flat=True)
        if rss_leak is not None:
            return rss_leak
        return "no_leak", reason
    rss_leak = _rss_only(signals, rss, config, blocks_flat=False)
    if rss_leak is not None:
        return rss_leak
    if rss is None or rss.state == "insufficient":
        return "inconclusive", "no allocated-block or RSS measurements in the lines"
    if rss.state in ("growing", "slowing", "late", "mixed"):
        return "inconclusive", (
            f"no block counts in the lines, and RSS alone ({format_signed_bytes(rss.slope)}"
            f"/request, {rss.windows_growing} of {len(rss.window_growth)} windows growing) "
            f"is not enough: allocator high-water marks look like this too")
    return "no_leak", f"no block counts in the lines; {_rss_support(rss)}, no consistent growth"


def _uses_exact(signals: LifeSignals, config: AnalysisConfig) -> bool:
    return (signals.exact is not None
            and len(signals.exact.xs) >= _exact_points_needed(config)
            and signals.tested >= config.exact_min_requests)


def assess_life(life: WorkerLife, config: AnalysisConfig) -> LifeAssessment:
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
        verdict, reason, heap = _exact_verdict(signals, rss, config)
        heap_signal, decision = "blocks_collected", (verdict, reason)
    else:
        full_gc = _full_gc_verdict(signals, rss, config)
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
