"""The reader skips what is not ours, counts what is broken, and never raises on content."""

from __future__ import annotations

import gzip
import io
import json
import zlib
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from memwarden.find.analysis.reader import MAX_LINE_BYTES, LineParser, ReadCounters, read_path_lines
from memwarden.find.analysis.records import AllocationWindow, LifecycleEvent, RequestRecord


def _request(**fields: object) -> str:
    line = {"logger": "memwarden.request", "message": "request", "pid": 7, "seq": 1,
            "method": "GET", "route": "/x", "status": 200, "rss_bytes": 1000,
            "blocks_delta": 3}
    line.update(fields)
    return json.dumps(line)


def test_request_line_becomes_a_typed_record() -> None:
    parser = LineParser()
    record = parser.parse(_request(census={"fds": 12, "threads": 3}, duration_ms=1.5))
    assert isinstance(record, RequestRecord)
    assert (record.pid, record.seq, record.route_key) == (7, 1, "GET /x")
    assert record.census == {"fds": 12.0, "threads": 3.0}
    assert record.blocks_delta == 3.0 and record.blocks is None
    assert parser.counters.request_lines == 1


def test_other_lines_are_skipped_and_counted() -> None:
    parser = LineParser()
    lines = ["plain text from the app", "", '{"logger": "gunicorn.access", "message": "x"}',
             '{"logger": "memwarden.request", "message": "other"}', "[1, 2]"]
    assert [parser.parse(line) for line in lines] == [None] * 5
    assert parser.counters.skipped_lines == 5
    assert parser.counters.malformed_lines == 0


def test_broken_json_is_malformed_not_fatal() -> None:
    parser = LineParser()
    assert parser.parse('{"logger": "memwarden.request", "pid": ') is None
    assert parser.parse(b'{"\xff\xfe": 1') is None
    # Deep enough to exhaust the recursion limit, and otherwise valid JSON.
    assert parser.parse('{"a": ' + "[" * 100_000 + "]" * 100_000 + "}") is None
    assert parser.counters.malformed_lines == 3


def test_missing_or_wrong_required_fields_drop_the_record() -> None:
    parser = LineParser()
    assert parser.parse(_request(pid="7")) is None
    assert parser.parse(_request(seq=None)) is None
    assert parser.parse(_request(seq=True)) is None  # a bool is not a number here
    assert parser.counters.invalid_records == 3


def test_nan_infinity_and_wrong_types_drop_only_the_field() -> None:
    parser = LineParser()
    text = _request(rss_bytes=1).replace('"rss_bytes": 1', '"rss_bytes": NaN')
    text = text.replace('"blocks_delta": 3', '"blocks_delta": Infinity')
    record = parser.parse(text)
    assert isinstance(record, RequestRecord)
    assert record.rss_bytes is None and record.blocks_delta is None
    record = parser.parse(_request(duration_ms="fast", status=[500], rss_bytes=1e300,
                                   census={"fds": "many", "threads": 2, "": 1}))
    assert isinstance(record, RequestRecord)
    assert record.duration_ms is None and record.status is None and record.rss_bytes is None
    assert record.census == {"threads": 2.0}
    assert parser.counters.invalid_fields == 2 + 3 + 2


def test_control_characters_never_reach_the_terminal() -> None:
    record = LineParser().parse(_request(route="/x\x1b[31m\n"))
    assert isinstance(record, RequestRecord)
    assert "\x1b" not in record.route and "\n" not in record.route


def test_allocation_and_lifecycle_lines() -> None:
    parser = LineParser()
    window = parser.parse(json.dumps({
        "logger": "memwarden.tracemalloc", "message": "allocation_sites", "pid": 7, "seq": 50,
        "window_requests": 10, "sites": [{"site": "api/agent.py:88", "size_diff_bytes": 4096,
                                          "count_diff": 4}, {"site": 5}, "junk"]}))
    assert isinstance(window, AllocationWindow)
    assert [s.site for s in window.sites] == ["api/agent.py:88"]
    killed = parser.parse(json.dumps({"logger": "memwarden.recycle", "message": "worker_killed",
                                      "pid": 7, "signal": "SIGKILL", "oom_kill": True}))
    assert isinstance(killed, LifecycleEvent)
    assert killed.describe() == "killed by SIGKILL (OOM)"
    recycle = parser.parse(json.dumps({"logger": "memwarden.recycle", "message": "recycle",
                                       "pid": 7, "reason": "soft_limit"}))
    assert isinstance(recycle, LifecycleEvent) and recycle.describe() == "recycled (soft_limit)"
    assert parser.counters.allocation_lines == 1 and parser.counters.lifecycle_lines == 2


def test_oversized_line_is_skipped_without_being_kept(tmp_path: Path) -> None:
    path = tmp_path / "big.log"
    with path.open("wb") as f:
        f.write(b'{"x": "' + b"a" * (3 * MAX_LINE_BYTES) + b'"}\n')
        f.write(_request().encode() + b"\n")
    counters = ReadCounters()
    lines = list(read_path_lines(path, counters))
    assert lines[0] is None  # the long line, drained unread
    assert lines[1] is not None and b'"seq": 1' in lines[1]
    assert LineParser().parse("x" * (MAX_LINE_BYTES + 1)) is None


