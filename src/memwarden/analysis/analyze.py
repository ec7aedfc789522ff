"""The pipeline: lines -> records -> worker lives -> verdict, suspects, report."""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import asdict

from memwarden.analysis.config import AnalysisConfig
from memwarden.analysis.lives import WorkerLife, split_lives
from memwarden.analysis.model import (
    InputStats,
    RecycleMarker,
    Report,
    WorkerSummary,
)
from memwarden.analysis.reader import LineParser, read_path_lines
from memwarden.analysis.records import AllocationWindow, LifecycleEvent, RequestRecord
from memwarden.analysis.routes import route_costs
from memwarden.analysis.series import life_series
from memwarden.analysis.suspects import all_suspects
from memwarden.analysis.verdict import LifeAssessment, assess_life, overall_verdict

__all__ = ["analyze_lines", "analyze_paths"]


class _Collector:
    """Feeds lines through one parser and keeps the records in log order."""

    def __init__(self) -> None:
        self.parser = LineParser()
        self.events: list[RequestRecord | LifecycleEvent] = []
        self.windows: list[AllocationWindow] = []

    def add(self, raw: str | bytes | None) -> None:
        if raw is None:
            self.parser.oversized()
            return
        record = self.parser.parse(raw)
        if isinstance(record, AllocationWindow):
            self.windows.append(record)
        elif record is not None:
            self.events.append(record)

    def report(self, config: AnalysisConfig) -> Report:
        return build_report(self.events, self.windows,
                            InputStats(**asdict(self.parser.counters)), config)


def _markers(life: WorkerLife) -> tuple[RecycleMarker, ...]:
    last_seq = life.requests[-1].seq if life.requests else None
    return tuple(_marker(event, life.index, last_seq) for event in life.end_events)


def _marker(event: LifecycleEvent, life: int | None, seq: int | None) -> RecycleMarker:
    return RecycleMarker(pid=event.pid, life=life, seq=seq, event=event.kind,
                         reason=event.reason, footprint_bytes=event.footprint_bytes,
                         limit_bytes=event.limit_bytes, signal=event.signal,
                         oom_kill=event.oom_kill, timestamp=event.timestamp)


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
    )


def build_report(events: Iterable[RequestRecord | LifecycleEvent],
                 windows: list[AllocationWindow], stats: InputStats,
                 config: AnalysisConfig) -> Report:
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
        series=tuple(life_series(life, config, markers_by_life[id(life)])
                     for life in split.lives),
        input=stats,
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
