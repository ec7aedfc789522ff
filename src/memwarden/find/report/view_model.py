"""The report's view model: everything the page shows, as plain data.

Built from an analysis ``Report`` by ``view.build_view`` (and, for several
reports side by side, ``compare.build_comparison_view``); laid out by
``html`` and ``svg``. Every figure is here twice where it matters: as a
number for tests and plots, and as the words and units the page prints.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from memwarden.find.analysis.model import ActionMode, SuspectKind, Verdict
from memwarden.find.report.deaths_view import DeathsView
from memwarden.find.report.scale import Axis

__all__ = [
    "SIDE_BY_SIDE",
    "SINGLE",
    "ActionCell",
    "ActionEventView",
    "ActionRow",
    "ActionsView",
    "Band",
    "BarChart",
    "BarPanel",
    "ComparisonRow",
    "ComparisonView",
    "EntryView",
    "Footprint",
    "HoverRow",
    "LifeView",
    "Marker",
    "Plot",
    "PlotSizes",
    "ReportView",
    "RouteView",
    "Series",
    "Stat",
    "SuspectView",
    "Tone",
    "VerdictView",
    "WorkerView",
]

Tone = Literal["bad", "warn", "good"]


@dataclass(frozen=True, slots=True)
class PlotSizes:
    """Plot widths in SVG units: wide on a report page, narrower side by side."""

    memory_width: int = 1100
    memory_height: int = 300
    census_width: int = 270
    census_height: int = 130
    bars_width: int = 1100


SINGLE = PlotSizes()
SIDE_BY_SIDE = PlotSizes(memory_width=600, memory_height=280, census_width=270,
                         bars_width=600)


@dataclass(frozen=True, slots=True)
class Stat:
    label: str
    value: float | None
    text: str


@dataclass(frozen=True, slots=True)
class VerdictView:
    verdict: Verdict
    headline: str  # "Leak found"
    label: str  # "leak", for tags and tables
    tone: Tone
    reason: str


@dataclass(frozen=True, slots=True)
class SuspectView:
    rank: int
    kind: SuspectKind
    kind_label: str
    name: str
    per_request: float
    per_request_text: str  # in the suspect's own unit: "176 blocks/call"
    bytes_per_request: int | None
    bytes_text: str
    confidence: float
    confidence_text: str
    evidence: str
    census_kind: str | None  # the census plot that shows this suspect, if any


@dataclass(frozen=True, slots=True)
class WorkerView:
    key: str  # the id of its life section
    pid: int
    life: int
    label: str  # "pid 4121", "pid 4121, life 2"
    requests: int
    seq_text: str
    rss_start_text: str
    rss_end_text: str
    growth_bytes: float | None
    growth_text: str
    slope_text: str
    blocks_text: str
    ended_by: str
    verdict: Verdict
    verdict_label: str
    tone: Tone
    reason: str


@dataclass(frozen=True, slots=True)
class Series:
    """One line of a plot, in data units: (request number, value)."""

    key: str
    label: str
    axis: Literal["left", "right"]
    points: tuple[tuple[float, float | None], ...]  # None: a gap in the line
    source_points: int  # points before thinning
    emphasis: bool = False


@dataclass(frozen=True, slots=True)
class Band:
    start: float
    end: float
    label: str


@dataclass(frozen=True, slots=True)
class Marker:
    x: float
    label: str
    detail: str
    would: bool = False  # a dry-run decision, not done: drawn apart from what was done


@dataclass(frozen=True, slots=True)
class HoverRow:
    """What hovering at request ``x`` shows: text lines and each series' value there."""

    x: float
    lines: tuple[str, ...]
    values: tuple[float | None, ...]  # parallel to Plot.series


@dataclass(frozen=True, slots=True)
class Plot:
    id: str
    title: str
    width: int
    height: int
    x_axis: Axis
    y_axis: Axis
    y2_axis: Axis | None
    series: tuple[Series, ...]
    bands: tuple[Band, ...]
    markers: tuple[Marker, ...]
    hover: tuple[HoverRow, ...]
    summary: str = ""
    emphasis: bool = False  # a likely suspect's census kind

    def axis_of(self, series: Series) -> Axis:
        return self.y2_axis if series.axis == "right" and self.y2_axis else self.y_axis


