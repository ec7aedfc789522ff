"""The request meter: deltas between requests, and the allocated-blocks budget."""

from __future__ import annotations

import itertools
import json
import logging
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from memwarden.see import meter
from memwarden.see.logs import JsonFormatter
from memwarden.see.meter import RequestMeter
from memwarden.see.request_log import RequestLineWriter
from memwarden.settings import Settings
from memwarden.system.probe import Probe


@pytest.fixture
def lines() -> Iterator[list[dict[str, Any]]]:
    seen: list[dict[str, Any]] = []
    observer = seen.append
    meter.add_observer(observer)
    try:
        yield seen
    finally:
        meter.remove_observer(observer)


def run(m: RequestMeter, n: int, via_readings: bool = False) -> None:
    for i in range(n):
        begin = m.start()
        if via_readings:  # as the ASGI tracker does: the readings first, the line later
            m.finish(begin, f"id{i}", "GET", "/x", 200, end=m.readings())
        else:  # as the WSGI tracker does: finish takes the readings itself
            m.finish(begin, f"id{i}", "GET", "/x", 200)


# finish() inlines readings() for the usual request: both must keep one schedule.
BOTH_PATHS = pytest.mark.parametrize("via_readings", [False, True],
                                     ids=["finish-reads", "readings-first"])


def fresh_worker() -> None:
    # As after a fork: this test's requests start a worker of their own.
    meter._after_fork()


def test_deltas_add_up_to_the_workers_growth(lines: list[dict[str, Any]]) -> None:
    fresh_worker()
    # Budget 0 and every request: every request's blocks, whatever a reading costs.
    run(RequestMeter(Settings(census_every=10**6, census_seconds=0, blocks_budget_us=0.0,
                              blocks_every=1)), 50)
    assert len(lines) == 50
    assert all("blocks" in f and "blocks_delta" in f for f in lines)
    # Deltas run from one request's end to the next one's: they add up exactly.
    assert sum(f["blocks_delta"] for f in lines[1:]) == lines[-1]["blocks"] - lines[0]["blocks"]
    assert [f["seq"] for f in lines] == list(range(1, 51))
    assert {f["pid"] for f in lines} == {os.getpid()}


def test_over_budget_reads_blocks_on_every_nth_request(lines: list[dict[str, Any]]) -> None:
    """A budget no reading can meet: priced at each census, the gap between
    readings grows (at most doubling per census) to its cap; lines between
    readings omit blocks, and no delta spans a skipped request."""
    fresh_worker()
    m = RequestMeter(Settings(census_every=5, census_seconds=0, blocks_budget_us=1e-6,
                              blocks_every=1))
    run(m, 1500)
    read_at = [f["seq"] for f in lines if "blocks" in f]
    gaps = [b - a - 1 for a, b in itertools.pairwise(read_at)]
    assert max(gaps) == 99 and gaps[-1] == 99
    assert gaps[0] <= 1 and sorted(gaps) == gaps  # grows from one, never shrinks here
    with_blocks = {f["seq"] for f in lines if "blocks" in f}
    for f in lines:
        if "blocks_delta" in f:
            assert f["seq"] - 1 in with_blocks or f["seq"] == 1
    assert all("rss_bytes" in f for f in lines)  # RSS is still read on every request


def test_gap_closes_when_readings_get_cheap_again(lines: list[dict[str, Any]]) -> None:
    fresh_worker()
    m = RequestMeter(Settings(census_every=5, census_seconds=0, blocks_budget_us=1e-6,
                              blocks_every=1))
    run(m, 50)
    assert any("blocks" not in f for f in lines)
    m._blocks_budget = 1.0  # 1 s: any reading is within it from now on
    lines.clear()
    run(m, 120)  # the next census closes the gap; the last skip runs out
    assert all("blocks" in f and "blocks_delta" in f for f in lines[-10:])


@pytest.mark.parametrize("status", ["abc", True, 2.5, "200"])
def test_a_status_that_is_not_an_int_still_gives_a_valid_line(
        tmp_path: Path, status: Any) -> None:
    """An ASGI app may send any object as its status: the line stays valid JSON
    and carries it as JSON has it (the one-template line takes ints only)."""
    fresh_worker()
    log = logging.getLogger(meter.REQUEST_LOGGER)
    path = tmp_path / "lines.log"
    saved = log.propagate, log.level
    with path.open("w") as stream:
        handler = logging.StreamHandler(stream)  # made in the test body: the fast path
        handler.setFormatter(JsonFormatter())
        log.addHandler(handler)
        log.propagate = False
        log.setLevel(logging.INFO)
        try:
            m = RequestMeter(Settings(census_every=10**6, census_seconds=0,
                                      blocks_budget_us=0.0))
            run(m, 2)  # the second request is a usual line
            m.finish(m.start(), "odd", "GET", "/x", status)
        finally:
            log.removeHandler(handler)
            log.propagate, level = saved
            log.setLevel(level)
    decoded = [json.loads(line) for line in path.read_text().splitlines()]
    assert [d["request_id"] for d in decoded] == ["id0", "id1", "odd"]
    assert decoded[2]["status"] == status and decoded[2]["rss_delta_bytes"] is not None



