"""Export and alert: per-worker metrics for Prometheus and OpenTelemetry.

Both exporters are optional extras (``memwarden[prometheus]``,
``memwarden[otel]``), imported only when switched on by their setting
(``MEMWARDEN_PROMETHEUS``, ``MEMWARDEN_OTEL``). Importing this package
imports neither and changes nothing.

Two kinds of entry point:

- The parts that act on memory (recycling, shedding, pool limits) publish
  their events on the bus, :mod:`memwarden.events` (``events.Recycle(reason)``,
  ``events.Shed()``, ``events.PoolRefusal(pool)``, ``events.OomKill()``, each
  with ``dry_run=True`` for what was decided but not done); the exporters
  subscribe to it. :func:`set_worker_limit` and :func:`declare_pool` (which a
  pool calls when made so that its refusal counters start at 0) publish theirs.
  Publishing is a cheap no-op while no exporter runs, may happen in a worker or
  in the gunicorn master, and never raises.
- gunicorn hooks, each a no-op unless an exporter is on. Call them from the
  hooks of the same name in your gunicorn config (``memwarden.gunicorn_conf``):
  :func:`setup_master` once in the master before the app is imported (at
  config load or in ``nworkers_changed``; never in a worker: it empties the
  metrics directory), :func:`on_starting` (which runs it if nothing did),
  :func:`post_fork`, :func:`post_worker_init` (after the request tracker
  wrapped the app, so that scrapes are not measured), :func:`worker_exit`,
  :func:`child_exit` and :func:`on_exit`.
"""

from __future__ import annotations

import logging
import os
from typing import Any

from memwarden import events
from memwarden.export.sinks import RECYCLE_REASONS as RECYCLE_REASONS
from memwarden.export.sinks import MissingExtraError, require
from memwarden.export.sinks import Sink as Sink
from memwarden.export.sinks import add_sink as add_sink
from memwarden.export.sinks import remove_sink as remove_sink
from memwarden.export.sinks import worker_limit as worker_limit
from memwarden.settings import Settings

__all__ = [
    "MissingExtraError",
    "check_extras",
    "child_exit",
    "declare_pool",
    "on_exit",
    "on_starting",
    "post_fork",
    "post_worker_init",
    "require",
    "set_worker_limit",
    "setup_master",
    "worker_exit",
]

_log = logging.getLogger("memwarden.exporters")


# -- events the exporters count (hold publishes its own on memwarden.events) ------

def set_worker_limit(limit_bytes: int | None) -> None:
    """The footprint at which this worker is recycled (``memwarden_worker_limit_bytes``).

    Called in a worker it applies to that worker; called in the master before
    the workers fork, it applies to every worker forked afterwards.
    """
    events.publish(events.WorkerLimit(limit_bytes))


def declare_pool(pool: str) -> None:
    """Create a new pool's refusal counters at 0 (``memwarden_pool_refusals_total`` and
    ``memwarden_would_pool_refusals_total``, ``{pool=...}``), so that increase() sees
    its first refusal. :class:`memwarden.hold.pool.Pool` publishes it when made."""
    events.publish(events.PoolDeclared(pool))


# -- gunicorn hooks ------------------------------------------------------------------

def _settings(settings: Settings | None) -> Settings:
    return settings if settings is not None else Settings.from_env()


def setup_master(settings: Settings | None = None) -> None:
    """In the master, at start: prepare the Prometheus multiprocess directory.

    It must run before anything imports prometheus_client (the library picks
    its multiprocess mode at import) and before the workers fork: from the
    config file at load, from ``nworkers_changed`` (gunicorn calls it before
    a preloaded app is imported), or at the latest from :func:`on_starting`,
    which calls it when nothing did. It empties the directory, so never call
    it in a worker. A missing extra raises :class:`MissingExtraError` here, at
    start, not mid-request.
    """
    s = _settings(settings)
    if s.prometheus:
        from memwarden.export import prometheus

        prometheus.setup_master(s)
    if s.otel:
        from memwarden.export import otel

        otel.setup_master()


def check_extras(settings: Settings | None = None) -> None:
    """Raise :class:`MissingExtraError` when a switched-on exporter's extra is not
    installed. Finds the packages without importing them: no side effects."""
    s = _settings(settings)
    if s.prometheus:
        require("prometheus_client", "prometheus", load=False)
    if s.otel:
        require("opentelemetry.sdk.metrics", "otel", load=False)
    if s.newrelic == "on":
        require("newrelic.agent", "newrelic", load=False)


