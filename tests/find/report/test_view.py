"""The view model: words, units, ordering and thinned series, checked without any HTML."""

from __future__ import annotations

import dataclasses
import json

import pytest

from find.analysis.synthetic import MIB, Route, SyntheticWorker, linear_leak, to_lines
from memwarden.find.analysis import AnalysisConfig, Report, Suspect, analyze_lines
from memwarden.find.analysis.units import format_count
from memwarden.find.report import build_comparison_view, build_view
from memwarden.find.report.plots import CENSUS_POINTS, MEMORY_POINTS, MIN_BLOCKS_SPAN, MIN_RSS_SPAN
from memwarden.find.report.view import FLAG_CONFIDENCE, MAX_ROUTE_ROWS
from memwarden.find.report.view_model import Plot, ReportView
from memwarden.find.report.words import exact_bytes

from .logs import hardened_report, realistic_report


@pytest.fixture(scope="module")
def report() -> Report:
    return realistic_report()


@pytest.fixture(scope="module")
def view(report: Report) -> ReportView:
    return build_view(report, title="agent service")


def _all_plots(view: ReportView) -> list[Plot]:
    return [plot for life in view.lives
            for plot in ((life.memory,) if life.memory else ()) + life.census]


def test_verdict_reason_and_counts_come_first_in_plain_words(view: ReportView,
                                                             report: Report) -> None:
    assert view.title == "agent service"
    assert (view.verdict.verdict, view.verdict.headline, view.verdict.tone) == (
        "leak", "Leak found", "bad")
    assert view.verdict.reason == report.reason
    assert [(s.label, s.text) for s in view.stats] == [
        ("Requests", "1,600"), ("Failed (status 500 and above)", "0"), ("Worker lives", "3"),
        ("Suspects", str(len(report.suspects)))]
    inputs = {s.label: s.value for s in view.inputs}
    assert inputs["lines read"] == 1601
    assert inputs["request lines"] == 1600
    assert inputs["recycle and kill lines"] == 1
    assert "too long" not in inputs  # zero counts beyond the usual four are left out
    assert view.input_warning is None


def test_suspects_keep_the_analysis_ranking_with_units_per_kind(view: ReportView,
                                                               report: Report) -> None:
    assert [(s.rank, s.kind, s.name) for s in view.suspects] == [
        (i, s.kind, s.name) for i, s in enumerate(report.suspects, start=1)]
    route = view.suspects[0]
    assert (route.kind, route.name) == ("route", "POST /chat")
    assert route.per_request_text.endswith(" blocks/call")
    assert route.bytes_text.endswith(" KiB/call") and route.bytes_text.startswith("+")
    assert route.confidence_text == "1.00"
    assert route.census_kind is None
    children = next(s for s in view.suspects if s.name == "children")
    assert children.per_request_text.endswith("/request")
    assert children.bytes_text.endswith(" MiB/request")  # the browser's PSS, in MiB
    assert children.census_kind == "children"
    assert all(0.0 <= s.confidence <= 1.0 for s in view.suspects)
    assert all(s.evidence for s in view.suspects)


def test_workers_read_in_mib_and_link_to_their_life(view: ReportView) -> None:
    first, clean, second = view.workers
    assert (first.label, first.verdict_label, first.ended_by) == (
        "pid 4121", "leak", "recycled (soft_limit)")
    assert (clean.label, clean.verdict_label, clean.ended_by) == ("pid 4122", "no leak", "-")
    assert (second.label, second.life) == ("pid 4121, life 2", 2)
    assert first.rss_start_text == "80.0 MiB"
    assert first.rss_end_text.endswith(" MiB")
    assert first.growth_text.startswith("+") and first.growth_text.endswith(" MiB")
    assert first.slope_text.endswith(" KiB")
    assert first.seq_text == "1 to 600"
    assert [w.key for w in view.workers] == [life.key for life in view.lives]
    assert len({w.key for w in view.workers}) == 3


def test_the_first_leaking_life_is_shown_first(view: ReportView) -> None:
    assert view.default_life == view.lives[0].key
    clean_first = build_view(hardened_report())
    assert clean_first.default_life == clean_first.lives[0].key


