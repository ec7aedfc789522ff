"""bench-throughput's quick mode: under real gunicorn and wrk, every variant answers
every request 2xx, and memwarden writes one request line per request (200s only)."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"
VARIANT = re.compile(r"(flask|fastapi)\s+(\w+)\s+\d+ req/s\s+ratio [\d.]+\s+"
                     r"cpu\s+\d+ us/request \(\+\s*-?\d+\)\s+"
                     r"\((\d+) requests, (?:(\d+) lines, )?all 2xx\)")
LAST = re.compile(r"throughput_ratio=[\d.]+ asgi_throughput_ratio=[\d.]+ "
                  r"best_peer_ratio=[\d.]+ own_rss_mib=-?[\d.]+")
FLOOR = re.compile(r"floor_ratio=[\d.]+ asgi_floor_ratio=[\d.]+")
CONNECTIONS = 10  # the benchmark's: requests in flight when wrk stops


@pytest.mark.skipif(shutil.which("wrk") is None, reason="wrk is missing: make wrk")
def test_quick_mode_answers_every_request_and_logs_one_line_each(tmp_path: Path) -> None:
    done = subprocess.run([sys.executable, str(BENCHMARKS / "throughput.py"), "--quick",
                           "--keep", str(tmp_path)], capture_output=True, text=True,
                          timeout=280, cwd=BENCHMARKS)
    assert done.returncode == 0, done.stdout + done.stderr
    lines = done.stdout.splitlines()
    assert LAST.fullmatch(lines[-1]), lines
    assert FLOOR.fullmatch(lines[-2]), lines
    seen = {}
    for line in lines:
        match = VARIANT.fullmatch(line)
        if match:
            family, name, requests, logged = match.groups()
            seen[family, name] = (int(requests), logged)
    names = ("bare", "memwarden", "census", "prometheus", "naive", "floor")
    assert set(seen) == {(f, n) for f in ("flask", "fastapi") for n in names}, lines
    for family in ("flask", "fastapi"):
        for name in ("memwarden", "census"):
            requests, logged = seen[family, name]
            assert requests > 0
            assert logged is not None
            # One round: wrk's completed requests, plus at most those in flight at its end.
            assert requests <= int(logged) <= requests + CONNECTIONS, (family, name, lines)
            # Every line memwarden wrote says 200, and there is one per request.
            log = tmp_path / f"{family}-{name}.log"
            request_lines = [json.loads(text) for text in log.read_text().splitlines()
                             if '"message": "request"' in text]
            assert {entry["status"] for entry in request_lines} == {200}
            assert len(request_lines) >= int(logged)
            if name == "census":
                assert all("census" in entry for entry in request_lines)
