"""OpenTelemetry: an OTLP/HTTP metrics exporter in every worker, set up after fork.

Each worker gets its own MeterProvider, with its own ``service.instance.id``
(a UUID) and ``process.pid`` on the resource, so a backend sees one instance
per worker. The provider is memwarden's own: the global OpenTelemetry meter
provider is left as the application set it.

Names follow the semantic conventions where they exist (``process.memory.usage``,
``process.thread.count``, ``process.unix.file_descriptor.count``: UpDownCounters,
exported as cumulative sums whatever temporality is preferred, because New
Relic drops non-monotonic delta sums) and use the ``memwarden.`` namespace
otherwise (gauges). Memory is read when the exporter collects (every
``OTEL_METRIC_EXPORT_INTERVAL`` ms, 60 s by default), so nothing is added to
a request except what the request meter already does. As for Prometheus,
census counts and census bytes are two instruments (no name mixes units), and
the master counts workers' deaths by cause from the event bus.

Configuration is the standard one: ``OTEL_EXPORTER_OTLP_ENDPOINT`` (or
``..._METRICS_ENDPOINT``), ``OTEL_EXPORTER_OTLP_HEADERS`` (New Relic:
``api-key=<license key>``), ``OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE``,
``OTEL_SERVICE_NAME``, ``OTEL_RESOURCE_ATTRIBUTES``, ``OTEL_METRIC_EXPORT_INTERVAL``.
"""

from __future__ import annotations

import atexit
import contextlib
import logging
import math
import os
import socket
import threading
import uuid
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from memwarden import events
from memwarden.export import sinks as _exporters
from memwarden.export.otel_readings import Readings
from memwarden.see import meter as _meter
from memwarden.settings import Settings
from memwarden.system import probe as _probe

if TYPE_CHECKING:
    from opentelemetry.metrics import CallbackOptions, Observation
    from opentelemetry.sdk.metrics import MeterProvider

__all__ = ["INSTRUMENTS", "on_event", "setup_master", "shutdown", "start_master",
           "start_worker"]

_log = logging.getLogger("memwarden.exporters.otel")

# name -> (instrument, unit, description)
INSTRUMENTS: dict[str, tuple[str, str, str]] = {
    "process.memory.usage": ("updowncounter", "By", "The amount of physical memory in use."),
    "process.thread.count": ("updowncounter", "{thread}", "Process threads count."),
    "process.unix.file_descriptor.count": (
        "updowncounter", "{file_descriptor}",
        "Number of UNIX file descriptors in use by the process."),
    "memwarden.memory.footprint": (
        "gauge", "By", "The worker's own RSS (or PSS, MEMWARDEN_FOOTPRINT=pss) plus its "
                       "descendants' PSS: what recycling compares with the limit."),
    "memwarden.memory.pss": ("gauge", "By", "Proportional set size of the worker."),
    "memwarden.memory.uss": ("gauge", "By", "Unique set size of the worker."),
    "memwarden.memory.descendants.pss": (
        "gauge", "By", "Summed PSS of the worker's descendant processes."),
    "memwarden.memory.limit": ("gauge", "By", "Footprint at which the worker is recycled."),
    "memwarden.heap.blocks": (
        "gauge", "{block}", "Memory blocks allocated by the worker's Python allocator."),
    "memwarden.census.count": (
        "gauge", "{object}", "Live resources of one kind in the worker (threads, fds, "
                             "children, asyncio tasks, tracked objects; memwarden.census.kind)."),
    "memwarden.census.bytes": (
        "gauge", "By", "Census readings in bytes: census keys ending in _bytes "
                       "(memwarden.census.kind)."),
    "memwarden.requests": ("counter", "{request}", "Requests measured in the worker."),
    "memwarden.recycles": ("counter", "{recycle}", "Workers recycled (memwarden.recycle.reason)."),
    "memwarden.shed.requests": (
        "counter", "{request}", "Requests refused by memory-based load shedding."),
    "memwarden.would_recycles": (
        "counter", "{recycle}",
        "Recycles decided in dry-run, not done (memwarden.recycle.reason)."),
    "memwarden.would_shed.requests": (
        "counter", "{request}", "Requests dry-run shedding would have refused."),
    "memwarden.pool.refusals": (
        "counter", "{refusal}",
        "Acquires a bounded resource pool refused with PoolTimeout (memwarden.pool.name)."),
    "memwarden.would_pool.refusals": (
        "counter", "{refusal}",
        "Acquires dry-run pool limits would have refused, served beyond max_size "
        "(memwarden.pool.name)."),
    "memwarden.oom_kills": (
        "counter", "{kill}", "Workers killed by the kernel's OOM killer, seen by the master."),
    "memwarden.worker.deaths": (
        "counter", "{death}",
        "Workers that died, by cause (memwarden.death.cause): timeout (gunicorn's worker "
        "timeout) and signal with a request in flight, oom_kill (every OOM kill the master "
        "saw)."),
}

