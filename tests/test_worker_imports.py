"""What memwarden's gunicorn config makes every worker carry: a worker inherits the
master's modules by fork, so what the master imports only for itself (the start
summary) or only for a setting that is off (allocation sites) must stay out of it."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from support import gunicorn

# Modules memwarden needs only when a setting asks for them.
OPTIONAL = ("tracemalloc", "_tracemalloc", "sysconfig", "ctypes", "_ctypes", "asyncio",
            "memwarden.alloc_sites")
SUMMARY = ("memwarden.check", "memwarden.check_start", "memwarden.check_findings",
           "memwarden.check_app")


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if not k.upper().startswith("MEMWARDEN_") and k != "GUNICORN_CMD_ARGS"}
    return {**env, **extra}


def loaded(imports: str = "", names: tuple[str, ...] = OPTIONAL) -> set[str]:
    """Which of ``names`` a fresh interpreter has after ``imports``. With nothing
    imported: what the interpreter's own start brings (coverage's subprocess hook
    brings sysconfig, for one), which memwarden cannot be blamed for."""
    code = (f"import sys\n{imports}\n"
            f"print(' '.join(m for m in {names!r} if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env=clean_env(), check=True)
    return set(done.stdout.split())


def test_the_config_and_the_hold_hooks_import_no_optional_module() -> None:
    found = loaded("import memwarden.gunicorn_conf, memwarden.hold.hooks")
    assert sorted(found - loaded()) == []


def worker_modules(tmp_path: Path, **env: str) -> set[str]:
    with gunicorn("modules_app:app", tmp_path, args=["-w", "1"], env=clean_env(**env)
                  ) as server:
        status, _, body = server.request("GET", "/")
        summary = server.lines("memwarden.check")
    assert status == 200
    assert summary and {x["pid"] for x in summary} == {server.proc.pid}
    return set(body.decode().split())


def test_a_worker_carries_neither_the_start_summary_nor_allocation_sites(tmp_path: Path
                                                                         ) -> None:
    modules = worker_modules(tmp_path, MEMWARDEN_ORPHANS="off")
    assert "memwarden.see.wsgi" in modules  # the tracker is there
    preloaded = loaded(names=(*OPTIONAL, *SUMMARY))
    assert sorted(m for m in (*OPTIONAL, *SUMMARY) if m in modules and m not in preloaded) == []


def test_allocation_sites_asked_for_are_in_the_worker(tmp_path: Path) -> None:
    modules = worker_modules(tmp_path, MEMWARDEN_TRACEMALLOC="1")
    assert {"memwarden.alloc_sites", "tracemalloc"} <= modules


def test_the_summary_child_runs_the_work_and_is_reaped(tmp_path: Path) -> None:
    from memwarden import gunicorn_conf

    out = tmp_path / "pid"
    gunicorn_conf._in_child(object(), lambda: out.write_text(
        f"{os.getpid()} {Path('/proc/self/comm').read_text().strip()}"))
    pid, name = out.read_text().split()
    child = int(pid)
    assert child != os.getpid()
    # Named, so that whatever counts the master's children can tell it from a worker.
    assert name == gunicorn_conf.CHILD_NAME
    assert not Path(f"/proc/{child}").exists()  # waited for: no zombie left


def test_a_summary_child_that_hangs_is_killed_and_a_failed_fork_runs_it_here(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from memwarden import gunicorn_conf

    out = tmp_path / "pid"

    def hang() -> None:
        out.write_text(str(os.getpid()))
        time.sleep(60)

    started = time.monotonic()
    gunicorn_conf._in_child(object(), hang, timeout=2.0)
    assert time.monotonic() - started < 10
    assert not Path(f"/proc/{int(out.read_text())}").exists()

    def no_fork() -> int:
        raise OSError("no fork here")

    monkeypatch.setattr(os, "fork", no_fork)
    gunicorn_conf._in_child(object(), lambda: out.write_text(str(os.getpid())))
    assert int(out.read_text()) == os.getpid()
