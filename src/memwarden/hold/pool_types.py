"""What a bounded pool hands out and reports: the lease, its errors, its snapshot,
and the record it keeps of each resource (:mod:`memwarden.hold.pool` is the pool)."""

from __future__ import annotations

import time
from dataclasses import dataclass
from types import TracebackType
from typing import Generic, Protocol, TypeVar

__all__ = [
    "Entry",
    "ErrorFilter",
    "Lease",
    "Leaser",
    "PoolClosed",
    "PoolStats",
    "PoolTimeout",
    "error_types",
]

T = TypeVar("T")

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


class Entry(Generic[T]):
    """One resource of a pool and what the pool knows about it."""

    __slots__ = ("discard", "last_used", "over", "resource", "retired", "uses")

    def __init__(self, resource: T, over: bool = False) -> None:
        self.resource = resource
        self.last_used = time.monotonic()
        self.uses = 0
        self.discard = False  # pool.discard() was called during the lease
        self.retired = False  # handed to close; a late release must not touch it
        self.over = over  # dry-run lent it beyond max_size; not counted against it


def error_types(errors: ErrorFilter) -> tuple[type[BaseException], ...]:
    """The exception types a lease's ``discard_on_error`` names (``True``: any
    ``Exception``; ``False``: none)."""
    if errors is True:
        return (Exception,)
    if errors is False:
        return ()
    if isinstance(errors, tuple):
        return errors
    return (errors,)


class Leaser(Protocol[T]):
    """What a lease needs of its pool (:class:`memwarden.hold.pool.Pool`)."""

    async def _checkout(self, timeout: float) -> Entry[T]: ...
    def _checkin(self, entry: Entry[T], *, discard: bool) -> None: ...


class Lease(Generic[T]):
    """``async with pool.acquire() as resource``: one checkout, one release."""

    __slots__ = ("_discard_on", "_entry", "_pool", "_timeout")

    def __init__(self, pool: Leaser[T], timeout: float,
                 discard_on: tuple[type[BaseException], ...]) -> None:
        self._pool = pool
        self._timeout = timeout
        self._discard_on = discard_on
        self._entry: Entry[T] | None = None

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
