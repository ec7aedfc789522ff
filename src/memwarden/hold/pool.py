"""A bounded async resource pool (browser contexts, MCP sessions, connections).

Every slot is counted from the moment a resource starts being created until
its close has finished, so the pool never holds more than ``max_size`` live
resources, not even while stale ones are being closed (with its limits ``on``,
the default; see :class:`Pool` for ``dry-run`` and ``off``). Idle resources are
handed out newest first (LIFO): the warmest one is reused and the others age
out through ``idle_ttl``. Waiters are served in arrival order; a newcomer does
not overtake a waiter.

A pool belongs to one event loop (the worker loop of :mod:`memwarden.hold.loop`,
typically); it notices a fork and forgets, without closing, the resources it
inherited from the parent, which belong to the parent.

This module leases and creates; the slots, the line of waiters and closing
are in :mod:`memwarden.hold.pool_slots`, the limits' modes and refusals in
:mod:`memwarden.hold.pool_limits`, the census gauges in
:mod:`memwarden.hold.pool_census`.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
import weakref
from collections.abc import Awaitable, Callable
from types import TracebackType
from typing import Any, TypeVar

from memwarden import events
from memwarden.hold import perform as actions
from memwarden.hold import pool_census
from memwarden.hold.pool_limits import mode_for, refuse
from memwarden.hold.pool_slots import Slots
from memwarden.hold.pool_types import (
    Entry,
    ErrorFilter,
    Lease,
    PoolClosed,
    PoolStats,
    PoolTimeout,
    error_types,
)

__all__ = ["Lease", "Pool", "PoolClosed", "PoolStats", "PoolTimeout"]

T = TypeVar("T")
_log = logging.getLogger("memwarden.pool")


class Pool(Slots[T]):
    """Bounded pool of async resources made by ``create`` and closed by ``close``.

    - ``max_size``: live resources at most (including ones being created or closed).
    - ``acquire_timeout``: how long :meth:`acquire` waits for a free slot before
      :class:`PoolTimeout`; creating and health-checking are not part of it.
    - ``idle_ttl``: an idle resource older than this is closed instead of reused.
    - ``max_uses``: a resource is closed on release after this many leases.
    - ``health_check``: run on an idle resource before it is handed out; a
      false result or an exception closes it and the next one is tried.
    - ``reap_interval``: if set (needs ``idle_ttl``), a background task on the
      pool's loop calls :meth:`reap_idle` this often.
    - ``mode``: how the limit acts, like recycling and shedding. ``on`` refuses
      work: :class:`PoolTimeout` when no slot frees within the timeout, logged
      as ``pool_refuse`` (logger ``memwarden.pool``) with ``pool``, ``size``,
      ``max_size``, ``in_use``, ``idle``, ``waiting`` and ``timeout_s``.
      ``dry-run`` waits exactly as ``on`` does, then logs ``would_pool_refuse``
      with the same figures and lends the caller a new resource beyond
      ``max_size``. Such a loan is kept out of the count the other acquirers
      are served by, so they wait and are refused as under ``on``; on release
      it joins the pool if there is room, else it is closed, so the pool
      returns to its bound. :meth:`stats` and the census show the real size.
      ``off``: no bound; a resource is created whenever none is idle, and
      nothing waits or is logged about limits (idle TTL, max uses and health
      checks still apply). ``None`` (default): ``MEMWARDEN_POOL_LIMITS`` as
      capped by ``MEMWARDEN_PROTECT``, read once here; a value that cannot be
      read means ``on``. An explicit mode is used as given.

    Refusals are counted in the census (``pool.<name>.refused``; in dry-run
    ``pool.<name>.would_refuse``) and by the exporters
    (``memwarden_pool_refusals_total{pool}``,
    ``memwarden_would_pool_refusals_total{pool}``): name pools with fixed words.

    Close errors are logged to ``memwarden.pool``, never raised to callers.
    The pool is also an async context manager that closes it on exit, so
    ``memwarden.hold.loop.hold(lambda: Pool(...))`` closes it at worker shutdown.
    """

    def __init__(
        self,
        create: Callable[[], Awaitable[T]],
        close: Callable[[T], Awaitable[None]],
        *,
        max_size: int,
        acquire_timeout: float,
        idle_ttl: float | None = None,
        max_uses: int | None = None,
        health_check: Callable[[T], Awaitable[bool]] | None = None,
        reap_interval: float | None = None,
        name: str = "pool",
        mode: str | None = None,
    ) -> None:
        if isinstance(max_size, bool) or not isinstance(max_size, int) or max_size < 1:
            raise ValueError(f"pool {name!r}: max_size must be an int >= 1, got {max_size!r}")
        if acquire_timeout < 0:
            raise ValueError(f"pool {name!r}: acquire_timeout must be >= 0")
        if idle_ttl is not None and idle_ttl <= 0:
            raise ValueError(f"pool {name!r}: idle_ttl must be > 0 or None")
        if max_uses is not None and max_uses < 1:
            raise ValueError(f"pool {name!r}: max_uses must be >= 1 or None")
        if reap_interval is not None and (reap_interval <= 0 or idle_ttl is None):
            raise ValueError(f"pool {name!r}: reap_interval must be > 0 and needs idle_ttl")
        mode = mode_for(name, mode)
        super().__init__(name, max_size, idle_ttl, close)
        self.mode = mode
        # Decided once: off has no bound, so it never waits.
        self._bounded = mode != actions.OFF
        self.acquire_timeout = acquire_timeout
        self.max_uses = max_uses
        self.reap_interval = reap_interval
        self._create = create
        self._health_check = health_check
        self._close_task: asyncio.Task[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._pid: int | None = None
        pool_census.register(self, mode)
        # Its refusal counters start at 0, so that increase() sees the first refusal.
        events.publish(events.PoolDeclared(name))

    def __repr__(self) -> str:
        s = self.stats()
        return (f"<Pool {self.name!r} size={s.size}/{s.max_size} in_use={s.in_use} "
                f"idle={s.idle} waiting={s.waiting}{' closed' if self._closed else ''}>")

    # -- public API -------------------------------------------------------

    def acquire(self, *, timeout: float | None = None,
                discard_on_error: ErrorFilter = False) -> Lease[T]:
        """``async with pool.acquire() as resource:`` lease one resource.

        ``timeout`` overrides ``acquire_timeout``. The resource goes back to
        the pool when the block exits, also on an exception, unless
        :meth:`discard` was called or the exception matches
        ``discard_on_error`` (``True``: any ``Exception``; or exception
        types), in which case it is closed. Cancellation is not an error here:
        pass ``asyncio.CancelledError`` explicitly to discard on it.
        """
        wait = self.acquire_timeout if timeout is None else timeout
        return Lease(self, wait, error_types(discard_on_error))

    def discard(self, resource: T) -> None:
        """Close ``resource`` when its lease ends instead of returning it."""
        entry = self._in_use.get(id(resource))
        if entry is None or entry.resource is not resource:
            if self._closed:
                return  # close() already took it back and closed it
            raise ValueError(f"pool {self.name!r}: {resource!r} is not leased from this pool")
        entry.discard = True

    async def __aenter__(self) -> Pool[T]:
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None,
                        exc: BaseException | None, tb: TracebackType | None) -> None:
        await self.close()

    async def reap_idle(self) -> int:
        """Close idle resources older than ``idle_ttl``; return how many.

        Waits for those closes to finish (their errors are logged).
        """
        self._bind()
        tasks = self._retire_stale(time.monotonic())
        if tasks:
            await asyncio.wait(tasks)
        return len(tasks)

    async def close(self, timeout: float = 10.0) -> None:
        """Close the pool: idle resources now, leased ones once returned.

        Leases still out after ``timeout`` seconds are closed under their
        holders; creations still running are cancelled. Waiting acquirers get
        :class:`PoolClosed`, and so does any later :meth:`acquire`. Idempotent.
        """
        if self._close_task is None:
            self._closed = True
            if self._loop is None:
                # Never used: nothing to close.
                pool_census.unregister(self)
                return
            self._bind()
            self._close_task = asyncio.get_running_loop().create_task(
                self._shutdown(timeout), name=f"memwarden-pool-close:{self.name}")
        await asyncio.shield(self._close_task)

    # -- checkout and checkin ---------------------------------------------

    def _bind(self) -> asyncio.AbstractEventLoop:
        loop = asyncio.get_running_loop()
        pid = os.getpid()
        if pid != self._pid:
            if self._pid is not None:
                self._forget_inherited()
            self._pid, self._loop = pid, loop
        elif loop is not self._loop:
            raise RuntimeError(
                f"pool {self.name!r} belongs to another event loop; use it from the loop "
                "that first used it (memwarden.loop.run() runs code on the worker loop)")
        return loop

    def _forget_inherited(self) -> None:
        s = self.stats()
        if s.size:
            _log.info("pool %r: forgetting %d resource(s) inherited from the parent process",
                      self.name, s.size)
        self._reset_state()
        self._reaper = None
        self._drained = None
        if self._close_task is not None and not self._close_task.done():
            self._close_task = None

    async def _checkout(self, timeout: float) -> Entry[T]:
        loop = self._bind()
        if self.reap_interval is not None and self._reaper is None and not self._closed:
            self._reaper = loop.create_task(_reap_forever(weakref.ref(self), self.reap_interval),
                                            name=f"memwarden-pool-reaper:{self.name}")
        deadline = time.monotonic() + timeout
        woken = over = False
        while True:
            if self._closed:
                raise PoolClosed(f"pool {self.name!r} is closed")
            self._retire_stale(time.monotonic())
            # A newcomer queues behind earlier waiters; a woken waiter goes first.
            # A caller dry-run would have refused gets a new resource, never an
            # idle one: that one is the next waiter's, as under on.
            if over or woken or not self._queue:
                entry = None if over else await self._take_idle()
                if entry is None and not self._closed and (
                        over or not self._bounded or self._size() - self._over < self.max_size):
                    entry = await self._create_entry(loop, over=over)
                if self._closed:  # closed while we health-checked or created
                    if entry is not None:
                        self._in_use.pop(id(entry.resource), None)
                        self._retire(entry)
                        self._check_drained()
                    raise PoolClosed(f"pool {self.name!r} is closed")
                if entry is not None:
                    return entry
            if await self._wait(loop, deadline, front=woken):
                woken = True
            else:
                refuse(self, self.mode, timeout)  # on raises PoolTimeout; dry-run returns
                over = True

    async def _take_idle(self) -> Entry[T] | None:
        check = self._health_check
        while self._idle:
            entry = self._idle.pop()
            self._in_use[id(entry.resource)] = entry
            if check is not None and not await self._healthy(entry, check):
                continue
            entry.uses += 1
            return entry
        return None

    async def _healthy(self, entry: Entry[T], check: Callable[[T], Awaitable[bool]]) -> bool:
        try:
            ok = await check(entry.resource)
        except asyncio.CancelledError:
            # Interrupted mid-check: its state is unknown, so do not reuse it.
            self._in_use.pop(id(entry.resource), None)
            self._retire(entry)
            raise
        except Exception:
            _log.warning("pool %r: health check raised; closing the resource", self.name,
                         exc_info=True)
            ok = False
        if not ok:
            self._health_failures += 1
            self._in_use.pop(id(entry.resource), None)
            self._retire(entry)
        return bool(ok)

    async def _create_entry(self, loop: asyncio.AbstractEventLoop, *,
                            over: bool = False) -> Entry[T]:
        self._creating += 1
        if over:
            self._over += 1
        # Created in its own task: if the acquirer is cancelled, the creation
        # still finishes and the resource is returned to the pool, not lost.
        task = loop.create_task(self._make(over), name=f"memwarden-pool-create:{self.name}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        try:
            entry = await asyncio.shield(task)
        except asyncio.CancelledError:
            if task.done():
                self._adopt(task)
            else:
                task.add_done_callback(self._adopt)
            current = asyncio.current_task()
            if task.cancelled() and current is not None and current.cancelling() == 0:
                # The creation was cancelled, not our caller: do not leak a
                # CancelledError into a task nobody cancelled.
                if self._closed:
                    raise PoolClosed(f"pool {self.name!r} was closed while creating") from None
                raise RuntimeError(f"pool {self.name!r}: creating a resource was "
                                   "cancelled") from None
            raise
        # Counted as "creating" until claimed, here or by _adopt.
        self._creating -= 1
        entry.uses = 1
        self._in_use[id(entry.resource)] = entry
        return entry

    async def _make(self, over: bool) -> Entry[T]:
        try:
            resource = await self._create()
        except BaseException:
            self._creating -= 1
            if over:
                self._over -= 1
            self._create_failures += 1
            self._wake_one()
            self._check_drained()
            raise
        self._created += 1
        return Entry(resource, over)

    def _adopt(self, task: asyncio.Task[Entry[T]]) -> None:
        """A creation whose acquirer was cancelled: keep the resource for others."""
        if task.cancelled() or task.exception() is not None:
            return  # _make already freed the slot; exception() marked it retrieved
        self._creating -= 1
        self._checkin(task.result(), discard=False)

    def _checkin(self, entry: Entry[T], *, discard: bool) -> None:
        if entry.retired:
            return  # force-closed by close() while leased
        self._in_use.pop(id(entry.resource), None)
        retire = (discard or self._closed
                  or (self.max_uses is not None and entry.uses >= self.max_uses))
        if entry.over and not retire:
            # A dry-run loan beyond max_size: it joins the pool if the others
            # leave room for it now, else it is closed and the pool shrinks back.
            retire = self._size() - (self._over - 1) >= self.max_size
            if not retire:
                entry.over = False
                self._over -= 1
        if retire:
            self._retire(entry)
        else:
            entry.last_used = time.monotonic()
            entry.discard = False
            self._idle.append(entry)
            self._wake_one()
        self._check_drained()

    async def _shutdown(self, timeout: float) -> None:
        await super()._shutdown(timeout)
        pool_census.unregister(self)


async def _reap_forever(ref: weakref.ref[Pool[Any]], interval: float) -> None:
    # Holds the pool only while reaping, so an abandoned pool can still be freed.
    while True:
        await asyncio.sleep(interval)
        pool = ref()
        if pool is None or pool.closed:
            return
        try:
            await pool.reap_idle()
        except Exception:
            _log.warning("pool %r: reaping idle resources failed", pool.name, exc_info=True)
        del pool
