"""The protective actions in the view model and the page: counts, timeline, dry-run marks."""

from __future__ import annotations

import re

import pytest

from memwarden.find.analysis import Report, analyze_lines
from memwarden.find.report import build_comparison_view, build_view, render_html
from memwarden.find.report.actions_view import MAX_TIMELINE_ROWS
from memwarden.find.report.plots import MAX_MARKER_LABEL, MAX_MARKERS, MAX_WOULD_LINES
from memwarden.find.report.view_model import ReportView

from .hostile import EVIL, hostile_report
from .logs import dry_run_lines, dry_run_report, hardened_report, realistic_report


@pytest.fixture(scope="module")
def dry_run() -> Report:
    return dry_run_report()


@pytest.fixture(scope="module")
def view(dry_run: Report) -> ReportView:
    return build_view(dry_run, title="dry-run")


def test_dry_run_counts_read_as_would_have_and_nothing_done(view: ReportView) -> None:
    actions = view.actions
    assert actions is not None
    assert (actions.mode, actions.mode_label) == ("dry-run", "dry-run")
    assert "did none of it" in actions.mode_text
    assert actions.summary == (
        "would recycle 1 worker (3 decisions: hard_limit 1, idle 1, soft_limit 1); "
        "would kill 1 worker stuck over the hard limit; would shed 12 requests; "
        "would refuse 2 pool acquires (browser 2)",)
    rows = {row.label: row for row in actions.rows}
    assert list(rows) == ["Recycle a worker", "Kill a worker stuck over the hard limit",
                          "Shed a request (503)", "Refuse a pool acquire"]
    assert all(row.done is None for row in actions.rows)
    recycle = rows["Recycle a worker"].would
    assert recycle is not None
    assert (recycle.message, recycle.text) == ("would_recycle", "3")
    assert recycle.detail == "1 worker; by reason: hard_limit 1, idle 1, soft_limit 1"
    pool = rows["Refuse a pool acquire"].would
    assert pool is not None and pool.detail == "1 worker; by pool: browser 2"
    assert [(r.label, r.done.text if r.done else None) for r in actions.related] == [
        ("Shedding started", "1"), ("Shedding stopped", "1")]


def test_the_timeline_folds_a_burst_of_alike_lines_into_one_row(view: ReportView) -> None:
    actions = view.actions
    assert actions is not None
    assert [(e.pid, e.message, e.lines) for e in actions.events] == [
        (4121, "would_recycle", 1), (4122, "would_pool_refuse", 2), (4121, "would_recycle", 1),
        (4121, "shedding_started", 1), (4121, "would_shed", 12),
        (4121, "shedding_stopped", 1), (4121, "would_recycle", 1),
        (4121, "would_hard_limit_kill", 1)]
    assert actions.events_more == 0
    first = actions.events[0]
    assert first.would and first.time == "2026-11-28T01:04:10.500Z"
    assert first.detail == ("reason idle; footprint 82.2 MiB; limit 82.0 MiB; "
                            "requests 250")
    assert actions.events[1].detail == ("pool browser; size 4; max size 4; in use 4; idle 0; "
                                        "waiting 2; timeout 5 s")
    assert not actions.events[3].would


def test_the_timeline_is_capped_and_says_how_many_lines_it_leaves_out() -> None:
    lines = dry_run_lines()
    pool = next(line for line in lines if "would_pool_refuse" in line)
    request = next(line for line in lines if '"message": "request"' in line)
    # Refusals of two workers, alternating: no two alike in a row.
    flip = [pool, pool.replace('"pid": 4122', '"pid": 4123')] * 40
    actions = build_view(analyze_lines([request, *flip])).actions
    assert actions is not None
    assert len(actions.events) == MAX_TIMELINE_ROWS
    assert actions.events_more == 80 - MAX_TIMELINE_ROWS