def test_gzip_is_detected_by_magic_bytes_and_truncation_is_counted(tmp_path: Path) -> None:
    body = ("\n".join(_request(seq=i) for i in range(1, 2001)) + "\n").encode()
    whole = tmp_path / "requests.log"  # no .gz suffix: detection is by content
    whole.write_bytes(gzip.compress(body))
    counters = ReadCounters()
    assert sum(1 for _ in read_path_lines(whole, counters)) == 2000
    assert counters.unreadable_inputs == 0
    cut = tmp_path / "cut.gz"
    cut.write_bytes(gzip.compress(body)[: len(gzip.compress(body)) // 2])
    got = list(read_path_lines(cut, counters))
    # Every whole line the truncated stream still holds, and no partial one.
    recoverable = zlib.decompressobj(wbits=31).decompress(cut.read_bytes())
    whole_lines = recoverable.split(b"\n")[:recoverable.count(b"\n")]
    assert 0 < len(whole_lines) < 2000
    assert [line.rstrip(b"\n") for line in got] == whole_lines
    assert counters.unreadable_inputs == 1


def test_bytes_lines_with_a_bom_and_crlf() -> None:
    parser = LineParser()
    record = parser.parse(b"\xef\xbb\xbf" + _request().encode() + b"\r\n")
    assert isinstance(record, RequestRecord)


def test_stream_reading_uses_only_readline() -> None:
    # read_path_lines wraps files; the bounded reader itself only needs readline.
    from memwarden.find.analysis.reader import _bounded_lines

    stream = io.BytesIO(b"a\n" + b"b" * (MAX_LINE_BYTES + 5) + b"\nc")
    assert list(_bounded_lines(stream)) == [b"a\n", None, b"c"]


def test_routes_are_kept_by_request_count_not_by_arrival() -> None:
    """2,000 scanner paths first cannot crowd out the routes that serve the traffic."""
    from memwarden.find.analysis import analyze_lines
    from memwarden.find.analysis.reader import MAX_DISTINCT_ROUTES, OTHER_ROUTES

    scanners = [f"/wp-admin/probe-{i}.php" for i in range(2000)]
    real = {"/chat": 120, "/items/<int:id>": 90, "/search": 60, "/login": 30}
    lines = [_request(seq=seq, route=route, status=404)
             for seq, route in enumerate(scanners, start=1)]
    seq = len(lines)
    for _ in range(max(real.values())):  # interleaved, as traffic is
        for route, calls in real.items():
            if calls > 0:
                seq += 1
                lines.append(_request(seq=seq, route=route))
        real = {route: calls - 1 for route, calls in real.items()}
    counts = {cost.route: cost.count for cost in analyze_lines(lines).routes}
    assert {route: counts.get(f"GET {route}") for route in
            ("/chat", "/items/<int:id>", "/search", "/login")} == {
        "/chat": 120, "/items/<int:id>": 90, "/search": 60, "/login": 30}
    assert len(counts) == MAX_DISTINCT_ROUTES + 1  # the busiest 500, and the rest as one
    kept_scanners = MAX_DISTINCT_ROUTES - 4
    assert counts[OTHER_ROUTES] == len(scanners) - kept_scanners
    assert sum(counts.values()) == seq


def test_route_counts_hold_every_heavy_route_in_bounded_memory() -> None:
    from memwarden.find.analysis.heavy_hitters import RouteCounts

    counts = RouteCounts(20)
    for i in range(5000):
        counts.add(f"/scan/{i}")
        if i % 5 == 0:
            counts.add("/busy")
        if i % 10 == 0:
            counts.add("/steady")
    # 6,500 requests: each route above 6,500 / 20 = 325 of them holds a counter.
    assert len(counts) == 20
    assert counts.top(2) == {"/busy", "/steady"}


@settings(max_examples=300, deadline=None, derandomize=True)
@given(data=st.lists(st.sampled_from([b"a", b"bb", b"{}", b"\n", b"\r\n", b"xxxxxxx"]),
                     max_size=40).map(b"".join),
       chunk=st.integers(1, 9), most=st.integers(1, 9))
def test_a_plain_file_read_in_chunks_gives_the_lines_read_one_by_one(
        data: bytes, chunk: int, most: int) -> None:
    from memwarden.find.analysis import inputs

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(inputs, "CHUNK_BYTES", chunk)
        patch.setattr(inputs, "MAX_LINE_BYTES", most)
        _same_lines(inputs, data)


def _same_lines(inputs: Any, data: bytes) -> None:
    one_by_one = [line[:-1] if line.endswith(b"\n") else line  # the newline aside
                  for line in inputs._bounded_lines(io.BytesIO(data)) if line is not None]
    flags = [line is None for line in inputs._bounded_lines(io.BytesIO(data))]
    chunked = [line for batch in inputs._chunked_lines(io.BytesIO(data)) for line in batch]
    assert [line is None for line in chunked] == flags
    assert [line for line in chunked if line is not None] == one_by_one


def test_a_plain_file_is_fed_in_batches_to_the_same_report(tmp_path: Path) -> None:
    from memwarden.find.analysis.analyze import analyze_lines, analyze_paths

    text = "\n".join([_request(seq=i) for i in range(1, 300)] + ["", "not json", "{bad"])
    path = tmp_path / "plain.log"
    path.write_text(text + "\r\n", encoding="utf-8")
    lines = path.read_bytes().splitlines(keepends=True)
    assert analyze_paths([path]).to_json_dict() == analyze_lines(lines).to_json_dict()
