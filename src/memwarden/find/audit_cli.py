"""``memwarden audit`` on the command line: its arguments and its summary."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any, TextIO

from memwarden.find.adaptive import (
    DEFAULT_FIRST_REQUESTS,
    DEFAULT_MAX_REQUESTS,
    DEFAULT_MAX_SECONDS,
)
from memwarden.find.audit_server import ASGI_WORKER_CLASS, AuditError
from memwarden.find.soak import SoakError

__all__ = ["add_audit_arguments", "run_audit_command"]


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
    # Imported here: audit imports this module for its names.
    from memwarden.find.audit import run_audit

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
