"""``memwarden demo``: audit the reference agent service as found and hardened.

Runs ``examples/agent_service`` twice under real gunicorn on 127.0.0.1, with
the production settings (2 sync workers, 120 s timeout, no max-requests):
first as found, with its five leak sources (an MCP client singleton, Chromium
contexts left open, per-request event loops, a session context kept forever,
no recycling), then hardened. Each run is a ``memwarden audit`` (the same
traffic: virtual users with cookie jars, bursts, new users arriving); the two
reports are written side by side in one HTML page.
"""

from __future__ import annotations

import argparse
import secrets
import sys
import tempfile
from pathlib import Path
from typing import TextIO

__all__ = ["add_demo_arguments", "run_demo", "run_demo_command"]

REPO = Path(__file__).resolve().parents[3]
SERVICE = REPO / "examples" / "agent_service"
ROUTES = SERVICE / "demo_routes.json"
CONFIG = SERVICE / "gunicorn_conf.py"

# The audits' census settings: a census every 10 requests, after a full
# collection, with event loops counted: exact figures for a short run.
_CENSUS_ENV = {"MEMWARDEN_CENSUS_COLLECT": "1", "MEMWARDEN_LOOP_TRACKING": "1"}


def run_demo(out: Path, requests: int = 400, seed: int = 7,
             stdout: TextIO | None = None, stderr: TextIO | None = None) -> int:
    stdout = stdout or sys.stdout
    stderr = stderr or sys.stderr
    if not SERVICE.is_dir():
        stderr.write(f"memwarden demo: the reference service is not at {SERVICE}\n")
        return 2
    out = out.resolve()
    runs = (("as found", "as-found", {"AGENT_SERVICE_MODE": "as-found"}),
            # The hardened store is bounded; a small bound is reached within the
            # demo, so its plateau shows (the service's default is 1000 sessions).
            ("hardened", "hardened", {"AGENT_SERVICE_MODE": "hardened",
                                      "AGENT_SERVICE_MAX_SESSIONS": "16"}))
    # The service will not start without a secret key: the demo makes one for its
    # run, and a data directory (the hardened memory server's) that goes with it.
    data = tempfile.TemporaryDirectory(prefix="memwarden-demo-")
    service_env = {"AGENT_SERVICE_SECRET_KEY": secrets.token_hex(32),
                   "AGENT_SERVICE_DATA_DIR": data.name}
    with data:
        return _audit_both(out, runs, service_env, requests, seed, stdout, stderr)


def _audit_both(out: Path, runs: tuple[tuple[str, str, dict[str, str]], ...],
                service_env: dict[str, str], requests: int, seed: int,
                stdout: TextIO, stderr: TextIO) -> int:
    from memwarden.find.analysis import analyze_paths
    from memwarden.find.audit import AuditError, run_audit
    from memwarden.find.report import render_comparison

    entries = []
    for label, folder, mode_env in runs:
        stdout.write(f"\n== the reference agent service, {label} ==\n")
        stdout.flush()
        try:
            result = run_audit(
                "api.app:app", SERVICE, ROUTES, requests, 2, out / folder,
                env={**_CENSUS_ENV, **service_env, **mode_env},
                gunicorn_args=["-c", str(CONFIG), "--timeout", "120"],
                census_every=10, seed=seed, concurrency=(1, 10), idle=(0.0, 0.05),
                new_users=0.3, progress=stderr)
        except AuditError as exc:
            stderr.write(f"memwarden demo: the {label} audit could not run: {exc}\n")
            return 2
        report = result.report
        stdout.write(f"verdict: {report['verdict']} ({report.get('reason', '')})\n")
        stdout.write(f"requests: {report['requests']}, failed: {report['failed_requests']}\n")
        for rank, suspect in enumerate(report["suspects"][:6], 1):
            stdout.write(f"  {rank}. {suspect['kind']} {suspect['name']}: "
                         f"{suspect['evidence']}\n")
        for note in result.notes:
            stdout.write(f"  note: {note}\n")
        entries.append((label, analyze_paths([result.requests_log])))
    page = out / "report.html"
    page.write_text(render_comparison(entries, title="reference agent service"),
                    encoding="utf-8")
    stdout.write(f"\nside-by-side report: {page}\n")
    stdout.write(f"each audit's files: {out / 'as-found'} and {out / 'hardened'}\n")
    return 0


def add_demo_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", type=Path, default=Path("reports/demo"),
                        help="where to write the demo's files (default: reports/demo)")
    parser.add_argument("--requests", type=int, default=400,
                        help="requests in each audit (default: 400)")
    parser.add_argument("--seed", type=int, default=7, help="traffic seed (default: 7)")


def run_demo_command(args: argparse.Namespace) -> int:
    return run_demo(args.out, requests=args.requests, seed=args.seed)
