"""Recycling, the master's hard limit, kill detection and orphans under real gunicorn."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from support import (
    HOLD_CONF,
    QUIET,
    REPO,
    Gunicorn,
    descendants,
    gunicorn,
    memory_cgroup,
    wait_for,
)

UVICORN = ["-k", "uvicorn_worker.UvicornWorker"]
MiB = 1024 * 1024


def alive(pid: int) -> bool:
    """Running, not a zombie."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat[stat.rindex(")") + 2] not in "ZX"



def get_json(server: Gunicorn, path: str, timeout: float = 30.0) -> tuple[int, Any]:
    status, _, body = server.request("GET", path, timeout=timeout)
    return status, json.loads(body) if body.startswith(b"{") else body


def ts(line: dict[str, Any]) -> str:
    return str(line["timestamp"])


@contextlib.contextmanager
def in_background(server: Gunicorn, path: str) -> Iterator[list[Any]]:
    """A request left in flight in a thread; its outcome (or exception) lands in the list."""
    outcome: list[Any] = []

    def run() -> None:
        try:
            outcome.append(server.request("GET", path, timeout=60))
        except Exception as exc:
            outcome.append(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    try:
        yield outcome
    finally:
        thread.join(70)


# -- (a) soft limit ------------------------------------------------------------------------

@pytest.mark.parametrize("worker", [[], ["--threads", "4"]], ids=["sync", "gthread"])
def test_soft_limit_recycles_after_the_request_that_crossed_it(tmp_path: Path,
                                                                worker: list[str]) -> None:
    """The request over the soft limit completes; the worker restarts; nothing fails.

    A sync worker serves nothing after that request; a gthread worker may still
    answer a request accepted while the signal was on its way."""
    env = {**QUIET, "MEMWARDEN_SOFT_LIMIT": "90MiB"}
    with gunicorn("hold_app:app", tmp_path, args=["-w", "1", *worker], env=env) as server:
        first = server.worker_pids(expect=1)[0]
        served: list[int] = []
        for _ in range(60):
            status, body = get_json(server, "/leak?mb=4")
            assert status == 200
            served.append(body["pid"])
            if body["pid"] != first:
                break
        [line] = wait_for(lambda: server.lines("memwarden.recycle", "recycle"),
                          what="a recycle line")
        lines = [x for x in server.request_lines(len(served)) if x["pid"] == first]
    assert served[-1] != first, "the worker never recycled"
    assert served.count(first) == len(served) - 1 == len(lines)
    crossing = next(x for x in lines if x["rss_bytes"] >= 90 * MiB)
    assert line["pid"] == first and line["reason"] == "soft_limit"
    assert line["limit_bytes"] == 90 * MiB
    assert line["footprint_bytes"] >= 90 * MiB
    # The recycle follows the request that crossed the limit, with its figures.
    assert line["requests"] == crossing["seq"]
    assert abs(line["rss_bytes"] - crossing["rss_bytes"]) <= 256 * 1024
    if not worker:
        assert crossing["seq"] == len(lines)


def test_max_requests_with_health_checks_not_counted(tmp_path: Path) -> None:
    """max_requests counts requests that are not health checks."""
    env = {**QUIET, "MEMWARDEN_MAX_REQUESTS": "3"}
    with gunicorn("hold_app:app", tmp_path, args=["-w", "1"], env=env) as server:
        first = server.worker_pids(expect=1)[0]
        pids = []
        for path in ("/pid", "/healthz", "/healthz", "/pid", "/healthz", "/pid", "/pid"):
            status, _, body = server.request("GET", path)
            assert status == 200
            if path == "/pid":
                pids.append(json.loads(body)["pid"])
        [line] = wait_for(lambda: server.lines("memwarden.recycle", "recycle"))
    assert pids[:3] == [first] * 3 and pids[3] != first
    assert line["reason"] == "max_requests"
    assert line["requests"] == 3 and line["max_requests"] == 3


# -- (b) idle-aware ----------------------------------------------------------------------------

@pytest.mark.parametrize(("app", "worker"), [
    ("hold_app:app", []), ("hold_app:app", ["--threads", "4"]), ("hold_asgi:app", UVICORN)],
    ids=["sync", "gthread", "uvicorn"])
def test_idle_limit_waits_for_a_gap_in_traffic(tmp_path: Path, app: str,
                                               worker: list[str]) -> None:
    """Over the idle limit during a burst: no recycle; after an idle gap: recycle."""
    env = {**QUIET, "MEMWARDEN_IDLE_LIMIT": "70MiB", "MEMWARDEN_IDLE_SECONDS": "1.5"}
    with gunicorn(app, tmp_path, args=["-w", "1", *worker], env=env) as server:
        first = server.worker_pids(expect=1)[0]
        for _ in range(20):  # a burst: gaps far below 1.5 s
            status, body = get_json(server, "/leak?mb=3")
            assert status == 200 and body["pid"] == first
            time.sleep(0.2)
        lines = server.request_lines(20)
        assert lines[-1]["rss_bytes"] > 70 * MiB, "the burst did not cross the idle limit"
        assert server.lines("memwarden.recycle", "recycle") == []
        [line] = wait_for(lambda: server.lines("memwarden.recycle", "recycle"), timeout=8)
        # The next worker answers (an async worker may first finish what it accepted).
        wait_for(lambda: get_json(server, "/pid")[1]["pid"] != first, timeout=10)
        status, body = get_json(server, "/pid")
    assert status == 200 and body["pid"] != first
    assert line["reason"] == "idle" and line["pid"] == first
    assert line["idle_seconds"] >= 1.5
    assert line["limit_bytes"] == 70 * MiB and line["footprint_bytes"] >= 70 * MiB
    assert line["requests"] == 20


# -- (c) rolling -------------------------------------------------------------------------------

def test_recycles_roll_one_at_a_time(tmp_path: Path) -> None:
    """Two workers over the limit at once: the second waits until the first's
    replacement has booted; no request fails."""
    env = {**QUIET, "MEMWARDEN_SOFT_LIMIT": "80MiB", "MEMWARDEN_IDLE_SECONDS": "0.5"}
    with gunicorn("hold_app:app", tmp_path, args=["-w", "2"], env=env) as server:
        workers = set(server.worker_pids(expect=2))
        # Two slow requests at once: each sync worker takes one, and both
        # cross the limit in the same instant.
        with in_background(server, "/sleep?mb=60&s=0.5") as a, \
                in_background(server, "/sleep?mb=60&s=0.5") as b:
            pass
        assert [x[0] for x in a + b] == [200, 200], a + b
        assert {json.loads(x[2])["pid"] for x in a + b} == workers
        events = wait_for(lambda: (lambda found: found if len(found) >= 4 else None)(
            [x for x in server.lines("memwarden.recycle")
             if x["message"] in ("recycle", "recycle_done")]), timeout=20,
            what="two recycles and their replacements")
        deferred = server.lines("memwarden.recycle", "recycle_deferred")
        crossings = {x["pid"]: x for x in server.lines("memwarden.request", "request")
                     if x["route"] == "/sleep"}
        status, _, _ = server.request("GET", "/pid")
        assert status == 200
    events.sort(key=ts)
    assert [x["message"] for x in events] == ["recycle", "recycle_done"] * 2, events
    assert {x["pid"] for x in events if x["message"] == "recycle"} == workers
    # Each replacement names the worker it replaces, and the second recycle
    # started only once the first replacement had booted.
    assert events[1]["replaces"] == events[0]["pid"]
    assert events[3]["replaces"] == events[2]["pid"]
    assert ts(events[1]) <= ts(events[2])
    # The second worker waited if it crossed while the first was being replaced.
    # On a busy machine its request may end only after that: then it had no
    # reason to wait. Within 50 ms of the replacement's boot either is right.
    crossed_after = _seconds_between(events[1], crossings[events[2]["pid"]])
    if crossed_after < -0.05:
        assert [x["pid"] for x in deferred] == [events[2]["pid"]]
    elif crossed_after > 0.05:
        assert deferred == []


# -- (d) hard limit from the master ---------------------------------------------------------

def test_master_stops_a_worker_stuck_over_the_hard_limit(tmp_path: Path) -> None:
    """SIGTERM at the hard limit, then SIGKILL once the grace period is over."""
    env = {**QUIET, "MEMWARDEN_HARD_LIMIT": "150MiB", "MEMWARDEN_GRACE_SECONDS": "2"}
    with gunicorn("hold_app:app", tmp_path, args=["-w", "1", "--timeout", "120"],
                  env=env) as server:
        stuck = server.worker_pids(expect=1)[0]
        with in_background(server, "/sleep?mb=200&s=60") as outcome:
            killed = wait_for(lambda: server.lines("memwarden.recycle", "worker_killed"),
                              timeout=15, what="the stuck worker killed")
        status, body = get_json(server, "/pid")
        recycle = server.lines("memwarden.recycle", "recycle")
        kill = server.lines("memwarden.recycle", "hard_limit_kill")
    assert isinstance(outcome[0], Exception), "the stuck request should have been cut"
    assert status == 200 and body["pid"] != stuck
    [term] = recycle
    assert term["pid"] == stuck and term["reason"] == "hard_limit"
    assert term["source"] == "master" and term["signal"] == "SIGTERM"
    assert term["footprint_bytes"] >= 150 * MiB == term["limit_bytes"]
    [kill_line] = kill
    assert kill_line["pid"] == stuck and kill_line["signal"] == "SIGKILL"
    waited = _seconds_between(term, kill_line)
    assert 2.0 <= waited <= 3.5, waited
    [dead] = killed
    assert dead["pid"] == stuck and dead["signal"] == "SIGKILL"
    assert dead["oom_kill"] is False and dead["killed_by"] == "memwarden_hard_limit"


def _seconds_between(a: dict[str, Any], b: dict[str, Any]) -> float:
    from datetime import datetime

    def parse(line: dict[str, Any]) -> float:
        return datetime.fromisoformat(ts(line).replace("Z", "+00:00")).timestamp()

    return parse(b) - parse(a)


# -- (e) SIGKILL mid-request: no orphans -------------------------------------------------------

@pytest.mark.parametrize("recorded", [True, False], ids=["recorded", "just-born"])
def test_sigkilled_worker_leaves_no_orphans(tmp_path: Path, recorded: bool) -> None:
    """A worker killed mid-request: logged as killed by SIGKILL, none of its
    descendants survive it, and the master's own service is left alone.

    ``recorded``: the children lived long enough for the master to record them;
    ``just-born``: the kill follows the spawn at once."""
    service_file = tmp_path / "service.pid"
    env = {**QUIET, "HOLD_TEST_SERVICE": str(service_file)}
    with gunicorn("hold_app:app", tmp_path, args=["-w", "1"], env=env,
                  config=HOLD_CONF) as server, _reaped(service_file) as service:
        worker = server.worker_pids(expect=2)  # the worker and the service
        [worker_pid] = [p for p in worker if p != service]
        assert server.request("GET", "/spawn")[0] == 200
        if recorded:
            time.sleep(1.5)  # master ticks see the child
        with in_background(server, "/spawn_tree?s=30") as outcome:
            # the sleep child, the shell and its sleep grandchild
            kids = wait_for(lambda: (lambda d: d if len(d) >= 3 else None)(
                descendants(worker_pid)), what="the worker's descendants")
            os.kill(worker_pid, signal.SIGKILL)
            [line] = wait_for(lambda: server.lines("memwarden.recycle", "worker_killed"),
                              what="the worker_killed line")
            wait_for(lambda: not any(alive(p) for p in kids), timeout=5,
                     what=f"orphans {kids} to go")
        assert isinstance(outcome[0], Exception)
        assert alive(service), "the master's own child was killed"
        status, body = get_json(server, "/pid")
        assert status == 200 and body["pid"] != worker_pid
        orphan_lines = server.lines("memwarden.orphans", "terminate_orphans")
    assert line["pid"] == worker_pid and line["signal"] == "SIGKILL"
    assert line["oom_kill"] is False and line["killed_by"] == "unknown"
    assert orphan_lines and set(kids) <= {p for x in orphan_lines for p in x["pids"]}


@contextlib.contextmanager
def _reaped(pidfile: Path) -> Iterator[int]:
    """The pid in ``pidfile``, killed on the way out (the master leaves it to init)."""
    pid = int(wait_for(pidfile.read_text))
    try:
        yield pid
    finally:
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGKILL)


