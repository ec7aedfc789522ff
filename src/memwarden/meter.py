"""The per-request measurement shared by the WSGI and ASGI trackers.

The hot path is deliberately small: one pread of statm and one
``sys.getallocatedblocks()`` at each end, a counter, and one log record built
without a stack walk. The census (which reads /proc for descendants and PSS)
is taken on a sampled cadence only. Everything the meter needs is decided
once, in ``__init__``.
"""

from __future__ import annotations

import logging
import os
import sys
import time
from collections.abc import Callable
from typing import Any

from memwarden import census as _census
from memwarden import probe as _probe
from memwarden.context import next_sequence
from memwarden.settings import Settings

__all__ = ["RequestMeter", "RequestObserver", "clean_label"]

REQUEST_LOGGER = "memwarden.request"
_MAX_LABEL = 200
_log = logging.getLogger("memwarden.meter")

# Called after each request with the finished line's fields; used by recycling.
RequestObserver = Callable[[dict[str, Any]], None]
_observers: list[RequestObserver] = []


def add_observer(observer: RequestObserver) -> None:
    """Call ``observer(fields)`` after every measured request in this process."""
    if observer not in _observers:
        _observers.append(observer)


def remove_observer(observer: RequestObserver) -> None:
    if observer in _observers:
        _observers.remove(observer)


def clean_label(value: str) -> str:
    """A route or method fit for a log line: printable, bounded length."""
    if len(value) > _MAX_LABEL:
        value = value[:_MAX_LABEL] + "..."
    if not value.isprintable():
        value = "".join(ch if ch.isprintable() else "?" for ch in value)
    return value


class _Cadence:
    """Decides when to take a census: every N requests, or after T seconds."""

    __slots__ = ("_every", "_last", "_pid", "_seconds", "_since")

    def __init__(self, every: int, seconds: float) -> None:
        self._every = every
        self._seconds = seconds
        self._pid = -1
        self._since = 0
        self._last = 0.0

    def due(self, now: float) -> bool:
        pid = os.getpid()
        if pid != self._pid:  # a new worker: census on its first request
            self._pid = pid
            self._since = 0
            self._last = now
            return True
        self._since += 1
        if self._since >= self._every or (self._seconds and now - self._last >= self._seconds):
            self._since = 0
            self._last = now
            return True
        return False


class RequestMeter:
    """Measures requests and writes the request log line."""

    __slots__ = ("_cadence", "_descendants", "_gc_types", "_health", "_logger", "_probe")

    def __init__(self, settings: Settings | None = None,
                 process_probe: _probe.Probe | None = None) -> None:
        s = settings if settings is not None else Settings.from_env()
        self._probe = process_probe
        self._cadence = _Cadence(s.census_every, s.census_seconds)
        self._descendants = s.census_descendants
        self._gc_types = s.gc_types
        self._health = frozenset(s.health_paths)
        self._logger = logging.getLogger(REQUEST_LOGGER)
        if s.loop_tracking:
            _census.enable_loop_tracking()

    def probe(self) -> _probe.Probe:
        return self._probe if self._probe is not None else _probe.current()

    def start(self) -> tuple[float, int | None, int]:
        """Readings at the start of a request: (clock, rss, allocated blocks)."""
        return time.perf_counter(), self.probe().rss_bytes(), sys.getallocatedblocks()

    def finish(self, begin: tuple[float, int | None, int], request_id: str, method: str,
               route: str, status: int | None, error: BaseException | None = None) -> None:
        """Measure the end of a request and log its line. Never raises."""
        try:
            self._finish(begin, request_id, method, route, status, error)
        except Exception:
            _log.exception("memwarden could not record a request")

    def _finish(self, begin: tuple[float, int | None, int], request_id: str, method: str,
                route: str, status: int | None, error: BaseException | None) -> None:
        started, rss0, blocks0 = begin
        blocks = sys.getallocatedblocks()
        p = self.probe()
        rss = p.rss_bytes()
        now = time.perf_counter()
        fields: dict[str, Any] = {
            "request_id": request_id,
            "pid": os.getpid(),
            "seq": next_sequence(),
            "method": method,
            "route": route,
            "status": status if status is not None else 500,
            "duration_ms": round((now - started) * 1000, 3),
        }
        if rss is not None:
            fields["rss_bytes"] = rss
            if rss0 is not None:
                fields["rss_delta_bytes"] = rss - rss0
        fields["blocks"] = blocks
        fields["blocks_delta"] = blocks - blocks0
        if error is not None:
            fields["error"] = type(error).__name__
        if route in self._health:
            fields["health_check"] = True
        if self._cadence.due(now):
            fields["census"] = _census.census(p, descendants=self._descendants,
                                              gc_types=self._gc_types)
            rollup = p.smaps_rollup()
            if rollup is not None:
                fields["pss_bytes"] = rollup.pss_bytes
                fields["uss_bytes"] = rollup.uss_bytes
        logger = self._logger
        if logger.isEnabledFor(logging.INFO):
            # makeRecord + handle skips findCaller's stack walk, the costliest
            # part of an ordinary logger.info() call.
            record = logger.makeRecord(REQUEST_LOGGER, logging.INFO, "", 0, "request",
                                       (), None)
            record.memwarden = fields
            logger.handle(record)
        for observer in _observers:
            try:
                observer(fields)
            except Exception:
                _log.exception("memwarden request observer failed")
