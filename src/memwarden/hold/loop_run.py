"""Running coroutines on the worker loop from sync code, one loop per process.

The loop is created on first use and recreated in a forked child, because a
loop built in the gunicorn master belongs to the master; the parent's loop
is forgotten there without being closed. :func:`shutdown` is registered with
atexit. The census tracks the loop's tasks and held values
(``loop.tasks``, ``loop.held``).
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import logging
import os
import threading
from collections.abc import Coroutine
from typing import Any, TypeVar

from memwarden.hold.loop_thread import LoopThread

__all__ = ["get_loop", "live_worker", "run", "shutdown"]

T = TypeVar("T")

_log = logging.getLogger("memwarden.loop")

# How long run() waits, after a timeout, for the cancelled task to finish its
# cleanup, so that no task is left running behind the caller's back.
_CANCEL_GRACE = 1.0
_ATEXIT_TIMEOUT = 5.0

_state: LoopThread | None = None
_state_lock = threading.Lock()
_atexit_registered = False
_gauges_registered = False
# Loops inherited from the parent across fork: kept referenced so that their
# __del__ never runs (it would warn and try to close a loop "running" in a
# thread that does not exist in this process).
_inherited: list[asyncio.AbstractEventLoop] = []


def _after_fork_in_child() -> None:
    global _state, _state_lock
    # The parent may have held the lock while forking; it would never be released here.
    _state_lock = threading.Lock()
    inherited, _state = _state, None
    if inherited is not None:
        _inherited.append(inherited.loop)
        _release_inherited_fds(inherited.loop)


def _release_inherited_fds(loop: asyncio.AbstractEventLoop) -> None:
    """Close this process's copies of the parent's loop fds (epoll and self-pipe).

    ``loop.close()`` refuses (the loop looks running), so this reaches for the
    selector and the self-pipe directly; best effort, these are private names.
    """
    selector = getattr(loop, "_selector", None)
    if selector is not None:
        with contextlib.suppress(Exception):
            selector.close()
    for name in ("_ssock", "_csock"):
        sock = getattr(loop, name, None)
        if sock is not None:
            with contextlib.suppress(Exception):
                sock.close()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


def _current() -> LoopThread:
    """This process's worker loop, created on first use (and after fork)."""
    worker = _state
    if worker is not None and worker.pid == os.getpid() and not worker.closing:
        return worker
    with _state_lock:
        return _current_locked()


def _current_locked() -> LoopThread:
    global _state, _atexit_registered
    worker = _state
    if worker is not None and worker.pid == os.getpid() and not worker.closing:
        return worker
    if worker is not None and worker.pid != os.getpid():
        # Fork without the at-fork hook (it runs for os.fork and multiprocessing).
        _inherited.append(worker.loop)
        _release_inherited_fds(worker.loop)
    worker = _state = LoopThread()
    if not _atexit_registered:
        # Registered once: the registration (and this flag) are inherited by forks.
        atexit.register(_shutdown_at_exit)
        _atexit_registered = True
    _register_gauges()
    return worker


def _register_gauges() -> None:
    global _gauges_registered
    if _gauges_registered:
        return
    _gauges_registered = True
    try:
        from memwarden.see.census import gauge
    except ImportError:
        return
    gauge("loop.tasks", _count_tasks)
    gauge("loop.held", _count_held)


def live_worker() -> LoopThread | None:
    worker = _state
    if worker is None or worker.pid != os.getpid() or worker.loop.is_closed():
        return None
    return worker


def _count_tasks() -> int | None:
    worker = live_worker()
    return None if worker is None else len(asyncio.all_tasks(worker.loop))


def _count_held() -> int | None:
    worker = live_worker()
    return None if worker is None else len(worker.held)


def _shutdown_at_exit() -> None:
    try:
        shutdown(_ATEXIT_TIMEOUT)
    except Exception:
        _log.warning("memwarden loop: shutdown at exit failed", exc_info=True)


def get_loop() -> asyncio.AbstractEventLoop:
    """The worker's background loop (created on first use in this process)."""
    return _current().loop


def run(coro: Coroutine[Any, Any, T], timeout: float | None = None, *,
        cancel_grace: float = _CANCEL_GRACE) -> T:
    """Run ``coro`` on the worker loop from sync code and return its result.

    On timeout the task is cancelled and given up to ``cancel_grace`` seconds
    to finish its cleanup before :class:`TimeoutError` is raised, so no task is
    left dangling. Exceptions raised by ``coro`` propagate unchanged; if the
    task is cancelled on the loop (by :func:`shutdown`, say) this raises
    :class:`concurrent.futures.CancelledError`. Called from a coroutine on
    another loop it works but blocks that loop while it waits.
    """
    worker = _current()
    if worker.in_loop_thread():
        coro.close()
        raise RuntimeError(
            "memwarden.loop.run() was called from the worker loop's own thread, where it "
            "would deadlock; use 'await' there instead")
    call = worker.submit(coro)
    try:
        if not call.wait(timeout):
            worker.cancel(call)
            finished = call.wait(cancel_grace)
            if call.succeeded:
                return call.outcome()  # it finished just as the timeout fired
            detail = "" if finished else (
                f"; it was still cancelling after {cancel_grace:g} s")
            raise TimeoutError(
                f"memwarden loop: {call.name} did not finish within {timeout:g} s "
                f"and was cancelled{detail}") from call.error_unless_cancelled()
        return call.outcome()
    finally:
        worker.forget(call)


def shutdown(timeout: float = 5.0) -> None:
    """Close held values (newest first), cancel remaining tasks, stop and close the loop.

    Idempotent, and a no-op when this process never started a loop. A later
    :func:`run` starts a fresh loop. Must not be called from the loop thread.
    """
    global _state
    with _state_lock:
        worker = _state
        if worker is None or worker.pid != os.getpid():
            return
        if worker.in_loop_thread():
            raise RuntimeError("memwarden.loop.shutdown() cannot run on the worker loop's "
                               "own thread")
        _state = None
    worker.shutdown(timeout)
