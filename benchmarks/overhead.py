"""Per-request cost of memwarden's tracker against a naive tracker and tracemalloc.

All variants run in this one process, on the same Flask hello-world request,
interleaved round by round so that drift hits them alike; logs go to
/dev/null. The added cost of a variant is its median per-request time minus
the bare app's, timed in this thread's CPU time: other processes' load on a
shared machine stretches wall time (a round's bare requests by half or more),
not this.

Also timed: the same tracker with one request observer registered (what
recycling and the exporters add, doing nothing here), which makes the
meter build the line's fields as a dict as well; with the in-flight records
a gunicorn worker writes (``inflight``: one record per request in a shared
area, for the master's ``death_in_flight`` line); and with the opt-in
allocation sites (``sites``: ``MEMWARDEN_TRACEMALLOC=1``, a snapshot diff
every 250 requests, tracemalloc tracing every allocation in between).
And the tracker with ``MEMWARDEN_BLOCKS_EVERY=1`` (``blocks_every_1``:
allocated blocks read on every request, where the defaults read them on every
16th while RSS stands still, as it does here); it shares the worker's reading
schedule with the defaults' tracker, so its round may start from the
defaults' countdown: at most 15 of its requests skip the reading.

And the floor (benchmarks/apps/floor.py): one statm pread and one write(2)
of a line of the request line's size per request and nothing else, the least
any per-request memory line costs on this machine.

And the contract's floor (``contract_floor``, ContractFloor below): that
plus building the contract's usual line from values computed beforehand, the
least the line's contract itself needs.

Also timed: the tracker with an observer of RSS alone (``observed_rss``: how
the recycler observes, the usual line's fields never made into a dict).

The line before the last: ``floor_us=F``, and before it ``contract_floor_us``.
Last line: ``overhead_us=X naive_us=Y ratio=X/Y``.
"""

from __future__ import annotations

import argparse
import io
import json
import logging
import mmap
import os
import statistics
import sys
import time
import tracemalloc
from collections.abc import Callable, Iterable
from typing import Any

import psutil
from apps.floor import FloorWsgi
from flask import Flask

from memwarden.alloc_sites import SiteSettings, SiteWindows
from memwarden.see import inflight_slot
from memwarden.see.logs import JsonFormatter
from memwarden.see.meter import add_observer, remove_observer
from memwarden.see.wsgi import MemoryTracker
from memwarden.settings import Settings

WSGIApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


def hello_app() -> Flask:
    app = Flask("hello")

    @app.get("/hello/<name>")
    def hello(name: str) -> str:
        return f"hello {name}"

    return app


class NaiveTracker:
    """What teams write first: psutil before and after, one json.dumps log line."""

    def __init__(self, app: WSGIApp) -> None:
        self.app = app
        self.process = psutil.Process()
        self.log = logging.getLogger("naive.request")

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]
                 ) -> Iterable[bytes]:
        before = self.process.memory_info().rss
        started = time.perf_counter()
        result = self.app(environ, start_response)
        after = self.process.memory_info().rss
        self.log.info(json.dumps({
            "path": environ.get("PATH_INFO"), "method": environ.get("REQUEST_METHOD"),
            "rss": after, "rss_delta": after - before,
            "duration_ms": (time.perf_counter() - started) * 1000,
        }))
        return result


def _ignore(fields: dict[str, Any]) -> None:
    """A request observer that does nothing: the price of having one."""


class _IgnoreRss:
    """An observer of RSS alone that does nothing (as the recycler observes)."""

    def __call__(self, fields: dict[str, Any]) -> None:
        pass

    def usual(self, rss_bytes: int, seq: int) -> None:
        pass


_THOUSANDTHS = tuple(f"{i:03d}" for i in range(1000))


