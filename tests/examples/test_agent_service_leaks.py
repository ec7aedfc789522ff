"""Each of the reference service's five leaks, alone, under real gunicorn on 127.0.0.1.

Every test switches one leak source on (``AGENT_SERVICE_LEAKS``), takes a
census on every request (``MEMWARDEN_CENSUS_EVERY=1``) and reads the growth per
request from the request log lines gunicorn writes to stderr. The control
tests send the same traffic to the service with every leak off and see flat
counts. One sync worker, so that consecutive lines are one process's story.
"""

from __future__ import annotations

import os
import runpy
import statistics

import pytest

from .agent_service_harness import (
    CONF,
    MB,
    Service,
    open_fds,
    per_request,
    require_chromium,
    series,
    steps,
)
from .conftest import StartService


def _ids(prefix: str, n: int) -> list[str]:
    return [f"{prefix}-{i:03d}" for i in range(n)]


# -- leak 1: MCP sessions ----------------------------------------------------------------


def test_mcp_leak_keeps_a_session_loop_and_four_fds_per_request(
        agent_service: StartService) -> None:
    """As found, each /chat opens an MCP session on a new loop and closes neither."""
    service = agent_service("mcp")
    for i in range(2):
        assert service.chat("add 2 3", request_id=f"warm-{i}").status == 200
    mcp_server = service.sidecar_pids()[0]
    server_fds_before = open_fds(mcp_server)
    ids = _ids("mcp", 12)
    for rid in ids:
        reply = service.chat("add 2 3", request_id=rid)
        assert reply.status == 200 and reply.body["answer"] == "the sum is 5"
    lines = service.request_lines(ids)
    assert steps(series(lines, "mcp.sessions")) == [1] * 11
    assert steps(series(lines, "asyncio.loops")) == [1] * 11
    assert per_request(series(lines, "asyncio.tasks")) >= 1
    assert per_request(series(lines, "fds")) >= 3.5  # 4 measured: 2 sockets, epoll, pipe
    assert series(lines, "children") == [0] * 12
    # The server keeps each session's connection too: nobody ever sends DELETE.
    assert open_fds(mcp_server) - server_fds_before >= 10


def test_mcp_leak_over_stdio_keeps_a_server_process_per_request(
        agent_service: StartService) -> None:
    """With the stdio transport each leaked session is also a live server process."""
    service = agent_service("mcp", env={"AGENT_SERVICE_MCP_TRANSPORT": "stdio"})
    assert service.chat("add 1 1", request_id="warm").status == 200
    ids = _ids("stdio", 4)
    for rid in ids:
        assert service.chat("add 2 3", request_id=rid).status == 200
    lines = service.request_lines(ids)
    assert steps(series(lines, "children")) == [1, 1, 1]
    assert steps(series(lines, "mcp.sessions")) == [1, 1, 1]
    assert per_request(series(lines, "children_pss_bytes")) >= 20 * MB  # ~49 MB measured
    assert per_request(series(lines, "fds")) >= 3


def test_mcp_over_stdio_without_the_leak_leaves_no_process(
        agent_service: StartService) -> None:
    """Control: sessions closed in ``async with`` take their server process with them."""
    service = agent_service("none", env={"AGENT_SERVICE_MCP_TRANSPORT": "stdio"})
    ids = _ids("stdio-ctl", 3)
    for rid in ids:
        assert service.chat("add 2 3", request_id=rid).status == 200
    lines = service.request_lines(ids)
    for key in ("children", "mcp.sessions", "asyncio.loops"):
        assert series(lines, key) == [0, 0, 0], key
    assert len(set(series(lines, "fds"))) == 1


def test_control_mcp_is_flat(control_service: Service) -> None:
    ids = _ids("ctl-mcp", 12)
    for rid in ids:
        assert control_service.chat("add 2 3", request_id=rid).status == 200
    lines = control_service.request_lines(ids)
    assert set(series(lines, "mcp.sessions")) == {0}
    assert len(set(series(lines, "asyncio.loops"))) == 1
    fds = series(lines, "fds")
    assert max(fds) - min(fds) <= 1


# -- leak 2: browser contexts ------------------------------------------------------------


