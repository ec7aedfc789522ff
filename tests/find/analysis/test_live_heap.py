"""Verdicts from the live heap after a collection: fast on leaks, silent on the rest.

``blocks_collected`` (a census that collected first) and
``blocks_after_full_gc`` (at CPython's own full collections) carry no
garbage, so the analysis needs no garbage allowance when they are there.
"""

from __future__ import annotations

import json
import random

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from memwarden.find.analysis import AnalysisConfig, analyze_lines
from memwarden.find.analysis.fit import fit_routes

from .synthetic import (
    MIB,
    Route,
    SyntheticWorker,
    cache_fill,
    lazy_imports,
    linear_leak,
    random_key_cache,
    to_lines,
)


def _exact(seed: int, **kw: object) -> SyntheticWorker:
    return SyntheticWorker(seed=seed, exact_census=True, census_every=5, **kw)  # type: ignore[arg-type]


@pytest.mark.parametrize(("leak_bytes", "requests"),
                         [(1024, 250), (10 * 1024, 150), (100 * 1024, 150)])
def test_leak_is_found_fast(leak_bytes: int, requests: int) -> None:
    """No garbage to allow for: 10 KB/request is a leak at 150 requests, 1 KB (16
    blocks) once it outgrows warm-up."""
    report = analyze_lines(to_lines(_exact(1).run(requests, linear_leak(leak_bytes))))
    assert report.verdict == "leak", report.reason
    assert "live heap" in report.reason and "in every window" in report.reason
    (worker,) = report.workers
    assert worker.heap_signal == "blocks_collected"
    assert worker.blocks_per_request == pytest.approx(leak_bytes / 64, rel=0.1)


@pytest.mark.parametrize("seed", range(16))
def test_clean_runs_never_read_as_leak(seed: int) -> None:
    """Warm-up that outlasts the warm-up window, requests in flight at the census
    (up to 1,600 blocks under threads), RSS high-water steps: no leak, and no
    "inconclusive" either."""
    requests = (150, 300, 600, 1200)[seed % 4]
    inflight = (50.0, 1600.0)[seed % 2]
    lines = to_lines(_exact(seed, pid=1, inflight_blocks=inflight).run(requests)
                     + _exact(100 + seed, pid=2, inflight_blocks=inflight).run(requests))
    report = analyze_lines(lines)
    assert report.verdict == "no_leak", report.reason


def test_warm_up_growth_under_the_floor_is_not_a_leak() -> None:
    """A clean app's live heap rises ~1 block/request at first: under the floor."""
    worker = _exact(2, warmup_blocks=400.0, warmup_span=300.0, inflight_blocks=5.0)
    report = analyze_lines(to_lines(worker.run(300)))
    assert report.verdict == "no_leak", report.reason


def test_large_objects_leak_in_few_blocks_but_rss_follows() -> None:
    """A 64 KiB buffer per request is one block: the heap rises 1/request, RSS 64 KiB."""
    worker = _exact(3)
    report = analyze_lines(to_lines(worker.run(300, lambda _i: (1.0, 64 * 1024.0))))
    assert report.verdict == "leak", report.reason
    assert "large objects" in report.reason


def test_one_block_per_request_is_a_leak_only_once_warm_up_is_long_over() -> None:
    """Clean apps add ~1 block/request while they warm up: in a short run that is
    not a leak; in a long one (1000+ requests) it is, once it outgrows warm-up."""
    short = analyze_lines(to_lines(_exact(4).run(300, lambda _i: (1.0, 0.0))))
    assert short.verdict == "no_leak", short.reason
    long = analyze_lines(to_lines(_exact(4).run(3000, lambda _i: (1.0, 0.0))))
    assert long.verdict == "leak", long.reason


def test_lazy_imports_after_warm_up_are_steps_not_a_leak() -> None:
    worker = _exact(5)
    records = worker.run(60)
    records += worker.run(5, lazy_imports(first=5, blocks=20_000.0))
    records += worker.run(100)
    records += worker.run(2, lazy_imports(first=2, blocks=8_000.0))
    records += worker.run(150)
    report = analyze_lines(to_lines(records))
    assert report.verdict == "no_leak", report.reason


def test_cache_that_fills_and_stops_is_no_leak() -> None:
    report = analyze_lines(to_lines(_exact(6).run(400, cache_fill(120, 40.0))))
    assert report.verdict == "no_leak", report.reason
    assert "stopped" in report.reason


