"""The HTML report: one self-contained, offline page per report or comparison.

Everything is inline: the stylesheet and script (``assets/``), the SVG plots
and the hover data, which sits in a ``<script type="application/json">``
element serialised by ``markup.script_json``. Every string that came from a
log goes through the escaping template helper of ``markup``. A Content
Security Policy admits only this page's own stylesheet and script (by hash),
so nothing is fetched and no injected handler could run.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Callable, Sequence
from functools import cache
from importlib import metadata, resources
from typing import Any

from memwarden.find.analysis.model import Report
from memwarden.find.report.compare import build_comparison_view
from memwarden.find.report.html_actions import actions_body
from memwarden.find.report.html_deaths import DEATHS_HELP, deaths_body
from memwarden.find.report.markup import Markup, html, join, script_json
from memwarden.find.report.svg import bars_svg, confidence_svg, plot_svg
from memwarden.find.report.view import build_view
from memwarden.find.report.view_model import (
    ComparisonView,
    LifeView,
    Plot,
    ReportView,
    Tone,
)

__all__ = ["render_comparison", "render_comparison_view", "render_html", "render_view"]

_PAGE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta http-equiv="Content-Security-Policy" content="{csp}">
<meta name="generator" content="memwarden {version}">
<title>{title}</title>
<link rel="icon" href="data:,">
<style>{css}</style>
</head>
<body class="{body_class}">
{body}
<script type="application/json" id="mw-data">{data}</script>
<script>{js}</script>
</body>
</html>
"""


@cache
def _asset(name: str) -> str:
    return resources.files("memwarden.find.report").joinpath("assets", name).read_text("utf-8")


def _sha256(text: str) -> str:
    return base64.b64encode(hashlib.sha256(text.encode("utf-8")).digest()).decode("ascii")


@cache
def _version() -> str:
    try:
        return metadata.version("memwarden")
    except metadata.PackageNotFoundError:
        return "(development)"


class _Page:
    """Collects the hover data of every plot while the sections are rendered."""

    def __init__(self) -> None:
        self.plots: dict[str, dict[str, Any]] = {}

    def figure(self, plot_id: str, svg: Markup, hover: dict[str, Any]) -> Markup:
        self.plots[plot_id] = hover
        return html('<div class="mw-figure" data-plot="{id}">{svg}'
                    '<div class="mw-tip" role="status" hidden></div></div>', id=plot_id, svg=svg)

    def plot(self, plot: Plot) -> Markup:
        svg, hover = plot_svg(plot)
        return self.figure(plot.id, svg, hover)

    def document(self, title: str, body: Markup, body_class: str) -> str:
        css, js = _asset("report.css"), _asset("report.js")
        csp = (f"default-src 'none'; style-src 'sha256-{_sha256(css)}'; "
               f"script-src 'sha256-{_sha256(js)}'; img-src data:; base-uri 'none'; "
               f"form-action 'none'")
        # Our own literals and base64 digests: nothing to escape.
        return html(_PAGE, csp=Markup(csp), version=_version(), title=title, css=Markup(css),
                    body_class=body_class, body=body,
                    data=script_json({"plots": self.plots}), js=Markup(js))


def _tag(text: str, tone: Tone | None) -> Markup:
    if tone is None:
        return html('<span class="mw-tag">{t}</span>', t=text)
    return html('<span class="mw-tag mw-tone-{tone}">{t}</span>', tone=tone, t=text)


# -- sections: each returns its body; the page decides the headings ------------------------


def _verdict(view: ReportView, level: int, _page: _Page) -> Markup:
    stats = join(html('<div><dt>{label}</dt><dd>{text}</dd></div>', label=s.label, text=s.text)
                 for s in view.stats)
    inputs = ", ".join(f"{s.text} {s.label}" for s in view.inputs)
    warning = html('<p class="mw-warning">{w}</p>', w=view.input_warning) \
        if view.input_warning else Markup("")
    return html(
        '<div class="mw-verdict mw-tone-{tone}"><p class="mw-kicker">Verdict</p>'
        '<h{n} class="mw-headline">{headline}</h{n}><p class="mw-reason">{reason}</p>'
        '<dl class="mw-stats">{stats}</dl><p class="mw-inputs">Input: {inputs}.</p>{warning}'
        '</div>', tone=view.verdict.tone, n=level, headline=view.verdict.headline,
        reason=view.verdict.reason, stats=stats, inputs=inputs, warning=warning)


def _actions(view: ReportView, _level: int, _page: _Page) -> Markup:
    if view.actions is None:
        return Markup('<p class="mw-empty">No protective action was logged.</p>')
    return actions_body(view.actions)


