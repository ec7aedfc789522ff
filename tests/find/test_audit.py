"""``memwarden audit`` end to end: real gunicorn on 127.0.0.1, soak traffic, the analysis."""

from __future__ import annotations

import argparse
import io
import json
import sys
import types
from pathlib import Path
from typing import Any

import pytest
from support import REPO

from memwarden.find.audit import (
    ASGI_WORKER_CLASS,
    AuditError,
    AuditResult,
    run_audit,
)
from memwarden.find.audit_cli import add_audit_arguments, run_audit_command

APPS = REPO / "tests" / "apps"
VERDICTS = {"leak", "no_leak", "inconclusive"}
SUSPECT_KINDS = {"route", "resource", "allocation", "type"}


@pytest.fixture
def remember_routes(tmp_path: Path) -> Path:
    path = tmp_path / "routes.json"
    path.write_text(json.dumps({"routes": [{"method": "GET", "path": "/", "weight": 1},
                                           {"method": "POST", "path": "/remember",
                                            "weight": 1}]}))
    return path


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def gone(pid: int) -> bool:
    """Exited: no such process, or a zombie (an orphan that init has yet to reap)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return stat.rsplit(")", 1)[1].split()[0] in ("Z", "X")


def check_report_schema(report: dict[str, Any]) -> None:
    """report.json as docs/contracts.md defines it."""
    assert report["verdict"] in VERDICTS
    assert isinstance(report["requests"], int) and isinstance(report["failed_requests"], int)
    for worker in report["workers"]:
        assert {"pid", "requests", "rss_start_bytes", "rss_end_bytes",
                "slope_bytes_per_request", "verdict"} <= worker.keys()
        assert worker["verdict"] in VERDICTS
    for suspect in report["suspects"]:
        assert suspect["kind"] in SUSPECT_KINDS
        assert isinstance(suspect["name"], str) and isinstance(suspect["evidence"], str)
        assert isinstance(suspect["per_request"], int | float)
        assert suspect["bytes_per_request"] is None or isinstance(suspect["bytes_per_request"],
                                                                  int)
        assert 0.0 <= suspect["confidence"] <= 1.0


def check_files(result: AuditResult, requests: int, workers: int) -> list[dict[str, Any]]:
    """The files exist; requests.jsonl holds the soak's request lines from every worker."""
    for path in (result.requests_log, result.gunicorn_log, result.soak_log,
                 result.report_json):
        assert path.is_file(), path
    if result.report_html is None:  # the renderer is optional: a note says why
        assert any(note.startswith("report.html skipped") for note in result.notes)
    else:
        assert result.report_html.is_file() and result.report_html.stat().st_size > 0
    lines = read_jsonl(result.requests_log)
    assert all(line["logger"].startswith("memwarden") for line in lines)
    request_lines = [x for x in lines if x["logger"] == "memwarden.request"]
    assert len(request_lines) == result.request_lines == requests
    # The readiness probe is left out: every line is a soak request.
    assert all(x["request_id"].startswith("soak-") for x in request_lines)
    assert len({x["pid"] for x in request_lines}) == workers == len(result.worker_pids)
    # An audit reads allocated blocks on every request, whatever the production default.
    assert all("blocks" in x for x in request_lines)
    # MEMWARDEN_CENSUS_EVERY=10 reached the workers: about one census per 10 requests.
    censuses = sum("census" in x for x in request_lines)
    assert requests // 10 - 2 * workers <= censuses <= requests // 10 + 2 * workers
    assert len(read_jsonl(result.soak_log)) == requests
    report = json.loads(result.report_json.read_text())
    check_report_schema(report)
    assert report["requests"] == requests and report["failed_requests"] == 0
    assert report["soak"]["requests"] == requests
    # gunicorn was stopped: its workers are gone.
    assert all(map(gone, result.worker_pids))
    return request_lines


def test_leaking_flask_app_is_found(tmp_path: Path, remember_routes: Path) -> None:
    """A route keeping ~50 KB per call: verdict leak, that route the top suspect."""
    result = run_audit("audit_leaky:app", APPS, remember_routes, requests=600, workers=2,
                       out=tmp_path / "out", idle=(0.0, 0.0))
    assert result.worker_class == "sync"
    lines = check_files(result, 600, 2)
    assert {x["route"] for x in lines} == {"/", "/remember"}
    assert result.verdict == "leak"
    top = result.report["suspects"][0]
    assert (top["kind"], top["name"]) == ("route", "POST /remember")
    assert result.exit_code(fail_on_leak=True) == 1 and result.exit_code() == 0


