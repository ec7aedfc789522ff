"""From an analysis ``Report`` to the view model of one report page.

``build_view`` decides everything the page shows: the words and human units
of every figure, the ordering of every list, which suspects are marked, and
each plot (see ``plots``). Rendering (``html``, ``svg``) only lays it out;
tests check this model without parsing any HTML.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

from memwarden.find.analysis.model import (
    LifeSeries,
    Report,
    RouteCost,
    Suspect,
    SuspectKind,
    Verdict,
    WorkerSummary,
)
from memwarden.find.analysis.units import format_count, format_signed_bytes
from memwarden.find.report.actions_view import actions_view
from memwarden.find.report.deaths_view import deaths_view
from memwarden.find.report.plots import life_view, route_chart
from memwarden.find.report.view_model import (
    SINGLE,
    Footprint,
    PlotSizes,
    ReportView,
    RouteView,
    Stat,
    SuspectView,
    Tone,
    VerdictView,
    WorkerView,
)
from memwarden.find.report.words import is_bytes_kind, life_label, marker_detail, optional_text

__all__ = ["FLAG_CONFIDENCE", "MAX_ROUTE_ROWS", "build_view"]

TONES: dict[Verdict, Tone] = {"leak": "bad", "inconclusive": "warn", "no_leak": "good"}
VERDICT_LABELS: dict[Verdict, str] = {"leak": "leak", "no_leak": "no leak",
                                      "inconclusive": "inconclusive"}


VERDICT_HEADLINES: dict[Verdict, str] = {
    "leak": "Leak found",
    "no_leak": "No leak found",
    "inconclusive": "Inconclusive",
}

VERDICT_NAMES = {"leak": "leak", "no_leak": "no leak", "inconclusive": "inconclusive"}
KIND_LABELS: dict[SuspectKind, str] = {"route": "route", "resource": "resource",
                                       "allocation": "allocation site", "type": "object type",
                                       "deaths": "died in flight"}
GC_PREFIX = "gc."

MAX_ROUTE_ROWS = 50
FLAG_CONFIDENCE = 0.5  # suspects at least this likely are marked in tables and plots


def _verdict(report: Report) -> VerdictView:
    return VerdictView(verdict=report.verdict, headline=VERDICT_HEADLINES[report.verdict],
                       label=VERDICT_LABELS[report.verdict], tone=TONES[report.verdict],
                       reason=report.reason)


def _stats(report: Report) -> tuple[Stat, ...]:
    return (
        Stat("Requests", report.requests, f"{report.requests:,}"),
        Stat("Failed (status 500 and above)", report.failed_requests,
             f"{report.failed_requests:,}"),
        Stat("Worker lives", len(report.workers), f"{len(report.workers):,}"),
        Stat("Suspects", len(report.suspects), f"{len(report.suspects):,}"),
    )


# (attribute, label, shown even when zero)
_INPUT_FIELDS = (
    ("lines", "lines read", True),
    ("request_lines", "request lines", True),
    ("allocation_lines", "allocation-site lines", False),
    ("lifecycle_lines", "recycle and kill lines", False),
    ("action_lines", "other protective-action lines", False),
    ("skipped_lines", "other lines skipped", True),
    ("malformed_lines", "malformed", True),
    ("oversized_lines", "too long", False),
    ("invalid_records", "invalid records", False),
    ("invalid_fields", "invalid fields", False),
    ("unreadable_inputs", "inputs cut short", False),
)


def _inputs(report: Report) -> tuple[tuple[Stat, ...], str | None]:
    stats = []
    for attribute, label, always in _INPUT_FIELDS:
        value: int = getattr(report.input, attribute)
        if always or value:
            stats.append(Stat(label, value, f"{value:,}"))
    warning = None
    if report.input.unreadable_inputs:
        warning = (f"{report.input.unreadable_inputs} input file(s) were cut short or corrupt; "
                   f"they were read up to the damage.")
    return tuple(stats), warning


def _per_request_text(suspect: Suspect) -> str:
    value = suspect.per_request
    if suspect.kind == "route":
        return f"{format_count(value)} blocks/call"
    if suspect.kind == "resource" and is_bytes_kind(suspect.name):
        return f"{format_signed_bytes(value)}/request"
    if suspect.kind in ("allocation", "type"):
        return f"{format_count(value)} objects/request"
    if suspect.kind == "deaths":
        return f"{value:,.0f} deaths"
    return f"{format_count(value)}/request"


def _census_kind(suspect: Suspect) -> str | None:
    if suspect.kind == "resource":
        return suspect.name
    if suspect.kind == "type":
        return GC_PREFIX + suspect.name
    return None


def _suspects(report: Report) -> tuple[SuspectView, ...]:
    views = []
    for rank, suspect in enumerate(report.suspects, start=1):
        confidence = min(max(suspect.confidence, 0.0), 1.0) \
            if math.isfinite(suspect.confidence) else 0.0
        per = "/call" if suspect.kind == "route" else "/request"
        views.append(SuspectView(
            rank=rank, kind=suspect.kind, kind_label=KIND_LABELS[suspect.kind],
            name=suspect.name, per_request=suspect.per_request,
            per_request_text=_per_request_text(suspect),
            bytes_per_request=suspect.bytes_per_request,
            bytes_text=(f"{format_signed_bytes(suspect.bytes_per_request)}{per}"
                        if suspect.bytes_per_request is not None else "-"),
            confidence=confidence, confidence_text=f"{confidence:.2f}",
            evidence=suspect.evidence, census_kind=_census_kind(suspect)))
    return tuple(views)


def _worker(worker: WorkerSummary, key: str) -> WorkerView:
    growth = None
    if worker.rss_start_bytes is not None and worker.rss_end_bytes is not None:
        growth = float(worker.rss_end_bytes - worker.rss_start_bytes)
    blocks = worker.blocks_per_request
    return WorkerView(
        key=key, pid=worker.pid, life=worker.life, label=life_label(worker.pid, worker.life),
        requests=worker.requests,
        seq_text=f"{worker.first_seq:,} to {worker.last_seq:,}",
        rss_start_text=optional_text(worker.rss_start_bytes),
        rss_end_text=optional_text(worker.rss_end_bytes),
        growth_bytes=growth, growth_text=optional_text(growth, "signed_bytes"),
        slope_text=optional_text(worker.slope_bytes_per_request, "signed_bytes"),
        blocks_text=format_count(blocks) if blocks is not None else "-",
        ended_by=worker.ended_by or "-",
        verdict=worker.verdict, verdict_label=VERDICT_LABELS[worker.verdict],
        tone=TONES[worker.verdict], reason=worker.reason)


def _route(route: RouteCost, suspects: frozenset[str]) -> RouteView:
    return RouteView(
        route=route.route, calls=route.count, failed=route.failed,
        rss_per_call=route.mean_rss_delta_bytes,
        rss_text=optional_text(route.mean_rss_delta_bytes, "signed_bytes"),
        median_rss_text=optional_text(route.median_rss_delta_bytes, "signed_bytes"),
        blocks_per_call=route.mean_blocks_delta,
        blocks_text=optional_text(route.mean_blocks_delta, "count"),
        ms_per_call=route.mean_duration_ms,
        ms_text=f"{route.mean_duration_ms:,.1f}" if route.mean_duration_ms is not None else "-",
        suspect=route.route in suspects)


def _footprint(report: Report, suspects: Sequence[SuspectView]) -> Footprint:
    rss = [p.rss_bytes for life in report.series for p in life.points if p.rss_bytes is not None]
    rss += [w.rss_end_bytes for w in report.workers if w.rss_end_bytes is not None]
    peak = max(rss) if rss else None
    slopes = [(w.slope_bytes_per_request, w) for w in report.workers
              if w.slope_bytes_per_request is not None]
    steepest, steepest_worker = max(slopes, key=lambda item: item[0]) if slopes else (None, None)
    steepest_text = "-"
    if steepest is not None and steepest_worker is not None:
        steepest_text = (f"{format_signed_bytes(steepest)} per request "
                         f"({life_label(steepest_worker.pid, steepest_worker.life)})")
    top = suspects[0] if suspects else None
    return Footprint(
        requests=report.requests, failed_requests=report.failed_requests,
        peak_rss_bytes=peak, peak_rss_text=optional_text(peak),
        steepest_slope=steepest, steepest_text=steepest_text,
        top_suspect=(f"{top.kind_label} {top.name} (confidence {top.confidence_text})"
                     if top is not None else "none"))


def _placeholder(life: LifeSeries) -> WorkerSummary:
    """A summary for a plotted life the analysis did not summarise (it always does)."""
    first = life.points[0].seq if life.points else 0
    last = life.points[-1].seq if life.points else 0
    return WorkerSummary(pid=life.pid, life=life.life, requests=len(life.points),
                         first_seq=first, last_seq=last, rss_start_bytes=None,
                         rss_end_bytes=None, slope_bytes_per_request=None,
                         blocks_per_request=None, verdict="inconclusive", reason="",
                         ended_by=None)


def build_view(report: Report, title: str | None = None, id_prefix: str = "r",
               sizes: PlotSizes = SINGLE) -> ReportView:
    """The view model of one report. ``id_prefix`` keeps element ids unique on a page."""
    suspects = _suspects(report)
    suspect_kinds = [s.census_kind for s in suspects if s.census_kind is not None]
    # Only likely suspects are marked red; every suspect still comes first.
    flagged = [s for s in suspects if s.confidence >= FLAG_CONFIDENCE]
    flagged_kinds = frozenset(s.census_kind for s in flagged if s.census_kind is not None)
    workers_by_life: Mapping[tuple[int, int], WorkerSummary] = {
        (w.pid, w.life): w for w in report.workers}
    lives = []
    for i, life in enumerate(report.series, start=1):
        key = f"{id_prefix}-life{i}"
        summary = workers_by_life.get((life.pid, life.life)) or _placeholder(life)
        lives.append(life_view(key, life, _worker(summary, key), sizes, suspect_kinds,
                               flagged_kinds))
    keys = {(life.worker.pid, life.worker.life): life.key for life in lives}
    workers = tuple(_worker(w, keys.get((w.pid, w.life), f"{id_prefix}-worker{i}"))
                    for i, w in enumerate(report.workers, start=1))
    default = next((life.key for life in lives if life.worker.verdict == "leak"),
                   lives[0].key if lives else None)
    route_suspects = frozenset(s.name for s in flagged if s.kind == "route")
    routes = tuple(_route(r, route_suspects) for r in report.routes)
    inputs, warning = _inputs(report)
    return ReportView(
        title=title or "memwarden leak report",
        id_prefix=id_prefix,
        verdict=_verdict(report),
        stats=_stats(report),
        inputs=inputs,
        input_warning=warning,
        suspects=suspects,
        workers=workers,
        lives=tuple(lives),
        default_life=default,
        orphan_events=tuple(marker_detail(m) for m in report.recycles if m.life is None),
        routes=routes[:MAX_ROUTE_ROWS],
        routes_omitted=max(0, len(routes) - MAX_ROUTE_ROWS),
        route_chart=route_chart(f"{id_prefix}-routes", routes, sizes),
        footprint=_footprint(report, suspects),
        actions=actions_view(report.actions),
        deaths=deaths_view(report),
        other_lives=_other_lives(report),
    )


def _other_lives(report: Report) -> str | None:
    other = report.other_lives
    if not other.count:
        return None
    verdicts = ", ".join(f"{n:,} {VERDICT_NAMES.get(v, v)}" for v, n in other.verdicts)
    return (f"{other.count:,} more worker lives ({other.requests:,} requests: {verdicts}) are "
            f"counted in the verdict but not listed; the list keeps leaks first, then the "
            f"longest. Plots show at most {len(report.series)} lives.")
