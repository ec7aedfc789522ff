"""The per-request measurement shared by the WSGI and ASGI trackers.

The hot path is deliberately small: one pread of statm per request, a
counter, and one line written; ``sys.getallocatedblocks()`` on every
``blocks_every``-th request (16) and whenever RSS moved. Deltas run from
the end of the previous request in this worker to the end of this one, so
they add up exactly to the worker's growth (no gaps between requests, no
double counting when requests overlap in an async worker) and cost one
reading per request instead of two: ``getallocatedblocks`` walks every pool
of the heap, about 5 us on a 40 MiB worker and more on a bigger one.

The census (which reads /proc for descendants and PSS, ~1 ms) is taken on a
sampled cadence only. Everything is decided once, in ``__init__``.
"""

from __future__ import annotations

import logging
import os
import sys
import time
from collections.abc import Callable
from typing import Any, Protocol

from memwarden.see import census as _census
from memwarden.see.request_log import RequestLineWriter
from memwarden.settings import Settings
from memwarden.system import probe as _probe

__all__ = ["RequestMeter", "RequestObserver", "UsualObserver", "add_observer", "clean_label",
           "remove_observer", "set_window_hook"]

REQUEST_LOGGER = "memwarden.request"
_MAX_LABEL = 200
_log = logging.getLogger("memwarden.meter")

# Called after each request with the finished line's fields; used by recycling
# and the exporters.
RequestObserver = Callable[[dict[str, Any]], None]
_observers: list[RequestObserver] = []


class UsualObserver(Protocol):
    """An observer that needs only RSS from the usual line.

    Called as ``observer(fields)`` for every other line (a census, an error, a
    health check, RSS not read), and as ``observer.usual(rss_bytes, seq)`` for
    the usual line, so the meter makes no dict of its fields.
    """

    def __call__(self, fields: dict[str, Any]) -> None: ...

    def usual(self, rss_bytes: int, seq: int) -> None: ...


# The usual line's calls when every observer has one (then no dict is made for
# it); None when some observer needs the fields of every line.
_usual_calls: tuple[Callable[[int, int], None], ...] | None = ()


def _rederive() -> None:
    global _usual_calls
    calls = [getattr(observer, "usual", None) for observer in _observers]
    _usual_calls = None if None in calls else tuple(c for c in calls if c is not None)


def add_observer(observer: RequestObserver | UsualObserver) -> None:
    """Call ``observer(fields)`` after every measured request in this process
    (``observer.usual(rss_bytes, seq)`` on the usual line when it has one)."""
    if observer not in _observers:
        _observers.append(observer)
        _rederive()


def remove_observer(observer: RequestObserver | UsualObserver) -> None:
    if observer in _observers:
        _observers.remove(observer)
        _rederive()


# Called with the worker's request count after each request while allocation
# sites are sampled (see/alloc_sites.py); None, the usual case, costs one lookup.
_window_hook: Callable[[int], None] | None = None


def set_window_hook(hook: Callable[[int], None] | None) -> None:
    global _window_hook
    _window_hook = hook


def clean_label(value: str) -> str:
    """A route or method fit for a log line: printable, bounded length.

    Not cached: raw paths are unbounded in number, and a cache of them would
    look like the very leak memwarden is there to find.
    """
    if len(value) > _MAX_LABEL:
        value = value[:_MAX_LABEL] + "..."
    if not value.isprintable():
        value = "".join(ch if ch.isprintable() else "?" for ch in value)
    return value


# Read allocated blocks at least every this many requests, whatever it costs.
_MAX_GAP = 99
_NEVER = float("inf")


