"""Hold's part of the gunicorn hooks: recycling, shedding, no orphans.

``memwarden.gunicorn_conf`` calls these from its hooks; a config of your own
should call them from the hooks of the same name (or call
``memwarden.gunicorn_conf``'s). What runs where:

- ``when_ready`` (master): start the :class:`~memwarden.hold.watchdog.Watchdog`.
- ``pre_fork`` (master): recycle-slot descriptions for the new worker; note
  when it forks.
- ``post_fork`` (worker): keep its own slot descriptions and in-flight records;
  note the worker count; start allocation-site sampling when asked
  (:mod:`memwarden.alloc_sites`).
- ``post_worker_init`` (worker): shedding and activity middleware, the
  recycler and its idle timer; release the slot of the recycle this worker
  replaces.
- ``pre_request`` / ``post_request`` (worker): requests in flight, for sync
  and gthread workers (an ASGI app gets a middleware instead).
- ``worker_abort`` (worker, on gunicorn's timeout SIGABRT): keep the request
  in flight for the master's ``death_in_flight`` line, by its route template.
- ``worker_exit`` (worker): terminate the worker's descendants.
- ``child_exit`` (master): log a killed worker, end its orphans, pass its
  slot on.
- ``on_exit`` (master): finish pending kills, remove the slot directory.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
from typing import Any

from memwarden import events
from memwarden.footprint import FootprintSampler, cgroup_working_set
from memwarden.hold import perform as actions
from memwarden.hold.policy import limit_basis, resolve_limits
from memwarden.hold.shed import AsgiShedMiddleware, Shedder, ShedMiddleware
from memwarden.hold.slots import RecycleSlots
from memwarden.hold.watchdog import Watchdog
from memwarden.hold.worker import AsgiActivity, Recycler
from memwarden.settings import Settings, warn_unknown_variables

__all__ = [
    "child_exit",
    "on_exit",
    "post_fork",
    "post_request",
    "post_worker_init",
    "pre_fork",
    "pre_request",
    "when_ready",
    "worker_abort",
    "worker_exit",
    "wrap_app",
]

_log = logging.getLogger("memwarden.recycle")

# Master: the watchdog. Workers inherit the module over fork and take only
# the recycle slots from it, in post_fork.
_watchdog: Watchdog | None = None
# Worker: its parts, made after fork.
_slots: RecycleSlots | None = None
_workers = 1
_recycler: Recycler | None = None


# -- master -----------------------------------------------------------------------------

def when_ready(server: Any, settings: Settings) -> None:
    global _watchdog
    # The settings loaded before gunicorn set its logging up: their warning waited.
    warn_unknown_variables()
    # tracemalloc and sysconfig come with allocation sites: only when asked for,
    # or every worker forked from this master would carry them.
    if "memwarden.alloc_sites" in sys.modules or os.environ.get(
            "MEMWARDEN_TRACEMALLOC", "").strip():
        from memwarden import alloc_sites

        alloc_sites.configure()
    _watchdog = Watchdog(settings)
    _watchdog.start(server)


def pre_fork(server: Any, worker: Any) -> None:
    if _watchdog is not None:
        _watchdog.pre_fork(worker)


def child_exit(server: Any, worker: Any) -> None:
    if _watchdog is not None:
        _watchdog.child_exit(worker)


def on_exit(server: Any) -> None:
    if _watchdog is not None:
        _watchdog.stop()


# -- worker -----------------------------------------------------------------------------

def post_fork(server: Any, worker: Any) -> None:
    global _watchdog, _slots, _workers, _recycler
    _recycler = None
    n = getattr(server, "num_workers", None)
    _workers = n if isinstance(n, int) and n > 0 else 1
    watchdog, _watchdog = _watchdog, None
    _slots = watchdog.slots if watchdog is not None else None
    if _slots is not None:
        _slots.adopt(getattr(worker, "age", -1))
    index = watchdog.inflight.index(worker) if watchdog is not None else None
    if watchdog is not None:
        watchdog.inflight.adopt(worker)
    alloc_sites = sys.modules.get("memwarden.alloc_sites")  # configured by the master
    if alloc_sites is not None:
        alloc_sites.start_in_worker(index)


def wrap_app(worker: Any, app: Any, settings: Settings, asgi: bool) -> Any:
    """Build this worker's recycler and shedder; return the app with their middleware."""
    global _recycler
    from memwarden.see import census, meter
    from memwarden.system import probe as _probe

    p = _probe.current()
    cgroup = p.cgroup_memory()
    cgroup_limit = cgroup.limit_bytes if cgroup is not None else None
    sampler = FootprintSampler(settings.footprint, settings.footprint_descendants,
                               settings.footprint_every, settings.footprint_seconds)
    health = frozenset(settings.health_paths)

    shedder = Shedder(settings, sampler, workers=_workers, cgroup_limit=cgroup_limit,
                      cgroup_reader=lambda: cgroup_working_set(settings.sys_root))
    if shedder.enabled:
        # Dry-run counts under its own name, never as requests really refused.
        census.gauge("shed.would_requests" if shedder.mode == actions.DRY_RUN
                     else "shed.requests", shedder.shed_count)
        app = (AsgiShedMiddleware(app, shedder, health) if asgi
               else ShedMiddleware(app, shedder, health))
        actions.emit(logging.getLogger("memwarden.shed"), "shed_thresholds",
                     {"mode": settings.shed, **shedder.thresholds()})

    if settings.recycle != actions.OFF:
        limits, notes = resolve_limits(settings, cgroup_limit, _workers)
        for note in notes:
            _log.warning("memwarden: %s", note)
        state = {"workers": _workers, "cgroup_limit_bytes": cgroup_limit,
                 "footprint": settings.footprint, "limit": limit_basis(settings, limits),
                 **limits.fields()}
        if not limits.active:
            # Nothing to watch; the master said why, once, at start.
            actions.emit(_log, "limits", state)
        else:
            recycler = Recycler(limits, sampler, slots=_slots, mode=settings.recycle,
                                health_paths=health)
            _recycler = recycler
            meter.add_observer(recycler.on_request)
            if settings.recycle == actions.DRY_RUN:
                census.gauge("recycle.would", recycler.would_recycles)
            if asgi and limits.watches_memory:
                app = AsgiActivity(app, recycler)
            actions.emit(_log, "limits", state)
            events.publish(events.WorkerLimit(limits.soft_bytes or limits.hard_bytes))
    return app


