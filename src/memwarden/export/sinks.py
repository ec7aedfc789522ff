"""The exporters' side of the event bus: the sinks running in this process.

Each exporter (Prometheus, OpenTelemetry, New Relic) adds one sink when it
starts. :func:`_deliver`, subscribed to :mod:`memwarden.events` when this
module is imported, hands each protective action to every sink; a sink that
fails is logged and skipped, so one exporter cannot silence another.
"""

from __future__ import annotations

import logging
from typing import Any, Protocol

from memwarden import events
from memwarden.events import RECYCLE_REASONS as RECYCLE_REASONS

__all__ = [
    "RECYCLE_REASONS",
    "MissingExtraError",
    "Sink",
    "add_sink",
    "remove_sink",
    "require",
    "worker_limit",
]

_log = logging.getLogger("memwarden.exporters")


class MissingExtraError(ImportError):
    """An exporter was switched on without its optional dependencies."""


def require(module: str, extra: str, *, load: bool = True) -> None:
    """Import ``module`` (or, with ``load=False``, only find it) or raise an error
    naming the extra that provides it."""
    import importlib.util

    try:
        if load:
            importlib.import_module(module)
        elif importlib.util.find_spec(module) is None:
            raise ImportError(f"No module named {module!r}")
    except ImportError as exc:
        raise MissingExtraError(
            f"memwarden's {extra} exporter needs {module!r}, which is not installed: "
            f"pip install 'memwarden[{extra}]'") from exc


class Sink(Protocol):
    """What an exporter does with the events other parts of memwarden report."""

    def record_recycle(self, reason: str) -> None: ...
    def record_shed(self, count: int) -> None: ...
    def record_oom_kill(self, count: int) -> None: ...
    def set_worker_limit(self, limit_bytes: int | None) -> None: ...


# The reasons memwarden records (RECYCLE_REASONS): each exporter creates their
# series at 0 when it starts, so that increase() sees the first recycle of each.

# The exporters running in this process. Inherited over fork on purpose: an
# exporter's sink checks os.getpid() and knows whether it is the master's.
_sinks: list[Sink] = []
# Kept so that a worker forked after set_worker_limit() in the master publishes it.
_worker_limit: list[int | None] = [None]


def add_sink(sink: Sink) -> None:
    if sink not in _sinks:
        _sinks.append(sink)


def remove_sink(sink: Sink) -> None:
    if sink in _sinks:
        _sinks.remove(sink)


def worker_limit() -> int | None:
    return _worker_limit[0]


def _deliver(event: events.Event) -> None:
    if isinstance(event, events.WorkerLimit):
        _worker_limit[0] = event.limit_bytes
    if not _sinks:
        return
    match event:
        case events.Recycle(reason=reason, dry_run=dry_run):
            method = "record_would_recycle" if dry_run else "record_recycle"
            _to_sinks(method, "record a recycle", reason)
        case events.Shed(count=count, dry_run=dry_run):
            method = "record_would_shed" if dry_run else "record_shed"
            _to_sinks(method, "record shed requests", count)
        case events.PoolRefusal(pool=pool, dry_run=dry_run):
            method = "record_would_pool_refusal" if dry_run else "record_pool_refusal"
            _to_sinks(method, "record a pool refusal", pool)
        case events.PoolDeclared(pool=pool):
            _to_sinks("declare_pool", "declare a pool", pool)
        case events.OomKill(count=count):
            _to_sinks("record_oom_kill", "record an OOM kill", count)
        case events.WorkerLimit(limit_bytes=limit_bytes):
            _to_sinks("set_worker_limit", "set the worker limit", limit_bytes)


events.subscribe(_deliver)


def _to_sinks(method: str, what: str, *args: Any) -> None:
    """Call ``method`` on every running exporter's sink. A sink without it (an older
    or third-party one, without dry-run or pool counters) is skipped; one that
    fails is logged, never raised."""
    for sink in _sinks:
        try:
            getattr(sink, method, _ignore)(*args)
        except Exception:
            _log.exception("memwarden exporter could not %s", what)


def _ignore(*args: Any) -> None:
    """What a sink without the method does."""
