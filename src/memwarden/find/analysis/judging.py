"""One ended worker life judged: what the stream keeps of it.

A pure function of the life's buffered requests, the route names and the
configuration, so it runs in the reading process or in another one
(``judges``) with the same result.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass

from memwarden.find.analysis.config import AnalysisConfig
from memwarden.find.analysis.life_buffer import OpenLife
from memwarden.find.analysis.lives import WorkerLife
from memwarden.find.analysis.model import (
    ActionMarker,
    LifeSeries,
    RecycleMarker,
    WorkerSummary,
)
from memwarden.find.analysis.outcomes import LifeOutcome, priority
from memwarden.find.analysis.records import LifecycleEvent
from memwarden.find.analysis.series import life_series, life_signals
from memwarden.find.analysis.units import requests_asked
from memwarden.find.analysis.verdict import LifeAssessment, assess_life

__all__ = ["Judged", "action_markers", "judge", "judge_with_series", "marker", "summary"]


def marker(event: LifecycleEvent, life: int | None, seq: int | None) -> RecycleMarker:
    return RecycleMarker(pid=event.pid, life=life, seq=seq, event=event.kind,
                         reason=event.reason, footprint_bytes=event.footprint_bytes,
                         limit_bytes=event.limit_bytes, signal=event.signal,
                         oom_kill=event.oom_kill, timestamp=event.timestamp)


def action_markers(life: WorkerLife) -> tuple[ActionMarker, ...]:
    return tuple(ActionMarker(pid=life.pid, life=life.index, seq=seq, action=event.action,
                              would=event.would, reason=event.detail,
                              footprint_bytes=event.figure("footprint_bytes"),
                              limit_bytes=event.figure("limit_bytes"),
                              timestamp=event.timestamp)
                 for seq, event in life.marks)


def summary(assessment: LifeAssessment, open_life: OpenLife,
            rss_bytes: Sequence[float | None]) -> WorkerSummary:
    """``rss_bytes``: the life's RSS column in seq order (None: absent)."""
    life = assessment.life
    rss = [value for value in rss_bytes if value is not None]
    rss_fit = assessment.rss.fit if assessment.rss is not None else None
    heap = assessment.heap if assessment.heap is not None else assessment.blocks
    blocks_fit = heap.fit if heap is not None else None
    return WorkerSummary(
        pid=life.pid, life=life.index, requests=open_life.requests,
        first_seq=open_life.min_seq or 0, last_seq=open_life.max_seq,
        rss_start_bytes=round(rss[0]) if rss else None,
        rss_end_bytes=round(rss[-1]) if rss else None,
        slope_bytes_per_request=rss_fit.slope if rss_fit is not None else None,
        blocks_per_request=blocks_fit.slope if blocks_fit is not None else None,
        verdict=assessment.verdict, reason=assessment.reason, ended_by=life.ended_by,
        heap_signal=assessment.heap_signal,
        more_requests=(requests_asked(assessment.reason)
                       if assessment.verdict == "inconclusive" else None))


@dataclass(slots=True)
class Judged:
    """What the stream keeps of one judged life.

    In the reading process the ended ``life`` and its route ``names`` are kept,
    to build the plotted series only if the life is plotted; a life judged
    elsewhere brings its ``series`` back instead (the stream decides later
    whether to plot it). ``seconds``: how long judging took, wherever it ran.
    """

    outcome: LifeOutcome
    summary: WorkerSummary
    markers: tuple[RecycleMarker, ...]
    life: OpenLife | None = None
    names: Sequence[tuple[str, str | None]] = ()
    series: LifeSeries | None = None
    seconds: float = 0.0

    def life_series(self, config: AnalysisConfig) -> LifeSeries:
        if self.series is not None:
            return self.series
        if self.life is None:
            raise RuntimeError("a life judged elsewhere without its series is plotted")
        worker_life = self.life.worker_life(self.names, records=False)
        return life_series(worker_life, config, self.markers, action_markers(worker_life))


def judge(life: OpenLife, names: Sequence[tuple[str, str | None]],
          config: AnalysisConfig) -> Judged:
    """Judge one ended life: from its columns, with no request object built."""
    started = time.perf_counter()
    columns = life.columns()
    bare = life.bare_life()
    assessment = assess_life(bare, config, life_signals(columns, config))
    outcome = LifeOutcome(assessment.verdict, assessment.conflicting, life.requests,
                          life.order, bare.label, assessment.reason)
    markers = tuple(marker(event, life.index, life.max_seq) for event in life.end_events)
    return Judged(outcome, summary(assessment, life, columns.rss_bytes), markers, life=life,
                  names=names, seconds=time.perf_counter() - started)


def judge_with_series(life: OpenLife, names: Sequence[tuple[str, str | None]],
                      config: AnalysisConfig, bar: tuple[int, int, int] | None) -> Judged:
    """``judge`` with the plotted series built, and the life left behind.

    ``bar``: the plotted lives' ``Kept.bar()`` when the life was sent. It only
    falls, so a life whose key is not below it then will not be plotted: its
    series is neither built nor sent back.
    """
    started = time.perf_counter()
    judged = judge(life, names, config)
    if bar is None or priority(judged.outcome) < bar:
        judged.series = judged.life_series(config)
    judged.life = None
    judged.names = ()
    judged.seconds = time.perf_counter() - started
    return judged