def _browse_mix(service: Service, ids: list[str]) -> None:
    # "notes" has no <h1> (the early return), "missing" is a 404 (the error path).
    for i, rid in enumerate(ids):
        page = ("notes", "missing")[i % 2]
        reply = service.browse(page, request_id=rid)
        assert reply.status == (200, 502)[i % 2], reply.body


def test_browser_leak_keeps_a_context_and_tens_of_mb_of_chromium_per_request(
        agent_service: StartService) -> None:
    """As found, a page without <h1> or with an error never closes its context."""
    require_chromium()
    service = agent_service("browser")
    warm = service.browse("about", request_id="warm")  # launches Chromium; closes its context
    assert warm.status == 200 and warm.body["heading"] == "About"
    ids = _ids("browser", 8)
    _browse_mix(service, ids)
    lines = service.request_lines(ids)
    assert steps(series(lines, "playwright.contexts")) == [1] * 7
    assert series(lines, "playwright.browsers") == [1] * 8
    assert per_request(series(lines, "children")) >= 1  # a renderer (and more) each
    pss = series(lines, "children_pss_bytes")
    assert per_request(pss) >= 25 * MB, [round(x / MB) for x in pss]  # ~66 MB measured
    # The worker itself hardly grows: the leak lives in Chromium's processes.
    rss = [line["rss_bytes"] for line in lines]
    assert per_request(rss) < per_request(pss) / 10


def test_control_browser_is_flat(control_service: Service) -> None:
    require_chromium()
    assert control_service.browse("about", request_id="ctl-browser-warm").status == 200
    ids = _ids("ctl-browser", 8)
    _browse_mix(control_service, ids)
    lines = control_service.request_lines(ids)
    assert set(series(lines, "playwright.contexts")) == {0}
    # Chromium's own spare renderers come and go (a few up or down): no trend, though.
    children = series(lines, "children")
    assert statistics.median(children[4:]) - statistics.median(children[:4]) <= 1, children
    pss = series(lines, "children_pss_bytes")
    assert pss[-1] - pss[0] < 100 * MB, [round(x / MB) for x in pss]


# -- leak 3: per-request event loops -----------------------------------------------------


def test_loop_leak_keeps_an_open_loop_and_three_fds_per_failed_turn(
        agent_service: StartService) -> None:
    """As found, the turn's loop is closed on success only; a failed tool leaves it open."""
    service = agent_service("loop")
    for i in range(2):
        assert service.chat("fail warmup", request_id=f"warm-{i}").status == 502
    ids = _ids("loop", 12)
    for rid in ids:
        reply = service.chat("fail on purpose", request_id=rid)
        assert reply.status == 502 and "tool fail failed" in reply.body["error"]
    lines = service.request_lines(ids)
    assert steps(series(lines, "asyncio.loops")) == [1] * 11
    assert steps(series(lines, "fds")) == [3] * 11  # epoll + the self-pipe's two ends
    assert set(series(lines, "mcp.sessions")) == {0}  # the MCP leak is off
    # Successful turns close their loop even as found.
    ok = service.chat("add 1 2", request_id="loop-ok")
    assert ok.status == 200
    after = service.request_lines(["loop-ok"])
    assert series(after, "asyncio.loops") == [series(lines, "asyncio.loops")[-1]]


def test_control_loops_are_flat(control_service: Service) -> None:
    ids = _ids("ctl-loop", 12)
    for rid in ids:
        assert control_service.chat("fail on purpose", request_id=rid).status == 502
    lines = control_service.request_lines(ids)
    # Constant, not zero: the browser's own long-lived loop may be running.
    assert len(set(series(lines, "asyncio.loops"))) == 1
    assert len(set(series(lines, "fds"))) == 1


# -- leak 4: the context store -----------------------------------------------------------


