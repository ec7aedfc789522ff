"""Recycling policy: when a worker should restart. Pure logic, no I/O.

The worker side (:mod:`memwarden.hold.worker`) and the master side
(:mod:`memwarden.hold.watchdog`) measure, then ask this module, then act; so every
rule here is unit-tested without processes.

Limits on the worker's *footprint* (its own RSS or PSS plus its descendants'
PSS, see :mod:`memwarden.footprint`):

- ``hard``: the master stops the worker, SIGTERM then SIGKILL after a grace
  period, so a worker stuck in a request is caught too. A worker that sees it
  at a request boundary restarts at once, whatever the rolling limit says.
- ``soft``: graceful restart after the current request.
- ``idle``: lower; the worker restarts in the next idle gap (no request for
  ``idle_seconds``) rather than in the middle of a burst.
- ``max_requests``: restart after that many requests (health checks are not
  counted), with a jitter drawn once per worker.

Defaults come from the cgroup: when the cgroup has a memory limit, a
percentage limit is of the worker's share, ``limit / workers``. So with the
default 60% / 80% / 95%, a 4 GiB container with 4 workers recycles a worker
when idle above 614 MiB, after its request above 819 MiB, and the master
stops it above 973 MiB. The share ignores the master's own few tens of MiB:
the 5% left under the hard limit covers it.
"""

from __future__ import annotations

import enum
import random
from dataclasses import dataclass
from typing import Any

from memwarden.events import HARD_LIMIT, IDLE, MAX_REQUESTS, SOFT_LIMIT
from memwarden.settings import Settings, SettingsError
from memwarden.sizes import Size

__all__ = [
    "NO_ACTION",
    "Action",
    "Decision",
    "Escalation",
    "HardLimitEscalator",
    "Limits",
    "check_settings",
    "decide",
    "draw_max_requests",
    "limit_basis",
    "protection_state",
    "resolve_limits",
    "worker_share",
]

# The recycle reasons are the event bus's words (memwarden.events), re-exported here
# for the code that decides.
__all__ += ["HARD_LIMIT", "IDLE", "MAX_REQUESTS", "SOFT_LIMIT"]


class Action(enum.Enum):
    NONE = "none"
    NOW = "now"  # restart gracefully, after the current request
    AT_IDLE = "at_idle"  # restart in the next idle gap


@dataclass(frozen=True, slots=True)
class Limits:
    """One worker's limits, resolved to bytes and a request count."""

    soft_bytes: int | None = None
    idle_bytes: int | None = None
    hard_bytes: int | None = None
    idle_seconds: float = 5.0
    max_requests: int | None = None  # this worker's, jitter included

    @property
    def watches_memory(self) -> bool:
        return (self.soft_bytes is not None or self.idle_bytes is not None
                or self.hard_bytes is not None)

    @property
    def active(self) -> bool:
        return self.watches_memory or self.max_requests is not None

    def fields(self) -> dict[str, Any]:
        """For log lines: the limits that are set."""
        out: dict[str, Any] = {}
        for key in ("soft_bytes", "idle_bytes", "hard_bytes", "max_requests"):
            value = getattr(self, key)
            if value is not None:
                out[key.replace("_bytes", "_limit_bytes")] = value
        if self.idle_bytes is not None:
            out["idle_seconds"] = self.idle_seconds
        return out


@dataclass(frozen=True, slots=True)
class Decision:
    action: Action
    reason: str | None = None
    footprint_bytes: int | None = None
    limit_bytes: int | None = None
    requests: int = 0
    max_requests: int | None = None
    idle_for: float | None = None

    @property
    def bypasses_rolling(self) -> bool:
        """Over the hard limit, waiting for a recycle slot is not an option."""
        return self.reason == HARD_LIMIT

    def fields(self) -> dict[str, Any]:
        """The figures of the decision, as log fields (absent rather than null)."""
        out: dict[str, Any] = {}
        if self.reason is not None:
            out["reason"] = self.reason
        out["requests"] = self.requests
        if self.footprint_bytes is not None:
            out["footprint_bytes"] = self.footprint_bytes
        if self.limit_bytes is not None:
            out["limit_bytes"] = self.limit_bytes
        if self.max_requests is not None:
            out["max_requests"] = self.max_requests
        if self.idle_for is not None:
            out["idle_seconds"] = round(self.idle_for, 3)
        return out


NO_ACTION = Decision(Action.NONE)


