"""The overhead benchmarks run and end with their figures line.

Timing is not asserted here (it belongs to the benchmarks); this keeps the
scripts working as the code they measure changes, the parts diagnostic most
of all, since it stands in for memwarden's internals by name.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


@pytest.mark.parametrize(("script", "last"), [
    ("overhead.py", r"overhead_us=-?[\d.]+ naive_us=-?[\d.]+ ratio=-?[\d.]+"),
    ("overhead_parts.py", r"overhead_us=-?[\d.]+ blocks_us=-?[\d.]+ ratio=-?[\d.]+"),
])
def test_overhead_benchmark_runs(script: str, last: str) -> None:
    done = subprocess.run([sys.executable, str(BENCHMARKS / script), "--rounds", "1",
                           "--requests", "50"], capture_output=True, text=True, timeout=120,
                          cwd=BENCHMARKS)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert re.fullmatch(last, lines[-1]), lines
    assert done.stderr == ""


def test_analyze_scale_benchmark_runs_small() -> None:
    # Ten workers whose lives end after 2,000 to 3,000 requests: recycles, leaks found.
    done = subprocess.run([sys.executable, str(BENCHMARKS / "analyze_scale.py"),
                           "--lines", "60000", "--workers", "10", "--life", "2000:3000"],
                          capture_output=True, text=True, timeout=600, cwd=BENCHMARKS)
    assert done.returncode == 0, done.stdout + done.stderr
    lines = done.stdout.splitlines()
    assert re.fullmatch(r"lines=60000 seconds=[\d.]+ ratio_to_json_decode=[\d.]+ "
                        r"peak_rss_mib=\d+ peak_rss_mib_at_10m=\d+", lines[-1]), lines
    assert any(line.startswith("leaking lives found: yes") for line in lines), lines
    assert done.stderr == ""