def _suspects(view: ReportView, _level: int, _page: _Page) -> Markup:
    if not view.suspects:
        return Markup('<p class="mw-empty">No suspects: nothing grew beyond the noise '
                      'thresholds.</p>')
    rows = join(html(
        '<tr class="mw-main-row"><td class="mw-num">{rank}</td>'
        '<td><div class="mw-small">{kind}</div><span class="mw-name">{name}</span></td>'
        '<td class="mw-num">{per}</td><td class="mw-num">{size}</td>'
        '<td class="mw-conf-cell">{bar} {conf}</td></tr>'
        '<tr class="mw-sub-row"><td></td><td colspan="4" class="mw-evidence">{evidence}</td></tr>',
        rank=s.rank, kind=s.kind_label, name=s.name, per=s.per_request_text, size=s.bytes_text,
        bar=confidence_svg(s.confidence), conf=s.confidence_text, evidence=s.evidence)
        for s in view.suspects)
    return html('<div class="mw-scroll"><table class="mw-table mw-suspects"><thead><tr>'
                '<th class="mw-num">#</th><th>Suspect</th>'
                '<th class="mw-num">Growth</th><th class="mw-num">Memory</th>'
                '<th>Confidence</th></tr></thead><tbody>{rows}</tbody></table></div>', rows=rows)


def _deaths(view: ReportView, _level: int, _page: _Page) -> Markup:
    if view.deaths is None:
        return Markup('<p class="mw-empty">No worker died with a request in flight.</p>')
    return deaths_body(view.deaths)


def _workers(view: ReportView, _level: int, _page: _Page) -> Markup:
    if not view.workers:
        return Markup('<p class="mw-empty">No request lines from any worker.</p>')
    rows = join(html(
        '<tr class="mw-main-row"><td><a href="#{key}">{label}</a> {tag}'
        '<div class="mw-small mw-nowrap">{requests} requests ({seq})</div></td>'
        '<td class="mw-num">{start} to {end}<div class="mw-small">{growth}</div></td>'
        '<td class="mw-num">{slope}<div class="mw-small">{blocks} blocks</div></td>'
        '<td>{ended}</td></tr>'
        '<tr class="mw-sub-row"><td colspan="4" class="mw-evidence">{reason}</td></tr>',
        key=w.key, label=w.label, seq=w.seq_text, requests=f"{w.requests:,}",
        start=w.rss_start_text, end=w.rss_end_text, growth=w.growth_text, slope=w.slope_text,
        blocks=w.blocks_text, ended=w.ended_by, tag=_tag(w.verdict_label, w.tone),
        reason=w.reason) for w in view.workers)
    orphans = join(html('<li>{e}</li>', e=e) for e in view.orphan_events)
    note = html('<p class="mw-note">Recycle or kill lines for workers with no request lines:'
                '</p><ul class="mw-note">{orphans}</ul>', orphans=orphans) \
        if view.orphan_events else Markup("")
    if view.other_lives is not None:
        note = html('{note}<p class="mw-note">{other}</p>', note=note, other=view.other_lives)
    return html('<div class="mw-scroll"><table class="mw-table mw-workers"><thead><tr>'
                '<th>Worker and verdict</th>'
                '<th class="mw-num">RSS first to last</th><th class="mw-num">Per request</th>'
                '<th>Ended by</th></tr></thead><tbody>{rows}</tbody></table>'
                '</div>{note}', rows=rows, note=note)


# Line style and words tell the marks apart, not colour alone.
_DONE_KEY = Markup('<span class="mw-legend-note"><span class="mw-vswatch mw-done-swatch">'
                   '</span>recycle or kill (dashed)</span>')
_WOULD_KEY = Markup('<span class="mw-legend-note"><span class="mw-vswatch mw-would-swatch">'
                    '</span>would recycle: dry-run, not done (dotted)</span>')


