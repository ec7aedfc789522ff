"""The report model: plain data, no rendering.

``Report.to_json_dict()`` is the report.json contract of docs/contracts.md (plus a
few extra keys, ``actions`` among them: see ``ActionSummary``);
``Report.series_json_dict()`` adds what the HTML report plots. Both return
only JSON-safe values: finite numbers, strings, lists.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from memwarden.find.analysis.counters import InputStats
from memwarden.find.analysis.records import ActionEvent, DeathInFlight

__all__ = [
    "ActionCount",
    "ActionMarker",
    "ActionMode",
    "ActionSummary",
    "InputStats",
    "LifeSeries",
    "OtherLives",
    "RecycleMarker",
    "Report",
    "RouteCost",
    "SeriesPoint",
    "Suspect",
    "SuspectKind",
    "Verdict",
    "WorkerSummary",
]

Verdict = Literal["leak", "no_leak", "inconclusive"]
SuspectKind = Literal["route", "resource", "allocation", "type", "deaths"]
ActionMode = Literal["on", "dry-run", "mixed"]


def _number(value: float | None, digits: int = 4) -> float | None:
    if value is None or not math.isfinite(value):
        return None
    return round(value, digits)


def _integer(value: float | None) -> int | None:
    if value is None or not math.isfinite(value):
        return None
    return round(value)


def _figure(value: float) -> float | int:
    """A logged figure as it was: whole numbers stay ints in JSON."""
    return int(value) if value.is_integer() else round(value, 4)


@dataclass(frozen=True, slots=True)
class Suspect:
    """A ranked leak suspect.

    ``per_request`` is growth in the suspect's own unit: blocks per call for
    a route, count per request for a resource or a type, objects per request
    for an allocation site. ``bytes_per_request`` is None where no byte
    measure exists (an fd has no size worth quoting).
    """

    kind: SuspectKind
    name: str
    per_request: float
    bytes_per_request: int | None
    confidence: float
    evidence: str

    def to_json_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "name": self.name,
            "per_request": _number(self.per_request),
            "bytes_per_request": _integer(self.bytes_per_request),
            "confidence": _number(min(max(self.confidence, 0.0), 1.0), 3),
            "evidence": self.evidence,
        }


@dataclass(frozen=True, slots=True)
class WorkerSummary:
    """One worker life: a PID between its first request and its recycle or death."""

    pid: int
    life: int
    requests: int
    first_seq: int
    last_seq: int
    rss_start_bytes: int | None
    rss_end_bytes: int | None
    slope_bytes_per_request: float | None
    blocks_per_request: float | None
    verdict: Verdict
    reason: str
    ended_by: str | None
    # Which heap series ``blocks_per_request`` comes from: "blocks_collected"
    # (live heap at each census), "blocks_after_full_gc", "blocks" or "blocks_delta".
    heap_signal: str | None = None
    # For "inconclusive": how many more requests of this worker its reason asks for.
    more_requests: int | None = None

    def to_json_dict(self) -> dict[str, Any]:
        return {
            "pid": self.pid,
            "requests": self.requests,
            "rss_start_bytes": self.rss_start_bytes,
            "rss_end_bytes": self.rss_end_bytes,
            "slope_bytes_per_request": _number(self.slope_bytes_per_request, 1),
            "verdict": self.verdict,
            "life": self.life,
            "first_seq": self.first_seq,
            "last_seq": self.last_seq,
            "blocks_per_request": _number(self.blocks_per_request, 3),
            "heap_signal": self.heap_signal,
            "reason": self.reason,
            "more_requests": self.more_requests,
            "ended_by": self.ended_by,
        }


@dataclass(frozen=True, slots=True)
class RecycleMarker:
    """Where a worker life ended, for the plots and the summary."""

    pid: int
    life: int | None
    seq: int | None  # the last request seq of that life, when known
    event: Literal["recycle", "worker_killed"]
    reason: str | None
    footprint_bytes: float | None
    limit_bytes: float | None
    signal: str | None
    oom_kill: bool | None
    timestamp: str | None

    def to_json_dict(self) -> dict[str, Any]:
        return {
            "pid": self.pid,
            "life": self.life,
            "seq": self.seq,
            "event": self.event,
            "reason": self.reason,
            "footprint_bytes": _integer(self.footprint_bytes),
            "limit_bytes": _integer(self.limit_bytes),
            "signal": self.signal,
            "oom_kill": self.oom_kill,
            "timestamp": self.timestamp,
        }


@dataclass(frozen=True, slots=True)
class ActionMarker:
    """A dry-run decision about a worker, at the last request it had logged by then."""

    pid: int
    life: int
    seq: int
    action: str  # "recycle", "hard_limit_kill"
    would: bool
    reason: str | None
    footprint_bytes: float | None
    limit_bytes: float | None
    timestamp: str | None

    def to_json_dict(self) -> dict[str, Any]:
        return {
            "pid": self.pid,
            "life": self.life,
            "seq": self.seq,
            "action": self.action,
            "would": self.would,
            "reason": self.reason,
            "footprint_bytes": _integer(self.footprint_bytes),
            "limit_bytes": _integer(self.limit_bytes),
            "timestamp": self.timestamp,
        }


@dataclass(frozen=True, slots=True)
class ActionCount:
    """How often one message was logged: ``would_recycle``, ``shed``, ``worker_killed``..."""

    message: str  # as logged
    action: str  # without its would_ prefix
    would: bool
    protective: bool  # an action (done or would); else a line that goes with one
    total: int
    workers: int | None  # distinct worker pids; None for the master's own lines
    processes: int | None  # processes ended (or to be), where the lines count them
    by: str | None  # the logged field ``breakdown`` counts: "reason", "pool"...
    breakdown: tuple[tuple[str, int], ...] = ()  # most frequent first

    def to_json_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"total": self.total}
        if self.workers is not None:
            out["workers"] = self.workers
        if self.processes is not None:
            out["processes"] = self.processes
        if self.by is not None:
            out[self.by] = dict(self.breakdown)
        return out


@dataclass(frozen=True, slots=True)
class ActionSummary:
    """report.json's ``actions``: what memwarden did and what a dry-run would have done.

    ``mode`` comes from the protective actions seen: "on" (only done),
    "dry-run" (only ``would_``), "mixed" (both), None (neither). ``events``
    is the first lines of each message, in log order; ``events_omitted``
    counts the rest.
    """

    mode: ActionMode | None = None
    counts: tuple[ActionCount, ...] = ()
    events: tuple[ActionEvent, ...] = ()
    events_omitted: int = 0

    @property
    def protective(self) -> tuple[ActionCount, ...]:
        return tuple(c for c in self.counts if c.protective)

    def count(self, message: str) -> ActionCount | None:
        return next((c for c in self.counts if c.message == message), None)

    def to_json_dict(self) -> dict[str, Any]:
        by = {c.message: c.by for c in self.counts}
        events = []
        for event in self.events:
            item: dict[str, Any] = {"t": event.timestamp, "pid": event.pid,
                                    "action": event.action, "would": event.would}
            field = by.get(event.message)
            if field is not None:
                item[field] = event.detail
            item.update((name, _figure(value)) for name, value in event.figures)
            events.append(item)
        return {
            "mode": self.mode,
            "counts": {c.message: c.to_json_dict() for c in self.counts},
            "events": events,
            "events_omitted": self.events_omitted,
        }


@dataclass(frozen=True, slots=True)
class SeriesPoint:
    """One plotted request. ``blocks`` is relative to the life's first request."""

    seq: int
    rss_bytes: float | None
    blocks: float | None
    census: Mapping[str, float] | None = None

    def to_json_dict(self) -> dict[str, Any]:
        point: dict[str, Any] = {"seq": self.seq, "rss_bytes": _integer(self.rss_bytes),
                                 "blocks": _integer(self.blocks)}
        if self.census:
            point["census"] = {kind: _number(value) for kind, value in self.census.items()}
        return point


