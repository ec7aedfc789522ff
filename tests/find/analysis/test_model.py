"""report.json is the docs/contracts.md contract, JSON-safe, with the series kept apart."""

from __future__ import annotations

import json

from memwarden.find.analysis import analyze_lines

from .synthetic import SyntheticWorker, linear_leak, recycle_line, to_lines

REPORT_KEYS = ["verdict", "requests", "failed_requests", "workers", "suspects"]
WORKER_KEYS = ["pid", "requests", "rss_start_bytes", "rss_end_bytes",
               "slope_bytes_per_request", "verdict"]
SUSPECT_KEYS = ["kind", "name", "per_request", "bytes_per_request", "confidence", "evidence"]


def _leaky_report_dict() -> dict[str, object]:
    worker = SyntheticWorker(seed=1)
    records = worker.run(400, linear_leak(10_240))
    records[10]["status"] = 502
    lines = [*to_lines(records), json.dumps(recycle_line(4121, "soft_limit", 400))]
    report = analyze_lines(lines)
    return json.loads(json.dumps(report.to_json_dict(), allow_nan=False))  # type: ignore[no-any-return]


def test_report_json_has_the_design_keys_first_and_in_order() -> None:
    data = _leaky_report_dict()
    assert list(data)[:5] == REPORT_KEYS
    assert data["verdict"] == "leak"
    assert data["requests"] == 400 and data["failed_requests"] == 1
    workers = data["workers"]
    assert isinstance(workers, list)
    assert list(workers[0])[:6] == WORKER_KEYS
    assert workers[0]["ended_by"] == "recycled (soft_limit)"
    suspects = data["suspects"]
    assert isinstance(suspects, list) and suspects
    for suspect in suspects:
        assert list(suspect) == SUSPECT_KEYS
        assert suspect["kind"] in ("route", "resource", "allocation", "type")
        assert 0.0 <= suspect["confidence"] <= 1.0
        assert isinstance(suspect["evidence"], str) and "\n" not in suspect["evidence"]
    assert isinstance(data["reason"], str) and data["reason"]
    assert data["malformed_lines"] == 0
    assert "series" not in data


def test_recycle_markers_are_reported() -> None:
    data = _leaky_report_dict()
    recycles = data["recycles"]
    assert isinstance(recycles, list)
    assert recycles[0]["reason"] == "soft_limit" and recycles[0]["seq"] == 400


def test_route_cost_table_covers_every_request() -> None:
    data = _leaky_report_dict()
    routes = data["routes"]
    assert isinstance(routes, list)
    assert sum(route["count"] for route in routes) == 400
    assert sum(route["failed"] for route in routes) == 1
    assert all(route["mean_blocks_delta"] > 100 for route in routes)


def test_series_are_downsampled_and_keep_census_points() -> None:
    worker = SyntheticWorker(seed=2, census_every=3)
    report = analyze_lines(to_lines(worker.run(5000)))
    (life,) = report.series
    assert len(life.points) <= 2000
    assert sum(1 for p in life.points if p.census) >= 900
    assert life.points[0].seq == 1 and life.points[-1].seq == 5000
    assert life.warmup_end_seq == 500
    series = json.loads(json.dumps(report.series_json_dict(), allow_nan=False))
    assert series["series"][0]["points"][0]["blocks"] == 0
