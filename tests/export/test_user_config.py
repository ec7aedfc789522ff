"""A gunicorn config of the user's own that calls memwarden's exporter hooks."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from support import Gunicorn, gunicorn, wait_for

from .prom_support import sample

# The exporter hooks alone, from the user's own hooks: no memwarden.gunicorn_conf.
EXPORTERS_ONLY = """
from memwarden import export as exporters
from memwarden.settings import Settings

settings = Settings.from_env()
exporters.setup_master(settings)

def on_starting(server):
    exporters.on_starting(server, settings)

def post_fork(server, worker):
    exporters.post_fork(server, worker, settings)

def post_worker_init(worker):
    exporters.post_worker_init(worker, settings)

def worker_exit(server, worker):
    exporters.worker_exit(server, worker)

def child_exit(server, worker):
    exporters.child_exit(server, worker)

def on_exit(server):
    exporters.on_exit(server)
"""


def db_files(directory: Path) -> set[str]:
    return {p.name for p in directory.glob("*.db")}


def wait_for_new_worker(g: Gunicorn, old: int, timeout: float = 30.0) -> int:
    """The worker that replaced ``old``, once the master no longer has ``old``."""
    def replaced() -> list[int]:
        pids = g.worker_pids()
        return pids if pids and old not in pids else []
    return wait_for(replaced, timeout, "a new worker after the old one was stopped")[0]


@pytest.mark.timeout(90)
def test_a_new_worker_leaves_every_counter_and_file_of_the_service_alone(
        tmp_path: Path) -> None:
    """Counts made before a worker boots survive it: no worker empties the directory."""
    config = tmp_path / "user_gunicorn_conf.py"
    config.write_text(EXPORTERS_ONLY)
    directory = tmp_path / "multiproc"
    env = {"MEMWARDEN_PROMETHEUS": "1", "MEMWARDEN_PROMETHEUS_DIR": str(directory),
           "MEMWARDEN_PROMETHEUS_PATH": "/metrics", "MEMWARDEN_PROMETHEUS_PORT": "0"}
    with gunicorn("export_app:app", tmp_path, env=env, args=["-w", "1"],
                  config=str(config)) as g:
        master = g.proc.pid
        first = g.worker_pids(expect=1)[0]
        for _ in range(5):
            assert g.request("POST", "/events/shed")[0] == 200
        before = db_files(directory)
        assert f"counter_{master}.db" in before, before  # the master's zeros

        # A recycled worker: the master folds its counts, a new worker boots.
        os.kill(first, signal.SIGTERM)
        second = wait_for_new_worker(g, first)
        for _ in range(3):
            assert g.request("POST", "/events/shed")[0] == 200

        after = db_files(directory)
        gone = {name for name in before - after if not name.endswith(f"_{first}.db")}
        assert not gone, f"files of the running service removed: {sorted(gone)}"
        assert {"counter_archive.db", f"counter_{second}.db"} <= after, after
        status, _, body = g.request("GET", "/metrics")
        assert status == 200
        assert sample(body.decode(), "memwarden_shed_requests_total") == 8


def test_importing_the_gunicorn_config_changes_nothing(tmp_path: Path) -> None:
    """The master's setup runs from its hooks, never from an import: a tool or a
    worker that imports memwarden.gunicorn_conf leaves the metrics files alone."""
    (tmp_path / "counter_1.db").write_bytes(b"\0" * 8)
    code = ("import os, memwarden.gunicorn_conf\n"
            "from memwarden.gunicorn_conf import is_asgi_app, is_asgi_worker\n"
            "print(os.environ.get('PROMETHEUS_MULTIPROC_DIR', ''))\n")
    env = {**os.environ, "MEMWARDEN_PROMETHEUS": "1", "MEMWARDEN_PROMETHEUS_DIR": str(tmp_path)}
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                         timeout=30, check=True).stdout
    assert out.strip() == ""
    assert db_files(tmp_path) == {"counter_1.db"}