_NOT_KINDS = frozenset({"blocks", "children_pss_bytes"})
_RECYCLE_COUNTERS = ("memwarden.recycles", "memwarden.would_recycles")
_POOL_COUNTERS = ("memwarden.pool.refusals", "memwarden.would_pool.refusals")
_DEATHS = "memwarden.worker.deaths"
_CAUSE = "memwarden.death.cause"


def _client() -> None:
    _exporters.require("opentelemetry.sdk.metrics", "otel")
    _exporters.require("opentelemetry.exporter.otlp.proto.http.metric_exporter", "otel")


def _resource(role: str, service_name: str | None) -> Any:
    from opentelemetry.sdk.resources import Resource

    attributes: dict[str, str | int] = {
        # Always ours: an instance id from OTEL_RESOURCE_ATTRIBUTES would be shared
        # by every worker forked from the same environment.
        "service.instance.id": str(uuid.uuid4()),
        "process.pid": os.getpid(),
        "process.parent_pid": os.getppid(),
        "host.name": socket.gethostname(),
        "memwarden.process.role": role,
    }
    env_names = os.environ.get("OTEL_SERVICE_NAME") or "service.name=" in os.environ.get(
        "OTEL_RESOURCE_ATTRIBUTES", "")
    if not env_names:
        attributes["service.name"] = service_name or "memwarden"
    return Resource.create(attributes)


def _exporter(timeout: float | None = None) -> Any:
    from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
    from opentelemetry.sdk.metrics import ObservableUpDownCounter, UpDownCounter
    from opentelemetry.sdk.metrics.export import AggregationTemporality

    for name in ("OTEL_EXPORTER_OTLP_METRICS_PROTOCOL", "OTEL_EXPORTER_OTLP_PROTOCOL"):
        protocol = os.environ.get(name)
        if protocol and protocol.strip() != "http/protobuf":
            _log.warning("%s=%s: memwarden exports OTLP over http/protobuf only", name, protocol)
            break
    # Up-down counters stay cumulative even when delta is preferred: New Relic
    # drops non-monotonic delta sums.
    cumulative: dict[type, AggregationTemporality] = {
        UpDownCounter: AggregationTemporality.CUMULATIVE,
        ObservableUpDownCounter: AggregationTemporality.CUMULATIVE,
    }
    return OTLPMetricExporter(timeout=timeout, preferred_temporality=cumulative)