def test_dry_run_decisions_are_marked_apart_on_the_memory_plot(view: ReportView) -> None:
    life = view.lives[0]
    plot = life.memory
    assert plot is not None and life.worker.pid == 4121
    assert [(m.x, m.label, m.would) for m in plot.markers] == [
        (250, "would recycle (idle)", True), (480, "would recycle (soft_limit)", True),
        (760, "would recycle (hard_limit)", True), (800, "would kill (hard_limit)", True)]
    assert plot.markers[0].detail == (
        "Would recycle (idle) after request 250, footprint 82.2 MiB of a 82.0 MiB limit, "
        "at 2026-11-28T01:04:10.500Z (dry-run: logged, not done)")
    assert life.would == tuple(m.detail for m in plot.markers)
    assert life.endings == ()  # nothing ended it
    clean = view.lives[1]
    assert clean.memory is not None and clean.memory.markers == () and clean.would == ()


def test_a_plot_marks_a_bounded_number_of_decisions_and_says_so() -> None:
    lines = dry_run_lines()
    would = next(line for line in lines if '"would_recycle"' in line)
    many = [would.replace('"reason": "idle"', f'"reason": "r{i}"') for i in range(30)]
    life = build_view(analyze_lines(lines[:400] + many)).lives[0]
    assert life.memory is not None and len(life.memory.markers) == MAX_MARKERS
    assert len(life.would) == MAX_WOULD_LINES
    assert f"Marked the first {MAX_MARKERS} of 30 " in " ".join(life.notes)
    assert f"Listed the first {MAX_WOULD_LINES} of 30 " in " ".join(life.notes)


def test_done_recycles_are_counted_and_marked_as_before() -> None:
    view = build_view(realistic_report())
    actions = view.actions
    assert actions is not None and actions.mode == "on"
    assert actions.summary == ("recycled 1 worker (soft_limit 1)",)
    (row,) = actions.rows
    assert row.would is None and row.done is not None and row.done.message == "recycle"
    plot = view.lives[0].memory
    assert plot is not None and [m.would for m in plot.markers] == [False]


def test_no_action_lines_no_section() -> None:
    view = build_view(hardened_report())
    assert view.actions is None
    page = render_html(hardened_report())
    assert 'id="r-actions"' not in page and 'class="mw-marker mw-would"' not in page


def test_the_page_puts_actions_after_the_verdict_with_a_worded_legend(dry_run: Report) -> None:
    page = render_html(dry_run)
    assert page.index('class="mw-verdict') < page.index('id="r-actions"') \
        < page.index('id="r-suspects"')
    section = page[page.index('id="r-actions"'):page.index('id="r-suspects"')]
    assert "<h2>Protective actions</h2>" in section
    assert section.count("<tr>") == 1 + 4 + 1 + 8  # the two heads, the actions, the timeline
    assert section.count('mw-would-tag">dry-run<') == 1 + 6  # the mode, the would rows
    assert page.count('<g class="mw-marker mw-would">') == 4
    assert "would recycle: dry-run, not done (dotted)" in page
    assert "recycle or kill (dashed)" not in page  # no such mark on this page
    assert "(dry-run: logged, not done)</p>" in page


def test_comparison_says_what_each_did_or_would_have_done(dry_run: Report) -> None:
    view = build_comparison_view([("step 3", realistic_report()), ("step 2", dry_run),
                                  ("hardened", hardened_report())])
    rows = {row.label: row.cells for row in view.rows}
    assert rows["Protective actions"] == (
        "on: recycled 1 worker (soft_limit 1)",
        "dry-run: would recycle 1 worker (3 decisions: hard_limit 1, idle 1, soft_limit 1); "
        "would kill 1 worker stuck over the hard limit; would shed 12 requests; "
        "would refuse 2 pool acquires (browser 2)",
        "none logged")
    assert "Protective actions" not in {row.label for row in build_comparison_view(
        [("a", hardened_report())]).rows}


def test_hostile_action_strings_are_text_everywhere() -> None:
    view = build_view(hostile_report())
    actions = view.actions
    assert actions is not None
    assert actions.events[0].time == EVIL and EVIL in actions.events[0].detail
    plot = view.lives[0].memory
    assert plot is not None
    would = [m for m in plot.markers if m.would]
    assert len(would) == 1 and len(would[0].label) == MAX_MARKER_LABEL
    assert EVIL in would[0].detail
    page = render_html(hostile_report())
    assert "<img" not in page and page.count("<script") == 2
    assert not re.search(r"<script>window", page)
