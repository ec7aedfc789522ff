"""Running gunicorn with the New Relic agent in developer mode, and reading back what
the agent handed to its collector client (tests/apps/newrelic_conf.py records it)."""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from support import REPO, VENV_BIN, Gunicorn, free_port, wait_for_port

CONFIG = "python:newrelic_conf"

# Developer mode answers the collector's calls in process; the utilization
# probes (cloud metadata at 169.254.169.254, docker, kubernetes) still open
# sockets in developer mode, so they are switched off.
INI = """[newrelic]
app_name = memwarden-test
developer_mode = true
startup_timeout = 10.0
shutdown_timeout = 10.0
log_file = {dir}/agent.log
log_level = info
utilization.detect_aws = false
utilization.detect_azure = false
utilization.detect_azurefunction = false
utilization.detect_azureappservice = false
utilization.detect_gcp = false
utilization.detect_pcf = false
utilization.detect_docker = false
utilization.detect_kubernetes = false
"""


def write_ini(tmp: Path) -> Path:
    path = tmp / "newrelic.ini"
    path.write_text(INI.format(dir=tmp))
    return path


class AgentGunicorn(Gunicorn):
    """support.Gunicorn, started by ``newrelic-admin run-program`` when ``admin``."""

    def __init__(self, app: str, tmp: Path, *, admin: bool, args: list[str] | None = None,
                 env: dict[str, str] | None = None) -> None:
        if not admin:
            super().__init__(app, tmp, args=args, env=env, config=CONFIG)
            return
        self.port = free_port()
        self.log_path = tmp / f"gunicorn-{self.port}.log"
        cmd = [str(VENV_BIN / "newrelic-admin"), "run-program", str(VENV_BIN / "gunicorn"),
               "-c", CONFIG, "-b", f"127.0.0.1:{self.port}", "--no-control-socket",
               *(args or []), app]
        self._log = self.log_path.open("wb")
        self.proc = subprocess.Popen(cmd, cwd=REPO / "tests" / "apps",
                                     env={**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})},
                                     stdout=self._log, stderr=subprocess.STDOUT,
                                     start_new_session=True)
        try:
            wait_for_port(self.port, proc=self.proc)
        except Exception:
            self.stop()
            raise AssertionError(f"gunicorn did not start:\n{self.log_path.read_text()[-3000:]}"
                                 ) from None


def agent_env(tmp: Path, **memwarden: str) -> dict[str, str]:
    """The environment of a server whose agent reports to developer mode in ``tmp``."""
    ini = write_ini(tmp)
    env = {"NR_TEST_DIR": str(tmp), "NEW_RELIC_CONFIG_FILE": str(ini)}
    env.update({f"MEMWARDEN_{k.upper()}": v for k, v in memwarden.items()})
    return env


@dataclass
class Recorded:
    """What the agents of every process sent, by kind."""

    transactions: list[dict[str, Any]] = field(default_factory=list)  # intrinsics + user
    events: list[dict[str, Any]] = field(default_factory=list)  # custom events
    metrics: dict[int, dict[str, list[float]]] = field(default_factory=dict)  # pid -> name
    methods: dict[int, list[str]] = field(default_factory=dict)
    logs: list[dict[str, Any]] = field(default_factory=list)

    def event_types(self) -> set[str]:
        return {e["type"] for e in self.events}

    def actions(self) -> list[dict[str, Any]]:
        return [e["attributes"] for e in self.events if e["type"] == "MemwardenAction"]


def read_recorded(tmp: Path) -> Recorded:
    out = Recorded()
    path = tmp / "payloads.jsonl"
    if not path.exists():
        return out
    methods: dict[int, list[str]] = defaultdict(list)
    metrics: dict[int, dict[str, list[float]]] = defaultdict(dict)
    for raw in path.read_text().splitlines():
        record = json.loads(raw)
        pid, method, data = record["pid"], record["method"], record["data"]
        methods[pid].append(method)
        if method == "analytic_event_data":
            for intrinsics, user, _agent in data[2]:
                out.transactions.append({"pid": pid, "name": intrinsics.get("name"),
                                         "intrinsics": intrinsics, "user": user})
        elif method == "custom_event_data":
            for intrinsics, attributes in data[2]:
                out.events.append({"pid": pid, "type": intrinsics["type"],
                                   "attributes": attributes})
        elif method == "metric_data":
            for spec, values in data[3]:
                if not spec.get("scope"):
                    metrics[pid][spec["name"]] = values
        elif method == "log_event_data":
            for block in data:
                out.logs.extend(block.get("logs", ()))
    out.methods = dict(methods)
    out.metrics = dict(metrics)
    return out


def connects(tmp: Path) -> list[dict[str, Any]]:
    path = tmp / "connects.jsonl"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines()]


def wait_for_shutdown(tmp: Path, pids: list[int], timeout: float = 30.0) -> Recorded:
    """Wait until the agent of each pid sent its last harvest (``shutdown``)."""
    deadline = time.monotonic() + timeout
    while True:
        recorded = read_recorded(tmp)
        done = all("shutdown" in recorded.methods.get(pid, ()) for pid in pids)
        if done or time.monotonic() > deadline:
            return recorded
        time.sleep(0.1)