class _Sink:
    """The provider of this process: a worker's, or the master's for its events."""

    def __init__(self) -> None:
        self.pid = -1
        self.provider: MeterProvider | None = None
        self.worker: Readings | None = None
        self.counters: dict[str, Any] = {}
        self.flush_each = False  # the master has no export thread: flush per event
        # Every pool made in this process, or before fork in the master: each
        # provider started from now on exports its refusal counters at 0.
        self.pools: set[str] = set()

    def start(self, provider: MeterProvider, worker: Readings | None) -> None:
        self.pid = os.getpid()
        self.provider = provider
        self.worker = worker
        self.flush_each = worker is None
        meter = provider.get_meter("memwarden")
        self.counters = {
            name: meter.create_counter(name, unit=unit, description=doc)
            for name, (kind, unit, doc) in INSTRUMENTS.items()
            if kind == "counter" and name != "memwarden.requests"
        }
        # Export a 0 at once, so that a backend sees the first event as an increase:
        # every counter, each recycle reason, each pool made so far.
        for name, counter in self.counters.items():
            if name != _DEATHS:  # a death always has a cause: no series without one
                counter.add(0)
        for reason in _exporters.RECYCLE_REASONS:
            self._zero(_RECYCLE_COUNTERS, {"memwarden.recycle.reason": reason})
        for pool in tuple(self.pools):
            self._zero(_POOL_COUNTERS, {"memwarden.pool.name": pool})
        if worker is None:
            # Deaths are seen by the master only: each cause at 0 there, not in
            # every worker's instance.
            for cause in events.DEATH_CAUSES:
                self._zero((_DEATHS,), {_CAUSE: cause})
            return
        gauges = {"memwarden.census.count": self._census_count,
                  "memwarden.census.bytes": self._census_bytes,
                  "memwarden.memory.limit": self._limit, "memwarden.heap.blocks": self._blocks}
        for name, (kind, unit, doc) in INSTRUMENTS.items():
            if kind == "updowncounter":
                meter.create_observable_up_down_counter(
                    name, [self._memory_callback(name)], unit=unit, description=doc)
            elif kind == "gauge":
                callback = gauges.get(name) or self._memory_callback(name)
                meter.create_observable_gauge(name, [callback], unit=unit, description=doc)
        unit, doc = INSTRUMENTS["memwarden.requests"][1:]
        meter.create_observable_counter("memwarden.requests", [self._requests], unit=unit,
                                        description=doc)

    def _observation(self, value: float, attributes: dict[str, str] | None = None
                     ) -> Observation:
        from opentelemetry.metrics import Observation

        return Observation(value, attributes)

    def _memory_callback(self, name: str) -> Any:
        def callback(options: CallbackOptions) -> Iterable[Observation]:
            worker = self.worker
            value = worker.memory().get(name) if worker is not None else None
            return [] if value is None else [self._observation(value)]
        return callback

    def _census_count(self, options: CallbackOptions) -> Iterable[Observation]:
        return self._census(in_bytes=False)

    def _census_bytes(self, options: CallbackOptions) -> Iterable[Observation]:
        return self._census(in_bytes=True)

    def _census(self, *, in_bytes: bool) -> list[Observation]:
        """Counts or bytes, never both under one name: a census key in bytes ends in
        ``_bytes`` (as for Prometheus, prom_metrics.census_metric)."""
        worker = self.worker
        census = worker.census if worker is not None else {}
        return [self._observation(value, {"memwarden.census.kind": kind})
                for kind, value in census.items()
                if kind not in _NOT_KINDS and not kind.startswith("gc.")
                and kind.endswith("_bytes") == in_bytes]

    def _limit(self, options: CallbackOptions) -> Iterable[Observation]:
        limit = _exporters.worker_limit()
        return [] if limit is None else [self._observation(limit)]

    def _blocks(self, options: CallbackOptions) -> Iterable[Observation]:
        return [self._observation(_probe.allocated_blocks())]

    def _requests(self, options: CallbackOptions) -> Iterable[Observation]:
        return [self._observation(_meter.worker_requests())]

    def _zero(self, names: tuple[str, ...], attributes: dict[str, str]) -> None:
        for name in names:
            counter = self.counters.get(name)
            if counter is not None:
                counter.add(0, attributes)

    # -- the Sink protocol
    def _add(self, name: str, count: int, attributes: dict[str, str] | None = None) -> None:
        if self.pid != os.getpid():
            if _master_pid[0] != os.getpid():
                return  # a worker whose exporter did not start: nowhere to send it
            start_master()
        counter = self.counters.get(name)
        if counter is None:
            return
        counter.add(count, attributes)
        if self.flush_each and self.provider is not None:
            self.provider.force_flush(timeout_millis=3000)

    def record_recycle(self, reason: str) -> None:
        self._add("memwarden.recycles", 1, {"memwarden.recycle.reason": reason})

    def record_shed(self, count: int) -> None:
        self._add("memwarden.shed.requests", count)

    def record_would_recycle(self, reason: str) -> None:
        self._add("memwarden.would_recycles", 1, {"memwarden.recycle.reason": reason})

    def record_would_shed(self, count: int) -> None:
        self._add("memwarden.would_shed.requests", count)

    def record_pool_refusal(self, pool: str) -> None:
        self._add("memwarden.pool.refusals", 1, {"memwarden.pool.name": pool})

    def record_would_pool_refusal(self, pool: str) -> None:
        self._add("memwarden.would_pool.refusals", 1, {"memwarden.pool.name": pool})

    def declare_pool(self, pool: str) -> None:
        self.pools.add(pool)
        provider = self.provider
        if self.pid != os.getpid() or provider is None:
            return  # exported when this process's provider starts
        self._zero(_POOL_COUNTERS, {"memwarden.pool.name": pool})
        if self.flush_each:
            provider.force_flush(timeout_millis=3000)

    def record_oom_kill(self, count: int) -> None:
        self._add("memwarden.oom_kills", count)

    def record_death(self, cause: str, count: int = 1) -> None:
        self._add(_DEATHS, count, {_CAUSE: cause})

    def set_worker_limit(self, limit_bytes: int | None) -> None:
        pass  # read by the limit callback from memwarden.export


