"""The checkpoint decision of an adaptive audit, on reports built from synthetic logs."""

from __future__ import annotations

import math

from find.analysis.synthetic import Effect, SyntheticWorker, linear_leak, to_lines
from memwarden.find.adaptive import MIN_STEP_SHARE, SHARE_MARGIN, next_step
from memwarden.find.analysis import Report, analyze_lines


def _report(requests: int, effect: Effect | None = None, workers: int = 2) -> Report:
    lines: list[str] = []
    for pid in range(1, workers + 1):
        worker = SyntheticWorker(pid=pid, seed=pid, exact_census=True, census_every=10)
        lines += to_lines(worker.run(requests, effect))
    return analyze_lines(lines)


def test_a_leak_stops_the_audit() -> None:
    step = next_step(_report(400, linear_leak(10_240)), 800, 12_000)
    assert step.target is None and step.why == "decided: leak after 800 requests"


def test_no_leak_in_every_worker_stops_the_audit() -> None:
    step = next_step(_report(800), 1600, 12_000)
    assert step.target is None and step.why == "decided: no_leak after 1,600 requests"


def test_a_worker_that_asks_for_more_gets_them_times_the_workers_sharing_the_traffic() -> None:
    report = _report(60)
    asked = max(w.more_requests or 0 for w in report.workers)
    assert report.verdict == "inconclusive" and asked > 0
    step = next_step(report, 120, 12_000)
    more = max(math.ceil(asked * 2 * SHARE_MARGIN), math.ceil(MIN_STEP_SHARE * 120))
    assert step.target == 120 + more
    assert f"a worker asks for {asked:,} more of its own" in step.why


def test_the_request_limit_caps_and_then_ends_the_audit() -> None:
    report = _report(60)
    assert next_step(report, 120, 150).target == 150
    last = next_step(report, 150, 150)
    assert last.target is None and last.why.startswith("still inconclusive at the request limit")
