"""The metrics listener's process is signalled only while it is that very process."""

from __future__ import annotations

import os
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from support import free_port, gunicorn, wait_for_port

from memwarden.export import metrics_server
from memwarden.system.safe_kill import ProcessRef, process_ref


@pytest.fixture(autouse=True)
def no_server() -> Iterator[None]:
    yield
    metrics_server._server[0] = None
    metrics_server._pid_file[0] = ""


def ref(proc: subprocess.Popen[bytes]) -> ProcessRef:
    found = process_ref(proc.pid, "/proc")
    assert found is not None
    return found


def dead_process() -> ProcessRef:
    proc = subprocess.Popen(["true"])
    found = ref(proc)
    proc.wait()
    return found


def write_pid_file(directory: Path, server: ProcessRef, master: ProcessRef) -> None:
    (directory / metrics_server.PID_FILE).write_text(
        f"{server.pid} {server.start_ticks} {master.pid} {master.start_ticks}\n")


def test_stop_leaves_a_process_that_took_the_servers_pid_alone(
        sleeper: subprocess.Popen[bytes]) -> None:
    """The server died; its pid now names another process (another start time)."""
    metrics_server._server[0] = ProcessRef(sleeper.pid, ref(sleeper).start_ticks + 1)
    metrics_server.stop(timeout=1.0)
    with pytest.raises(subprocess.TimeoutExpired):
        sleeper.wait(0.3)


def test_stop_terminates_the_server_it_started(sleeper: subprocess.Popen[bytes]) -> None:
    metrics_server._server[0] = ref(sleeper)
    metrics_server.stop(timeout=1.0)
    assert sleeper.wait(10) == -signal.SIGTERM


def test_a_stale_pid_file_naming_an_unrelated_process_is_not_signalled(
        tmp_path: Path, sleeper: subprocess.Popen[bytes]) -> None:
    """The pid file's pid is alive, but with another start time: not the old server."""
    wrong = ProcessRef(sleeper.pid, ref(sleeper).start_ticks - 1)
    write_pid_file(tmp_path, wrong, dead_process())
    assert metrics_server.stop_stale(str(tmp_path), timeout=1.0) is False
    with pytest.raises(subprocess.TimeoutExpired):
        sleeper.wait(0.3)
    assert not (tmp_path / metrics_server.PID_FILE).exists()


def test_the_server_of_a_dead_master_is_stopped(tmp_path: Path,
                                                sleeper: subprocess.Popen[bytes]) -> None:
    write_pid_file(tmp_path, ref(sleeper), dead_process())
    assert metrics_server.stop_stale(str(tmp_path), timeout=1.0) is True
    assert sleeper.wait(10) == -signal.SIGTERM


def test_the_server_of_a_live_master_is_left_alone(tmp_path: Path,
                                                   sleeper: subprocess.Popen[bytes]) -> None:
    """Another master on the same directory (an upgrade in place) keeps its server."""
    master = process_ref(os.getppid(), "/proc")
    assert master is not None
    write_pid_file(tmp_path, ref(sleeper), master)
    assert metrics_server.stop_stale(str(tmp_path), timeout=1.0) is False
    with pytest.raises(subprocess.TimeoutExpired):
        sleeper.wait(0.3)


@pytest.mark.parametrize("text", ["", "12", "a b c d", "1 2 3", "0 5 6 7", "-1 2 3 4"])
def test_a_malformed_pid_file_signals_nothing(tmp_path: Path, text: str) -> None:
    (tmp_path / metrics_server.PID_FILE).write_text(text)
    assert metrics_server.read_pid_file(str(tmp_path)) is None
    assert metrics_server.stop_stale(str(tmp_path)) is False


@pytest.mark.timeout(60)
def test_a_new_master_stops_the_listener_its_dead_predecessor_left(
        tmp_path: Path, sleeper: subprocess.Popen[bytes]) -> None:
    """The port would stay taken; the pid file names it, and its master is gone."""
    directory = tmp_path / "mp"
    directory.mkdir()
    write_pid_file(directory, ref(sleeper), dead_process())
    port = free_port()
    env = {"MEMWARDEN_PROMETHEUS": "1", "MEMWARDEN_PROMETHEUS_DIR": str(directory),
           "MEMWARDEN_PROMETHEUS_PORT": str(port)}
    with gunicorn("export_app:app", tmp_path, env=env, args=["-w", "1"]) as g:
        assert sleeper.wait(10) == -signal.SIGTERM
        wait_for_port(port, proc=g.proc)
        found = metrics_server.read_pid_file(str(directory))
        assert found is not None and found[1].pid == g.proc.pid
        assert g.lines("memwarden.exporters.prometheus",
                       "stopped the metrics server of a master that is gone")