class _Worker:
    """What one worker process remembers between requests.

    A single module-level instance, replaced in the child after every fork,
    so no per-request ``os.getpid()`` check is needed to notice a new worker.
    """

    __slots__ = ("blocks", "blocks_gap", "blocks_skip", "census_due", "census_left", "last_pss",
                 "pid", "rss", "seq")

    def __init__(self) -> None:
        self.pid = os.getpid()
        self.seq = 0
        self.rss: int | None = None
        self.blocks: int | None = None  # None: not read at the end of the last request
        self.blocks_skip = 0  # requests left before the next blocks reading
        self.blocks_gap = 0  # requests to skip after each reading (set at each census)
        self.census_left = 1  # requests until the next census by count: the first one
        self.census_due = _NEVER  # perf_counter time of the next census by the clock
        self.last_pss = -1.0  # when pss_bytes was last read (< 0: never)


_worker = _Worker()


def _after_fork() -> None:
    global _worker
    _worker = _Worker()


os.register_at_fork(after_in_child=_after_fork)


def worker_requests() -> int:
    """Requests measured in this worker process so far."""
    return _worker.seq


class RequestMeter:
    """Measures requests and writes the request log line."""

    __slots__ = ("_blocks_budget", "_blocks_skip", "_census_every", "_census_seconds", "_collect",
                 "_descendants", "_gc_types", "_health", "_probe", "_writer")

    def __init__(self, settings: Settings | None = None,
                 process_probe: _probe.Probe | None = None) -> None:
        s = settings if settings is not None else Settings.from_env()
        if process_probe is None:
            _probe.configure(s.proc_root, s.sys_root)
            # Held, not looked up per request: it reopens its descriptor after a fork.
            process_probe = _probe.current()
        self._probe = process_probe
        self._census_every = s.census_every
        self._blocks_budget = s.blocks_budget_us / 1e6 if s.blocks_budget_us > 0 else float("inf")
        self._blocks_skip = s.blocks_every - 1  # requests skipped after each reading
        self._census_seconds = s.census_seconds
        self._descendants = s.census_descendants
        self._gc_types = s.gc_types
        self._collect = s.census_collect
        _census.watch_full_collections()
        self._health = frozenset(s.health_paths)
        self._writer = RequestLineWriter(logging.getLogger(REQUEST_LOGGER))
        if s.loop_tracking:
            _census.enable_loop_tracking()

    def probe(self) -> _probe.Probe:
        return self._probe

    def start(self) -> float:
        """Called when a request starts; returns its start time."""
        worker = _worker
        if worker.seq == 0 and worker.blocks is None:
            # First request of this worker: its delta starts here.
            worker.blocks = sys.getallocatedblocks()
            worker.rss = self.probe().rss_bytes()
        return time.perf_counter()

    def readings(self) -> tuple[float, int | None, int | None]:
        """End-of-request readings: (time, rss, blocks). ``blocks`` is None on the
        requests skipped by ``blocks_every`` while RSS stood still, or to keep its
        reading within the blocks budget."""
        worker = _worker
        rss = self._probe.rss_bytes()
        # RSS moving means the heap may have: read blocks then, unless the
        # budget (a big heap) is what skips them.
        if worker.blocks_skip and (worker.blocks_gap or rss == worker.rss):
            worker.blocks_skip -= 1
            blocks = None
        else:
            blocks = sys.getallocatedblocks()
            gap = worker.blocks_gap
            worker.blocks_skip = gap if gap > self._blocks_skip else self._blocks_skip
        return time.perf_counter(), rss, blocks

    def _take_census(self, worker: _Worker, now: float, fields: dict[str, Any]) -> None:
        worker.census_left = self._census_every
        worker.census_due = now + self._census_seconds if self._census_seconds else _NEVER
        self._price_blocks(worker)
        p = self.probe()
        fields["census"] = _census.census(p, descendants=self._descendants,
                                          gc_types=self._gc_types, collect=self._collect)
        # The worker's own PSS and USS walk its whole page table (smaps_rollup:
        # ~9 us per resident MiB, ~10 ms on a 1 GiB worker): on the time cadence
        # only, not on every census_every requests of a busy worker.
        seconds = self._census_seconds
        if worker.last_pss < 0 or not seconds or now - worker.last_pss >= seconds:
            worker.last_pss = now
            rollup = p.smaps_rollup()
            if rollup is not None:
                fields["pss_bytes"] = rollup.pss_bytes
                fields["uss_bytes"] = rollup.uss_bytes

    def _price_blocks(self, worker: _Worker) -> None:
        """Time one blocks reading (at each census) and set the gap between readings.

        It walks every pymalloc pool: ~0.3 us on a small heap, ~40 us per 100 MB
        of small objects. Past the budget it is read on every Nth request only.
        """
        before = time.perf_counter()
        sys.getallocatedblocks()
        cost = time.perf_counter() - before
        if cost > self._blocks_budget:
            # At most doubling the gap each time: one reading slowed by a
            # preemption must not blank the next hundred lines.
            worker.blocks_gap = min(int(cost / self._blocks_budget),
                                    2 * worker.blocks_gap + 1, _MAX_GAP)
        else:
            worker.blocks_gap = 0

    def finish(self, started: float, request_id: str, method: str, route: str,
               status: int | None, error: BaseException | None = None,
               end: tuple[float, int | None, int | None] | None = None) -> None:
        """Measure the end of a request (or use ``end``) and log its line. Never raises."""
        try:
            worker = _worker
            if end is None:  # readings() in line: the usual request's one call less
                rss = self._probe.rss_bytes()
                if worker.blocks_skip and (worker.blocks_gap or rss == worker.rss):
                    worker.blocks_skip -= 1
                    blocks = None
                else:
                    blocks = sys.getallocatedblocks()
                    gap = worker.blocks_gap
                    worker.blocks_skip = gap if gap > self._blocks_skip else self._blocks_skip
                now = time.perf_counter()
            else:
                now, rss, blocks = end
            seq = worker.seq = worker.seq + 1
            if _window_hook is not None:
                _window_hook(seq)
            last_rss, last_blocks = worker.rss, worker.blocks
            worker.rss, worker.blocks = rss, blocks
            # Whole microseconds (duration_ms / 1000 is the same float as
            # round(ms, 3), without the decimal round trip round() makes).
            duration_us = int((now - started) * 1e6 + 0.5)
            if status is None:
                status = 500
            # The census cadence: every census_every requests, at most
            # census_seconds apart, and on the worker's first request.
            left = worker.census_left = worker.census_left - 1
            census = left <= 0 or now >= worker.census_due
            written = False
            if (not census and error is None and rss is not None and last_rss is not None
                    and type(status) is int and route not in self._health):
                written = self._writer.write_usual(
                    request_id, worker.pid, seq, method, route, status, duration_us,
                    rss, rss - last_rss, blocks,
                    None if blocks is None or last_blocks is None else blocks - last_blocks)
                if written:
                    usual = _usual_calls
                    if usual is not None:  # nobody reads the fields: no dict is made
                        for call in usual:
                            try:
                                call(rss, seq)
                            except Exception:
                                _log.exception("memwarden request observer failed")
                        return
            fields: dict[str, Any] = {
                "request_id": request_id, "pid": worker.pid, "seq": seq,
                "method": method, "route": route, "status": status,
                "duration_ms": duration_us / 1000}
            if rss is not None:
                fields["rss_bytes"] = rss
                if last_rss is not None:
                    fields["rss_delta_bytes"] = rss - last_rss
            if blocks is not None:
                fields["blocks"] = blocks
                if last_blocks is not None:
                    fields["blocks_delta"] = blocks - last_blocks
            if error is not None:
                fields["error"] = type(error).__name__
            if route in self._health:
                fields["health_check"] = True
            if census:
                self._take_census(worker, now, fields)
            if not written:
                self._writer.write(fields)
            for observer in _observers:
                try:
                    observer(fields)
                except Exception:
                    _log.exception("memwarden request observer failed")
        except Exception:
            _log.exception("memwarden could not record a request")
