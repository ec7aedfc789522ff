"""``memwarden audit``: run an app under gunicorn, soak it, and say whether it leaks.

The app runs unchanged under real gunicorn on 127.0.0.1, with memwarden
wired in through ``-c python:memwarden.gunicorn_conf``; the soak driver
sends low, bursty traffic from virtual users; gunicorn's log is split into
the memwarden lines the analysis reads and everything else; the analysis
gives the verdict and the suspects. The files of a run:

- ``OUT/requests.jsonl``: memwarden's JSON lines (requests and worker lifecycle)
- ``OUT/gunicorn.log``: everything gunicorn and the app wrote
- ``OUT/soak.jsonl``: what the client saw, one line per request
- ``OUT/report.json`` and ``OUT/report.html``: the verdict and the suspects
"""

from __future__ import annotations

import dataclasses
import importlib
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from memwarden.find.adaptive import Checkpoint, next_step
from memwarden.find.audit_server import (
    ASGI_WORKER_CLASS,
    AuditError,
    detect_app,
    free_port,
    gunicorn_control_flags,
    split_log,
    stop_server,
    wait_ready,
)
from memwarden.find.soak import (
    DEFAULT_ROUTES,
    Route,
    SoakConfig,
    SoakSummary,
    load_routes,
    run_soak,
)

if TYPE_CHECKING:
    from memwarden.find.analysis import Report

__all__ = [
    "ASGI_WORKER_CLASS",
    "AuditError",
    "AuditResult",
    "detect_app",
    "run_audit",
]

_APP_SPEC = re.compile(r"^[A-Za-z_][\w.]*(:.+)?$")
# How long a checkpoint waits for the log lines of the requests already answered
# (a worker writes its line as the response ends, the client may be faster).
_LINES_WAIT = 5.0


@dataclass(frozen=True, slots=True)
class AuditResult:
    """Where the files are and what the audit found."""

    out: Path
    requests_log: Path
    gunicorn_log: Path
    soak_log: Path
    report_json: Path
    report_html: Path | None
    verdict: str
    report: dict[str, Any]
    soak: SoakSummary
    worker_class: str
    port: int
    request_lines: int
    worker_pids: tuple[int, ...]
    notes: tuple[str, ...]
    # An adaptive audit's looks at itself, and why it stopped where it did.
    checkpoints: tuple[Checkpoint, ...] = ()
    stopped_because: str = ""

    def exit_code(self, fail_on_leak: bool = False) -> int:
        return 1 if fail_on_leak and self.verdict == "leak" else 0


def _analyze(requests_log: Path) -> Report:
    # Imported here: the CLI's other commands should not pay for the analysis.
    from memwarden.find.analysis import analyze_paths

    return analyze_paths([requests_log])


def _write_html(report: Report, path: Path) -> str | None:
    """Write the HTML report; a note instead when the renderer is not available."""
    try:
        # Imported by name: the renderer is optional (the [report] extra).
        render_html = importlib.import_module("memwarden.find.report.html").render_html
    except (ImportError, AttributeError) as exc:
        return f"report.html skipped: the HTML renderer is not available ({exc})"
    try:
        html = render_html(report)
    except ImportError as exc:  # a missing optional dependency of the renderer
        return f"report.html skipped: {exc}"
    path.write_text(html, encoding="utf-8")
    return None


