"""Prometheus: per-worker memory gauges that stay correct under gunicorn prefork.

prometheus_client's multiprocess mode, done the way a recycling server needs:

- Every worker writes its values to mmap files in one directory
  (``PROMETHEUS_MULTIPROC_DIR``), and whichever process answers a scrape
  merges them. The master sets the directory before anything imports
  prometheus_client (the library picks its mode at import) and empties it
  once, at start.
- Per-worker gauges use the ``liveall`` mode: one series per worker, labelled
  ``pid``. When a worker dies the master (``child_exit``) deletes its gauge
  files, so its series leave the scrape at once.
- Counter and histogram files of dead workers are not deleted (the totals
  would go backwards): the master folds them into one ``*_archive.db`` file per
  type. A server that recycles workers all day therefore keeps a handful of
  files instead of thousands, and scrapes stay fast (prometheus_client
  issues #204, #275, #367). Folding and scraping take one lock file, shared by
  scrapes and exclusive for the fold, so a scrape never reads a file that the
  fold just removed, nor counts a dead worker twice.
- Gauges are written on the census cadence, never per request; the only
  per-request work is one counter increment (~1.5 us). At scrape time the
  collector refreshes the memory gauges of every live worker from /proc
  (RSS from statm, PSS from smaps_rollup, descendants' PSS), so an idle worker
  is current too, and drops the series of a worker whose process is gone.

The metrics are served by a small server beside the master on
``MEMWARDEN_PROMETHEUS_HOST:PORT`` (127.0.0.1:9410 by default;
:mod:`memwarden.export.metrics_server`), and, only when
``MEMWARDEN_PROMETHEUS_PATH`` is set, by every worker on the app's own port at
that path, before the app (and its authentication) sees the request.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import glob
import logging
import math
import os
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterable, Iterator, MutableMapping
from typing import TYPE_CHECKING, Any

from memwarden.export import metrics_server as _metrics_server
from memwarden.export import sinks as _exporters
from memwarden.export.metrics_server import main
from memwarden.see import census as _census
from memwarden.see import meter as _meter
from memwarden.settings import Settings
from memwarden.system import probe as _probe

if TYPE_CHECKING:
    from prometheus_client.metrics_core import Metric
    from prometheus_client.registry import CollectorRegistry

__all__ = [
    "METRICS",
    "MemwardenCollector",
    "compact",
    "main",
    "make_registry",
    "mark_worker_dead",
    "master_exit",
    "metrics_route",
    "setup_master",
    "start_server_process",
    "start_worker",
    "stop_server_process",
]

_log = logging.getLogger("memwarden.exporters.prometheus")

ENV_DIR = "PROMETHEUS_MULTIPROC_DIR"
LOCK_FILE = ".memwarden.lock"
_ARCHIVED_TYPES = ("counter", "histogram", "summary")

FOOTPRINT = "memwarden_worker_footprint_bytes"
RSS = "memwarden_worker_rss_bytes"
PSS = "memwarden_worker_pss_bytes"
USS = "memwarden_worker_uss_bytes"
DESCENDANTS_PSS = "memwarden_worker_descendants_pss_bytes"
BLOCKS = "memwarden_worker_allocated_blocks"
CENSUS = "memwarden_worker_census"
LIMIT = "memwarden_worker_limit_bytes"
REQUESTS = "memwarden_requests"
RECYCLES = "memwarden_recycles"
SHED = "memwarden_shed_requests"
WOULD_RECYCLES = "memwarden_would_recycles"
WOULD_SHED = "memwarden_would_shed_requests"
POOL_REFUSALS = "memwarden_pool_refusals"
WOULD_POOL_REFUSALS = "memwarden_would_pool_refusals"
OOM_KILLS = "memwarden_oom_kills"
CGROUP_USAGE = "memwarden_cgroup_memory_usage_bytes"
CGROUP_LIMIT = "memwarden_cgroup_memory_limit_bytes"
CGROUP_OOM_KILLS = "memwarden_cgroup_oom_kills"

# Every series memwarden exposes (exposition names), with its type and meaning.
METRICS: dict[str, tuple[str, str]] = {
    FOOTPRINT: ("gauge", "The worker's footprint as recycling sees it: its own RSS (or PSS, "
                         "MEMWARDEN_FOOTPRINT=pss) plus its descendants' PSS."),
    RSS: ("gauge", "Resident set size of the worker process."),
    PSS: ("gauge", "Proportional set size of the worker (shared pages divided among sharers)."),
    USS: ("gauge", "Unique set size of the worker (pages no other process maps)."),
    DESCENDANTS_PSS: ("gauge", "Summed PSS of the worker's descendant processes."),
    BLOCKS: ("gauge", "Memory blocks allocated by the worker's Python allocator."),
    CENSUS: ("gauge", "Live resources of one kind in the worker (threads, fds, children, "
                      "asyncio tasks, tracked objects...)."),
    LIMIT: ("gauge", "Footprint at which the worker is recycled."),
    REQUESTS + "_total": ("counter", "Requests measured, all workers of this server."),
    RECYCLES + "_total": ("counter", "Workers recycled, by reason."),
    SHED + "_total": ("counter", "Requests refused by memory-based load shedding."),
    WOULD_RECYCLES + "_total": ("counter", "Recycles decided in dry-run (not done), by reason."),
    WOULD_SHED + "_total": ("counter", "Requests dry-run shedding would have refused."),
    POOL_REFUSALS + "_total": ("counter", "Acquires a bounded resource pool refused with "
                                          "PoolTimeout, by pool."),
    WOULD_POOL_REFUSALS + "_total": ("counter", "Acquires dry-run pool limits would have "
                                                "refused (served beyond max_size), by pool."),
    OOM_KILLS + "_total": ("counter", "Workers killed by the kernel's OOM killer, as seen "
                                      "by the master."),
    CGROUP_USAGE: ("gauge", "Memory in use by the server's cgroup."),
    CGROUP_LIMIT: ("gauge", "Memory limit of the server's cgroup (absent when unlimited)."),
    CGROUP_OOM_KILLS + "_total": ("counter", "OOM kills the kernel counted in the server's "
                                             "cgroup."),
}

# Census keys exported as their own gauges, or not at all (gc.* names churn).
_NOT_KINDS = frozenset({"blocks", "children_pss_bytes"})


def _client() -> None:
    _exporters.require("prometheus_client", "prometheus")


def _untyped(module: str) -> Any:
    """A prometheus_client module whose functions carry no annotations."""
    import importlib

    return importlib.import_module(module)


def _help(name: str) -> str:
    return METRICS.get(name, METRICS.get(name + "_total", ("", name)))[1]


def footprint(kind: str, rss: int | None, pss: int | None, descendants_pss: int | None,
              descendants: bool = True) -> int | None:
    """Own memory (``kind``: "rss" or "pss", the other one if it is missing) plus the
    descendants' PSS: the same sum as memwarden.footprint, which recycling compares."""
    own = (pss if pss is not None else rss) if kind == "pss" else (
        rss if rss is not None else pss)
    if own is None:
        return None
    return own + ((descendants_pss or 0) if descendants else 0)


