"""gunicorn wiring: ``gunicorn -c python:memwarden.gunicorn_conf app:app``.

Gives JSON logs, sets the probes up in each worker after fork, and wraps the
worker's app with the request memory tracker (WSGI or ASGI, by the worker
class), all from ``MEMWARDEN_*`` environment settings. It also holds the
service up (:mod:`memwarden.hold.hooks`): memory and request-count recycling,
the master's hard limit, load shedding, and no orphaned child processes. To combine with your
own config, ``from memwarden.gunicorn_conf import *`` and call memwarden's
hooks from yours.

Importing this module reads and checks the settings and nothing more: the
master's one-time setup (the metrics directory) runs from the first
``nworkers_changed`` gunicorn calls, in the master, before a preloaded app is
imported, so that importing this module anywhere else (a worker, a tool)
changes nothing.

Every hook catches its own errors: an exception in ``child_exit`` would stop
the master, and no observability tool may take a server down. The master's
setup is the exception: a server that cannot do what its settings ask stops
at start.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import signal
import sys
import time
from collections.abc import Callable
from typing import Any, TypeVar

from memwarden import export as _exporters
from memwarden.app_kind import is_asgi_app, is_asgi_worker
from memwarden.hold.policy import check_settings as _check_hold_settings
from memwarden.see.logs import gunicorn_logconfig
from memwarden.settings import Settings

__all__ = [
    "child_exit",
    "logconfig_dict",
    "logger_class",
    "memwarden_settings",
    "nworkers_changed",
    "on_exit",
    "on_starting",
    "post_fork",
    "post_request",
    "post_worker_init",
    "pre_fork",
    "pre_request",
    "when_ready",
    "worker_abort",
    "worker_exit",
]

_log = logging.getLogger("memwarden.gunicorn")
F = TypeVar("F", bound=Callable[..., None])

# Validated here, when gunicorn loads the config: a bad MEMWARDEN_* value or a
# missing extra stops the server before it serves, with a message naming it.
memwarden_settings = Settings.from_env()
_check_hold_settings(memwarden_settings)
_exporters.check_extras(memwarden_settings)
logconfig_dict = gunicorn_logconfig(memwarden_settings.log_level, memwarden_settings.access_log)
# gunicorn builds every request's access-log entry whenever a logconfig_dict is
# set, even while gunicorn.access drops it (the default here): this logger asks
# first, which saves a hello-world Flask request about a third of memwarden's cost.
logger_class = "memwarden.see.gunicorn_log.Logger"
# The pid of the master whose setup ran: a worker inherits it and never runs it.
_master_setup = [0]
_hooks_checked = [0]
_summary_logged = [0]


def _guarded(hook: F) -> F:
    @functools.wraps(hook)
    def wrapper(*args: Any, **kwargs: Any) -> None:
        try:
            hook(*args, **kwargs)
        except Exception:
            with contextlib.suppress(Exception):
                _log.exception("memwarden gunicorn hook %s failed; continuing", hook.__name__)
    return wrapper  # type: ignore[return-value]


def _log_unraisable(unraisable: Any) -> None:
    """"Exception ignored in ..." as one JSON line, not raw text on stderr."""
    try:
        logging.getLogger("memwarden.unraisable").warning(
            "exception ignored in %.200r: %s", unraisable.object,
            unraisable.err_msg or "unraisable exception",
            exc_info=(unraisable.exc_type, unraisable.exc_value, unraisable.exc_traceback))
    except Exception:  # logging torn down at interpreter exit
        sys.__unraisablehook__(unraisable)


def _setup_master(server: Any) -> None:
    """Once, in the master: prepare the exporters before the app is imported; then
    say which of memwarden's hooks the config replaced without calling them."""
    if _master_setup[0] != os.getpid():
        _master_setup[0] = os.getpid()
        _exporters.setup_master(memwarden_settings)
    _check_hooks(server)


