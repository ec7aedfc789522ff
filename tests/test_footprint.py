"""Footprints: own RSS or PSS plus descendants' PSS, sampled on a cadence."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from memwarden.footprint import FootprintSampler, cgroup_working_set, measure
from memwarden.system.probe import Descendants, Probe, SmapsRollup

MiB = 1024 * 1024


@pytest.fixture
def child() -> Iterator[subprocess.Popen[bytes]]:
    # The child keeps touching its 20 MiB: an idle buffer is what the kernel's
    # cold-page reclaim (DAMON runs on these machines) takes away first.
    # It says when the buffer is written: an RSS threshold would also be met by
    # whatever else the interpreter loads first (a coverage tracer, say).
    proc = subprocess.Popen([sys.executable, "-c",
                             "import time\nx = bytearray(b'y' * (20 * 1024 * 1024))\n"
                             "print('ready', flush=True)\n"
                             "for _ in range(600):\n    x[::4096] = x[1::4096]\n"
                             "    time.sleep(0.1)"], stdout=subprocess.PIPE)
    try:
        assert proc.stdout is not None and proc.stdout.readline() == b"ready\n"
        yield proc
    finally:
        proc.kill()
        proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()


def test_measure_adds_the_descendants_pss(child: subprocess.Popen[bytes]) -> None:
    fp = measure(os.getpid())
    assert fp is not None and fp.kind == "rss"
    statm = int(Path("/proc/self/statm").read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    assert abs(fp.own_bytes - statm) < 8 * MiB
    assert child.pid in fp.descendant_pids
    # At least most of the child's buffer (PSS also splits shared pages).
    assert fp.descendants_bytes is not None and fp.descendants_bytes >= 16 * MiB
    assert fp.total_bytes == fp.own_bytes + fp.descendants_bytes
    fields = fp.fields()
    assert fields["footprint_bytes"] == fp.total_bytes and fields["rss_bytes"] == fp.own_bytes
    alone = measure(os.getpid(), descendants=False)
    assert alone is not None and alone.descendants_bytes is None and alone.descendant_pids == ()


def test_measure_pss_mode_and_a_gone_process() -> None:
    fp = measure(os.getpid(), kind="pss", descendants=False)
    rss = measure(os.getpid(), descendants=False)
    assert fp is not None and rss is not None and fp.kind == "pss"
    assert 0 < fp.own_bytes <= rss.own_bytes + MiB
    assert measure(2**22 + 12345) is None


class FakeProbe(Probe):
    """A probe whose readings the test sets, counting the expensive ones."""

    def __init__(self) -> None:
        super().__init__()
        self.rss = 100 * MiB
        self.pss = 60 * MiB
        self.desc = 30 * MiB
        self.samples = 0

    def rss_bytes(self) -> int | None:
        return self.rss

    def smaps_rollup(self, pid: int | None = None) -> SmapsRollup | None:
        return SmapsRollup(self.rss, self.pss, self.pss, 0)

    def descendants_memory(self) -> Descendants | None:
        self.samples += 1
        return Descendants((4242,), self.desc, self.desc)


def test_sampler_takes_the_expensive_readings_every_n_requests() -> None:
    probe = FakeProbe()
    s = FootprintSampler("rss", True, every=5, seconds=0, process_probe=probe)
    totals = []
    for i in range(12):
        fp = s.observe({"rss_bytes": 100 * MiB + i})
        assert fp is not None
        totals.append(fp.total_bytes)
    assert probe.samples == 3  # the first request, then every 5th
    assert totals[0] == 130 * MiB
    probe.desc = 50 * MiB
    fp = s.now(fresh=True)
    assert fp is not None and fp.descendants_bytes == 50 * MiB and probe.samples == 4


def test_sampler_also_samples_after_some_seconds() -> None:
    probe = FakeProbe()
    now = [0.0]
    s = FootprintSampler("rss", True, every=1000, seconds=5.0, process_probe=probe,
                         clock=lambda: now[0])
    s.observe({"rss_bytes": 1})
    now[0] = 4.0
    s.observe({"rss_bytes": 1})
    assert probe.samples == 1
    now[0] = 5.0
    s.now()
    assert probe.samples == 2


def test_pss_between_samples_moves_with_rss() -> None:
    probe = FakeProbe()
    s = FootprintSampler("pss", False, every=1000, seconds=0, process_probe=probe)
    first = s.observe({"rss_bytes": 100 * MiB})
    assert first is not None and first.kind == "pss" and first.own_bytes == 60 * MiB
    later = s.observe({"rss_bytes": 110 * MiB})  # 10 MiB of private growth
    assert later is not None and later.own_bytes == 70 * MiB
    assert later.descendants_bytes is None


def test_sampler_uses_figures_the_request_line_already_has() -> None:
    probe = FakeProbe()
    s = FootprintSampler("pss", True, every=1000, seconds=0, process_probe=probe)
    s.observe({"rss_bytes": 100 * MiB})
    fp = s.observe({"rss_bytes": 100 * MiB, "pss_bytes": 80 * MiB,
                    "census": {"children_pss_bytes": 5 * MiB}})
    assert fp is not None and fp.own_bytes == 80 * MiB and fp.descendants_bytes == 5 * MiB


# -- cgroup working set over recorded trees ----------------------------------------------------

def _tree(tmp_path: Path, cgroup_line: str, files: dict[str, str]) -> tuple[str, str]:
    proc = tmp_path / "proc"
    (proc / "77").mkdir(parents=True)
    (proc / "77" / "cgroup").write_text(cgroup_line + "\n")
    sys_root = tmp_path / "sys"
    for rel, text in files.items():
        path = sys_root / "fs" / "cgroup" / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return str(proc), str(sys_root)


def test_working_set_v1_subtracts_inactive_page_cache(tmp_path: Path) -> None:
    proc, sys_root = _tree(tmp_path, "4:memory:/svc", {
        "memory/svc/memory.usage_in_bytes": "1000\n",
        "memory/svc/memory.limit_in_bytes": "2000\n",
        "memory/svc/memory.stat": "cache 500\ntotal_inactive_file 300\n"
                                  "hierarchical_memory_limit 2000\n",
    })
    assert cgroup_working_set(sys_root, process_probe=Probe(proc, sys_root, pid=77)) == (
        700, 2000)


def test_working_set_v2(tmp_path: Path) -> None:
    proc, sys_root = _tree(tmp_path, "0::/svc", {
        "svc/memory.current": "1000\n", "svc/memory.max": "2000\n",
        "svc/memory.stat": "anon 800\ninactive_file 100\n", "memory.max": "max\n",
    })
    assert cgroup_working_set(sys_root, process_probe=Probe(proc, sys_root, pid=77)) == (
        900, 2000)


def test_working_set_without_a_limit_is_none(tmp_path: Path) -> None:
    proc, sys_root = _tree(tmp_path, "0::/svc", {
        "svc/memory.current": "1000\n", "svc/memory.max": "max\n", "memory.max": "max\n"})
    assert cgroup_working_set(sys_root, process_probe=Probe(proc, sys_root, pid=77)) is None