def test_clean_flask_app_is_not_a_leak(tmp_path: Path, remember_routes: Path) -> None:
    """The same allocations, none kept: not a leak; the CLI exits 0 even with --fail-on-leak."""
    stdout, stderr = io.StringIO(), io.StringIO()
    out = tmp_path / "out"
    code = cli(["--app", "audit_clean:app", "--app-dir", str(APPS), "--routes",
                str(remember_routes), "--requests", "600", "--idle", "0", "--out", str(out),
                "--fail-on-leak", "--seed", "3"], stdout, stderr)
    assert code == 0, stderr.getvalue()
    report = json.loads((out / "report.json").read_text())
    check_report_schema(report)
    assert report["verdict"] != "leak", report["reason"]
    text = stdout.getvalue()
    assert f"files in {out}" in text and "requests.jsonl  600 request lines from 2 workers" in text
    assert f"verdict: {report['verdict']}" in text
    assert "soak: 1/600 requests" in stderr.getvalue()


def test_fastapi_app_is_detected_and_audited(tmp_path: Path) -> None:
    """An ASGI app runs on uvicorn workers without being told."""
    routes = tmp_path / "routes.json"
    routes.write_text(json.dumps({"routes": [{"path": "/items/{rand}"}]}))
    result = run_audit("fastapi_app:app", APPS, routes, requests=300, workers=2,
                       out=tmp_path / "out", idle=(0.0, 0.0))
    assert result.worker_class == ASGI_WORKER_CLASS
    lines = check_files(result, 300, 2)
    assert {x["route"] for x in lines} == {"/items/{item_id}"}
    assert "uvicorn_worker.UvicornWorker" in result.gunicorn_log.read_text()


def test_default_route_and_the_html_renderer(tmp_path: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """Without a routes file the soak sends GET /; report.html comes from render_html."""
    seen: list[Any] = []

    def render_html(report: Any) -> str:
        seen.append(report)
        return f"<html>{report.verdict}</html>"

    fake = types.ModuleType("memwarden.find.report.html")
    fake.render_html = render_html  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "memwarden.find.report.html", fake)
    out = tmp_path / "out"
    stdout, stderr = io.StringIO(), io.StringIO()
    code = cli(["--app", "audit_leaky:app", "--app-dir", str(APPS), "--requests", "60",
                "--workers", "1", "--idle", "0", "--out", str(out), "--fail-on-leak"],
               stdout, stderr)
    assert code == 0, stderr.getvalue()  # GET / keeps nothing
    assert {x["template"] for x in read_jsonl(out / "soak.jsonl")} == {"/"}
    [report] = seen
    assert (out / "report.html").read_text() == f"<html>{report.verdict}</html>"
    assert report.requests == 60 and report.failed_requests == 0
    assert "  report.html" in stdout.getvalue()


def cli(argv: list[str], stdout: io.StringIO, stderr: io.StringIO) -> int:
    parser = argparse.ArgumentParser(prog="memwarden audit")
    add_audit_arguments(parser)
    return run_audit_command(parser.parse_args(argv), stdout=stdout, stderr=stderr)


def test_an_app_that_does_not_import_is_a_start_error(tmp_path: Path) -> None:
    """Exit 2 with the import's traceback; nothing started."""
    stdout, stderr = io.StringIO(), io.StringIO()
    code = cli(["--app", "no_such_module:app", "--app-dir", str(APPS),
                "--out", str(tmp_path / "out")], stdout, stderr)
    assert code == 2
    assert "cannot load the app 'no_such_module:app'" in stderr.getvalue()
    assert "No module named 'no_such_module'" in stderr.getvalue()


def test_a_server_that_does_not_start_shows_its_log(tmp_path: Path) -> None:
    """When gunicorn fails to boot, the error carries the end of its log."""
    with pytest.raises(AuditError, match=r"(?s)gunicorn exited.*no_such_module"):
        run_audit("no_such_module:app", APPS, None, requests=10, workers=1,
                  out=tmp_path / "out", worker_class="sync", start_timeout=30)


@pytest.mark.parametrize(("argv", "message"), [
    (["--app", "bad app"], "expected MODULE:ATTR"),
    (["--app", "audit_clean:app", "--gunicorn-arg=--bind=0.0.0.0:80"], "binds 127.0.0.1 itself"),
    (["--app", "audit_clean:app", "--app-dir", "/nonexistent"], "is not a directory"),
    (["--app", "audit_clean:app", "--new-users", "2"], "--new-users must be between"),
])
def test_usage_errors_exit_2(argv: list[str], message: str, tmp_path: Path) -> None:
    stdout, stderr = io.StringIO(), io.StringIO()
    assert cli([*argv, "--out", str(tmp_path / "out")], stdout, stderr) == 2
    assert message in stderr.getvalue()