@dataclass(frozen=True, slots=True)
class LifeSeries:
    """The downsampled series of one worker life."""

    pid: int
    life: int
    warmup_end_seq: int | None  # the last warm-up request: trends start after it
    points: tuple[SeriesPoint, ...]
    recycles: tuple[RecycleMarker, ...]
    actions: tuple[ActionMarker, ...] = ()  # dry-run decisions about this life

    def to_json_dict(self) -> dict[str, Any]:
        return {
            "pid": self.pid,
            "life": self.life,
            "warmup_end_seq": self.warmup_end_seq,
            "points": [point.to_json_dict() for point in self.points],
            "recycles": [marker.to_json_dict() for marker in self.recycles],
            "actions": [marker.to_json_dict() for marker in self.actions],
        }


@dataclass(frozen=True, slots=True)
class RouteCost:
    """What a route costs per call, over every request in the log."""

    route: str
    count: int
    failed: int
    mean_rss_delta_bytes: float | None
    median_rss_delta_bytes: float | None
    mean_blocks_delta: float | None
    mean_duration_ms: float | None

    def to_json_dict(self) -> dict[str, Any]:
        return {
            "route": self.route,
            "count": self.count,
            "failed": self.failed,
            "mean_rss_delta_bytes": _number(self.mean_rss_delta_bytes, 1),
            "median_rss_delta_bytes": _number(self.median_rss_delta_bytes, 1),
            "mean_blocks_delta": _number(self.mean_blocks_delta, 3),
            "mean_duration_ms": _number(self.mean_duration_ms, 3),
        }


