"""Prometheus series names and labels: worker slots instead of pids, census counts
apart from bytes, and workers' deaths by cause from the event bus.

Each test runs its exporter in a subprocess of its own (prometheus_client picks
its multiprocess mode at import) and scrapes the directory there or here.
(test_prometheus checks the same against a real gunicorn and Prometheus.)
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from memwarden.events import DEATH_CAUSES
from memwarden.export.prom_metrics import METRICS
from memwarden.export.prom_slots import claim, pids_by_slot, release

from .death_script import DEATHS_COUNTED, DEATHS_PUBLISHED

# A worker: takes its slot, publishes a census with counts and bytes, scrapes.
WORKER = """
import sys
from prometheus_client import generate_latest
from memwarden.export import prom_slots
from memwarden.export.prom_sink import _sink
from memwarden.export.prometheus import make_registry
slot = prom_slots.claim(sys.argv[1])
_sink.start_worker()
_sink.publish({"rss_bytes": 1000}, {"threads": 3, "fds": 9, "cache_bytes": 4096,
                                    "children_pss_bytes": 77, "gc.dict": 5})
print(generate_latest(make_registry(sys.argv[1])).decode())
"""

# The master: publishes deaths on the bus as hold and the watchdog do.
DEATHS = """
import sys
from memwarden.export import prometheus
from memwarden.settings import Settings
prometheus.setup_master(Settings(prometheus_dir=sys.argv[1]))
""" + DEATHS_PUBLISHED + """
from prometheus_client import generate_latest
print(generate_latest(prometheus.make_registry(sys.argv[1])).decode())
"""


def run(script: str, directory: Path) -> str:
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(directory)}
    return subprocess.run([sys.executable, "-c", script, str(directory)], env=env,
                          capture_output=True, text=True, timeout=30, check=True).stdout


def samples(text: str) -> dict[str, float]:
    return {line.rsplit(" ", 1)[0]: float(line.rsplit(" ", 1)[1])
            for line in text.splitlines() if line and not line.startswith("#")}


@pytest.mark.timeout(60)
def test_a_workers_series_carry_its_slot_not_its_pid(tmp_path: Path) -> None:
    text = run(WORKER, tmp_path)
    got = samples(text)
    assert got['memwarden_worker_rss_bytes{slot="0"}'] > 0  # refreshed from /proc
    assert "pid=" not in text, text
    # Which pid holds the slot: one series per slot, its value the pid.
    pid_lines = [k for k in got if k.startswith("memwarden_worker_pid")]
    assert pid_lines == ['memwarden_worker_pid{slot="0"}'], pid_lines


@pytest.mark.timeout(60)
def test_census_counts_and_bytes_are_apart(tmp_path: Path) -> None:
    """No metric name carries two units: counts in _census_count, bytes in _census_bytes."""
    got = samples(run(WORKER, tmp_path))
    assert got['memwarden_worker_census_count{kind="threads",slot="0"}'] == 3
    assert got['memwarden_worker_census_count{kind="fds",slot="0"}'] == 9
    assert got['memwarden_worker_census_bytes{kind="cache_bytes",slot="0"}'] == 4096
    census = {k for k in got if k.startswith("memwarden_worker_census")}
    assert not {k for k in census if "_bytes{" in k and 'kind="cache_bytes"' not in k}
    assert not [k for k in census if "_count{" in k and re.search(r'kind="[^"]*_bytes"', k)]
    # Exported elsewhere (descendants' PSS) or not at all (gc.* kinds churn).
    assert not [k for k in census if "children_pss_bytes" in k or "gc." in k]
    assert "memwarden_worker_census" not in METRICS  # the mixed-unit name is gone


@pytest.mark.timeout(60)
def test_deaths_are_counted_by_cause_from_the_bus(tmp_path: Path) -> None:
    got = samples(run(DEATHS, tmp_path))
    deaths = {k: v for k, v in got.items() if k.startswith("memwarden_worker_deaths_total")}
    assert deaths == {f'memwarden_worker_deaths_total{{cause="{cause}"}}': float(n)
                      for cause, n in DEATHS_COUNTED.items()}
    assert set(DEATH_CAUSES) == {"timeout", "oom_kill", "signal"}
    assert got["memwarden_oom_kills_total"] == DEATHS_COUNTED["oom_kill"]


def test_the_lowest_free_slot_is_taken_and_a_freed_one_reused(tmp_path: Path) -> None:
    """Slots are held by live processes only: a dead holder's slot goes to the next one."""
    holders = []
    code = ("import sys, time\nfrom memwarden.export import prom_slots\n"
            "print(prom_slots.claim(sys.argv[1]), flush=True)\ntime.sleep(60)\n")
    try:
        for _ in range(3):
            proc = subprocess.Popen([sys.executable, "-c", code, str(tmp_path)],
                                    stdout=subprocess.PIPE, text=True)
            holders.append(proc)
            assert proc.stdout is not None
            assert proc.stdout.readline().strip() == str(len(holders) - 1)
        assert pids_by_slot(str(tmp_path)) == {p.pid: i for i, p in enumerate(holders)}
        holders[1].kill()  # SIGKILL: no cleanup ran, the kernel drops the lock
        holders[1].wait(10)
        time.sleep(0.01)  # the replacement's write is newer than the dead holder's
        assert claim(str(tmp_path)) == 1
        assert pids_by_slot(str(tmp_path))[os.getpid()] == 1
        assert claim(str(tmp_path)) == 1  # once per process
    finally:
        release()
        for proc in holders:
            proc.kill()
            proc.wait(10)
            if proc.stdout is not None:
                proc.stdout.close()


def test_a_reused_pid_is_named_by_its_newest_slot(tmp_path: Path) -> None:
    """A dead worker's slot file keeps its pid; if the pid comes back holding another
    slot, the newer file names it."""
    old = tmp_path / ".memwarden-slot-0"
    new = tmp_path / ".memwarden-slot-3"
    old.write_text("4242")
    new.write_text("4242")
    os.utime(old, ns=(1_000_000_000, 1_000_000_000))
    assert pids_by_slot(str(tmp_path)) == {4242: 3}
