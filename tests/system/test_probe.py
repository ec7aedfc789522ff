"""Process memory probes: recorded /proc and /sys trees, then this machine's own."""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from memwarden.system import probe as probe_mod
from memwarden.system.probe import CgroupMemory, Descendants, Probe, SmapsRollup

DATA = Path(__file__).parent.parent / "data"
PAGE = os.sysconf("SC_PAGE_SIZE")
KIB = 1024
MIB = 1024 * 1024
V1_NO_LIMIT = 9223372036854771712


def recorded(tree: str, pid: int, sys_tree: str = "sys_nolimit") -> Probe:
    return Probe(proc_root=str(DATA / tree), sys_root=str(DATA / sys_tree), pid=pid)


def statm_rss(pid: int | str = "self") -> int:
    with open(f"/proc/{pid}/statm", "rb") as fh:
        return int(fh.read().split()[1]) * PAGE


def probe_warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records
            if r.name == "memwarden.probe" and r.levelno == logging.WARNING]


# -- recorded /proc: per-process readings -----------------------------------------------


def test_rss_is_resident_pages_of_recorded_statm_times_page_size() -> None:
    p = recorded("proc_children", 4121)
    try:
        assert p.rss_bytes() == 20000 * PAGE
    finally:
        p.close()


def test_rss_rereads_the_kept_descriptor_and_opens_it_only_once(tmp_path: Path) -> None:
    """A rewrite of statm in place shows on the next call, through the same descriptor."""
    tree = tmp_path / "proc"
    shutil.copytree(DATA / "proc_children", tree)
    statm = tree / "4121" / "statm"
    p = Probe(proc_root=str(tree), pid=4121)
    try:
        assert p.rss_bytes() == 20000 * PAGE
        fds_after_first = len(os.listdir("/proc/self/fd"))
        with open(statm, "r+") as fh:  # same inode, like the kernel's file
            fh.write("99530 31337 3000 700 0 25000 0\n")
        for _ in range(200):
            assert p.rss_bytes() == 31337 * PAGE
        assert len(os.listdir("/proc/self/fd")) == fds_after_first
    finally:
        p.close()
    assert len(os.listdir("/proc/self/fd")) == fds_after_first - 1


def test_peak_rss_and_threads_come_from_recorded_status() -> None:
    p = recorded("proc_children", 4121)
    assert p.peak_rss_bytes() == 123456 * KIB
    assert p.threads() == 4


def test_open_fds_counts_the_recorded_fd_directory() -> None:
    assert recorded("proc_children", 4121).open_fds() == 7


def test_smaps_rollup_gives_rss_pss_uss_and_swap_in_bytes() -> None:
    rollup = recorded("proc_children", 4121).smaps_rollup()
    assert rollup == SmapsRollup(rss_bytes=80000 * KIB, pss_bytes=60000 * KIB,
                                 uss_bytes=(1000 + 50000) * KIB, swap_bytes=12 * KIB)


def test_smaps_rollup_of_a_vanished_descendant_is_none_without_a_warning(
        caplog: pytest.LogCaptureFixture) -> None:
    p = recorded("proc_children", 4121)
    with caplog.at_level(logging.WARNING, logger="memwarden.probe"):
        assert p.smaps_rollup(4203) is None
    assert probe_warnings(caplog) == []


# -- recorded /proc: descendants ---------------------------------------------------------


def test_descendants_follow_every_threads_children_file_breadth_first() -> None:
    pids = recorded("proc_children", 4121).descendants()
    assert pids is not None
    # 4202 was forked from the second thread; 4203 was listed, then exited; 4400 is
    # not ours. Level one comes before level two, in any order within a level.
    assert sorted(pids[:4]) == [4200, 4201, 4202, 4203]
    assert pids[4:] == (4300,)


def test_descendants_memory_sums_pss_and_rss_of_the_descendants_that_are_still_there() -> None:
    desc = recorded("proc_children", 4121).descendants_memory()
    assert desc is not None
    assert desc.count == 5
    assert desc.pss_bytes == (1000 + 2000 + 500 + 250) * KIB
    assert desc.rss_bytes == (3000 + 4000 + 900 + 700) * KIB


