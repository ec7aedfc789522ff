"""The recall benchmark runs end to end in its quick mode and ends with its figures line.

Verdicts and timing are not asserted here (the benchmark reports them); this
keeps the script, its app templates and the audit it drives working together.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


def test_recall_benchmark_quick_mode_runs() -> None:
    done = subprocess.run([sys.executable, str(BENCHMARKS / "recall.py"), "--quick"],
                          capture_output=True, text=True, timeout=600, cwd=BENCHMARKS)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert re.fullmatch(r"recall_fixed=\d+/2 recall_adaptive=\d+/2 false_leaks=\d+/2 "
                        r"median_requests_adaptive=\d+", lines[-1]), lines
    assert any(line.startswith("dict_objects") for line in lines)
    assert any(line.startswith("plateau test on 8 simulated") for line in lines)
