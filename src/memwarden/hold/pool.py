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
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import os
import time
import weakref
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Generic, TypeVar

from memwarden import events
from memwarden.hold import perform as actions

__all__ = ["Lease", "Pool", "PoolClosed", "PoolStats", "PoolTimeout"]

T = TypeVar("T")
_log = logging.getLogger("memwarden.pool")

ErrorFilter = bool | type[BaseException] | tuple[type[BaseException], ...]


class PoolTimeout(TimeoutError):
    """No resource became free within the acquire timeout."""


class PoolClosed(RuntimeError):
    """The pool was closed (before or while acquiring)."""


@dataclass(frozen=True, slots=True)
class PoolStats:
    """A snapshot of a pool. ``size`` counts every occupied slot: idle, in use,
    being created and being closed (in dry-run also those lent beyond ``max_size``,
    so it may exceed it). ``refused``: acquires refused with :class:`PoolTimeout`;
    ``would_refuse``: those dry-run served beyond ``max_size`` instead."""

    name: str
    max_size: int
    size: int
    in_use: int
    idle: int
    creating: int
    closing: int
    waiting: int
    created: int
    closed: int
    create_failures: int
    close_failures: int
    health_failures: int
    refused: int
    would_refuse: int


class _Entry(Generic[T]):
    __slots__ = ("discard", "last_used", "over", "resource", "retired", "uses")

    def __init__(self, resource: T, over: bool = False) -> None:
        self.resource = resource
        self.last_used = time.monotonic()
        self.uses = 0
        self.discard = False  # pool.discard() was called during the lease
        self.retired = False  # handed to close; a late release must not touch it
        self.over = over  # dry-run lent it beyond max_size; not counted against it


class Lease(Generic[T]):
    """``async with pool.acquire() as resource``: one checkout, one release."""

    __slots__ = ("_discard_on", "_entry", "_pool", "_timeout")

    def __init__(self, pool: Pool[T], timeout: float,
                 discard_on: tuple[type[BaseException], ...]) -> None:
        self._pool = pool
        self._timeout = timeout
        self._discard_on = discard_on
        self._entry: _Entry[T] | None = None

    async def __aenter__(self) -> T:
        if self._entry is not None:
            raise RuntimeError("a pool lease cannot be entered twice")
        self._entry = await self._pool._checkout(self._timeout)
        return self._entry.resource

    async def __aexit__(self, exc_type: type[BaseException] | None,
                        exc: BaseException | None, tb: TracebackType | None) -> None:
        entry, self._entry = self._entry, None
        if entry is None:
            return
        poisoned = exc is not None and isinstance(exc, self._discard_on)
        self._pool._checkin(entry, discard=entry.discard or poisoned)


