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

import argparse
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

from memwarden.adaptive import (
    DEFAULT_FIRST_REQUESTS,
    DEFAULT_MAX_REQUESTS,
    DEFAULT_MAX_SECONDS,
    Checkpoint,
    next_step,
)
from memwarden.audit_server import (
    AuditError,
    detect_app,
    free_port,
    gunicorn_control_flags,
    split_log,
    stop_server,
    wait_ready,
)
from memwarden.soak import (
    DEFAULT_ROUTES,
    Route,
    SoakConfig,
    SoakError,
    SoakSummary,
    load_routes,
    run_soak,
)

if TYPE_CHECKING:
    from memwarden.analysis import Report

__all__ = [
    "ASGI_WORKER_CLASS",
    "AuditError",
    "AuditResult",
    "add_audit_arguments",
    "detect_app",
    "run_audit",
    "run_audit_command",
]

ASGI_WORKER_CLASS = "uvicorn_worker.UvicornWorker"
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
    from memwarden.analysis import analyze_paths

    return analyze_paths([requests_log])


def _write_html(report: Report, path: Path) -> str | None:
    """Write the HTML report; a note instead when the renderer is not available."""
    try:
        # Imported by name: the renderer is optional (the [report] extra).
        render_html = importlib.import_module("memwarden.report.html").render_html
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
    ``memwarden.adaptive``). Otherwise it sends exactly ``requests``.
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
                # Every request's blocks, whatever the heap: exactness over cost.
                "MEMWARDEN_BLOCKS_BUDGET_US": "0",
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


# -- the command line ---------------------------------------------------------------


def _pair(kind: type[int] | type[float]) -> Any:
    def parse(text: str) -> tuple[Any, Any]:
        try:
            parts = [kind(p) for p in text.split(":")]
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected N or LOW:HIGH, got {text!r}") from None
        if len(parts) == 1:
            parts *= 2
        if len(parts) != 2 or parts[0] < 0 or parts[1] < parts[0]:
            raise argparse.ArgumentTypeError(f"expected N or LOW:HIGH with 0 <= LOW <= HIGH, "
                                             f"got {text!r}")
        return parts[0], parts[1]
    return parse


def _positive(kind: type[int] | type[float]) -> Any:
    def parse(text: str) -> Any:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
        if not value > 0:
            raise argparse.ArgumentTypeError(f"must be positive, got {text!r}")
        return value
    return parse


def add_audit_arguments(parser: argparse.ArgumentParser) -> None:
    """The arguments of ``memwarden audit``."""
    parser.add_argument("--app", required=True, metavar="MODULE:ATTR",
                        help="the WSGI or ASGI app, as gunicorn names it (e.g. api.app:app)")
    parser.add_argument("--app-dir", type=Path, default=None, metavar="DIR",
                        help="where MODULE is importable from (default: the current directory)")
    parser.add_argument("--routes", type=Path, default=None, metavar="FILE",
                        help="a routes file (JSON, see the docs); default: GET /")
    parser.add_argument("--requests", type=_positive(int), default=None, metavar="N",
                        help="send exactly N requests and judge them (default: adaptive, "
                             "see --max-requests)")
    parser.add_argument("--first-requests", type=_positive(int), default=None, metavar="N",
                        help="adaptive: judge first after N requests (default: "
                             f"{DEFAULT_FIRST_REQUESTS})")
    parser.add_argument("--max-requests", type=_positive(int), default=None, metavar="N",
                        help="adaptive: while a worker's verdict is inconclusive and names how "
                             "many more requests would decide, send them, up to N in all "
                             f"(default: {DEFAULT_MAX_REQUESTS})")
    parser.add_argument("--max-seconds", "--seconds", type=_positive(float),
                        default=DEFAULT_MAX_SECONDS, metavar="S", dest="seconds",
                        help="stop after this long even if requests remain (default: "
                             f"{DEFAULT_MAX_SECONDS:g})")
    parser.add_argument("--workers", type=_positive(int), default=2, metavar="N",
                        help="gunicorn workers (default: 2)")
    parser.add_argument("--worker-class", default=None, metavar="CLASS",
                        help="gunicorn worker class (default: sync for WSGI, "
                             f"{ASGI_WORKER_CLASS} for ASGI apps)")
    parser.add_argument("--out", type=Path, default=Path("memwarden-audit"), metavar="DIR",
                        help="where to write the files (default: ./memwarden-audit)")
    parser.add_argument("--concurrency", type=_pair(int), default=(1, 10), metavar="LOW:HIGH",
                        help="users per burst, a range or one number (default: 1:10)")
    parser.add_argument("--idle", type=_pair(float), default=(0.0, 0.2), metavar="LOW:HIGH",
                        help="seconds of idle between bursts (default: 0:0.2; 0 for speed)")
    parser.add_argument("--new-users", type=float, default=0.3, metavar="SHARE",
                        help="share of visits by brand-new users (default: 0.3)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the traffic (default: 0)")
    parser.add_argument("--census-every", type=_positive(int), default=10, metavar="N",
                        help="resource census every N requests per worker (default: 10)")
    parser.add_argument("--gunicorn-arg", action="append", default=[], metavar="ARG",
                        dest="gunicorn_args",
                        help="an extra gunicorn argument, repeatable "
                             "(e.g. --gunicorn-arg=--threads=4)")
    parser.add_argument("--fail-on-leak", action="store_true",
                        help="exit 1 when the verdict is leak")


