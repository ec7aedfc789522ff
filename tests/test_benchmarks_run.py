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
