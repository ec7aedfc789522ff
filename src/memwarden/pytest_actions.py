"""Protective actions seen during a test, heard on memwarden's event bus.

A test that made a worker recycle, a request shed, a pool refuse (or, in
dry-run, would have) passed for a reason worth knowing: the plugin listens
on :mod:`memwarden.events` while each test runs in this process, adds what
it heard to that test's report (a "memwarden actions" section, and the
``memwarden_actions`` user property that junitxml writes), to a no_leaks
failure, and lists every such test at the end of the session. Registered by
:mod:`memwarden.pytest_plugin`.

Only this process's events are heard: a gunicorn started by the test runs
its workers (and their buses) in processes of its own.
"""

from __future__ import annotations

import os
from collections import Counter

from memwarden import events

__all__ = ["ActionLog"]


def _label(event: events.Event) -> tuple[str, int] | None:
    """The action as its log line names it, and how many it counts; None for an
    event that is no action (a pool declared, a worker limit set)."""
    would = "would_" if getattr(event, "dry_run", False) else ""
    match event:
        case events.Recycle(reason=reason):
            return f"{would}recycle ({reason})", 1
        case events.Shed(count=count):
            return f"{would}shed", count
        case events.PoolRefusal(pool=pool):
            return f"{would}pool_refuse ({pool})", 1
        case events.OomKill(count=count):
            return "oom_kill", count
        case events.OrphansReaped(count=count):
            return f"{would}terminate_orphans", count
        case events.DeathInFlight(cause=cause, route=route):
            return f"died_in_flight ({cause}, {route})", 1
    return None


class ActionLog:
    """A bus subscriber that counts the protective actions published in the
    process that made it (a fork made during the test keeps its own)."""

    __slots__ = ("_counts", "_pid")

    def __init__(self) -> None:
        self._pid = os.getpid()
        self._counts: Counter[str] = Counter()

    def __call__(self, event: events.Event) -> None:
        if os.getpid() != self._pid:
            return
        found = _label(event)
        if found is not None:
            self._counts[found[0]] += found[1]

    def __bool__(self) -> bool:
        return bool(self._counts)

    def summary(self) -> str:
        """``recycle (soft_limit) x1, would_shed x3``, in the order first heard."""
        return ", ".join(f"{label} x{count}" for label, count in self._counts.items())

    def start(self) -> None:
        events.subscribe(self)

    def stop(self) -> None:
        events.unsubscribe(self)