def _check_hooks(server: Any) -> None:
    if _hooks_checked[0] == os.getpid():
        return
    _hooks_checked[0] = os.getpid()
    try:
        from memwarden import hook_calls as hook_check

        cfg = server.cfg
        replaced = hook_check.replaced_hooks({name: getattr(cfg, name)
                                              for name in hook_check.LOST},
                                             {name: globals()[name] for name in hook_check.LOST})
        names = [name for name in hook_check.needed(memwarden_settings) if name in replaced]
        if names:
            _log.warning("gunicorn hooks replaced without calling memwarden's: %s; call "
                         "memwarden.gunicorn_conf's hook of the same name from yours",
                         hook_check.describe(names), extra={"hooks": names})
    except Exception:
        _log.exception("memwarden could not check the gunicorn hooks; continuing")


def nworkers_changed(server: Any, new_value: int, old_value: int | None) -> None:
    # The first call comes from the arbiter's setup, before a preloaded app is
    # imported (prometheus_client picks its mode at import). Not guarded: a
    # setup that fails stops the start, as a bad setting does.
    if old_value is None:
        _setup_master(server)


@_guarded
def on_starting(server: Any) -> None:
    _setup_master(server)  # when a config of one's own replaced nworkers_changed
    _exporters.on_starting(server, memwarden_settings)


@_guarded
def when_ready(server: Any) -> None:
    _check_hooks(server)  # when a config of one's own replaced the two before
    from memwarden.hold import hooks as hold

    try:
        hold.when_ready(server, memwarden_settings)
    finally:
        _log_summary(server, watchdog=True)


def _log_summary(server: Any, watchdog: bool) -> None:
    """``memwarden check``'s summary, once per master: after the watchdog's start line
    (``watchdog``: its warnings and the unknown variables' are named, not repeated),
    or at the first fork when a config of one's own replaced when_ready."""
    if _summary_logged[0] == os.getpid():
        return
    master = _summary_logged[0] = os.getpid()
    said = {"limit_dropped"}  # each worker says it, when it resolves its limits
    if watchdog:
        said |= {"no_limit", "cannot_shed", "unknown_variables"}
    if _hooks_checked[0] == master:
        said.add("replaced_hooks")

    def summary() -> None:
        try:
            from memwarden.check_start import log_start_summary
            from memwarden.hook_calls import LOST

            log_start_summary(server, memwarden_settings,
                              {name: globals()[name] for name in LOST}, frozenset(said), master)
        except Exception:
            _log.exception("memwarden could not log its start summary; continuing")

    _in_child(server, summary)


# The start summary child's process name (at most 15 characters: the kernel's comm).
CHILD_NAME = "memwarden-check"


def _in_child(server: Any, work: Callable[[], None], timeout: float = 10.0) -> None:
    """Run ``work`` in a child of the master, waited for (``timeout`` s at most).

    The summary's code and what it reads (the app's source, the installed
    distributions) would otherwise stay in the master, and every worker forked
    from it would carry them: about a quarter of a MiB per worker. The child is
    the master's copy without its threads, lives while it logs, and leaves by
    ``os._exit``, so no exit handler of the master's runs in it. It forks
    before the master's first worker does, so the at-fork hooks that run in
    the master (the hand-over of events, the recycle slots') have nothing to
    drop yet. Where a fork fails, ``work`` runs in the master.
    """
    try:
        pid = os.fork()
    except OSError:
        work()
        return
    if pid == 0:  # the child: its lines are the test (tests/test_check_start.py)
        try:
            # Named, so that ps and anything counting the master's children can
            # tell it from a worker during the moment it lives.
            with contextlib.suppress(OSError), open("/proc/self/comm", "w") as comm:
                comm.write(CHILD_NAME)
            for sig in getattr(server, "SIGNALS", ()):  # gunicorn's handlers are the master's
                signal.signal(sig, signal.SIG_DFL)
            work()
        finally:
            with contextlib.suppress(Exception):
                sys.stderr.flush()
            os._exit(0)
    deadline = time.monotonic() + timeout
    try:
        while os.waitpid(pid, os.WNOHANG) == (0, 0):
            if time.monotonic() > deadline:
                _log.error("memwarden's start summary took over %.0f s; stopped", timeout)
                os.kill(pid, signal.SIGKILL)
                os.waitpid(pid, 0)
                return
            time.sleep(0.005)
    except ChildProcessError:  # reaped by gunicorn's SIGCHLD handling first
        pass


