"""End to end: PID reuse, gzip files, stdin-like streams, and hostile input."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from memwarden.find.analysis import analyze_lines, analyze_paths

from .synthetic import SyntheticWorker, linear_leak, recycle_line, to_lines


def test_pid_reuse_after_recycle_gives_two_lives_judged_apart() -> None:
    first = SyntheticWorker(pid=77, seed=1).run(400, linear_leak(10_240))
    second = SyntheticWorker(pid=77, seed=2).run(400)  # same PID, new process, no leak
    lines = [*to_lines(first), json.dumps(recycle_line(77, "hard_limit", 400)),
             *to_lines(second)]
    report = analyze_lines(lines)
    assert [(w.pid, w.life, w.requests, w.verdict) for w in report.workers] == [
        (77, 1, 400, "leak"), (77, 2, 400, "no_leak")]
    assert report.verdict == "leak"
    assert report.workers[0].ended_by == "recycled (hard_limit)"
    # Each life starts its own block baseline.
    assert [s.points[0].blocks for s in report.series] == [0, 0]


def test_pid_reuse_without_a_recycle_line_is_found_from_seq() -> None:
    lines = to_lines(SyntheticWorker(pid=5, seed=3).run(300)
                     + SyntheticWorker(pid=5, seed=4).run(300))
    report = analyze_lines(lines)
    assert [(w.life, w.first_seq, w.last_seq) for w in report.workers] == [(1, 1, 300),
                                                                           (2, 1, 300)]


def test_gzip_and_plain_files_mixed_with_other_lines(tmp_path: Path) -> None:
    worker = SyntheticWorker(seed=5)
    lines = to_lines(worker.run(400, linear_leak(10_240)))
    noise = ['[2026-11-28 01:02:03 +0000] [1] [INFO] Booting worker with pid: 4121',
             '{"logger": "gunicorn.access", "message": "access", "status": 200}']
    plain = tmp_path / "part1.log"
    plain.write_text("\n".join(noise + lines[:200]) + "\n", encoding="utf-8")
    packed = tmp_path / "part2.log.gz"
    packed.write_bytes(gzip.compress(("\n".join(lines[200:] + noise) + "\n").encode()))
    report = analyze_paths([plain, packed])
    assert report.requests == 400
    assert report.input.skipped_lines == 4
    assert report.verdict == "leak"


def test_missing_file_raises_oserror(tmp_path: Path) -> None:
    with pytest.raises(OSError):
        analyze_paths([tmp_path / "nope.log"])


def _assert_sane(lines: list[str | bytes]) -> None:
    report = analyze_lines(lines)
    text = json.dumps(report.to_json_dict(), allow_nan=False)
    json.dumps(report.series_json_dict(), allow_nan=False)
    assert report.verdict in ("leak", "no_leak", "inconclusive")
    assert report.input.lines == len(lines)
    assert text


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4)
    | st.dictionaries(st.text(max_size=10), children, max_size=4),
    max_leaves=12)

FIELDS = ("pid", "seq", "method", "route", "status", "duration_ms", "rss_bytes",
          "rss_delta_bytes", "blocks_delta", "blocks", "census", "pss_bytes")


@settings(max_examples=150, deadline=None, database=None,
          suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.binary(max_size=300), max_size=30))
def test_arbitrary_bytes_never_crash(lines: list[bytes]) -> None:
    _assert_sane(list(lines))


@settings(max_examples=150, deadline=None, database=None,
          suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.fixed_dictionaries({}, optional={f: json_values for f in FIELDS}),
                max_size=30),
       st.lists(json_values, max_size=5))
def test_arbitrary_json_values_in_every_field_never_crash(
        records: list[dict[str, object]], others: list[object]) -> None:
    lines: list[str | bytes] = []
    for record in records:
        record.update({"logger": "memwarden.request", "message": "request"})
        lines.append(json.dumps(record))  # NaN and Infinity included, as Python writes them
    for logger in ("memwarden.tracemalloc", "memwarden.recycle"):
        for value in others:
            lines.append(json.dumps({"logger": logger, "message": "allocation_sites",
                                     "pid": 1, "window_requests": value, "sites": value}))
            lines.append(json.dumps({"logger": logger, "message": "worker_killed",
                                     "pid": value, "signal": value, "oom_kill": value}))
    lines.extend(json.dumps(value) for value in others)
    _assert_sane(lines)


@settings(max_examples=40, deadline=None, database=None,
          suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(st.integers(1, 3), st.integers(0, 400),
                          st.integers(-(2**63), 2**63), st.floats(allow_nan=True),
                          st.integers(-(2**40), 2**40)),
                min_size=150, max_size=400))
def test_extreme_numbers_in_valid_lines_never_crash(
        rows: list[tuple[int, int, int, float, int]]) -> None:
    lines: list[str | bytes] = []
    for pid, seq, rss, blocks, fds in rows:
        lines.append(json.dumps({"logger": "memwarden.request", "message": "request",
                                 "pid": pid, "seq": seq, "route": "/x", "rss_bytes": rss,
                                 "rss_delta_bytes": rss, "blocks": blocks,
                                 "blocks_delta": blocks, "census": {"fds": fds}}))
    _assert_sane(lines)


def test_huge_values_are_rejected_not_propagated() -> None:
    line = json.dumps({"logger": "memwarden.request", "message": "request", "pid": 1,
                       "seq": 1, "rss_bytes": 10**30, "blocks": 1e308})
    report = analyze_lines([line] * 3)
    assert report.input.invalid_fields == 6
    assert report.workers[0].rss_start_bytes is None
    # The same seq three times is three processes that reused PID 1.
    assert [w.life for w in report.workers] == [1, 2, 3]