def footprint_kind(settings: Settings) -> tuple[str, bool]:
    """What the footprint counts (MEMWARDEN_FOOTPRINT, MEMWARDEN_FOOTPRINT_DESCENDANTS)."""
    kind = getattr(settings, "footprint", "rss")
    return ("pss" if kind == "pss" else "rss"), bool(
        getattr(settings, "footprint_descendants", True))


# -- the master ------------------------------------------------------------------------

class _Master:
    pid = -1
    directory = ""
    made_directory = False  # a temporary one, removed when the master exits


def setup_master(settings: Settings) -> str:
    """Choose and empty the multiprocess directory, once per master; returns it."""
    # Found, not imported: prometheus_client picks its mode when first imported.
    _exporters.require("prometheus_client", "prometheus", load=False)
    if _Master.pid == os.getpid():
        return _Master.directory  # gunicorn re-reads a config file on HUP: empty it once
    directory = settings.prometheus_dir or os.environ.get(ENV_DIR) or ""
    _Master.made_directory = not directory
    if not directory:
        directory = tempfile.mkdtemp(prefix="memwarden-prometheus-")
    directory = os.path.abspath(directory)
    os.makedirs(directory, exist_ok=True)
    os.environ[ENV_DIR] = directory
    values: Any = sys.modules.get("prometheus_client.values")
    if values is not None and not getattr(values.ValueClass, "_multiprocess", False):
        # Imported before the directory was set: metrics made from now on would
        # live in one process only. Switch the class the library would have chosen.
        _log.warning("prometheus_client was imported before memwarden set %s; metrics "
                     "created before now are per process", ENV_DIR)
        values.ValueClass = values.MultiProcessValue()
    removed = 0
    for path in glob.glob(os.path.join(directory, "*.db")) + glob.glob(
            os.path.join(directory, ".*.tmp")):
        with contextlib.suppress(FileNotFoundError):
            os.remove(path)
            removed += 1
    _Master.pid = os.getpid()
    _Master.directory = directory
    _log.info("prometheus multiprocess directory ready",
              extra={"directory": directory, "removed_files": removed})
    # The master's counters start at 0, so that increase() sees the first event.
    _sink.ensure_counters()
    _exporters.add_sink(_sink)
    return directory