def test_too_short_says_how_many_more_requests() -> None:
    report = analyze_lines(to_lines(_exact(7).run(80, linear_leak(10_240))))
    assert report.verdict == "inconclusive"
    assert "census points" in report.reason and "more requests" in report.reason
    config = AnalysisConfig()
    assert report.workers[0].requests < config.requests_needed(config.exact_min_requests)


def test_a_sparse_collecting_census_decides_through_its_full_collections() -> None:
    """A census every 20 requests has too few points for the window test, but each
    one is a full collection: the leak shows in the live heap after each."""
    worker = SyntheticWorker(seed=7, exact_census=True, census_every=20)
    report = analyze_lines(to_lines(worker.run(200, linear_leak(10_240))))
    assert report.verdict == "leak", report.reason
    assert report.workers[0].heap_signal == "blocks_after_full_gc"


def test_full_collections_decide_when_the_census_does_not_collect() -> None:
    """The live heap at each of CPython's full collections: rising at each is a leak."""
    leak = SyntheticWorker(seed=8, census_every=10, full_gc_every=150)
    report = analyze_lines(to_lines(leak.run(1000, linear_leak(2048))))
    assert report.verdict == "leak", report.reason
    assert report.workers[0].heap_signal == "blocks_after_full_gc"
    assert "after each full collection" in report.reason


def test_full_collections_clear_a_garbage_ramp() -> None:
    """Blocks ramp between full collections (garbage in the oldest generation),
    but the live heap after each collection stays put: not a leak."""
    worker = SyntheticWorker(seed=9, census_every=10, full_gc_every=150)
    records = worker.run(1000, lambda i: (-700.0 if i % 90 == 89 else 12.0, 0.0))
    # The ramp is garbage: the live heap does not carry it.
    for record in records:
        census = record.get("census")
        if isinstance(census, dict) and "blocks_after_full_gc" in census:
            census["blocks_after_full_gc"] = 130_000 + (record["seq"] % 7)  # type: ignore[operator]
    report = analyze_lines(to_lines(records))
    assert report.verdict == "no_leak", report.reason
    assert "does not grow steadily" in report.reason


def test_slow_leak_on_one_route_of_three_is_named_from_the_live_heap() -> None:
    """About 1 KB per call on one route of three: the live heap fit names it."""
    routes = (Route("GET", "/items/{id}"), Route("POST", "/events", leak_bytes=1024),
              Route("GET", "/search"))
    report = analyze_lines(to_lines(_exact(10, routes=routes).run(600)))
    assert report.verdict == "leak", report.reason
    top = next(s for s in report.suspects if s.kind == "route")
    assert top.name == "POST /events"
    assert top.per_request == pytest.approx(16.0, rel=0.15)
    assert "least squares of the live heap" in top.evidence


def test_error_path_leak_is_called_out() -> None:
    worker = _exact(11, routes=(Route("POST", "/orders"), Route("GET", "/orders", weight=2)))
    records = []
    for record in worker.run(400):
        if record["route"] == "/orders" and record["method"] == "POST" \
                and worker.rng.random() < 0.25:
            record["status"] = 500
        records.append(record)
    # Rebuild the live heap so that only the failed POSTs keep blocks.
    kept = 0
    for record in records:
        if record["status"] == 500:
            kept += 200
        census = record.get("census")
        if isinstance(census, dict):
            census["blocks_collected"] = 130_000 + kept + (record["seq"] % 5)  # type: ignore[operator]
    report = analyze_lines(to_lines(records))
    assert report.verdict == "leak", report.reason
    top = next(s for s in report.suspects if s.kind == "route")
    assert top.name == "POST /orders"
    assert "the leak is on the error path" in top.evidence


def test_route_keeping_large_buffers_is_named_by_rss() -> None:
    routes = (Route("GET", "/a"), Route("POST", "/upload"), Route("GET", "/b"))
    worker = _exact(12, routes=routes)
    records = []
    for _ in range(300):
        route = worker.rng.choice(routes)
        big = route.path == "/upload"
        records.append(worker.request(route, extra_blocks=1.0 if big else 0.0,
                                      extra_bytes=256 * 1024.0 if big else 0.0))
    report = analyze_lines(to_lines(records))
    assert report.verdict == "leak", report.reason
    top = next(s for s in report.suspects if s.kind == "route")
    assert top.name == "POST /upload"
    assert "grows RSS" in top.evidence