def test_memory_plot_has_rss_left_blocks_right_warmup_and_the_recycle(view: ReportView,
                                                                     report: Report) -> None:
    life = view.lives[0]
    plot = life.memory
    assert plot is not None
    assert [(s.key, s.axis) for s in plot.series] == [("rss", "left"), ("blocks", "right")]
    assert plot.y_axis.kind == "bytes" and plot.y2_axis is not None
    assert all(t.text.endswith(" MiB") for t in plot.y_axis.ticks)
    assert plot.x_axis.lo == 1 and plot.x_axis.hi == 600
    warmup_end = report.series[0].warmup_end_seq
    assert [(b.start, b.end, b.label) for b in plot.bands] == [(1, warmup_end, "warm-up")]
    assert [(m.x, m.label) for m in plot.markers] == [(600, "recycled (soft_limit)")]
    assert "footprint 200.0 MiB of a 256.0 MiB limit" in plot.markers[0].detail
    assert life.endings == (plot.markers[0].detail,)
    for series in plot.series:
        axis = plot.axis_of(series)
        assert all(axis.lo <= y <= axis.hi for _x, y in series.points if y is not None)
    assert view.lives[1].memory is not None and view.lives[1].memory.markers == ()
    assert view.lives[1].endings == ()


def test_hover_rows_carry_exact_values_parallel_to_the_series(view: ReportView,
                                                             report: Report) -> None:
    plot = view.lives[0].memory
    assert plot is not None
    first = report.series[0].points[0]
    row = plot.hover[0]
    assert row.x == first.seq == 1
    assert row.lines[0] == "Request 1"
    assert row.lines[1] == f"RSS {exact_bytes(first.rss_bytes or 0)}"
    assert row.lines[1] == "RSS 80.0 MiB (83,886,080 bytes)"
    assert row.lines[2] == "Blocks 0 since the first request"
    assert row.values == (first.rss_bytes, first.blocks)
    assert [r.x for r in plot.hover] == [x for x, _y in plot.series[0].points]


def test_census_plots_put_suspects_first_then_the_usual_kinds(view: ReportView) -> None:
    life = view.lives[0]
    titles = [plot.title for plot in life.census]
    suspects = [s.census_kind for s in view.suspects if s.census_kind]
    assert titles[:len(suspects)] == suspects
    assert titles[len(suspects):] == ["threads", "children_pss_bytes", "asyncio.tasks",
                                      "asyncio.loops", "sessions"]
    by_title = {plot.title: plot for plot in life.census}
    for suspect in view.suspects:
        if suspect.census_kind:
            flagged = suspect.confidence >= FLAG_CONFIDENCE
            assert by_title[suspect.census_kind].emphasis == flagged
    assert not by_title["threads"].emphasis
    pss = by_title["children_pss_bytes"]
    assert pss.y_axis.kind == "bytes"
    assert all(t.text.endswith(("GiB", "MiB", "KiB", " B")) for t in pss.y_axis.ticks)
    assert by_title["threads"].summary == "3 to 3 (0)"
    assert by_title["playwright.contexts"].summary.startswith("0 to ")
    contexts = by_title["playwright.contexts"]
    assert contexts.y_axis.lo == 0  # counts keep a zero floor
    assert contexts.hover[-1].lines[1].startswith("playwright.contexts ")
    # A life's census plots share its memory plot's request range.
    assert all((p.x_axis.lo, p.x_axis.hi) == (1, 600) for p in life.census)


def test_count_axes_step_in_whole_numbers(view: ReportView) -> None:
    for plot in _all_plots(view):
        for axis in (plot.y_axis, plot.y2_axis, plot.x_axis):
            if axis is not None and axis.kind != "bytes":
                steps = {round(b.value - a.value, 9) for a, b in zip(axis.ticks, axis.ticks[1:],
                                                                      strict=False)}
                assert all(step >= 1 and step == int(step) for step in steps), (plot.id, steps)


def test_plot_ids_are_unique_and_prefixed(view: ReportView) -> None:
    ids = [plot.id for plot in _all_plots(view)]
    assert view.route_chart is not None
    ids.append(view.route_chart.id)
    assert len(ids) == len(set(ids))
    assert all(i.startswith("r-") for i in ids)