class ContractFloor:
    """The least the request line's contract needs, and nothing else.

    Per request: two perf_counter readings, one statm pread, the line built in
    one f-string from values computed beforehand (id, pid, method, route,
    status) and the ones that change (timestamp with the formatted second
    cached, seq, duration, RSS and its delta), and one write(2). No id drawn,
    no context, no route lookup, no header copy, no blocks, no census, no
    logging chain check.
    """

    def __init__(self, app: WSGIApp, fd: int) -> None:
        self.app = app
        self.fd = fd
        self.statm = os.open("/proc/self/statm", os.O_RDONLY)
        self.seq = 0
        self.rss = 0
        self.second = (-1, "")
        self.head = ('"level": "INFO", "logger": "memwarden.request", "message": "request", '
                     '"request_id": "9bbfdc922509d5e41000000000000001", '
                     f'"pid": {os.getpid()}, "seq": ')

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]
                 ) -> Iterable[bytes]:
        begin = time.perf_counter()
        result = self.app(environ, start_response)
        rss = int(os.pread(self.statm, 128, 0).split(None, 2)[1]) * 4096
        duration_us = int((time.perf_counter() - begin) * 1e6 + 0.5)
        now = time.time()
        second = int(now)
        cached = self.second
        if cached[0] != second:
            cached = self.second = (second, time.strftime("%Y-%m-%dT%H:%M:%S",
                                                          time.gmtime(second)))
        self.seq += 1
        last, self.rss = self.rss, rss
        line = (f'{{"timestamp": "{cached[1]}.{_THOUSANDTHS[int((now - second) * 1000)]}Z", '
                f'{self.head}{self.seq}, "method": "GET", "route": "/hello/<name>", '
                f'"status": 200, "duration_ms": {duration_us // 1000}.'
                f'{_THOUSANDTHS[duration_us % 1000]}, "rss_bytes": {rss}, '
                f'"rss_delta_bytes": {rss - last}}}\n')
        os.write(self.fd, line.encode("ascii"))
        return result


def _environ() -> dict[str, Any]:
    return {"REQUEST_METHOD": "GET", "PATH_INFO": "/hello/world", "QUERY_STRING": "",
            "SERVER_NAME": "127.0.0.1", "SERVER_PORT": "8000", "SERVER_PROTOCOL": "HTTP/1.1",
            "wsgi.url_scheme": "http", "wsgi.input": io.BytesIO(), "wsgi.errors": sys.stderr}


def _start_response(status: str, headers: list[tuple[str, str]], exc_info: Any = None
                    ) -> Callable[[bytes], None]:
    return lambda data: None


def time_round(app: WSGIApp, n: int, clock: Callable[[], float] = time.thread_time) -> float:
    """Mean seconds per request over n requests, by ``clock`` (this thread's CPU time)."""
    environ = _environ
    start_response = _start_response
    started = clock()
    for _ in range(n):
        body = app(environ(), start_response)
        for _chunk in body:
            pass
        close = getattr(body, "close", None)
        if close is not None:
            close()
    return (clock() - started) / n


def arguments(description: str, rounds: int) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--rounds", type=int, default=rounds)
    parser.add_argument("--requests", type=int, default=2000)
    return parser.parse_args()


def bare_and_tracked() -> tuple[WSGIApp, MemoryTracker]:
    """The hello-world app alone and under memwarden's defaults, logging to /dev/null."""
    devnull = open("/dev/null", "w")  # noqa: SIM115 - held for the whole run
    setup_logging(devnull)
    bare: WSGIApp = hello_app().wsgi_app
    return bare, MemoryTracker(bare, Settings())  # the defaults, census included


def setup_logging(devnull: io.TextIOWrapper) -> None:
    json_handler = logging.StreamHandler(devnull)
    json_handler.setFormatter(JsonFormatter())
    mw = logging.getLogger("memwarden")
    mw.addHandler(json_handler)
    mw.setLevel(logging.INFO)
    mw.propagate = False
    plain = logging.StreamHandler(devnull)  # the naive tracker's stdlib handler
    naive = logging.getLogger("naive")
    naive.addHandler(plain)
    naive.setLevel(logging.INFO)
    naive.propagate = False


