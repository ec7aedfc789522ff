"""The one bus for protective actions: hold publishes, the rest subscribes.

A recycle, a shed request, a pool refusal or an OOM kill is published once,
as a small frozen event carrying its dry-run flag. Whoever wants to know
(the exporters, a test) subscribes; the part that acted knows none of them.

:func:`publish` never raises and never stops at a subscriber that fails:
each failing subscriber is logged once (the first time), then kept quiet,
so a broken exporter can neither fail a request nor flood the log.
Subscribers are inherited over fork on purpose: one that must act only in
the process that registered it checks ``os.getpid()`` itself.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass

__all__ = [
    "DEATH_CAUSES",
    "DIED_OOM_KILL",
    "DIED_SIGNAL",
    "DIED_TIMEOUT",
    "HARD_LIMIT",
    "IDLE",
    "MAX_REQUESTS",
    "RECYCLE_REASONS",
    "SOFT_LIMIT",
    "DeathInFlight",
    "Event",
    "OomKill",
    "OrphansReaped",
    "PoolDeclared",
    "PoolRefusal",
    "Recycle",
    "Shed",
    "WorkerLimit",
    "publish",
    "subscribe",
    "unsubscribe",
]

_log = logging.getLogger("memwarden.events")

# Why a worker is recycled: fixed words, since exporters make labels of them.
HARD_LIMIT = "hard_limit"
SOFT_LIMIT = "soft_limit"
MAX_REQUESTS = "max_requests"
IDLE = "idle"
RECYCLE_REASONS = (HARD_LIMIT, SOFT_LIMIT, MAX_REQUESTS, IDLE)


@dataclass(frozen=True)
class Recycle:
    """A worker recycled (or, with ``dry_run``, one that would have been)."""

    reason: str
    dry_run: bool = False


@dataclass(frozen=True)
class Shed:
    """Requests refused by load shedding (or that dry-run shedding would refuse)."""

    count: int = 1
    dry_run: bool = False


@dataclass(frozen=True)
class PoolRefusal:
    """An acquire a bounded pool refused (or that dry-run limits would refuse)."""

    pool: str
    dry_run: bool = False


@dataclass(frozen=True)
class PoolDeclared:
    """A pool was made: its refusal counters start at 0."""

    pool: str


@dataclass(frozen=True)
class OomKill:
    """Workers the kernel's OOM killer ended, as the master saw them die."""

    count: int = 1


@dataclass(frozen=True)
class WorkerLimit:
    """The footprint at which workers are now recycled: in the master before fork
    it holds for every worker forked afterwards; in a worker, for that worker."""

    limit_bytes: int | None


@dataclass(frozen=True)
class OrphansReaped:
    """Processes left behind by a worker (a browser, a tool server) that were
    terminated (or, with ``dry_run``, that would have been)."""

    count: int
    dry_run: bool = False


# How a worker died with a request in flight: fixed words, as for recycle reasons.
DIED_TIMEOUT = "timeout"
DIED_OOM_KILL = "oom_kill"
DIED_SIGNAL = "signal"
DEATH_CAUSES = (DIED_TIMEOUT, DIED_OOM_KILL, DIED_SIGNAL)


@dataclass(frozen=True)
class DeathInFlight:
    """A worker died (``cause``: one of DEATH_CAUSES) while serving a request;
    the master read which one from the worker's in-flight slot."""

    cause: str
    route: str
    request_id: str
    seconds: float


Event = (Recycle | Shed | PoolRefusal | PoolDeclared | OomKill | WorkerLimit
         | OrphansReaped | DeathInFlight)
Subscriber = Callable[[Event], object]

_subscribers: list[Subscriber] = []
_failed: set[int] = set()
_lock = threading.Lock()


def subscribe(subscriber: Subscriber) -> None:
    """Call ``subscriber(event)`` for every event published from now on (once, however
    often it subscribes)."""
    with _lock:
        if subscriber not in _subscribers:
            _subscribers.append(subscriber)


def unsubscribe(subscriber: Subscriber) -> None:
    with _lock:
        if subscriber in _subscribers:
            _subscribers.remove(subscriber)


def publish(event: Event) -> None:
    """Deliver ``event`` to every subscriber, in the order they subscribed. Never raises."""
    with _lock:
        subscribers = tuple(_subscribers)
    for subscriber in subscribers:
        try:
            subscriber(event)
        except Exception:
            key = id(subscriber)
            if key not in _failed:
                _failed.add(key)
                _log.exception("memwarden event subscriber %r failed on %s; "
                               "its later failures are not logged", subscriber,
                               type(event).__name__)
