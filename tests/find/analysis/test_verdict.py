"""Verdicts on synthetic workers built from realistic noise models.

The false-positive rate matters most: no-leak runs (allocator noise, RSS
high-water steps, caches, lazy imports, temporary spikes) must never read
as a leak, while a 10 KB/request leak shows within a few hundred requests.
"""

from __future__ import annotations

import random
from collections.abc import Callable

import pytest

from memwarden.find.analysis import AnalysisConfig, analyze_lines
from memwarden.find.analysis.lives import split_lives
from memwarden.find.analysis.records import RequestRecord
from memwarden.find.analysis.verdict import assess_life

from .synthetic import (
    MIB,
    Route,
    SyntheticWorker,
    cache_fill,
    lazy_imports,
    linear_leak,
    to_lines,
)


@pytest.mark.parametrize(("leak_bytes", "requests"),
                         [(1024, 2500), (10 * 1024, 300), (100 * 1024, 300)])
def test_linear_leak_is_found(leak_bytes: int, requests: int) -> None:
    """Found once it outgrows what uncollected garbage could be: 300 requests for 10 KB."""
    records = SyntheticWorker(seed=1).run(requests, linear_leak(leak_bytes))
    report = analyze_lines(to_lines(records))
    assert report.verdict == "leak", report.reason
    assert "allocated blocks grow" in report.reason
    (worker,) = report.workers
    assert worker.blocks_per_request == pytest.approx(leak_bytes / 64, rel=0.1)
    assert worker.slope_bytes_per_request is not None
    assert worker.slope_bytes_per_request > 0.5 * leak_bytes


def test_small_leak_early_on_is_inconclusive_and_says_how_long_to_run() -> None:
    """Garbage waiting for a full collection ramps up the same way at first."""
    report = analyze_lines(to_lines(SyntheticWorker(seed=1).run(300, linear_leak(1024))))
    assert report.verdict == "inconclusive"
    assert "garbage awaiting a full collection" in report.reason
    assert "more requests in this worker" in report.reason


def test_garbage_ramp_between_collections_is_not_a_leak() -> None:
    """The pattern seen in a clean Flask app: +12 blocks/request, a partial
    collection every ~90 requests takes back ~700, and the troughs still rise
    ~4/request until a full collection, thousands of requests later."""
    worker = SyntheticWorker(seed=11)
    records = worker.run(1000, lambda i: (-700.0 if i % 90 == 89 else 12.0, 0.0))
    report = analyze_lines(to_lines(records))
    assert report.verdict == "inconclusive"
    assert "which garbage awaiting a full collection can reach" in report.reason


def test_leak_is_found_from_summed_deltas_when_absolute_blocks_are_absent() -> None:
    worker = SyntheticWorker(seed=2, log_absolute_blocks=False)
    report = analyze_lines(to_lines(worker.run(300, linear_leak(10 * 1024))))
    assert report.verdict == "leak"


@pytest.mark.parametrize("seed", range(12))
def test_no_leak_runs_never_read_as_leak(seed: int) -> None:
    """Zero-sum block noise, RSS page jitter and high-water steps (up to 3 MiB)."""
    requests = (300, 600, 1500)[seed % 3]
    noise = (50.0, 500.0)[seed % 2]
    lines = to_lines(SyntheticWorker(pid=1, seed=seed, blocks_noise=noise).run(requests)
                     + SyntheticWorker(pid=2, seed=100 + seed, blocks_noise=noise).run(requests))
    report = analyze_lines(lines)
    assert report.verdict == "no_leak", report.reason
    # RSS did rise (high-water marks), which an RSS least-squares fit would call a leak.
    assert all(w.rss_end_bytes is not None and w.rss_start_bytes is not None
               and w.rss_end_bytes > w.rss_start_bytes for w in report.workers)


def test_cache_that_fills_then_stops_is_no_leak() -> None:
    report = analyze_lines(to_lines(SyntheticWorker(seed=3).run(1000, cache_fill(500))))
    assert report.verdict == "no_leak"
    assert "stopped" in report.reason


def test_one_large_temporary_allocation_is_no_leak() -> None:
    worker = SyntheticWorker(seed=4)
    records = worker.run(300)
    # 1.6 M blocks for one request, freed by the next; RSS keeps the high-water mark.
    records.append(worker.request(transient_blocks=1_600_000, extra_bytes=100 * MIB))
    records += worker.run(300)
    report = analyze_lines(to_lines(records))
    assert report.verdict == "no_leak", report.reason


def test_lazy_imports_in_the_first_requests_are_warm_up() -> None:
    report = analyze_lines(to_lines(SyntheticWorker(seed=5).run(400, lazy_imports())))
    assert report.verdict == "no_leak", report.reason


def test_too_few_requests_is_inconclusive_and_says_how_many_more() -> None:
    report = analyze_lines(to_lines(SyntheticWorker(seed=6).run(50, linear_leak(10_240))))
    assert report.verdict == "inconclusive"
    needed = AnalysisConfig().requests_needed()
    assert f"run about {needed - 50} more requests" in report.reason
    assert report.workers[0].verdict == "inconclusive"


