"""A bounded pool's slots: who holds one, the line of waiters, and closing.

A slot is taken from the moment a resource starts being created until its
close has finished, so :class:`Slots` counts idle, leased, creating and
closing resources alike. It closes each resource in its own task, wakes the
next waiter when a slot frees, and shuts the whole pool down within a time
budget. :class:`memwarden.hold.pool.Pool` builds leasing on top of it.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any, Generic, TypeVar

from memwarden.hold.pool_types import Entry, PoolStats

__all__ = ["Slots"]

T = TypeVar("T")
_log = logging.getLogger("memwarden.pool")


class Slots(Generic[T]):
    """The slot accounting of a pool named ``name`` with at most ``max_size`` slots."""

    def __init__(self, name: str, max_size: int, idle_ttl: float | None,
                 close: Callable[[T], Awaitable[None]]) -> None:
        self.name = name
        self.max_size = max_size
        self.idle_ttl = idle_ttl
        self._close = close
        self._closed = False
        self._drained: asyncio.Event | None = None
        self._reaper: asyncio.Task[None] | None = None
        self._reset_state()

    def _reset_state(self) -> None:
        # Idle entries ordered by release time: newest on the right (handed out
        # first), stalest on the left (expired first).
        self._idle: collections.deque[Entry[T]] = collections.deque()
        # Keyed by id(): resources need not be hashable.
        self._in_use: dict[int, Entry[T]] = {}
        self._queue: collections.deque[asyncio.Future[None]] = collections.deque()
        self._tasks: set[asyncio.Task[Any]] = set()  # creations
        self._closing_tasks: set[asyncio.Task[None]] = set()
        self._creating = 0
        self._closing = 0
        self._over = 0  # dry-run: slots lent beyond max_size, from creation to close
        self._waiting = 0
        self._created = 0
        self._closed_count = 0
        self._create_failures = 0
        self._close_failures = 0
        self._health_failures = 0
        self._refused = 0
        self._would_refuse = 0

    def stats(self) -> PoolStats:
        idle, in_use = len(self._idle), len(self._in_use)
        return PoolStats(
            name=self.name, max_size=self.max_size,
            size=idle + in_use + self._creating + self._closing,
            in_use=in_use, idle=idle, creating=self._creating, closing=self._closing,
            waiting=self._waiting, created=self._created, closed=self._closed_count,
            create_failures=self._create_failures, close_failures=self._close_failures,
            health_failures=self._health_failures, refused=self._refused,
            would_refuse=self._would_refuse)

    @property
    def closed(self) -> bool:
        return self._closed

    def _size(self) -> int:
        return len(self._idle) + len(self._in_use) + self._creating + self._closing

    # -- the line of waiters -----------------------------------------------

    async def _wait(self, loop: asyncio.AbstractEventLoop, deadline: float, *,
                    front: bool) -> bool:
        """Queue for a slot: True when woken, False when the deadline came first."""
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return False
        fut: asyncio.Future[None] = loop.create_future()
        if front:
            self._queue.appendleft(fut)
        else:
            self._queue.append(fut)
        self._waiting += 1
        try:
            async with asyncio.timeout(remaining):
                await fut
        except BaseException as exc:
            if fut.done() and not fut.cancelled():
                # Woken just as we gave up: pass the wake-up on, or a slot sits unused.
                self._wake_one()
            else:
                fut.cancel()
                with contextlib.suppress(ValueError):
                    self._queue.remove(fut)
            if isinstance(exc, TimeoutError):
                return False
            raise
        finally:
            self._waiting -= 1
        return True

    def _wake_one(self) -> None:
        while self._queue:
            fut = self._queue.popleft()
            if not fut.done():
                fut.set_result(None)
                return

    # -- closing resources ---------------------------------------------------

    def _retire_stale(self, now: float) -> list[asyncio.Task[None]]:
        if self.idle_ttl is None:
            return []
        tasks = []
        while self._idle and now - self._idle[0].last_used > self.idle_ttl:
            task = self._retire(self._idle.popleft())
            if task is not None:
                tasks.append(task)
        return tasks

    def _retire(self, entry: Entry[T]) -> asyncio.Task[None] | None:
        """Close ``entry`` in its own task; its slot stays taken until that ends.

        Idempotent: close() may already have taken a leased entry back (say,
        during its health check), and a resource must be closed only once.
        """
        if entry.retired:
            return None
        entry.retired = True
        self._closing += 1
        task = asyncio.get_running_loop().create_task(
            self._close_entry(entry), name=f"memwarden-pool-close-resource:{self.name}")
        self._closing_tasks.add(task)
        task.add_done_callback(self._closing_tasks.discard)
        return task

    async def _close_entry(self, entry: Entry[T]) -> None:
        try:
            await self._close(entry.resource)
        except asyncio.CancelledError:
            self._close_failures += 1
            _log.warning("pool %r: closing a resource was cancelled; it may leak", self.name)
        except Exception:
            self._close_failures += 1
            _log.warning("pool %r: closing a resource failed", self.name, exc_info=True)
        finally:
            self._closing -= 1
            if entry.over:
                self._over -= 1
            self._closed_count += 1
            self._wake_one()

    # -- closing the pool --------------------------------------------------

    def _check_drained(self) -> None:
        if self._drained is not None and not self._in_use and not self._creating:
            self._drained.set()

    async def _shutdown(self, timeout: float) -> None:
        """Close idle resources now, leased ones once returned or at ``timeout``;
        waiters wake to find the pool closed."""
        deadline = time.monotonic() + timeout
        if self._reaper is not None:
            self._reaper.cancel()
        while self._queue:  # waiters wake up, see the pool closed and raise PoolClosed
            fut = self._queue.popleft()
            if not fut.done():
                fut.set_result(None)
        while self._idle:
            self._retire(self._idle.pop())
        self._drained = asyncio.Event()
        self._check_drained()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(max(0.0, deadline - time.monotonic())):
                await self._drained.wait()
        creations = [task for task in self._tasks if not task.done()]
        if self._in_use or creations:
            leased = list(self._in_use.values())
            _log.warning("pool %r: after %.3g s, closing %d lease(s) still out and cancelling "
                         "%d creation(s)", self.name, timeout, len(leased), len(creations))
            self._in_use.clear()
            for entry in leased:
                self._retire(entry)
            for task in creations:
                task.cancel()
        if self._tasks:
            await asyncio.wait(list(self._tasks), timeout=max(0.0, deadline - time.monotonic()))
        if self._closing_tasks:
            _, pending = await asyncio.wait(list(self._closing_tasks),
                                            timeout=max(0.1, deadline - time.monotonic()))
            for task in pending:
                task.cancel()
