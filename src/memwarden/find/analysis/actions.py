"""Protective actions in the logs: what memwarden did, and what a dry-run would have done.

Beside its request lines, memwarden logs every protective action: in mode
``on`` under the action's name (``recycle``, ``shed``, ``terminate_orphans``,
``terminate_descendants``, ``hard_limit_kill``, ``pool_refuse``), in
``dry-run`` as ``would_<name>`` with the same figures, the action not taken.
Some lines go with them in every mode: ``recycle_done``,
``recycle_deferred``, ``shedding_started`` / ``shedding_stopped``,
``worker_killed``, ``oom_kill``, ``orphan_killed``, ``descendants_terminated``.

``ActionTally`` counts them while the log streams past, in memory bounded
whatever the log holds: a count per logged message (a fixed set of names), a
breakdown by one field per message (at most ``MAX_DETAILS`` distinct values),
distinct worker pids (at most ``MAX_PIDS``), and the first
``MAX_EVENTS_PER_MESSAGE`` lines of each message for the timeline. Its
``summary()`` is report.json's ``actions`` (``model.ActionSummary``; the
schema is in docs/rollout.md, "Reading the report during rollout").
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from memwarden.find.analysis.model import ActionCount, ActionMode, ActionSummary
from memwarden.find.analysis.records import ActionEvent, LifecycleEvent

__all__ = [
    "ACTION_LINES",
    "KINDS",
    "MAX_DETAILS",
    "MAX_EVENTS_PER_MESSAGE",
    "MAX_PIDS",
    "MODE_WORDS",
    "PLOTTED",
    "ActionKind",
    "ActionTally",
    "breakdown_text",
    "describe",
    "describe_actions",
    "from_lifecycle",
    "phrase",
]

MAX_EVENTS_PER_MESSAGE = 50
MAX_DETAILS = 50
MAX_PIDS = 4096
OTHER_DETAILS = "(other)"

RECYCLE_LOGGER = "memwarden.recycle"
SHED_LOGGER = "memwarden.shed"
ORPHANS_LOGGER = "memwarden.orphans"
POOL_LOGGER = "memwarden.pool"

_FOOTPRINT = ("footprint_bytes", "limit_bytes")


@dataclass(frozen=True, slots=True)
class ActionKind:
    """One kind of line: its logger, whether it is a protective action, what to keep."""

    name: str
    logger: str
    label: str  # the table's row: "Recycle a worker"
    protective: bool = True  # also logged as would_<name>; decides the mode
    by: str | None = None  # the field the counts are broken down by
    figures: tuple[str, ...] = ()  # numeric fields kept on each event
    processes: str | None = None  # the figure that counts processes, summed
    worker: bool = True  # the line's pid is a worker's (else the master's)


KINDS: dict[str, ActionKind] = {kind.name: kind for kind in (
    ActionKind("recycle", RECYCLE_LOGGER, "Recycle a worker", by="reason",
               figures=(*_FOOTPRINT, "requests")),
    ActionKind("hard_limit_kill", RECYCLE_LOGGER, "Kill a worker stuck over the hard limit",
               figures=_FOOTPRINT),
    ActionKind("shed", SHED_LOGGER, "Shed a request (503)",
               figures=("footprint_bytes", "shed_high_bytes")),
    ActionKind("terminate_descendants", ORPHANS_LOGGER,
               "End an exiting worker's descendants", figures=("descendants",),
               processes="descendants"),
    ActionKind("terminate_orphans", ORPHANS_LOGGER, "End orphaned processes",
               figures=("orphans",), processes="orphans", worker=False),
    ActionKind("pool_refuse", POOL_LOGGER, "Refuse a pool acquire", by="pool",
               figures=("size", "max_size", "in_use", "idle", "waiting", "timeout_s")),
    ActionKind("recycle_done", RECYCLE_LOGGER, "Replacement worker booted", protective=False),
    ActionKind("recycle_deferred", RECYCLE_LOGGER, "Recycle deferred (others recycling)",
               protective=False, by="reason", figures=_FOOTPRINT),
    ActionKind("shedding_started", SHED_LOGGER, "Shedding started", protective=False,
               by="signal", figures=("footprint_bytes",)),
    ActionKind("shedding_stopped", SHED_LOGGER, "Shedding stopped", protective=False,
               by="signal", figures=("footprint_bytes",)),
    ActionKind("worker_killed", RECYCLE_LOGGER, "Worker killed by a signal", protective=False,
               by="killed_by"),
    ActionKind("oom_kill", RECYCLE_LOGGER, "OOM kill of another process", protective=False,
               figures=("count",), processes="count", worker=False),
    ActionKind("orphan_killed", ORPHANS_LOGGER, "Orphan killed after its grace period",
               protective=False, worker=False),
    ActionKind("descendants_terminated", ORPHANS_LOGGER, "Descendants ended",
               protective=False, figures=("terminated", "killed")),
)}

# Logged message -> (kind, would). The reader's only lookup for these lines.
ACTION_LINES: dict[str, tuple[ActionKind, bool]] = {
    **{kind.name: (kind, False) for kind in KINDS.values()},
    **{f"would_{kind.name}": (kind, True) for kind in KINDS.values() if kind.protective},
}

# Dry-run decisions drawn on the memory plot of the worker they concern.
# (A recycle that was done ends the worker's life and is drawn already.)
PLOTTED = frozenset({"recycle", "hard_limit_kill"})


def from_lifecycle(event: LifecycleEvent) -> ActionEvent:
    """A ``recycle`` or ``worker_killed`` line, which also ends a worker life, as an action."""
    if event.kind == "recycle":
        figures = tuple((name, value) for name, value in (
            ("footprint_bytes", event.footprint_bytes), ("limit_bytes", event.limit_bytes),
            ("requests", None if event.requests is None else float(event.requests)))
            if value is not None)
        return ActionEvent(pid=event.pid, action="recycle", detail=event.reason,
                           figures=figures, timestamp=event.timestamp)
    return ActionEvent(pid=event.pid, action="worker_killed", detail=event.killed_by,
                       timestamp=event.timestamp)


@dataclass(slots=True)
class _Count:
    total: int = 0
    processes: int = 0
    pids: set[int] = field(default_factory=set)
    details: dict[str, int] = field(default_factory=dict)


class ActionTally:
    """Counts action lines and keeps the first few of each for the timeline."""

    __slots__ = ("_counts", "_events", "_kept", "_omitted")

    def __init__(self) -> None:
        self._counts: dict[str, _Count] = {}
        self._events: list[ActionEvent] = []
        self._kept: dict[str, int] = {}
        self._omitted = 0

    def add(self, event: ActionEvent) -> None:
        message = event.message
        count = self._counts.get(message)
        if count is None:
            count = self._counts[message] = _Count()
        count.total += 1
        kind = KINDS[event.action]
        if kind.worker and len(count.pids) < MAX_PIDS:
            count.pids.add(event.pid)
        if event.detail is not None:
            details = count.details
            key = event.detail if event.detail in details or len(details) < MAX_DETAILS \
                else OTHER_DETAILS
            details[key] = details.get(key, 0) + 1
        if kind.processes is not None:
            processes = event.figure(kind.processes)
            if processes is not None:
                count.processes += int(processes)
        kept = self._kept.get(message, 0)
        if kept < MAX_EVENTS_PER_MESSAGE:
            self._kept[message] = kept + 1
            self._events.append(event)
        else:
            self._omitted += 1

    def merge(self, other: ActionTally) -> None:
        """Add a later part of the log's tally (``--jobs``, ``--merge``)."""
        for message, theirs in other._counts.items():
            mine = self._counts.setdefault(message, _Count())
            mine.total += theirs.total
            mine.processes += theirs.processes
            for pid in theirs.pids:
                if len(mine.pids) >= MAX_PIDS:
                    break
                mine.pids.add(pid)
            for detail, n in theirs.details.items():
                key = detail if detail in mine.details or len(mine.details) < MAX_DETAILS \
                    else OTHER_DETAILS
                mine.details[key] = mine.details.get(key, 0) + n
        for event in other._events:
            kept = self._kept.get(event.message, 0)
            if kept < MAX_EVENTS_PER_MESSAGE:
                self._kept[event.message] = kept + 1
                self._events.append(event)
            else:
                self._omitted += 1
        self._omitted += other._omitted

    def to_json(self) -> dict[str, Any]:
        return {"counts": {m: [c.total, c.processes, sorted(c.pids), c.details]
                           for m, c in self._counts.items()},
                "events": [[e.pid, e.action, e.would, e.detail, e.figures, e.timestamp]
                           for e in self._events],
                "omitted": self._omitted}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> ActionTally:
        tally = cls()
        for message, (total, processes, pids, details) in data["counts"].items():
            tally._counts[message] = _Count(total, processes, set(pids), dict(details))
        for pid, action, would, detail, figures, timestamp in data["events"]:
            event = ActionEvent(pid, action, would, detail,
                                tuple((name, value) for name, value in figures), timestamp)
            tally._events.append(event)
            tally._kept[event.message] = tally._kept.get(event.message, 0) + 1
        tally._omitted = data["omitted"]
        return tally

    def summary(self) -> ActionSummary:
        counts = []
        done = would = False
        # In the table's order: each kind, its would_ line right after it.
        for kind in KINDS.values():
            for is_would in (False, True):
                message = f"would_{kind.name}" if is_would else kind.name
                count = self._counts.get(message)
                if count is None:
                    continue
                if kind.protective:
                    would = would or is_would
                    done = done or not is_would
                breakdown = tuple(sorted(count.details.items(), key=lambda kv: (-kv[1], kv[0])))
                counts.append(ActionCount(
                    message=message, action=kind.name, would=is_would,
                    protective=kind.protective, total=count.total,
                    workers=len(count.pids) if kind.worker else None,
                    processes=count.processes if kind.processes is not None else None,
                    by=kind.by, breakdown=breakdown))
        mode: ActionMode | None = "mixed" if done and would else \
            "on" if done else "dry-run" if would else None
        return ActionSummary(mode=mode, counts=tuple(counts), events=tuple(self._events),
                             events_omitted=self._omitted)