def main() -> None:
    args = arguments(__doc__.splitlines()[0], rounds=31)
    bare, tracked = bare_and_tracked()
    variants: dict[str, WSGIApp] = {
        "bare": bare,
        "memwarden": tracked,
        "naive": NaiveTracker(bare),
        "blocks_every_1": MemoryTracker(bare, Settings(blocks_every=1)),
        "floor": FloorWsgi(bare, os.open("/dev/null", os.O_WRONLY)),
        "contract_floor": ContractFloor(bare, os.open("/dev/null", os.O_WRONLY)),
    }
    samples: dict[str, list[float]] = {
        name: [] for name in [*variants, "observed", "observed_rss", "inflight", "sites",
                              "tracemalloc"]}
    # The in-flight records cost about a microsecond, less than the drift between
    # rounds on a busy machine: each is timed beside a fresh run of the plain
    # tracker, in alternating order, in this thread's CPU time (which the load of
    # other processes does not stretch as it does wall time), and the median of
    # those paired differences taken.
    paired: list[float] = []
    area = mmap.mmap(-1, inflight_slot.SIZE, flags=mmap.MAP_SHARED)
    for app in variants.values():  # warm-up: imports, caches, first census
        time_round(app, 500)
    for _ in range(args.rounds):
        for name, app in variants.items():
            samples[name].append(time_round(app, args.requests))
        add_observer(_ignore)
        samples["observed"].append(time_round(variants["memwarden"], args.requests))
        remove_observer(_ignore)
        rss_only = _IgnoreRss()
        add_observer(rss_only)
        samples["observed_rss"].append(time_round(variants["memwarden"], args.requests))
        remove_observer(rss_only)
        recorded = plain = 0.0
        for with_records in ((True, False) if len(paired) % 2 else (False, True)):
            if with_records:
                inflight_slot.install(area)
                recorded = time_round(variants["memwarden"], args.requests, time.thread_time)
                inflight_slot.uninstall()
            else:
                plain = time_round(variants["memwarden"], args.requests, time.thread_time)
        samples["inflight"].append(recorded - plain + samples["memwarden"][-1])
        paired.append(recorded - plain)
        windows = SiteWindows(SiteSettings(frames=1, every=250))
        windows.start()
        samples["sites"].append(time_round(variants["memwarden"], args.requests))
        windows.stop()
        tracemalloc.stop()
        tracemalloc.start(1)
        samples["tracemalloc"].append(time_round(bare, args.requests))
        tracemalloc.stop()

    median_us = {name: statistics.median(v) * 1e6 for name, v in samples.items()}
    base = median_us["bare"]
    print(f"rounds={args.rounds} requests_per_round={args.requests}")
    for name, us in median_us.items():
        print(f"{name:12s} {us:8.2f} us/request  (+{us - base:.2f} us)")
    overhead = median_us["memwarden"] - base
    naive = median_us["naive"] - base
    print(f"blocks_every_1_us={median_us['blocks_every_1'] - base:.2f} "
          f"observed_us={median_us['observed'] - base:.2f} "
          f"observed_rss_us={median_us['observed_rss'] - base:.2f} "
          f"tracemalloc_us={median_us['tracemalloc'] - base:.2f}")
    plain_us = median_us["memwarden"]
    print(f"inflight_us={statistics.median(paired) * 1e6:.2f} (CPU) "
          f"sites_us={median_us['sites'] - plain_us:.2f} (each over memwarden's defaults)")
    print(f"contract_floor_us={median_us['contract_floor'] - base:.2f}")
    print(f"floor_us={median_us['floor'] - base:.2f}")
    print(f"overhead_us={overhead:.2f} naive_us={naive:.2f} ratio={overhead / naive:.3f}")


if __name__ == "__main__":
    main()