def _life(life: LifeView, level: int, page: _Page) -> Markup:
    worker = life.worker
    parts = [html('<h{n} class="mw-life-title">{label} {tag}</h{n}>'
                  '<p class="mw-meta">{requests} requests ({seq}); RSS {start} to {end}</p>',
                  n=level, label=worker.label, tag=_tag(worker.verdict_label, worker.tone),
                  requests=f"{worker.requests:,}", seq=worker.seq_text,
                  start=worker.rss_start_text, end=worker.rss_end_text)]
    if life.memory is not None:
        keys = join(html('<button type="button" class="mw-key" data-series="{i}" '
                         'aria-pressed="true"><span class="mw-swatch mw-c{i}"></span>{label} '
                         '<span class="mw-muted">({side} axis)</span></button>', i=i,
                         label=s.label, side=s.axis) for i, s in enumerate(life.memory.series))
        marks = []
        if any(not m.would for m in life.memory.markers):
            marks.append(_DONE_KEY)
        if any(m.would for m in life.memory.markers):
            marks.append(_WOULD_KEY)
        parts.append(html('<div class="mw-plotblock"><div class="mw-legend">{keys}'
                          '<span class="mw-legend-note"><span class="mw-swatch mw-band-swatch">'
                          '</span>warm-up</span>{marks}</div>{figure}</div>', keys=keys,
                          marks=join(marks), figure=page.plot(life.memory)))
    endings = life.endings or ("No recycle or kill of this worker in the log.",)
    parts.append(join(html('<p class="mw-ending">{e}</p>', e=e) for e in endings))
    parts.extend(html('<p class="mw-ending mw-would-ending">{w}</p>', w=w) for w in life.would)
    parts.extend(html('<p class="mw-note">{n}</p>', n=n) for n in life.notes)
    if life.census:
        cells = join(html(
            '<figure class="mw-multiple{hot}"><figcaption><span class="mw-name">{kind}</span>'
            ' {tag}<span class="mw-summary">{summary}</span></figcaption>{figure}</figure>',
            hot=" mw-hot" if plot.emphasis else "", kind=plot.title,
            tag=_tag("suspect", "bad") if plot.emphasis else Markup(""),
            summary=plot.summary, figure=page.plot(plot)) for plot in life.census)
        omitted = html('<p class="mw-note">{n} more census kinds are not plotted.</p>',
                       n=life.census_omitted) if life.census_omitted else Markup("")
        parts.append(html('<h{n} class="mw-census-title">Census: counts against request number'
                          '</h{n}><div class="mw-multiples">{cells}</div>{omitted}',
                          n=level + 1, cells=cells, omitted=omitted))
    return html('<section class="mw-life" id="{key}" data-life="{key}">{parts}</section>',
                key=life.key, parts=join(parts))


_MEMORY_HELP = Markup(
    '<p class="mw-help">Memory against the request number within each worker life: RSS '
    '(solid line, left axis) and allocated blocks since the life\'s first request (dashed '
    'line, right axis). The shaded start is warm-up, left out of every trend; dashed vertical '
    'lines mark recycles and kills, dotted ones what a dry-run would have recycled. Hover or '
    'focus a plot for exact values; the buttons above a plot hide or show a line.</p>')


def _memory(view: ReportView, level: int, page: _Page) -> Markup:
    if not view.lives:
        return Markup('<p class="mw-empty">No worker lives to plot.</p>')
    tabs = [html('<button type="button" class="mw-tab" role="tab" data-life="{key}" '
                 'aria-selected="{selected}">{label} {tag}</button>', key=life.key,
                 selected="true" if life.key == view.default_life else "false",
                 label=life.worker.label, tag=_tag(life.worker.verdict_label, life.worker.tone))
            for life in view.lives]
    if len(view.lives) > 1:
        tabs.append(Markup('<button type="button" class="mw-tab" role="tab" data-life="all" '
                           'aria-selected="false">all lives</button>'))
    return html('<div class="mw-lives" data-default="{default}">'
                '<div class="mw-tabs" role="tablist" aria-label="Worker lives">{tabs}</div>'
                '{lives}</div>', default=view.default_life or "",
                tabs=join(tabs), lives=join(_life(life, level, page) for life in view.lives))


def _routes(view: ReportView, _level: int, page: _Page) -> Markup:
    if not view.routes:
        return Markup('<p class="mw-empty">No routes.</p>')
    rows = join(html(
        '<tr class="{cls}"><td class="mw-name">{route}{tag}</td><td class="mw-num">{calls}</td>'
        '<td class="mw-num">{failed}</td><td class="mw-num">{rss}'
        '<div class="mw-small">median {median}</div></td><td class="mw-num">{blocks}</td>'
        '<td class="mw-num">{ms}</td></tr>', cls="mw-hot" if r.suspect else "",
        route=r.route, tag=_tag("suspect", "bad") if r.suspect else Markup(""),
        calls=f"{r.calls:,}", failed=f"{r.failed:,}", rss=r.rss_text, median=r.median_rss_text,
        blocks=r.blocks_text, ms=r.ms_text) for r in view.routes)
    omitted = html('<p class="mw-note">{n} quieter routes are left out (see report.json).</p>',
                   n=view.routes_omitted) if view.routes_omitted else Markup("")
    chart = Markup("")
    if view.route_chart is not None:
        svg, hover = bars_svg(view.route_chart)
        chart = html('<div class="mw-plotblock">{figure}</div>',
                     figure=page.figure(view.route_chart.id, svg, hover))
    return html('<div class="mw-scroll"><table class="mw-table mw-routes"><thead><tr>'
                '<th>Route</th><th class="mw-num">Calls</th><th class="mw-num">Failed</th>'
                '<th class="mw-num">RSS/call</th>'
                '<th class="mw-num">Blocks/call</th><th class="mw-num">ms/call</th>'
                '</tr></thead><tbody>{rows}</tbody></table></div>{omitted}{chart}',
                rows=rows, omitted=omitted, chart=chart)