def _directory() -> str:
    directory = os.environ.get(ENV_DIR)
    if not directory:
        raise RuntimeError(f"{ENV_DIR} is not set: call memwarden.exporters.setup_master() "
                           "in the gunicorn master before the workers fork")
    return directory


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@contextlib.contextmanager
def _locked(directory: str, *, shared: bool, timeout: float = 5.0) -> Iterator[bool]:
    """Hold the directory's lock; yields False if it could not be had in time."""
    fd = os.open(os.path.join(directory, LOCK_FILE), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC,
                 0o644)
    try:
        mode = fcntl.LOCK_SH if shared else fcntl.LOCK_EX
        deadline = time.monotonic() + timeout
        while True:
            try:
                fcntl.flock(fd, mode | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    yield False
                    return
                time.sleep(0.005)
        try:
            yield True
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


def _split(path: str) -> tuple[str, str, int | None]:
    """(type, gauge mode or "", pid or None) from a multiprocess file name."""
    parts = os.path.basename(path)[:-3].split("_")
    if parts[0] == "gauge" and len(parts) == 3:
        typ, mode, raw = parts
    elif len(parts) == 2:
        typ, mode, raw = parts[0], "", parts[1]
    else:
        return parts[0], "", None
    return typ, mode, int(raw) if raw.isdigit() else None


def compact(directory: str, dead: Iterable[int] = (),
            alive: Callable[[int], bool] = _pid_alive) -> int:
    """Fold the files of dead processes into the archives; returns the files removed.

    Live-gauge files of dead processes are deleted (their series must go);
    counter, histogram and summary files are merged into ``<type>_archive.db``
    so that totals never go backwards. Other gauge modes are left alone.
    """
    _client()
    multiprocess = _untyped("prometheus_client.multiprocess")
    mmap_dict = _untyped("prometheus_client.mmap_dict")

    dead_set = set(dead)
    me = os.getpid()
    folds: dict[str, list[str]] = {}
    live_gauges: list[str] = []
    for path in glob.glob(os.path.join(directory, "*.db")):
        typ, mode, pid = _split(path)
        if pid is None or pid == me:
            continue
        if pid not in dead_set and alive(pid):
            continue
        if typ == "gauge" and mode.startswith("live"):
            live_gauges.append(path)
        elif typ in _ARCHIVED_TYPES:
            folds.setdefault(typ, []).append(path)
    if not folds and not live_gauges:
        return 0
    removed = 0
    with _locked(directory, shared=False) as held:
        if not held:
            _log.warning("memwarden could not lock %s to fold dead workers' metrics; "
                         "will retry at the next worker exit", directory)
            return 0
        for path in live_gauges:
            with contextlib.suppress(FileNotFoundError):
                os.remove(path)
                removed += 1
        for typ, paths in folds.items():
            archive = os.path.join(directory, f"{typ}_archive.db")
            sources = ([archive] if os.path.exists(archive) else []) + paths
            merged = multiprocess.MultiProcessCollector.merge(sources, accumulate=False)
            tmp = os.path.join(directory, f".{typ}_archive.tmp")
            with contextlib.suppress(FileNotFoundError):
                os.remove(tmp)
            out = mmap_dict.MmapedDict(tmp)
            try:
                for metric in merged:
                    for sample in metric.samples:
                        key = mmap_dict.mmap_key(metric.name, sample.name, list(sample.labels),
                                       list(sample.labels.values()), metric.documentation)
                        out.write_value(key, sample.value, 0.0)
            finally:
                out.close()
            # Rename, then delete: a scrape (shut out by the lock meanwhile) sees
            # either the old archive and the dead files or the new archive alone.
            os.replace(tmp, archive)
            for path in paths:
                with contextlib.suppress(FileNotFoundError):
                    os.remove(path)
                    removed += 1
    return removed


def mark_worker_dead(pid: int) -> None:
    """In the master (``child_exit``): remove a dead worker's series, keep its counts."""
    if _Master.pid != os.getpid():
        return
    _untyped("prometheus_client.multiprocess").mark_process_dead(pid, _Master.directory)
    removed = compact(_Master.directory, dead=(pid,))
    _log.debug("folded metrics of dead worker", extra={"worker_pid": pid, "files": removed})


# -- the metrics listener beside the master (memwarden.export.metrics_server) ---------

def start_server_process(settings: Settings) -> None:
    """Run the metrics listener on ``MEMWARDEN_PROMETHEUS_HOST:PORT`` (the master's job)."""
    if _Master.pid != os.getpid() or settings.prometheus_port == 0:
        return
    _metrics_server.start(settings, _Master.directory)


def stop_server_process(timeout: float = 5.0) -> None:
    if _Master.pid == os.getpid():
        _metrics_server.stop(timeout)


def master_exit() -> None:
    """Master exit (``on_exit``): stop the server; remove a directory memwarden made."""
    if _Master.pid != os.getpid():
        return
    stop_server_process()
    if _Master.made_directory:
        import shutil

        shutil.rmtree(_Master.directory, ignore_errors=True)


# -- the workers --------------------------------------------------------------------

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
            }
            # Every reason at 0, so that increase() sees its first recycle. Zeros
            # add nothing when files are merged or folded into the archive.
            for reason in _exporters.RECYCLE_REASONS:
                self._counters[RECYCLES].labels(reason=reason)
                self._counters[WOULD_RECYCLES].labels(reason=reason)
        return self._counters

    def gauges(self) -> dict[str, Any] | None:
        """The worker's live gauges; None in the master (it is not a worker)."""
        if self._gauges is None:
            if self._worker_pid != os.getpid():
                return None
            from prometheus_client import Gauge

            self._gauges = {
                name: Gauge(name, _help(name), ["kind"] if name == CENSUS else [],
                            multiprocess_mode="liveall", registry=None)
                for name in (FOOTPRINT, RSS, PSS, USS, DESCENDANTS_PSS, BLOCKS, CENSUS)
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
        kinds = gauges[CENSUS]
        for kind, value in census.items():
            if kind in _NOT_KINDS or kind.startswith("gc."):
                continue
            kinds.labels(kind=kind).set(value)


def _int(value: int | float | None) -> int | None:
    return None if value is None else int(value)


_sink = _Sink()


def start_worker(settings: Settings) -> None:
    """In a new worker (``post_fork``): publish a first census, then on the meter's cadence."""
    _client()
    _directory()
    _sink.start_worker()
    _sink.kind = footprint_kind(settings)
    _exporters.add_sink(_sink)
    _meter.add_observer(_sink.observe)
    _probe.configure(settings.proc_root, settings.sys_root)
    p = _probe.current()
    fields: dict[str, Any] = {"rss_bytes": p.rss_bytes(), "blocks": _probe.allocated_blocks()}
    rollup = p.smaps_rollup()
    if rollup is not None:
        fields["pss_bytes"] = rollup.pss_bytes
        fields["uss_bytes"] = rollup.uss_bytes
    _sink.publish(fields, _census.census(p, descendants=settings.census_descendants))


# -- scraping -----------------------------------------------------------------------

_FRESH = (RSS, PSS, USS, DESCENDANTS_PSS, FOOTPRINT)


class MemwardenCollector:
    """Merges the directory's files; refreshes live workers' memory from /proc.

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
        proc_ok = os.path.isdir(f"{self.proc_root}/{os.getpid()}")
        readings: dict[int, dict[str, int] | None] = {}
        for metric in metrics:
            if metric.type == "gauge" and metric.name.startswith("memwarden_worker_"):
                self._refresh(metric, readings, proc_ok)
            yield metric
        for pid in [p for p in self._probes if p not in readings]:
            del self._probes[pid]
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


class WsgiMetricsRoute:
    """Answers ``path`` with the metrics; every other request goes to the app."""

    __slots__ = ("_metrics", "app", "path")

    def __init__(self, app: WSGIApp, path: str = "/metrics",
                 registry: CollectorRegistry | None = None) -> None:
        _client()
        from prometheus_client import make_wsgi_app

        self.app = app
        self.path = path
        self._metrics = make_wsgi_app(registry or _worker_registry())

    def __call__(self, environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
        if environ.get("PATH_INFO") == self.path:
            result: Iterable[bytes] = self._metrics(environ, start_response)
            return result
        return self.app(environ, start_response)


class AsgiMetricsRoute:
    """The same for ASGI; the scrape is rendered in a thread, off the event loop."""

    __slots__ = ("_registry", "app", "path")

    def __init__(self, app: ASGIApp, path: str = "/metrics",
                 registry: CollectorRegistry | None = None) -> None:
        _client()
        self.app = app
        self.path = path
        self._registry = registry or _worker_registry()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope.get("type") != "http" or scope.get("path") != self.path:
            await self.app(scope, receive, send)
            return
        from prometheus_client.exposition import choose_encoder

        accept = ",".join(v.decode("latin-1") for k, v in scope.get("headers") or ()
                          if k.lower() == b"accept")
        encoder, content_type = choose_encoder(accept)
        loop = asyncio.get_running_loop()
        body = await loop.run_in_executor(None, encoder, self._registry)
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", content_type.encode("latin-1")),
                                (b"content-length", str(len(body)).encode("ascii"))]})
        await send({"type": "http.response.body",
                    "body": b"" if scope.get("method") == "HEAD" else body})


def metrics_route(app: Any, path: str = "/metrics", *, asgi: bool) -> Any:
    """Wrap a WSGI or ASGI app so that it serves the metrics at ``path``."""
    return AsgiMetricsRoute(app, path) if asgi else WsgiMetricsRoute(app, path)


if __name__ == "__main__":
    sys.exit(main())
