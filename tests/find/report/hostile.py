"""A report built by hand whose every string attacks the page, bypassing the log reader.

The reader already replaces unprintable characters such as U+2028; the
renderer must be safe on its own, for any ``Report``.
"""

from __future__ import annotations

from memwarden.find.analysis import (
    ActionCount,
    ActionMarker,
    ActionSummary,
    InputStats,
    LifeSeries,
    RecycleMarker,
    Report,
    RouteCost,
    SeriesPoint,
    Suspect,
    WorkerSummary,
)
from memwarden.find.analysis.records import ActionEvent

from .logs import ATTRIBUTE_BREAK, SCRIPT_END, SCRIPT_ROUTE

EVIL = SCRIPT_ROUTE + ATTRIBUTE_BREAK + SCRIPT_END


def hostile_actions() -> ActionSummary:
    """Counts, breakdowns and a timeline whose every string is hostile."""
    events = (ActionEvent(pid=7, action="recycle", would=True, detail=EVIL,
                          figures=(("footprint_bytes", 1.0e8), ("limit_bytes", 9.0e7)),
                          timestamp=EVIL),
              ActionEvent(pid=7, action="pool_refuse", would=True, detail=EVIL, timestamp=EVIL),
              ActionEvent(pid=7, action="shedding_started", detail=EVIL, timestamp=EVIL))
    return ActionSummary(
        mode="dry-run",
        counts=(ActionCount("would_recycle", "recycle", True, True, 1, 1, None, "reason",
                            ((EVIL, 1),)),
                ActionCount("would_pool_refuse", "pool_refuse", True, True, 1, 1, None, "pool",
                            ((EVIL, 1),)),
                ActionCount("shedding_started", "shedding_started", False, False, 1, 1, None,
                            "signal", ((EVIL, 1),))),
        events=events)


def hostile_report() -> Report:
    would = ActionMarker(pid=7, life=1, seq=150, action="recycle", would=True, reason=EVIL,
                         footprint_bytes=1.0e8, limit_bytes=9.0e7, timestamp=EVIL)
    marker = RecycleMarker(pid=7, life=1, seq=300, event="worker_killed", reason=EVIL,
                           footprint_bytes=1.0e8, limit_bytes=2.0e8, signal=EVIL, oom_kill=True,
                           timestamp=EVIL)
    points = tuple(SeriesPoint(seq=i, rss_bytes=8.0e7 + 4096 * i, blocks=10.0 * i,
                               census={EVIL: float(i // 10), "threads": 3.0} if i % 10 == 0
                               else None)
                   for i in range(1, 301))
    return Report(
        verdict="leak", reason=EVIL, requests=300, failed_requests=0,
        workers=(WorkerSummary(pid=7, life=1, requests=300, first_seq=1, last_seq=300,
                               rss_start_bytes=80_000_000, rss_end_bytes=81_228_800,
                               slope_bytes_per_request=4096.0, blocks_per_request=10.0,
                               verdict="leak", reason=EVIL, ended_by=EVIL),),
        suspects=(Suspect("route", EVIL, 10.0, 4096, 0.9, EVIL),
                  Suspect("resource", EVIL, 0.1, None, 0.8, EVIL),
                  Suspect("allocation", EVIL, 2.0, 640, 0.5, EVIL)),
        routes=(RouteCost(EVIL, 300, 0, 4096.0, 4096.0, 10.0, 12.5),),
        recycles=(marker,),
        series=(LifeSeries(pid=7, life=1, warmup_end_seq=30, points=points,
                           recycles=(marker,), actions=(would,)),),
        input=InputStats(lines=304, request_lines=300, lifecycle_lines=1, action_lines=3),
        actions=hostile_actions(),
    )