def _describe(suspect: Mapping[str, Any]) -> str:
    size = suspect.get("bytes_per_request")
    growth = (f"{size / 1024:.1f} KiB/request" if isinstance(size, int | float)
              else f"{suspect.get('per_request')}/request")
    confidence = suspect.get("confidence")
    conf = f", confidence {confidence:.2f}" if isinstance(confidence, int | float) else ""
    return (f"{suspect.get('kind')} {suspect.get('name')}: {growth}{conf}"
            f"\n       {suspect.get('evidence', '')}")


def run_audit_command(args: argparse.Namespace, stdout: TextIO | None = None,
                      stderr: TextIO | None = None) -> int:
    """``memwarden audit``: 0, 1 on a leak with --fail-on-leak, 2 when it cannot run."""
    out_stream = stdout or sys.stdout
    err_stream = stderr or sys.stderr
    if not 0.0 <= args.new_users <= 1.0:
        print(f"memwarden audit: --new-users must be between 0 and 1, got {args.new_users}",
              file=err_stream)
        return 2
    low, high = args.concurrency
    if low < 1:
        print("memwarden audit: --concurrency must be at least 1", file=err_stream)
        return 2
    fixed = args.requests is not None
    if fixed and (args.max_requests is not None or args.first_requests is not None):
        print("memwarden audit: --requests sends a fixed count; --first-requests and "
              "--max-requests bound the adaptive audit: give one or the other", file=err_stream)
        return 2
    first = args.requests if fixed else (args.first_requests or DEFAULT_FIRST_REQUESTS)
    most = None if fixed else (args.max_requests or DEFAULT_MAX_REQUESTS)
    if most is not None and first > most:
        first = most
    try:
        result = run_audit(args.app, args.app_dir, args.routes, first, args.workers,
                           args.out, worker_class=args.worker_class,
                           gunicorn_args=args.gunicorn_args, census_every=args.census_every,
                           seconds=args.seconds, concurrency=(low, high), idle=args.idle,
                           new_users=args.new_users, seed=args.seed, progress=err_stream,
                           max_requests=most)
    except (AuditError, SoakError) as exc:
        print(f"memwarden audit: {exc}", file=err_stream)
        return 2
    except KeyboardInterrupt:
        # gunicorn was already stopped on the way out of run_audit.
        print("\nmemwarden audit: interrupted", file=err_stream)
        return 130
    r = result.report
    s = result.soak
    print(f"soak: {s.requests} requests from {s.users} users in {s.bursts} bursts, "
          f"{s.seconds:.1f} s; {s.failed} failed, {s.shed} shed, {s.retried} retried",
          file=out_stream)
    print(f"files in {result.out}:", file=out_stream)
    print(f"  requests.jsonl  {result.request_lines} request lines from "
          f"{len(result.worker_pids)} workers", file=out_stream)
    print("  soak.jsonl      the client's view, one line per request", file=out_stream)
    print("  gunicorn.log    everything gunicorn and the app wrote", file=out_stream)
    print("  report.json", file=out_stream)
    if result.report_html is not None:
        print("  report.html", file=out_stream)
    for note in result.notes:
        print(f"note: {note}", file=out_stream)
    looks = ", ".join(f"{c.requests:,}: {c.verdict}" for c in result.checkpoints)
    mode = f"adaptive, judged at {looks}" if result.checkpoints else "fixed"
    print(f"requests: {s.requests:,} ({mode}); stopped because {result.stopped_because}",
          file=out_stream)
    reason = r.get("reason")
    print(f"verdict: {result.verdict}" + (f" ({reason})" if reason else ""), file=out_stream)
    suspects = r.get("suspects") or []
    if suspects:
        print("suspects, most likely first:", file=out_stream)
        for i, suspect in enumerate(suspects[:5], 1):
            print(f"  {i}. {_describe(suspect)}", file=out_stream)
    return result.exit_code(args.fail_on_leak)