def _service_name(server_or_worker: Any) -> str | None:
    name = getattr(getattr(server_or_worker, "cfg", None), "proc_name", None)
    return name if isinstance(name, str) and name else None


def on_starting(server: Any, settings: Settings | None = None) -> None:
    """Master start: prepare the metrics directory if :func:`setup_master` was not
    called, run the small metrics server beside the master, if configured, and
    export the master's event counters at 0 (bounded: a few seconds at most)."""
    s = _settings(settings)
    # Once per master; a missing extra raises: no start without what was asked for.
    setup_master(s)
    if s.prometheus and not s.prometheus_port and not s.prometheus_path:
        _log.warning("memwarden keeps Prometheus metrics but serves them nowhere: "
                     "MEMWARDEN_PROMETHEUS_PORT is 0 and MEMWARDEN_PROMETHEUS_PATH is empty")
    elif s.prometheus and s.prometheus_path:
        _log.info("memwarden serves Prometheus metrics on the app's own port at %s, ahead "
                  "of the app's authentication", s.prometheus_path)
    if s.prometheus and s.prometheus_port:
        try:
            from memwarden.export import prometheus

            prometheus.start_server_process(s)
        except Exception:
            _log.exception("memwarden could not start the Prometheus metrics server")
    if s.otel:
        try:
            from memwarden.export import otel

            otel.start_master(_service_name(server))
        except Exception:
            _log.exception("memwarden could not start the master's OTLP exporter")


def post_fork(server: Any, worker: Any, settings: Settings | None = None) -> None:
    """In each new worker: start its exporters (each worker its own identity)."""
    s = _settings(settings)
    if s.prometheus:
        try:
            from memwarden.export import prometheus

            prometheus.start_worker(s)
        except Exception:
            _log.exception("memwarden could not start the Prometheus exporter in worker %d",
                           os.getpid())
    if s.otel:
        try:
            from memwarden.export import otel

            otel.start_worker(s, _service_name(worker))
        except Exception:
            _log.exception("memwarden could not start the OTLP exporter in worker %d",
                           os.getpid())
    if s.newrelic != "off":
        try:
            from memwarden.export import newrelic

            newrelic.start_worker(s)
        except Exception:
            _log.exception("memwarden could not start the New Relic exporter in worker %d",
                           os.getpid())


def post_worker_init(worker: Any, settings: Settings | None = None) -> None:
    """Serve the metrics path from the worker's app (outside the request tracker), and
    start New Relic transactions outside the tracker (inside the metrics path)."""
    s = _settings(settings)
    if s.newrelic != "off":
        from memwarden.export import newrelic

        newrelic.post_worker_init(worker)
    if not (s.prometheus and s.prometheus_path):
        return
    app = getattr(worker, "wsgi", None)
    if app is None:
        return
    try:
        from memwarden.app_kind import is_asgi_app, is_asgi_worker
        from memwarden.export import prometheus

        asgi = is_asgi_worker(worker) or is_asgi_app(app)
        worker.wsgi = prometheus.metrics_route(app, s.prometheus_path, asgi=asgi)
    except Exception:
        _log.exception("memwarden could not add the Prometheus metrics route")


def _if_loaded(module: str, function: str, failure: str, *args: Any) -> None:
    """Call ``memwarden.export.<module>.<function>(*args)`` if that exporter was
    imported (so it runs); a failure is logged as "could not <failure>"."""
    import sys

    loaded = sys.modules.get(f"memwarden.export.{module}")
    if loaded is None:
        return
    try:
        getattr(loaded, function)(*args)
    except Exception:
        _log.exception("memwarden could not %s", failure)


def worker_exit(server: Any, worker: Any) -> None:
    """Worker exit: send the last OTLP export (bounded in time)."""
    _if_loaded("otel", "shutdown", "flush the OTLP exporter")


def child_exit(server: Any, worker: Any) -> None:
    """In the master, after a worker died: drop its live gauges, fold its counters."""
    pid = getattr(worker, "pid", None)
    if isinstance(pid, int):
        _if_loaded("prometheus", "mark_worker_dead", f"clean the metrics of worker {pid}", pid)


def on_exit(server: Any) -> None:
    """Master exit: stop the metrics server and flush the master's OTLP counters."""
    _if_loaded("prometheus", "master_exit", "stop the Prometheus metrics server")
    _if_loaded("otel", "shutdown", "flush the OTLP exporter")