@dataclass(frozen=True, slots=True)
class LifeView:
    key: str
    worker: WorkerView
    memory: Plot | None
    census: tuple[Plot, ...]
    census_omitted: int
    endings: tuple[str, ...]
    notes: tuple[str, ...]
    would: tuple[str, ...] = ()  # dry-run decisions about this life, one sentence each


@dataclass(frozen=True, slots=True)
class RouteView:
    route: str
    calls: int
    failed: int
    rss_per_call: float | None
    rss_text: str
    median_rss_text: str
    blocks_per_call: float | None
    blocks_text: str
    ms_per_call: float | None
    ms_text: str
    suspect: bool  # a likely suspect (confidence of at least FLAG_CONFIDENCE)


@dataclass(frozen=True, slots=True)
class BarPanel:
    title: str
    axis: Axis
    values: tuple[float | None, ...]  # parallel to BarChart.labels
    texts: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class BarChart:
    id: str
    width: int
    labels: tuple[str, ...]
    panels: tuple[BarPanel, ...]
    hover: tuple[tuple[str, ...], ...]  # tooltip lines per row
    emphasis: tuple[bool, ...]


@dataclass(frozen=True, slots=True)
class ActionCell:
    """One logged message's count: ``recycle`` or ``would_recycle``..."""

    message: str  # as logged, for grep
    count: int
    text: str  # "4"
    detail: str  # "3 workers; soft_limit 3, idle 1"


@dataclass(frozen=True, slots=True)
class ActionRow:
    action: str
    label: str  # "Recycle a worker"
    done: ActionCell | None
    would: ActionCell | None  # always None for a line that only goes with an action


@dataclass(frozen=True, slots=True)
class ActionEventView:
    """One row of the actions timeline: a line, or several alike in a row."""

    time: str  # "2026-11-28T01:02:03.456Z", or "first to last" for several
    pid: int
    message: str  # as logged: "would_recycle"
    would: bool
    detail: str  # of the first: "reason soft_limit; footprint 200.0 MiB; limit 100.0 MiB"
    lines: int = 1  # consecutive lines of this worker with this message and detail


@dataclass(frozen=True, slots=True)
class ActionsView:
    """What memwarden did and what a dry-run would have done; only when it logged any."""

    mode: ActionMode | None
    mode_label: str  # "dry-run"
    mode_text: str  # the sentence that says what the mode means
    summary: tuple[str, ...]  # the text summary's lines of what was done and would be
    rows: tuple[ActionRow, ...]  # protective actions
    related: tuple[ActionRow, ...]  # the lines that go with them
    events: tuple[ActionEventView, ...]
    events_more: int  # action lines logged but not in the timeline shown


@dataclass(frozen=True, slots=True)
class Footprint:
    """The figures a comparison headline quotes."""

    requests: int
    failed_requests: int
    peak_rss_bytes: float | None
    peak_rss_text: str
    steepest_slope: float | None  # RSS bytes per request of the fastest-growing life
    steepest_text: str
    top_suspect: str


@dataclass(frozen=True, slots=True)
class ReportView:
    title: str
    id_prefix: str
    verdict: VerdictView
    stats: tuple[Stat, ...]
    inputs: tuple[Stat, ...]
    input_warning: str | None
    suspects: tuple[SuspectView, ...]
    workers: tuple[WorkerView, ...]
    lives: tuple[LifeView, ...]
    default_life: str | None
    orphan_events: tuple[str, ...]
    routes: tuple[RouteView, ...]
    routes_omitted: int
    route_chart: BarChart | None
    footprint: Footprint
    actions: ActionsView | None = None
    deaths: DeathsView | None = None
    other_lives: str | None = None  # lives judged but not listed (the report's cap)


@dataclass(frozen=True, slots=True)
class EntryView:
    label: str
    report: ReportView


@dataclass(frozen=True, slots=True)
class ComparisonRow:
    label: str
    cells: tuple[str, ...]  # parallel to ComparisonView.entries
    tones: tuple[Tone | None, ...] = ()  # the verdict row colours its cells


@dataclass(frozen=True, slots=True)
class ComparisonView:
    title: str
    headline: str
    rows: tuple[ComparisonRow, ...]
    entries: tuple[EntryView, ...]
