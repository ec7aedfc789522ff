"""The pipeline: lines -> worker lives, each judged as it ends -> verdict, suspects, report.

One pass in bounded memory (``stream.StreamAnalysis``); protective-action
lines are counted on the way (``actions.ActionTally``), and only the dry-run
decisions drawn on a memory plot are kept, at most ``MAX_PLOTTED_ACTIONS``.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from dataclasses import asdict
from typing import BinaryIO

from memwarden.find.analysis.config import AnalysisConfig
from memwarden.find.analysis.inputs import read_path_batches
from memwarden.find.analysis.model import InputStats, OtherLives, Report
from memwarden.find.analysis.stream import MAX_PLOTTED_ACTIONS, LineFilter, StreamAnalysis, marker
from memwarden.find.analysis.suspects import all_suspects, rank_suspects
from memwarden.find.analysis.verdict import assess_life

__all__ = ["MAX_PLOTTED_ACTIONS", "analyze_lines", "analyze_paths", "feed_paths", "report_of"]


def report_of(stream: StreamAnalysis) -> Report:
    """The report of everything fed so far (the lives still open are judged now)."""
    stream.close_all()
    config = stream.config
    parser = stream.parser
    stats = InputStats(**asdict(parser.counters))
    verdict, reason = stream.tally.overall()
    if stats.request_lines == 0 and (stats.malformed_lines or stats.invalid_records):
        reason += (f" ({stats.malformed_lines} malformed and {stats.invalid_records} invalid "
                   f"memwarden lines were skipped)")
    kept = parser.kept_routes()
    stream.routes.fold(kept)
    assessments = []
    for open_life in stream.pool.in_order():
        life = open_life.worker_life(stream.names.names)
        if kept is not None:
            life.requests = parser.fold_routes(life.requests)
        assessments.append(assess_life(life, config))
    suspects = rank_suspects([*all_suspects(assessments, stream.windows, verdict, config),
                              *stream.deaths.suspects()], config.max_suspects)
    workers = stream.workers.in_order()
    recycles = tuple(m for _summary, markers in workers for m in markers) + tuple(
        marker(event, None, None) for event in stream.orphans)
    return Report(
        verdict=verdict,
        reason=reason,
        requests=stream.requests,
        failed_requests=stream.failed,
        workers=tuple(summary for summary, _markers in workers),
        suspects=suspects,
        routes=stream.routes.costs(),
        recycles=recycles,
        series=tuple(stream.series.in_order()),
        input=stats,
        actions=stream.actions.summary(),
        deaths=tuple(stream.deaths.newest()),
        deaths_by_route=tuple(stream.deaths.ranked_routes()),
        deaths_total=stream.deaths.total,
        other_lives=OtherLives(
            stream.other_lives, stream.other_requests,
            tuple(sorted(stream.other_verdicts.items(), key=lambda kv: (-kv[1], kv[0])))),
    )


def analyze_lines(lines: Iterable[str | bytes],
                  config: AnalysisConfig | None = None) -> Report:
    """Analyse log lines (text or bytes, newline optional). Never raises on content."""
    stream = StreamAnalysis(config)
    for line in lines:
        stream.add(line)
    return report_of(stream)


def feed_paths(stream: StreamAnalysis, paths: Iterable[str | os.PathLike[str]],
               opened: Callable[[BinaryIO], None] | None = None,
               each: Callable[[], None] | None = None, every: int = 65536) -> None:
    """Feed log files in order; ``each`` is called every ``every`` lines or so (progress)."""
    add_batch = stream.add_batch
    counters = stream.parser.counters
    for path in paths:
        count = 0
        for batch in read_path_batches(path, counters, opened):
            add_batch(batch)
            if each is not None:
                count += len(batch)
                if count >= every:
                    count = 0
                    each()


def analyze_paths(paths: Iterable[str | os.PathLike[str]],
                  config: AnalysisConfig | None = None,
                  keep_line: LineFilter | None = None) -> Report:
    """Analyse log files in order ("-" reads stdin; gzip is detected by its magic bytes).

    A file that cannot be opened raises OSError; a damaged gzip stream is
    read up to the damage and counted in ``Report.input.unreadable_inputs``.
    """
    stream = StreamAnalysis(config, keep_line)
    feed_paths(stream, paths)
    return report_of(stream)