def run_audit(app: str, app_dir: Path | None, routes: Path | None, requests: int,
              workers: int, out: Path, worker_class: str | None = None,
              env: Mapping[str, str] | None = None, gunicorn_args: Sequence[str] | None = None,
              census_every: int = 10, *, seconds: float = 600.0,
              concurrency: tuple[int, int] = (1, 10), idle: tuple[float, float] = (0.0, 0.2),
              new_users: float = 0.3, seed: int = 0, start_timeout: float = 60.0,
              stop_timeout: float = 30.0, request_timeout: float = 30.0,
              progress: TextIO | None = None, max_requests: int | None = None) -> AuditResult:
    """Start ``app`` (``MODULE:ATTR``) under gunicorn on 127.0.0.1, soak it, analyse it.

    WSGI apps run on gunicorn's sync workers; an ASGI app (an async callable,
    such as a FastAPI or Starlette app) is detected and run on
    ``uvicorn_worker.UvicornWorker``; ``worker_class`` overrides both.
    ``env`` is added to the server's environment (after ``MEMWARDEN_CENSUS_EVERY``,
    so it can override it); ``gunicorn_args`` go to gunicorn before the app.
    With ``max_requests`` above ``requests`` the audit is adaptive: after
    ``requests`` it judges what it has, and while a worker's verdict is
    "inconclusive" with a number of more requests that would decide, it
    sends them, up to ``max_requests`` and ``seconds`` (see
    ``memwarden.find.adaptive``). Otherwise it sends exactly ``requests``.
    Raises AuditError (or SoakError for a bad routes file) when it cannot run.
    """
    if not _APP_SPEC.match(app):
        raise AuditError(f"--app: expected MODULE:ATTR (like 'api.app:app'), got {app!r}")
    if requests < 1 or workers < 1 or census_every < 1:
        raise AuditError("requests, workers and census_every must be at least 1")
    adaptive = max_requests is not None and max_requests > requests
    extra = list(gunicorn_args or [])
    for arg in extra:
        flag = arg.split("=", 1)[0]
        if flag in ("-b", "--bind", "-D", "--daemon") or (
                arg.startswith("-b") and not arg.startswith("--")):
            raise AuditError(f"gunicorn argument {arg!r}: the audit binds 127.0.0.1 itself "
                             "and must keep gunicorn in the foreground")
    app_dir = (app_dir or Path.cwd()).resolve()
    if not app_dir.is_dir():
        raise AuditError(f"--app-dir: {app_dir} is not a directory")
    route_table: tuple[Route, ...] = load_routes(routes) if routes is not None else DEFAULT_ROUTES
    # Checked now, before anything starts; the real port comes later.
    soak_config = SoakConfig(url="http://127.0.0.1:1", routes=route_table, requests=requests,
                             seconds=seconds, seed=seed, new_users=new_users,
                             burst_users=concurrency, idle_seconds=idle,
                             timeout=request_timeout)

    # An audit wants exact figures: a census after a full collection gives the
    # live heap without the garbage that waits for the oldest generation.
    full_env = {**os.environ, "PYTHONUNBUFFERED": "1",
                "MEMWARDEN_CENSUS_EVERY": str(census_every), "MEMWARDEN_CENSUS_COLLECT": "1",
                # Every request's blocks, whatever the heap: exactness over cost
                # (production reads them on every 16th request by default).
                "MEMWARDEN_BLOCKS_BUDGET_US": "0", "MEMWARDEN_BLOCKS_EVERY": "1",
                **(env or {})}
    notes: list[str] = []
    if worker_class is None:
        info = detect_app(app, app_dir, full_env, timeout=start_timeout)
        if info.asgi:
            if not info.uvicorn_worker:
                raise AuditError(f"{app} is an ASGI app ({info.type}); running it needs "
                                 "uvicorn-worker: pip install uvicorn-worker, or pass a "
                                 "worker class")
            worker_class = ASGI_WORKER_CLASS
        else:
            worker_class = "sync"
    control = gunicorn_control_flags()

    out = out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    gunicorn_log = out / "gunicorn.log"
    requests_log = out / "requests.jsonl"
    soak_log = out / "soak.jsonl"
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    soak_config = dataclasses.replace(soak_config, url=url)
    cmd = [sys.executable, "-m", "gunicorn", "-c", "python:memwarden.gunicorn_conf",
           "-b", f"127.0.0.1:{port}", "-w", str(workers), "-k", worker_class,
           "--chdir", str(app_dir), *control, *extra, app]
    if progress is not None:
        progress.write(f"audit: starting {app} under gunicorn on {url} "
                       f"({workers} {worker_class} workers)\n")
        progress.flush()
    # O_APPEND: the master and every worker write to this one file.
    gunicorn_log.unlink(missing_ok=True)
    with gunicorn_log.open("ab") as log:
        proc = subprocess.Popen(cmd, cwd=app_dir, env=full_env, stdout=log,
                                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                start_new_session=True)
        server_gone = threading.Event()

        def watch() -> None:
            # A server that dies mid-soak ends the soak: no minutes of retries against nothing.
            proc.wait()
            server_gone.set()

        watcher = threading.Thread(target=watch, name="memwarden-audit-watch", daemon=True)
        checkpoints: list[Checkpoint] = []

        def extend(so_far: SoakSummary) -> int:
            step = _checkpoint(so_far, gunicorn_log, requests_log, max_requests or requests)
            checkpoints.append(step)
            if progress is not None:
                progress.write(f"\naudit: after {step.requests:,} requests: {step.verdict}; "
                               f"{step.why}\n")
                progress.flush()
            return step.target or 0

        try:
            wait_ready(proc, port, gunicorn_log, start_timeout)
            watcher.start()
            summary = run_soak(soak_config, soak_log, progress=progress, stop=server_gone,
                               extend=extend if adaptive else None)
        finally:
            stop_server(proc, stop_timeout)
    if proc.returncode not in (0, -signal.SIGTERM):
        notes.append(f"gunicorn exited with status {proc.returncode}; see {gunicorn_log}")
    planned = (checkpoints[-1].target or summary.requests) if checkpoints else requests
    if summary.stopped_by == "stop":
        stopped = (f"gunicorn exited during the soak, after {summary.requests} of "
                   f"{planned} requests; the end of {gunicorn_log} says why")
        notes.append(stopped)
    elif summary.stopped_by == "seconds":
        stopped = (f"the soak stopped at its time limit ({seconds:g} s) after "
                   f"{summary.requests} of {planned} requests")
        notes.append(stopped)
    elif checkpoints:
        stopped = checkpoints[-1].why
    else:
        stopped = f"sent the {requests:,} requests asked for"

    request_lines, pids = split_log(gunicorn_log, requests_log)
    if request_lines == 0:
        notes.append("no memwarden request lines in gunicorn's log: is MEMWARDEN_WRAP_APP off, "
                     "or another gunicorn config replacing memwarden's?")
    # What the users saw: the server's count misses connections that never got
    # an answer, and counts the shed requests that a retry then served.
    server_report = _analyze(requests_log)
    report = dataclasses.replace(server_report, failed_requests=summary.failed)
    report_dict: dict[str, Any] = report.to_json_dict()
    report_dict["server_failed_requests"] = server_report.failed_requests
    report_dict["soak"] = summary.to_json_dict()
    report_dict["audit"] = {"app": app, "worker_class": worker_class, "workers": workers,
                            "census_every": census_every, "seed": seed,
                            "mode": "adaptive" if adaptive else "fixed",
                            "first_requests": requests,
                            "max_requests": max_requests if adaptive else requests,
                            "max_seconds": seconds, "requests": summary.requests,
                            "stopped_because": stopped,
                            "checkpoints": [c.to_json_dict() for c in checkpoints]}
    report_json = out / "report.json"
    report_json.write_text(json.dumps(report_dict, indent=2) + "\n", encoding="utf-8")
    report_html: Path | None = out / "report.html"
    note = _write_html(report, out / "report.html")
    if note is not None:
        notes.append(note)
        # Never leave an older run's page beside this report.
        (out / "report.html").unlink(missing_ok=True)
        report_html = None
    return AuditResult(out=out, requests_log=requests_log, gunicorn_log=gunicorn_log,
                       soak_log=soak_log, report_json=report_json, report_html=report_html,
                       verdict=report.verdict, report=report_dict,
                       soak=summary, worker_class=worker_class, port=port,
                       request_lines=request_lines, worker_pids=pids, notes=tuple(notes),
                       checkpoints=tuple(checkpoints), stopped_because=stopped)


def _checkpoint(so_far: SoakSummary, gunicorn_log: Path, requests_log: Path,
                max_requests: int) -> Checkpoint:
    """Judge the requests answered so far and decide whether to go on."""
    expected = so_far.requests - so_far.connection_errors
    deadline = time.monotonic() + _LINES_WAIT
    while True:
        lines, _pids = split_log(gunicorn_log, requests_log)
        if lines >= expected or time.monotonic() >= deadline:
            break
        time.sleep(0.05)
    report = _analyze(requests_log)
    step = next_step(report, so_far.requests, max_requests)
    return Checkpoint(so_far.requests, report.verdict, report.reason, step.target, step.why)
