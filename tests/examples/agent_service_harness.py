"""Run the reference agent service under real gunicorn on 127.0.0.1, and read its logs."""

from __future__ import annotations

import contextlib
import http.client
import itertools
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from memwarden.gunicorn_conf import CHILD_NAME

REPO = Path(__file__).resolve().parents[2]
SERVICE = REPO / "examples" / "agent_service"
CONF = SERVICE / "gunicorn_conf.py"
GUNICORN = Path(sys.executable).with_name("gunicorn")
CHROMIUM = os.environ.get("AGENT_SERVICE_CHROMIUM", "/usr/lib/chromium/chromium")
MB = 1024 * 1024


def service_env(tmp: Path) -> dict[str, str]:
    """What every run of the service here needs: its own key and data directory."""
    return {"AGENT_SERVICE_SECRET_KEY": secrets.token_hex(32),
            "AGENT_SERVICE_DATA_DIR": str(tmp / "agent-service-data"),
            "AGENT_SERVICE_MODEL_PORT": str(free_port()),
            "AGENT_SERVICE_MEMORY_PORT": str(free_port())}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def require_chromium() -> None:
    """Fail (never skip) when Chromium is missing, with the install command."""
    if not (os.path.isfile(CHROMIUM) and os.access(CHROMIUM, os.X_OK)):
        import pytest

        pytest.fail(f"Chromium not found at {CHROMIUM}: install Debian's package with "
                    "`apt-get install -y chromium` (or `make chromium`)", pytrace=False)


def _start_time(pid: int) -> str | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat[stat.rindex(")") + 2:].split()[19]


def descendants(pid: int) -> list[int]:
    found: list[int] = []
    frontier = [pid]
    while frontier:
        nxt: list[int] = []
        for parent in frontier:
            with contextlib.suppress(OSError):
                for tid in os.listdir(f"/proc/{parent}/task"):
                    with contextlib.suppress(OSError, ValueError):
                        children = Path(f"/proc/{parent}/task/{tid}/children").read_text()
                        nxt += [int(x) for x in children.split()]
        found += nxt
        frontier = nxt
    return found


def open_fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


@dataclass
class Reply:
    status: int
    body: Any
    headers: dict[str, str]

    @property
    def cookie(self) -> str | None:
        raw = self.headers.get("set-cookie")
        return raw.split(";", 1)[0] if raw else None