@dataclass(frozen=True, slots=True)
class OtherLives:
    """The worker lives judged but not listed in ``workers`` (beyond the report's cap)."""

    count: int = 0
    requests: int = 0
    verdicts: tuple[tuple[str, int], ...] = ()  # verdict -> lives, most first

    def to_json_dict(self) -> dict[str, Any]:
        return {"count": self.count, "requests": self.requests,
                "verdicts": dict(self.verdicts)}


@dataclass(frozen=True, slots=True)
class Report:
    """The result of an analysis: a verdict, its reason, workers and ranked suspects."""

    verdict: Verdict
    reason: str
    requests: int
    failed_requests: int
    workers: tuple[WorkerSummary, ...]
    suspects: tuple[Suspect, ...]
    routes: tuple[RouteCost, ...]
    recycles: tuple[RecycleMarker, ...]
    series: tuple[LifeSeries, ...]
    input: InputStats
    actions: ActionSummary = ActionSummary()
    # Deaths with a request in flight: the newest (at most 100), newest first,
    # and how many per route, most first.
    deaths: tuple[DeathInFlight, ...] = ()
    deaths_by_route: tuple[tuple[str, int], ...] = ()
    deaths_total: int = 0
    other_lives: OtherLives = OtherLives()

    def to_json_dict(self) -> dict[str, Any]:
        """report.json: the docs/contracts.md keys first, then the extras."""
        return {
            "verdict": self.verdict,
            "requests": self.requests,
            "failed_requests": self.failed_requests,
            "workers": [worker.to_json_dict() for worker in self.workers],
            "suspects": [suspect.to_json_dict() for suspect in self.suspects],
            "reason": self.reason,
            "malformed_lines": self.input.malformed_lines,
            "input": self.input.to_json_dict(),
            "routes": [route.to_json_dict() for route in self.routes],
            "recycles": [marker.to_json_dict() for marker in self.recycles],
            "actions": self.actions.to_json_dict(),
            "deaths": [death.to_json_dict() for death in self.deaths],
            "deaths_by_route": dict(self.deaths_by_route),
            "deaths_total": self.deaths_total,
            "other_lives": self.other_lives.to_json_dict(),
        }

    def series_json_dict(self) -> dict[str, Any]:
        """The plotted series per worker life, for the HTML report."""
        return {"series": [life.to_json_dict() for life in self.series]}