def test_context_leak_keeps_every_turn_in_mem0_in_the_worker(
        agent_service: StartService) -> None:
    """As found, each new cookie is a session kept forever, and each turn a Mem0
    memory (a qdrant point in the worker) that is never deleted."""
    service = agent_service("context")
    warm = _ids("context-warm", 3)
    ids = _ids("context", 16)
    for rid in warm + ids:  # no cookie sent back: a new user each time
        assert service.chat("hello there, how are you", request_id=rid).status == 200
    lines = service.request_lines(ids)
    # The user's message and the agent's answer: two memories, two points.
    assert steps(series(lines, "mem0.memories")) == [2] * 15
    assert steps(series(lines, "mem0.points")) == [2] * 15
    assert series(lines, "mem0.points")[-1] == 2 * len(warm + ids)
    rss = [float(line["rss_bytes"]) for line in lines]
    assert per_request(rss) >= 8 * 1024, [r // 1024 for r in rss]
    # One user talking on: its memories grow, two a turn.
    first = service.chat("hello", request_id="user-000")
    cookie = first.cookie
    assert cookie is not None and first.body["turns"] == 2
    turn_ids = _ids("user", 6)[1:]
    for rid in turn_ids:
        reply = service.chat("and another thing", cookie=cookie, request_id=rid)
        assert reply.status == 200
    assert reply.body["turns"] == 12
    assert service.chat("history", cookie=cookie).body["answer"] == "12 earlier messages"
    user_lines = service.request_lines(turn_ids)
    assert steps(series(user_lines, "mem0.points")) == [2] * 4


def test_control_context_store_stays_bounded(control_service: Service) -> None:
    ids = _ids("ctl-context", 12)
    for rid in ids:
        assert control_service.chat("hello there, how are you",
                                    request_id=rid).status == 200
    lines = control_service.request_lines(ids)
    # AGENT_SERVICE_MAX_SESSIONS=5 sessions of one turn pair each: what the
    # evicted ones held is deleted.
    points = series(lines, "mem0.points")
    assert max(points) == 10 and points[-6:] == [10] * 6
    assert series(lines, "mem0.memories")[-6:] == [10] * 6


# -- leak 5: no recycling ----------------------------------------------------------------


def test_gunicorn_config_as_found_matches_production(monkeypatch: pytest.MonkeyPatch) -> None:
    """2 sync workers, 120 s timeout, no max_requests; with norecycle off, max_requests."""
    hold = ("MEMWARDEN_RECYCLE", "MEMWARDEN_ORPHANS", "MEMWARDEN_SHED")
    for name in ("AGENT_SERVICE_LEAKS", "AGENT_SERVICE_MODE", "AGENT_SERVICE_PORT", *hold):
        # set, then delete: monkeypatch then removes whatever the config sets here
        monkeypatch.setenv(name, "")
        monkeypatch.delenv(name)
    conf = runpy.run_path(str(CONF))
    assert (conf["workers"], conf["worker_class"], conf["timeout"]) == (2, "sync", 120)
    assert conf["bind"] == "127.0.0.1:8000"
    assert "max_requests" not in conf
    # As found there was no memwarden "hold": the config turns it off by default.
    assert [os.environ[name] for name in hold] == ["off"] * 3
    monkeypatch.setenv("AGENT_SERVICE_LEAKS", "mcp,browser,loop,context")
    import api.config

    monkeypatch.setattr(api.config, "_current", None)
    fixed = runpy.run_path(str(CONF))
    assert (fixed["max_requests"], fixed["max_requests_jitter"]) == (1000, 100)
    monkeypatch.setattr(api.config, "_current", None)


def test_norecycle_lets_the_context_leak_pile_up_in_one_worker(
        agent_service: StartService) -> None:
    """As found, one worker serves everything and its sessions only grow; with
    max_requests, workers are replaced and what they held goes with them."""
    as_found = agent_service("context,norecycle")
    ids = _ids("norecycle", 12)
    for rid in ids:
        assert as_found.chat("hello", request_id=rid).status == 200
    lines = as_found.request_lines(ids)
    assert len({line["pid"] for line in lines}) == 1
    assert steps(series(lines, "mem0.points")) == [2] * 11
    assert steps([line["seq"] for line in lines]) == [1] * 11

    recycled = agent_service("context", env={"AGENT_SERVICE_MAX_REQUESTS": "4",
                                             "AGENT_SERVICE_MAX_REQUESTS_JITTER": "0"})
    ids = _ids("recycle", 12)
    for rid in ids:
        assert recycled.chat("hello", request_id=rid).status == 200
    lines = recycled.request_lines(ids)
    assert len({line["pid"] for line in lines}) >= 3
    assert max(series(lines, "mem0.points")) <= 8
    assert max(line["seq"] for line in lines) <= 4
