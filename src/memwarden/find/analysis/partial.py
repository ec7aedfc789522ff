"""Partial summaries: one analysis split over processes or hosts, merged to one answer.

``to_partial`` turns a finished pass (every life judged) into plain JSON:
the counts, the verdict tally, the route sums, the lives the report lists,
the plotted series, the pool of lives the suspects come from, the action
tally and the deaths, all bounded, so a partial is small whatever the log's
size. ``merge`` adds one pass to another as if its lines had come after
the other's: lives are numbered on, and every bounded choice (which lives
to list, which to plot, which to keep for suspects) ranks the union the
way one pass ranks the lives it sees. Parts of one log merge to the answer
of one pass over it, as long as no worker life continues from one part's
files into the next's (each part judges the lives it sees).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, fields
from typing import Any

from memwarden.find.analysis.actions import ActionTally
from memwarden.find.analysis.config import AnalysisConfig
from memwarden.find.analysis.deaths import DeathTally
from memwarden.find.analysis.life_buffer import OpenLife
from memwarden.find.analysis.model import (
    ActionMarker,
    LifeSeries,
    RecycleMarker,
    SeriesPoint,
    WorkerSummary,
)
from memwarden.find.analysis.outcomes import VerdictTally
from memwarden.find.analysis.records import (
    ActionEvent,
    AllocationWindow,
    LifecycleEvent,
    SiteDiff,
)
from memwarden.find.analysis.route_tally import RouteTally
from memwarden.find.analysis.stream import MAX_ORPHANS, MAX_PLOTTED_ACTIONS, StreamAnalysis

__all__ = ["FORMAT", "from_partial", "merge", "to_partial"]

FORMAT = "memwarden-partial-1"
Key = tuple[int, int, int]


def _action(data: Mapping[str, Any]) -> ActionEvent:
    return ActionEvent(data["pid"], data["action"], data["would"], data["detail"],
                       tuple((name, value) for name, value in data["figures"]),
                       data["timestamp"])


def _series_json(series: LifeSeries) -> dict[str, Any]:
    return {"pid": series.pid, "life": series.life, "warmup_end_seq": series.warmup_end_seq,
            "points": [[p.seq, p.rss_bytes, p.blocks, p.census] for p in series.points],
            "recycles": [asdict(m) for m in series.recycles],
            "actions": [asdict(m) for m in series.actions]}


def _series(data: Mapping[str, Any]) -> LifeSeries:
    return LifeSeries(
        pid=data["pid"], life=data["life"], warmup_end_seq=data["warmup_end_seq"],
        points=tuple(SeriesPoint(seq, rss, blocks, census)
                     for seq, rss, blocks, census in data["points"]),
        recycles=tuple(RecycleMarker(**m) for m in data["recycles"]),
        actions=tuple(ActionMarker(**m) for m in data["actions"]))


def _window(data: Mapping[str, Any]) -> AllocationWindow:
    return AllocationWindow(data["pid"], data["seq"], data["window_requests"],
                            tuple(SiteDiff(**site) for site in data["sites"]))


def to_partial(stream: StreamAnalysis) -> dict[str, Any]:
    """The pass's summary as plain JSON (its open lives are judged first)."""
    stream.close_all()
    parser = stream.parser
    names = stream.names.names
    pool = []
    for key, life in stream.pool.keyed():
        used = sorted(set(life.route_ids))
        remap = {old: new for new, old in enumerate(used)}
        data = life.to_json()
        data["route_ids"] = [remap[i] for i in data["route_ids"]]
        pool.append({"key": key, "life": data, "routes": [list(names[i]) for i in used],
                     "end_events": [asdict(e) for e in life.end_events],
                     "marks": [[seq, asdict(e)] for seq, e in life.marks]})
    return {
        "format": FORMAT,
        "counters": asdict(parser.counters),
        "route_counts": parser._routes.counts(),
        "lives": stream.next_order,
        "tally": stream.tally.to_json(),
        "routes": stream.routes.to_json(),
        "workers": [{"key": key, "summary": asdict(summary),
                     "recycles": [asdict(m) for m in markers]}
                    for key, (summary, markers) in stream.workers.keyed()],
        "other": [stream.other_lives, stream.other_requests, stream.other_verdicts],
        "series": [{"key": key, "series": _series_json(series)}
                   for key, series in stream.series.keyed()],
        "pool": pool,
        "requests": stream.requests,
        "failed": stream.failed,
        "windows": [asdict(w) for w in stream.windows],
        "window_stride": stream.window_stride,
        "actions": stream.actions.to_json(),
        "plotted": stream.plotted,
        "orphans": [asdict(e) for e in stream.orphans],
        "deaths": stream.deaths.to_json(),
    }


def _shift(key: Any, offset: int) -> Key:
    rank, requests, order = key
    return int(rank), int(requests), int(order) + offset


def merge(target: StreamAnalysis, data: Mapping[str, Any]) -> None:
    """Add one partial to ``target`` as the part that follows what it has seen."""
    if data.get("format") != FORMAT:
        raise ValueError(f"not a memwarden partial summary (format {data.get('format')!r})")
    target.close_all()
    offset = target.next_order
    line_offset = target.parser.counters.lines
    counters = target.parser.counters
    for spec in fields(counters):
        setattr(counters, spec.name, getattr(counters, spec.name)
                + int(data["counters"].get(spec.name, 0)))
    for name, count in data["route_counts"].items():
        target.parser._routes.add_count(name, int(count))
    target.next_order += int(data["lives"])
    target.tally.merge(_offset_tally(data["tally"], offset))
    target.routes.merge(RouteTally.from_json(data["routes"]))
    lives, requests, verdicts = data["other"]
    target.other_lives += lives
    target.other_requests += requests
    for verdict, n in verdicts.items():
        target.other_verdicts[verdict] = target.other_verdicts.get(verdict, 0) + n
    for item in data["workers"]:
        entry = (WorkerSummary(**item["summary"]),
                 tuple(RecycleMarker(**m) for m in item["recycles"]))
        dropped = target.workers.add(_shift(item["key"], offset), entry)
        if dropped is not None:
            target.count_other(dropped[0])
    for item in data["series"]:
        target.series.add(_shift(item["key"], offset), _series(item["series"]))
    for item in data["pool"]:
        ids = [target.names.id(route, method) for route, method in item["routes"]]
        life = OpenLife.from_json(item["life"], ids,
                                  [LifecycleEvent(**e) for e in item["end_events"]],
                                  [(seq, _action(e)) for seq, e in item["marks"]])
        life.order += offset
        target.pool.add(_shift(item["key"], offset), life)
    target.requests += data["requests"]
    target.failed += data["failed"]
    for window in data["windows"]:
        target._window(_window(window))
    target.actions.merge(ActionTally.from_json(data["actions"]))
    target.plotted = min(MAX_PLOTTED_ACTIONS, target.plotted + data["plotted"])
    for event in data["orphans"][:max(0, MAX_ORPHANS - len(target.orphans))]:
        target.orphans.append(LifecycleEvent(**event))
    target.deaths.merge(DeathTally.from_json(data["deaths"]), line_offset)


def _offset_tally(data: Mapping[str, Any], offset: int) -> VerdictTally:
    tally = VerdictTally.from_json(data)
    for held in tally.best.values():
        held[3] += offset
    return tally


def from_partial(data: Mapping[str, Any], config: AnalysisConfig | None = None
                 ) -> StreamAnalysis:
    stream = StreamAnalysis(config)
    merge(stream, data)
    return stream
