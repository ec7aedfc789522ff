"""When an audit has seen enough: the decision taken at each checkpoint.

An adaptive audit judges what it has so far each time the requests planned
are all answered. A leak, or "no leak" in every worker, ends it; a worker
whose verdict is "inconclusive" and names how many more requests it needs
gets them (times the workers that share the traffic, with a margin for an
uneven share), up to the request limit. The wall-time limit is the soak's.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from memwarden.find.analysis import Report

__all__ = ["DEFAULT_FIRST_REQUESTS", "DEFAULT_MAX_REQUESTS", "DEFAULT_MAX_SECONDS",
           "Checkpoint", "Step", "next_step"]

# The first look: enough for a leak of a few KB per request on a route with a
# quarter of the traffic, and for most clean apps to show their plateau.
DEFAULT_FIRST_REQUESTS = 1500
# Enough for ~600 B kept per call of one route of three (about 2.5 blocks per
# request of that worker, ~1 once spread over the traffic) to outgrow
# warm-up in each of 2 workers, with room for the margins below.
DEFAULT_MAX_REQUESTS = 12000
DEFAULT_MAX_SECONDS = 1800.0
# Workers seldom share the traffic evenly (sync workers race for accept).
SHARE_MARGIN = 1.25
# Each extension adds at least this share of what was sent: a checkpoint
# costs an analysis, and a figure of "12 more" is seldom exactly enough.
MIN_STEP_SHARE = 0.25


@dataclass(frozen=True, slots=True)
class Step:
    """What to do at a checkpoint: stop (``target`` is None) or run to ``target``."""

    target: int | None
    why: str


@dataclass(frozen=True, slots=True)
class Checkpoint:
    """One look at the audit so far."""

    requests: int
    verdict: str
    reason: str
    target: int | None
    why: str

    def to_json_dict(self) -> dict[str, Any]:
        return {"requests": self.requests, "verdict": self.verdict, "reason": self.reason,
                "next_target": self.target, "why": self.why}


def next_step(report: Report, sent: int, max_requests: int) -> Step:
    """Stop, or how many requests in all to reach before the next look."""
    if report.verdict == "leak":
        return Step(None, f"decided: leak after {sent:,} requests")
    waiting = [w for w in report.workers if w.verdict == "inconclusive"]
    if not waiting:
        return Step(None, f"decided: {report.verdict} after {sent:,} requests")
    asked = [w.more_requests for w in waiting if w.more_requests is not None]
    if not asked:
        return Step(None, f"inconclusive after {sent:,} requests, and no worker's verdict "
                          "says how many more requests would decide")
    if sent >= max_requests:
        return Step(None, f"still inconclusive at the request limit ({max_requests:,}); "
                          f"a worker asks for {max(asked):,} more of its own")
    workers = _workers_sharing(report.workers)
    more = max(math.ceil(max(asked) * workers * SHARE_MARGIN), math.ceil(MIN_STEP_SHARE * sent))
    target = min(sent + more, max_requests)
    return Step(target, f"inconclusive after {sent:,} requests; a worker asks for "
                        f"{max(asked):,} more of its own: running to {target:,}")


def _workers_sharing(workers: Sequence[Any]) -> int:
    """Worker lives still serving: those that did not end (a recycle ends one)."""
    alive = [w for w in workers if w.ended_by is None]
    return max(1, len(alive) or len(workers))