# -- (f) graceful exits end descendants too ----------------------------------------------------

def test_recycled_worker_ends_its_descendants(tmp_path: Path) -> None:
    """On a graceful exit the worker ends its descendants: SIGTERM, then SIGKILL
    for one that ignores SIGTERM."""
    env = {**QUIET, "MEMWARDEN_MAX_REQUESTS": "4"}
    with gunicorn("hold_app:app", tmp_path, args=["-w", "1"], env=env) as server:
        worker = server.worker_pids(expect=1)[0]
        for path in ("/spawn", "/spawn_tree", "/spawn?stubborn=1"):
            assert server.request("GET", path)[0] == 200
        # a sleep; a shell and its sleep; one that ignores SIGTERM (a shell
        # and its sleep, or the sleep alone when the shell execs it)
        kids = wait_for(lambda: (lambda d: d if len(d) >= 4 else None)(descendants(worker)))
        time.sleep(0.2)
        kids = descendants(worker)
        assert server.request("GET", "/pid")[0] == 200  # the 4th: the worker recycles
        [done] = wait_for(lambda: server.lines("memwarden.orphans", "descendants_terminated"))
        assert not any(alive(p) for p in kids)
        [planned] = server.lines("memwarden.orphans", "terminate_descendants")
    assert planned["pid"] == worker and set(planned["pids"]) == set(kids)
    assert done["terminated"] == len(kids)
    # Only what ignored SIGTERM needed SIGKILL: all but the sleep, the shell and its sleep.
    assert done["killed"] == len(kids) - 3