# -- words: the text summary and the HTML report say the same -----------------------------


def _plural(n: int, one: str, many: str | None = None) -> str:
    return f"{n:,} {one if n == 1 else (many or one + 's')}"


def breakdown_text(count: ActionCount, named: bool = False) -> str:
    """"soft_limit 3, idle 1" ("by reason: soft_limit 3, idle 1" when ``named``);
    empty when the kind has no breakdown."""
    text = ", ".join(f"{name} {n:,}" for name, n in count.breakdown)
    return f"by {count.by}: {text}" if named and text else text


def _in_brackets(*parts: str) -> str:
    kept = [part for part in parts if part]
    return f" ({'; '.join(kept)})" if kept else ""


def phrase(count: ActionCount) -> str:
    """One protective action in words: "would recycle 3 workers (soft_limit 2, idle 1)"."""
    breakdown = breakdown_text(count)
    would = count.would
    if count.action in ("recycle", "hard_limit_kill"):
        workers = count.workers or count.total
        verb = ("would recycle" if would else "recycled") if count.action == "recycle" \
            else ("would kill" if would else "killed")
        noun = _plural(workers, "worker") + \
            ("" if count.action == "recycle" else " stuck over the hard limit")
        # Dry-run logs once per reason per worker: a worker may have several.
        decisions = _plural(count.total, "decision") if count.total != workers else ""
        if decisions and breakdown:
            return f"{verb} {noun} ({decisions}: {breakdown})"
        return f"{verb} {noun}{_in_brackets(decisions, breakdown)}"
    if count.action == "shed":
        return f"{'would shed' if would else 'shed'} {_plural(count.total, 'request')}"
    if count.action == "terminate_descendants":
        return (f"{'would end' if would else 'ended'} the descendants of "
                f"{_plural(count.total, 'exiting worker')}"
                f"{_in_brackets(_plural(count.processes or 0, 'process', 'processes'))}")
    if count.action == "terminate_orphans":
        return (f"{'would end' if would else 'ended'} "
                f"{_plural(count.processes or 0, 'orphaned process', 'orphaned processes')}"
                f"{_in_brackets(_plural(count.total, 'sweep'))}")
    if count.action == "pool_refuse":
        return (f"{'would refuse' if would else 'refused'} "
                f"{_plural(count.total, 'pool acquire')}{_in_brackets(breakdown)}")
    return f"{count.message} {count.total:,}{_in_brackets(breakdown)}"


MODE_WORDS: dict[ActionMode, str] = {
    "on": "done",
    "dry-run": "dry-run: logged, not done",
    "mixed": "some done, some dry-run only",
}


def describe_actions(summary: ActionSummary) -> tuple[str, ...]:
    """A line for what was done and one for what a dry-run would have done, if any."""
    lines = []
    for would in (False, True):
        phrases = [phrase(c) for c in summary.counts if c.protective and c.would == would]
        if phrases:
            lines.append("; ".join(phrases))
    return tuple(lines)


def describe(summary: ActionSummary) -> tuple[str, ...]:
    """``describe_actions``, then a line for the lines that go with actions, if any."""
    related = [f"{c.message} {c.total:,}{_in_brackets(breakdown_text(c, named=True))}"
               for c in summary.counts if not c.protective]
    return describe_actions(summary) + (("also logged: " + ", ".join(related),)
                                        if related else ())
