"""Signals by identity: a reused pid, a reaped process, another pid namespace."""

from __future__ import annotations

import errno
import logging
import os
import signal
import subprocess
import threading
from pathlib import Path

import pytest

from memwarden.system import probe, safe_kill
from memwarden.system.safe_kill import ProcessRef, process_ref, send_signal

STAT_TAIL = ("S 1 1 1 0 -1 4194560 2380 0 0 0 11 4 0 0 20 0 1 0 {start} 407691264 20000 "
             "18446744073709551615 1 1 0 0 0 0 0 16781312 17415 0 0 0 17 1 0 0 0 0 0 0 0")



@pytest.fixture(params=["pidfd", "start time alone"])
def way(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Both ways of sending: through a pidfd, and the fallback without one."""
    if request.param == "pidfd":
        if not safe_kill._pidfd:
            pytest.skip("no pidfd on this kernel or Python")
    else:
        monkeypatch.setattr(safe_kill, "_pidfd", False)
    return str(request.param)


def fake_root(tmp_path: Path, self_pid: int, stats: dict[int, str]) -> str:
    root = tmp_path / "proc"
    root.mkdir()
    (root / "self").symlink_to(str(self_pid))
    for pid, line in stats.items():
        (root / str(pid)).mkdir()
        (root / str(pid) / "stat").write_text(line)
    return str(root)


def start_of(pid: int) -> int:
    raw = Path(f"/proc/{pid}/stat").read_text()
    return int(raw[raw.rindex(")") + 2:].split()[19])


def untouched(proc: subprocess.Popen[bytes]) -> bool:
    """No fatal signal was sent to it: the exit status is fixed by the first one
    sent, so the SIGINT sent now shows in it only if none came before."""
    os.kill(proc.pid, signal.SIGINT)
    return proc.wait(5) == -signal.SIGINT


# -- the reference -------------------------------------------------------------------------


@pytest.mark.parametrize("comm", ["sleep", "a b", "x) R 999 (y", ") )", "(", ""])
def test_the_start_time_is_read_after_the_last_parenthesis(tmp_path: Path, comm: str) -> None:
    line = f"4242 ({comm}) {STAT_TAIL.format(start=777)}\n"
    root = fake_root(tmp_path, os.getpid(), {4242: line})
    assert process_ref(4242, root) == ProcessRef(4242, 777)


@pytest.mark.parametrize("line", ["", "4242 (x) S 1 2 3\n", "no parenthesis at all\n",
                                  f"4242 (x) {STAT_TAIL.format(start='soon')}\n"])
def test_a_missing_or_malformed_stat_gives_no_reference(tmp_path: Path, line: str) -> None:
    root = fake_root(tmp_path, os.getpid(), {4242: line})
    assert process_ref(4242, root) is None
    assert process_ref(4243, root) is None  # no such pid
    assert process_ref(0, root) is None


def test_a_live_process_has_its_own_start_time(sleeper: subprocess.Popen[bytes]) -> None:
    assert process_ref(sleeper.pid) == ProcessRef(sleeper.pid, start_of(sleeper.pid))


# -- sending ---------------------------------------------------------------------------------


def test_a_live_process_is_really_signalled(way: str, sleeper: subprocess.Popen[bytes]) -> None:
    ref = process_ref(sleeper.pid)
    assert ref is not None
    assert send_signal(ref, signal.SIGTERM) is True
    assert sleeper.wait(5) == -signal.SIGTERM


def test_a_reaped_process_is_not_signalled(way: str) -> None:
    proc = subprocess.Popen(["true"])
    ref = process_ref(proc.pid)
    assert ref is not None
    proc.wait()
    assert send_signal(ref, signal.SIGTERM) is False
    assert send_signal(ref, 0) is False


def test_another_start_time_at_the_pid_is_not_signalled(
        way: str, sleeper: subprocess.Popen[bytes]) -> None:
    """The pid was reused: the process holding it now started at another time."""
    ref = process_ref(sleeper.pid)
    assert ref is not None
    assert send_signal(ProcessRef(ref.pid, ref.start_ticks - 1), signal.SIGTERM) is False
    assert send_signal(ProcessRef(ref.pid, ref.start_ticks + 1), signal.SIGTERM) is False
    assert untouched(sleeper)


def test_under_another_root_the_start_time_read_there_decides(
        way: str, tmp_path: Path, sleeper: subprocess.Popen[bytes]) -> None:
    real = Path(f"/proc/{sleeper.pid}/stat").read_text()
    root = fake_root(tmp_path, os.getpid(), {sleeper.pid: real})
    ref = process_ref(sleeper.pid, root)
    assert ref == ProcessRef(sleeper.pid, start_of(sleeper.pid))
    (Path(root) / str(sleeper.pid) / "stat").write_text(
        real.replace(f" {ref.start_ticks} ", f" {ref.start_ticks + 5} "))
    assert send_signal(ref, signal.SIGTERM, root) is False
    assert untouched(sleeper)


def test_another_pid_namespace_is_refused_with_one_warning(
        way: str, tmp_path: Path, sleeper: subprocess.Popen[bytes],
        caplog: pytest.LogCaptureFixture) -> None:
    """Its /proc/self is not us: its pid numbers name other processes here."""
    root = fake_root(tmp_path, 1, {sleeper.pid: Path(f"/proc/{sleeper.pid}/stat").read_text()})
    ref = process_ref(sleeper.pid, root)
    assert ref is not None
    with caplog.at_level(logging.WARNING, logger="memwarden.safe_kill"):
        assert [send_signal(ref, signal.SIGTERM, root) for _ in range(3)] == [False] * 3
    warnings = [r.getMessage() for r in caplog.records if r.name == "memwarden.safe_kill"]
    assert len(warnings) == 1 and root in warnings[0]
    assert untouched(sleeper)


def test_a_root_without_self_is_refused(tmp_path: Path, sleeper: subprocess.Popen[bytes]) -> None:
    root = tmp_path / "proc"
    (root / str(sleeper.pid)).mkdir(parents=True)
    (root / str(sleeper.pid) / "stat").write_text(Path(f"/proc/{sleeper.pid}/stat").read_text())
    ref = process_ref(sleeper.pid, str(root))
    assert ref is not None
    assert send_signal(ref, signal.SIGTERM, str(root)) is False
    assert untouched(sleeper)


def test_no_root_given_means_the_configured_one(
        tmp_path: Path, sleeper: subprocess.Popen[bytes]) -> None:
    root = fake_root(tmp_path, 1, {sleeper.pid: Path(f"/proc/{sleeper.pid}/stat").read_text()})
    ref = process_ref(sleeper.pid)
    assert ref is not None
    probe.configure(root)
    try:
        assert probe.configured_proc_root() == root
        assert process_ref(sleeper.pid) == ref  # read from the configured root
        assert send_signal(ref, signal.SIGTERM) is False  # and refused there
    finally:
        probe.configure()
    assert untouched(sleeper)


@pytest.mark.parametrize("pid", [0, -1])
def test_pids_that_name_groups_are_never_signalled(pid: int) -> None:
    """kill(0) and kill(-1) would reach a process group, or every process."""
    assert send_signal(ProcessRef(pid, start_of(os.getpid())), 0) is False


def test_it_never_raises(way: str, sleeper: subprocess.Popen[bytes]) -> None:
    ref = process_ref(sleeper.pid)
    assert ref is not None
    assert send_signal(ref, 10_000) is False  # no such signal
    assert send_signal(ref, 0, "/nonexistent/proc") is False
    assert untouched(sleeper)


def test_a_kernel_without_pidfd_falls_back_to_the_start_time(
        monkeypatch: pytest.MonkeyPatch, sleeper: subprocess.Popen[bytes]) -> None:
    if not hasattr(os, "pidfd_open"):
        pytest.skip("no os.pidfd_open in this Python")

    def no_pidfd(pid: int, flags: int = 0) -> int:
        raise OSError(errno.ENOSYS, "Function not implemented")

    monkeypatch.setattr(safe_kill, "_pidfd", True)
    monkeypatch.setattr(os, "pidfd_open", no_pidfd)
    ref = process_ref(sleeper.pid)
    assert ref is not None
    assert send_signal(ProcessRef(ref.pid, ref.start_ticks + 1), signal.SIGTERM) is False
    assert safe_kill._pidfd is False  # not tried again
    assert send_signal(ref, signal.SIGTERM) is True
    assert sleeper.wait(5) == -signal.SIGTERM


def test_a_thread_id_is_not_pinned_as_a_process() -> None:
    """pidfd_open takes processes only: a thread's id is refused, not signalled."""
    if not safe_kill._pidfd:
        pytest.skip("no pidfd on this kernel or Python")
    stop = threading.Event()
    thread = threading.Thread(target=stop.wait)
    thread.start()
    try:
        tid = thread.native_id
        assert tid is not None and tid != os.getpid()
        ref = process_ref(tid)
        assert ref is not None
        assert send_signal(ref, 0) is False
        assert safe_kill._pidfd is True  # a refusal, not a kernel without pidfds
    finally:
        stop.set()
        thread.join()