def test_bad_routes_file_exits_2(tmp_path: Path) -> None:
    """A routes file mistake is reported before gunicorn starts."""
    routes = tmp_path / "routes.json"
    routes.write_text(json.dumps({"routes": [{"path": "/", "weight": -1}]}))
    stdout, stderr = io.StringIO(), io.StringIO()
    code = cli(["--app", "audit_clean:app", "--app-dir", str(APPS), "--routes", str(routes),
                "--out", str(tmp_path / "out")], stdout, stderr)
    assert code == 2
    assert "routes[0].weight: expected a positive number" in stderr.getvalue()
    assert not (tmp_path / "out").exists()


def test_argument_parsing() -> None:
    """Ranges take N or LOW:HIGH; numbers must be positive."""
    parser = argparse.ArgumentParser()
    add_audit_arguments(parser)
    args = parser.parse_args(["--app", "m:a", "--concurrency", "2:5", "--idle", "0.5"])
    assert args.concurrency == (2, 5) and args.idle == (0.5, 0.5)
    # Adaptive by default: no fixed count, the bounds come from memwarden.adaptive.
    assert (args.requests, args.max_requests, args.workers, args.census_every, args.out) == (
        None, None, 2, 10, Path("memwarden-audit"))
    assert args.seconds == 1800.0
    assert parser.parse_args(["--app", "m:a", "--seconds", "5"]).seconds == 5.0
    for bad in (["--requests", "0"], ["--concurrency", "5:2"], ["--idle", "x"]):
        with pytest.raises(SystemExit):
            parser.parse_args(["--app", "m:a", *bad])


def test_a_server_that_dies_mid_soak_ends_the_soak(tmp_path: Path) -> None:
    """The soak stops when gunicorn goes away; the files and a note say what happened."""
    routes = tmp_path / "routes.json"
    routes.write_text(json.dumps({"routes": [{"path": "/", "weight": 50}, {"path": "/die"}]}))
    result = run_audit("audit_dies:app", APPS, routes, requests=5000, workers=1,
                       out=tmp_path / "out", idle=(0.0, 0.0), start_timeout=30)
    assert result.soak.stopped_by == "stop" and result.soak.requests < 5000
    assert any("gunicorn exited during the soak" in note for note in result.notes)
    assert result.report_json.is_file()
    assert result.worker_pids and all(map(gone, result.worker_pids))


def test_an_adaptive_audit_runs_on_while_a_worker_asks_for_more(tmp_path: Path,
                                                                 remember_routes: Path) -> None:
    """100 requests over 2 workers is too short to judge: the audit runs as many more as
    the verdict asks for, looks again, and stops once it is decided; report.json says how
    many requests it took and why it stopped."""
    result = run_audit("audit_clean:app", APPS, remember_routes, requests=100, workers=2,
                       out=tmp_path / "out", idle=(0.0, 0.0), max_requests=3000, seed=3)
    first, *rest = result.checkpoints
    assert (first.requests, first.verdict) == (100, "inconclusive")
    assert first.target is not None and first.target > 100 and rest
    assert all(a.target == b.requests for a, b in zip(result.checkpoints, rest, strict=False))
    assert result.checkpoints[-1].target is None
    assert result.verdict == "no_leak", result.report["reason"]
    assert result.stopped_because.startswith("decided: no_leak after")
    lines = check_files(result, result.soak.requests, 2)
    assert len(lines) == result.checkpoints[-1].requests < 3000
    audit = json.loads(result.report_json.read_text())["audit"]
    assert (audit["mode"], audit["first_requests"], audit["max_requests"]) == (
        "adaptive", 100, 3000)
    assert audit["requests"] == result.soak.requests
    assert audit["stopped_because"] == result.stopped_because
    assert [c["requests"] for c in audit["checkpoints"]] == [
        c.requests for c in result.checkpoints]


def test_an_adaptive_audit_stops_at_the_first_leak_and_the_cli_says_why(
        tmp_path: Path, remember_routes: Path) -> None:
    stdout, stderr = io.StringIO(), io.StringIO()
    out = tmp_path / "out"
    code = cli(["--app", "audit_leaky:app", "--app-dir", str(APPS), "--routes",
                str(remember_routes), "--first-requests", "400", "--max-requests", "4000",
                "--idle", "0", "--out", str(out), "--fail-on-leak"], stdout, stderr)
    assert code == 1, stderr.getvalue()
    text = stdout.getvalue()
    assert "requests: 400 (adaptive, judged at 400: leak); stopped because decided: leak " \
           "after 400 requests" in text
    assert "audit: after 400 requests: leak" in stderr.getvalue()


def test_fixed_and_adaptive_flags_exclude_each_other(tmp_path: Path) -> None:
    stdout, stderr = io.StringIO(), io.StringIO()
    assert cli(["--app", "audit_clean:app", "--app-dir", str(APPS), "--requests", "50",
                "--max-requests", "500", "--out", str(tmp_path / "out")], stdout, stderr) == 2
    assert "give one or the other" in stderr.getvalue()
