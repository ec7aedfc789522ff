"""What each route costs, summed as the requests stream by.

The cost table of ``routes.route_costs`` without keeping the requests:
running sums per route, and for the median RSS delta a sample of at most
``SAMPLE`` values, thinned evenly (every other value dropped, then every
other one of those...) once full, so a route's median comes from its whole
history rather than its first calls. Below ``SAMPLE`` calls the median is exact.
"""

from __future__ import annotations

from collections.abc import Mapping, Set
from typing import Any

from memwarden.find.analysis.model import RouteCost
from memwarden.find.analysis.stats import median

__all__ = ["SAMPLE", "RouteTally"]

SAMPLE = 4096
OTHER_ROUTES = "(other routes)"
# calls, failed, rss sum, rss n, blocks sum, blocks n, duration sum, duration n, stride, skip
_FIELDS = 10


class RouteTally:
    """Per route: calls, failures, and sums of RSS delta, block delta and duration."""

    __slots__ = ("_samples", "_sums")

    def __init__(self) -> None:
        self._sums: dict[str, list[float]] = {}
        self._samples: dict[str, list[float]] = {}

    def add(self, key: str, failed: bool, rss_delta: float, blocks_delta: float,
            duration: float) -> None:
        sums = self._sums.get(key)
        if sums is None:
            sums = self._sums[key] = [0.0] * (_FIELDS - 2) + [1.0, 0.0]
            self._samples[key] = []
        sums[0] += 1
        sums[1] += failed
        if rss_delta == rss_delta:
            sums[2] += rss_delta
            sums[3] += 1
            sums[9] += 1
            if sums[9] >= sums[8]:  # every stride-th value goes to the sample
                sums[9] = 0.0
                sample = self._samples[key]
                sample.append(rss_delta)
                if len(sample) >= SAMPLE:
                    del sample[::2]
                    sums[8] *= 2
        if blocks_delta == blocks_delta:
            sums[4] += blocks_delta
            sums[5] += 1
        if duration == duration:
            sums[6] += duration
            sums[7] += 1

    def merge(self, other: RouteTally) -> None:
        for key, theirs in other._sums.items():
            mine = self._sums.get(key)
            if mine is None:
                self._sums[key] = list(theirs)
                self._samples[key] = list(other._samples[key])
                continue
            for i in range(8):
                mine[i] += theirs[i]
            mine[8] = max(mine[8], theirs[8])
            sample = self._samples[key]
            sample.extend(other._samples[key])
            while len(sample) >= SAMPLE:
                del sample[::2]

    def fold(self, kept: Set[str] | None) -> None:
        """Routes outside ``kept`` (None: keep all) merged into OTHER_ROUTES."""
        if kept is None:
            return
        other = RouteTally()
        for key in [k for k in self._sums if k not in kept and k != OTHER_ROUTES]:
            other._sums[OTHER_ROUTES] = self._sums.pop(key)
            other._samples[OTHER_ROUTES] = self._samples.pop(key)
            self.merge(other)
            other = RouteTally()

    def costs(self) -> tuple[RouteCost, ...]:
        def mean(total: float, n: float) -> float | None:
            return total / n if n else None

        rows = sorted(self._sums.items(), key=lambda item: (-item[1][0], item[0]))
        return tuple(
            RouteCost(route=key, count=int(s[0]), failed=int(s[1]),
                      mean_rss_delta_bytes=mean(s[2], s[3]),
                      median_rss_delta_bytes=(median(self._samples[key])
                                              if self._samples[key] else None),
                      mean_blocks_delta=mean(s[4], s[5]), mean_duration_ms=mean(s[6], s[7]))
            for key, s in rows)

    def to_json(self) -> dict[str, Any]:
        return {"sums": self._sums, "samples": self._samples}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> RouteTally:
        tally = cls()
        tally._sums = {k: [float(v) for v in s] for k, s in data["sums"].items()}
        tally._samples = {k: [float(v) for v in s] for k, s in data["samples"].items()}
        return tally
