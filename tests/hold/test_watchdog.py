"""The master's hard limit signals the worker it measured, never another process.

A recorded proc root stands in for /proc so the test decides what the
watchdog reads (a worker's RSS, its start time); the pid it names is a real
``sleep`` of this test, so a signal that should not go out is seen to land.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from memwarden.hold import perform as actions
from memwarden.hold.watchdog import TICK_SECONDS, Watchdog
from memwarden.settings import Settings

MIB = 1024 * 1024
PAGE = os.sysconf("SC_PAGE_SIZE")


@dataclass
class Worker:
    pid: int
    age: int = 1


@dataclass
class Arbiter:
    """The part of gunicorn's Arbiter the watchdog reads."""

    WORKERS: dict[int, Worker] = field(default_factory=dict)
    num_workers: int = 1


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now

    def advance(self) -> None:
        self.now += TICK_SECONDS + 0.1


class FakeProc:
    """A proc root showing one real pid with a start time and RSS of our choosing."""

    def __init__(self, root: Path, pid: int, self_pid: int) -> None:
        self.root = root
        self.pid = pid
        (root / str(pid)).mkdir(parents=True)
        (root / "self").symlink_to(str(self_pid))
        real = Path(f"/proc/{pid}/stat").read_text()
        self.head, rest = real[:real.rindex(")") + 2], real[real.rindex(")") + 2:].split()
        self.fields = rest
        self.real_start = int(rest[19])

    def show(self, start: int, rss_bytes: int) -> None:
        fields = [*self.fields[:19], str(start), *self.fields[20:]]
        (self.root / str(self.pid) / "stat").write_text(self.head + " ".join(fields) + "\n")
        (self.root / str(self.pid) / "statm").write_text(
            f"{rss_bytes // PAGE * 4} {rss_bytes // PAGE} 0 0 0 0 0\n")



def _watchdog(root: Path, pid: int) -> tuple[Watchdog, Clock]:
    settings = Settings.from_env({}, hard_limit=Settings.from_env(
        {"MEMWARDEN_HARD_LIMIT": "10MiB"}).hard_limit, soft_limit=None, idle_limit=None,
        orphans=actions.OFF, footprint_descendants=False, grace_seconds=0.0,
        proc_root=str(root), sys_root=str(root / "sys"))
    clock = Clock()
    wd = Watchdog(settings, clock=clock)
    wd.server = Arbiter({pid: Worker(pid)})
    return wd, clock


def _signalled(proc: subprocess.Popen[bytes]) -> int | None:
    try:
        return proc.wait(5)
    except subprocess.TimeoutExpired:
        return None


def _untouched(proc: subprocess.Popen[bytes]) -> bool:
    """No fatal signal was sent to it: the kernel fixes a process's exit status when
    the first one is sent, so the SIGINT sent now shows in it only if none came before."""
    os.kill(proc.pid, signal.SIGINT)
    return _signalled(proc) == -signal.SIGINT


def test_a_worker_over_the_hard_limit_is_signalled(
        tmp_path: Path, sleeper: subprocess.Popen[bytes]) -> None:
    fake = FakeProc(tmp_path / "proc", sleeper.pid, os.getpid())
    fake.show(fake.real_start, 1 * MIB)
    wd, clock = _watchdog(tmp_path / "proc", sleeper.pid)
    wd.tick()
    assert sleeper.poll() is None
    fake.show(fake.real_start, 20 * MIB)
    clock.advance()
    wd.tick()
    assert _signalled(sleeper) == -signal.SIGTERM


def test_a_pid_that_now_names_another_process_is_left_alone(
        tmp_path: Path, sleeper: subprocess.Popen[bytes],
        caplog: pytest.LogCaptureFixture) -> None:
    """First seen with one start time; at the limit the pid shows another: not signalled."""
    fake = FakeProc(tmp_path / "proc", sleeper.pid, os.getpid())
    fake.show(fake.real_start - 7, 1 * MIB)
    wd, clock = _watchdog(tmp_path / "proc", sleeper.pid)
    wd.tick()
    fake.show(fake.real_start, 20 * MIB)  # the worker is gone, its pid reused
    with caplog.at_level(logging.WARNING, logger="memwarden.recycle"):
        for _ in range(3):  # what would be TERM, then the grace's KILL
            clock.advance()
            wd.tick()
    assert _untouched(sleeper)
    notes = [r.getMessage() for r in caplog.records if r.name == "memwarden.recycle"]
    assert notes == [f"memwarden leaves pid {sleeper.pid} alone: it no longer names the "
                     "worker first seen there"]


def test_pids_of_another_pid_namespace_are_never_signalled(
        tmp_path: Path, sleeper: subprocess.Popen[bytes],
        caplog: pytest.LogCaptureFixture) -> None:
    fake = FakeProc(tmp_path / "proc", sleeper.pid, self_pid=1)
    fake.show(fake.real_start, 20 * MIB)
    wd, clock = _watchdog(tmp_path / "proc", sleeper.pid)
    with caplog.at_level(logging.WARNING, logger="memwarden.safe_kill"):
        for _ in range(3):
            wd.tick()
            clock.advance()
    assert _untouched(sleeper)
    refusals = [r for r in caplog.records if r.name == "memwarden.safe_kill"]
    assert len(refusals) == 1
