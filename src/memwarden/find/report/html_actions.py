"""The HTML of the protective-actions section: the mode, the table of what was
done and what dry-run would have done, and the timeline of action lines."""

from __future__ import annotations

from memwarden.find.report.markup import Markup, html, join
from memwarden.find.report.view_model import ActionCell, ActionsView

__all__ = ["actions_body"]

_WOULD_TAG = Markup('<span class="mw-tag mw-would-tag">dry-run</span>')


def _action_cell(cell: ActionCell | None) -> Markup:
    if cell is None:
        return Markup('<td class="mw-muted">-</td>')
    return html('<td><span class="mw-count">{text}</span> <span class="mw-name mw-small">'
                '{message}</span><div class="mw-small">{detail}</div></td>',
                text=cell.text, message=cell.message, detail=cell.detail)


def actions_body(actions: ActionsView) -> Markup:
    parts = [html('<p class="mw-actions-mode">Mode: <span class="mw-tag{would}">{mode}</span> '
                  '{text}</p>', would=" mw-would-tag" if actions.mode == "dry-run" else "",
                  mode=actions.mode_label, text=actions.mode_text)]
    parts.extend(html('<p class="mw-actions-summary">{line}</p>', line=line)
                 for line in actions.summary)
    if actions.rows:
        rows = join(html('<tr><td>{label}</td>{done}{would}</tr>', label=row.label,
                         done=_action_cell(row.done), would=_action_cell(row.would))
                    for row in actions.rows)
        parts.append(html('<div class="mw-scroll"><table class="mw-table mw-actions"><thead>'
                          '<tr><th>Action</th><th>Done (mode on)</th>'
                          '<th>Would have (dry-run, not done)</th></tr></thead>'
                          '<tbody>{rows}</tbody></table></div>', rows=rows))
    if actions.related:
        items = join(html('<li>{label} (<span class="mw-name">{message}</span>): {text}'
                          '{detail}</li>', label=row.label, message=row.done.message,
                          text=row.done.text,
                          detail=f"; {row.done.detail}" if row.done.detail else "")
                     for row in actions.related if row.done is not None)
        parts.append(html('<p class="mw-note">Also logged:</p><ul class="mw-note">{items}</ul>',
                          items=items))
    if actions.events:
        rows = join(html('<tr><td class="mw-small">{time}</td>'
                         '<td class="mw-num">{pid}</td><td><span class="mw-name">{message}'
                         '</span>{tag}{lines}</td><td class="mw-small">{detail}</td></tr>',
                         time=e.time, pid=e.pid, message=e.message,
                         tag=_WOULD_TAG if e.would else Markup(""),
                         lines=html('<div class="mw-small">{n} lines in a row</div>',
                                    n=f"{e.lines:,}") if e.lines > 1 else Markup(""),
                         detail=e.detail)
                    for e in actions.events)
        more = html(' {n} more action lines are counted above but not listed; report.json '
                    'keeps the first of each kind.', n=f"{actions.events_more:,}") \
            if actions.events_more else Markup("")
        parts.append(html('<h4>Timeline</h4><p class="mw-note">The first action lines, in log '
                          'order; lines alike in a row are one row, with the figures of the '
                          'first.{more}</p><div class="mw-scroll"><table class="mw-table '
                          'mw-timeline"><thead><tr><th>Logged at</th><th class="mw-num">pid'
                          '</th><th>Line</th><th>Figures</th></tr></thead><tbody>{rows}'
                          '</tbody></table></div>', more=more, rows=rows))
    return join(parts)
