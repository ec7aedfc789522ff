"""The view model of the protective actions: counts, the timeline, the dry-run marks.

The words are the text summary's (``analysis.actions``), so the page and
``memwarden analyze`` say the same. Every name in here came from a log and
is escaped by the renderer like any other.
"""

from __future__ import annotations

from memwarden.find.analysis.actions import KINDS, breakdown_text, describe_actions
from memwarden.find.analysis.model import ActionCount, ActionMarker, ActionMode, ActionSummary
from memwarden.find.analysis.records import ActionEvent
from memwarden.find.analysis.units import format_bytes, format_count
from memwarden.find.report.view_model import ActionCell, ActionEventView, ActionRow, ActionsView
from memwarden.find.report.words import mark_sentence

__all__ = ["MAX_TIMELINE_ROWS", "actions_view", "marker_detail", "marker_label"]

MAX_TIMELINE_ROWS = 25

MODE_LABELS: dict[ActionMode, str] = {"on": "on", "dry-run": "dry-run", "mixed": "mixed"}
MODE_TEXTS: dict[ActionMode | None, str] = {
    "on": "memwarden did what is counted here.",
    "dry-run": "memwarden decided what is counted here, logged it with the figures it would "
               "have acted on, and did none of it.",
    "mixed": "memwarden did what is in the done column; what is in the dry-run column was "
             "only logged, not done.",
    None: "no protective action was logged; only the lines below.",
}
# How a figure of an action line reads: (words, unit).
FIGURE_WORDS: dict[str, tuple[str, str]] = {
    "footprint_bytes": ("footprint", "bytes"),
    "limit_bytes": ("limit", "bytes"),
    "shed_high_bytes": ("shed threshold", "bytes"),
    "requests": ("requests", ""),
    "descendants": ("processes", ""),
    "orphans": ("processes", ""),
    "max_size": ("max size", ""),
    "in_use": ("in use", ""),
    "timeout_s": ("timeout", "s"),
}


def _cell(count: ActionCount) -> ActionCell:
    parts = []
    if count.workers is not None:
        parts.append(f"{count.workers:,} worker{'' if count.workers == 1 else 's'}")
    if count.processes is not None:
        parts.append(f"{count.processes:,} process{'' if count.processes == 1 else 'es'}")
    breakdown = breakdown_text(count, named=True)
    if breakdown:
        parts.append(breakdown)
    return ActionCell(message=count.message, count=count.total, text=f"{count.total:,}",
                      detail="; ".join(parts))


def _rows(counts: tuple[ActionCount, ...]) -> tuple[ActionRow, ...]:
    rows = []
    for kind in KINDS.values():
        done = next((c for c in counts if c.action == kind.name and not c.would), None)
        would = next((c for c in counts if c.action == kind.name and c.would), None)
        if done is None and would is None:
            continue
        rows.append(ActionRow(action=kind.name, label=kind.label,
                              done=_cell(done) if done is not None else None,
                              would=_cell(would) if would is not None else None))
    return tuple(rows)


def _figure_text(name: str, value: float) -> str:
    words, unit = FIGURE_WORDS.get(name, (name.replace("_", " "), ""))
    if unit == "bytes":
        return f"{words} {format_bytes(value)}"
    return f"{words} {format_count(value)}{' ' + unit if unit else ''}"


def _event(first: ActionEvent, last: ActionEvent, lines: int) -> ActionEventView:
    by = KINDS[first.action].by
    parts = [f"{by} {first.detail}"] if by is not None and first.detail is not None else []
    parts += [_figure_text(name, value) for name, value in first.figures]
    start, end = first.timestamp or "-", last.timestamp or "-"
    return ActionEventView(time=start if lines == 1 or start == end else f"{start} to {end}",
                           pid=first.pid, message=first.message, would=first.would,
                           detail="; ".join(parts) or "-", lines=lines)


def _timeline(events: tuple[ActionEvent, ...]) -> list[ActionEventView]:
    """Runs of lines alike (a burst of sheds) as one row each; at most MAX_TIMELINE_ROWS."""
    rows: list[ActionEventView] = []
    i = 0
    while i < len(events) and len(rows) < MAX_TIMELINE_ROWS:
        first = events[i]
        j = i + 1
        while j < len(events) and (events[j].pid, events[j].message, events[j].detail) == (
                first.pid, first.message, first.detail):
            j += 1
        rows.append(_event(first, events[j - 1], j - i))
        i = j
    return rows


def actions_view(summary: ActionSummary) -> ActionsView | None:
    """The page's "Protective actions" section; None when the log has no action line."""
    if not summary.counts:
        return None
    protective = summary.protective
    related = tuple(c for c in summary.counts if not c.protective)
    timeline = _timeline(summary.events)
    return ActionsView(
        mode=summary.mode,
        mode_label=MODE_LABELS[summary.mode] if summary.mode is not None else "none",
        mode_text=MODE_TEXTS[summary.mode],
        summary=describe_actions(summary),
        rows=_rows(protective),
        related=_rows(related),
        events=tuple(timeline),
        events_more=sum(c.total for c in summary.counts) - sum(row.lines for row in timeline),
    )


def marker_label(marker: ActionMarker) -> str:
    """What the plot writes beside a dry-run mark: "would recycle (soft_limit)"."""
    if marker.action == "hard_limit_kill":
        what = "would kill (hard_limit)" if marker.would else "killed (hard_limit)"
    else:
        what = "would recycle" if marker.would else "recycled"
        if marker.reason:
            what += f" ({marker.reason})"
    return what


def marker_detail(marker: ActionMarker) -> str:
    """The whole decision in one sentence, for the mark's tooltip and under the plot."""
    text = mark_sentence(marker_label(marker), marker.seq, marker.footprint_bytes,
                         marker.limit_bytes, marker.timestamp)
    return text + (" (dry-run: logged, not done)" if marker.would else "")