def test_lines_without_blocks_take_the_one_template(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Blocks skipped (by default on 15 requests in 16) do not send the line
    through the dict and the general formatter: only the census line does."""
    fresh_worker()
    _, probe = fake_statm(tmp_path)
    general: list[dict[str, Any]] = []
    write = RequestLineWriter.write
    monkeypatch.setattr(RequestLineWriter, "write",
                        lambda self, fields: (general.append(fields), write(self, fields)))
    log = logging.getLogger(meter.REQUEST_LOGGER)
    saved = log.propagate, log.level
    path = tmp_path / "lines.log"
    with path.open("w") as stream:
        handler = logging.StreamHandler(stream)  # made in the test body: the fast path
        handler.setFormatter(JsonFormatter())
        log.addHandler(handler)
        log.propagate = False
        log.setLevel(logging.INFO)
        try:
            run(RequestMeter(Settings(census_every=10**6, census_seconds=0), probe), 40)
        finally:
            log.removeHandler(handler)
            log.propagate, level = saved
            log.setLevel(level)
    decoded = [json.loads(line) for line in path.read_text().splitlines()]
    assert [d["seq"] for d in decoded] == list(range(1, 41))
    assert [f["seq"] for f in general] == [1]  # the worker's first request: its census
    assert [d["seq"] for d in decoded if "blocks" in d] == [1, 17, 33]
    assert not any("blocks_delta" in d for d in decoded[1:])

def fake_statm(tmp_path: Path) -> tuple[Path, Probe]:
    """A real probe reading a statm file this test writes: RSS is what it says."""
    pid_dir = tmp_path / str(os.getpid())
    pid_dir.mkdir()
    statm = pid_dir / "statm"
    statm.write_text("1000 500 100 10 0 300 0\n")
    return statm, Probe(proc_root=str(tmp_path))


@BOTH_PATHS
def test_blocks_every_n_reads_blocks_every_nth_request_while_rss_stands_still(
        lines: list[dict[str, Any]], tmp_path: Path, via_readings: bool) -> None:
    fresh_worker()
    _, probe = fake_statm(tmp_path)
    m = RequestMeter(Settings(census_every=10**6, census_seconds=0, blocks_budget_us=0.0,
                              blocks_every=4), probe)
    run(m, 41, via_readings)
    assert all(f["rss_bytes"] == 500 * os.sysconf("SC_PAGE_SIZE") for f in lines)
    assert [f["seq"] for f in lines if "blocks" in f] == list(range(1, 42, 4))
    # No delta spans a skipped request: a delta is one request's own (the
    # first request's runs from its own start).
    assert [f["seq"] for f in lines if "blocks_delta" in f] == [1]


@BOTH_PATHS
def test_by_default_blocks_are_read_on_every_16th_request_while_rss_stands_still(
        lines: list[dict[str, Any]], tmp_path: Path, via_readings: bool) -> None:
    fresh_worker()
    _, probe = fake_statm(tmp_path)
    m = RequestMeter(Settings(census_every=10**6, census_seconds=0, blocks_budget_us=0.0),
                     probe)
    run(m, 40, via_readings)
    assert [f["seq"] for f in lines if "blocks" in f] == [1, 17, 33]

@BOTH_PATHS
def test_blocks_every_n_reads_blocks_whenever_rss_moved(
        lines: list[dict[str, Any]], tmp_path: Path, via_readings: bool) -> None:
    fresh_worker()
    statm, probe = fake_statm(tmp_path)
    m = RequestMeter(Settings(census_every=10**6, census_seconds=0, blocks_budget_us=0.0,
                              blocks_every=100), probe)
    run(m, 3, via_readings)  # blocks at seq 1, then skipped
    statm.write_text("1000 520 100 10 0 300 0\n")
    run(m, 2, via_readings)  # seq 4 sees RSS move and reads blocks; seq 5 sees it still again
    statm.write_text("1000 510 100 10 0 300 0\n")  # down counts too
    run(m, 1, via_readings)
    assert [f["seq"] for f in lines if "blocks" in f] == [1, 4, 6]
    assert [f["rss_delta_bytes"] for f in lines if "rss_delta_bytes" in f] == [
        0, 0, 0, 20 * os.sysconf("SC_PAGE_SIZE"), 0, -10 * os.sysconf("SC_PAGE_SIZE")]


@BOTH_PATHS
def test_rss_moving_does_not_override_the_blocks_budget(
        lines: list[dict[str, Any]], tmp_path: Path, via_readings: bool) -> None:
    """On a heap too big for the budget, blocks stay skipped however RSS moves."""
    fresh_worker()
    statm, probe = fake_statm(tmp_path)
    m = RequestMeter(Settings(census_every=5, census_seconds=0, blocks_budget_us=1e-6,
                              blocks_every=1), probe)
    for i in range(300):
        statm.write_text(f"1000 {500 + i} 100 10 0 300 0\n")
        run(m, 1, via_readings)
    read_at = [f["seq"] for f in lines if "blocks" in f]
    assert len(read_at) < 30
    assert all(f["rss_delta_bytes"] > 0 for f in lines[1:])