def test_uvicorn_worker_recycles_cleanly_and_ends_its_descendants(tmp_path: Path) -> None:
    """Under uvicorn a recycle is a graceful exit too (exit code 0, worker_exit runs)."""
    env = {**QUIET, "MEMWARDEN_MAX_REQUESTS": "2"}
    with gunicorn("hold_asgi:app", tmp_path, args=["-w", "1", *UVICORN], env=env) as server:
        worker = server.worker_pids(expect=1)[0]
        assert server.request("GET", "/spawn")[0] == 200
        assert server.request("GET", "/spawn")[0] == 200
        [done] = wait_for(lambda: server.lines("memwarden.orphans", "descendants_terminated"))
        status, body = get_json(server, "/pid")
        sent = [x for x in server.lines("gunicorn.error") if "was sent" in x["message"]]
    assert status == 200 and body["pid"] != worker
    assert done["pid"] == worker and done["terminated"] == 2
    assert sent == [], sent  # it exited; no signal killed it


# -- cgroup: derived limits and the OOM killer -----------------------------------------------

def test_limits_default_from_the_cgroup_and_worker_count(tmp_path: Path) -> None:
    """With a cgroup limit and no limits set: soft 80%, idle 60%, hard 95% of limit/workers."""
    limit = 600 * MiB
    with memory_cgroup(limit) as group, gunicorn(
            "hold_app:app", tmp_path, args=["-w", "2"], config=HOLD_CONF,
            env={"HOLD_TEST_CGROUP": str(group)}) as server:
        server.worker_pids(expect=2)
        lines = wait_for(lambda: (lambda f: f if len(f) == 2 else None)(
            server.lines("memwarden.recycle", "limits")))
        [hold] = server.lines("memwarden.recycle", "hold")
        # One worker past its derived soft limit (80% of 300 MiB) recycles.
        first = server.worker_pids(expect=2)
        for _ in range(60):
            assert get_json(server, "/leak?mb=10")[0] == 200
            if server.lines("memwarden.recycle", "recycle"):
                break
        [recycle] = wait_for(lambda: server.lines("memwarden.recycle", "recycle"))
    share = limit // 2
    assert hold["cgroup_limit_bytes"] == limit and hold["worker_share_bytes"] == share
    assert hold["hard_limit_bytes"] == int(share * 0.95)
    for line in lines:
        assert line["cgroup_limit_bytes"] == limit and line["workers"] == 2
        assert line["soft_limit_bytes"] == int(share * 0.8)
        assert line["idle_limit_bytes"] == int(share * 0.6)
        assert line["hard_limit_bytes"] == int(share * 0.95)
    assert recycle["pid"] in first and recycle["reason"] == "soft_limit"
    assert recycle["limit_bytes"] == int(share * 0.8)


