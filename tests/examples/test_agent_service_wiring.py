"""The reference service as a whole: routes, logs, start-up errors, clean shutdown."""

from __future__ import annotations

import os
import socket
import subprocess
from pathlib import Path

from .agent_service_harness import (
    CONF,
    GUNICORN,
    REPO,
    descendants,
    free_port,
    require_chromium,
)
from .conftest import StartService


def test_as_found_service_answers_every_route_and_stops_without_orphans(
        agent_service: StartService) -> None:
    """All five leaks, the production settings (2 workers); teardown finds no process left."""
    require_chromium()
    service = agent_service("all", workers=None)
    health = service.request("GET", "/healthz")
    assert health.status == 200 and health.body["leaks"] == sorted(
        ["browser", "context", "loop", "mcp", "norecycle"])
    tools = service.request("GET", "/tools")
    assert {t["name"] for t in tools.body["tools"]} == {"add", "weather", "echo", "fail"}
    first = service.chat("add 2 3; weather paris; browse pricing; hello", request_id="chat-1")
    assert first.status == 200, first.body
    assert first.body["answer"] == ("the sum is 5; Paris: 11.0 C, overcast; hello; "
                                    "pricing: Pricing")
    assert first.body["turns"] == 2 and first.body["extracts"][0]["heading"] == "Pricing"
    again = service.chat("history", cookie=first.cookie, request_id="chat-2")
    # The cookie only names the session; its history lives in one worker's memory,
    # so the other worker starts it afresh (as in production).
    assert (again.body["answer"], again.body["turns"]) in (("2 earlier messages", 4),
                                                           ("0 earlier messages", 2))
    failed = service.chat("fail now", request_id="chat-3")
    assert failed.status == 502 and failed.body["request_id"] == "chat-3"
    page = service.browse("about", request_id="browse-1")
    assert page.status == 200 and page.body["title"] == "About the agent"
    for i in range(6):  # enough for both workers to take requests
        assert service.request("GET", "/healthz", request_id=f"h-{i}").status == 200
    lines = service.request_lines(["chat-1", "chat-2", "chat-3", "browse-1"])
    assert [x["route"] for x in lines] == ["/chat", "/chat", "/chat", "/browse"]
    assert [x["status"] for x in lines] == [200, 200, 502, 200]
    for line in lines:
        assert {"mem0.memories", "mem0.points", "asyncio.loops",
                "children_pss_bytes"} <= line["census"].keys()
    for line in lines[0], lines[2]:  # turns that called tools: their worker has a session
        assert line["census"].get("mcp.sessions", 0) >= 1
    assert len(service.worker_pids()) == 2
    # Chromium and the sidecars run now; the fixture's teardown fails the test
    # if any of them outlives gunicorn.
    running = " ".join(Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
                       for pid in descendants(service.proc.pid))
    for part in ("chromium", "mcp_server", "tooling.local_site", "tooling.model_server"):
        assert part in running
    service.remember_processes()


def _gunicorn_exits(env: dict[str, str], tmp_path: Path) -> tuple[int, str]:
    full = {**os.environ, "AGENT_SERVICE_PORT": str(free_port()),
            "AGENT_SERVICE_MCP_PORT": str(free_port()),
            "AGENT_SERVICE_SITE_PORT": str(free_port()),
            "AGENT_SERVICE_MODEL_PORT": str(free_port()), **env}
    proc = subprocess.run([str(GUNICORN), "-c", str(CONF), "api.app:app"], cwd=REPO,
                          env=full, capture_output=True, text=True, timeout=60)
    return proc.returncode, proc.stdout + proc.stderr


def test_a_bad_setting_stops_gunicorn_before_it_serves(tmp_path: Path) -> None:
    code, out = _gunicorn_exits({"AGENT_SERVICE_LEAKS": "mcp,memory"}, tmp_path)
    assert code != 0
    assert "AGENT_SERVICE_LEAKS='mcp,memory': unknown memory" in out


def test_a_taken_sidecar_port_stops_gunicorn_with_a_clear_error(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        code, out = _gunicorn_exits({"AGENT_SERVICE_SITE_PORT": str(port)}, tmp_path)
    assert code != 0
    assert f"local site: 127.0.0.1:{port} is already in use" in out
