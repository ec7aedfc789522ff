"""Prometheus: per-worker memory gauges that stay correct under gunicorn prefork.

prometheus_client's multiprocess mode, done the way a recycling server needs:

- Every worker writes its values to mmap files in one directory
  (``PROMETHEUS_MULTIPROC_DIR``), and whichever process answers a scrape
  merges them. The master sets the directory before anything imports
  prometheus_client (the library picks its mode at import) and empties it
  once, at start.
- Per-worker gauges use the ``liveall`` mode: one file per worker, keyed by
  pid. A scrape labels each worker's series with its slot instead
  (:mod:`memwarden.export.prom_slots`: 0 to N-1, reused by the replacement),
  so that recycles do not make new series. When a worker dies the master
  (``child_exit``) deletes its gauge files, so its series leave the scrape at
  once, until its replacement takes the slot.
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
import glob
import logging
import os
import sys
import tempfile
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from memwarden import events
from memwarden.export import metrics_server as _metrics_server
from memwarden.export import prom_slots as _prom_slots
from memwarden.export import sinks as _exporters
from memwarden.export.metrics_server import main
from memwarden.export.prom_collect import (
    ASGIApp,
    Environ,
    Receive,
    Scope,
    Send,
    StartResponse,
    WSGIApp,
    _worker_registry,
)
from memwarden.export.prom_collect import MemwardenCollector as MemwardenCollector
from memwarden.export.prom_collect import make_registry as make_registry
from memwarden.export.prom_files import _directory, _Master
from memwarden.export.prom_files import _locked as _locked
from memwarden.export.prom_files import compact as compact
from memwarden.export.prom_files import mark_worker_dead as mark_worker_dead
from memwarden.export.prom_metrics import ENV_DIR as ENV_DIR
from memwarden.export.prom_metrics import METRICS as METRICS
from memwarden.export.prom_metrics import REQUESTS as REQUESTS
from memwarden.export.prom_metrics import _client, footprint_kind
from memwarden.export.prom_metrics import footprint as footprint
from memwarden.export.prom_sink import _Sink as _Sink
from memwarden.export.prom_sink import _sink, on_event
from memwarden.see import census as _census
from memwarden.see import meter as _meter
from memwarden.settings import Settings
from memwarden.system import probe as _probe

if TYPE_CHECKING:
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
    events.subscribe(on_event)  # workers' deaths by cause, seen in the master
    return directory


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



def start_worker(settings: Settings) -> None:
    """In a new worker (``post_fork``): publish a first census, then on the meter's cadence."""
    _client()
    _prom_slots.claim(_directory())  # before any gauge: the scrape names it by slot
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
