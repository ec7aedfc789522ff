"""Typed records read from memwarden's log lines.

Only fields that passed validation reach these records: numbers are finite
and bounded, strings are bounded, so nothing downstream needs to re-check.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

__all__ = [
    "ActionEvent",
    "AllocationWindow",
    "DeathInFlight",
    "LifecycleEvent",
    "Record",
    "RequestRecord",
    "SiteDiff",
]


@dataclass(frozen=True, slots=True)
class RequestRecord:
    """One ``memwarden.request`` line. Absent measurements are None."""

    pid: int
    seq: int
    route: str
    method: str | None = None
    status: int | None = None
    duration_ms: float | None = None
    rss_bytes: float | None = None
    rss_delta_bytes: float | None = None
    blocks_delta: float | None = None
    blocks: float | None = None
    pss_bytes: float | None = None
    uss_bytes: float | None = None
    census: Mapping[str, float] | None = None
    timestamp: str | None = None

    @property
    def route_key(self) -> str:
        """The name a person uses for the route: "POST /chat"."""
        return f"{self.method} {self.route}" if self.method else self.route

    @property
    def failed(self) -> bool:
        return self.status is not None and self.status >= 500


@dataclass(frozen=True, slots=True)
class SiteDiff:
    """One allocation site of a tracemalloc snapshot diff."""

    site: str
    size_diff_bytes: float
    count_diff: float


@dataclass(frozen=True, slots=True)
class AllocationWindow:
    """One ``allocation_sites`` line: a snapshot diff over ``window_requests`` requests."""

    pid: int
    seq: int | None
    window_requests: int
    sites: tuple[SiteDiff, ...]


@dataclass(frozen=True, slots=True)
class LifecycleEvent:
    """A ``recycle`` or ``worker_killed`` line: the end of a worker life."""

    pid: int
    kind: Literal["recycle", "worker_killed"]
    reason: str | None = None
    footprint_bytes: float | None = None
    limit_bytes: float | None = None
    requests: int | None = None
    signal: str | None = None
    oom_kill: bool | None = None
    timestamp: str | None = None
    killed_by: str | None = None  # worker_killed: oom_killer, gunicorn_timeout...

    def describe(self) -> str:
        """A short phrase: "recycled (soft_limit)", "killed by SIGKILL (OOM)"."""
        if self.kind == "recycle":
            return f"recycled ({self.reason})" if self.reason else "recycled"
        signal = f" by {self.signal}" if self.signal else ""
        oom = " (OOM)" if self.oom_kill else ""
        return f"killed{signal}{oom}"


@dataclass(frozen=True, slots=True)
class ActionEvent:
    """A protective action memwarden logged: done, or only decided (``would``, dry-run).

    Also the lines around one (``recycle_done``, ``shedding_started``,
    ``worker_killed``...). ``action`` is the logged message without its
    ``would_`` prefix; ``detail`` the value of the field its counts are
    broken down by (see ``analysis.actions.KINDS``); ``figures`` the
    kind's numeric fields that were logged, in the kind's order.
    """

    pid: int
    action: str
    would: bool = False
    detail: str | None = None
    figures: tuple[tuple[str, float], ...] = ()
    timestamp: str | None = None

    @property
    def message(self) -> str:
        """The message as logged: "would_recycle"."""
        return f"would_{self.action}" if self.would else self.action

    def figure(self, name: str) -> float | None:
        for key, value in self.figures:
            if key == name:
                return value
        return None


@dataclass(frozen=True, slots=True)
class DeathInFlight:
    """A ``death_in_flight`` line: the master saw a worker die with a request running.

    ``cause`` is "timeout", "oom_kill" or "signal"; ``seconds`` how long the
    request had run; the footprints are the worker's at the request's start
    and at the last reading before it died.
    """

    pid: int
    cause: str
    route: str
    method: str | None = None
    signal: str | None = None
    request_id: str | None = None
    seconds: float | None = None
    footprint_start_bytes: float | None = None
    footprint_last_bytes: float | None = None
    timestamp: str | None = None

    @property
    def route_key(self) -> str:
        return f"{self.method} {self.route}" if self.method else self.route

    @property
    def growth_bytes(self) -> float | None:
        """What the footprint grew by while the request ran, when both ends are known."""
        if self.footprint_start_bytes is None or self.footprint_last_bytes is None:
            return None
        return self.footprint_last_bytes - self.footprint_start_bytes

    def to_json_dict(self) -> dict[str, Any]:
        """One entry of report.json's ``deaths``: the line's fields, absent ones left out."""
        out: dict[str, Any] = {"pid": self.pid, "cause": self.cause, "route": self.route_key}
        for key in ("signal", "request_id", "seconds", "footprint_start_bytes",
                    "footprint_last_bytes", "timestamp"):
            value = getattr(self, key)
            if value is None:
                continue
            if key.startswith("footprint"):
                value = round(value)
            elif key == "seconds":
                value = round(value, 3)
            out[key] = value
        return out


Record = RequestRecord | AllocationWindow | LifecycleEvent | ActionEvent | DeathInFlight