def test_routes_busiest_first_with_units_and_the_suspect_marked(view: ReportView,
                                                               report: Report) -> None:
    assert [(r.route, r.suspect) for r in view.routes] == [("GET /items/{id}", False),
                                                          ("POST /chat", True)]
    items, chat = view.routes
    assert items.calls + chat.calls == 1600
    assert chat.rss_text.startswith("+") and chat.rss_text.endswith(" KiB")
    mean_blocks = report.routes[1].mean_blocks_delta
    assert mean_blocks is not None and mean_blocks > 100
    assert chat.blocks_text == format_count(mean_blocks)
    assert chat.ms_text.count(".") == 1
    chart = view.route_chart
    assert chart is not None
    assert chart.labels == ("GET /items/{id}", "POST /chat")
    assert [p.title for p in chart.panels] == ["blocks kept per call", "RSS growth per call",
                                               "ms per call"]
    blocks = chart.panels[0]
    assert blocks.values == (items.blocks_per_call, chat.blocks_per_call)
    # GET frees a fraction of a block per call: shown, but no negative half-axis for it.
    assert items.blocks_per_call is not None and -1 < items.blocks_per_call < 0
    assert blocks.texts[0] == items.blocks_text == format_count(items.blocks_per_call)
    assert blocks.axis.lo == 0 and blocks.axis.hi >= mean_blocks
    assert chart.emphasis == (False, True)
    assert chart.hover[1][0] == "POST /chat"


def test_long_lives_are_thinned_but_keep_their_ends_and_their_spike() -> None:
    worker = SyntheticWorker(pid=9, seed=4)
    records = worker.run(3000, linear_leak(2048))
    spike = records[1234]
    spike["rss_bytes"] += 64 * MIB  # one request's transient peak
    report = analyze_lines(to_lines(records), AnalysisConfig(max_plot_points=2000))
    assert len(report.series[0].points) > MEMORY_POINTS
    view = build_view(report)
    plot = view.lives[0].memory
    assert plot is not None
    rss = plot.series[0]
    assert len(rss.points) <= MEMORY_POINTS
    assert rss.source_points == len(report.series[0].points)
    assert rss.points[0][0] == 1 and rss.points[-1][0] == 3000
    xs = [x for x, _y in rss.points]
    assert xs == sorted(xs)
    source = report.series[0].points
    if any(p.seq == spike["seq"] for p in source):
        assert (spike["seq"], spike["rss_bytes"]) in rss.points
    assert max(y for _x, y in rss.points if y is not None) == max(
        p.rss_bytes for p in source if p.rss_bytes is not None)
    blocks = plot.series[1]
    assert max(y for _x, y in blocks.points if y is not None) == max(
        p.blocks for p in source if p.blocks is not None)
    assert any("Plotted" in note for note in view.lives[0].notes)


def test_census_series_are_thinned_too() -> None:
    worker = SyntheticWorker(pid=9, seed=5, census_every=1,
                             routes=(Route("GET", "/a", census_per_call={"fds": 1}),))
    report = analyze_lines(to_lines(worker.run(1000)))
    view = build_view(report)
    fds = next(p for p in view.lives[0].census if p.title == "fds")
    assert len(fds.series[0].points) <= CENSUS_POINTS
    assert fds.series[0].source_points > CENSUS_POINTS
    assert fds.series[0].points[-1][1] == max(y for _x, y in fds.series[0].points
                                              if y is not None)


def test_flat_noisy_heap_is_not_stretched_to_fill_the_plot() -> None:
    view = build_view(hardened_report())
    plot = view.lives[0].memory
    assert plot is not None and plot.y2_axis is not None
    assert plot.y2_axis.hi - plot.y2_axis.lo >= MIN_BLOCKS_SPAN
    assert plot.y_axis.hi - plot.y_axis.lo >= MIN_RSS_SPAN


def test_many_routes_are_capped_with_a_count_of_the_rest() -> None:
    routes = tuple(Route("GET", f"/r{i}", 1.0 + i / 100) for i in range(60))
    report = analyze_lines(to_lines(SyntheticWorker(seed=6, routes=routes).run(1200)))
    view = build_view(report)
    assert len(view.routes) == MAX_ROUTE_ROWS
    assert view.routes_omitted == 10
    calls = [r.calls for r in view.routes]
    assert calls == sorted(calls, reverse=True)
    assert view.route_chart is not None and len(view.route_chart.labels) == 12


