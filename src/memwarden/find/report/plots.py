"""The plots of the view model: memory and census per worker life, cost per route.

Series come from the analysis already capped (``AnalysisConfig.max_plot_points``);
here they are thinned again to what a plot of its width can show, by
min-max buckets so that spikes and ends survive, and given axes that do not
stretch noise into a trend.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Literal

from memwarden.find.analysis.model import LifeSeries, SeriesPoint
from memwarden.find.analysis.units import format_bytes, format_count, format_signed_bytes
from memwarden.find.report.actions_view import marker_detail as action_detail
from memwarden.find.report.actions_view import marker_label as action_label
from memwarden.find.report.downsample import minmax_indices
from memwarden.find.report.scale import Axis, AxisKind, axis_for
from memwarden.find.report.view_model import (
    Band,
    BarChart,
    BarPanel,
    HoverRow,
    LifeView,
    Marker,
    Plot,
    PlotSizes,
    RouteView,
    Series,
    WorkerView,
)
from memwarden.find.report.words import (
    describe_marker,
    exact_bytes,
    exact_count,
    is_bytes_kind,
    life_label,
    marker_detail,
    optional_text,
    signed_count,
)

__all__ = ["CENSUS_POINTS", "MAX_MARKERS", "MAX_MARKER_LABEL", "MAX_WOULD_LINES", "MEMORY_POINTS",
           "MIN_BLOCKS_SPAN", "MIN_RSS_SPAN", "census_plot", "life_view", "memory_plot",
           "route_chart"]


# Census kinds in the order a person chasing the five usual leaks reads them
# (the live heap after a collection first); any other kind follows,
# alphabetically.
CENSUS_ORDER = ("blocks_collected", "blocks_after_full_gc", "threads", "fds", "children",
                "children_pss_bytes", "asyncio.tasks", "asyncio.loops", "playwright.contexts",
                "mcp.sessions", "sessions", "pss_bytes", "uss_bytes")
# Already drawn in the memory plot, or the collector's own bookkeeping.
CENSUS_SKIP = frozenset({"blocks", "rss_bytes", "gc_full_collections"})
# The smallest spans of the memory axes: RSS wobbles by pages and allocator
# high-water steps, the heap by the objects of requests in flight; stretched
# to fill a plot, either looks like a trend.
MIN_RSS_SPAN = 2 * 1024 * 1024
MIN_BLOCKS_SPAN = 1000.0

MEMORY_POINTS = 600  # points per memory plot: ~1 per 2 px at full width
CENSUS_POINTS = 150

MAX_CENSUS_PLOTS = 24  # per worker life; suspects and the usual kinds first
# Marks per memory plot (their labels stack at its top or bottom): how the
# life ended first, then the dry-run decisions in log order.
MAX_MARKERS = 12
MAX_WOULD_LINES = 20  # dry-run decisions listed under a plot
MAX_MARKER_LABEL = 40  # characters; the mark's tooltip and the lines under the plot say all
MAX_ROUTE_BARS = 12

NEGLIGIBLE_BAR = 0.02  # of a panel's largest bar


def memory_plot(plot_id: str, life: LifeSeries, sizes: PlotSizes) -> Plot | None:
    """RSS (left axis) and allocated blocks (right axis) against request number."""
    points = life.points
    has_rss = any(p.rss_bytes is not None for p in points)
    has_blocks = any(p.blocks is not None for p in points)
    if not points or not (has_rss or has_blocks):
        return None
    columns: list[list[float | None]] = []
    if has_rss:
        columns.append([p.rss_bytes for p in points])
    if has_blocks:
        columns.append([p.blocks for p in points])
    kept = [points[i] for i in minmax_indices(columns, MEMORY_POINTS)]
    xs = [float(p.seq) for p in kept]
    series: list[Series] = []
    axes: list[Axis] = []
    if has_rss:
        rss = [p.rss_bytes for p in kept]
        series.append(Series("rss", "RSS", "left", tuple(zip(xs, rss, strict=True)),
                             source_points=sum(1 for p in points if p.rss_bytes is not None)))
        axes.append(axis_for([v for v in rss if v is not None], "bytes", "RSS",
                             min_span=MIN_RSS_SPAN))
    if has_blocks:
        blocks = [p.blocks for p in kept]
        series.append(Series("blocks", "Allocated blocks since the first request",
                             "right" if has_rss else "left",
                             tuple(zip(xs, blocks, strict=True)),
                             source_points=sum(1 for p in points if p.blocks is not None)))
        axes.append(axis_for([v for v in blocks if v is not None], "count",
                             "allocated blocks", include_zero=True, min_span=MIN_BLOCKS_SPAN))
    hover = tuple(HoverRow(p.seq, _memory_lines(p), _memory_values(p, has_rss, has_blocks))
                  for p in kept)
    x_axis = axis_for(xs, "request", "request number in this worker",
                      target_ticks=max(3, sizes.memory_width // 110))
    bands: tuple[Band, ...] = ()
    first = points[0].seq
    if life.warmup_end_seq is not None and life.warmup_end_seq > first:
        bands = (Band(first, life.warmup_end_seq, "warm-up"),)
    last = points[-1].seq
    markers = tuple(Marker(float(m.seq if m.seq is not None else last),
                           _short(describe_marker(m)), marker_detail(m))
                    for m in life.recycles)
    markers += tuple(Marker(float(min(max(m.seq, first), last)), _short(action_label(m)),
                            action_detail(m), would=m.would) for m in life.actions)
    return Plot(id=plot_id, title=f"Memory of {life_label(life.pid, life.life)}",
                width=sizes.memory_width, height=sizes.memory_height, x_axis=x_axis,
                y_axis=axes[0], y2_axis=axes[1] if len(axes) > 1 else None,
                series=tuple(series), bands=bands, markers=markers[:MAX_MARKERS], hover=hover)


def _short(label: str) -> str:
    return label if len(label) <= MAX_MARKER_LABEL else label[:MAX_MARKER_LABEL - 3] + "..."


def _memory_values(point: SeriesPoint, rss: bool, blocks: bool) -> tuple[float | None, ...]:
    values: list[float | None] = []
    if rss:
        values.append(point.rss_bytes)
    if blocks:
        values.append(point.blocks)
    return tuple(values)


def _memory_lines(point: SeriesPoint) -> tuple[str, ...]:
    lines = [f"Request {point.seq:,}"]
    if point.rss_bytes is not None:
        lines.append(f"RSS {exact_bytes(point.rss_bytes)}")
    if point.blocks is not None:
        lines.append(f"Blocks {signed_count(point.blocks)} since the first request")
    return tuple(lines)


def _census_order(kinds: Iterable[str], suspects: Sequence[str]) -> list[str]:
    known = {kind: i for i, kind in enumerate(CENSUS_ORDER)}
    rank = {kind: i for i, kind in enumerate(suspects)}
    return sorted(kinds, key=lambda k: (k not in rank, rank.get(k, 0),
                                        k not in known, known.get(k, 0), k))


def _census_value_text(kind: str, value: float) -> str:
    return exact_bytes(value) if is_bytes_kind(kind) else exact_count(value)


def _census_short(kind: str, value: float) -> str:
    return format_bytes(value) if is_bytes_kind(kind) else format_count(value)


def census_plot(plot_id: str, kind: str, life: LifeSeries, sizes: PlotSizes,
                 warmup: tuple[Band, ...], emphasis: bool) -> Plot | None:
    """One census kind of one life, a small multiple; None when it was never sampled."""
    samples = [(p.seq, p.census[kind]) for p in life.points
               if p.census is not None and kind in p.census]
    if not samples:
        return None
    kept = [samples[i] for i in minmax_indices([[v for _s, v in samples]], CENSUS_POINTS)]
    xs = [float(seq) for seq, _v in kept]
    values = [v for _s, v in kept]
    axis_kind: AxisKind = "bytes" if is_bytes_kind(kind) else "count"
    series = Series(kind, kind, "left", tuple(zip(xs, values, strict=True)),
                    source_points=len(samples), emphasis=emphasis)
    first, last = samples[0][1], samples[-1][1]
    change = last - first
    change_text = (format_signed_bytes(change) if is_bytes_kind(kind)
                   else signed_count(round(change, 3)))
    summary = (f"{_census_short(kind, first)} to {_census_short(kind, last)} "
               f"({change_text})")
    hover = tuple(HoverRow(float(seq), (f"Request {seq:,}",
                                        f"{kind} {_census_value_text(kind, value)}"), (value,))
                  for seq, value in kept)
    # A life's census plots share its x range, so they line up with the memory plot.
    seqs = [float(p.seq) for p in life.points]
    return Plot(id=plot_id, title=kind, width=sizes.census_width, height=sizes.census_height,
                x_axis=axis_for([seqs[0], seqs[-1]], "request", "request", target_ticks=3),
                y_axis=axis_for(values, axis_kind, kind, target_ticks=3,
                                include_zero=not is_bytes_kind(kind)),
                y2_axis=None, series=(series,), bands=warmup, markers=(), hover=hover,
                summary=summary, emphasis=emphasis)


def life_view(key: str, life: LifeSeries, worker: WorkerView, sizes: PlotSizes,
              suspect_kinds: Sequence[str], flagged: frozenset[str]) -> LifeView:
    """One worker life: its memory plot, a census plot per kind, how it ended."""
    memory = memory_plot(f"{key}-memory", life, sizes)
    kinds = {kind for p in life.points if p.census for kind in p.census} - CENSUS_SKIP
    ordered = _census_order(kinds, suspect_kinds)
    census = []
    warmup = memory.bands if memory is not None else ()
    for j, kind in enumerate(ordered[:MAX_CENSUS_PLOTS]):
        plot = census_plot(f"{key}-census{j}", kind, life, sizes, warmup,
                            emphasis=kind in flagged)
        if plot is not None:
            census.append(plot)
    endings = tuple(marker_detail(m) for m in life.recycles)
    notes = []
    if memory is None:
        notes.append("No RSS or allocated-block figures were logged for this worker life.")
    elif memory.series[0].source_points > len(memory.series[0].points):
        notes.append(f"Plotted {len(memory.hover):,} of {memory.series[0].source_points:,} "
                     f"points, keeping each stretch's highest and lowest.")
    if not kinds:
        notes.append("No census samples were logged for this worker life.")
    marked = len(life.recycles) + len(life.actions)
    if memory is not None and marked > MAX_MARKERS:
        notes.append(f"Marked the first {MAX_MARKERS} of {marked:,} recycles, kills and "
                     f"dry-run decisions on the plot.")
    if len(life.actions) > MAX_WOULD_LINES:
        notes.append(f"Listed the first {MAX_WOULD_LINES} of {len(life.actions):,} dry-run "
                     f"decisions about this worker.")
    return LifeView(key=key, worker=worker, memory=memory, census=tuple(census),
                    census_omitted=max(0, len(ordered) - MAX_CENSUS_PLOTS), endings=endings,
                    notes=tuple(notes),
                    would=tuple(action_detail(m) for m in life.actions[:MAX_WOULD_LINES]))


def route_chart(plot_id: str, routes: Sequence[RouteView], sizes: PlotSizes) -> BarChart | None:
    """Bars per route for blocks, RSS and time per call, busiest routes first."""
    rows = list(routes[:MAX_ROUTE_BARS])
    if not rows:
        return None

    def panel(title: str, kind: AxisKind, values: list[float | None],
              text: Literal["signed_bytes", "count"]) -> BarPanel:
        present = [v for v in values if v is not None]
        # A route that frees a fraction of a block per call should not give
        # the axis a whole negative step: values this small draw as hairlines.
        largest = max((abs(v) for v in present), default=0.0)
        scaled = [v if abs(v) >= NEGLIGIBLE_BAR * largest else 0.0 for v in present]
        return BarPanel(title=title, axis=axis_for(scaled, kind, title, target_ticks=2,
                                                   include_zero=True),
                        values=tuple(values),
                        texts=tuple(optional_text(v, text) for v in values))

    panels = (
        panel("blocks kept per call", "count", [r.blocks_per_call for r in rows], "count"),
        panel("RSS growth per call", "bytes", [r.rss_per_call for r in rows], "signed_bytes"),
        panel("ms per call", "count", [r.ms_per_call for r in rows], "count"),
    )
    hover = tuple((r.route, f"{r.calls:,} calls, {r.failed:,} failed",
                   f"Blocks per call {r.blocks_text}",
                   f"RSS per call {r.rss_text} (median {r.median_rss_text})",
                   f"Time per call {r.ms_text} ms") for r in rows)
    return BarChart(id=plot_id, width=sizes.bars_width, labels=tuple(r.route for r in rows),
                    panels=panels, hover=hover, emphasis=tuple(r.suspect for r in rows))
