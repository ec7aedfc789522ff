"""The page in headless Chromium: nothing injected runs, plots draw, hover, toggles, tabs."""

from __future__ import annotations

import itertools
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from memwarden.find.analysis import analyze_lines
from memwarden.find.report import render_comparison, render_html

from .hostile import EVIL, hostile_report
from .logs import (
    ATTRIBUTE_BREAK,
    SCRIPT_ROUTE,
    dry_run_report,
    hardened_report,
    hostile_lines,
    realistic_report,
)

REPORT_PNG = Path("/tmp/memwarden-report.png")
COMPARISON_PNG = Path("/tmp/memwarden-comparison.png")
DRY_RUN_PNG = Path("/tmp/memwarden-dry-run-report.png")
DRY_RUN_MEMORY_PNG = Path("/tmp/memwarden-dry-run-memory.png")


class Opened:
    """A page and the errors it reported (console errors, uncaught exceptions)."""

    def __init__(self, page: Any) -> None:
        self.page = page
        self.errors: list[str] = []
        page.on("console", lambda m: self.errors.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda exc: self.errors.append(str(exc)))


@pytest.fixture
def open_html(browser: Any, tmp_path: Path) -> Iterator[Any]:
    contexts: list[Any] = []

    def open_(html: str, name: str = "report.html", width: int = 1280,
              javascript: bool = True) -> Opened:
        path = tmp_path / name
        path.write_text(html, encoding="utf-8")
        context = browser.new_context(viewport={"width": width, "height": 900},
                                      java_script_enabled=javascript)
        contexts.append(context)
        opened = Opened(context.new_page())
        opened.page.goto(path.as_uri())
        return opened

    yield open_
    for context in contexts:
        context.close()


def _hover_middle(page: Any, svg: Any) -> None:
    svg.scroll_into_view_if_needed()
    box = svg.bounding_box()
    page.mouse.move(box["x"] + box["width"] * 0.5, box["y"] + box["height"] * 0.45)


def test_hostile_log_strings_stay_text(open_html: Any) -> None:
    """Route, method, census kind, recycle reason and site names from a log never execute."""
    opened = open_html(render_html(analyze_lines(hostile_lines())))
    page = opened.page
    assert page.evaluate("typeof window.__pwned") == "undefined"
    assert page.evaluate("document.scripts.length") == 2
    assert page.evaluate("document.images.length") == 0
    text = page.locator("body").inner_text()
    assert f"{ATTRIBUTE_BREAK} {SCRIPT_ROUTE}" in text  # the route, shown literally
    assert "</script><script>window.__pwned=3</script>" in text
    _hover_middle(page, page.locator("svg.mw-svg").first)
    assert page.evaluate("typeof window.__pwned") == "undefined"
    assert opened.errors == []


def test_hostile_report_strings_stay_text_in_tooltips_too(open_html: Any) -> None:
    """Any Report, even with raw U+2028 and </script> in every string, renders as text."""
    opened = open_html(render_html(hostile_report(), title=EVIL))
    page = opened.page
    assert page.evaluate("typeof window.__pwned") == "undefined"
    assert page.evaluate("document.title") == EVIL
    assert EVIL in page.evaluate("document.body.textContent")
    census = page.locator(".mw-multiple .mw-figure").first
    _hover_middle(page, census.locator("svg"))
    tip = census.locator(".mw-tip")
    tip.wait_for(state="visible", timeout=5000)
    assert EVIL in tip.evaluate("node => node.textContent")
    assert page.evaluate("typeof window.__pwned") == "undefined"
    assert opened.errors == []