def test_oom_killed_worker_is_logged_as_such(tmp_path: Path) -> None:
    """A worker the kernel's OOM killer takes: worker_killed with oom_kill true."""
    env = {"HOLD_TEST_CGROUP": "", "MEMWARDEN_RECYCLE": "off"}
    with memory_cgroup(200 * MiB) as group:
        env["HOLD_TEST_CGROUP"] = str(group)
        with gunicorn("hold_app:app", tmp_path, args=["-w", "1"], config=HOLD_CONF,
                      env=env) as server:
            victim = server.worker_pids(expect=1)[0]
            for _ in range(40):
                try:
                    server.request("GET", "/leak?mb=10", timeout=10)
                except Exception:
                    break
            [line] = wait_for(lambda: server.lines("memwarden.recycle", "worker_killed"))
            status, body = get_json(server, "/pid")
    assert line["pid"] == victim and line["signal"] == "SIGKILL"
    assert line["oom_kill"] is True and line["killed_by"] == "oom_killer"
    assert status == 200 and body["pid"] != victim


# -- a start that says when protection cannot act ------------------------------------------

NO_CGROUP_LIMIT = str(REPO / "tests" / "data" / "sys_nolimit")
CANNOT_RECYCLE = "memwarden cannot recycle workers by memory"


def _warnings(server: Gunicorn) -> list[dict[str, Any]]:
    return [x for x in server.lines() if x.get("level") == "WARNING"]


