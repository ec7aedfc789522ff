"""``memwarden analyze`` on hostile logs: never a traceback, exit 0, or 1 on a leak when asked.

The logs mix plausible request lines with random JSON, numbers no probe
writes (huge, NaN, inf, subnormal), deep nesting, invalid UTF-8 and lines
at the 1 MB cap, and go through ``cli.main`` with the JSON and HTML reports.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from memwarden.cli import main
from memwarden.find.analysis.reader import MAX_LINE_BYTES

NUMBERS = st.one_of(
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(),  # NaN, inf and subnormals included
    st.sampled_from([10**400, -(10**400), 5e-324, -5e-324, 2.2250738585072014e-308,
                     1.7976931348623157e308, -1.7976931348623157e308, -0.0, 2**62, 2**63]),
)
PLAUSIBLE = st.one_of(st.integers(min_value=0, max_value=2**40),
                      st.floats(min_value=0, max_value=2**40))
JSON: st.SearchStrategy[Any] = st.recursive(
    st.none() | st.booleans() | NUMBERS | st.text(max_size=12),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner,
                                                                 max_size=3),
    max_leaves=8)
VALUE = st.one_of(PLAUSIBLE, PLAUSIBLE, NUMBERS, JSON)
FIELDS = ("rss_bytes", "rss_delta_bytes", "blocks", "blocks_delta", "pss_bytes",
          "uss_bytes", "duration_ms", "status", "route", "method", "timestamp")
CENSUS_KINDS = ("threads", "fds", "children", "blocks", "blocks_collected",
                "gc_full_collections", "blocks_after_full_gc", "children_pss_bytes")


@st.composite
def request_line(draw: st.DrawFn, pid: int, seq: int) -> str:
    line: dict[str, Any] = {"logger": "memwarden.request", "message": "request", "pid": pid,
                            "seq": seq, "method": "GET", "route": "/r",
                            "rss_bytes": 1e8 + seq * 4096, "blocks_delta": 3}
    for name in draw(st.lists(st.sampled_from(FIELDS), max_size=4)):
        line[name] = draw(VALUE)
    if draw(st.booleans()):
        kinds = draw(st.lists(st.sampled_from(CENSUS_KINDS), min_size=1, max_size=3))
        line["census"] = {kind: draw(VALUE) for kind in kinds}
    return json.dumps(line)


def _other_line(kind: str, value: Any) -> str:
    if kind == "recycle":
        return json.dumps({"logger": "memwarden.recycle", "message": "recycle", "pid": 7,
                           "reason": "soft_limit", "footprint_bytes": value,
                           "limit_bytes": value})
    if kind == "would_recycle":
        return json.dumps({"logger": "memwarden.recycle", "message": "would_recycle",
                           "pid": 7, "reason": "idle", "footprint_bytes": value,
                           "limit_bytes": 1e8, "requests": value})
    return json.dumps({"logger": "memwarden.tracemalloc", "message": "allocation_sites",
                       "pid": 7, "seq": value, "window_requests": 10,
                       "sites": [{"site": "a.py:1", "size_diff_bytes": value,
                                  "count_diff": value}]})


def _padded(line: str, size: int) -> bytes:
    """A request line of exactly ``size`` bytes, its route filling the rest."""
    head, tail = line.split('"route": "/r"')
    pad = size - len(head) - len(tail) - len('"route": "/"')
    return (head + '"route": "/' + "a" * pad + '"' + tail).encode()


@st.composite
def hostile_log(draw: st.DrawFn) -> list[bytes]:
    lines: list[bytes] = []
    for pid in draw(st.lists(st.sampled_from([7, 8]), min_size=1, max_size=2, unique=True)):
        count = draw(st.integers(min_value=1, max_value=60))
        lines += [draw(request_line(pid, seq)).encode() for seq in range(1, count + 1)]
    extras = st.one_of(
        st.builds(_other_line, st.sampled_from(["recycle", "would_recycle", "sites"]),
                  VALUE).map(str.encode),
        st.builds(lambda v: json.dumps(v).encode(), JSON),
        st.binary(max_size=40),  # invalid UTF-8 more often than not
        st.integers(min_value=1, max_value=5000).map(
            lambda depth: b'{"logger": "memwarden.request", "census": ' + b"[" * depth
            + b"]" * depth + b"}"),
        st.sampled_from([MAX_LINE_BYTES, MAX_LINE_BYTES + 1]).map(
            lambda size: _padded(json.dumps({"logger": "memwarden.request",
                                             "message": "request", "pid": 7, "seq": 61,
                                             "route": "/r", "rss_bytes": 1e8}), size)),
    )
    for _ in range(draw(st.integers(min_value=0, max_value=6))):
        position = draw(st.integers(min_value=0, max_value=len(lines)))
        lines.insert(position, draw(extras))
    return lines


def _analyze(lines: list[bytes], fail_on_leak: bool,
             capsys: pytest.CaptureFixture[str]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        log = root / "requests.log"
        log.write_bytes(b"\n".join(lines) + b"\n")
        args = ["analyze", str(log), "--json", str(root / "report.json"),
                "--html", str(root / "report.html")]
        code = main([*args, "--fail-on-leak"] if fail_on_leak else args)
        report = json.loads((root / "report.json").read_text(encoding="utf-8"))
        assert (root / "report.html").stat().st_size > 0
    captured = capsys.readouterr()
    # Content is never an input error: 2 is for files that cannot be read or written.
    assert captured.err == ""
    assert code == (1 if fail_on_leak and report["verdict"] == "leak" else 0)


@settings(max_examples=40, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                 HealthCheck.function_scoped_fixture])
@given(lines=hostile_log(), fail_on_leak=st.booleans())
@example(lines=[json.dumps({"logger": "memwarden.request", "message": "request", "pid": 7,
                            "seq": seq, "route": "/r", "rss_bytes": 1e8,
                            "census": {"threads": 5e-324 if seq % 2 else 0}}).encode()
                for seq in range(1, 40)], fail_on_leak=False)
def test_hostile_logs_never_crash_analyze(lines: list[bytes], fail_on_leak: bool,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    """Any content: exit 0 (or 1 on a leak with --fail-on-leak), both reports written."""
    _analyze(lines, fail_on_leak, capsys)