@_guarded
def pre_fork(server: Any, worker: Any) -> None:
    _log_summary(server, watchdog=False)  # when a config of one's own replaced when_ready
    from memwarden.hold import hooks as hold

    hold.pre_fork(server, worker)


@_guarded
def on_exit(server: Any) -> None:
    from memwarden.hold import hooks as hold

    try:
        hold.on_exit(server)
    finally:
        _exporters.on_exit(server)


# The two hooks of every request guard themselves: _guarded's wrapper (an
# extra frame, its arguments packed and unpacked) would be paid per request.
def pre_request(worker: Any, req: Any) -> None:
    try:
        # Replaces gunicorn's default, which logs this at debug level.
        worker.log.debug("%s %s", req.method, req.path)
        hold = sys.modules.get("memwarden.hold.hooks")
        if hold is not None:
            hold.pre_request(worker, req)
    except Exception:
        with contextlib.suppress(Exception):
            _log.exception("memwarden gunicorn hook pre_request failed; continuing")


def post_request(worker: Any, req: Any, environ: Any = None, resp: Any = None) -> None:
    try:
        hold = sys.modules.get("memwarden.hold.hooks")
        if hold is not None:
            hold.post_request(worker, req)
    except Exception:
        with contextlib.suppress(Exception):
            _log.exception("memwarden gunicorn hook post_request failed; continuing")


@_guarded
def post_fork(server: Any, worker: Any) -> None:
    from memwarden.hold import hooks as hold
    from memwarden.system import probe

    hold.post_fork(server, worker)
    sys.unraisablehook = _log_unraisable

    # Open the statm descriptor in the worker, never the master's.
    probe.current().rss_bytes()
    if memwarden_settings.loop_tracking:
        from memwarden.see.census import enable_loop_tracking

        enable_loop_tracking()
    _exporters.post_fork(server, worker, memwarden_settings)


@_guarded
def post_worker_init(worker: Any) -> None:
    from memwarden.hold import hooks as hold

    app = getattr(worker, "wsgi", None)
    asgi = is_asgi_worker(worker) or (app is not None and is_asgi_app(app))
    try:
        if app is not None:
            # Shedding sits inside the tracker, so a 503 gets its request line.
            app = worker.wsgi = hold.wrap_app(worker, app, memwarden_settings, asgi)
        if asgi:
            # uvicorn builds every response's access-log arguments while its
            # logger has handlers, even when the level drops the record.
            from memwarden.see.uvicorn_access import drop_unwritten_access_log

            drop_unwritten_access_log()
        if not memwarden_settings.wrap_app or app is None:
            return
        if asgi:
            from memwarden.see.asgi import AsgiMemoryTracker

            worker.wsgi = AsgiMemoryTracker(app, memwarden_settings)
        else:
            from memwarden.see.wsgi import MemoryTracker

            worker.wsgi = MemoryTracker(app, memwarden_settings)
    finally:
        try:
            hold.post_worker_init(worker, memwarden_settings, asgi)
        finally:
            _exporters.post_worker_init(worker, memwarden_settings)


@_guarded
def worker_abort(worker: Any) -> None:
    # gunicorn's timeout: the worker keeps its request in flight for the master.
    from memwarden.hold import hooks as hold

    hold.worker_abort(worker)


@_guarded
def worker_exit(server: Any, worker: Any) -> None:
    # Close the worker's background loop (and what it holds) if one was made.
    loop_module = sys.modules.get("memwarden.hold.loop")
    shutdown = getattr(loop_module, "shutdown", None)
    try:
        if shutdown is not None:
            shutdown(5.0)
    finally:
        # Then end whatever processes the worker still has (browsers, MCP servers).
        from memwarden.hold import hooks as hold

        try:
            hold.worker_exit(server, worker, memwarden_settings)
        finally:
            _exporters.worker_exit(server, worker)


@_guarded
def child_exit(server: Any, worker: Any) -> None:
    _log.info("worker exited", extra={"worker_pid": getattr(worker, "pid", None)})
    from memwarden.hold import hooks as hold

    try:
        hold.child_exit(server, worker)
    finally:
        _exporters.child_exit(server, worker)
