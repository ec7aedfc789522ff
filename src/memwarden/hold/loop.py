"""One background event loop per worker process: run async code from sync handlers.

A sync handler (Flask under gunicorn) that needs async code must not build a
loop per request (each unclosed loop holds 3 fds) nor keep async objects bound
to the loop of the first request. This module keeps one loop on a daemon
thread named ``memwarden-loop`` per process and runs coroutines on it with
:func:`run`. The loop is created on first use and recreated in a forked child,
because a loop built in the gunicorn master belongs to the master.

Async context managers that must be exited by the task that entered them
(anyio cancel scopes: the MCP client, task groups) are kept open by an owner
task with :func:`hold`; other coroutines use the held value through
:func:`run`. :func:`shutdown` closes held values in reverse order, cancels what
is left, stops and closes the loop. It is idempotent, registered with atexit
and meant to be called from gunicorn's ``worker_exit`` hook as well.
"""

from __future__ import annotations

import asyncio
import atexit
import concurrent.futures
import contextlib
import logging
import os
import threading
import time
from collections.abc import Callable, Coroutine
from contextlib import AbstractAsyncContextManager
from typing import Any, Generic, TypeVar

__all__ = [
    "THREAD_NAME",
    "Held",
    "get_loop",
    "hold",
    "run",
    "shutdown",
]

T = TypeVar("T")

THREAD_NAME = "memwarden-loop"
_log = logging.getLogger("memwarden.loop")

# How long run() waits, after a timeout, for the cancelled task to finish its
# cleanup, so that no task is left running behind the caller's back.
_CANCEL_GRACE = 1.0
_ATEXIT_TIMEOUT = 5.0
# Stopping a loop takes a moment even when the shutdown budget is spent.
_MIN_JOIN = 0.2


class _Call(Generic[T]):
    """One coroutine submitted from another thread, with its outcome.

    Unlike ``run_coroutine_threadsafe`` it keeps the task, so a timed-out
    caller can wait for the cancellation to finish, and it closes a coroutine
    that never got to start rather than leaving it "never awaited".
    """

    __slots__ = ("_cancelled", "_coro", "_done", "_error", "_result", "_task")

    def __init__(self, coro: Coroutine[Any, Any, T]) -> None:
        self._coro = coro
        self._task: asyncio.Task[T] | None = None
        self._done = threading.Event()
        self._result: T | None = None
        self._error: BaseException | None = None
        self._cancelled = False

    @property
    def name(self) -> str:
        return str(getattr(self._coro, "__qualname__", None) or repr(self._coro))

    @property
    def succeeded(self) -> bool:
        return self._done.is_set() and self._error is None

    def error_unless_cancelled(self) -> BaseException | None:
        """The error the call ended with, unless it was the cancellation itself."""
        return None if self._cancelled else self._error

    def start(self) -> None:
        """Loop thread: wrap the coroutine in a task."""
        if self._done.is_set():
            return
        try:
            task = asyncio.get_running_loop().create_task(self._coro)
        except Exception as exc:
            self._coro.close()
            self._error = exc
            self._done.set()
            return
        self._task = task
        task.add_done_callback(self._finished)

    def _finished(self, task: asyncio.Task[T]) -> None:
        if task.cancelled():
            self._cancelled = True
            self._error = concurrent.futures.CancelledError(
                f"memwarden loop: {self.name} was cancelled on the worker loop")
        else:
            # exception() also marks it retrieved, so asyncio does not log it again.
            error = task.exception()
            if error is None:
                self._result = task.result()
            else:
                self._error = error
        self._done.set()

    def cancel(self) -> None:
        """Loop thread: cancel the task (start() always ran before, FIFO)."""
        if self._task is not None:
            self._task.cancel()
        elif not self._done.is_set():
            self._coro.close()
            self._cancelled = True
            self._error = concurrent.futures.CancelledError()
            self._done.set()

    def abandon(self, error: BaseException) -> None:
        """After the loop stopped: fail a call that will never run."""
        if self._done.is_set():
            return
        if self._task is None:
            self._coro.close()
        self._error = error
        self._done.set()

    def wait(self, timeout: float | None) -> bool:
        return self._done.wait(timeout)

    def outcome(self) -> T:
        if self._error is not None:
            # Drop our reference so the traceback's frames can be freed.
            error, self._error = self._error, None
            raise error
        return self._result  # type: ignore[return-value]


