"""The HTML of the "Deaths in flight" section (``deaths_view``)."""

from __future__ import annotations

from memwarden.find.report.deaths_view import DeathsView
from memwarden.find.report.markup import Markup, html, join

__all__ = ["DEATHS_HELP", "deaths_body"]

DEATHS_HELP = Markup(
    '<p class="mw-help">Workers that died (OOM kill, gunicorn\'s timeout, a signal) while a '
    'request ran, from the master\'s <code>death_in_flight</code> lines. The request never '
    'wrote its own line, so only these show which route was running: a route that keeps '
    'dying mid-request is a suspect even when no memory plot shows a slope.</p>')


def deaths_body(view: DeathsView) -> Markup:
    routes = join(html('<tr><td>{route}</td><td class="mw-num">{count}</td></tr>',
                       route=route, count=f"{count:,}") for route, count in view.routes)
    more_routes = html('<p class="mw-note">... and {n} more routes.</p>',
                       n=f"{view.routes_omitted:,}") if view.routes_omitted else Markup("")
    recent = join(html(
        '<tr><td class="mw-nowrap">{when}</td><td class="mw-num">{pid}</td><td>{route}</td>'
        '<td>{cause}</td><td class="mw-num">{seconds}</td><td class="mw-num">{footprint}</td>'
        '</tr>', when=d.when, pid=str(d.pid), route=d.route, cause=d.cause, seconds=d.seconds,
        footprint=d.footprint) for d in view.recent)
    more_recent = html('<p class="mw-note">The newest {shown} of them; {n} earlier ones are '
                       'counted above.</p>', shown=str(len(view.recent)),
                       n=f"{view.recent_omitted:,}") if view.recent_omitted else Markup("")
    return html(
        '<p>{summary}</p><div class="mw-scroll"><table class="mw-table mw-deaths-routes">'
        '<thead><tr><th>Route running</th><th class="mw-num">Deaths</th></tr></thead>'
        '<tbody>{routes}</tbody></table></div>{more_routes}'
        '<div class="mw-scroll"><table class="mw-table mw-deaths"><thead><tr><th>When</th>'
        '<th class="mw-num">PID</th><th>Route</th><th>Cause</th>'
        '<th class="mw-num">Running for</th><th class="mw-num">Footprint</th></tr></thead>'
        '<tbody>{recent}</tbody></table></div>{more_recent}',
        summary=view.summary, routes=routes, more_routes=more_routes, recent=recent,
        more_recent=more_recent)
