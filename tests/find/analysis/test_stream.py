"""One pass in bounded memory: long lives thinned, many lives capped, partials merged."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from memwarden.find.analysis import analyze_lines, analyze_paths
from memwarden.find.analysis.life_buffer import LIFE_POINTS
from memwarden.find.analysis.stream import MAX_WORKERS, StreamAnalysis
from memwarden.find.analysis.text import render_text

from .parts import differences
from .synthetic import (
    DEFAULT_ROUTES,
    Route,
    SyntheticWorker,
    linear_leak,
    recycle_line,
    to_lines,
)


def _write(path: Path, records: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    return path


def test_a_long_life_is_judged_on_a_bounded_thinned_series() -> None:
    leaking = SyntheticWorker(pid=10, seed=3).run(40_000, linear_leak(3000.0))
    clean = SyntheticWorker(pid=11, seed=4).run(40_000)
    stream = StreamAnalysis()
    for line in to_lines(leaking + clean):
        stream.add(line)
    life_a, _clean_life = stream.open.values()
    assert LIFE_POINTS // 2 <= len(life_a.seqs) < LIFE_POINTS
    assert life_a.requests == 40_000 and life_a.thinned
    from memwarden.find.analysis.analyze import report_of
    report = report_of(stream)
    verdicts = {w.pid: w.verdict for w in report.workers}
    assert verdicts == {10: "leak", 11: "no_leak"}, [w.reason for w in report.workers]
    assert [w.requests for w in report.workers] == [40_000, 40_000]
    assert report.requests == 80_000
    # The route table counts every request, not the kept ones.
    assert sum(r.count for r in report.routes) == 80_000


def test_thinning_keeps_the_sum_of_block_deltas() -> None:
    worker = SyntheticWorker(pid=12, seed=5, log_absolute_blocks=False)
    records = worker.run(20_000, linear_leak(2000.0))
    stream = StreamAnalysis()
    for line in to_lines(records):
        stream.add(line)
    (life,) = stream.open.values()
    life.flush()  # the latest rows wait to be moved into the columns
    kept = sum(v for v in life.cols[4] if v == v)
    assert kept == sum(r["blocks_delta"] for r in records)


def test_lives_beyond_the_cap_are_counted_not_listed() -> None:
    records: list[dict[str, Any]] = []
    lives = MAX_WORKERS + 40
    for n in range(lives):
        pid = 20_000 + n
        leaks = n == lives - 1
        worker = SyntheticWorker(pid=pid, seed=n, census_every=50)
        records += worker.run(600 if leaks else 150, linear_leak(10_000.0) if leaks else None)
        records.append(recycle_line(pid, requests=150))
    report = analyze_lines(to_lines(records))
    data = report.to_json_dict()
    assert len(report.workers) == MAX_WORKERS
    assert data["other_lives"]["count"] == 40
    assert data["other_lives"]["requests"] == 40 * 150
    assert report.requests == (lives - 1) * 150 + 600
    # The one leaking life ranks first, so it is listed, and it decides the verdict.
    assert report.verdict == "leak"
    assert f"1 of {lives} worker lives leak" in report.reason
    assert any(w.pid == 20_000 + lives - 1 and w.verdict == "leak" for w in report.workers)
    # Lives are listed in the order they began.
    pids = [w.pid for w in report.workers]
    assert pids == sorted(pids)


def _many_lives() -> list[bytes]:
    """Lives that end all along the log (recycles, pids reused, silent pids swept),
    some leaking, more than the report lists."""
    records: list[dict[str, Any]] = []
    for n in range(MAX_WORKERS + 30):
        pid = 60_000 + n % 97  # reused: a new life under an old pid
        leaks = n % 7 == 3
        worker = SyntheticWorker(pid=pid, seed=n, census_every=40)
        records += worker.run(320 if leaks else 120 + n % 50,
                              linear_leak(8_000.0) if leaks else None)
        records.append(recycle_line(pid, requests=120))
    return [line.encode() for line in to_lines(records)]


def _report_of(lines: list[bytes], judges: int) -> tuple[dict[str, Any], StreamAnalysis]:
    from memwarden.find.analysis.analyze import report_of

    stream = StreamAnalysis(judges=judges)
    for line in lines:
        stream.add(line)
    report = report_of(stream)
    return {**report.to_json_dict(), **report.series_json_dict()}, stream


def test_lives_judged_by_other_processes_give_the_same_report() -> None:
    lines = _many_lives()
    here, _ = _report_of(lines, judges=0)
    elsewhere, stream = _report_of(lines, judges=2)
    assert elsewhere == here  # exactly: the same floats, lives, order and series
    assert here["verdict"] == "leak" and here["other_lives"]["count"] > 0
    assert stream.judges is None and stream.judged_seconds > 0.0


def test_a_judge_that_dies_leaves_its_lives_to_the_reading_process() -> None:
    import os
    import signal

    lines = _many_lives()
    here, _ = _report_of(lines, judges=0)
    stream = StreamAnalysis(judges=1)
    assert stream.judges is not None and stream.judges.pool is not None
    for number, line in enumerate(lines):
        if number == len(lines) // 3:
            for pid in list(stream.judges.pool._processes):
                os.kill(pid, signal.SIGKILL)
        stream.add(line)
    from memwarden.find.analysis.analyze import report_of

    judges = stream.judges
    report = report_of(stream)
    assert {**report.to_json_dict(), **report.series_json_dict()} == here
    assert judges.judged_here > 0


def test_a_silent_pid_is_judged_before_the_end_and_memory_stays_bounded() -> None:
    stream = StreamAnalysis()
    for n in range(60):
        pid = 30_000 + n
        records = SyntheticWorker(pid=pid, seed=n, census_every=50).run(1500)
        records.append(recycle_line(pid, requests=1500))
        for line in to_lines(records):
            stream.add(line)
    # Each ended life goes once 20,000 lines passed after it (swept every 65,536 requests).
    assert len(stream.open) <= 31  # 60 without the sweep
    assert stream.tally.total + len(stream.open) == 60


def test_partials_merge_to_one_pass(tmp_path: Path) -> None:
    hosts = []
    for host in range(3):
        records: list[dict[str, Any]] = []
        for slot in range(2):
            pid = 40_000 + 10 * host + slot
            leak = linear_leak(10_000.0) if (host, slot) == (1, 0) else None
            worker = SyntheticWorker(pid=pid, seed=host * 10 + slot, census_every=20,
                                     routes=(*DEFAULT_ROUTES, Route("GET", f"/h{host}", 1.0)))
            records += worker.run(600, leak)
            records.append(recycle_line(pid, requests=600))
        hosts.append(_write(tmp_path / f"host{host}.log", records))
    assert differences(hosts, jobs=2) == {"merge": [], "jobs": []}
    assert analyze_paths(hosts).verdict == "leak"


def test_death_in_flight_lines_make_a_section_and_suspects() -> None:
    records: list[dict[str, Any]] = list(SyntheticWorker(pid=50, seed=1).run(200))
    for n in range(130):
        route = "/export" if n % 3 else "/chat"
        records.append({
            "timestamp": f"2026-11-28T03:{n // 60:02d}:{n % 60:02d}.000Z", "level": "WARNING",
            "logger": "memwarden.recycle", "message": "death_in_flight", "pid": 1000 + n,
            "cause": "oom_kill" if n % 2 else "timeout", "request_id": f"d{n}",
            "method": "POST", "route": route, "seconds": 1.5 + n,
            "footprint_start_bytes": 100_000_000, "footprint_last_bytes": 300_000_000})
    records.append({"logger": "memwarden.recycle", "message": "death_in_flight",
                    "pid": 7, "cause": "signal", "signal": "SIGKILL", "method": "GET",
                    "route": "/once", "seconds": 0.2})
    report = analyze_lines(to_lines(records))
    data = report.to_json_dict()
    assert data["input"]["death_lines"] == 131
    assert data["deaths_total"] == 131
    assert len(data["deaths"]) == 100
    # Newest first: by timestamp; the line without one sorts last.
    stamps = [d.get("timestamp", "") for d in data["deaths"]]
    assert stamps == sorted(stamps, reverse=True)
    assert data["deaths"][0]["timestamp"] == "2026-11-28T03:02:09.000Z"
    assert data["deaths"][0]["footprint_last_bytes"] == 300_000_000
    assert data["deaths_by_route"] == {"POST /export": 86, "POST /chat": 44, "GET /once": 1}
    deaths = [s for s in report.suspects if s.kind == "deaths"]
    assert [s.name for s in deaths] == ["POST /export", "POST /chat"]
    assert deaths[0].confidence > deaths[1].confidence > 0.5
    assert deaths[0].bytes_per_request == 200_000_000
    assert "86 of 131 workers that died with a request in flight" in deaths[0].evidence
    # No slope anywhere, and still the route that keeps dying tops the suspects.
    assert report.verdict == "no_leak"
    assert report.suspects[0].name == "POST /export"
    # The summary counts deaths, not "per request".
    assert ("1. deaths POST /export: 86 deaths, +190.7 MiB in the request"
            in render_text(report))


def test_a_death_line_without_a_cause_is_invalid() -> None:
    line = {"logger": "memwarden.recycle", "message": "death_in_flight", "pid": 3,
            "route": "/x"}
    report = analyze_lines([json.dumps(line)])
    assert report.input.invalid_records == 1 and report.deaths_total == 0


def test_files_split_into_consecutive_parts_of_about_equal_size(tmp_path: Path) -> None:
    from memwarden.find.analysis.jobs import split_paths
    paths = []
    for i, size in enumerate([100, 100, 100, 10, 500, 5]):
        path = tmp_path / f"f{i}"
        path.write_bytes(b"x" * size)
        paths.append(path)
    assert split_paths(paths, 1) == [paths]
    assert split_paths(paths, 2) == [paths[:4], paths[4:]]
    assert split_paths(paths[:2], 2) == [[paths[0]], [paths[1]]]
    assert [p for group in split_paths(paths, 8) for p in group] == paths
    assert split_paths(["-", paths[0]], 2) == [["-", paths[0]]]


def test_deaths_reach_the_text_and_the_html_report() -> None:
    from memwarden.find.analysis import render_text
    from memwarden.find.report.html import render_html
    records: list[dict[str, Any]] = list(SyntheticWorker(pid=60, seed=1).run(150))
    for n in range(3):
        records.append({"timestamp": f"2026-11-28T04:00:0{n}.000Z",
                        "logger": "memwarden.recycle", "message": "death_in_flight",
                        "pid": 70 + n, "cause": "oom_kill", "signal": "SIGKILL",
                        "request_id": f"x{n}", "method": "POST", "route": "/<b>render</b>",
                        "seconds": 2.0, "footprint_start_bytes": 10_000_000,
                        "footprint_last_bytes": 60_000_000})
    report = analyze_lines(to_lines(records))
    text = render_text(report)
    assert "Deaths with a request in flight: 3 (POST /<b>render</b> 3)" in text
    assert "2026-11-28T04:00:02.000Z pid 72 oom_kill after 2.0 s" in text
    page = render_html(report)
    assert "<h2>Deaths in flight</h2>" in page
    assert "POST /&lt;b&gt;render&lt;/b&gt;" in page and "<b>render</b>" not in page
    assert "killed by the OOM killer (SIGKILL)" in page
    assert "+47.7 MiB in the request" in page
    quiet = render_html(analyze_lines(to_lines(records[:150])))
    assert "Deaths in flight" not in quiet


def test_the_html_of_many_lives_plots_a_capped_number(tmp_path: Path) -> None:
    from memwarden.find.analysis.stream import MAX_SERIES
    from memwarden.find.report.html import render_html
    records: list[dict[str, Any]] = []
    for n in range(MAX_WORKERS + 100):
        pid = 80_000 + n
        records += SyntheticWorker(pid=pid, seed=n, census_every=25).run(130)
        records.append(recycle_line(pid, requests=130))
    report = analyze_lines(to_lines(records))
    assert len(report.series) == MAX_SERIES
    page = render_html(report)
    assert page.count('class="mw-life"') == MAX_SERIES
    assert "100 more worker lives (13,000 requests" in page
    assert len(page) < 12 * 2**20


def test_msgspec_and_the_json_module_read_every_line_alike(monkeypatch: Any) -> None:
    import memwarden.find.analysis.reader as reader
    import memwarden.find.analysis.stream as stream
    assert stream.decode_request is not None, "the fast extra is part of dev"
    base = SyntheticWorker(pid=90, seed=2, census_every=7).run(400, linear_leak(5000.0))
    odd: list[str] = []
    for i, (field, value) in enumerate([
            ("status", 200.0), ("status", 2.5), ("status", -1), ("status", None),
            ("route", ""), ("route", "/a\x1b[31m"), ("route", "/" + "x" * 400), ("route", 7),
            ("method", ""), ("method", None), ("pid", True), ("pid", 2**70), ("seq", 1.0),
            ("rss_bytes", -5), ("rss_bytes", 2**63), ("rss_bytes", 1e300), ("blocks", "9"),
            ("blocks_delta", -(2**63)), ("duration_ms", None), ("census", {"fds": "x"}),
            ("census", {"": 1, "threads": True}), ("census", None), ("census", [1]),
            ("timestamp", ""), ("timestamp", 5), ("pss_bytes", 4.5)]):
        record = dict(base[i])
        record[field] = value
        odd.append(json.dumps(record))
    raw = dict(base[30])
    odd += [json.dumps(raw).replace('"rss_bytes": ', '"rss_bytes": NaN, "x": ', 1),
            json.dumps(raw).replace('"status": 200', '"status": 1e400', 1),
            "\ufeff" + json.dumps(raw), "  " + json.dumps(raw), json.dumps(raw) + " trailing",
            json.dumps({k: v for k, v in raw.items() if k != "route"} | {"path": "/p"}),
            json.dumps(raw).replace('"pid"', '"pid": 1, "pid"', 1)]
    lines = [*to_lines(base), *odd]
    as_bytes = [line.encode("utf-8", "surrogatepass") + b"\n" for line in lines]
    fast = analyze_lines(as_bytes)
    monkeypatch.setattr(stream, "decode_request", None)
    monkeypatch.setattr(reader, "fast_decode", None)
    slow = analyze_lines(as_bytes)
    assert fast.to_json_dict() == slow.to_json_dict()
    assert fast.series_json_dict() == slow.series_json_dict()
    assert fast.input.invalid_fields >= 15 and fast.input.malformed_lines >= 1


@settings(max_examples=100, deadline=None, derandomize=True)
@given(keys=st.lists(st.tuples(st.integers(0, 3), st.integers(-50, 0), st.integers(0, 99)),
                     max_size=60), limit=st.integers(0, 6))
def test_a_kept_bar_says_what_ranks_and_only_falls(keys: list[tuple[int, int, int]],
                                                   limit: int) -> None:
    from memwarden.find.analysis.outcomes import Kept

    kept: Kept[int] = Kept(limit)
    bars = []
    for n, key in enumerate(keys):
        bar = kept.bar()
        assert kept.ranks(key) == (bar is None or key < bar)
        bars.append(bar)
        kept.add(key, n)
    set_bars = [bar for bar in bars if bar is not None]
    assert set_bars == sorted(set_bars, reverse=True)
