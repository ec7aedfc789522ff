"""Async context managers kept open on the worker loop by an owner task.

anyio cancel scopes (the MCP client, task groups) must be exited by the task
that entered them, so :func:`hold` enters one in an owner task on the worker
loop and keeps it open; other coroutines use the held value through
:func:`memwarden.hold.loop_run.run`. The loop's shutdown closes held values in
reverse order.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from typing import Generic, TypeVar

from memwarden.hold.loop_run import live_worker, run
from memwarden.hold.loop_thread import LoopThread

__all__ = ["Held", "hold"]

T = TypeVar("T")
_log = logging.getLogger("memwarden.loop")


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
        self._worker: LoopThread | None = None

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
        worker = live_worker()
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