def test_resource_route_and_its_holder_rank_first() -> None:
    """An unclosed loop per call: loops and fds both grow; the loop is named first,
    and the route comes from the census fit even with a flat heap."""
    per_call = {"asyncio.loops": 1, "fds": 3, "asyncio.loops_alive": 1}
    routes = (Route("GET", "/a", weight=2), Route("POST", "/fetch", census_per_call=per_call))
    report = analyze_lines(to_lines(_exact(13, routes=routes).run(300)))
    assert report.verdict == "leak", report.reason
    resources = [s for s in report.suspects if s.kind == "resource"]
    assert resources[0].name == "asyncio.loops"
    fds = next(s for s in resources if s.name == "fds")
    assert "probably held by asyncio.loops" in fds.evidence
    top_route = next(s for s in report.suspects if s.kind == "route")
    assert top_route.name == "POST /fetch"
    assert "asyncio.loops" in top_route.evidence


def test_route_fit_gives_standard_errors() -> None:
    from collections import Counter

    rng = random.Random(1)
    intervals = []
    for _ in range(80):
        calls = Counter({"GET /a": rng.randint(0, 6), "POST /b": rng.randint(0, 3)})
        intervals.append((calls, 5.0 * calls["POST /b"] + rng.gauss(0, 2)))
    fit = fit_routes(intervals)
    assert fit is not None
    assert fit.per_call["POST /b"] == pytest.approx(5.0, abs=0.4)
    assert 0 < fit.se["POST /b"] < 0.4 and fit.t("POST /b") > 10
    assert abs(fit.t("GET /a")) < 4


def test_heap_signal_is_in_report_json() -> None:
    report = analyze_lines(to_lines(_exact(14).run(200)))
    worker = report.to_json_dict()["workers"][0]
    assert worker["heap_signal"] == "blocks_collected"
    json.dumps(report.to_json_dict(), allow_nan=False)


def test_rss_only_leak_with_a_flat_live_heap_is_native_memory() -> None:
    worker = _exact(15)
    report = analyze_lines(to_lines(worker.run(600, lambda _i: (0.0, 128 * 1024.0))))
    assert report.verdict == "leak", report.reason
    assert "outside the Python allocator" in report.reason
    assert report.workers[0].rss_end_bytes is not None
    assert report.workers[0].rss_end_bytes > 80 * MIB + 60 * MIB


def test_slow_growth_short_of_warm_up_is_inconclusive_until_it_outgrows_it() -> None:
    """3 blocks/request: steady, but warm-up and small caches reach +2,000 blocks too;
    a longer run decides."""
    short = analyze_lines(to_lines(_exact(16).run(150, lambda _i: (3.0, 192.0))))
    assert short.verdict == "inconclusive", short.reason
    assert "what warm-up" in short.reason and "more requests in this worker" in short.reason
    long = analyze_lines(to_lines(_exact(16).run(1000, lambda _i: (3.0, 192.0))))
    assert long.verdict == "leak", long.reason


@pytest.mark.parametrize("seed", range(5))
def test_a_cache_filling_from_random_keys_is_never_called_a_leak(seed: int) -> None:
    """15-30 keys of ~45 blocks (up to 1% of the heap) hit by a quarter of the
    requests: the live heap climbs for hundreds of requests, ever more slowly. No
    prefix of the run reads as a leak; once the cache has filled, "no_leak".

    (A bounded cache that is still filling when the run ends is growth like any
    other: only its stop tells it from a leak, so audits run past it.)"""
    rng = random.Random(seed)
    keys = rng.randint(15, 30)
    worker = _exact(seed, warmup_blocks=300.0)
    records = worker.run(1200, random_key_cache(keys, 0.25, 45.0, seed))
    lines = to_lines(records)
    for prefix in range(150, 1201, 75):
        report = analyze_lines(lines[:prefix])
        assert report.verdict != "leak", (prefix, report.reason)
    assert analyze_lines(lines).verdict == "no_leak"


@settings(max_examples=40, deadline=None, database=None,
          suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(st.integers(1, 2), st.integers(1, 400),
                          st.one_of(st.integers(-(2**62), 2**62), st.floats(allow_nan=True)),
                          st.integers(-5, 10**6), st.integers(-(2**40), 2**40)),
                min_size=150, max_size=400))
def test_extreme_live_heap_values_never_crash(
        rows: list[tuple[int, int, float, int, int]]) -> None:
    lines = []
    for pid, seq, collected, count, after in rows:
        lines.append(json.dumps({
            "logger": "memwarden.request", "message": "request", "pid": pid, "seq": seq,
            "route": "/x", "rss_bytes": 10**8, "blocks": 10**5,
            "census": {"blocks_collected": collected, "gc_full_collections": count,
                       "blocks_after_full_gc": after}}))
    report = analyze_lines(lines)
    json.dumps(report.to_json_dict(), allow_nan=False)
    assert report.verdict in ("leak", "no_leak", "inconclusive")
