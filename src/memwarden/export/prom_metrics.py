"""Prometheus metric definitions: names, help texts, the footprint a worker
reports, and loading prometheus_client in multiprocess mode."""

from __future__ import annotations

import logging
from typing import Any

from memwarden.export import sinks as _exporters
from memwarden.settings import Settings

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
CENSUS_COUNT = "memwarden_worker_census_count"
CENSUS_BYTES = "memwarden_worker_census_bytes"
WORKER_PID = "memwarden_worker_pid"
DEATHS = "memwarden_worker_deaths"
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
    FOOTPRINT: ("gauge", "The worker's footprint as recycling sees it: its own RSS (PSS "
                         "with MEMWARDEN_FOOTPRINT=pss) plus its descendants' PSS."),
    RSS: ("gauge", "Resident set size of the worker process."),
    PSS: ("gauge", "Proportional set size of the worker (shared pages divided among sharers)."),
    USS: ("gauge", "Unique set size of the worker (pages no other process maps)."),
    DESCENDANTS_PSS: ("gauge", "Summed PSS of the worker's descendant processes."),
    BLOCKS: ("gauge", "Memory blocks allocated by the worker's Python allocator."),
    CENSUS_COUNT: ("gauge", "Live resources of one kind in the worker (threads, fds, "
                            "children, asyncio tasks, tracked objects...)."),
    CENSUS_BYTES: ("gauge", "Census readings in bytes (census keys ending in _bytes)."),
    WORKER_PID: ("gauge", "The pid of the worker holding the slot now."),
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
    DEATHS + "_total": ("counter", "Workers that died by cause: timeout (gunicorn's worker "
                                   "timeout) and signal with a request in flight, oom_kill "
                                   "(every OOM kill the master saw)."),
    CGROUP_USAGE: ("gauge", "Memory in use by the server's cgroup."),
    CGROUP_LIMIT: ("gauge", "Memory limit of the server's cgroup (absent when unlimited)."),
    CGROUP_OOM_KILLS + "_total": ("counter", "OOM kills the kernel counted in the server's "
                                             "cgroup."),
}

# Census keys exported as their own gauges, or not at all (gc.* names churn).
_NOT_KINDS = frozenset({"blocks", "children_pss_bytes"})
# The label that names a worker: its slot, reused across recycles (prom_slots).
SLOT = "slot"


def census_metric(kind: str) -> str:
    """The gauge a census key goes to: bytes apart from counts, so that no series
    name mixes units (a key in bytes ends in ``_bytes``)."""
    return CENSUS_BYTES if kind.endswith("_bytes") else CENSUS_COUNT


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