@pytest.fixture
def no_memwarden_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Only the variables a test sets: a MEMWARDEN_* of the shell would be warned about."""
    for name in [n for n in os.environ if n.upper().startswith("MEMWARDEN_")]:
        monkeypatch.delenv(name)


@pytest.mark.usefixtures("no_memwarden_env")
def test_no_limit_anywhere_is_said_once_at_start(tmp_path: Path) -> None:
    """No cgroup limit and a misspelled soft limit: one warning for each, from the master;
    the master's start line and every worker's limits line say limit none."""
    env = {"MEMWARDEN_SYS_ROOT": NO_CGROUP_LIMIT, "MEMWARDEN_SOFT_LIMT": "1GiB"}
    with gunicorn("hold_app:app", tmp_path, args=["-w", "2"], env=env) as server:
        workers = server.worker_pids(expect=2)
        limits = wait_for(lambda: (lambda f: f if len(f) == 2 else None)(
            server.lines("memwarden.recycle", "limits")), what="two limits lines")
        assert get_json(server, "/pid")[0] == 200
        [hold] = server.lines("memwarden.recycle", "hold")
        warnings = _warnings(server)
    master = server.proc.pid
    [recycle, unknown] = sorted(warnings, key=lambda x: str(x["logger"]))
    assert recycle["logger"] == "memwarden.recycle" and recycle["pid"] == master
    assert recycle["message"].startswith(CANNOT_RECYCLE)
    assert "MEMWARDEN_SOFT_LIMIT" in recycle["message"]
    assert unknown["logger"] == "memwarden.settings" and unknown["pid"] == master
    assert unknown["message"] == ("memwarden ignores MEMWARDEN_SOFT_LIMT (did you mean "
                                  "MEMWARDEN_SOFT_LIMIT?): not a memwarden setting")
    assert unknown["unknown_variables"] == {"MEMWARDEN_SOFT_LIMT": "MEMWARDEN_SOFT_LIMIT"}
    assert hold["limit"] == "none" and hold["pid"] == master
    assert sorted(x["pid"] for x in limits) == sorted(workers)
    for line in limits:
        assert line["limit"] == "none"
        assert not {"soft_limit_bytes", "idle_limit_bytes", "hard_limit_bytes"} & set(line)


@pytest.mark.usefixtures("no_memwarden_env")
def test_a_limit_set_without_a_cgroup_limit_warns_nothing(tmp_path: Path) -> None:
    env = {"MEMWARDEN_SYS_ROOT": NO_CGROUP_LIMIT, "MEMWARDEN_SOFT_LIMIT": "1GiB"}
    with gunicorn("hold_app:app", tmp_path, args=["-w", "1"], env=env) as server:
        [limits] = wait_for(lambda: server.lines("memwarden.recycle", "limits"),
                            what="a limits line")
        assert get_json(server, "/pid")[0] == 200
        [hold] = server.lines("memwarden.recycle", "hold")
        warnings = _warnings(server)
    assert warnings == []
    assert hold["limit"] == limits["limit"] == "set"
    assert limits["soft_limit_bytes"] == 1024 * MiB