class Service:
    """gunicorn with the example's config, its sidecars on free ports, stderr in a file."""

    def __init__(self, tmp: Path, leaks: str, *, workers: int | None = 1,
                 env: Mapping[str, str] | None = None, census_every: int = 1) -> None:
        self.port = free_port()
        self.mcp_port = free_port()
        self.site_port = free_port()
        self.log_path = tmp / f"agent-service-{self.port}.log"
        self.env = {
            **os.environ,
            **service_env(tmp),
            "PYTHONUNBUFFERED": "1",
            "AGENT_SERVICE_LEAKS": leaks,
            "AGENT_SERVICE_PORT": str(self.port),
            "AGENT_SERVICE_MCP_PORT": str(self.mcp_port),
            "AGENT_SERVICE_SITE_PORT": str(self.site_port),
            "MEMWARDEN_CENSUS_EVERY": str(census_every),
            "MEMWARDEN_LOOP_TRACKING": "1",
            **(env or {}),
        }
        # workers=None: the config's own count (2, as found).
        cmd = [str(GUNICORN), "-c", str(CONF),
               *(["-w", str(workers)] if workers is not None else []), "api.app:app"]
        self._log = self.log_path.open("wb")
        self.proc = subprocess.Popen(cmd, cwd=REPO, env=self.env, stdout=self._log,
                                     stderr=subprocess.STDOUT, start_new_session=True)
        self._seen: dict[int, str | None] = {}
        try:
            self._wait_healthy(90.0)
        except BaseException:
            tail = self.log_path.read_text(errors="replace")[-4000:]
            self.stop()
            raise AssertionError(f"the agent service did not start:\n{tail}") from None

    # -- HTTP ----------------------------------------------------------------------

    def request(self, method: str, path: str, payload: Any = None, *,
                cookie: str | None = None, request_id: str | None = None,
                timeout: float = 60.0) -> Reply:
        headers = {"Content-Type": "application/json"}
        if cookie:
            headers["Cookie"] = cookie
        if request_id:
            headers["X-Request-ID"] = request_id
        body = json.dumps(payload).encode() if payload is not None else None
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        try:
            conn.request(method, path, body=body, headers=headers)
            resp = conn.getresponse()
            raw = resp.read()
            heads = {k.lower(): v for k, v in resp.getheaders()}
        finally:
            conn.close()
        try:
            parsed: Any = json.loads(raw)
        except ValueError:
            parsed = raw.decode(errors="replace")
        return Reply(resp.status, parsed, heads)

    def chat(self, message: str, **kw: Any) -> Reply:
        return self.request("POST", "/chat", {"message": message}, **kw)

    def browse(self, page: str, **kw: Any) -> Reply:
        return self.request("POST", "/browse", {"page": page}, **kw)

    def _wait_healthy(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"gunicorn exited with {self.proc.returncode}")
            with contextlib.suppress(OSError):
                if self.request("GET", "/healthz", timeout=5).status == 200:
                    return
            time.sleep(0.1)
        raise TimeoutError("no healthy answer from /healthz")

    # -- logs ----------------------------------------------------------------------

    def lines(self) -> list[dict[str, Any]]:
        """Every JSON object line of gunicorn's stderr (sidecars may add plain lines)."""
        out = []
        for raw in self.log_path.read_text(errors="replace").splitlines():
            if raw.startswith("{"):
                with contextlib.suppress(ValueError):
                    out.append(json.loads(raw))
        return out

    def request_lines(self, ids: Sequence[str] | None = None, timeout: float = 10.0
                      ) -> list[dict[str, Any]]:
        """The request log lines (of ``ids``, in that order, waiting for all of them)."""
        deadline = time.monotonic() + timeout
        while True:
            found = [x for x in self.lines()
                     if x.get("logger") == "memwarden.request" and x.get("message") == "request"]
            if ids is None:
                return found
            by_id = {x["request_id"]: x for x in found}
            if all(i in by_id for i in ids):
                return [by_id[i] for i in ids]
            if time.monotonic() > deadline:
                missing = [i for i in ids if i not in by_id]
                raise AssertionError(f"no request line for {missing[:5]} ({len(missing)})")
            time.sleep(0.05)

    def sidecar_pids(self) -> list[int]:
        for line in self.lines():
            if line.get("message") == "sidecars ready":
                return list(line["sidecar_pids"])
        raise AssertionError("no 'sidecars ready' line in the log")

    def worker_pids(self) -> list[int]:
        """The master's gunicorn children (it may also have sidecars, and adopted
        orphans such as Chromium's crash handler when it is a subreaper)."""
        path = Path(f"/proc/{self.proc.pid}/task/{self.proc.pid}/children")
        pids = []
        for pid in (int(x) for x in path.read_text().split()):
            with contextlib.suppress(OSError):
                # Not the start summary's short-lived child (gunicorn_conf.CHILD_NAME).
                if (b"gunicorn" in Path(f"/proc/{pid}/cmdline").read_bytes()
                        and Path(f"/proc/{pid}/comm").read_text().strip() != CHILD_NAME):
                    pids.append(pid)
        return pids

    # -- teardown ------------------------------------------------------------------

    def remember_processes(self) -> None:
        for pid in descendants(self.proc.pid):
            self._seen.setdefault(pid, _start_time(pid))

    def stop(self, timeout: float = 30.0) -> list[str]:
        """SIGTERM, wait, SIGKILL; return the processes it started that are still alive."""
        if self.proc.poll() is None:
            self.remember_processes()
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(10)
        self._log.close()
        deadline = time.monotonic() + 10.0
        while True:
            alive = [pid for pid, start in self._seen.items()
                     if start is not None and _start_time(pid) == start]
            if not alive or time.monotonic() > deadline:
                break
            time.sleep(0.1)
        leftovers = []
        for pid in alive:
            with contextlib.suppress(OSError):
                cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ")
                leftovers.append(f"{pid}: {cmd.decode(errors='replace')[:120]}")
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        return leftovers


# -- census series -----------------------------------------------------------------------


def series(lines: Iterable[Mapping[str, Any]], key: str) -> list[float]:
    """One census field over the lines; a tracked kind absent from a census counts 0."""
    values = []
    for line in lines:
        census = line.get("census")
        if census is None:
            raise AssertionError(f"request {line.get('request_id')} has no census "
                                 "(MEMWARDEN_CENSUS_EVERY=1?)")
        values.append(census.get(key, 0))
    return values


def steps(values: Sequence[float]) -> list[float]:
    return [b - a for a, b in itertools.pairwise(values)]


def per_request(values: Sequence[float]) -> float:
    """Growth per request from the first to the last value."""
    return (values[-1] - values[0]) / (len(values) - 1)