def post_worker_init(worker: Any, settings: Settings, asgi: bool) -> None:
    """After the app is wrapped: the replaced worker's recycle is over; start timers."""
    if _slots is not None:
        _slots.booted()
    if _recycler is not None:
        _recycler.start_idle_timer()
    if asgi and "uvicorn" in type(worker).__module__:
        _exit_cleanly_on_signals()


def _exit_cleanly_on_signals() -> None:
    # uvicorn shuts down gracefully on SIGTERM/SIGINT, then restores the handler
    # it found and raises the signal again. UvicornWorker leaves SIG_DFL there,
    # so the worker died by that signal and gunicorn's worker_exit hook (which
    # ends the worker's descendants) never ran. Found a SystemExit instead, it
    # exits normally through gunicorn's own cleanup.
    def leave(signum: int, frame: Any) -> None:
        raise SystemExit(0)

    for sig in (signal.SIGTERM, signal.SIGINT):
        if signal.getsignal(sig) in (signal.SIG_DFL, None):
            signal.signal(sig, leave)


def pre_request(worker: Any, req: Any) -> None:
    recycler = _recycler
    if recycler is not None:
        recycler.begin(getattr(req, "path", None))


def post_request(worker: Any, req: Any) -> None:
    recycler = _recycler
    if recycler is not None:
        recycler.end(getattr(req, "path", None))


def worker_abort(worker: Any) -> None:
    from memwarden.see import inflight_slot

    inflight_slot.abort()


def worker_exit(server: Any, worker: Any, settings: Settings) -> None:
    # gunicorn also calls worker_exit in the master, for a worker that vanished
    # (kill_worker on ESRCH): only a worker ends its own descendants.
    if getattr(worker, "pid", None) != os.getpid():
        return
    if _recycler is not None:
        _recycler.close()
    if settings.orphans != actions.OFF:
        from memwarden.hold.orphans import terminate_descendants

        terminate_descendants(settings.orphan_grace_seconds, settings.orphans,
                              settings.proc_root)
