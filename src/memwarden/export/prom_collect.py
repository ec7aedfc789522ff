"""Prometheus scraping: the collector that merges the workers' files and
refreshes live workers' memory from /proc, and the registries that serve it."""

from __future__ import annotations

import glob
import logging
import os
from collections.abc import Awaitable, Callable, Iterable, Iterator, MutableMapping
from typing import TYPE_CHECKING, Any

from memwarden.export.prom_slots import pids_by_slot
from memwarden.settings import Settings
from memwarden.system import probe as _probe

if TYPE_CHECKING:
    from prometheus_client.metrics_core import Metric
    from prometheus_client.registry import CollectorRegistry

from memwarden.export.prom_files import _directory, _locked
from memwarden.export.prom_metrics import (
    CGROUP_LIMIT,
    CGROUP_OOM_KILLS,
    CGROUP_USAGE,
    DESCENDANTS_PSS,
    FOOTPRINT,
    PSS,
    RSS,
    SLOT,
    USS,
    WORKER_PID,
    _client,
    _help,
    _untyped,
    footprint,
    footprint_kind,
)

_log = logging.getLogger("memwarden.exporters.prometheus")

# -- scraping -----------------------------------------------------------------------

class MemwardenCollector:
    """Merges the directory's files; refreshes live workers' memory from /proc, and
    names each worker's series by its slot (``slot="0"``), not its pid, so that a
    recycle continues a series instead of starting one.

    Register it in a registry of your own to add memwarden's metrics to an
    existing endpoint (it reads every metric in the directory, yours too):
    ``registry.register(MemwardenCollector(os.environ["PROMETHEUS_MULTIPROC_DIR"]))``.
    """

    def __init__(self, directory: str, proc_root: str = "/proc", sys_root: str = "/sys",
                 *, fresh: bool = True, footprint: str = "rss", descendants: bool = True
                 ) -> None:
        self.directory = directory
        self.footprint = footprint
        self.proc_root = proc_root
        self.sys_root = sys_root
        self.fresh = fresh
        self.descendants = descendants
        self._probes: dict[int, _probe.Probe] = {}  # each logs a degraded probe once
        self._own = _probe.Probe(proc_root, sys_root)

    def collect(self) -> Iterator[Metric]:
        multiprocess = _untyped("prometheus_client.multiprocess")

        with _locked(self.directory, shared=True, timeout=30.0) as held:
            if not held:
                raise RuntimeError(f"could not lock {self.directory} for a scrape")
            files = glob.glob(os.path.join(self.directory, "*.db"))
            metrics = list(multiprocess.MultiProcessCollector.merge(files, accumulate=True))
            slots = pids_by_slot(self.directory)
        proc_ok = os.path.isdir(f"{self.proc_root}/{os.getpid()}")
        readings: dict[int, dict[str, int] | None] = {}
        for metric in metrics:
            if metric.type == "gauge" and metric.name.startswith("memwarden_worker_"):
                self._refresh(metric, readings, proc_ok)
                _by_slot(metric, slots)
            yield metric
        for pid in [p for p in self._probes if p not in readings]:
            del self._probes[pid]
        yield from _worker_pids(slots, readings)
        yield from self._cgroup()

    def _refresh(self, metric: Metric, readings: dict[int, dict[str, int] | None],
                 proc_ok: bool) -> None:
        kept = []
        for sample in metric.samples:
            raw = sample.labels.get("pid", "")
            if not (proc_ok and raw.isdigit()):
                kept.append(sample)
                continue
            pid = int(raw)
            if pid not in readings:
                readings[pid] = self._read(pid)
            now = readings[pid]
            if now is None:
                continue  # the process is gone: so is its series
            if self.fresh and metric.name in now:
                sample = sample._replace(value=float(now[metric.name]))
            kept.append(sample)
        metric.samples = kept

    def _read(self, pid: int) -> dict[str, int] | None:
        """Memory of one worker now, or None when its process no longer exists."""
        if not os.path.isdir(f"{self.proc_root}/{pid}"):
            return None
        out: dict[str, int] = {}
        if not self.fresh:
            return out
        try:
            with open(f"{self.proc_root}/{pid}/statm", "rb") as fh:
                out[RSS] = int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
        except (OSError, ValueError, IndexError):
            pass
        p = self._probes.get(pid)
        if p is None:
            p = self._probes[pid] = _probe.Probe(self.proc_root, self.sys_root, pid=pid)
        rollup = p.smaps_rollup()
        if rollup is not None:
            out[PSS] = rollup.pss_bytes
            out[USS] = rollup.uss_bytes
        if self.descendants:
            desc = p.descendants_memory()
            if desc is not None and desc.pss_bytes is not None:
                out[DESCENDANTS_PSS] = desc.pss_bytes
        total = footprint(self.footprint, out.get(RSS), out.get(PSS), out.get(DESCENDANTS_PSS),
                          self.descendants)
        if total is not None and (DESCENDANTS_PSS in out or not self.descendants):
            out[FOOTPRINT] = total
        return out

    def _cgroup(self) -> Iterator[Metric]:
        from prometheus_client.metrics_core import CounterMetricFamily, GaugeMetricFamily

        group = self._own.cgroup_memory()
        if group is None:
            return
        if group.current_bytes is not None:
            yield GaugeMetricFamily(CGROUP_USAGE, _help(CGROUP_USAGE), group.current_bytes)
        if group.limit_bytes is not None:
            yield GaugeMetricFamily(CGROUP_LIMIT, _help(CGROUP_LIMIT), group.limit_bytes)
        if group.oom_kills is not None:
            yield CounterMetricFamily(CGROUP_OOM_KILLS, _help(CGROUP_OOM_KILLS),
                                      group.oom_kills)



