"""gunicorn wiring: ``gunicorn -c python:memwarden.gunicorn_conf app:app``.

Gives JSON logs, sets the probes up in each worker after fork, and wraps the
worker's app with the request memory tracker (WSGI or ASGI, by the worker
class), all from ``MEMWARDEN_*`` environment settings. To combine with your
own config, ``from memwarden.gunicorn_conf import *`` and call memwarden's
hooks from yours.

Every hook catches its own errors: an exception in ``child_exit`` would stop
the master, and no observability tool may take a server down.
"""

from __future__ import annotations

import functools
import inspect
import logging
from collections.abc import Callable
from typing import Any, TypeVar

from memwarden.logs import gunicorn_logconfig
from memwarden.settings import Settings

__all__ = [
    "child_exit",
    "logconfig_dict",
    "memwarden_settings",
    "post_fork",
    "post_worker_init",
    "worker_exit",
]

_log = logging.getLogger("memwarden.gunicorn")
F = TypeVar("F", bound=Callable[..., None])

# Validated here, in the master at start: a bad MEMWARDEN_* value stops the
# server before it serves, with a message naming the variable.
memwarden_settings = Settings.from_env()
logconfig_dict = gunicorn_logconfig(memwarden_settings.log_level, memwarden_settings.access_log)


def _guarded(hook: F) -> F:
    @functools.wraps(hook)
    def wrapper(*args: Any, **kwargs: Any) -> None:
        try:
            hook(*args, **kwargs)
        except Exception:
            try:
                _log.exception("memwarden gunicorn hook %s failed; continuing", hook.__name__)
            except Exception:
                pass
    return wrapper  # type: ignore[return-value]


def is_asgi_worker(worker: Any) -> bool:
    """uvicorn's workers (and other asyncio-based ones) run ASGI apps."""
    return any("uvicorn" in klass.__module__.lower() or "asgi" in klass.__name__.lower()
               for klass in type(worker).__mro__)


def is_asgi_app(app: Any) -> bool:
    call = getattr(app, "__call__", None)
    return inspect.iscoroutinefunction(app) or inspect.iscoroutinefunction(call)


@_guarded
def post_fork(server: Any, worker: Any) -> None:
    from memwarden import probe

    # Open the statm descriptor in the worker, never the master's.
    probe.current().rss_bytes()
    if memwarden_settings.loop_tracking:
        from memwarden.census import enable_loop_tracking

        enable_loop_tracking()


@_guarded
def post_worker_init(worker: Any) -> None:
    if not memwarden_settings.wrap_app:
        return
    app = getattr(worker, "wsgi", None)
    if app is None:
        return
    if is_asgi_worker(worker) or is_asgi_app(app):
        from memwarden.asgi import AsgiMemoryTracker

        worker.wsgi = AsgiMemoryTracker(app, memwarden_settings)
    else:
        from memwarden.wsgi import MemoryTracker

        worker.wsgi = MemoryTracker(app, memwarden_settings)


@_guarded
def worker_exit(server: Any, worker: Any) -> None:
    # Close the worker's background loop (and what it holds) if one was made.
    import sys

    loop_module = sys.modules.get("memwarden.loop")
    shutdown = getattr(loop_module, "shutdown", None)
    if shutdown is not None:
        shutdown(5.0)


@_guarded
def child_exit(server: Any, worker: Any) -> None:
    _log.info("worker exited", extra={"worker_pid": getattr(worker, "pid", None)})
