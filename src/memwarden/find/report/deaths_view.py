"""The "Deaths in flight" section's view: workers that died with a request running."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from memwarden.find.analysis.model import Report
from memwarden.find.analysis.units import format_bytes, format_signed_bytes

__all__ = ["DeathRow", "DeathsView", "deaths_view"]

MAX_ROUTE_ROWS = 20
CAUSE_WORDS: Mapping[str, str] = {"oom_kill": "killed by the OOM killer",
                                  "timeout": "gunicorn's timeout", "signal": "a signal"}


@dataclass(frozen=True, slots=True)
class DeathRow:
    when: str
    pid: int
    cause: str
    route: str
    seconds: str
    footprint: str


@dataclass(frozen=True, slots=True)
class DeathsView:
    summary: str
    routes: tuple[tuple[str, int], ...]  # most deaths first
    routes_omitted: int
    recent: tuple[DeathRow, ...]  # newest first
    recent_omitted: int


def deaths_view(report: Report) -> DeathsView | None:
    if not report.deaths_total:
        return None
    causes: dict[str, int] = {}
    for death in report.deaths:
        causes[death.cause] = causes.get(death.cause, 0) + 1
    rows = []
    for death in report.deaths:
        cause = CAUSE_WORDS.get(death.cause, death.cause)
        if death.signal:
            cause += f" ({death.signal})"
        footprint = "-"
        if death.footprint_last_bytes is not None:
            footprint = format_bytes(death.footprint_last_bytes)
            if death.growth_bytes is not None:
                footprint += f" ({format_signed_bytes(death.growth_bytes)} in the request)"
        rows.append(DeathRow(when=death.timestamp or "-", pid=death.pid, cause=cause,
                             route=death.route_key,
                             seconds=f"{death.seconds:.1f} s" if death.seconds is not None
                             else "-", footprint=footprint))
    routes = report.deaths_by_route
    summary = (f"{report.deaths_total:,} worker(s) died with a request in flight, on "
               f"{len(routes):,} route(s).")
    return DeathsView(summary=summary, routes=routes[:MAX_ROUTE_ROWS],
                      routes_omitted=max(0, len(routes) - MAX_ROUTE_ROWS),
                      recent=tuple(rows), recent_omitted=report.deaths_total - len(rows))