def _by_slot(metric: Metric, slots: dict[int, int]) -> None:
    """Replace each sample's ``pid`` label with its worker's ``slot``. A pid without
    a slot (one that could not take one, or a process not started as a worker)
    keeps its pid label."""
    renamed = []
    for sample in metric.samples:
        raw = sample.labels.get("pid", "")
        slot = slots.get(int(raw)) if raw.isdigit() else None
        if slot is not None:
            labels = {k: v for k, v in sample.labels.items() if k != "pid"}
            labels[SLOT] = str(slot)
            sample = sample._replace(labels=labels)
        renamed.append(sample)
    metric.samples = renamed


def _worker_pids(slots: dict[int, int], readings: dict[int, dict[str, int] | None]
                 ) -> Iterator[Metric]:
    """Which pid holds each slot now: the way from a series to the request lines."""
    from prometheus_client.metrics_core import GaugeMetricFamily

    live = sorted((slot, pid) for pid, slot in slots.items()
                  if pid in readings and readings[pid] is not None)
    if not live:
        return
    family = GaugeMetricFamily(WORKER_PID, _help(WORKER_PID), labels=[SLOT])
    for slot, pid in live:
        family.add_metric([str(slot)], pid)
    yield family


def make_registry(directory: str | None = None, proc_root: str = "/proc",
                  sys_root: str = "/sys", *, footprint: str = "rss", descendants: bool = True
                  ) -> CollectorRegistry:
    """A registry holding only the multiprocess directory's metrics (never the global one)."""
    _client()
    from prometheus_client import CollectorRegistry

    registry = CollectorRegistry(auto_describe=False)
    registry.register(MemwardenCollector(directory or _directory(), proc_root, sys_root,
                                         footprint=footprint, descendants=descendants))
    return registry


_registry: list[CollectorRegistry] = []


def _worker_registry() -> CollectorRegistry:
    if not _registry:
        s = Settings.from_env()
        kind, descendants = footprint_kind(s)
        _registry.append(make_registry(None, s.proc_root, s.sys_root, footprint=kind,
                                       descendants=descendants))
    return _registry[0]


Environ = dict[str, Any]
StartResponse = Callable[..., Any]
WSGIApp = Callable[[Environ, StartResponse], Iterable[bytes]]
Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]