def test_report_screenshot_plots_and_hover(open_html: Any, tmp_path: Path) -> None:
    """A realistic report at 1280x900: drawn plots, tooltips, series toggles and worker tabs."""
    opened = open_html(render_html(realistic_report(), title="agent service"))
    page = opened.page
    assert page.get_by_role("heading", name="Leak found").is_visible()
    shot = tmp_path / "report.png"
    page.screenshot(path=str(shot), full_page=True)
    shutil.copyfile(shot, REPORT_PNG)
    assert shot.stat().st_size > 50_000

    visible = page.locator("svg.mw-svg:visible")
    assert visible.count() >= 1 + 6 + 1  # memory, the census kinds, the route bars
    for i in range(visible.count()):
        box = visible.nth(i).bounding_box()
        assert box is not None and box["width"] > 100 and box["height"] > 50
    assert page.locator("svg.mw-svg .mw-line").first.evaluate(
        "p => p.getTotalLength()") > 100

    memory = page.locator('.mw-figure[data-plot="r-life1-memory"]')
    _hover_middle(page, memory.locator("svg"))
    tip = memory.locator(".mw-tip")
    tip.wait_for(state="visible", timeout=5000)
    lines = tip.inner_text().splitlines()
    assert lines[0].startswith("Request ")
    assert lines[1].startswith("RSS ") and "MiB (" in lines[1] and lines[1].endswith(" bytes)")
    assert lines[2].startswith("Blocks ")
    assert memory.locator(".mw-hover").get_attribute("visibility") == "visible"

    # Hide the heap line: it and its axis go, its hover dot stays hidden.
    key = page.locator('#r-life1 .mw-key[data-series="1"]')
    key.click()
    assert key.get_attribute("aria-pressed") == "false"
    assert not memory.locator('.mw-series[data-series="1"]').is_visible()
    assert not memory.locator('.mw-axis-right').is_visible()
    _hover_middle(page, memory.locator("svg"))
    assert memory.locator('.mw-dot[data-series="1"]').get_attribute("visibility") == "hidden"
    key.click()
    assert memory.locator('.mw-series[data-series="1"]').is_visible()

    # Keyboard: focus the plot and step through the requests.
    page.mouse.move(0, 0)
    memory.locator("svg").focus()
    page.keyboard.press("ArrowRight")
    assert tip.inner_text().startswith("Request 1\n")

    # Worker tabs: one life at a time, or all.
    assert page.locator("#r-life1").is_visible() and not page.locator("#r-life2").is_visible()
    page.locator('.mw-tab[data-life="r-life2"]').click()
    assert page.locator("#r-life2").is_visible() and not page.locator("#r-life1").is_visible()
    page.locator('.mw-tab[data-life="all"]').click()
    assert all(page.locator(f"#r-life{i}").is_visible() for i in (1, 2, 3))

    bars = page.locator('.mw-figure[data-plot="r-routes"]')
    bars.scroll_into_view_if_needed()
    box = bars.locator("svg").bounding_box()
    page.mouse.move(box["x"] + box["width"] * 0.6, box["y"] + 24 + 26 * 1.5)
    assert bars.locator(".mw-tip").inner_text().startswith("POST /chat\n")
    assert opened.errors == []


def _overlap(a: dict[str, float], b: dict[str, float]) -> bool:
    return (a["x"] < b["x"] + b["width"] and b["x"] < a["x"] + a["width"]
            and a["y"] < b["y"] + b["height"] and b["y"] < a["y"] + a["height"])


