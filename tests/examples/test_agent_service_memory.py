"""Mem0 in the reference service under real gunicorn: kept in the worker as found,
kept by the memory sidecar when hardened, and nothing sent off this host."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from .agent_service_harness import (
    REPO,
    Service,
    per_request,
    require_chromium,
    series,
    steps,
)
from .conftest import StartService

HARDENED = {"AGENT_SERVICE_MODE": "hardened"}
NETGUARD = Path(__file__).resolve().parent / "netguard"


def _new_users(service: Service, prefix: str, n: int) -> list[str]:
    ids = [f"{prefix}-{i:03d}" for i in range(n)]
    for rid in ids:  # no cookie sent back: a new user each time
        reply = service.chat("hello there; add 2 3", request_id=rid)
        assert reply.status == 200, reply.body
    return ids


def _memory_stats(service: Service) -> dict[str, int]:
    from api.memory_client import RemoteContextStore

    port = int(service.env["AGENT_SERVICE_MEMORY_PORT"])
    return RemoteContextStore(port).stats()


def test_as_found_grows_per_turn_and_hardened_holds_no_memory_in_the_worker(
        agent_service: StartService) -> None:
    """The same new-user chats: as found, the worker's RSS and its Mem0 gauges grow
    with every request; hardened, the gauges stay 0, the worker flat, and the memory
    sidecar keeps at most AGENT_SERVICE_MAX_SESSIONS sessions."""
    as_found = agent_service("context")
    _new_users(as_found, "warm", 4)
    lines = as_found.request_lines(_new_users(as_found, "found", 24))
    assert steps(series(lines, "mem0.points")) == [2] * 23
    assert steps(series(lines, "mem0.memories")) == [2] * 23
    found_rss = per_request([float(x["rss_bytes"]) for x in lines])
    found_blocks = per_request([float(x["census"]["blocks"]) for x in lines])
    assert found_rss >= 8 * 1024 and found_blocks >= 100, (found_rss, found_blocks)

    hardened = agent_service("none", env={**HARDENED, "AGENT_SERVICE_MAX_SESSIONS": "6"})
    _new_users(hardened, "warm", 10)  # past the cap: the sidecar's store is full
    lines = hardened.request_lines(_new_users(hardened, "hard", 24))
    for key in ("mem0.memories", "mem0.points"):
        assert set(series(lines, key)) == {0}, key
    held_blocks = per_request([float(x["census"]["blocks"]) for x in lines])
    assert held_blocks < found_blocks / 4, (held_blocks, found_blocks)
    assert _memory_stats(hardened) == {"sessions": 6, "memories": 12, "points": 12}


def _wait_for_new_worker(service: Service, old: int, timeout: float = 60.0) -> int:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        pids = [pid for pid in service.worker_pids() if pid != old]
        if pids and service.request("GET", "/healthz", timeout=10).body["pid"] == pids[0]:
            return pids[0]
        time.sleep(0.2)
    raise AssertionError(f"no worker replaced {old} in {timeout} s")


def test_hardened_conversation_survives_a_worker_recycle(agent_service: StartService) -> None:
    """A user's turns, then the worker is killed mid-conversation (SIGTERM, as a
    recycle ends it); the replacement worker sees the whole conversation."""
    service = agent_service("none", env=HARDENED)
    first = service.chat("my name is Ada; add 2 3")
    cookie = first.cookie
    assert cookie is not None and first.body["turns"] == 2
    assert service.chat("weather oslo", cookie=cookie).body["turns"] == 4
    old = service.request("GET", "/healthz").body["pid"]
    os.kill(old, signal.SIGTERM)
    new = _wait_for_new_worker(service, old)
    again = service.chat("history", cookie=cookie)
    assert again.status == 200, again.body
    assert (again.body["answer"], again.body["turns"]) == ("4 earlier messages", 6)
    assert service.request("GET", "/healthz").body["pid"] == new
    # Another user's context is not this one's.
    assert service.chat("history").body["answer"] == "0 earlier messages"


def test_max_requests_recycles_keep_the_users_context(agent_service: StartService) -> None:
    """memwarden's max_requests recycles the worker every 3 requests; the user's
    context is whole after each recycle."""
    service = agent_service("none", workers=1, env={
        **HARDENED, "MEMWARDEN_MAX_REQUESTS": "3", "MEMWARDEN_MAX_REQUESTS_JITTER": "0"})
    cookie = None
    ids = [f"turn-{turn}" for turn in range(9)]
    for turn, rid in enumerate(ids):
        reply = service.chat(f"add {turn} 1", cookie=cookie, request_id=rid)
        assert reply.status == 200, reply.body
        assert reply.body["turns"] == 2 * (turn + 1)
        cookie = cookie or reply.cookie
    pids = [line["pid"] for line in service.request_lines(ids)]
    assert len(set(pids)) == 3, pids  # three worker lives of three requests each
    assert service.chat("history", cookie=cookie).body["answer"] == "18 earlier messages"


def test_the_service_with_mem0_connects_to_nothing_but_loopback(
        agent_service: StartService, tmp_path: Path) -> None:
    """Every Python process (gunicorn, workers, sidecars) runs a guard that records
    and refuses any name lookup or connection off loopback. Mem0's telemetry is
    asked for in the environment, and the service still sends none."""
    require_chromium()
    log = tmp_path / "netguard.log"
    guard = {"NETGUARD_LOG": str(log),
             "PYTHONPATH": os.pathsep.join(filter(None, [str(NETGUARD),
                                                         os.environ.get("PYTHONPATH")])),
             "MEM0_TELEMETRY": "True"}
    # The guard works: an off-host target is recorded and refused.
    probe = subprocess.run(
        [sys.executable, "-c", "import socket\ntry:\n"
         "    socket.create_connection(('192.0.2.1', 80), 1)\n"
         "except PermissionError:\n    print('refused')"],
        env={**os.environ, **guard}, capture_output=True, text=True, timeout=60, cwd=REPO)
    assert probe.stdout.strip() == "refused", probe.stderr
    assert "refused" in log.read_text() and "'192.0.2.1'" in log.read_text()
    log.unlink()

    for mode in ({}, HARDENED):
        service = agent_service("all" if not mode else "none", env={**guard, **mode})
        first = service.chat("hello; add 2 3; weather paris; browse about")
        assert first.status == 200, first.body
        assert service.chat("history", cookie=first.cookie).body["answer"] == \
            "2 earlier messages"
        assert service.request("GET", "/tools").status == 200
        service.stop()
    lines = log.read_text().splitlines()
    assert not [x for x in lines if x.startswith("refused")], lines
    installed = " ".join(x for x in lines if x.startswith("installed"))
    for part in ("gunicorn", "mcp_server", "tooling.local_site", "tooling.model_server",
                 "tooling.memory_server"):
        assert part in installed, (part, installed)


def test_mem0_imported_first_with_telemetry_on_still_sends_nothing(tmp_path: Path) -> None:
    """Code that imports mem0 before the service does (MEM0_TELEMETRY read at import,
    true here) gets the service's Memory with telemetry off all the same."""
    log = tmp_path / "netguard.log"
    script = """
import os
import threading
import mem0  # first, with MEM0_TELEMETRY=True: mem0 reads it now
from api import config, memory
from tooling import model_server
server = model_server.make_server(0)
threading.Thread(target=server.serve_forever, daemon=True).start()
url = f"http://127.0.0.1:{server.server_address[1]}/v1"
m = memory.new_memory(config.Settings(model_url=url, data_dir=os.environ["DATA"]))
m.add([{"role": "user", "content": "hello"}], user_id="u", infer=False)
m.search("hello", filters={"user_id": "u"})
print("added")
"""
    env = {**os.environ, "NETGUARD_LOG": str(log), "MEM0_TELEMETRY": "True",
           "MEM0_DIR": str(tmp_path / "mem0"), "DATA": str(tmp_path),
           "PYTHONPATH": os.pathsep.join([str(NETGUARD), str(REPO / "examples" / "agent_service")])}
    proc = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True,
                          text=True, timeout=120)
    assert proc.stdout.strip() == "added", proc.stderr[-2000:]
    lines = log.read_text().splitlines()
    assert lines and lines[0].startswith("installed"), lines
    assert not [x for x in lines if x.startswith("refused")], lines


def test_hardened_chat_is_a_503_while_the_memory_server_is_down(
        agent_service: StartService) -> None:
    """The memory server gone: a chat says so with 503 + Retry-After, not a 500."""
    service = agent_service("none", env=HARDENED)
    assert service.chat("hello").status == 200
    memory_pid = service.sidecar_pids()[-1]
    os.kill(memory_pid, signal.SIGKILL)
    reply = service.chat("hello again", request_id="no-memory")
    assert reply.status == 503, reply.body
    assert reply.headers["retry-after"] == "1"
    assert "memory server at 127.0.0.1:" in reply.body["error"]
    assert reply.body["request_id"] == "no-memory"
    assert service.request("GET", "/healthz").status == 200
