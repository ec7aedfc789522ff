"""``memwarden analyze``: output, report.json, exit codes, and the optional HTML renderer."""

from __future__ import annotations

import gzip
import io
import json
import subprocess
import sys
import types
from pathlib import Path

import pytest

from memwarden.cli import main

from .synthetic import SyntheticWorker, linear_leak, to_lines


def _write(path: Path, lines: list[str]) -> Path:
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def logs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("logs")
    return {
        "leak": _write(root / "leak.jsonl",
                       to_lines(SyntheticWorker(seed=1).run(400, linear_leak(10_240)))),
        "clean": _write(root / "clean.jsonl", to_lines(SyntheticWorker(seed=2).run(400))),
    }


def _run(*args: str | Path, stdin: bytes | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "memwarden.cli", *map(str, args)],
                          input=stdin.decode() if stdin is not None else None,
                          capture_output=True, text=True, timeout=60, check=False)


def test_leak_exits_0_by_default_and_1_with_fail_on_leak(logs: dict[str, Path]) -> None:
    plain = _run("analyze", logs["leak"])
    assert plain.returncode == 0, plain.stderr
    assert "Verdict: LEAK" in plain.stdout
    assert "Suspects, most likely first" in plain.stdout
    assert "pid 4121: 400 requests" in plain.stdout
    assert plain.stdout.isascii()  # plain text, no emojis
    failing = _run("analyze", "--fail-on-leak", logs["leak"])
    assert failing.returncode == 1


def test_no_leak_exits_0_even_with_fail_on_leak(logs: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "report.json"
    result = _run("analyze", logs["clean"], "--json", out, "--fail-on-leak")
    assert result.returncode == 0, result.stderr
    assert "Verdict: no leak" in result.stdout
    data = json.loads(out.read_text(encoding="utf-8"))
    assert data["verdict"] == "no_leak" and data["requests"] == 400


def test_stdin_gzip_is_read(logs: dict[str, Path]) -> None:
    packed = gzip.compress(logs["leak"].read_bytes())
    result = subprocess.run([sys.executable, "-m", "memwarden.cli", "analyze",
                             "--fail-on-leak", "-"], input=packed, capture_output=True,
                            timeout=60, check=False)
    assert result.returncode == 1
    assert b"400 request lines" in result.stdout


def test_unreadable_log_and_bad_usage_exit_2(tmp_path: Path) -> None:
    missing = _run("analyze", tmp_path / "missing.log")
    assert missing.returncode == 2
    assert "cannot read" in missing.stderr
    assert _run("analyze").returncode == 2  # argparse: LOG is required
    assert _run().returncode == 2


def test_html_without_the_renderer_exits_2_before_reading(
        logs: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    # None in sys.modules makes the import fail, whether or not the module exists.
    monkeypatch.setitem(sys.modules, "memwarden.find.report.html", None)
    out = tmp_path / "report.html"
    assert main(["analyze", str(logs["leak"]), "--html", str(out)]) == 2
    assert "--html needs the HTML report renderer" in capsys.readouterr().err
    assert not out.exists()


def test_html_is_written_by_the_renderer(
        logs: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    seen = []

    def render_html(report: object) -> str:
        seen.append(report)
        return "<html>leak</html>"

    package = types.ModuleType("memwarden.report")
    package.__path__ = []
    module = types.ModuleType("memwarden.find.report.html")
    module.render_html = render_html  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "memwarden.report", package)
    monkeypatch.setitem(sys.modules, "memwarden.find.report.html", module)
    out = tmp_path / "report.html"
    assert main(["analyze", str(logs["leak"]), "--html", str(out)]) == 0
    assert out.read_text(encoding="utf-8") == "<html>leak</html>"
    assert len(seen) == 1 and getattr(seen[0], "verdict", None) == "leak"


def test_console_script_is_installed(logs: dict[str, Path]) -> None:
    script = Path(sys.executable).with_name("memwarden")
    if not script.exists():
        pytest.skip("the memwarden console script is not installed in this environment")
    result = subprocess.run([str(script), "analyze", "--fail-on-leak", str(logs["leak"])],
                            capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 1


def test_run_analyze_writes_to_given_streams(logs: dict[str, Path]) -> None:
    from memwarden.cli import build_parser, run_analyze

    args = build_parser().parse_args(["analyze", str(logs["clean"])])
    out, err = io.StringIO(), io.StringIO()
    assert run_analyze(args, stdout=out, stderr=err) == 0
    assert "Verdict: no leak" in out.getvalue() and err.getvalue() == ""


def test_subnormal_census_values_give_an_html_report_not_a_traceback(tmp_path: Path) -> None:
    lines = [json.dumps({"logger": "memwarden.request", "message": "request", "pid": 7,
                         "seq": seq, "route": "/r", "rss_bytes": 1e8,
                         "census": {"threads": 5e-324 if seq % 2 else 0}})
             for seq in range(1, 40)]
    out = tmp_path / "report.html"
    result = _run("analyze", _write(tmp_path / "sub.log", lines), "--html", out,
                  "--fail-on-leak")
    assert (result.returncode, result.stderr) == (0, "")
    assert "threads" in out.read_text(encoding="utf-8")


def test_a_defect_of_its_own_exits_2_with_one_line(
        logs: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    def render_html(report: object) -> str:
        raise ZeroDivisionError("float division by zero\nsecond line")

    module = types.ModuleType("memwarden.find.report.html")
    module.render_html = render_html  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "memwarden.find.report.html", module)
    assert main(["analyze", str(logs["clean"]), "--html", str(tmp_path / "r.html")]) == 2
    assert capsys.readouterr().err == ("memwarden analyze: internal error, no report: "
                                       "ZeroDivisionError: float division by zero\n")