def test_no_lines_at_all_is_inconclusive() -> None:
    report = analyze_lines(["not a log line", '{"broken": '])
    assert report.verdict == "inconclusive"
    assert "no memwarden request lines" in report.reason
    assert report.input.malformed_lines == 1


def test_growth_only_late_in_the_run_is_inconclusive_not_leak() -> None:
    worker = SyntheticWorker(seed=7)
    records = worker.run(600) + worker.run(400, linear_leak(10_240))
    report = analyze_lines(to_lines(records))
    assert report.verdict == "inconclusive"
    assert "late" in report.reason


def test_growing_fd_count_is_a_leak_even_with_a_flat_heap() -> None:
    routes = (Route("GET", "/a"), Route("POST", "/loop", census_per_call={"fds": 3}))
    report = analyze_lines(to_lines(SyntheticWorker(seed=8, routes=routes).run(400)))
    assert report.verdict == "leak"
    assert report.reason.count("fds grows") == 1


def test_growing_session_count_alone_does_not_decide() -> None:
    """Sessions follow traffic (new users); they are a suspect, not a verdict."""
    routes = (Route("GET", "/a"), Route("POST", "/login", census_per_call={"sessions": 1}))
    report = analyze_lines(to_lines(SyntheticWorker(seed=9, routes=routes).run(600)))
    assert report.verdict == "no_leak"
    assert [s.name for s in report.suspects if s.kind == "resource"] == ["sessions"]




def _rss_records(per_request: float, requests: int, with_blocks: bool) -> list[RequestRecord]:
    out = []
    for seq in range(1, requests + 1):
        rss = 80 * MIB + per_request * seq + (seq * 7919 % 5) * 4096
        out.append(RequestRecord(pid=1, seq=seq, route="/x", rss_bytes=rss,
                                 blocks=130_000.0 + (seq * 31 % 11) if with_blocks else None))
    return out


def test_rss_alone_needs_a_large_rise_to_call_a_leak() -> None:
    config = AnalysisConfig()
    small = split_lives(_rss_records(8 * 1024, 600, with_blocks=False)).lives[0]
    big = split_lives(_rss_records(100 * 1024, 600, with_blocks=False)).lives[0]
    small_verdict = assess_life(small, config)
    assert small_verdict.verdict == "inconclusive"
    assert "RSS alone" in small_verdict.reason
    assert assess_life(big, config).verdict == "leak"


def test_rss_climbing_while_blocks_stay_flat_is_native_memory() -> None:
    life = split_lives(_rss_records(100 * 1024, 600, with_blocks=True)).lives[0]
    assessment = assess_life(life, AnalysisConfig())
    assert assessment.verdict == "leak"
    assert "outside the Python allocator" in assessment.reason


def test_config_is_validated() -> None:
    with pytest.raises(ValueError):
        AnalysisConfig(min_blocks_per_request=0)
    with pytest.raises(ValueError):
        AnalysisConfig(warmup_fraction=0.9)
    assert AnalysisConfig().requests_needed() == 140


def _with_census(records: list[dict[str, object]], fds: Callable[[int], float]) -> list[str]:
    for index, record in enumerate(records):
        census = record.get("census")
        if isinstance(census, dict):
            census["fds"] = fds(index)
    return to_lines(records)


def _wandering(rng: random.Random) -> Callable[[int], float]:
    return lambda _index: 14 + rng.randint(0, 12)


@pytest.mark.parametrize("census_every", [10, 100])
def test_wandering_fd_count_never_decides(census_every: int) -> None:
    """Keep-alive connections come and go: the count wanders without a trend."""
    for seed in range(8):
        worker = SyntheticWorker(seed=seed, census_every=census_every)
        lines = _with_census(worker.run(1000), _wandering(random.Random(seed)))
        report = analyze_lines(lines)
        assert report.verdict == "no_leak", report.reason


def test_sparse_census_still_catches_a_steady_fd_leak() -> None:
    worker = SyntheticWorker(seed=12, census_every=100)
    lines = _with_census(worker.run(1000), lambda i: 14 + i // 3)
    report = analyze_lines(lines)
    assert report.verdict == "leak"
    assert "fds grows" in report.reason


def test_leak_that_drops_back_at_the_end_is_not_called_a_plateau() -> None:
    """A cleared cache late in a leaking run: the heap fell, but the leak is not over."""
    worker = SyntheticWorker(seed=13)
    records = worker.run(700, linear_leak(10_240))
    records.append(worker.request(extra_blocks=-0.8 * worker.kept_blocks))
    records += worker.run(100, linear_leak(10_240))
    report = analyze_lines(to_lines(records))
    assert report.verdict == "inconclusive", report.reason
    assert "fell back in the last window" in report.reason