def decide(limits: Limits, footprint_bytes: int | None, requests: int,
           idle_for: float | None) -> Decision:
    """What this worker should do now.

    ``footprint_bytes`` is None when it could not be measured (memory limits
    then do not apply); ``requests`` counts requests that are not health
    checks; ``idle_for`` is how long the worker has had no request in flight,
    None while one is. Precedence: hard, soft, max_requests, idle.
    """
    fp = footprint_bytes
    if fp is not None:
        if limits.hard_bytes is not None and fp >= limits.hard_bytes:
            return Decision(Action.NOW, HARD_LIMIT, fp, limits.hard_bytes, requests)
        if limits.soft_bytes is not None and fp >= limits.soft_bytes:
            return Decision(Action.NOW, SOFT_LIMIT, fp, limits.soft_bytes, requests)
    if limits.max_requests is not None and requests >= limits.max_requests:
        return Decision(Action.NOW, MAX_REQUESTS, fp, None, requests, limits.max_requests)
    if fp is not None and limits.idle_bytes is not None and fp >= limits.idle_bytes:
        if idle_for is not None and idle_for >= limits.idle_seconds:
            return Decision(Action.NOW, IDLE, fp, limits.idle_bytes, requests,
                            idle_for=idle_for)
        return Decision(Action.AT_IDLE, IDLE, fp, limits.idle_bytes, requests,
                        idle_for=idle_for)
    return NO_ACTION


def worker_share(cgroup_limit: int | None, workers: int) -> int | None:
    """The part of the cgroup's memory limit one worker may use: limit / workers."""
    if cgroup_limit is None or cgroup_limit <= 0:
        return None
    return cgroup_limit // max(1, workers)


def draw_max_requests(base: int, jitter: int, rng: random.Random) -> int | None:
    """``base + randint(0, jitter)``, drawn once per worker (as gunicorn does); 0 is off."""
    if base <= 0:
        return None
    return base + (rng.randint(0, jitter) if jitter > 0 else 0)


def resolve_limits(settings: Settings, cgroup_limit: int | None, workers: int,
                   rng: random.Random | None = None) -> tuple[Limits, list[str]]:
    """This worker's limits, and a note for each limit dropped as inconsistent.

    Percentages resolve against :func:`worker_share`; absolute sizes stand as
    given. A limit that would fire before a lower one makes no sense (an idle
    limit above the soft limit, a soft limit above the hard one): it is dropped
    and named in the notes, which the caller logs.
    """
    share = worker_share(cgroup_limit, workers)
    soft = _resolve(settings.soft_limit, share)
    idle = _resolve(settings.idle_limit, share)
    hard = _resolve(settings.hard_limit, share)
    notes: list[str] = []
    if soft is not None and hard is not None and soft > hard:
        notes.append(f"soft limit {soft} is above the hard limit {hard}: soft limit ignored")
        soft = None
    ceiling = soft if soft is not None else hard
    if idle is not None and ceiling is not None and idle > ceiling:
        notes.append(f"idle limit {idle} is above the {'soft' if soft else 'hard'} limit "
                     f"{ceiling}: idle limit ignored")
        idle = None
    max_requests = draw_max_requests(settings.max_requests, settings.max_requests_jitter,
                                     rng if rng is not None else random.Random())
    return Limits(soft, idle, hard, settings.idle_seconds, max_requests), notes


def _resolve(size: Size | None, share: int | None) -> int | None:
    return None if size is None else size.resolve(share)


_MEMORY_LIMITS = ("MEMWARDEN_SOFT_LIMIT", "MEMWARDEN_IDLE_LIMIT", "MEMWARDEN_HARD_LIMIT")


def limit_basis(settings: Settings, limits: Limits) -> str:
    """Where the memory limits come from, for every line that shows the state:
    ``cgroup`` (a percentage of the worker's share), ``set`` (sizes given),
    ``none`` (no memory limit applies: recycling by memory cannot act), or
    ``off`` (recycling switched off)."""
    if settings.recycle == "off":
        return "off"
    if not limits.watches_memory:
        return "none"
    resolved = ((settings.soft_limit, limits.soft_bytes), (settings.idle_limit, limits.idle_bytes),
                (settings.hard_limit, limits.hard_bytes))
    return "cgroup" if any(size is not None and size.fraction is not None and value is not None
                           for size, value in resolved) else "set"


def protection_state(settings: Settings, cgroup_limit: int | None, workers: int
                     ) -> tuple[dict[str, Any], list[str]]:
    """The master's start-line fields (``limit``: see :func:`limit_basis`), and one
    plain warning for each protection that is on but cannot act, naming what is
    missing and what to set."""
    limits, _ = resolve_limits(settings, cgroup_limit, workers, random.Random(0))
    basis = limit_basis(settings, limits)
    warnings: list[str] = []
    # With a cgroup limit, no limit means all three were switched off: a choice, not a gap.
    if basis == "none" and cgroup_limit is None:
        backstop = ("only MEMWARDEN_MAX_REQUESTS recycles workers" if limits.max_requests
                    else "no worker is ever recycled")
        warnings.append(
            "memwarden cannot recycle workers by memory: there is no cgroup memory limit "
            f"and {', '.join(_MEMORY_LIMITS)} are percentages of it or off, so {backstop}; "
            "set a size (MEMWARDEN_SOFT_LIMIT=1GiB, MEMWARDEN_HARD_LIMIT=1200MiB) or run "
            "under a memory limit")
    if settings.shed != "off" and cgroup_limit is None:
        unresolved = [name for name, value in (
            ("MEMWARDEN_SHED_HIGH", settings.shed_high is not None
             and settings.shed_high.fraction is not None),
            ("MEMWARDEN_SHED_CGROUP_HIGH", settings.shed_cgroup_high is not None)) if value]
        if unresolved:
            warnings.append(
                f"memwarden cannot shed load: {' and '.join(unresolved)} "
                f"{'is a share' if len(unresolved) == 1 else 'are shares'} of the cgroup "
                "memory limit, and there is none; set MEMWARDEN_SHED_HIGH to a size "
                "(MEMWARDEN_SHED_HIGH=1GiB) or run under a memory limit")
    return {"limit": basis}, warnings


