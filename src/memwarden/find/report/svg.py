"""Inline SVG for the view model's plots, and the hover data the page script reads.

Each function returns the static picture (complete without JavaScript) and
a JSON-safe dict with the pixel positions and tooltip lines of every
hoverable point, so the script does no arithmetic in data units and never
formats a number itself.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from memwarden.find.report.markup import Markup, html, join
from memwarden.find.report.scale import Axis
from memwarden.find.report.view_model import BarChart, Plot

__all__ = ["bars_svg", "confidence_svg", "plot_svg"]

CHAR_WIDTH = 6.6  # average width of an 11 px label character, for layout
COMPACT_WIDTH = 400  # narrower plots are small multiples: no axis titles
DOTS_UP_TO = 40  # series with this few points also get a dot per point
MARKER_CHAR_WIDTH = 7.4  # the 12 px semibold labels of recycle and dry-run marks
MARKER_LINE = 16.0
ROW_HEIGHT = 26
STACK_BARS_BELOW = 800  # narrower bar charts put their panels one above the other


def _n(value: float) -> str:
    return f"{value:.1f}".removesuffix(".0")


@dataclass(frozen=True, slots=True)
class _Frame:
    left: float
    top: float
    right: float
    bottom: float

    def x(self, axis: Axis, value: float) -> float:
        return self.left + axis.fraction(value) * (self.right - self.left)

    def y(self, axis: Axis, value: float) -> float:
        return self.bottom - axis.fraction(value) * (self.bottom - self.top)


def _label_width(axis: Axis | None) -> float:
    if axis is None or not axis.ticks:
        return 0.0
    return max(len(t.text) for t in axis.ticks) * CHAR_WIDTH


def _frame(plot: Plot) -> _Frame:
    compact = plot.width < COMPACT_WIDTH
    left = max(30.0, _label_width(plot.y_axis) + 12)
    right = plot.width - (_label_width(plot.y2_axis) + 12 if plot.y2_axis else 12)
    top = 10.0 if compact else 26.0
    bottom = plot.height - (22.0 if compact else 40.0)
    return _Frame(left, top, right, bottom)


def _path(points: Sequence[tuple[float, float | None]], frame: _Frame, x_axis: Axis,
          y_axis: Axis) -> str:
    parts: list[str] = []
    pen_down = False
    for x, y in points:
        if y is None:
            pen_down = False
            continue
        parts.append(f"{'L' if pen_down else 'M'}{_n(frame.x(x_axis, x))} "
                     f"{_n(frame.y(y_axis, y))}")
        pen_down = True
    return "".join(parts)


def _axes(plot: Plot, frame: _Frame) -> Markup:
    parts: list[Markup] = []
    for tick in plot.y_axis.ticks:
        y = _n(frame.y(plot.y_axis, tick.value))
        parts.append(html('<line class="mw-grid" x1="{l}" x2="{r}" y1="{y}" y2="{y}"/>'
                          '<text class="mw-tick" x="{tx}" y="{ty}" text-anchor="end">{t}</text>',
                          l=_n(frame.left), r=_n(frame.right), y=y, tx=_n(frame.left - 6),
                          ty=_n(float(y) + 4), t=tick.text))
    if plot.y2_axis is not None:
        right_index = next((i for i, s in enumerate(plot.series) if s.axis == "right"), 0)
        labels = [html('<text class="mw-tick" x="{x}" y="{y}">{t}</text>',
                       x=_n(frame.right + 6), y=_n(frame.y(plot.y2_axis, t.value) + 4),
                       t=t.text) for t in plot.y2_axis.ticks]
        parts.append(html('<g class="mw-axis-right" data-series="{k}">{labels}</g>', k=right_index,
                          labels=join(labels)))
    for tick in plot.x_axis.ticks:
        x = _n(frame.x(plot.x_axis, tick.value))
        parts.append(html('<line class="mw-tickmark" x1="{x}" x2="{x}" y1="{b}" y2="{b2}"/>'
                          '<text class="mw-tick" x="{x}" y="{ty}" text-anchor="middle">{t}</text>',
                          x=x, b=_n(frame.bottom), b2=_n(frame.bottom + 4),
                          ty=_n(frame.bottom + 16), t=tick.text))
    if plot.width >= COMPACT_WIDTH:
        parts.append(html('<text class="mw-axis-title" x="{x}" y="{y}" text-anchor="middle">'
                          '{t}</text>', x=_n((frame.left + frame.right) / 2),
                          y=_n(plot.height - 6), t=plot.x_axis.title))
        for i, series in enumerate(plot.series):
            right = series.axis == "right"
            parts.append(html('<text class="mw-axis-title mw-c{i}" x="{x}" y="{y}" '
                              'text-anchor="{a}" data-series="{i}">{t}</text>', i=i,
                              x=_n(frame.right if right else frame.left), y="16",
                              a="end" if right else "start",
                              t=plot.axis_of(series).title))
    return join(parts)


def _bands_and_markers(plot: Plot, frame: _Frame) -> Markup:
    parts: list[Markup] = []
    for band in plot.bands:
        x0 = frame.x(plot.x_axis, band.start)
        x1 = frame.x(plot.x_axis, band.end)
        label = Markup("")
        if x1 - x0 >= len(band.label) * CHAR_WIDTH + 8 and plot.width >= COMPACT_WIDTH:
            label = html('<text class="mw-band-label" x="{x}" y="{y}">{t}</text>',
                         x=_n(x0 + 4), y=_n(frame.top + 14), t=band.label)
        parts.append(html('<g class="mw-band"><title>{t}</title><rect x="{x}" y="{y}" '
                          'width="{w}" height="{h}"/>{label}</g>',
                          t=f"{band.label}: requests up to {band.end:,.0f} are left out of "
                            f"the trend", x=_n(x0), y=_n(frame.top), w=_n(max(x1 - x0, 0.0)),
                          h=_n(frame.bottom - frame.top), label=label))
    # Labels stack down from the top, or up from the bottom where the lines
    # would run through them at the top (late in a growing life).
    top_row = bottom_row = 0
    for marker in plot.markers:
        x = frame.x(plot.x_axis, marker.x)
        width = len(marker.label) * MARKER_CHAR_WIDTH
        at_left = x - frame.left < width + 8
        x0, x1 = (x + 4, x + 4 + width) if at_left else (x - 4 - width, x - 4)
        span = _data_span(plot, frame, x0, x1)
        top = frame.top + 30 + MARKER_LINE * top_row
        bottom = frame.bottom - 8 - MARKER_LINE * bottom_row

        def clear(baseline: float, span: tuple[float, float] | None = span) -> bool:
            return span is None or baseline + 6 < span[0] or baseline - 14 > span[1]

        if clear(top) or not clear(bottom):
            ty, top_row = top, top_row + 1
        else:
            ty, bottom_row = bottom, bottom_row + 1
        parts.append(html(
            '<g class="mw-marker{would}"><title>{d}</title><line x1="{x}" x2="{x}" y1="{t}" '
            'y2="{b}"/><text x="{tx}" y="{ty}" text-anchor="{a}">{label}</text></g>',
            would=" mw-would" if marker.would else "",
            d=marker.detail, x=_n(x), t=_n(frame.top), b=_n(frame.bottom),
            tx=_n(x + 4 if at_left else x - 4), ty=_n(ty),
            a="start" if at_left else "end", label=marker.label))
    return join(parts)


def _data_span(plot: Plot, frame: _Frame, x0: float, x1: float) -> tuple[float, float] | None:
    """The highest and lowest pixel y of the plotted lines between x0 and x1, or None."""
    ys: list[float] = []
    for series in plot.series:
        axis = plot.axis_of(series)
        before: float | None = None  # the line enters the span from the last point before it
        for x, y in series.points:
            if y is None:
                before = None
                continue
            px, py = frame.x(plot.x_axis, x), frame.y(axis, y)
            if px < x0:
                before = py
                continue
            if before is not None:
                ys.append(before)
                before = None
            ys.append(py)
            if px > x1:  # and leaves it towards the first point after it
                break
    return (min(ys), max(ys)) if ys else None


def plot_svg(plot: Plot) -> tuple[Markup, dict[str, Any]]:
    """A line plot: frame, axes, warm-up band, recycle markers, series, hover layer."""
    frame = _frame(plot)
    lines: list[Markup] = []
    dots: list[Markup] = []
    for i, series in enumerate(plot.series):
        axis = plot.axis_of(series)
        style = f"mw-c{i}" + (" mw-hot" if series.emphasis else "")
        few = [Markup("")]
        if len(series.points) <= DOTS_UP_TO:
            few = [html('<circle class="mw-pt" cx="{x}" cy="{y}" r="2.5"/>',
                        x=_n(frame.x(plot.x_axis, x)), y=_n(frame.y(axis, y)))
                   for x, y in series.points if y is not None]
        lines.append(html('<g class="mw-series {s}" data-series="{i}"><path class="mw-line" '
                          'd="{d}"/>{few}</g>', s=style, i=i,
                          d=_path(series.points, frame, plot.x_axis, axis), few=join(few)))
        dots.append(html('<circle class="mw-dot {s}" data-series="{i}" r="4" cx="0" cy="0"/>',
                         s=style, i=i))
    svg = html(
        '<svg class="mw-svg" viewBox="0 0 {w} {h}" width="{w}" height="{h}" role="img" '
        'aria-label="{title}" tabindex="0">'
        '<rect class="mw-plotbg" x="{l}" y="{t}" width="{pw}" height="{ph}"/>'
        '{axes}{bands}{lines}'
        '<g class="mw-hover" visibility="hidden"><line class="mw-cross" x1="0" x2="0" y1="{t}" '
        'y2="{b}"/>{dots}</g></svg>',
        w=plot.width, h=plot.height, title=plot.title, l=_n(frame.left), t=_n(frame.top),
        b=_n(frame.bottom), pw=_n(frame.right - frame.left), ph=_n(frame.bottom - frame.top),
        axes=_axes(plot, frame), bands=_bands_and_markers(plot, frame), lines=join(lines),
        dots=join(dots))
    hover: dict[str, Any] = {
        "kind": "x",
        "frame": [round(v, 1) for v in (frame.left, frame.top, frame.right, frame.bottom)],
        "x": [round(frame.x(plot.x_axis, row.x), 1) for row in plot.hover],
        "y": [[None if v is None else round(frame.y(plot.axis_of(s), v), 1)
               for s, v in zip(plot.series, row.values, strict=True)] for row in plot.hover],
        "tip": [list(row.lines) for row in plot.hover],
    }
    return svg, hover


def bars_svg(chart: BarChart) -> tuple[Markup, dict[str, Any]]:
    """Horizontal bars, one row per route and one panel per measure.

    Panels sit side by side when the chart is wide and one above the other
    when it is not, so that each keeps room for its bars and value labels.
    """
    stacked = chart.width < STACK_BARS_BELOW
    columns = 1 if stacked else len(chart.panels)
    label_chars = max(12, min(40, int(chart.width * (0.3 if stacked else 0.22) / CHAR_WIDTH)))
    label_width = label_chars * CHAR_WIDTH + 12
    gap = 24.0
    rows_height = ROW_HEIGHT * len(chart.labels)
    panel_height = 24 + rows_height + 26  # title, rows, tick labels
    panel_width = (chart.width - label_width - gap * (columns - 1)) / columns
    parts: list[Markup] = []
    bands: list[list[float]] = []
    for p in range(len(chart.panels)):
        x0 = label_width + (0 if stacked else p * (panel_width + gap))
        y0 = p * (panel_height + 12) if stacked else 0.0
        if stacked or p == 0:
            parts.append(_bar_labels(chart, label_chars, label_width, y0 + 24, bands))
        parts.append(_bar_panel(chart, p, x0, y0, panel_width))
    height = (panel_height + 12) * len(chart.panels) - 12 if stacked else panel_height
    svg = html('<svg class="mw-svg mw-bars" viewBox="0 0 {w} {h}" width="{w}" height="{h}" '
               'role="img" aria-label="Cost per route" tabindex="0">{parts}</svg>',
               w=chart.width, h=_n(height), parts=join(parts))
    return svg, {"kind": "rows", "bands": bands, "tip": [list(t) for t in chart.hover]}


def _bar_labels(chart: BarChart, label_chars: int, label_width: float, top: float,
                bands: list[list[float]]) -> Markup:
    parts = []
    for r, label in enumerate(chart.labels):
        y = top + r * ROW_HEIGHT
        bands.append([round(y, 1), round(y + ROW_HEIGHT, 1), r])
        short = label if len(label) <= label_chars else label[:label_chars - 3] + "..."
        parts.append(html(
            '<g class="mw-bar-row{hot}" data-row="{r}"><rect class="mw-row-bg" x="0" y="{y}" '
            'width="{w}" height="{h}"/><text class="mw-bar-label" x="{lx}" y="{ty}" '
            'text-anchor="end"><title>{full}</title>{short}</text></g>',
            hot=" mw-hot" if chart.emphasis[r] else "", r=r, y=_n(y), w=chart.width,
            h=ROW_HEIGHT, lx=_n(label_width - 10), ty=_n(y + 17), full=label, short=short))
    return join(parts)


def _bar_panel(chart: BarChart, p: int, x0: float, y0: float, width: float) -> Markup:
    panel = chart.panels[p]
    top = y0 + 24
    bottom = top + ROW_HEIGHT * len(chart.labels)
    negative = panel.axis.lo < 0
    frame = _Frame(x0 + (56 if negative else 0), top, x0 + width - 64, bottom)
    zero = frame.x(panel.axis, 0.0)
    parts = [html('<text class="mw-panel-title" x="{x}" y="{y}">{t}</text>',
                  x=_n(x0), y=_n(y0 + 14), t=panel.title)]
    for tick in panel.axis.ticks:
        x = _n(frame.x(panel.axis, tick.value))
        parts.append(html('<line class="mw-grid" x1="{x}" x2="{x}" y1="{t}" y2="{b}"/>'
                          '<text class="mw-tick" x="{x}" y="{ty}" text-anchor="middle">'
                          '{label}</text>', x=x, t=_n(top), b=_n(bottom),
                          ty=_n(bottom + 15), label=tick.text))
    for r, (value, text) in enumerate(zip(panel.values, panel.texts, strict=True)):
        y = top + r * ROW_HEIGHT + 6
        if value is None:
            parts.append(html('<text class="mw-bar-value" x="{x}" y="{y}">-</text>',
                              x=_n(zero + 4), y=_n(y + 11)))
            continue
        # Clamped: a negligible value may sit just outside the axis (see view).
        end = min(max(frame.x(panel.axis, value), frame.left), frame.right)
        # Negative values are labelled left of their bar only where the panel left room.
        left_label = value < 0 and negative
        parts.append(html(
            '<rect class="mw-bar{hot}" x="{x}" y="{y}" width="{w}" height="14"/>'
            '<text class="mw-bar-value" x="{tx}" y="{ty}" text-anchor="{a}">{t}</text>',
            hot=" mw-hot" if chart.emphasis[r] else "", x=_n(min(zero, end)), y=_n(y),
            w=_n(max(abs(end - zero), 1.0)), tx=_n(end - 4 if left_label else max(end, zero) + 4),
            ty=_n(y + 11), a="end" if left_label else "start", t=text))
    parts.append(html('<line class="mw-zero" x1="{x}" x2="{x}" y1="{t}" y2="{b}"/>',
                      x=_n(zero), t=_n(top), b=_n(bottom)))
    return join(parts)


def confidence_svg(confidence: float) -> Markup:
    """A small bar for a confidence in [0, 1]; the number is printed beside it."""
    return html('<svg class="mw-conf" viewBox="0 0 60 8" width="60" height="8" '
                'aria-hidden="true"><rect class="mw-conf-bg" width="60" height="8"/>'
                '<rect class="mw-conf-fg" width="{w}" height="8"/></svg>',
                w=_n(60 * min(max(confidence, 0.0), 1.0)))