def test_dry_run_report_screenshot_actions_and_marks(open_html: Any, tmp_path: Path) -> None:
    """A dry-run rollout step: what memwarden would have done, counted, in a timeline and
    marked on the memory plot apart from what was done, every mark labelled and legible."""
    opened = open_html(render_html(dry_run_report(), title="agent service, dry-run"))
    page = opened.page
    shot = tmp_path / "dry-run.png"
    page.screenshot(path=str(shot), full_page=True)
    shutil.copyfile(shot, DRY_RUN_PNG)

    heading = page.get_by_role("heading", name="Protective actions")
    assert heading.is_visible()
    suspects = page.get_by_role("heading", name="Suspects, most likely first")
    assert heading.bounding_box()["y"] < suspects.bounding_box()["y"]
    assert page.locator("table.mw-actions tbody tr").count() == 4
    timeline = page.locator("table.mw-timeline")
    assert timeline.locator("tbody tr").count() == 8
    assert "12 lines in a row" in timeline.inner_text()
    assert page.evaluate("document.documentElement.scrollWidth") <= 1280

    block = page.locator("#r-life1 .mw-plotblock")
    block.screenshot(path=str(DRY_RUN_MEMORY_PNG))
    assert block.get_by_text("would recycle: dry-run, not done (dotted)").is_visible()
    marks = block.locator(".mw-marker.mw-would")
    assert marks.count() == 4
    labels = [marks.nth(i).locator("text") for i in range(marks.count())]
    assert [label.text_content() for label in labels] == [
        "would recycle (idle)", "would recycle (soft_limit)", "would recycle (hard_limit)",
        "would kill (hard_limit)"]
    # The glyphs' boxes (the font's ascent to descent), in the plot's own units.
    boxes = [label.evaluate("t => { const b = t.getBBox(); "
                            "return {x: b.x, y: b.y, width: b.width, height: b.height}; }")
             for label in labels]
    width = float(block.locator("svg").get_attribute("width") or 0)
    for box in boxes:  # drawn, inside the plot, clear of one another
        assert box["width"] > 60 and box["height"] > 8
        assert box["x"] >= 0 and box["x"] + box["width"] <= width
    assert not any(_overlap(a, b) for a, b in itertools.combinations(boxes, 2))
    line = marks.first.locator("line")
    assert line.bounding_box()["height"] > 150  # the whole height of the plot
    # Dotted, where a recycle that was done is dashed: told apart by more than colour.
    assert line.evaluate("l => getComputedStyle(l).strokeDasharray") == "2px, 3px"

    # The page script works as before around the marks.
    _hover_middle(page, block.locator("svg"))
    tip = block.locator(".mw-tip")
    tip.wait_for(state="visible", timeout=5000)
    assert tip.inner_text().startswith("Request ")
    assert opened.errors == []


def test_without_javascript_the_verdict_suspects_and_plots_still_show(open_html: Any) -> None:
    opened = open_html(render_html(realistic_report()), javascript=False)
    page = opened.page
    assert page.get_by_role("heading", name="Leak found").is_visible()
    assert page.locator("table.mw-suspects").is_visible()
    assert page.locator("table.mw-suspects tbody td.mw-num").first.inner_text() == "1"
    assert not page.locator(".mw-tabs").is_visible()
    assert all(page.locator(f"#r-life{i}").is_visible() for i in (1, 2, 3))
    svgs = page.locator("svg.mw-svg")
    assert svgs.count() == svgs.locator("xpath=self::*[not(ancestor::*[@hidden])]").count()
    for i in range(svgs.count()):
        box = svgs.nth(i).bounding_box()
        assert box is not None and box["width"] > 100 and box["height"] > 50
    assert not page.locator(".mw-tip").first.is_visible()


def test_comparison_screenshot_side_by_side_then_stacked(open_html: Any,
                                                         tmp_path: Path) -> None:
    html = render_comparison([("as found", realistic_report()), ("hardened", hardened_report())],
                             "reference agent service")
    opened = open_html(html, name="comparison.html")
    page = opened.page
    shot = tmp_path / "comparison.png"
    page.screenshot(path=str(shot), full_page=True)
    shutil.copyfile(shot, COMPARISON_PNG)
    assert page.locator(".mw-headline-text").inner_text().startswith(
        "as found: leak found; hardened: no leak found.")
    left, right = (page.locator("#cmp-memory .mw-col").nth(i).bounding_box() for i in (0, 1))
    assert left is not None and right is not None
    assert right["x"] >= left["x"] + left["width"] and right["y"] == left["y"]
    memory = page.locator('.mw-figure[data-plot="e2-life1-memory"]')
    _hover_middle(page, memory.locator("svg"))
    assert memory.locator(".mw-tip").inner_text().startswith("Request ")
    assert opened.errors == []

    narrow = open_html(html, name="comparison.html", width=700).page
    left, right = (narrow.locator("#cmp-memory .mw-col").nth(i).bounding_box() for i in (0, 1))
    assert left is not None and right is not None
    assert right["y"] >= left["y"] + left["height"]
    assert narrow.evaluate("document.documentElement.scrollWidth") <= 700
