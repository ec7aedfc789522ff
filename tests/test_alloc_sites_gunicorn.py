"""Allocation sites under real gunicorn: the first worker only, named at the app's line,
and read by memwarden analyze as an allocation suspect."""

from __future__ import annotations

import json
import subprocess
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from support import REPO, VENV_BIN, gunicorn

HOLD_CONF = str(REPO / "tests" / "apps" / "hold_conf.py")
LEAK_LINE = next(n for n, text in enumerate(
    (REPO / "tests" / "apps" / "hold_app.py").read_text().splitlines(), 1)
    if "_kept.append(" in text)


def test_the_first_worker_logs_the_leaking_line(tmp_path: Path) -> None:
    env = {"MEMWARDEN_TRACEMALLOC": "10", "MEMWARDEN_TRACEMALLOC_EVERY": "20",
           "MEMWARDEN_TRACEMALLOC_WORKERS": "1", "MEMWARDEN_SOFT_LIMIT": "off",
           "MEMWARDEN_IDLE_LIMIT": "off", "MEMWARDEN_HARD_LIMIT": "off"}
    with gunicorn("hold_app:app", tmp_path, args=["-w", "2"], config=HOLD_CONF,
                  env=env) as server:
        assert len(server.worker_pids(expect=2)) == 2
        counts: dict[int, int] = {}
        sent = 0
        # Until each worker served 41. The kernel picks which worker accepts: one
        # client at a time can leave the untraced (faster) worker nearly everything,
        # so four at once keep both busy.
        with ThreadPoolExecutor(4) as clients:
            while sent < 1600:
                statuses = list(clients.map(
                    lambda _: server.request("GET", "/leak?mb=0.02")[0], range(40)))
                assert statuses == [200] * 40
                sent += 40
                counts = {}
                for x in server.request_lines(sent):
                    counts[x["pid"]] = counts.get(x["pid"], 0) + 1
                if len(counts) == 2 and min(counts.values()) >= 41:
                    break
        lines = server.lines("memwarden.tracemalloc", "allocation_sites")
        log = server.log_path
    assert len(counts) == 2 and min(counts.values()) >= 41, counts
    [sampled] = {x["pid"] for x in lines}  # one worker only
    # A snapshot at its first request, then one line every 20 (at the time of the read).
    assert len(lines) >= 2 and len(lines) <= (counts[sampled] - 1) // 20
    for line in lines:
        assert line["window_requests"] == 20
        assert line["sites"][0]["site"] == f"hold_app.py:{LEAK_LINE}", line["sites"][:3]
        assert line["sites"][0]["size_diff_bytes"] >= 20 * 20_000
    report_path = tmp_path / "report.json"
    done = subprocess.run([str(VENV_BIN / "memwarden"), "analyze", str(log), "--json",
                           str(report_path)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    report = json.loads(report_path.read_text())
    sites = [s for s in report["suspects"] if s["kind"] == "allocation"]
    assert sites and sites[0]["name"] == f"hold_app.py:{LEAK_LINE}", sites