_Section = Callable[[ReportView, int, _Page], Markup]
_NO_HELP = Markup("")
_ACTIONS_HELP = Markup(
    '<p class="mw-help">What memwarden did to protect the service (mode on) and what it '
    'decided but did not do (dry-run, logged as <code>would_...</code> with the same figures), '
    'read from its recycle, shed, orphan and pool lines. Dry-run recycles are also marked on '
    'the memory plots below.</p>')
# (id, heading, help shown once under the heading, body); on a single report
# the verdict's banner carries its own heading.
SECTIONS: tuple[tuple[str, str, Markup, _Section], ...] = (
    ("verdict", "Verdict", _NO_HELP, _verdict),
    ("actions", "Protective actions", _ACTIONS_HELP, _actions),
    ("suspects", "Suspects, most likely first", _NO_HELP, _suspects),
    ("deaths", "Deaths in flight", DEATHS_HELP, _deaths),
    ("workers", "Worker lives", _NO_HELP, _workers),
    ("memory", "Memory over each worker life", _MEMORY_HELP, _memory),
    ("routes", "Cost per route (all requests)", _NO_HELP, _routes),
)


def _shown(section_id: str, view: ReportView) -> bool:
    """Sections that only appear when there is something in them."""
    if section_id == "deaths":
        return view.deaths is not None
    return section_id != "actions" or view.actions is not None


def _footer() -> Markup:
    return html('<footer class="mw-footer">memwarden {version}. Allocated blocks are '
                'sys.getallocatedblocks() counts; RSS is the resident set size of the worker '
                'process. Sizes in binary units (1 MiB = 1,048,576 bytes).</footer>',
                version=_version())


def render_view(view: ReportView) -> str:
    """The page of one report's view model."""
    page = _Page()
    sections = []
    for section_id, heading, help_text, body in SECTIONS:
        if section_id == "verdict":
            sections.append(body(view, 2, page))
            continue
        if not _shown(section_id, view):
            continue
        sections.append(html('<section class="mw-section" id="{id}"><h2>{heading}</h2>'
                             '{help}{body}</section>', id=f"{view.id_prefix}-{section_id}",
                             heading=heading, help=help_text, body=body(view, 3, page)))
    body_html = html('<main class="mw-page"><header class="mw-header"><h1>{title}</h1>'
                     '</header>{sections}{footer}</main>', title=view.title,
                     sections=join(sections), footer=_footer())
    return page.document(view.title, body_html, "mw-single")


def render_comparison_view(view: ComparisonView) -> str:
    """Several reports: a comparison table, then each section with the entries side by side."""
    page = _Page()
    head = join(html('<th scope="col">{label}</th>', label=e.label) for e in view.entries)
    rows = join(html('<tr><th scope="row">{label}</th>{cells}</tr>', label=row.label,
                     cells=join(html('<td>{c}</td>', c=_tag(cell, row.tones[i]) if row.tones
                                     else cell) for i, cell in enumerate(row.cells)))
                for row in view.rows)
    sections = []
    for section_id, heading, help_text, body in SECTIONS:
        if not any(_shown(section_id, e.report) for e in view.entries):
            continue
        cells = join(html('<div class="mw-col"><p class="mw-entry-label">{label}</p>{body}</div>',
                          label=e.label, body=body(e.report, 3, page)) for e in view.entries)
        sections.append(html('<section class="mw-section mw-row" id="cmp-{id}"><h2>{heading}'
                             '</h2>{help}<div class="mw-cols">{cells}</div></section>',
                             id=section_id, heading=heading, help=help_text, cells=cells))
    body_html = html(
        '<main class="mw-page mw-wide"><header class="mw-header"><h1>{title}</h1>'
        '<p class="mw-headline-text">{headline}</p><div class="mw-scroll">'
        '<table class="mw-table mw-compare"><thead><tr><th></th>{head}</tr></thead>'
        '<tbody>{rows}</tbody></table></div></header>{sections}{footer}</main>',
        title=view.title, headline=view.headline, head=head, rows=rows,
        sections=join(sections), footer=_footer())
    return page.document(view.title, body_html, "mw-comparison")


def render_html(report: Report, title: str | None = None) -> str:
    """One report as a self-contained HTML page (``memwarden analyze --html``)."""
    return render_view(build_view(report, title=title))


def render_comparison(entries: Sequence[tuple[str, Report]], title: str | None = None) -> str:
    """Several labelled reports side by side, e.g. a service "as found" and "hardened"."""
    return render_comparison_view(build_comparison_view(entries, title=title))