class _LoopThread:
    """The loop, its thread and what must be closed with it, for one process."""

    def __init__(self) -> None:
        self.pid = os.getpid()
        self.loop = asyncio.new_event_loop()
        self.lock = threading.Lock()
        self.closing = False
        self.held: list[Held[Any]] = []
        self.calls: set[_Call[Any]] = set()
        self.thread = threading.Thread(target=self._main, name=THREAD_NAME, daemon=True)
        self.thread.start()

    def _main(self) -> None:
        asyncio.set_event_loop(self.loop)
        try:
            self.loop.run_forever()
        finally:
            asyncio.set_event_loop(None)

    def in_loop_thread(self) -> bool:
        return threading.get_ident() == self.thread.ident

    def submit(self, coro: Coroutine[Any, Any, T], *, internal: bool = False) -> _Call[T]:
        call = _Call(coro)
        with self.lock:
            if self.closing and not internal:
                coro.close()
                raise RuntimeError("memwarden loop: the worker loop is shutting down")
            self.calls.add(call)
        try:
            self.loop.call_soon_threadsafe(call.start)
        except RuntimeError:
            with self.lock:
                self.calls.discard(call)
            coro.close()
            raise RuntimeError("memwarden loop: the worker loop is closed") from None
        return call

    def forget(self, call: _Call[Any]) -> None:
        with self.lock:
            self.calls.discard(call)

    def cancel(self, call: _Call[Any]) -> None:
        with contextlib.suppress(RuntimeError):  # loop already closed: nothing left to cancel
            self.loop.call_soon_threadsafe(call.cancel)

    def shutdown(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        with self.lock:
            if self.closing:
                return
            self.closing = True
            held = list(self.held)
        if self.thread.is_alive():
            drain = self.submit(self._drain(held, deadline), internal=True)
            if not drain.wait(max(0.0, deadline - time.monotonic())):
                _log.warning("memwarden loop: shutdown did not finish within %.3g s; "
                             "stopping the loop anyway", timeout)
                self.cancel(drain)
            with contextlib.suppress(RuntimeError):
                self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(max(_MIN_JOIN, deadline - time.monotonic()))
        if self.thread.is_alive():
            # A callback is blocking the loop thread; closing a running loop is not possible.
            _log.warning("memwarden loop: the loop thread is still busy; the loop is left open")
            return
        with self.lock:
            pending, self.calls = list(self.calls), set()
            self.held.clear()
        for call in pending:
            call.abandon(RuntimeError("memwarden loop: the worker loop shut down before "
                                      f"{call.name} finished"))
        self.loop.close()

    async def _drain(self, held: list[Held[Any]], deadline: float) -> None:
        loop = asyncio.get_running_loop()

        def remaining() -> float:
            return max(0.0, deadline - time.monotonic())

        for owner in reversed(held):
            try:
                async with asyncio.timeout(remaining()):
                    await owner.aclose()
            except Exception:
                _log.warning("memwarden loop: closing held %r failed at shutdown",
                             owner.name, exc_info=True)
        me = asyncio.current_task()
        tasks = [task for task in asyncio.all_tasks(loop) if task is not me]
        for task in tasks:
            task.cancel()
        if tasks:
            done, pending = await asyncio.wait(tasks, timeout=remaining())
            for task in done:
                if not task.cancelled():
                    task.exception()  # retrieved: no "never retrieved" log at exit
            if pending:
                _log.warning("memwarden loop: %d task(s) ignored cancellation at shutdown",
                             len(pending))
        for step in (loop.shutdown_asyncgens, loop.shutdown_default_executor):
            try:
                async with asyncio.timeout(remaining()):
                    await step()
            except Exception:
                _log.warning("memwarden loop: %s failed at shutdown", step.__name__,
                             exc_info=True)


_state: _LoopThread | None = None
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


def _current() -> _LoopThread:
    """This process's worker loop, created on first use (and after fork)."""
    worker = _state
    if worker is not None and worker.pid == os.getpid() and not worker.closing:
        return worker
    with _state_lock:
        return _current_locked()


def _current_locked() -> _LoopThread:
    global _state, _atexit_registered
    worker = _state
    if worker is not None and worker.pid == os.getpid() and not worker.closing:
        return worker
    if worker is not None and worker.pid != os.getpid():
        # Fork without the at-fork hook (it runs for os.fork and multiprocessing).
        _inherited.append(worker.loop)
        _release_inherited_fds(worker.loop)
    worker = _state = _LoopThread()
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


def _live_worker() -> _LoopThread | None:
    worker = _state
    if worker is None or worker.pid != os.getpid() or worker.loop.is_closed():
        return None
    return worker


def _count_tasks() -> int | None:
    worker = _live_worker()
    return None if worker is None else len(asyncio.all_tasks(worker.loop))


def _count_held() -> int | None:
    worker = _live_worker()
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


class Held(Generic[T]):
    """An async context manager kept open by one owner task on the worker loop.

    The owner task enters the context, hands the value over, waits until
    :meth:`aclose` (or :meth:`close`) asks it to stop, then exits the context
    itself: anyio cancel scopes must be exited by the task that entered them.
    Use the value from coroutines on the same loop (through :func:`run`).
    """

    def __init__(self, factory: Callable[[], AbstractAsyncContextManager[T]], *,
                 name: str = "held") -> None:
        self.name = name
        self._factory = factory
        self._task: asyncio.Task[None] | None = None
        self._stop = asyncio.Event()
        self._value: T | None = None
        self._entered = False
        self._exit_error: BaseException | None = None
        self._worker: _LoopThread | None = None

    def __repr__(self) -> str:
        state = "open" if self.is_open else "closed" if self._entered else "new"
        return f"<Held {self.name!r} {state}>"

    @property
    def is_open(self) -> bool:
        return self._entered and self._task is not None and not self._task.done()

    @property
    def value(self) -> T:
        if not self.is_open:
            raise RuntimeError(f"held {self.name!r} is not open")
        return self._value  # type: ignore[return-value]

    async def astart(self) -> T:
        """Start the owner task on the running loop; return the value once entered.

        An exception raised while entering propagates here. If this coroutine
        is cancelled, the owner task is cancelled too (and exits the context).
        """
        if self._task is not None:
            raise RuntimeError(f"held {self.name!r} was already started")
        loop = asyncio.get_running_loop()
        ready: asyncio.Future[T] = loop.create_future()
        self._task = task = loop.create_task(self._own(ready), name=f"memwarden-held:{self.name}")
        try:
            value = await asyncio.shield(ready)
        except asyncio.CancelledError:
            ready.cancel()
            task.cancel()
            await asyncio.wait({task})
            raise
        worker = _live_worker()
        if worker is not None and worker.loop is loop:
            with worker.lock:
                registered = not worker.closing
                if registered:
                    worker.held.append(self)
            if not registered:
                await self.aclose()
                raise RuntimeError(f"held {self.name!r}: the worker loop is shutting down")
            self._worker = worker
        return value

    async def _own(self, ready: asyncio.Future[T]) -> None:
        try:
            async with self._factory() as value:
                self._value = value
                self._entered = True
                if not ready.done():
                    ready.set_result(value)
                await self._stop.wait()
        except Exception as exc:
            if not self._entered:
                if not ready.done():
                    ready.set_exception(exc)
                # else: the starter was cancelled and no longer wants the value.
                return
            self._exit_error = exc
            if not self._stop.is_set():
                # Nobody asked it to stop (the connection died, a child task failed):
                # log now, aclose() reports it again.
                _log.warning("memwarden loop: held %r exited on its own with an error",
                             self.name, exc_info=True)
        except BaseException:
            if not ready.done():
                ready.cancel()
            raise
        finally:
            self._value = None

    async def aclose(self) -> None:
        """Ask the owner task to exit the context and wait for it (on the loop).

        Raises the error the context raised while exiting, if any. Cancelling
        this coroutine cancels the owner task.
        """
        task = self._task
        if task is None:
            return
        self._stop.set()
        try:
            await asyncio.wait({task})
        except asyncio.CancelledError:
            task.cancel()
            raise
        self._finish()

    def _finish(self) -> None:
        """Once the owner task is done: unregister, report the exit error once."""
        worker, self._worker = self._worker, None
        if worker is not None:
            with worker.lock, contextlib.suppress(ValueError):
                worker.held.remove(self)
        error, self._exit_error = self._exit_error, None
        if error is not None:
            raise error

    def close(self, timeout: float | None = 5.0) -> None:
        """From sync code: exit the context in its owner task (see :meth:`aclose`)."""
        task = self._task
        if task is None:
            return
        if task.done():
            # Also the path after shutdown(): the loop may be closed already.
            self._finish()
            return
        if self._worker is None:
            raise RuntimeError(f"held {self.name!r} is not on the worker loop; "
                               "await aclose() on its own loop")
        run(self.aclose(), timeout)


def hold(factory: Callable[[], AbstractAsyncContextManager[T]], *, name: str = "held",
         timeout: float | None = None) -> Held[T]:
    """From sync code: enter ``factory()`` in an owner task on the worker loop.

    Returns once the context is entered (or raises what entering raised). The
    worker's :func:`shutdown` closes it if :meth:`Held.close` was not called.
    """
    held: Held[T] = Held(factory, name=name)
    run(held.astart(), timeout)
    return held
