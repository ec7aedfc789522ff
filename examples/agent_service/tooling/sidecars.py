"""Start and stop the service's sidecars: MCP tool server, local site, model endpoint.

In hardened mode a fourth one, the memory server, keeps the session context.

Used by the gunicorn config (``on_starting`` / ``on_exit`` in the master), by
``run.py`` and by tests. Each sidecar is a child process on 127.0.0.1; start
waits (bounded) until each accepts connections and fails with the sidecar's
own exit status if one dies first; stop terminates, waits, then kills.
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

__all__ = ["Sidecar", "SidecarError", "Sidecars"]

SERVICE_DIR = Path(__file__).resolve().parents[1]


class SidecarError(RuntimeError):
    """A sidecar could not start; the message says which and why."""


def port_is_free(port: int) -> bool:
    with socket.socket() as sock:
        # As the servers themselves bind: a port whose old connections sit in
        # TIME_WAIT is free to them.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def accepts(port: int) -> bool:
    with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
        return True
    return False


@dataclass
class Sidecar:
    name: str
    port: int
    argv: list[str]
    proc: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    def start(self, env: dict[str, str]) -> None:
        if not port_is_free(self.port):
            raise SidecarError(f"{self.name}: 127.0.0.1:{self.port} is already in use "
                               "(another instance? choose a port with its AGENT_SERVICE_* "
                               "variable)")
        # stdout/stderr inherited: a sidecar's errors show in the server's log.
        self.proc = subprocess.Popen(self.argv, cwd=SERVICE_DIR, env=env,
                                     stdin=subprocess.DEVNULL)

    def wait_ready(self, deadline: float) -> None:
        proc = self.proc
        if proc is None:
            raise SidecarError(f"{self.name} was not started")
        while not accepts(self.port):
            code = proc.poll()
            if code is not None:
                raise SidecarError(f"{self.name} exited with status {code} before "
                                   f"listening on 127.0.0.1:{self.port}")
            if time.monotonic() > deadline:
                raise SidecarError(f"{self.name} did not listen on 127.0.0.1:{self.port} "
                                   "in time")
            time.sleep(0.05)

    def stop(self, timeout: float) -> None:
        proc = self.proc
        if proc is None or proc.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            proc.terminate()
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout)
        except ChildProcessError:
            pass  # gunicorn's master reaps every child, ours included


class Sidecars:
    """The MCP server (streamable HTTP), the local site and the model endpoint, as one
    unit; with ``memory_port``, the memory server too (started last: it needs the
    model endpoint)."""

    def __init__(self, mcp_port: int, site_port: int, model_port: int,
                 memory_port: int | None = None, *, python: str = sys.executable,
                 env: dict[str, str] | None = None) -> None:
        parent = str(os.getpid())
        self._env = {**os.environ, **(env or {}), "PYTHONUNBUFFERED": "1"}
        self._owner = os.getpid()
        self.items = [
            Sidecar("mcp server", mcp_port,
                    [python, "-m", "mcp_server", "http", "--port", str(mcp_port),
                     "--parent-pid", parent]),
            Sidecar("local site", site_port,
                    [python, "-m", "tooling.local_site", "--port", str(site_port),
                     "--parent-pid", parent]),
            Sidecar("model endpoint", model_port,
                    [python, "-m", "tooling.model_server", "--port", str(model_port),
                     "--parent-pid", parent]),
        ]
        self._late = []
        if memory_port is not None:
            self._late.append(Sidecar("memory server", memory_port,
                                      [python, "-m", "tooling.memory_server", "--port",
                                       str(memory_port), "--parent-pid", parent]))

    @classmethod
    def for_settings(cls, cfg: Any, **kw: Any) -> Sidecars:
        """The sidecars an ``api.config.Settings`` calls for."""
        return cls(cfg.mcp_port, cfg.site_port, cfg.model_port,
                   cfg.memory_port if cfg.hardened else None, **kw)

    @property
    def pids(self) -> list[int]:
        return [item.proc.pid for item in self.items + self._late if item.proc is not None]

    def start(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        try:
            for group in (self.items, self._late):
                for item in group:
                    item.start(self._env)
                for item in group:
                    item.wait_ready(deadline)
        except BaseException:
            self.stop()
            raise

    def stop(self, timeout: float = 5.0) -> None:
        # Only the process that started them stops them (not a forked worker).
        if os.getpid() != self._owner:
            return
        for item in reversed(self.items + self._late):
            item.stop(timeout)

    def __enter__(self) -> Sidecars:
        self.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()
