"""Several reports side by side: one view each, and a headline comparing them."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from memwarden.find.analysis.model import Report
from memwarden.find.report.view import build_view
from memwarden.find.report.view_model import (
    SIDE_BY_SIDE,
    ComparisonRow,
    ComparisonView,
    EntryView,
    ReportView,
)

__all__ = ["build_comparison_view"]


def _change(before: float | None, after: float | None) -> str:
    if before is None or after is None or before <= 0:
        return ""
    ratio = (after - before) / before
    if abs(ratio) < 0.005:
        return " (about the same)"
    return f" ({abs(ratio):.0%} {'lower' if ratio < 0 else 'higher'})"


def _actions_cell(view: ReportView) -> str:
    actions = view.actions
    if actions is None or not actions.summary:
        return "none logged"
    return f"{actions.mode_label}: {'; '.join(actions.summary)}"


def _headline(entries: Sequence[EntryView]) -> str:
    if not entries:
        return "Nothing to compare."
    verdicts = "; ".join(f"{e.label}: {e.report.verdict.headline.lower()}" for e in entries)
    if len(entries) != 2:
        return verdicts + "."
    first, second = entries[0], entries[1]
    a, b = first.report.footprint, second.report.footprint
    sentence = verdicts + "."
    if a.peak_rss_bytes is not None and b.peak_rss_bytes is not None:
        sentence += (f" Peak worker RSS {a.peak_rss_text} {first.label}, {b.peak_rss_text} "
                     f"{second.label}{_change(a.peak_rss_bytes, b.peak_rss_bytes)}.")
    return sentence


def build_comparison_view(entries: Sequence[tuple[str, Report]],
                          title: str | None = None) -> ComparisonView:
    """Several reports side by side, with a headline comparing verdicts and footprints."""
    views = tuple(EntryView(label, build_view(report, title=label, id_prefix=f"e{i}",
                                              sizes=SIDE_BY_SIDE))
                  for i, (label, report) in enumerate(entries, start=1))

    def row(label: str, cell: Callable[[ReportView], str]) -> ComparisonRow:
        return ComparisonRow(label, tuple(cell(e.report) for e in views))

    rows: tuple[ComparisonRow, ...] = (
        ComparisonRow("Verdict", tuple(e.report.verdict.headline for e in views),
                      tuple(e.report.verdict.tone for e in views)),
        row("Requests", lambda v: f"{v.footprint.requests:,} "
                                  f"({v.footprint.failed_requests:,} failed)"),
        row("Worker lives", lambda v: f"{len(v.workers):,} "
                                      f"({sum(w.verdict == 'leak' for w in v.workers):,} leaking)"),
        row("Peak worker RSS", lambda v: v.footprint.peak_rss_text),
        row("Steepest RSS growth", lambda v: v.footprint.steepest_text),
        row("Top suspect", lambda v: v.footprint.top_suspect),
    )
    if any(e.report.actions is not None for e in views):
        rows += (row("Protective actions", _actions_cell),)
    return ComparisonView(title=title or "memwarden comparison", headline=_headline(views),
                          rows=rows, entries=views)
