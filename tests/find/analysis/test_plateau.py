"""The plateau test: warm-up then a steady rate is a leak; growth that levels off is not.

Each worker life below is 1,500 requests with a census every 10 (an adaptive
audit's second look at 2 workers), and its live heap grows at the given rate
in each of the four windows after warm-up. At 750 requests (the first look)
the same shapes are "inconclusive" with the number of requests that decides:
clean apps still add 0.3-0.6 blocks/request that early.
"""

from __future__ import annotations

import random
from collections.abc import Sequence

import pytest

from memwarden.find.analysis import AnalysisConfig, analyze_lines
from memwarden.find.analysis.saturation import compare_models

from .synthetic import (
    BYTES_PER_BLOCK,
    Effect,
    SyntheticWorker,
    cache_fill,
    lazy_imports,
    random_key_cache,
    to_lines,
)

REQUESTS = 1500
CASE_1 = (3.5, 0.93, 0.84, 0.77)
CASE_2 = (2.0, 1.8, 0.37, 0.4)


def window_rates(rates: Sequence[float], rss_bytes: float | None = None,
                 requests: int = REQUESTS) -> Effect:
    """Blocks kept per request: ``rates[k]`` in the k-th window after warm-up (the
    first rate during warm-up too); RSS follows at ``rss_bytes`` per request."""
    warmup = requests // 10
    width = (requests - warmup) / len(rates)

    def effect(i: int) -> tuple[float, float]:
        rate = rates[min(int(max(i - warmup, 0) / width), len(rates) - 1)]
        return rate, rss_bytes if rss_bytes is not None else rate * BYTES_PER_BLOCK
    return effect


def life(seed: int, effect: Effect | None, requests: int = REQUESTS,
         inflight: float = 50.0) -> list[str]:
    worker = SyntheticWorker(seed=seed, exact_census=True, census_every=10,
                             inflight_blocks=inflight)
    return to_lines(worker.run(requests, effect))


@pytest.mark.parametrize("seed", range(4))
def test_warm_up_then_a_steady_positive_rate_is_a_leak(seed: int) -> None:
    """3.5, 0.93, 0.84, 0.77 blocks/request: warm-up in the first window, then a rate
    that holds. Read as "grew, then stopped" before; it is a leak."""
    report = analyze_lines(life(seed, window_rates(CASE_1)))
    assert report.verdict == "leak", report.reason
    assert "settles at a positive rate after warm-up" in report.reason
    assert "beats growth that levels off" in report.reason
    assert "log-likelihood ratio" in report.reason


@pytest.mark.parametrize("seed", range(4))
def test_a_slow_decline_to_a_positive_floor_with_rss_rising_is_a_leak(seed: int) -> None:
    """2.0, 1.8, 0.37, 0.4 blocks/request while RSS grows 2 KiB/request in every
    window (large buffers: few blocks, many bytes): a leak, not a cache that filled."""
    report = analyze_lines(life(seed, window_rates(CASE_2, 2048.0)))
    assert report.verdict == "leak", report.reason
    # RSS is the second witness: in every window, or settled at a rate of its own.
    assert "while RSS grows in every window" in report.reason or (
        "while RSS settles at a positive rate too" in report.reason)
    assert "explains it" not in report.reason


@pytest.mark.parametrize(("rates", "rss_bytes"), [(CASE_1, None), (CASE_2, 2048.0)])
def test_at_the_first_look_the_same_shapes_ask_for_the_requests_that_decide(
        rates: tuple[float, ...], rss_bytes: float | None) -> None:
    """750 requests: not "grew, then stopped" but "inconclusive", with a figure that
    reaches the length at which the plateau test may call it."""
    report = analyze_lines(life(1, window_rates(rates, rss_bytes, 750), 750))
    assert report.verdict == "inconclusive", report.reason
    (worker,) = report.workers
    assert "still rises in the last half" in worker.reason
    assert worker.more_requests is not None
    assert 750 + worker.more_requests >= AnalysisConfig().requests_needed(
        AnalysisConfig().steady_min_requests)


@pytest.mark.parametrize("seed", range(4))
def test_a_bounded_cache_that_fills_is_a_plateau(seed: int) -> None:
    """120 entries of 40 blocks, one per request: the live heap climbs, then stops."""
    report = analyze_lines(life(seed, cache_fill(120 + 40 * seed, 40.0), 750))
    assert report.verdict == "no_leak", report.reason
    (worker,) = report.workers
    assert "levels off" in worker.reason


def test_the_model_comparison_names_the_winner() -> None:
    """A pure fill curve: levelling off explains it. A line after warm-up: the steady
    rate wins, and the rate it reports is the line's."""
    xs = [float(x) for x in range(100, 1500, 10)]
    fill = [5000.0 * (1.0 - 2.718281828 ** (-(x - 100) / 200.0)) for x in xs]
    level = compare_models(xs, fill)
    assert level is not None and not level.levelling_contradicted
    assert "explains it" in level.describe("blocks")
    steady_ys = [2000.0 * (1.0 - 2.718281828 ** (-(x - 100) / 80.0)) + 0.8 * (x - 100)
                 for x in xs]
    steady = compare_models(xs, steady_ys)
    assert steady is not None and steady.levelling_contradicted
    assert steady.rate == pytest.approx(0.8, rel=0.05)
    assert steady.tail_rate == pytest.approx(0.8, rel=0.05)


def _trap(rng: random.Random, requests: int) -> tuple[str, Effect | None, float]:
    kind = rng.choice(("cache", "random_cache", "warm_up", "lazy", "trickle", "clean"))
    if kind == "cache":
        return kind, cache_fill(rng.randint(20, 300), rng.uniform(10.0, 100.0)), 0.0
    if kind == "random_cache":
        keys = rng.randint(10, 60)
        return kind, random_key_cache(keys, 0.25, rng.uniform(20.0, 100.0), rng.randrange(99)), 0.0
    if kind == "lazy":
        start = rng.randint(200, 600)
        step = lazy_imports(first=3, blocks=rng.uniform(2_000.0, 20_000.0))
        return kind, (lambda i: step(i - start) if i >= start else (0.0, 0.0)), 0.0
    if kind == "trickle":
        # The server's own caches filling from unique URLs: a steady 0.2-0.8
        # blocks/request that stops within the first two thirds of the life.
        rate, stop = rng.uniform(0.2, 0.8), rng.randint(300, requests * 2 // 3)
        return kind, (lambda i: (rate, rate * BYTES_PER_BLOCK) if i < stop else (0.0, 0.0)), 0.0
    if kind == "warm_up":
        return kind, None, rng.uniform(500.0, 3000.0)
    return kind, None, 0.0


def test_simulated_traps_are_never_called_a_leak() -> None:
    """150 lives that do not leak (caches that fill, random-key caches, long warm-ups,
    late lazy imports, trickles that stop, clean runs; 750 to 3,000 requests, quiet and
    noisy censuses): 0 false leaks."""
    rng = random.Random(2026)
    false_leaks = []
    for run in range(150):
        requests = rng.choice((750, 1500, 3000))
        kind, effect, warm = _trap(rng, requests)
        worker = SyntheticWorker(seed=run, exact_census=True, census_every=10,
                                 inflight_blocks=rng.choice((50.0, 400.0)),
                                 warmup_blocks=warm or 270.0,
                                 warmup_span=rng.uniform(100.0, 400.0) if warm else 150.0)
        report = analyze_lines(to_lines(worker.run(requests, effect)))
        if report.verdict == "leak":
            false_leaks.append((run, kind, requests, report.reason))
    assert false_leaks == []
