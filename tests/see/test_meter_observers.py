"""The meter's observers: the fields of every line, or RSS alone on the usual line."""

from __future__ import annotations

import contextlib
import json
import logging
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from memwarden.footprint import FootprintSampler
from memwarden.hold.policy import Limits
from memwarden.hold.worker import Recycler
from memwarden.see import meter
from memwarden.see.logs import JsonFormatter
from memwarden.see.meter import RequestMeter
from memwarden.settings import Settings
from memwarden.system.probe import Probe

PAGE = os.sysconf("SC_PAGE_SIZE")


class RssObserver:
    """Counts the calls of each kind."""

    def __init__(self) -> None:
        self.fields: list[dict[str, Any]] = []
        self.usual_calls: list[tuple[int, int]] = []

    def __call__(self, fields: dict[str, Any]) -> None:
        self.fields.append(fields)

    def usual(self, rss_bytes: int, seq: int) -> None:
        self.usual_calls.append((rss_bytes, seq))


@contextlib.contextmanager
def fast_lines(path: Path) -> Iterator[None]:
    """The request logger as under memwarden.gunicorn_conf: the one-template line."""
    log = logging.getLogger(meter.REQUEST_LOGGER)
    saved = log.propagate, log.level
    with path.open("w") as stream:
        handler = logging.StreamHandler(stream)
        handler.setFormatter(JsonFormatter())
        log.addHandler(handler)
        log.propagate = False
        log.setLevel(logging.INFO)
        try:
            yield
        finally:
            log.removeHandler(handler)
            log.propagate, level = saved
            log.setLevel(level)


@contextlib.contextmanager
def observing(*observers: Any) -> Iterator[None]:
    for observer in observers:
        meter.add_observer(observer)
    try:
        yield
    finally:
        for observer in observers:
            meter.remove_observer(observer)


def probe_of(tmp_path: Path, resident_pages: int) -> tuple[Path, Probe]:
    pid_dir = tmp_path / str(os.getpid())
    pid_dir.mkdir(exist_ok=True)
    statm = pid_dir / "statm"
    statm.write_text(f"1000 {resident_pages} 100 10 0 300 0\n")
    return statm, Probe(proc_root=str(tmp_path))


def run(m: RequestMeter, n: int) -> None:
    for i in range(n):
        m.finish(m.start(), f"id{i}", "GET", "/x", 200)


def test_an_observer_of_rss_alone_gets_the_usual_lines_rss_and_the_others_fields(
        tmp_path: Path) -> None:
    meter._after_fork()
    _, probe = probe_of(tmp_path, 500)
    observer = RssObserver()
    with fast_lines(tmp_path / "lines.log"), observing(observer):
        m = RequestMeter(Settings(census_every=10, census_seconds=0), probe)
        run(m, 20)
        m.finish(m.start(), "failed", "GET", "/x", 500, ValueError("boom"))
    # The first request and the 11th carry a census, the last an error: fields.
    assert [f["seq"] for f in observer.fields] == [1, 11, 21]
    assert observer.usual_calls == [(500 * PAGE, seq) for seq in range(2, 21) if seq != 11]
    lines = [json.loads(x) for x in (tmp_path / "lines.log").read_text().splitlines()]
    assert [d["seq"] for d in lines] == list(range(1, 22))


def test_one_observer_that_needs_fields_gets_them_all_and_the_other_its_rss(
        tmp_path: Path) -> None:
    meter._after_fork()
    _, probe = probe_of(tmp_path, 500)
    rss_only = RssObserver()
    everything: list[dict[str, Any]] = []
    with fast_lines(tmp_path / "lines.log"), observing(rss_only, everything.append):
        run(RequestMeter(Settings(census_every=10**6, census_seconds=0), probe), 5)
    assert [f["seq"] for f in everything] == [1, 2, 3, 4, 5]
    assert [f["seq"] for f in rss_only.fields] == [1, 2, 3, 4, 5]
    assert rss_only.usual_calls == []
    with fast_lines(tmp_path / "lines.log"), observing(rss_only):
        run(RequestMeter(Settings(census_every=10**6, census_seconds=0), probe), 2)
    assert rss_only.usual_calls == [(500 * PAGE, 6), (500 * PAGE, 7)]


def test_the_recycler_recycles_on_the_usual_lines_rss(tmp_path: Path) -> None:
    """Under memwarden.gunicorn_conf the recycler observes the meter: the usual
    line's RSS alone reaches its soft limit."""
    meter._after_fork()
    statm, probe = probe_of(tmp_path, 100)
    stops: list[int] = []
    sampler = FootprintSampler(descendants=False, process_probe=probe)
    recycler = Recycler(Limits(soft_bytes=150 * PAGE), sampler, stop=lambda: stops.append(1))
    with fast_lines(tmp_path / "lines.log"), observing(recycler.on_request):
        m = RequestMeter(Settings(census_every=10**6, census_seconds=0), probe)
        run(m, 3)
        assert stops == [] and recycler.requests == 3
        statm.write_text("1000 200 100 10 0 300 0\n")
        run(m, 1)
    assert stops == [1] and recycler.requests == 4


def test_the_samplers_rss_path_gives_what_the_fields_give(tmp_path: Path) -> None:
    _, probe = probe_of(tmp_path, 100)
    by_fields = FootprintSampler(kind="pss", descendants=False, process_probe=probe)
    by_rss = FootprintSampler(kind="pss", descendants=False, process_probe=probe)
    for rss in (100, 300, 200, 250):
        assert by_rss.observe_rss(rss * PAGE) == by_fields.observe({"rss_bytes": rss * PAGE})
