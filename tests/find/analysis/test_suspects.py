"""Suspects: the leaking route first, resources with the route they follow, sites, types."""

from __future__ import annotations

import json
import random

import pytest

from memwarden.find.analysis import analyze_lines

from .synthetic import Route, SyntheticWorker, allocation_line, linear_leak, to_lines


def test_slow_leak_on_one_route_of_three_ranks_that_route_first() -> None:
    routes = (Route("GET", "/items/{id}"), Route("POST", "/chat", leak_bytes=5120),
              Route("GET", "/health"))
    lines = to_lines(SyntheticWorker(pid=1, seed=1, routes=routes).run(1500)
                     + SyntheticWorker(pid=2, seed=2, routes=routes).run(1500))
    report = analyze_lines(lines)
    assert report.verdict == "leak", report.reason
    top = report.suspects[0]
    assert (top.kind, top.name) == ("route", "POST /chat")
    assert top.per_request == pytest.approx(80.0, rel=0.1)  # 5 KiB = 80 blocks per call
    assert top.confidence > 0.9
    assert "POST /chat adds" in top.evidence
    # The routes that do not leak are not named.
    assert [s.name for s in report.suspects if s.kind == "route"] == ["POST /chat"]


def test_leak_in_every_route_points_at_shared_code() -> None:
    report = analyze_lines(to_lines(SyntheticWorker(seed=3).run(400, linear_leak(10_240))))
    top = report.suspects[0]
    assert (top.kind, top.name) == ("route", "(every route)")
    assert "every request runs" in top.evidence
    assert all(s.confidence < top.confidence for s in report.suspects[1:])


def test_slow_leak_is_inconclusive_until_it_outgrows_uncollected_garbage() -> None:
    """A route leak too small to rule out garbage yet still names its route, weakly."""
    routes = (Route("GET", "/items/{id}"), Route("POST", "/chat", leak_bytes=5120),
              Route("GET", "/health"))
    report = analyze_lines(to_lines(SyntheticWorker(seed=3, routes=routes).run(400)))
    assert report.verdict == "inconclusive"
    assert "garbage awaiting a full collection" in report.reason
    top = report.suspects[0]
    assert top.name == "POST /chat" and 0.3 < top.confidence <= 0.6


def test_no_route_suspects_without_growth() -> None:
    routes = (Route("GET", "/a"), Route("POST", "/b"))
    report = analyze_lines(to_lines(SyntheticWorker(seed=4, routes=routes).run(500)))
    assert report.verdict == "no_leak"
    assert [s for s in report.suspects if s.kind == "route"] == []


def test_fd_growth_on_one_route_names_fds_and_the_route() -> None:
    routes = (Route("GET", "/a"), Route("POST", "/run-async", census_per_call={"fds": 3}),
              Route("GET", "/b"))
    report = analyze_lines(to_lines(SyntheticWorker(seed=5, routes=routes).run(600)))
    fds = next(s for s in report.suspects if s.name == "fds")
    assert fds.kind == "resource"
    assert fds.per_request == pytest.approx(1.0, rel=0.25)  # 3 per call, a third of the calls
    assert fds.bytes_per_request is None
    assert "follows POST /run-async (+3.0 per call)" in fds.evidence
    assert fds.confidence > 0.9
    assert report.suspects[0].name == "fds"


def test_child_processes_carry_their_pss_as_bytes() -> None:
    per_call = {"children": 2, "children_pss_bytes": 75 * 1024 * 1024,
                "playwright.contexts": 1}
    routes = (Route("GET", "/a"), Route("POST", "/browse", census_per_call=per_call))
    report = analyze_lines(to_lines(SyntheticWorker(seed=6, routes=routes).run(400)))
    by_name = {s.name: s for s in report.suspects}
    assert "children_pss_bytes" not in by_name  # folded into "children"
    assert by_name["children"].bytes_per_request == pytest.approx(75 * 1024 * 1024 / 2,
                                                                  rel=0.25)
    assert by_name["playwright.contexts"].bytes_per_request is not None
    assert report.verdict == "leak"


def test_growing_gc_type_becomes_a_type_suspect() -> None:
    routes = (Route("GET", "/a"), Route("POST", "/remember", census_per_call={"gc.dict": 40}))
    worker = SyntheticWorker(seed=7, routes=routes)
    worker.census["gc.dict"] = 50_000
    report = analyze_lines(to_lines(worker.run(500)))
    types = [s for s in report.suspects if s.kind == "type"]
    assert [s.name for s in types] == ["dict"]
    assert types[0].per_request == pytest.approx(20.0, rel=0.25)


def test_allocation_site_that_keeps_growing_is_named_per_request() -> None:
    worker = SyntheticWorker(pid=11, seed=8)
    lines = to_lines(worker.run(300, linear_leak(4096)))
    for k in range(1, 6):
        lines.append(json.dumps(allocation_line(11, 50 * k, 50, [
            ("api/agent.py:88", 50 * 4096, 50), ("json/decoder.py:353", (-1) ** k * 9000, 3)])))
    report = analyze_lines(lines)
    sites = [s for s in report.suspects if s.kind == "allocation"]
    assert [s.name for s in sites] == ["api/agent.py:88"]
    assert sites[0].bytes_per_request == 4096
    assert sites[0].per_request == pytest.approx(1.0)
    assert "5 of 5 tracemalloc windows" in sites[0].evidence


def test_suspects_are_ranked_by_confidence() -> None:
    routes = (Route("GET", "/a"), Route("POST", "/chat", leak_bytes=20_000,
                                        census_per_call={"fds": 1}))
    report = analyze_lines(to_lines(SyntheticWorker(seed=9, routes=routes).run(500)))
    confidences = [s.confidence for s in report.suspects]
    assert confidences == sorted(confidences, reverse=True)
    assert {s.name for s in report.suspects[:2]} == {"POST /chat", "fds"}


def test_route_ranking_survives_concurrency_noise() -> None:
    """Threaded workers: each delta also holds part of overlapping requests' churn."""
    routes = (Route("GET", "/a"), Route("POST", "/chat", leak_bytes=20_000), Route("GET", "/b"))
    records = SyntheticWorker(seed=10, routes=routes).run(600)
    rng = random.Random(10)
    for record in records:
        overlap = rng.choice([0.0, 0.5, 1.0])  # share of a neighbour's leak seen in this window
        record["blocks_delta"] += round(overlap * 312 + rng.uniform(-2000, 2000))
        del record["blocks"]  # summed deltas only: the noisiest case
    report = analyze_lines(to_lines(records))
    routes_named = [s.name for s in report.suspects if s.kind == "route"]
    assert routes_named[0] == "POST /chat"
    assert report.suspects[0].name == "POST /chat"
