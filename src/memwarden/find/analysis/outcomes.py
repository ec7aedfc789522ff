"""What is kept of each worker life once it is judged: bounded, whatever the log's size.

A week of logs from a fleet holds hundreds of thousands of worker lives.
Each is judged when it ends; the overall verdict needs only counts and the
strongest life of each kind (``VerdictTally``, the same answer and words
as ``verdict.overall_verdict``), and the report lists at most a few hundred
lives in detail (``Kept``): leaks first, then lives whose evidence
conflicts, then the longest; the others are summed in ``other_lives``.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from memwarden.find.analysis.model import Verdict

__all__ = ["Kept", "LifeOutcome", "VerdictTally", "priority"]

_T = TypeVar("_T")


@dataclass(frozen=True, slots=True)
class LifeOutcome:
    """The verdict of one life, as the overall verdict weighs it."""

    verdict: Verdict
    conflicting: bool
    requests: int
    order: int
    label: str
    reason: str


def priority(outcome: LifeOutcome) -> tuple[int, int, int]:
    """Smaller first: leaks, conflicting evidence, no leak, too short; then longest, earliest."""
    rank = (0 if outcome.verdict == "leak" else 1 if outcome.conflicting
            else 2 if outcome.verdict == "no_leak" else 3)
    return rank, -outcome.requests, outcome.order


class Kept(Generic[_T]):
    """The ``limit`` items of smallest key; how many were left out."""

    __slots__ = ("_heap", "dropped", "limit")

    def __init__(self, limit: int) -> None:
        self.limit = limit
        # (inverted key, order, item): the root is the item to drop first.
        self._heap: list[tuple[tuple[int, int, int], int, _T]] = []
        self.dropped = 0

    def ranks(self, key: tuple[int, int, int]) -> bool:
        """Whether an item of this key would be kept now."""
        if len(self._heap) < self.limit:
            return True
        return self.limit > 0 and (-key[0], -key[1], -key[2]) > self._heap[0][0]

    def bar(self) -> tuple[int, int, int] | None:
        """The key an item must be below to be kept (None: any is, while not full).

        It only ever falls: an item that does not rank now never will.
        """
        if len(self._heap) < self.limit:
            return None
        if self.limit == 0:
            return (-1, 0, 0)  # below every key: nothing is kept
        inverted = self._heap[0][0]
        return -inverted[0], -inverted[1], -inverted[2]

    def add(self, key: tuple[int, int, int], item: _T) -> _T | None:
        """Keep ``item`` if it ranks; return whichever item was left out (None: none)."""
        entry = ((-key[0], -key[1], -key[2]), key[2], item)
        if len(self._heap) < self.limit:
            heapq.heappush(self._heap, entry)
            return None
        self.dropped += 1
        if self.limit == 0 or entry[0] <= self._heap[0][0]:
            return item
        return heapq.heapreplace(self._heap, entry)[2]

    def keyed(self) -> Iterator[tuple[tuple[int, int, int], _T]]:
        for inverted, _order, item in self._heap:
            yield (-inverted[0], -inverted[1], -inverted[2]), item

    def in_order(self) -> list[_T]:
        """The kept items by their life's order (the key's last part)."""
        return [item for _k, _o, item in sorted(self._heap, key=lambda e: e[1])]


@dataclass(slots=True)
class VerdictTally:
    """Counts per verdict and the strongest life of each kind; see ``overall_verdict``."""

    total: int = 0
    leaks: int = 0
    clean: int = 0
    verdicts: dict[str, int] = field(default_factory=dict)
    best: dict[str, list[Any]] = field(default_factory=dict)  # kind -> outcome fields

    def _offer(self, kind: str, outcome: LifeOutcome) -> None:
        held = self.best.get(kind)
        if held is None or outcome.requests > held[2] or (outcome.requests == held[2]
                                                          and outcome.order < held[3]):
            self.best[kind] = [outcome.verdict, outcome.conflicting, outcome.requests,
                               outcome.order, outcome.label, outcome.reason]

    def add(self, outcome: LifeOutcome) -> None:
        self.total += 1
        self.verdicts[outcome.verdict] = self.verdicts.get(outcome.verdict, 0) + 1
        self._offer("any", outcome)
        if outcome.verdict == "leak":
            self.leaks += 1
            self._offer("leak", outcome)
        elif outcome.conflicting:
            self._offer("conflicting", outcome)
        elif outcome.verdict == "no_leak":
            self.clean += 1
            self._offer("clean", outcome)

    def merge(self, other: VerdictTally) -> None:
        self.total += other.total
        self.leaks += other.leaks
        self.clean += other.clean
        for verdict, count in other.verdicts.items():
            self.verdicts[verdict] = self.verdicts.get(verdict, 0) + count
        for kind, held in other.best.items():
            self._offer(kind, LifeOutcome(*held))

    def overall(self) -> tuple[Verdict, str]:
        """The words of ``verdict.overall_verdict`` from the counts."""
        if not self.total:
            return "inconclusive", "no memwarden request lines found"
        total = self.total
        if self.leaks:
            _v, _c, _n, _o, label, reason = self.best["leak"]
            return "leak", f"{self.leaks} of {total} worker lives leak; {label}: {reason}"
        if "conflicting" in self.best:
            _v, _c, _n, _o, label, reason = self.best["conflicting"]
            return "inconclusive", f"{label}: {reason}"
        if self.clean:
            _v, _c, _n, _o, label, reason = self.best["clean"]
            short = total - self.clean
            note = f" ({short} too short to judge)" if short else ""
            return "no_leak", (f"no leak in {self.clean} of {total} worker lives{note}; "
                               f"{label}: {reason}")
        _v, _c, _n, _o, label, reason = self.best["any"]
        return "inconclusive", f"too few requests: {label}: {reason}"

    def to_json(self) -> dict[str, Any]:
        return {"total": self.total, "leaks": self.leaks, "clean": self.clean,
                "verdicts": self.verdicts, "best": self.best}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> VerdictTally:
        return cls(data["total"], data["leaks"], data["clean"], dict(data["verdicts"]),
                   {k: list(v) for k, v in data["best"].items()})
