"""bench-hostile's quick mode: hostile traffic makes no 5xx of memwarden's own and
leaves no secret in memwarden's log or reports."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"
LAST = re.compile(r"hostile_requests=(\d+) server_errors=(\d+) secrets_in_logs=(\d+) "
                  r"memwarden_growth_kib_per_1k=-?[\d.]+ baseline_growth_kib_per_1k=-?[\d.]+")


def test_hostile_quick_mode_has_no_server_errors_and_no_secrets(tmp_path: Path) -> None:
    done = subprocess.run([sys.executable, str(BENCHMARKS / "hostile.py"), "--requests", "400",
                           "--out", str(tmp_path)], capture_output=True, text=True, timeout=600,
                          cwd=BENCHMARKS)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    match = LAST.fullmatch(lines[-1])
    assert match, lines
    sent, errors, secrets = map(int, match.groups())
    assert sent == 400
    assert errors == 0, lines
    assert secrets == 0, lines
    # The reports were written, and the marker went out in the traffic.
    assert (tmp_path / "report.json").stat().st_size > 0
    assert (tmp_path / "report.html").stat().st_size > 0
    assert any(re.search(r"bare service's own log .*marker [1-9]", line) for line in lines), lines
