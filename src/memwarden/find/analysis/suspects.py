"""Rank the suspects of every kind into one list, most likely first.

Each suspect carries a confidence in [0, 1] and one line of evidence a
person can check against the log; see ``routes``, ``resources`` and
``sites`` for how each kind is found.
"""

from __future__ import annotations

from collections.abc import Sequence

from memwarden.find.analysis.config import AnalysisConfig
from memwarden.find.analysis.model import Suspect, SuspectKind, Verdict
from memwarden.find.analysis.records import AllocationWindow
from memwarden.find.analysis.resources import resource_suspects
from memwarden.find.analysis.route_suspects import route_suspects
from memwarden.find.analysis.sites import allocation_suspects
from memwarden.find.analysis.verdict import LifeAssessment

__all__ = ["all_suspects", "rank_suspects"]

KIND_ORDER: dict[SuspectKind, int] = {"route": 0, "deaths": 1, "resource": 2, "allocation": 3,
                                      "type": 4}


def rank_suspects(suspects: Sequence[Suspect], limit: int) -> tuple[Suspect, ...]:
    ordered = sorted(suspects, key=lambda s: (-round(s.confidence, 3),
                                              -(s.bytes_per_request or 0),
                                              KIND_ORDER[s.kind], s.name))
    return tuple(ordered[:limit])


def all_suspects(assessments: Sequence[LifeAssessment], windows: Sequence[AllocationWindow],
                 verdict: Verdict, config: AnalysisConfig) -> tuple[Suspect, ...]:
    resources, leads = resource_suspects(assessments)
    suspects = route_suspects(assessments, verdict, config, leads)
    suspects += resources
    suspects += allocation_suspects(windows, config)
    return rank_suspects(suspects, config.max_suspects)
