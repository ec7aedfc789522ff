"""The pipeline: lines -> records -> worker lives -> verdict, suspects, report.

Protective-action lines are counted on the way (``actions.ActionTally``);
only the dry-run decisions drawn on a memory plot join the records, and at
most ``MAX_PLOTTED_ACTIONS`` of them.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import asdict

from memwarden.find.analysis.actions import PLOTTED, ActionTally, from_lifecycle
from memwarden.find.analysis.config import AnalysisConfig
from memwarden.find.analysis.lives import WorkerLife, split_lives
from memwarden.find.analysis.model import (
    ActionMarker,
    ActionSummary,
    InputStats,
    RecycleMarker,
    Report,
    WorkerSummary,
)
from memwarden.find.analysis.reader import LineParser, read_path_lines
from memwarden.find.analysis.records import (
    ActionEvent,
    AllocationWindow,
    LifecycleEvent,
    RequestRecord,
)
from memwarden.find.analysis.routes import route_costs
from memwarden.find.analysis.series import life_series
from memwarden.find.analysis.suspects import all_suspects
from memwarden.find.analysis.units import requests_asked
from memwarden.find.analysis.verdict import LifeAssessment, assess_life, overall_verdict

__all__ = ["MAX_PLOTTED_ACTIONS", "analyze_lines", "analyze_paths"]

MAX_PLOTTED_ACTIONS = 1000


class _Collector:
    """Feeds lines through one parser and keeps the records in log order."""

    def __init__(self) -> None:
        self.parser = LineParser()
        self.events: list[RequestRecord | LifecycleEvent | ActionEvent] = []
        self.windows: list[AllocationWindow] = []
        self.actions = ActionTally()
        self._plotted = 0

    def add(self, raw: str | bytes | None) -> None:
        if raw is None:
            self.parser.oversized()
            return
        record = self.parser.parse(raw)
        if type(record) is RequestRecord:  # nearly every record: one test
            self.events.append(record)
        elif isinstance(record, ActionEvent):
            self.actions.add(record)
            if record.would and record.action in PLOTTED \
                    and self._plotted < MAX_PLOTTED_ACTIONS:
                self._plotted += 1
                self.events.append(record)
        elif isinstance(record, LifecycleEvent):
            self.events.append(record)
            self.actions.add(from_lifecycle(record))
        elif isinstance(record, AllocationWindow):
            self.windows.append(record)

    def report(self, config: AnalysisConfig) -> Report:
        return build_report(self.parser.fold_routes(self.events), self.windows,
                            InputStats(**asdict(self.parser.counters)), config,
                            self.actions.summary())


def _markers(life: WorkerLife) -> tuple[RecycleMarker, ...]:
    last_seq = life.requests[-1].seq if life.requests else None
    return tuple(_marker(event, life.index, last_seq) for event in life.end_events)


def _marker(event: LifecycleEvent, life: int | None, seq: int | None) -> RecycleMarker:
    return RecycleMarker(pid=event.pid, life=life, seq=seq, event=event.kind,
                         reason=event.reason, footprint_bytes=event.footprint_bytes,
                         limit_bytes=event.limit_bytes, signal=event.signal,
                         oom_kill=event.oom_kill, timestamp=event.timestamp)


def _action_markers(life: WorkerLife) -> tuple[ActionMarker, ...]:
    return tuple(ActionMarker(pid=life.pid, life=life.index, seq=seq, action=event.action,
                              would=event.would, reason=event.detail,
                              footprint_bytes=event.figure("footprint_bytes"),
                              limit_bytes=event.figure("limit_bytes"),
                              timestamp=event.timestamp)
                 for seq, event in life.marks)


def _summary(assessment: LifeAssessment) -> WorkerSummary:
    life = assessment.life
    rss = [r.rss_bytes for r in life.requests if r.rss_bytes is not None]
    rss_fit = assessment.rss.fit if assessment.rss is not None else None
    heap = assessment.heap if assessment.heap is not None else assessment.blocks
    blocks_fit = heap.fit if heap is not None else None
    return WorkerSummary(
        pid=life.pid,
        life=life.index,
        requests=len(life.requests),
        first_seq=life.requests[0].seq,
        last_seq=life.requests[-1].seq,
        rss_start_bytes=round(rss[0]) if rss else None,
        rss_end_bytes=round(rss[-1]) if rss else None,
        slope_bytes_per_request=rss_fit.slope if rss_fit is not None else None,
        blocks_per_request=blocks_fit.slope if blocks_fit is not None else None,
        verdict=assessment.verdict,
        reason=assessment.reason,
        ended_by=life.ended_by,
        heap_signal=assessment.heap_signal,
        more_requests=(requests_asked(assessment.reason)
                       if assessment.verdict == "inconclusive" else None),
    )


def build_report(events: Iterable[RequestRecord | LifecycleEvent | ActionEvent],
                 windows: list[AllocationWindow], stats: InputStats,
                 config: AnalysisConfig, actions: ActionSummary | None = None) -> Report:
    split = split_lives(events)
    assessments = [assess_life(life, config) for life in split.lives]
    verdict, reason = overall_verdict(assessments, config)
    if stats.request_lines == 0 and (stats.malformed_lines or stats.invalid_records):
        reason += (f" ({stats.malformed_lines} malformed and {stats.invalid_records} invalid "
                   f"memwarden lines were skipped)")
    markers_by_life = {id(life): _markers(life) for life in split.lives}
    recycles = tuple(m for life in split.lives for m in markers_by_life[id(life)]) + tuple(
        _marker(event, None, None) for event in split.orphan_events)
    requests = sum(len(life.requests) for life in split.lives)
    failed = sum(r.failed for life in split.lives for r in life.requests)
    return Report(
        verdict=verdict,
        reason=reason,
        requests=requests,
        failed_requests=failed,
        workers=tuple(_summary(a) for a in assessments),
        suspects=all_suspects(assessments, windows, verdict, config),
        routes=route_costs(split.lives),
        recycles=recycles,
        series=tuple(life_series(life, config, markers_by_life[id(life)],
                                 _action_markers(life))
                     for life in split.lives),
        input=stats,
        actions=actions if actions is not None else ActionSummary(),
    )


def analyze_lines(lines: Iterable[str | bytes],
                  config: AnalysisConfig | None = None) -> Report:
    """Analyse log lines (text or bytes, newline optional). Never raises on content."""
    collector = _Collector()
    for line in lines:
        collector.add(line)
    return collector.report(config or AnalysisConfig())


def analyze_paths(paths: Iterable[str | os.PathLike[str]],
                  config: AnalysisConfig | None = None) -> Report:
    """Analyse log files in order ("-" reads stdin; gzip is detected by its magic bytes).

    A file that cannot be opened raises OSError; a damaged gzip stream is
    read up to the damage and counted in ``Report.input.unreadable_inputs``.
    """
    collector = _Collector()
    for path in paths:
        for line in read_path_lines(path, collector.parser.counters):
            collector.add(line)
    return collector.report(config or AnalysisConfig())