def test_without_children_files_descendants_come_from_a_ppid_scan_of_stat_files() -> None:
    """comm may hold spaces and ')': ppid is read after the last ')'."""
    p = recorded("proc_nochildren", 4121)
    pids = p.descendants()
    assert pids is not None
    assert sorted(pids[:2]) == [4200, 4201]  # 4200's comm is "x) R 999 (y"
    assert pids[2:] == (4300,)  # comm ") )", a grandchild
    desc = p.descendants_memory()
    assert desc == Descendants(pids, (1000 + 2000 + 250) * KIB, (3000 + 4000 + 700) * KIB)


def test_the_ppid_scan_does_not_mistake_a_decoy_parent_in_comm() -> None:
    """999 appears as a fake ppid inside 4200's comm; 999's real children stay apart."""
    assert recorded("proc_nochildren", 999).descendants() == (4500,)


def test_a_process_without_children_has_no_descendants_and_zero_pss() -> None:
    p = recorded("proc_children", 4201)
    assert p.descendants() == ()
    assert p.descendants_memory() == Descendants((), 0, 0)


# -- degraded probes ---------------------------------------------------------------------


def _every_reading(p: Probe) -> list[object]:
    return [p.rss_bytes(), p.peak_rss_bytes(), p.threads(), p.open_fds(), p.smaps_rollup(),
            p.descendants(), p.descendants_memory(), p.cgroup_memory()]


@pytest.mark.parametrize("kind", ["absent", "a file"])
def test_an_unreadable_proc_root_gives_none_everywhere_and_one_warning(
        tmp_path: Path, caplog: pytest.LogCaptureFixture, kind: str) -> None:
    """Tests run as root, so mode 000 stops nothing: an absent path and a regular file do."""
    root = tmp_path / "proc"
    if kind == "a file":
        root.write_text("not a directory\n")
    p = Probe(proc_root=str(root), sys_root=str(tmp_path / "sys"))
    with caplog.at_level(logging.WARNING, logger="memwarden.probe"):
        for _ in range(3):
            assert _every_reading(p) == [None] * 8
    # The whole tree is missing: one warning names it, not one per probe kind.
    warnings = probe_warnings(caplog)
    assert len(warnings) == 1
    assert str(root) in warnings[0]
    p.close()


def test_each_missing_file_warns_once_per_probe_kind(caplog: pytest.LogCaptureFixture) -> None:
    """The pid directory exists but holds only stat: one warning per kind, none repeated."""
    p = recorded("proc_partial", 4121)
    with caplog.at_level(logging.WARNING, logger="memwarden.probe"):
        for _ in range(3):
            assert p.rss_bytes() is None
            assert p.peak_rss_bytes() is None
            assert p.threads() is None
            assert p.open_fds() is None
            assert p.smaps_rollup() is None
            assert p.cgroup_memory() is None
            assert p.descendants() == ()
    warnings = probe_warnings(caplog)
    kinds = ["statm", "status", "fd", "smaps_rollup", "cgroup"]
    assert len(warnings) == len(kinds)
    for kind, message in zip(kinds, warnings, strict=True):
        assert f"probe {kind} unavailable" in message
    p.close()


def test_malformed_statm_and_status_give_none_not_an_exception(
        caplog: pytest.LogCaptureFixture) -> None:
    p = recorded("proc_partial", 4122)
    with caplog.at_level(logging.WARNING, logger="memwarden.probe"):
        assert p.rss_bytes() is None
        assert p.threads() is None
        assert p.peak_rss_bytes() is None  # absent from that status file: no warning
    assert len(probe_warnings(caplog)) == 2
    p.close()


def test_configure_points_the_process_wide_probe_at_other_roots() -> None:
    before = probe_mod.current()
    try:
        probe_mod.configure(str(DATA / "proc_children"), str(DATA / "sys_cgroup_hybrid"))
        configured = probe_mod.current()
        assert configured is not before
        assert (configured.proc_root, configured.sys_root) == (
            str(DATA / "proc_children"), str(DATA / "sys_cgroup_hybrid"))
        assert probe_mod.current() is configured  # made once, then reused
    finally:
        probe_mod.configure("/proc", "/sys")
    assert probe_mod.current().proc_root == "/proc"


# -- recorded cgroups --------------------------------------------------------------------


