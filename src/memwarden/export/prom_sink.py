"""The Prometheus sink of one process: memwarden's counters (made in the master,
so that every series exists at 0 before its first event), the worker's gauges
(written on the census cadence), and the deaths of workers, by cause, as the
event bus reports them."""

from __future__ import annotations

import math
import os
from typing import Any

from memwarden import events
from memwarden.export import sinks as _exporters
from memwarden.export.prom_metrics import (
    _NOT_KINDS,
    BLOCKS,
    CENSUS_BYTES,
    CENSUS_COUNT,
    DEATHS,
    DESCENDANTS_PSS,
    FOOTPRINT,
    LIMIT,
    OOM_KILLS,
    POOL_REFUSALS,
    PSS,
    RECYCLES,
    REQUESTS,
    RSS,
    SHED,
    USS,
    WOULD_POOL_REFUSALS,
    WOULD_RECYCLES,
    WOULD_SHED,
    _help,
    census_metric,
    footprint,
)

__all__ = ["on_event"]


class _Sink:
    """prometheus_client metrics of this process; created lazily, reset over fork."""

    def __init__(self) -> None:
        self._counters: dict[str, Any] | None = None
        self._gauges: dict[str, Any] | None = None
        self._limit: Any = None
        self._worker_pid = -1
        self.kind = ("rss", True)

    def ensure_counters(self) -> dict[str, Any]:
        # Counters may be made in the master: after fork, prometheus_client sees
        # the new pid and moves every value to the worker's own files.
        if self._counters is None:
            from prometheus_client import Counter

            self._counters = {
                REQUESTS: Counter(REQUESTS, _help(REQUESTS), registry=None),
                RECYCLES: Counter(RECYCLES, _help(RECYCLES), ["reason"], registry=None),
                SHED: Counter(SHED, _help(SHED), registry=None),
                WOULD_RECYCLES: Counter(WOULD_RECYCLES, _help(WOULD_RECYCLES), ["reason"],
                                        registry=None),
                WOULD_SHED: Counter(WOULD_SHED, _help(WOULD_SHED), registry=None),
                POOL_REFUSALS: Counter(POOL_REFUSALS, _help(POOL_REFUSALS), ["pool"],
                                       registry=None),
                WOULD_POOL_REFUSALS: Counter(WOULD_POOL_REFUSALS, _help(WOULD_POOL_REFUSALS),
                                             ["pool"], registry=None),
                OOM_KILLS: Counter(OOM_KILLS, _help(OOM_KILLS), registry=None),
                DEATHS: Counter(DEATHS, _help(DEATHS), ["cause"], registry=None),
            }
            # Every reason at 0, so that increase() sees its first recycle. Zeros
            # add nothing when files are merged or folded into the archive.
            for reason in _exporters.RECYCLE_REASONS:
                self._counters[RECYCLES].labels(reason=reason)
                self._counters[WOULD_RECYCLES].labels(reason=reason)
            for cause in events.DEATH_CAUSES:
                self._counters[DEATHS].labels(cause=cause)
        return self._counters

    def gauges(self) -> dict[str, Any] | None:
        """The worker's live gauges; None in the master (it is not a worker)."""
        if self._gauges is None:
            if self._worker_pid != os.getpid():
                return None
            from prometheus_client import Gauge

            # liveall: each worker's file carries its pid, which the collector
            # turns into the worker's slot (prom_collect).
            self._gauges = {
                name: Gauge(name, _help(name),
                            ["kind"] if name in (CENSUS_COUNT, CENSUS_BYTES) else [],
                            multiprocess_mode="liveall", registry=None)
                for name in (FOOTPRINT, RSS, PSS, USS, DESCENDANTS_PSS, BLOCKS, CENSUS_COUNT,
                             CENSUS_BYTES)
            }
        return self._gauges

    def start_worker(self) -> None:
        self._worker_pid = os.getpid()
        self._gauges = None
        self._limit = None
        self.ensure_counters()
        self.gauges()
        limit = _exporters.worker_limit()
        if limit is not None:
            self.set_worker_limit(limit)

    # -- the Sink protocol
    def record_recycle(self, reason: str) -> None:
        self.ensure_counters()[RECYCLES].labels(reason=reason).inc()

    def record_shed(self, count: int) -> None:
        self.ensure_counters()[SHED].inc(count)

    def record_would_recycle(self, reason: str) -> None:
        self.ensure_counters()[WOULD_RECYCLES].labels(reason=reason).inc()

    def record_would_shed(self, count: int) -> None:
        self.ensure_counters()[WOULD_SHED].inc(count)

    def record_pool_refusal(self, pool: str) -> None:
        self.ensure_counters()[POOL_REFUSALS].labels(pool=pool).inc()

    def record_would_pool_refusal(self, pool: str) -> None:
        self.ensure_counters()[WOULD_POOL_REFUSALS].labels(pool=pool).inc()

    def declare_pool(self, pool: str) -> None:
        # Made in the master before fork, the series move to each worker's file
        # with the other counters.
        counters = self.ensure_counters()
        counters[POOL_REFUSALS].labels(pool=pool)
        counters[WOULD_POOL_REFUSALS].labels(pool=pool)

    def record_oom_kill(self, count: int) -> None:
        self.ensure_counters()[OOM_KILLS].inc(count)

    def record_death(self, cause: str, count: int = 1) -> None:
        self.ensure_counters()[DEATHS].labels(cause=cause).inc(count)

    def set_worker_limit(self, limit_bytes: int | None) -> None:
        if self._worker_pid != os.getpid():
            return  # in the master: kept by exporters, published by each worker
        if self._limit is None:
            if limit_bytes is None:
                return
            from prometheus_client import Gauge

            # Made only once a limit exists: a 0 would look like a limit crossed.
            self._limit = Gauge(LIMIT, _help(LIMIT), multiprocess_mode="liveall",
                                registry=None)
        # Multiprocess gauges cannot be removed; NaN compares false in every alert.
        self._limit.set(math.nan if limit_bytes is None else limit_bytes)

    # -- publishing
    def observe(self, fields: dict[str, Any]) -> None:
        """After each request: one counter increment; the gauges on census cadence."""
        counters = self._counters
        if counters is not None:
            counters[REQUESTS].inc()
        census = fields.get("census")
        if census is not None:
            self.publish(fields, census)

    def publish(self, fields: dict[str, Any], census: dict[str, int | float]) -> None:
        gauges = self.gauges()
        if gauges is None:
            return
        rss = fields.get("rss_bytes")
        pss = fields.get("pss_bytes")
        uss = fields.get("uss_bytes")
        descendants = census.get("children_pss_bytes")
        total = fields.get("footprint_bytes")  # measured by recycling, when it runs
        if not isinstance(total, int):
            total = footprint(self.kind[0], rss, pss, _int(descendants), self.kind[1])
        for name, value in ((RSS, rss), (PSS, pss), (USS, uss), (DESCENDANTS_PSS, descendants),
                            (FOOTPRINT, total),
                            (BLOCKS, fields.get("blocks", census.get("blocks")))):
            if value is not None:
                gauges[name].set(value)
        for kind, value in census.items():
            if kind in _NOT_KINDS or kind.startswith("gc."):
                continue
            gauges[census_metric(kind)].labels(kind=kind).set(value)


def _int(value: int | float | None) -> int | None:
    return None if value is None else int(value)


_sink = _Sink()


def on_event(event: events.Event) -> None:
    """The deaths counter's subscriber (in the master, where workers are seen to die).

    Every OOM kill counts under ``oom_kill``, in flight or not; a death with a
    request in flight counts under its cause, except an OOM kill's, which the
    ``OomKill`` event has counted already.
    """
    match event:
        case events.OomKill(count=count):
            _sink.record_death(events.DIED_OOM_KILL, count)
        case events.DeathInFlight(cause=cause) if cause != events.DIED_OOM_KILL:
            if cause in events.DEATH_CAUSES:  # a label value from a fixed set only
                _sink.record_death(cause)