def test_empty_and_unreadable_inputs_still_make_a_view() -> None:
    view = build_view(analyze_lines(["not json", '{"logger": "memwarden.request", '
                                     '"message": "request"}']))
    assert view.verdict.verdict == "inconclusive"
    assert view.lives == () and view.workers == () and view.suspects == ()
    assert view.default_life is None and view.route_chart is None
    assert view.footprint.peak_rss_text == "-"
    inputs = {s.label: s.value for s in view.inputs}
    assert (inputs["other lines skipped"], inputs["invalid records"]) == (1, 1)


def test_missing_measurements_read_as_dashes_not_zeros() -> None:
    line = {"logger": "memwarden.request", "message": "request", "pid": 1, "route": "/x",
            "census": {"fds": 3}}
    report = analyze_lines(json.dumps({**line, "seq": seq}) for seq in range(1, 40))
    view = build_view(report)
    worker = view.workers[0]
    assert (worker.rss_start_text, worker.slope_text, worker.blocks_text) == ("-", "-", "-")
    life = view.lives[0]
    assert life.memory is None
    assert [p.title for p in life.census] == ["fds"]
    assert any("No RSS" in note for note in life.notes)
    assert view.routes[0].rss_text == "-"


def test_comparison_headline_compares_verdicts_and_peak_rss() -> None:
    found, hardened = realistic_report(), hardened_report()
    view = build_comparison_view([("as found", found), ("hardened", hardened)], "demo")
    assert view.title == "demo"
    assert view.headline.startswith("as found: leak found; hardened: no leak found.")
    assert "Peak worker RSS" in view.headline and "lower)" in view.headline
    rows = {row.label: row for row in view.rows}
    assert rows["Verdict"].cells == ("Leak found", "No leak found")
    assert rows["Verdict"].tones == ("bad", "good")
    assert rows["Worker lives"].cells == ("3 (1 leaking)", "2 (0 leaking)")
    assert rows["Top suspect"].cells[0].startswith("route POST /chat (confidence ")
    assert rows["Top suspect"].cells[1] == "none"
    assert all(cell.endswith("MiB") for cell in rows["Peak worker RSS"].cells)
    first, second = (e.report for e in view.entries)
    assert (first.id_prefix, second.id_prefix) == ("e1", "e2")
    ids = [p.id for e in view.entries for p in _all_plots(e.report)]
    assert len(ids) == len(set(ids))
    assert first.lives[0].memory is not None and first.lives[0].memory.width < 800


def test_comparison_of_other_than_two_lists_each_verdict() -> None:
    found = realistic_report()
    view = build_comparison_view([("a", found), ("b", found), ("c", hardened_report())])
    assert view.headline == "a: leak found; b: leak found; c: no leak found."
    assert build_comparison_view([]).headline == "Nothing to compare."


def test_exact_bytes_is_human_and_exact() -> None:
    assert exact_bytes(512) == "512 bytes"
    assert exact_bytes(83_886_080) == "80.0 MiB (83,886,080 bytes)"
    assert exact_bytes(-1536) == "-1.5 KiB (-1,536 bytes)"


def test_only_likely_suspects_are_marked() -> None:
    """Every suspect's census plot comes first; only likely ones are marked red."""
    report = realistic_report()
    suspects = (Suspect("route", "POST /chat", 150.0, 10_240, 1.0, "strong"),
                Suspect("resource", "fds", 0.7, None, FLAG_CONFIDENCE, "strong"),
                Suspect("route", "GET /items/{id}", 1.0, 100, FLAG_CONFIDENCE / 2, "weak"),
                Suspect("resource", "threads", 0.1, None, FLAG_CONFIDENCE / 2, "weak"))
    view = build_view(dataclasses.replace(report, suspects=suspects))
    assert [r.suspect for r in view.routes] == [False, True]
    assert view.route_chart is not None and view.route_chart.emphasis == (False, True)
    census = view.lives[0].census
    assert [p.title for p in census[:2]] == ["fds", "threads"]
    assert [p.emphasis for p in census[:3]] == [True, False, False]