class Pool(Generic[T]):
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
        if mode is None:
            mode = _configured_mode(name)
        elif mode not in (actions.ON, actions.DRY_RUN, actions.OFF):
            raise ValueError(f"pool {name!r}: mode must be on, dry-run or off, got {mode!r}")
        self.name = name
        self.mode = mode
        # Decided once: off has no bound, so it never waits.
        self._bounded = mode != actions.OFF
        self.max_size = max_size
        self.acquire_timeout = acquire_timeout
        self.idle_ttl = idle_ttl
        self.max_uses = max_uses
        self.reap_interval = reap_interval
        self._create = create
        self._close = close
        self._health_check = health_check
        self._closed = False
        self._close_task: asyncio.Task[None] | None = None
        self._drained: asyncio.Event | None = None
        self._reaper: asyncio.Task[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._pid: int | None = None
        self._reset_state()
        self._register_gauges()
        # Its refusal counters start at 0, so that increase() sees the first refusal.
        events.publish(events.PoolDeclared(name))

    def _reset_state(self) -> None:
        # Idle entries ordered by release time: newest on the right (handed out
        # first), stalest on the left (expired first).
        self._idle: collections.deque[_Entry[T]] = collections.deque()
        # Keyed by id(): resources need not be hashable.
        self._in_use: dict[int, _Entry[T]] = {}
        self._queue: collections.deque[asyncio.Future[None]] = collections.deque()
        self._tasks: set[asyncio.Task[Any]] = set()
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
        if discard_on_error is True:
            discard_on: tuple[type[BaseException], ...] = (Exception,)
        elif discard_on_error is False:
            discard_on = ()
        elif isinstance(discard_on_error, tuple):
            discard_on = discard_on_error
        else:
            discard_on = (discard_on_error,)
        return Lease(self, wait, discard_on)

    def discard(self, resource: T) -> None:
        """Close ``resource`` when its lease ends instead of returning it."""
        entry = self._in_use.get(id(resource))
        if entry is None or entry.resource is not resource:
            if self._closed:
                return  # close() already took it back and closed it
            raise ValueError(f"pool {self.name!r}: {resource!r} is not leased from this pool")
        entry.discard = True

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
                self._unregister_gauges()
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

    def _size(self) -> int:
        return len(self._idle) + len(self._in_use) + self._creating + self._closing

    async def _checkout(self, timeout: float) -> _Entry[T]:
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
                self._refuse(timeout)  # on raises PoolTimeout; dry-run returns
                over = True

    async def _take_idle(self) -> _Entry[T] | None:
        check = self._health_check
        while self._idle:
            entry = self._idle.pop()
            self._in_use[id(entry.resource)] = entry
            if check is not None and not await self._healthy(entry, check):
                continue
            entry.uses += 1
            return entry
        return None

    async def _healthy(self, entry: _Entry[T], check: Callable[[T], Awaitable[bool]]) -> bool:
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
                            over: bool = False) -> _Entry[T]:
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

    async def _make(self, over: bool) -> _Entry[T]:
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
        return _Entry(resource, over)

    def _adopt(self, task: asyncio.Task[_Entry[T]]) -> None:
        """A creation whose acquirer was cancelled: keep the resource for others."""
        if task.cancelled() or task.exception() is not None:
            return  # _make already freed the slot; exception() marked it retrieved
        self._creating -= 1
        self._checkin(task.result(), discard=False)

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

    def _refuse(self, timeout: float) -> None:
        """No slot freed within ``timeout``: log and raise :class:`PoolTimeout` (on),
        or log ``would_pool_refuse`` with the same figures and return (dry-run)."""
        # The figures on would see: dry-run's loans beyond max_size left out, and
        # the caller, just out of the queue, still counted as waiting.
        size = self._size() - self._over
        in_use = len(self._in_use) - sum(1 for e in self._in_use.values() if e.over)
        idle, waiting = len(self._idle), self._waiting + 1
        fields = {"pool": self.name, "size": size, "max_size": self.max_size,
                  "in_use": in_use, "idle": idle, "waiting": waiting, "timeout_s": timeout}
        if actions.perform(self.mode, _log, "pool_refuse", fields, lambda: None):
            self._refused += 1
            _export(self.name, refused=True)
            raise PoolTimeout(
                f"pool {self.name!r}: no resource free within {timeout:g} s "
                f"(size {size}/{self.max_size}, in use {in_use}, idle {idle}, "
                f"creating {self._creating}, closing {self._closing}, waiting {waiting})")
        self._would_refuse += 1
        _export(self.name, refused=False)

    def _wake_one(self) -> None:
        while self._queue:
            fut = self._queue.popleft()
            if not fut.done():
                fut.set_result(None)
                return

    def _checkin(self, entry: _Entry[T], *, discard: bool) -> None:
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

    # -- closing ----------------------------------------------------------

    def _retire_stale(self, now: float) -> list[asyncio.Task[None]]:
        if self.idle_ttl is None:
            return []
        tasks = []
        while self._idle and now - self._idle[0].last_used > self.idle_ttl:
            task = self._retire(self._idle.popleft())
            if task is not None:
                tasks.append(task)
        return tasks

    def _retire(self, entry: _Entry[T]) -> asyncio.Task[None] | None:
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

    async def _close_entry(self, entry: _Entry[T]) -> None:
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

    def _check_drained(self) -> None:
        if self._drained is not None and not self._in_use and not self._creating:
            self._drained.set()

    async def _shutdown(self, timeout: float) -> None:
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
        self._unregister_gauges()

    # -- census -----------------------------------------------------------

    def _gauge_names(self) -> tuple[str, ...]:
        # Every name a pool of this name may register, whatever its mode.
        return tuple(f"pool.{self.name}.{kind}"
                     for kind in ("size", "in_use", "waiting", "refused", "would_refuse"))

    def _register_gauges(self) -> None:
        try:
            from memwarden.see.census import gauge, remove_gauge
        except ImportError:
            return
        ref = weakref.ref(self)
        size, in_use, waiting, refused, would_refuse = self._gauge_names()
        # Through a weak reference, so the census never keeps a pool alive.
        gauge(size, lambda: _read(ref, lambda p: p._size()))
        gauge(in_use, lambda: _read(ref, lambda p: len(p._in_use)))
        gauge(waiting, lambda: _read(ref, lambda p: p._waiting))
        # Refusals under the mode's own name, so that a dry-run one never reads as
        # a real one (off refuses nothing). The other name may be left by an earlier
        # pool of this name, in another mode: it goes.
        if self.mode == actions.ON:
            gauge(refused, lambda: _read(ref, lambda p: p._refused))
        else:
            remove_gauge(refused)
        if self.mode == actions.DRY_RUN:
            gauge(would_refuse, lambda: _read(ref, lambda p: p._would_refuse))
        else:
            remove_gauge(would_refuse)
        _gauge_owners[self.name] = self
        finalizer = weakref.finalize(self, _drop_gauges, self.name, self._gauge_names())
        finalizer.atexit = False

    def _unregister_gauges(self) -> None:
        if _gauge_owners.get(self.name) is self:
            del _gauge_owners[self.name]
            _drop_gauges(self.name, self._gauge_names())


# Which pool owns the gauges of a name: a second pool with the same name takes
# them over, and closing the first must not remove the second's.
_gauge_owners: weakref.WeakValueDictionary[str, Pool[Any]] = weakref.WeakValueDictionary()


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


def _configured_mode(name: str) -> str:
    """``MEMWARDEN_POOL_LIMITS`` as capped by ``MEMWARDEN_PROTECT``; ``on`` if unreadable."""
    try:
        from memwarden.settings import SETTINGS, Settings

        # Only these two: a bad value of another variable (gunicorn names it at
        # start) must not change how a pool made later behaves.
        wanted = {s.env for s in SETTINGS if s.name in ("protect", "pool_limits")}
        environ = {k: v for k, v in os.environ.items() if k in wanted}
        return Settings.from_env(environ).pool_limits
    except Exception as exc:
        _log.warning("pool %r: %s; its limits stay on", name, exc)
        return actions.ON


def _export(name: str, *, refused: bool) -> None:
    events.publish(events.PoolRefusal(name, dry_run=not refused))


def _read(ref: weakref.ref[Pool[T]], fn: Callable[[Pool[T]], int]) -> int | None:
    pool = ref()
    return None if pool is None or pool.closed else fn(pool)


def _drop_gauges(name: str, names: tuple[str, ...]) -> None:
    if name in _gauge_owners:
        return
    try:
        from memwarden.see.census import remove_gauge
    except ImportError:
        return
    for gauge_name in names:
        remove_gauge(gauge_name)