def test_cgroup_on_a_hybrid_host_is_the_nested_v1_memory_group() -> None:
    """/proc/PID/cgroup has 4:memory:/process_api/<id> and 0::/, like this machine."""
    cg = recorded("proc_cgroup", 10, "sys_cgroup_hybrid").cgroup_memory()
    assert cg == CgroupMemory(version=1, path="/process_api/27e535bdda04c67bc4be22d8760573fd",
                              current_bytes=3874816, limit_bytes=None, oom_kills=2)


def test_cgroup_on_a_hybrid_host_reads_the_same_from_the_pid_directory_layout() -> None:
    cg = recorded("proc_children", 4121, "sys_cgroup_hybrid").cgroup_memory()
    assert cg is not None
    assert (cg.version, cg.limit_bytes) == (1, None)


def test_cgroup_v1_limit_and_oom_kills_of_a_kubernetes_container() -> None:
    cg = recorded("proc_cgroup", 11, "sys_cgroup_v1").cgroup_memory()
    assert cg == CgroupMemory(1, "/kubepods/burstable/pod1/ctr1", 268435456, 536870912, 3)


def test_cgroup_v1_without_its_own_limit_reports_the_inherited_pod_limit() -> None:
    """limit_in_bytes is 'no limit', but hierarchical_memory_limit says 1 GiB applies."""
    cg = recorded("proc_cgroup", 16, "sys_cgroup_v1").cgroup_memory()
    assert cg == CgroupMemory(1, "/kubepods/burstable/pod1/ctr2", 100000000, 1073741824, 0)


def test_cgroup_v2_reads_current_max_and_oom_kill_from_events() -> None:
    cg = recorded("proc_cgroup", 12, "sys_cgroup_v2").cgroup_memory()
    assert cg == CgroupMemory(2, "/system.slice/app.service", 104857600, 268435456, 1)


def test_cgroup_v2_max_means_no_limit() -> None:
    cg = recorded("proc_cgroup", 12, "sys_nolimit").cgroup_memory()
    assert cg == CgroupMemory(2, "/system.slice/app.service", 104857600, None, 0)


def test_cgroup_v2_max_under_a_limited_slice_reports_the_slice_limit() -> None:
    cg = recorded("proc_cgroup", 17, "sys_cgroup_v2").cgroup_memory()
    assert cg == CgroupMemory(2, "/limited.slice/child.service", 200000000, 536870912, 4)


def test_cgroup_namespace_path_missing_from_the_mount_resolves_to_the_mount_root() -> None:
    """Inside a cgroup namespace the mount root is the container's own group."""
    cg = recorded("proc_cgroup", 13, "sys_cgroup_ns").cgroup_memory()
    assert cg == CgroupMemory(2, "/", 52428800, 134217728, 7)


def test_cgroup_path_missing_from_the_mount_resolves_to_its_deepest_existing_ancestor() -> None:
    cg = recorded("proc_cgroup", 14, "sys_cgroup_v2").cgroup_memory()
    assert cg is not None
    assert (cg.path, cg.current_bytes, cg.limit_bytes) == ("/system.slice", 900000000, None)


def test_cgroup_names_with_leading_and_trailing_dots_are_kept() -> None:
    cg = recorded("proc_cgroup", 15, "sys_cgroup_v2").cgroup_memory()
    assert cg is not None
    assert (cg.path, cg.current_bytes) == ("/.hidden/app.", 4096)


def test_cgroup_without_a_memory_group_anywhere_is_none() -> None:
    """v2 root has no memory.current and the hybrid tree has no v2 memory files."""
    assert recorded("proc_cgroup", 12, "sys_cgroup_hybrid").cgroup_memory() is None


def test_cgroup_file_missing_gives_none_and_one_warning(caplog: pytest.LogCaptureFixture) -> None:
    p = recorded("proc_cgroup", 18, "sys_cgroup_v2")
    with caplog.at_level(logging.WARNING, logger="memwarden.probe"):
        assert p.cgroup_memory() is None
        assert p.cgroup_memory() is None
    assert len(probe_warnings(caplog)) == 1


# -- this machine ------------------------------------------------------------------------


def test_rss_of_this_process_matches_proc_self_statm_and_psutil() -> None:
    p = Probe()
    try:
        before = statm_rss()
        rss = p.rss_bytes()
        after = statm_rss()
        assert rss is not None
        assert min(before, after) - MIB <= rss <= max(before, after) + MIB
        assert abs(rss - psutil.Process().memory_info().rss) < 4 * MIB
        peak = p.peak_rss_bytes()
        assert peak is not None and peak >= rss - MIB
    finally:
        p.close()


