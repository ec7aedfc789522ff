"""New Relic: real gunicorn with the Python agent in developer mode (no network), and
what the agent recorded: transaction attributes, custom metrics, custom events."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from support import REPO, Gunicorn, free_port

from memwarden.export.newrelic import (
    ALL_ATTRIBUTES,
    ATTRIBUTES,
    CENSUS_PREFIX,
    EVENT_ATTRIBUTES,
    EVENT_TYPE,
    FOOTPRINT_ATTRIBUTE,
    HANDED_ACTIONS,
    METRICS,
)
from memwarden.settings import Settings, SettingsError

from .newrelic_support import (
    AgentGunicorn,
    agent_env,
    connects,
    read_recorded,
    wait_for_shutdown,
)
from .pool_script import pool_refusals_script

pytest.importorskip("newrelic.agent")

UVICORN = ["-k", "uvicorn_worker.UvicornWorker"]


def _lines_of(server: AgentGunicorn, pid: int, message: str,
              logger: str | None = None) -> list[dict[str, Any]]:
    return [x for x in server.lines(logger, message) if x.get("pid") == pid]


def _wait(predicate: Any, timeout: float = 20.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(0.05)


def _memwarden_attributes(transaction: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in transaction["user"].items() if k.startswith("memwarden.")}


def test_wsgi_under_newrelic_admin(tmp_path: Path) -> None:
    """gunicorn under ``newrelic-admin run-program``: a worker recycled after 5 requests,
    dry-run shedding on every request; then a worker killed by a signal."""
    env = agent_env(tmp_path, max_requests="5", census_every="2", shed="dry-run",
                    shed_high="1MiB")
    with AgentGunicorn("hold_app:app", tmp_path, admin=True, args=["-w", "1"],
                       env=env) as g:
        first = g.worker_pids(expect=1)[0]
        for _ in range(5):
            status, _, _ = g.request("GET", "/leak?mb=1")
            assert status == 200  # dry-run: served
        second = _wait(lambda: [p for p in g.worker_pids(expect=1) if p != first])
        assert second, "the worker was not recycled after max_requests"
        recorded = wait_for_shutdown(tmp_path, [first])
        # The replacement serves, then dies of a signal: the master's line about it.
        assert g.request("GET", "/leak?mb=1")[0] == 200
        os.kill(second[0], signal.SIGKILL)
        killed = _wait(lambda: g.lines("memwarden.recycle", "worker_killed"))
        lines = [x for x in g.lines("memwarden.request", "request") if x["pid"] == first]
        would_shed = _lines_of(g, first, "would_shed", "memwarden.shed")
        recycles = _lines_of(g, first, "recycle", "memwarden.recycle")
        master = g.proc.pid

    assert "shutdown" in recorded.methods.get(first, ()), recorded.methods
    # Transactions: one per request, each with its own request line's figures.
    assert len(lines) == 5
    mine = {t["user"].get("memwarden.request_id"): t for t in recorded.transactions
            if t["pid"] == first}
    assert set(mine) == {line["request_id"] for line in lines}
    for line in lines:
        attributes = _memwarden_attributes(mine[line["request_id"]])
        expected = {name: line[key] for key, name in ATTRIBUTES.items() if key in line}
        assert {k: attributes[k] for k in expected} == expected
        assert set(attributes) <= set(ALL_ATTRIBUTES)
        assert attributes["memwarden.route"] == "/leak"
        assert attributes["memwarden.pid"] == first
        # The footprint goes on the requests that took a census (1, 3, 5), and only there.
        assert (FOOTPRINT_ATTRIBUTE in attributes) == ("census" in line), line
        assert mine[line["request_id"]]["name"] == "WebTransaction/Function/hold_app:leak"
    assert [line["seq"] for line in lines] == [1, 2, 3, 4, 5]

    # Custom metrics: one value per census, not per request.
    census_lines = [line for line in lines if "census" in line]
    assert len(census_lines) == 3
    metrics = recorded.metrics[first]
    custom = {name: v for name, v in metrics.items() if name.startswith("Custom/")}
    rss = custom[METRICS["rss"]]
    assert rss[0] == 3  # count
    assert rss[3] == min(line["rss_bytes"] for line in census_lines)  # min
    assert rss[4] == max(line["rss_bytes"] for line in census_lines)  # max
    assert custom[METRICS["footprint"]][0] == 3
    assert custom[METRICS["blocks"]][4] == max(line["census"]["blocks"] for line in census_lines)
    threads = custom[CENSUS_PREFIX + "threads"]
    assert threads[0] == 3 and threads[4] == max(line["census"]["threads"]
                                                 for line in census_lines)
    assert all(name in METRICS.values() or name.startswith(CENSUS_PREFIX) for name in custom)

    # Custom events: each dry-run shed and the recycle, with the worker's figures.
    actions = [e for e in recorded.events if e["pid"] == first]
    assert {e["type"] for e in actions} == {EVENT_TYPE}
    shed = [e["attributes"] for e in actions if e["attributes"]["action"] == "shed"]
    assert len(shed) == len(would_shed) == 5
    assert all(e["dry_run"] is True and e["count"] == 1 and e["pid"] == first for e in shed)
    recycle = [e["attributes"] for e in actions if e["attributes"]["action"] == "recycle"]
    assert len(recycles) == 1 and recycles[0]["reason"] == "max_requests"
    assert len(recycle) == 1
    event = recycle[0]
    assert (event["dry_run"], event["reason"], event["pid"], event["seq"]) == (
        False, "max_requests", first, 5)
    assert event["footprint_bytes"] == census_lines[-1]["rss_bytes"]
    assert all(set(e["attributes"]) <= set(EVENT_ATTRIBUTES) for e in actions)

    # The master recorded nothing; the log line the alert conditions read is there.
    assert master not in recorded.methods
    assert killed and killed[0]["killed_by"] == "unknown" and killed[0]["oom_kill"] is False
    assert connects(tmp_path) == []


def test_a_death_in_flight_is_sent_by_the_next_worker(tmp_path: Path) -> None:
    """A worker SIGKILLed mid-request: the master logs death_in_flight and hands the
    event to the worker it forks next, which sends it with its first request, once."""
    env = agent_env(tmp_path)
    with AgentGunicorn("hold_app:app", tmp_path, admin=True, args=["-w", "1"],
                       env=env) as g:
        [victim] = g.worker_pids(expect=1)

        def stuck() -> None:
            with contextlib.suppress(Exception):
                g.request("GET", "/sleep?s=30", headers={"X-Request-ID": "nr-dead-1"})

        thread = threading.Thread(target=stuck, daemon=True)
        thread.start()
        time.sleep(1.0)
        os.kill(victim, signal.SIGKILL)
        thread.join(30)
        [death] = _wait(lambda: g.lines("memwarden.recycle", "death_in_flight"))
        [nxt] = _wait(lambda: [p for p in g.worker_pids(expect=1) if p != victim])
        for _ in range(2):
            assert g.request("GET", "/pid")[0] == 200
        master = g.proc.pid
    recorded = wait_for_shutdown(tmp_path, [nxt])
    sent = [e for e in recorded.actions() if e["action"] in HANDED_ACTIONS]
    assert death["request_id"] == "nr-dead-1" and death["cause"] == "signal"
    assert len(sent) == 1, sent
    [event] = sent
    assert (event["action"], event["cause"], event["route"], event["request_id"]) == (
        "death_in_flight", "signal", "/sleep", "nr-dead-1")
    assert event["seconds"] == death["seconds"] and event["pid"] == nxt
    assert set(event) <= set(EVENT_ATTRIBUTES)
    assert master not in recorded.methods
    assert connects(tmp_path) == []


@pytest.mark.parametrize("admin", [False, True], ids=["initialize-in-config", "admin"])
def test_asgi(tmp_path: Path, admin: bool) -> None:
    """uvicorn workers, the agent initialized in the gunicorn config (uvicorn is not
    instrumented: memwarden's wrapper starts the transaction) or by newrelic-admin
    (the agent wraps the app once more, outside memwarden's); shedding on: every
    request answered 503 by memwarden, each a transaction with its attributes."""
    env = agent_env(tmp_path, shed="on", shed_high="1MiB")
    if not admin:
        env["NR_TEST_INIT"] = env["NEW_RELIC_CONFIG_FILE"]
    with AgentGunicorn("fastapi_app:app", tmp_path, admin=admin,
                       args=["-w", "1", *UVICORN], env=env) as g:
        pid = g.worker_pids(expect=1)[0]
        for _ in range(3):
            assert g.request("GET", "/items/7")[0] == 503
        lines = g.request_lines(3)
    recorded = wait_for_shutdown(tmp_path, [pid])

    assert [line["status"] for line in lines] == [503, 503, 503]
    mine = {t["user"].get("memwarden.request_id"): t for t in recorded.transactions}
    assert set(mine) == {line["request_id"] for line in lines}
    for line in lines:
        transaction = mine[line["request_id"]]
        # Shed before FastAPI routed it: named by memwarden's route, not the raw path.
        assert transaction["intrinsics"]["name"] == "WebTransaction/Uri/items/<var>"
        attributes = _memwarden_attributes(transaction)
        assert attributes["memwarden.rss_delta_bytes"] == line["rss_delta_bytes"]
        assert attributes["memwarden.seq"] == line["seq"]
    shed = recorded.actions()
    assert len(shed) == 3
    assert all((e["action"], e["dry_run"], e["count"]) == ("shed", False, 1) for e in shed)
    assert connects(tmp_path) == []


def test_asgi_responses_stay_whole(tmp_path: Path) -> None:
    """The last body held until the app returns: a streamed body arrives whole, a
    failing handler still answers 500 and its transaction records the error."""
    env = agent_env(tmp_path)
    with AgentGunicorn("fastapi_app:app", tmp_path, admin=True, args=["-w", "1", *UVICORN],
                       env=env) as g:
        pid = g.worker_pids(expect=1)[0]
        status, _, body = g.request("GET", "/stream")
        assert (status, body) == (200, b"".join(f"chunk {i}\n".encode() for i in range(5)))
        status, _, body = g.request("GET", "/items/3")
        assert (status, body) == (200, b'{"item":3}')
        assert g.request("GET", "/boom")[0] == 500
        lines = g.request_lines(3)
    recorded = wait_for_shutdown(tmp_path, [pid])
    by_id = {t["user"].get("memwarden.request_id"): t for t in recorded.transactions}
    assert set(by_id) == {line["request_id"] for line in lines}
    routes = {line["route"]: by_id[line["request_id"]] for line in lines}
    assert routes["/boom"]["intrinsics"].get("error") is True
    assert routes["/stream"]["intrinsics"].get("error") is not True
    assert all(_memwarden_attributes(t)["memwarden.route"] == route
               for route, t in routes.items())
    assert connects(tmp_path) == []


def test_memwarden_initializes_the_agent_when_on(tmp_path: Path) -> None:
    """MEMWARDEN_NEWRELIC=1 and plain gunicorn: each worker initializes the agent from
    NEW_RELIC_CONFIG_FILE before the app is imported, so Flask is instrumented too."""
    env = agent_env(tmp_path, newrelic="1")
    with AgentGunicorn("hold_app:app", tmp_path, admin=False, args=["-w", "1"],
                       env=env) as g:
        pid = g.worker_pids(expect=1)[0]
        assert g.request("GET", "/pid")[0] == 200
        assert g.request("GET", "/pid")[0] == 200
        lines = g.request_lines(2)
    recorded = wait_for_shutdown(tmp_path, [pid])
    names = {t["name"] for t in recorded.transactions}
    assert names == {"WebTransaction/Function/hold_app:pid"}
    ids = {t["user"].get("memwarden.request_id") for t in recorded.transactions}
    assert ids == {line["request_id"] for line in lines}
    assert connects(tmp_path) == []


def test_off_sends_nothing_of_memwarden(tmp_path: Path) -> None:
    """MEMWARDEN_NEWRELIC=0: the agent still reports its transactions, without
    memwarden's attributes, metrics or events (here a recycle)."""
    env = agent_env(tmp_path, newrelic="0", max_requests="2", census_every="1")
    with AgentGunicorn("hold_app:app", tmp_path, admin=True, args=["-w", "1"],
                       env=env) as g:
        pid = g.worker_pids(expect=1)[0]
        for _ in range(2):
            assert g.request("GET", "/pid")[0] == 200
        recorded = wait_for_shutdown(tmp_path, [pid])
        assert g.lines("memwarden.recycle", "recycle")
    assert len([t for t in recorded.transactions if t["pid"] == pid]) == 2
    assert all(not _memwarden_attributes(t) for t in recorded.transactions)
    assert not [n for n in recorded.metrics.get(pid, {}) if n.startswith("Custom/Memwarden")]
    assert recorded.events == []


def test_pool_refusals_outside_a_transaction(tmp_path: Path) -> None:
    """Events recorded outside any transaction go through the agent's application:
    two refusals of pool "browser", one dry-run refusal of pool "mcp"."""
    env = agent_env(tmp_path)
    setup = textwrap.dedent("""
        import newrelic_conf, newrelic.agent
        from memwarden.export import newrelic as exporter
        from memwarden.settings import Settings
        newrelic.agent.initialize()
        newrelic.agent.register_application(timeout=10.0)
        assert exporter.start_worker(Settings())
    """)
    end = "newrelic.agent.shutdown_agent(timeout=10.0)"
    result = _python(pool_refusals_script(setup, end=end), env)
    assert result.returncode == 0, result.stderr[-3000:]
    recorded = read_recorded(tmp_path)
    refusals = [(e["action"], e["pool"], e["dry_run"]) for e in recorded.actions()]
    assert sorted(refusals) == [("pool_refusal", "browser", False),
                                ("pool_refusal", "browser", False),
                                ("pool_refusal", "mcp", True)]
    assert connects(tmp_path) == []


# -- the setting and the extra -----------------------------------------------------------

@pytest.mark.parametrize(("raw", "mode"), [
    ("auto", "auto"), ("AUTO", "auto"), ("1", "on"), ("true", "on"), ("0", "off"),
    ("off", "off")])
def test_setting(raw: str, mode: str) -> None:
    assert Settings.from_env({"MEMWARDEN_NEWRELIC": raw}).newrelic == mode


def test_setting_refuses_other_values() -> None:
    with pytest.raises(SettingsError, match="MEMWARDEN_NEWRELIC='maybe': expected auto, 1 or 0"):
        Settings.from_env({"MEMWARDEN_NEWRELIC": "maybe"})
    assert Settings().newrelic == "auto"


def _python(code: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)],
                          cwd=REPO / "tests" / "apps", env={**os.environ, **(env or {})},
                          capture_output=True, text=True, timeout=120, check=False)


