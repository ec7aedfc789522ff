"""The plateau test: a live heap that levels off, or one that settles at a positive rate.

Warm-up makes every worker's live heap climb steeply at first; a cache that
fills does too. What tells them from a leak is where the rate goes: to zero
(a plateau) or to a positive level that holds (a leak after warm-up, however
much faster the first window grew). Falling window rates such as 3.5, 0.93,
0.84, 0.77 blocks/request are the second kind, not "grew, then stopped".

A rate has settled at a positive level, and the worker leaks, when all of
these hold on the live heap after warm-up:

- levelling off is ruled out (``saturation.ModelComparison``): the steady
  model wins outright, or the last half rises faster than the best
  levelling curve allows, or that curve does not level off within the run;
- the last half rises significantly (trend z of ``Z_OVERALL``, the low end
  of its 99% interval above zero) at ``steady_min_blocks_per_request`` or
  more, or at ``steady_min_blocks_with_rss`` when RSS witnesses a leak too (a
  few large buffers per request: few blocks, many bytes): RSS grows in every
  window, or the same two models fitted to RSS rule levelling off out with
  a last half rising at ``rss_support_bytes_per_request`` or more (the low
  end of its 99% interval);
- each of the last two windows keeps at least half that pace, with a step
  up at ``exact_min_rises`` of its census points (a late lazy import is one
  step, not a rate);
- the life had ``steady_min_requests`` after warm-up, past the decaying
  trickle that clean apps still add early on.

A last half that rises this way from ``steady_check_min_requests`` on, in a
life still too short or with levelling off not ruled out, is "inconclusive".
"""

from __future__ import annotations

from dataclasses import dataclass

from memwarden.find.analysis.config import AnalysisConfig
from memwarden.find.analysis.saturation import ModelComparison, compare_models
from memwarden.find.analysis.series import Signal
from memwarden.find.analysis.trend import Z_OVERALL, Trend

__all__ = ["SteadyRate", "settled_rate"]

# Each of the last two windows keeps at least this share of the last half's rate.
LAST_WINDOWS_SHARE = 0.5


@dataclass(frozen=True, slots=True)
class SteadyRate:
    """What the plateau test found: a settled positive rate (``settled``), or a
    last half still rising that levelling off may yet explain (not settled)."""

    settled: bool
    rate: float
    comparison: ModelComparison
    rss_every_window: bool
    rss: ModelComparison | None = None
    rss_witness: bool = False

    def rss_words(self) -> str:
        """What RSS adds, for the reason."""
        if self.rss_every_window:
            return " while RSS grows in every window"
        if self.rss_witness and self.rss is not None:
            return f" while RSS settles at a positive rate too ({self.rss.describe('bytes')})"
        return ""


def _last_windows_hold(heap: Trend, rate: float, config: AnalysisConfig) -> bool:
    slopes = heap.window_slopes[-2:]
    rises = heap.window_rises[-2:]
    if len(slopes) < 2:
        return False
    return (all(s >= LAST_WINDOWS_SHARE * rate for s in slopes)
            and (len(rises) < 2 or all(r >= config.exact_min_rises for r in rises)))


def _rss_settles(rss: ModelComparison | None, config: AnalysisConfig) -> bool:
    # The last half's own interval: RSS warm-up (allocator arenas, high-water
    # steps) is no decaying curve, so the steady model's rate can miss it.
    return (rss is not None and rss.levelling_contradicted and rss.tail_z >= Z_OVERALL
            and rss.tail_low >= config.rss_support_bytes_per_request)


def settled_rate(signal: Signal, heap: Trend, rss: Trend | None, rss_signal: Signal | None,
                 tested: int, config: AnalysisConfig
                 ) -> tuple[SteadyRate | None, ModelComparison | None]:
    """The plateau test on the live heap after warm-up; and the model comparison.

    None when the last half does not rise at a rate that matters (a plateau,
    or too short a life to say).
    """
    comparison = compare_models(signal.xs, signal.ys)
    if comparison is None or tested < config.steady_check_min_requests:
        return None, comparison
    rss_every_window = rss is not None and rss.state == "growing"
    rss_fit = (compare_models(rss_signal.xs, rss_signal.ys) if rss_signal is not None
               else None)
    witness = rss_every_window or _rss_settles(rss_fit, config)
    floor = (config.steady_min_blocks_with_rss if witness
             else config.steady_min_blocks_per_request)
    rate = min(comparison.rate, comparison.tail_rate)
    if not (comparison.tail_z >= Z_OVERALL and comparison.tail_low > 0.0 and rate >= floor
            and _last_windows_hold(heap, comparison.tail_rate, config)):
        return None, comparison
    # RSS is a second witness: then it is enough that the last half rises
    # faster than a levelling curve ends.
    settled = tested >= config.steady_min_requests and (
        comparison.levelling_contradicted
        or (witness and comparison.tail_low > comparison.level_end_rate))
    return SteadyRate(settled, rate, comparison, rss_every_window, rss_fit, witness), comparison
