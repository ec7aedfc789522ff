"""``add_batch`` files a list of lines exactly as ``add`` files them one by one."""

from __future__ import annotations

import json
import random
from typing import Any

import pytest

from memwarden.find.analysis.life_buffer import FLUSH_MASK, LIFE_POINTS
from memwarden.find.analysis.stream import StreamAnalysis

from .parts import report_dicts
from .synthetic import SyntheticWorker, allocation_line, linear_leak, recycle_line


def _mixed_lines(seed: int) -> list[bytes | None]:
    """Request lines of long and short lives (thinned, ended, PIDs reused) among every
    kind of line the fast path hands on: new and odd routes, bad fields, bad census
    entries, other loggers, text, malformed JSON, oversized (None) and blank lines."""
    rng = random.Random(seed)
    long_life = SyntheticWorker(pid=10, seed=1).run(LIFE_POINTS * 2 + 77, linear_leak(900.0))
    short = [r for pid in (11, 12, 13)
             for r in SyntheticWorker(pid=pid, seed=pid).run(300 + 41 * pid)]
    reused = SyntheticWorker(pid=11, seed=99).run(500)  # PID 11 again: a new life
    records: list[dict[str, Any]] = long_life + short
    rng.shuffle(records)
    records += [recycle_line(11, requests=751), *reused]
    lines: list[bytes | None] = [json.dumps(r).encode() for r in records]
    odd: list[bytes | None] = [
        None, b"", b"   ", b"plain text", b"{not json", b"[1, 2]", b'"text"',
        b'{"logger": "memwarden.request", "message": "request", "pid": 10}',
        b'{"logger": "memwarden.request", "message": "request", "pid": 10, "seq": 5,'
        b' "route": "", "status": 200}',
        b'{"logger": "memwarden.request", "message": "request", "pid": 12, "seq": 9000,'
        b' "route": "/new\\u0001", "method": "GET", "status": 200}',
        b'{"logger": "memwarden.request", "message": "request", "pid": 12, "seq": 9001,'
        b' "route": "/fresh", "method": "PUT", "status": "x", "rss_bytes": -5}',
        b'{"logger": "memwarden.request", "message": "request", "pid": 13, "seq": 9002,'
        b' "route": "/fresh", "method": "PUT", "status": 503, "census": {"": 1, "a": "b"}}',
        b'{"logger": "memwarden.request", "message": "request", "pid": 13, "seq": 9003,'
        b' "route": "/fresh", "method": "PUT", "status": 200, "census": {"blocks": 7}}  ',
        b'\xef\xbb\xbf{"logger": "memwarden.request", "message": "request", "pid": 13,'
        b' "seq": 9004, "route": "/fresh", "method": "PUT"}',
        b'{"logger": "memwarden.request", "message": "request", "pid": 13, "seq": 9005,'
        b' "route": "/fresh", "method": "PUT", "status": 200, "census": {"": 1, "a": 2}}',
        b'{"logger": "other", "message": "request", "pid": 1, "seq": 1, "route": "/"}',
        json.dumps(recycle_line(12, requests=3)).encode(),
        json.dumps(allocation_line(10, 50, 100, [("a.py:1", 640, 10)])).encode(),
    ]
    # Spread among the others, in their own order.
    places = sorted(rng.randrange(len(lines)) for _ in odd)
    for place, line in reversed(list(zip(places, odd, strict=True))):
        lines.insert(place, line)
    return lines


def _batched(lines: list[bytes | None], seed: int) -> list[list[bytes | None]]:
    rng = random.Random(seed)
    out, start = [], 0
    while start < len(lines):
        size = rng.choice((1, 7, 128, 4096))
        out.append(lines[start:start + size])
        start += size
    return out


@pytest.mark.parametrize("judges", [0, 2])
def test_a_batch_is_filed_as_its_lines_one_by_one(judges: int) -> None:
    lines = _mixed_lines(seed=3)
    one_by_one = StreamAnalysis()
    for line in lines:
        one_by_one.add(line)
    batched = StreamAnalysis(judges=judges)
    for part in _batched(lines, seed=4):
        batched.add_batch(part)
    assert batched.parser.counters == one_by_one.parser.counters
    assert report_dicts(batched) == report_dicts(one_by_one)


def test_the_filter_sees_a_batch_as_the_lines_one_by_one() -> None:
    lines = _mixed_lines(seed=5)

    def keep(pid: int, _timestamp: str | None) -> bool:
        return pid not in (12, 13)  # 13's census has entries to drop: counted all the same

    one_by_one = StreamAnalysis(keep_line=keep)
    for line in lines:
        one_by_one.add(line)
    batched = StreamAnalysis(keep_line=keep)
    for part in _batched(lines, seed=6):
        batched.add_batch(part)
    assert batched.parser.counters == one_by_one.parser.counters
    assert report_dicts(batched) == report_dicts(one_by_one)


def test_a_batched_life_holds_the_same_columns() -> None:
    # The pending numbers reach the columns before thinning, at every FLUSH_MASK + 1 rows.
    assert LIFE_POINTS // 2 % (FLUSH_MASK + 1) == 0
    lines = _mixed_lines(seed=7)
    one_by_one = StreamAnalysis()
    for line in lines:
        one_by_one.add(line)
    batched = StreamAnalysis()
    batched.add_batch(lines)
    for a, b in zip(one_by_one.open.values(), batched.open.values(), strict=True):
        a.flush()
        b.flush()
        assert (a.seqs, a.route_ids, a.census) == (b.seqs, b.route_ids, b.census)
        # As bytes: NaN (an absent number) equals no NaN.
        assert [col.tobytes() for col in a.cols] == [col.tobytes() for col in b.cols]