_sink = _Sink()


def on_event(event: events.Event) -> None:
    """The deaths counter's subscriber (in the master, where workers are seen to die).

    As for Prometheus (prom_sink.on_event): every OOM kill counts under
    ``oom_kill``, in flight or not; a death with a request in flight counts
    under its cause, except an OOM kill's, which the ``OomKill`` event has
    counted already.
    """
    match event:
        case events.OomKill(count=count):
            _sink.record_death(events.DIED_OOM_KILL, count)
        case events.DeathInFlight(cause=cause) if cause != events.DIED_OOM_KILL:
            if cause in events.DEATH_CAUSES:  # an attribute value from a fixed set only
                _sink.record_death(cause)


_shutdown_lock = threading.Lock()
_master_pid = [-1]


def setup_master() -> None:
    """In the master, at config load: check the extra; events recorded here are exported."""
    _client()
    _master_pid[0] = os.getpid()
    _exporters.add_sink(_sink)
    events.subscribe(on_event)  # workers' deaths by cause, seen in the master


def start_worker(settings: Settings, service_name: str | None = None) -> None:
    """In a new worker (``post_fork``): its own provider, exporter and identity."""
    _client()
    if _sink.pid == os.getpid() and _sink.worker is not None:
        return  # wired twice (two configs chained): one provider per worker
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader

    _probe.configure(settings.proc_root, settings.sys_root)
    worker = Readings(settings)
    reader = PeriodicExportingMetricReader(_exporter())
    provider = MeterProvider(resource=_resource("worker", service_name),
                             metric_readers=[reader], shutdown_on_exit=False)
    _sink.start(provider, worker)
    _meter.add_observer(worker.observe)
    _exporters.add_sink(_sink)
    atexit.register(_shutdown_at_exit, os.getpid())


def start_master(service_name: str | None = None) -> None:
    """A provider for events the master records; exports on each event, no thread.

    A thread in the master would be copied half-alive into every forked worker.
    """
    _client()
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader

    if _sink.pid == os.getpid() and _sink.provider is not None:
        return
    reader = PeriodicExportingMetricReader(_exporter(timeout=2.0),
                                           export_interval_millis=math.inf)
    provider = MeterProvider(resource=_resource("master", service_name),
                             metric_readers=[reader], shutdown_on_exit=False)
    _sink.start(provider, None)
    _exporters.add_sink(_sink)
    events.subscribe(on_event)
    # Counters start at 0 in the backend, so that the first event counts as an increase.
    provider.force_flush(timeout_millis=3000)


def shutdown(timeout_millis: float = 5000) -> None:
    """Send the last export and stop this process's provider (bounded in time)."""
    with _shutdown_lock:
        provider = _sink.provider
        if provider is None or _sink.pid != os.getpid():
            return
        _sink.provider = None
        _sink.counters = {}
    if _sink.worker is not None:
        _meter.remove_observer(_sink.worker.observe)
    provider.shutdown(timeout_millis=timeout_millis)


def _shutdown_at_exit(pid: int) -> None:
    if pid == os.getpid():
        with contextlib.suppress(Exception):
            shutdown()
