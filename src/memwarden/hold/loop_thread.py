"""The worker loop's thread: one event loop running forever on a daemon thread,
the coroutines submitted to it from other threads, and its orderly shutdown.

:mod:`memwarden.hold.loop_run` keeps one per process and runs code on it.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
import os
import threading
import time
from collections.abc import Coroutine
from typing import Any, Generic, Protocol, TypeVar

__all__ = ["THREAD_NAME", "Call", "Closable", "LoopThread"]

T = TypeVar("T")

THREAD_NAME = "memwarden-loop"
_log = logging.getLogger("memwarden.loop")

# Stopping a loop takes a moment even when the shutdown budget is spent.
_MIN_JOIN = 0.2


class Closable(Protocol):
    """What the loop closes at shutdown (a :class:`memwarden.hold.loop_held.Held`)."""

    name: str

    async def aclose(self) -> None: ...


class Call(Generic[T]):
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


class LoopThread:
    """The loop, its thread and what must be closed with it, for one process."""

    def __init__(self) -> None:
        self.pid = os.getpid()
        self.loop = asyncio.new_event_loop()
        self.lock = threading.Lock()
        self.closing = False
        self.held: list[Closable] = []
        self.calls: set[Call[Any]] = set()
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

    def submit(self, coro: Coroutine[Any, Any, T], *, internal: bool = False) -> Call[T]:
        call = Call(coro)
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

    def forget(self, call: Call[Any]) -> None:
        with self.lock:
            self.calls.discard(call)

    def cancel(self, call: Call[Any]) -> None:
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

    async def _drain(self, held: list[Closable], deadline: float) -> None:
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
