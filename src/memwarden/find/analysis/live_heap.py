"""The verdict from the live heap: allocated blocks right after a collection.

Two census fields carry it. ``blocks_collected`` (a ``gc.collect()`` before
each census, ``MEMWARDEN_CENSUS_COLLECT=1``) is exact at every census;
``blocks_after_full_gc`` is recorded by CPython's own full collections and
sampled whenever ``gc_full_collections`` moves. Neither holds garbage, so
there is no garbage allowance: a leak is a rise in every window, at a pace
that does not slow, by more than warm-up reaches.

Warm-up is what remains: measured in clean Flask apps under gunicorn, the
live heap still rises ~1 block/request for a few hundred requests after the
warm-up window (lazy imports, first calls of rare routes, caches of the app,
the server and the interpreter), a few hundred to ~2,000 blocks in all.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from itertools import pairwise
from typing import Literal

from memwarden.find.analysis.config import AnalysisConfig
from memwarden.find.analysis.evidence import (
    bytes_from_rss,
    rss_grows,
    rss_only,
    rss_support,
    window_slopes,
)
from memwarden.find.analysis.model import Verdict
from memwarden.find.analysis.plateau import settled_rate
from memwarden.find.analysis.saturation import ModelComparison
from memwarden.find.analysis.series import LifeSignals, Signal
from memwarden.find.analysis.stats import median, theil_sen, trimmed_mean
from memwarden.find.analysis.trend import (
    MIN_WINDOW_POINTS,
    Z_OVERALL,
    Trend,
    TrendRule,
    assess_trend,
)
from memwarden.find.analysis.units import format_count, format_signed_bytes, more_requests

__all__ = ["HALF_SLOWING_SHARE", "HEAP_SIGNALS", "HeapSignal", "exact_points_needed",
           "exact_verdict", "full_gc_verdict"]

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


def exact_points_needed(config: AnalysisConfig) -> int:
    return config.windows * MIN_WINDOW_POINTS


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


def _large_objects(signal: Signal, rss: Trend | None, config: AnalysisConfig
                   ) -> tuple[str, Trend] | None:
    """A few large objects per request: few blocks, but RSS grows by kilobytes per block."""
    large = assess_trend(signal.xs, signal.ys,
                         TrendRule(config.exact_large_objects_blocks_per_request,
                                   windows=config.windows, min_rises=config.exact_min_rises))
    if large.state != "growing" or rss is None or not rss_grows(rss) \
            or rss.slope < config.exact_large_objects_rss_bytes_per_request \
            or rss.slope < config.exact_large_objects_bytes_per_block * large.slope:
        return None
    return (f"{HEAP_SIGNALS['blocks_collected']} grows {format_count(large.slope)} "
            f"blocks/request in every window ({_rises(large)}) while RSS grows "
            f"{format_signed_bytes(rss.slope)}/request in every window: a few large objects "
            f"(buffers, arrays) kept per request"), large


def _no_leak_reason(heap: Trend, floor: float, slowing: bool,
                    comparison: ModelComparison | None) -> str:
    reason = _no_leak_shape(heap, floor, slowing)
    if comparison is not None and heap.state != "flat" and not (
            heap.state == "below_floor" and heap.slope <= 0):
        reason += f"; {comparison.describe('blocks')}"
    return reason


def _no_leak_shape(heap: Trend, floor: float, slowing: bool) -> str:
    what = HEAP_SIGNALS["blocks_collected"]
    slopes = window_slopes(heap, " blocks/request")
    total = f"{heap.growth:+,.0f} blocks over {format_count(heap.span)} requests"
    grows = list(heap.window_growth)
    if slowing:
        return (f"{what} grows ever more slowly ({slopes}), {total}, within what warm-up "
                f"reaches: warm-up or a cache filling up, not a leak")
    if heap.state == "plateau" and grows[0] and True not in grows[grows.index(False):]:
        return (f"{what} grew, then stopped ({slopes}): a cache that filled up or warm-up, "
                f"not a leak; {total}")
    if heap.state == "plateau":
        return (f"{what} moves up and down with no steady rise ({slopes}): requests in "
                f"flight at the census and one-off loads, not a leak; {total}")
    if heap.state == "late":
        return (f"{what} rises only in the last {heap.windows_growing} of {len(grows)} "
                f"windows ({slopes}), by less than warm-up reaches: not a leak; {total}")
    if heap.state == "mixed":
        return (f"{what} rises in steps, not steadily ({slopes}, {_rises(heap)}): lazy "
                f"imports and one-off loads, not a leak; {total}")
    return (f"{what} stays flat after warm-up ({format_count(heap.slope)} blocks/request, "
            f"{total}), under the {format_count(floor)} blocks/request that count as a leak")


def exact_verdict(signals: LifeSignals, rss: Trend | None, config: AnalysisConfig
                  ) -> tuple[Verdict, str, Trend]:
    """The verdict from ``blocks_collected``: exact, so no garbage allowance.

    A leak grows in every window, does not slow down, and outgrows both
    warm-up and the series' own wobble; growth that does all but the last is
    "run longer"; shapes that are not steady growth (a cache that stopped,
    steps, wobble), and slowing growth within warm-up, are no leak.
    """
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
    slopes = window_slopes(heap, " blocks/request")
    total = f"{heap.growth:+,.0f} blocks over {format_count(heap.span)} requests"
    allowance = max(config.exact_warmup_allowance_blocks,
                    config.exact_warmup_heap_share * signal.ys[0],
                    config.exact_noise_multiple * _wobble(signal.xs, signal.ys, heap))
    # The rate that holds in every window: one window with a step (a lazy
    # import) must not lift it.
    steady = median(heap.window_slopes) if heap.window_slopes else 0.0
    growing = heap.state == "growing"
    slowing = heap.state == "slowing" or (growing and _decelerates(signal.xs, signal.ys))
    big = (steady * heap.span if growing else heap.growth) >= allowance
    if growing and not slowing and big:
        return "leak", (f"{what} grows {format_count(heap.slope)} blocks/request in every "
                        f"window ({windows}/{windows}, {_rises(heap)}), {total}; "
                        f"{bytes_from_rss(rss)}"), heap
    large = _large_objects(signal, rss, config)
    if large is not None:
        return "leak", large[0], large[1]
    found, comparison = settled_rate(signal, heap, rss, signals.rss, signals.tested, config)
    rss_words = found.rss_words() if found is not None else ""
    if found is not None and found.settled:
        return "leak", (f"{what} settles at a positive rate after warm-up ({slopes}){rss_words}: "
                        f"{found.comparison.describe('blocks', settled=True)}; {total}; "
                        f"{bytes_from_rss(rss)}"), heap
    # Going on as long again shows whether a slowing rate reaches zero.
    again = max(1, round(heap.span))
    if found is not None:
        short = config.requests_needed(config.steady_min_requests) - signals.requests
        more = max(again, short)
        why = (f"and {format_count(signals.tested)} requests after warm-up are too few to "
               f"tell it from what a clean app still adds" if short > 0
               else "and levelling off is not ruled out")
        return "inconclusive", (
            f"{what} still rises in the last half ({slopes}){rss_words}, {why}: "
            f"{found.comparison.describe('blocks')}; {total}; {more_requests(more)} to tell"
        ), heap
    if slowing and big:
        return "inconclusive", (f"{what} grows less and less ({slopes}; the second half of "
                                f"the run at under half the pace of the first), {total}: a "
                                f"cache nearing full or a slowing leak; {more_requests(again)} "
                                f"to tell"), heap
    if growing and not slowing:
        more = math.ceil((allowance - steady * heap.span) / max(steady, heap.slope))
        return "inconclusive", (
            f"{what} grows in every window ({windows}/{windows}, {format_count(steady)} "
            f"blocks/request in the median window), but {steady * heap.span:+,.0f} blocks "
            f"of steady growth over {format_count(heap.span)} requests is what warm-up (lazy "
            f"imports, caches filling) can reach: run about {more} more requests in this "
            f"worker (a steady rise past {allowance:,.0f} blocks decides); "
            f"{bytes_from_rss(rss)}"), heap
    if heap.state == "late" and _late_growth_holds(signal.xs, signal.ys, heap, config,
                                                   allowance):
        return "inconclusive", (f"{what} grows only in the last {heap.windows_growing} of "
                                f"{windows} windows ({slopes}): growth started late; "
                                f"{more_requests(again)} to confirm"), heap
    fit = heap.fit
    if (heap.state == "mixed" and heap.windows_growing >= windows - 1 and fit is not None
            and fit.z >= Z_OVERALL and heap.slope >= floor and big):
        return "inconclusive", (f"{what} grows {format_count(heap.slope)} blocks/request "
                                f"overall but in only {heap.windows_growing} of {windows} "
                                f"windows ({slopes}), {total}; {more_requests(again)} to "
                                f"tell"), heap
    native = rss_only(signals, rss, config, blocks_flat=True)
    if native is not None:
        return native[0], native[1], heap
    return "no_leak", (f"{_no_leak_reason(heap, floor, slowing, comparison)}; "
                       f"{rss_support(rss)}"), heap


def full_gc_verdict(signals: LifeSignals, rss: Trend | None, config: AnalysisConfig
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
                           f"was garbage; {rss_support(rss)}"), trend
    if rising and growth >= allowance:
        return "leak", (f"{what} rose at every one of them ({values}, "
                        f"{format_count(fit.slope)} blocks/request); {bytes_from_rss(rss)}"
                        ), trend
    if rising:
        more = math.ceil((allowance - growth) / fit.slope)
        return "inconclusive", (f"{what} rose at every one of them ({values}), but by less "
                                f"than warm-up can reach: run about {more} more requests in "
                                f"this worker"), trend
    trend = Trend("mixed", n, fit, (), tuple(grows), span, ys[0], ys[-1], sparse=True)
    return "inconclusive", (f"{what} grows {format_count(fit.slope)} blocks/request overall "
                            f"but fell back {grows.count(False)} time(s) ({values}); "
                            f"{more_requests(max(1, round(span)))} to tell"), trend
