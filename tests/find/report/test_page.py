"""The page as text: self-contained, hashed inline assets, data that matches the figures."""

from __future__ import annotations

import base64
import hashlib
import json
import re
from pathlib import Path

import pytest

from memwarden.cli import main
from memwarden.find.analysis import analyze_lines
from memwarden.find.report import render_comparison, render_html

from .hostile import EVIL, hostile_report
from .logs import HOSTILE, hardened_report, hostile_lines, realistic_lines, realistic_report

DATA = re.compile(r'<script type="application/json" id="mw-data">(.*?)</script>', re.S)


@pytest.fixture(scope="module")
def page() -> str:
    return render_html(realistic_report(), title="agent service")


def _sha256(text: str) -> str:
    return base64.b64encode(hashlib.sha256(text.encode()).digest()).decode()


def test_nothing_is_fetched_from_anywhere(page: str) -> None:
    for url in re.findall(r'\b(?:src|href|action)="([^"]*)"', page):
        assert url.startswith(("#", "data:")), url
    assert "http://" not in page and "https://" not in page
    assert "@import" not in page and "url(" not in page


def test_the_policy_admits_exactly_the_inline_style_and_script(page: str) -> None:
    policy = re.search(r'http-equiv="Content-Security-Policy" content="([^"]*)"', page)
    assert policy is not None
    style = re.search(r"<style>(.*?)</style>", page, re.S)
    script = re.search(r"<script>(.*?)</script>", page, re.S)
    assert style is not None and script is not None
    assert f"style-src 'sha256-{_sha256(style.group(1))}'" in policy.group(1)
    assert f"script-src 'sha256-{_sha256(script.group(1))}'" in policy.group(1)
    assert "default-src 'none'" in policy.group(1)
    assert "unsafe-inline" not in policy.group(1)


def test_every_figure_has_its_hover_data(page: str) -> None:
    match = DATA.search(page)
    assert match is not None
    plots = json.loads(match.group(1))["plots"]
    figures = re.findall(r'class="mw-figure" data-plot="([^"]+)"', page)
    assert sorted(figures) == sorted(plots)
    memory = plots["r-life1-memory"]
    assert memory["kind"] == "x"
    assert len(memory["x"]) == len(memory["y"]) == len(memory["tip"])
    assert memory["tip"][0][1] == "RSS 80.0 MiB (83,886,080 bytes)"
    assert plots["r-routes"]["kind"] == "rows"


@pytest.mark.parametrize("make", [lambda: analyze_lines(hostile_lines()), hostile_report],
                         ids=["from-logs", "by-hand"])
def test_hostile_strings_never_reach_the_page_unescaped(make: object) -> None:
    report = make()  # type: ignore[operator]
    page = render_html(report)
    for text in HOSTILE:
        assert text.replace("\u2028", "?").replace("\u2029", "?") not in page
    assert page.count("<script") == 2
    assert "<img" not in page
    match = DATA.search(page)
    assert match is not None
    for raw in ("<", ">", "&", "\u2028", "\u2029"):
        assert raw not in match.group(1)
    plots = json.loads(match.group(1))["plots"]
    assert plots  # the data still parses, with the attacker's text inside it as text
    if report.reason == EVIL:
        assert any(EVIL in line for spec in plots.values() for tip in spec["tip"]
                   for line in tip)


def test_comparison_page_is_one_document_with_unique_ids() -> None:
    page = render_comparison([("as found", realistic_report()), ("hardened", hardened_report())],
                             "demo")
    ids = re.findall(r'\bid="([^"]+)"', page)
    assert len(ids) == len(set(ids))
    assert page.count("<html") == 1
    assert "as found: leak found; hardened: no leak found." in page


def test_cli_writes_the_html_report(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    log = tmp_path / "requests.jsonl"
    log.write_text("\n".join(realistic_lines()) + "\n", encoding="utf-8")
    out = tmp_path / "report.html"
    assert main(["analyze", str(log), "--html", str(out)]) == 0
    text = out.read_text(encoding="utf-8")
    assert text.startswith("<!DOCTYPE html>")
    assert "Leak found" in text
    assert "HTML report written to" in capsys.readouterr().out


@pytest.mark.parametrize("requests", [1, 2, 25])
def test_tiny_logs_render(requests: int) -> None:
    """One request, two, or too few to judge: a whole page, inconclusive."""
    lines = realistic_lines()[:requests]
    page = render_html(analyze_lines(lines))
    assert "Inconclusive" in page
    match = DATA.search(page)
    assert match is not None and json.loads(match.group(1))["plots"]


def test_assets_ship_as_package_data() -> None:
    """The stylesheet and script are read at render time: a wheel must include them."""
    import fnmatch
    import tomllib

    import memwarden.find.report

    package = Path(memwarden.find.report.__file__).parent
    root = package.parents[3]
    config = tomllib.loads((root / "pyproject.toml").read_text(encoding="utf-8"))
    package_data = config["tool"]["setuptools"].get("package-data", {})
    for asset in sorted((package / "assets").iterdir()):
        relative = asset.relative_to(package.parents[1]).as_posix()  # find/report/assets/x.css
        shipped = any(fnmatch.fnmatch(relative, p) for p in package_data.get("memwarden", ())) \
            or any(fnmatch.fnmatch(relative.removeprefix("find/report/"), p)
                   for p in package_data.get("memwarden.find.report", ()))
        assert shipped, (
            f"add \"report/assets/*\" to [tool.setuptools.package-data] memwarden "
            f"in pyproject.toml ({relative} is not shipped)")