def test_rss_follows_a_real_allocation_of_this_process() -> None:
    p = Probe()
    try:
        base = p.rss_bytes()
        blob = b"\x01" * (64 * MIB)  # written, so resident
        grown = p.rss_bytes()
        assert base is not None and grown is not None
        assert grown - base >= 60 * MIB
        del blob
    finally:
        p.close()


def test_after_fork_the_child_reads_its_own_rss_not_the_parents() -> None:
    """The cached statm descriptor is keyed by pid: the child reopens its own."""
    p = Probe()
    assert p.rss_bytes() is not None  # the parent's descriptor is open before the fork
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: never return into pytest
        code = 1
        try:
            os.close(read_end)
            # Written, so resident: the child outgrows the parent. Not by all of it:
            # a forked child counts the file-backed pages it inherits only once it
            # touches them, and a pytest process that imported much holds many.
            blob = b"\x01" * (256 * MIB)
            own_before = statm_rss(os.getpid())
            probed = p.rss_bytes()
            own_after = statm_rss(os.getpid())
            parent = statm_rss(os.getppid())
            os.write(write_end, f"{own_before} {probed} {own_after} {parent} {len(blob)}".encode())
            code = 0
        finally:
            os._exit(code)
    os.close(write_end)
    with os.fdopen(read_end, "rb") as fh:
        report = fh.read().decode()
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0, report
    own_before, probed, own_after, parent, _ = (int(x) for x in report.split())
    assert min(own_before, own_after) - MIB <= probed <= max(own_before, own_after) + MIB
    # What the inherited descriptor would have read lies outside that band.
    assert not min(own_before, own_after) - MIB <= parent <= max(own_before, own_after) + MIB
    # The child closed its copy of the descriptor; the parent's own still reads the parent.
    again = p.rss_bytes()
    assert again is not None
    assert abs(again - statm_rss()) < 4 * MIB
    p.close()


def test_a_probe_for_another_pid_reads_that_process() -> None:
    child = subprocess.Popen(["sleep", "5"])
    try:
        p = Probe(pid=child.pid)
        rss = p.rss_bytes()
        assert rss is not None
        assert abs(rss - statm_rss(child.pid)) <= MIB
        assert rss < statm_rss() / 2  # sleep is far smaller than this interpreter
        fds = len(os.listdir("/proc/self/fd"))
        p.close()  # the descriptor of another pid's statm is closed too
        assert len(os.listdir("/proc/self/fd")) == fds - 1
    finally:
        child.kill()
        child.wait()


def test_threads_and_open_fds_of_this_process_track_real_threads_and_files(
        tmp_path: Path) -> None:
    p = Probe()
    threads_before, fds_before = p.threads(), p.open_fds()
    assert threads_before is not None and fds_before is not None
    stop = threading.Event()
    workers = [threading.Thread(target=stop.wait) for _ in range(3)]
    for t in workers:
        t.start()
    files = [open(tmp_path / f"f{i}", "w") for i in range(5)]  # noqa: SIM115
    try:
        assert p.threads() == threads_before + 3
        assert p.open_fds() == fds_before + 5
    finally:
        stop.set()
        for t in workers:
            t.join()
        for f in files:
            f.close()
    # join() returns once the Python thread is done; the OS thread may take a
    # moment more to leave the task list on a loaded machine.
    deadline = time.monotonic() + 10
    while p.threads() != threads_before and time.monotonic() < deadline:
        time.sleep(0.01)
    assert p.threads() == threads_before
    assert p.open_fds() == fds_before


def test_smaps_rollup_of_this_process_is_consistent_with_psutil() -> None:
    rollup = Probe().smaps_rollup()
    assert rollup is not None
    assert 0 < rollup.uss_bytes <= rollup.pss_bytes <= rollup.rss_bytes
    full = psutil.Process().memory_full_info()
    assert abs(rollup.pss_bytes - full.pss) < 8 * MIB
    assert abs(rollup.uss_bytes - full.uss) < 8 * MIB