def check_settings(settings: Settings) -> None:
    """Cross-checks at load: limits comparable now must be in order."""
    named = [("MEMWARDEN_IDLE_LIMIT", settings.idle_limit),
             ("MEMWARDEN_SOFT_LIMIT", settings.soft_limit),
             ("MEMWARDEN_HARD_LIMIT", settings.hard_limit)]
    for i, (low_name, low) in enumerate(named):
        for high_name, high in named[i + 1:]:
            if low is None or high is None:
                continue
            if low.bytes is not None and high.bytes is not None:
                bad = low.bytes > high.bytes
            elif low.fraction is not None and high.fraction is not None:
                bad = low.fraction > high.fraction
            else:
                continue  # a size against a percentage: checked once resolved
            if bad:
                raise SettingsError(f"{low_name}={low} is above {high_name}={high}; "
                                    "expected idle <= soft <= hard")
    pairs = [("MEMWARDEN_SHED_LOW", settings.shed_low, "MEMWARDEN_SHED_HIGH",
              settings.shed_high)]
    for low_name, low, high_name, high in pairs:
        if low is not None and high is None:
            raise SettingsError(f"{low_name}={low} is set without {high_name}")
        if low is not None and high is not None:
            if low.bytes is not None and high.bytes is not None:
                bad = low.bytes >= high.bytes
            elif low.fraction is not None and high.fraction is not None:
                bad = low.fraction >= high.fraction
            else:
                bad = False
            if bad:
                raise SettingsError(f"{low_name}={low} must be below {high_name}={high}")
    if settings.shed_cgroup_low is not None:
        if settings.shed_cgroup_high is None:
            raise SettingsError("MEMWARDEN_SHED_CGROUP_LOW is set without "
                                "MEMWARDEN_SHED_CGROUP_HIGH")
        if settings.shed_cgroup_low >= settings.shed_cgroup_high:
            raise SettingsError(
                f"MEMWARDEN_SHED_CGROUP_LOW={settings.shed_cgroup_low:.0%} must be below "
                f"MEMWARDEN_SHED_CGROUP_HIGH={settings.shed_cgroup_high:.0%}")


class Escalation(enum.Enum):
    NONE = "none"
    TERM = "term"  # graceful: the worker finishes its request and exits
    KILL = "kill"  # the grace period passed and it is still there


class HardLimitEscalator:
    """The master's hard limit per worker: SIGTERM once over it, SIGKILL after grace.

    Once the SIGTERM is sent the worker is on its way out whatever its
    footprint does next; if it has not exited after ``grace`` seconds it is
    stuck, and is killed. Pure: the caller supplies the time and acts.
    """

    __slots__ = ("_grace", "_killed", "_termed")

    def __init__(self, grace: float) -> None:
        self._grace = grace
        self._termed: dict[int, float] = {}
        self._killed: set[int] = set()

    @property
    def grace(self) -> float:
        return self._grace

    def step(self, pid: int, footprint_bytes: int | None, hard_bytes: int | None,
             now: float, stopping: bool = False) -> Escalation:
        """``stopping``: the worker already began a graceful stop of its own; over
        the hard limit it gets no second SIGTERM, but the grace period runs."""
        termed = self._termed.get(pid)
        if termed is None:
            if (hard_bytes is not None and footprint_bytes is not None
                    and footprint_bytes >= hard_bytes):
                self._termed[pid] = now
                return Escalation.NONE if stopping else Escalation.TERM
            return Escalation.NONE
        if pid not in self._killed and now - termed >= self._grace:
            self._killed.add(pid)
            return Escalation.KILL
        return Escalation.NONE

    def stopping(self, pid: int) -> bool:
        """True once this worker was sent SIGTERM for the hard limit."""
        return pid in self._termed

    def killed(self, pid: int) -> bool:
        return pid in self._killed

    def forget(self, pid: int) -> None:
        self._termed.pop(pid, None)
        self._killed.discard(pid)
