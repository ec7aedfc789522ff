"""The request in flight when a worker died, named by the master: real gunicorn.

A gunicorn timeout, a SIGKILL mid-request, the OOM killer (where a memory
cgroup can be made here), and the deaths that must leave no line: a worker
killed while idle, a worker that recycled.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

from support import REPO, VENV_BIN, Gunicorn, gunicorn, memory_cgroup, wait_for

HOLD_CONF = str(REPO / "tests" / "apps" / "hold_conf.py")
MiB = 1024 * 1024
QUIET = {"MEMWARDEN_SOFT_LIMIT": "off", "MEMWARDEN_IDLE_LIMIT": "off",
         "MEMWARDEN_HARD_LIMIT": "off"}
FIELDS = {"timestamp", "level", "logger", "message", "pid", "cause", "signal", "request_id",
          "method", "route", "seconds", "footprint_start_bytes", "footprint_last_bytes"}


def _in_background(server: Gunicorn, path: str, request_id: str) -> threading.Thread:
    """Send a request that will not get its answer (its worker dies)."""
    def send() -> None:
        with contextlib.suppress(Exception):
            server.request("GET", path, headers={"X-Request-ID": request_id}, timeout=30)

    thread = threading.Thread(target=send, daemon=True)
    thread.start()
    return thread


def deaths(server: Gunicorn) -> list[dict[str, Any]]:
    return server.lines("memwarden.recycle", "death_in_flight")


def test_a_gunicorn_timeout_names_the_request_by_its_route(tmp_path: Path) -> None:
    with gunicorn("hold_app:app", tmp_path, args=["-w", "1", "--timeout", "2"],
                  config=HOLD_CONF, env=QUIET) as server:
        [victim] = server.worker_pids(expect=1)
        assert server.request("GET", "/pid")[0] == 200  # an earlier request, finished
        began = time.monotonic()
        _in_background(server, "/sleep?s=30", "stuck-1").join(30)
        [line] = wait_for(lambda: deaths(server), timeout=20, what="death_in_flight")
        took = time.monotonic() - began
        # The replacement serves, and a finished request never makes a line.
        assert server.request("GET", "/pid")[0] == 200
        time.sleep(0.5)
        assert len(deaths(server)) == 1
    assert line["pid"] == victim and line["cause"] == "timeout"
    assert line["signal"] == "SIGABRT"  # gunicorn's first signal; the handler exits the worker
    assert line["request_id"] == "stuck-1" and line["method"] == "GET"
    assert line["route"] == "/sleep"  # Flask's rule, read in the worker as it was aborted
    assert 2.0 <= line["seconds"] <= took + 0.5
    assert line["level"] == "ERROR" and line["logger"] == "memwarden.recycle"
    assert set(line) <= FIELDS
    # RSS at its start (after one request) and the master's last reading during it.
    assert 10 * MiB < line["footprint_start_bytes"] < 2000 * MiB
    assert 10 * MiB < line["footprint_last_bytes"] < 2000 * MiB
    # memwarden analyze reads the line: report.json's deaths name the route.
    report_path = tmp_path / "report.json"
    done = subprocess.run([str(VENV_BIN / "memwarden"), "analyze", str(server.log_path),
                           "--json", str(report_path)], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    report = json.loads(report_path.read_text())
    [death] = report["deaths"]
    assert (death["route"], death["cause"], death["request_id"], death["pid"]) == (
        "GET /sleep", "timeout", "stuck-1", victim)


def test_a_worker_killed_mid_request_names_it_and_an_idle_one_names_nothing(
        tmp_path: Path) -> None:
    with gunicorn("hold_app:app", tmp_path, args=["-w", "1"], config=HOLD_CONF,
                  env=QUIET) as server:
        [victim] = server.worker_pids(expect=1)
        # A query that must never reach a log line.
        thread = _in_background(server, "/sleep?s=30&mb=50&token=hunter2", "mid-1")
        time.sleep(1.5)  # in the app by now, and master ticks read its RSS during it
        os.kill(victim, signal.SIGKILL)
        thread.join(30)
        [line] = wait_for(lambda: deaths(server), timeout=20, what="death_in_flight")
        # The replacement, killed idle: worker_killed, and no second death line.
        [idle] = [p for p in wait_for(lambda: [p for p in server.worker_pids(expect=1)
                                               if p != victim], timeout=20)]
        assert server.request("GET", "/pid")[0] == 200
        # The client has its answer before the worker closes the request: wait
        # for its line, written when the request has ended.
        wait_for(lambda: [x for x in server.lines("memwarden.request", "request")
                          if x["pid"] == idle], what="the idle worker's request line")
        os.kill(idle, signal.SIGKILL)
        wait_for(lambda: [x for x in server.lines("memwarden.recycle", "worker_killed")
                          if x["pid"] == idle], what="the idle worker's worker_killed")
        time.sleep(0.5)
        found = deaths(server)
        text = server.log_path.read_text()
    assert len(found) == 1, found
    assert line["pid"] == victim and line["cause"] == "signal" and line["signal"] == "SIGKILL"
    assert line["request_id"] == "mid-1" and line["method"] == "GET"
    assert line["route"] == "/sleep"  # the path, made safe by the master: no query
    assert 1.0 <= line["seconds"] < 30
    assert "hunter2" not in text
    # It kept 50 MiB before it slept: the master's reading during it shows them.
    assert line["footprint_last_bytes"] >= line["footprint_start_bytes"] + 40 * MiB


def test_a_recycled_worker_names_nothing(tmp_path: Path) -> None:
    env = {**QUIET, "MEMWARDEN_MAX_REQUESTS": "3"}
    with gunicorn("hold_app:app", tmp_path, args=["-w", "1"], config=HOLD_CONF,
                  env=env) as server:
        [first] = server.worker_pids(expect=1)
        for _ in range(3):
            assert server.request("GET", "/pid")[0] == 200
        wait_for(lambda: first not in server.worker_pids(), timeout=20, what="the recycle")
        assert server.request("GET", "/pid")[0] == 200
        time.sleep(0.5)
        assert deaths(server) == []


def test_an_oom_kill_names_the_request_that_outgrew_the_limit(tmp_path: Path) -> None:
    env = {**QUIET, "MEMWARDEN_RECYCLE": "off"}
    with memory_cgroup(200 * MiB) as group:
        env["HOLD_TEST_CGROUP"] = str(group)
        with gunicorn("hold_app:app", tmp_path, args=["-w", "1"], config=HOLD_CONF,
                      env=env) as server:
            [victim] = server.worker_pids(expect=1)
            assert server.request("GET", "/pid")[0] == 200
            _in_background(server, "/leak?mb=400", "big-1").join(30)
            [line] = wait_for(lambda: deaths(server), timeout=20, what="death_in_flight")
            [killed] = server.lines("memwarden.recycle", "worker_killed")
    assert killed["oom_kill"] is True
    assert line["pid"] == victim and line["cause"] == "oom_kill" and line["signal"] == "SIGKILL"
    assert line["request_id"] == "big-1" and line["route"] == "/leak"
    assert isinstance(line["footprint_start_bytes"], int)


def test_an_asgi_worker_killed_with_requests_in_flight_names_the_oldest(
        tmp_path: Path) -> None:
    """uvicorn serves several requests at once: each has its record, and the line
    names the one that had run longest, by its path with the id as <var>."""
    with gunicorn("inflight_asgi:app", tmp_path,
                  args=["-w", "1", "-k", "uvicorn_worker.UvicornWorker"], config=HOLD_CONF,
                  env=QUIET) as server:
        [victim] = server.worker_pids(expect=1)
        assert server.request("GET", "/pid")[0] == 200
        first = _in_background(server, "/orders/81723/wait?s=30", "async-1")
        time.sleep(0.5)
        second = _in_background(server, "/orders/99/wait?s=30", "async-2")
        time.sleep(0.8)
        os.kill(victim, signal.SIGKILL)
        first.join(30)
        second.join(30)
        [line] = wait_for(lambda: deaths(server), timeout=20, what="death_in_flight")
    assert line["pid"] == victim and line["cause"] == "signal" and line["signal"] == "SIGKILL"
    assert line["request_id"] == "async-1"
    assert line["route"] == "/orders/<var>/wait"
    assert 1.0 <= line["seconds"] < 30


def test_a_uvicorn_worker_past_gunicorns_timeout_names_its_request(tmp_path: Path) -> None:
    with gunicorn("inflight_asgi:app", tmp_path,
                  args=["-w", "1", "-k", "uvicorn_worker.UvicornWorker", "--timeout", "2"],
                  config=HOLD_CONF, env=QUIET) as server:
        [victim] = server.worker_pids(expect=1)
        assert server.request("GET", "/pid")[0] == 200
        _in_background(server, "/block?s=30", "blocked-1").join(30)
        [line] = wait_for(lambda: deaths(server), timeout=20, what="death_in_flight")
    assert line["pid"] == victim and line["cause"] == "timeout"
    assert line["request_id"] == "blocked-1" and line["route"] == "/block"
    assert line["seconds"] >= 2.0