@contextlib.contextmanager
def spawned_tree(script: str, expected: int) -> Iterator[subprocess.Popen[bytes]]:
    """Run ``sh -c script`` in its own session; wait until it has ``expected`` descendants
    and every ``sleep`` in it runs: a forked shell not yet turned into ``sleep`` by exec
    still has the shell's pages, and the memory figures compared would move under the test."""
    proc = subprocess.Popen(["sh", "-c", script], start_new_session=True)
    sleeps = script.count("sleep ")
    try:
        deadline = time.monotonic() + 5
        while not _started(proc.pid, expected, sleeps):
            if time.monotonic() > deadline:
                raise TimeoutError(f"{script!r} did not start {expected} processes")
            time.sleep(0.01)
        yield proc
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def _started(pid: int, expected: int, sleeps: int) -> bool:
    children = psutil.Process(pid).children(recursive=True)
    try:
        running = sum(1 for c in children if c.name() == "sleep")
    except psutil.NoSuchProcess:
        return False
    return len(children) >= expected and running >= sleeps


def test_descendants_of_a_real_process_tree_are_found_with_their_pss_summed() -> None:
    with spawned_tree("sleep 5 & sleep 5", expected=2) as proc:
        oracle = psutil.Process(proc.pid).children(recursive=True)
        desc = Probe(pid=proc.pid).descendants_memory()
        assert desc is not None
        assert sorted(desc.pids) == sorted(c.pid for c in oracle)
        pss = sum(c.memory_full_info().pss for c in oracle)
        rss = sum(c.memory_info().rss for c in oracle)
        assert desc.pss_bytes is not None and desc.rss_bytes is not None
        assert desc.pss_bytes > 0
        # PSS shifts as other processes map or unmap the same libraries.
        assert desc.pss_bytes == pytest.approx(pss, rel=0.25, abs=256 * KIB)
        assert desc.rss_bytes == pytest.approx(rss, rel=0.25, abs=256 * KIB)
        # Seen from this process, the shell and both sleeps are descendants.
        mine = Probe().descendants()
        assert mine is not None
        assert {proc.pid, *desc.pids} <= set(mine)


def test_descendants_reach_grandchildren_of_a_real_process_tree() -> None:
    with spawned_tree("(sleep 5 & wait) & sleep 5", expected=3) as proc:
        oracle = psutil.Process(proc.pid).children(recursive=True)
        pids = Probe(pid=proc.pid).descendants()
        assert pids is not None
        assert sorted(pids) == sorted(c.pid for c in oracle)
        depths = {c.pid: 2 if c.ppid() != proc.pid else 1 for c in oracle}
        assert 2 in depths.values()
        first_grandchild = min(pids.index(pid) for pid, d in depths.items() if d == 2)
        assert all(pids.index(pid) < first_grandchild for pid, d in depths.items() if d == 1)


def test_the_real_cgroup_of_this_machine_is_found_with_a_path_that_exists() -> None:
    lines = Path("/proc/self/cgroup").read_text().splitlines()
    v1 = [line.split(":", 2)[2] for line in lines
          if "memory" in line.split(":", 2)[1].split(",")]
    cg = Probe().cgroup_memory()
    if v1 and Path("/sys/fs/cgroup/memory").is_dir():
        assert cg is not None
        assert cg.version == 1
        group = Path("/sys/fs/cgroup/memory" + cg.path)
        assert (group / "memory.usage_in_bytes").is_file()
        if Path("/sys/fs/cgroup/memory" + v1[0]).is_dir():
            assert cg.path == v1[0]
        else:  # a cgroup namespace: the deepest ancestor the mount shows
            assert v1[0].startswith(cg.path)
        expected_limit = int((group / "memory.limit_in_bytes").read_text())
        if expected_limit >= V1_NO_LIMIT:
            assert cg.limit_bytes is None or cg.limit_bytes < expected_limit
        else:
            assert cg.limit_bytes is not None and cg.limit_bytes <= expected_limit
    elif Path("/sys/fs/cgroup/cgroup.controllers").is_file():
        if cg is None:
            pytest.skip("pure v2 host without a memory group for this process")
        assert cg.version == 2
        assert (Path("/sys/fs/cgroup" + cg.path) / "memory.current").is_file()
    else:
        pytest.skip("no cgroup memory controller mounted here")
    assert cg.current_bytes is not None and cg.current_bytes > 0
    assert cg.oom_kills is not None and cg.oom_kills >= 0
