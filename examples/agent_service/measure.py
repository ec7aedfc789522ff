"""Measure each leak alone under real gunicorn, against the same traffic with it off.

    .venv/bin/python examples/agent_service/measure.py [--requests 20] [--only browser,loop]

For every scenario it starts gunicorn with this directory's config (1 sync
worker, sidecars on free ports, ``MEMWARDEN_CENSUS_EVERY=1``,
``MEMWARDEN_LOOP_TRACKING=1``), sends a warmup and then N requests, reads the
census from memwarden's request lines on gunicorn's stderr, and prints the
growth per request (first to last measured request) as a Markdown table:
once with the leak on (``AGENT_SERVICE_LEAKS=<leak>``) and once with every
leak off. Every request comes from a new user (no cookie), and the context
store is bounded to 5 sessions whenever the context leak is off, so that it
does not blur the other scenarios. The last row sends the context traffic to
the hardened service (Mem0 in the memory sidecar). Each run gets a generated
``AGENT_SERVICE_SECRET_KEY`` and its own data directory. Only 127.0.0.1 is
ever contacted.
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
GUNICORN = Path(sys.executable).with_name("gunicorn")
MB = 1024 * 1024


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _fds(pid: int) -> int:
    try:
        return len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return 0


class _Server:
    def __init__(self, leaks: str, env: dict[str, str], log: Path) -> None:
        self.port = _free_port()
        full = {**os.environ, "PYTHONUNBUFFERED": "1", "AGENT_SERVICE_LEAKS": leaks,
                "AGENT_SERVICE_PORT": str(self.port),
                "AGENT_SERVICE_MCP_PORT": str(_free_port()),
                "AGENT_SERVICE_SITE_PORT": str(_free_port()),
                "AGENT_SERVICE_MODEL_PORT": str(_free_port()),
                "AGENT_SERVICE_MEMORY_PORT": str(_free_port()),
                "AGENT_SERVICE_SECRET_KEY": secrets.token_hex(32),
                "AGENT_SERVICE_DATA_DIR": str(log.with_suffix(".data")),
                "MEMWARDEN_CENSUS_EVERY": "1", "MEMWARDEN_LOOP_TRACKING": "1",
                # Allocated blocks on every request, whatever reading them costs.
                "MEMWARDEN_BLOCKS_BUDGET_US": "0", "MEMWARDEN_BLOCKS_EVERY": "1",
                # Every request is a new user: with the context leak off, a store
                # bounded to 5 sessions keeps it out of the other scenarios' figures.
                "AGENT_SERVICE_MAX_SESSIONS": "5", **env}
        self.log = log
        self._out = log.open("wb")
        self.proc = subprocess.Popen(
            [str(GUNICORN), "-c", str(HERE / "gunicorn_conf.py"), "-w", "1", "api.app:app"],
            cwd=HERE, env=full, stdout=self._out, stderr=subprocess.STDOUT,
            start_new_session=True)
        deadline = time.monotonic() + 90
        while True:
            with contextlib.suppress(OSError):
                if self.call("GET", "/healthz", None, "health")[0] == 200:
                    break
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"gunicorn did not start:\n{log.read_text()[-3000:]}")
            time.sleep(0.1)

    def call(self, method: str, path: str, payload: Any, rid: str) -> tuple[int, Any]:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=120)
        try:
            conn.request(method, path, body=json.dumps(payload) if payload else None,
                         headers={"Content-Type": "application/json", "X-Request-ID": rid})
            resp = conn.getresponse()
            return resp.status, resp.read()
        finally:
            conn.close()

    def lines(self) -> dict[str, dict[str, Any]]:
        found = {}
        for raw in self.log.read_text(errors="replace").splitlines():
            if raw.startswith("{"):
                with contextlib.suppress(ValueError):
                    line = json.loads(raw)
                    if line.get("logger") == "memwarden.request":
                        found[line["request_id"]] = line
                    elif line.get("message") == "sidecars ready":
                        found["sidecars"] = line
        return found

    def stop(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)
        self._out.close()


Send = Callable[[_Server, int, str], int]


def _chat(message: str) -> Send:
    return lambda server, i, rid: server.call("POST", "/chat", {"message": message}, rid)[0]


def _browse_mix(server: _Server, i: int, rid: str) -> int:
    page = ("notes", "missing")[i % 2]  # no <h1> (early return), 404 (error path)
    return server.call("POST", "/browse", {"page": page}, rid)[0]


@dataclass(frozen=True)
class Scenario:
    name: str
    leak: str
    send: Send
    warmup: Send
    env: tuple[tuple[str, str], ...] = ()
    traffic: str = ""
    rows: tuple[str, ...] = ()  # AGENT_SERVICE_LEAKS of each row; default: the leak, none


SCENARIOS = (
    Scenario("mcp (streamable HTTP)", "mcp", _chat("add 2 3"), _chat("add 1 1"),
             traffic="POST /chat 'add 2 3'"),
    Scenario("mcp (stdio)", "mcp", _chat("add 2 3"), _chat("add 1 1"),
             (("AGENT_SERVICE_MCP_TRANSPORT", "stdio"),), "POST /chat 'add 2 3'"),
    Scenario("browser", "browser", _browse_mix,
             lambda s, i, rid: s.call("POST", "/browse", {"page": "about"}, rid)[0],
             traffic="POST /browse notes, missing"),
    Scenario("loop", "loop", _chat("fail on purpose"), _chat("fail warmup"),
             traffic="POST /chat 'fail ...' (502)"),
    Scenario("context", "context", _chat("hello there, how are you"), _chat("hi"),
             traffic="POST /chat, a new user each"),
    Scenario("context (hardened)", "context", _chat("hello there, how are you"), _chat("hi"),
             (("AGENT_SERVICE_MODE", "hardened"),), "POST /chat, a new user each",
             rows=("none",)),
)

# (title, field, unit): rss_bytes and blocks are the line's own, the rest the census's.
COLUMNS = (
    ("worker RSS", "rss_bytes", "bytes"),
    ("blocks", "blocks", "n"),
    ("fds", "fds", "n"),
    ("threads", "threads", "n"),
    ("asyncio.loops", "asyncio.loops", "n"),
    ("children", "children", "n"),
    ("children PSS", "children_pss_bytes", "bytes"),
    ("mcp.sessions", "mcp.sessions", "n"),
    ("playwright.contexts", "playwright.contexts", "n"),
    ("mem0.memories", "mem0.memories", "n"),
    ("mem0.points", "mem0.points", "n"),
)


def _field(line: dict[str, Any], key: str) -> float:
    if key in ("rss_bytes", "blocks"):
        return float(line[key])
    return float(line["census"].get(key, 0))  # a tracked kind is absent until first seen


def _fmt(value: float, unit: str) -> str:
    if unit == "bytes":
        if abs(value) >= 0.5 * MB:
            return f"{value / MB:+.1f} MB"
        return f"{value / 1024:+.1f} kB" if abs(value) >= 512 else f"{value:+.0f} B"
    text = f"{value:+.1f}".removesuffix(".0")
    return "0" if text in ("+0", "-0") else text


def run(scenario: Scenario, leaks: str, n: int, tmp: Path) -> list[str]:
    name = f"{scenario.name}-{leaks}".replace(" ", "-").replace("(", "").replace(")", "")
    server = _Server(leaks, dict(scenario.env), tmp / f"{name}.log")
    try:
        for i in range(2):
            scenario.warmup(server, i, f"warm-{i}")
        found = server.lines()
        mcp_pid = found["sidecars"]["sidecar_pids"][0]
        mcp_before = _fds(mcp_pid)
        started = time.perf_counter()
        ids = [f"m-{i:04d}" for i in range(n)]
        statuses = {scenario.send(server, i, rid) for i, rid in enumerate(ids)}
        seconds = time.perf_counter() - started
        # The line is written when the response is closed, just after the client has it.
        deadline = time.monotonic() + 10
        while not all(rid in (found := server.lines()) for rid in ids):
            if time.monotonic() > deadline:
                raise SystemExit(f"request lines missing in {server.log}")
            time.sleep(0.1)
        lines = [found[rid] for rid in ids]
        mcp_after = _fds(mcp_pid)
    finally:
        server.stop()
    cells = [scenario.name, leaks, scenario.traffic, str(n),
             "/".join(str(s) for s in sorted(statuses)), f"{seconds / n * 1000:.0f} ms"]
    for _title, key, unit in COLUMNS:
        first, last = _field(lines[0], key), _field(lines[-1], key)
        cells.append(_fmt((last - first) / (n - 1), unit))
    cells.append(_fmt((mcp_after - mcp_before) / n, "n"))
    return cells


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=20)
    parser.add_argument("--only", default="", help="comma list of leaks to measure")
    args = parser.parse_args()
    only = {x.strip() for x in args.only.split(",") if x.strip()}
    head = ["scenario", "AGENT_SERVICE_LEAKS", "traffic", "requests", "status", "latency",
            *(title for title, _k, _u in COLUMNS), "MCP server fds"]
    print("Growth per request, first to last measured request (1 sync worker).\n")
    print("| " + " | ".join(head) + " |")
    print("|" + "---|" * len(head))
    with tempfile.TemporaryDirectory(prefix="agent-measure-") as tmp:
        for scenario in SCENARIOS:
            if only and scenario.leak not in only:
                continue
            n = min(args.requests, 6) if "stdio" in scenario.name else args.requests
            for leaks in scenario.rows or (scenario.leak, "none"):
                print("| " + " | ".join(run(scenario, leaks, n, Path(tmp))) + " |", flush=True)


if __name__ == "__main__":
    main()
