"""Workers that died with a request in flight (the master's ``death_in_flight`` lines).

A worker killed by the OOM killer, gunicorn's timeout or a signal while a
request ran takes that request with it, and the request line is never
written: only the master's line tells which route was running. A route that
keeps dying mid-request is a strong suspect even when no worker's memory
shows a slope (the death cut the rise short), so the deaths per route are
ranked among the suspects (kind "deaths").

Bounded: the newest ``MAX_DEATHS`` lines are kept whole, counts per route
for ``MAX_DEATH_ROUTES`` routes (the rest as "(other routes)").
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Mapping
from dataclasses import asdict
from typing import Any

from memwarden.find.analysis.model import Suspect
from memwarden.find.analysis.records import DeathInFlight
from memwarden.find.analysis.stats import median
from memwarden.find.analysis.units import format_bytes, format_signed_bytes

__all__ = ["MAX_DEATHS", "DeathTally"]

MAX_DEATHS = 100
MAX_DEATH_ROUTES = 500
MAX_GROWTHS = 256  # footprint growths kept per route for its median
OTHER_ROUTES = "(other routes)"
# Confidence of a route with n deaths: one death may be bad luck, three are a pattern.
DEATH_WEIGHT = 0.95


class DeathTally:
    """The newest deaths in flight and the count per route and per cause."""

    __slots__ = ("_newest", "by_cause", "by_route", "growths", "total")

    def __init__(self) -> None:
        self.total = 0
        # (timestamp, order, death) of the newest, as a min-heap: the root goes first.
        self._newest: list[tuple[str, int, DeathInFlight]] = []
        self.by_route: dict[str, int] = {}
        self.by_cause: dict[str, int] = {}
        self.growths: dict[str, list[float]] = {}

    def add(self, death: DeathInFlight, order: int) -> None:
        self.total += 1
        entry = (death.timestamp or "", order, death)
        if len(self._newest) < MAX_DEATHS:
            heapq.heappush(self._newest, entry)
        elif entry[:2] > self._newest[0][:2]:
            heapq.heapreplace(self._newest, entry)
        key = death.route_key
        if key not in self.by_route and len(self.by_route) >= MAX_DEATH_ROUTES:
            key = OTHER_ROUTES
        self.by_route[key] = self.by_route.get(key, 0) + 1
        self.by_cause[death.cause] = self.by_cause.get(death.cause, 0) + 1
        growth = death.growth_bytes
        if growth is not None:
            growths = self.growths.setdefault(key, [])
            if len(growths) < MAX_GROWTHS:
                growths.append(growth)

    def newest(self) -> list[DeathInFlight]:
        """Newest first: by timestamp, then by the order the lines were read."""
        return [death for _t, _o, death in sorted(self._newest, key=lambda e: e[:2],
                                                   reverse=True)]

    def merge(self, other: DeathTally, order_offset: int) -> None:
        for timestamp, order, death in other._newest:
            entry = (timestamp, order + order_offset, death)
            if len(self._newest) < MAX_DEATHS:
                heapq.heappush(self._newest, entry)
            elif entry[:2] > self._newest[0][:2]:
                heapq.heapreplace(self._newest, entry)
        self.total += other.total
        for key, count in other.by_route.items():
            self.by_route[key] = self.by_route.get(key, 0) + count
        for cause, count in other.by_cause.items():
            self.by_cause[cause] = self.by_cause.get(cause, 0) + count
        for key, values in other.growths.items():
            mine = self.growths.setdefault(key, [])
            mine.extend(values[:max(0, MAX_GROWTHS - len(mine))])

    def ranked_routes(self) -> list[tuple[str, int]]:
        return sorted(self.by_route.items(), key=lambda item: (-item[1], item[0]))

    def suspects(self) -> list[Suspect]:
        """One suspect per route that died mid-request more than once."""
        suspects = []
        for route, count in self.ranked_routes():
            if count < 2 or route == OTHER_ROUTES:
                continue
            share = count / self.total
            confidence = DEATH_WEIGHT * (1 - 0.5 ** (count - 1)) * math.sqrt(share)
            growths = self.growths.get(route, [])
            grew = median(growths) if growths else None
            evidence = (f"{route}: {count} of {self.total} workers that died with a request "
                        f"in flight were running it")
            if grew is not None:
                evidence += (f"; the footprint grew {format_signed_bytes(grew)} during the "
                             f"request (median of {len(growths)})")
            suspects.append(Suspect("deaths", route, float(count),
                                    round(grew) if grew is not None and grew > 0 else None,
                                    confidence, evidence))
        return suspects

    def describe(self) -> str | None:
        """One line for the text summary."""
        if not self.total:
            return None
        causes = ", ".join(f"{n} {cause}" for cause, n in sorted(self.by_cause.items()))
        route, count = self.ranked_routes()[0]
        newest = self.newest()[0]
        last = (f"; the last grew {format_bytes(newest.growth_bytes)}"
                if newest.growth_bytes is not None and newest.growth_bytes > 0 else "")
        return (f"deaths with a request in flight: {self.total} ({causes}); most on {route} "
                f"({count}){last}")

    def to_json(self) -> dict[str, Any]:
        return {"total": self.total, "by_route": self.by_route, "by_cause": self.by_cause,
                "growths": self.growths,
                "newest": [[t, o, asdict(d)] for t, o, d in self._newest]}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> DeathTally:
        tally = cls()
        tally.total = data["total"]
        tally.by_route = dict(data["by_route"])
        tally.by_cause = dict(data["by_cause"])
        tally.growths = {k: list(v) for k, v in data["growths"].items()}
        tally._newest = [(t, o, DeathInFlight(**d)) for t, o, d in data["newest"]]
        heapq.heapify(tally._newest)
        return tally