def test_missing_agent_names_the_extra() -> None:
    result = _python("""
        import sys
        sys.modules["newrelic"] = None  # as if not installed
        from memwarden.export import MissingExtraError, check_extras
        from memwarden.settings import Settings
        check_extras(Settings(newrelic="auto"))
        check_extras(Settings(newrelic="off"))
        try:
            check_extras(Settings(newrelic="on"))
        except MissingExtraError as exc:
            print(exc)
    """)
    assert result.returncode == 0, result.stderr
    assert "pip install 'memwarden[newrelic]'" in result.stdout


def test_gunicorn_refuses_to_start_on_without_the_agent(tmp_path: Path) -> None:
    """MEMWARDEN_NEWRELIC=1 where the agent cannot be found: the master stops at start
    with the extra's name, before any worker serves."""
    shadow = tmp_path / "shadow" / "newrelic"
    shadow.mkdir(parents=True)
    (shadow / "__init__.py").write_text("")  # a package "newrelic" without the agent
    env = {"MEMWARDEN_NEWRELIC": "1", "PYTHONPATH": str(shadow.parent)}
    with pytest.raises(AssertionError, match="did not start") as failed:
        Gunicorn("hold_app:app", tmp_path, args=["-w", "1"], env=env)
    assert "pip install 'memwarden[newrelic]'" in str(failed.value)


def test_auto_without_an_initialized_agent_imports_nothing() -> None:
    result = _python("""
        import sys
        from memwarden.export import newrelic
        from memwarden.settings import Settings
        print(newrelic.start_worker(Settings()), newrelic.active(),
              sorted(m for m in sys.modules if m.split(".")[0] == "newrelic"))
    """)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["False", "False", "[]"]


def test_socket_guard_refuses_and_records(tmp_path: Path) -> None:
    """The guard the gunicorn tests rely on: loopback passes, anything else is refused
    before a packet leaves and written down."""
    port = free_port()
    result = _python(f"""
        import socket
        import newrelic_conf
        server = socket.create_server(("127.0.0.1", {port}))
        socket.create_connection(("127.0.0.1", {port}), timeout=5).close()
        try:
            socket.create_connection(("192.0.2.1", 9), timeout=5)
        except PermissionError as exc:
            print("refused:", exc)
    """, {"NR_TEST_DIR": str(tmp_path)})
    assert result.returncode == 0, result.stderr
    assert "refused: test socket guard: no connection to 192.0.2.1" in result.stdout
    assert [c["host"] for c in connects(tmp_path)] == ["192.0.2.1"]
