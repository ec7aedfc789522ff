"""The agent's MCP tools client (package ``mcp`` 2.x, ``mcp.Client``).

Leak 1, as found: a module-level singleton that "keeps the session". Flask's
handlers are sync, so each request makes a new event loop, opens a new MCP
session on it (the one from the last request is bound to that request's
loop) and appends loop and session to the singleton's list. Nothing is ever
closed: over streamable HTTP each request keeps ~4 fds, an open loop with its
tasks, and a session the MCP server keeps too (no DELETE is ever sent); over
stdio each request also keeps a server process.

The fix behind the same seam, :class:`ScopedMCPClient`, opens the session in
``async with`` on a loop that ``asyncio.run`` closes, so every path closes
both.

Hardened mode, :class:`HeldMCPClient`: one session per worker, opened on
first use and owned by a task on memwarden's worker loop
(``memwarden.loop.hold``: the anyio contexts are entered and exited in that
task), used by every request through ``memwarden.loop.run`` with a timeout.
A call that fails (server gone, session unknown after a server restart, a
timeout) drops the session and tries once more on a fresh one; when that
fails too the server is taken as down: :class:`MCPUnavailable` (a 503 with
Retry-After), and further connects wait out an exponential backoff rather
than hammer a dead server. The held session is closed at worker exit.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import sys
import threading
import time
from collections.abc import AsyncIterator, Callable, Coroutine, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from mcp import Client, StdioServerParameters

from api import config
from api.utils import resource_monitor
from memwarden.hold import loop as worker_loop

__all__ = [
    "AsFoundMCPClient",
    "HeldMCPClient",
    "MCPUnavailable",
    "ScopedMCPClient",
    "ToolCall",
    "ToolResult",
    "get_client",
]

T = TypeVar("T")
SERVICE_DIR = Path(__file__).resolve().parents[1]
_READ_TIMEOUT_S = 15.0
# Reconnect backoff of the hardened client: 0.5 s, 1 s, 2 s ... at most 10 s.
_BACKOFF_FIRST_S = 0.5
_BACKOFF_MAX_S = 10.0
_CLOSE_TIMEOUT_S = 3.0
_log = logging.getLogger("agent_service.mcp")


class MCPUnavailable(RuntimeError):
    """The MCP server cannot be reached now; ``retry_after`` says when to try again."""

    def __init__(self, message: str, retry_after: float) -> None:
        super().__init__(message)
        self.retry_after = retry_after

    @property
    def retry_after_header(self) -> str:
        return str(max(1, math.ceil(self.retry_after)))


@dataclass(frozen=True, slots=True)
class ToolCall:
    name: str
    arguments: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class ToolResult:
    name: str
    ok: bool
    value: Any
    text: str


def server_target(cfg: config.Settings) -> str | StdioServerParameters:
    """Where the tools are: the HTTP server's URL, or a stdio server to spawn."""
    if cfg.mcp_transport == "stdio":
        return StdioServerParameters(command=sys.executable, args=["-m", "mcp_server", "stdio"],
                                     cwd=str(SERVICE_DIR))
    return cfg.mcp_url


def _new_client(target: str | StdioServerParameters,
                timeout: float = _READ_TIMEOUT_S) -> Client:
    return Client(target, read_timeout_seconds=timeout)


def _opened(target: str | StdioServerParameters) -> int:
    label = target if isinstance(target, str) else " ".join([target.command, *target.args])
    return resource_monitor.opened(resource_monitor.MCP_SESSIONS, f"session with {label}")


async def _call_all(client: Client, calls: Sequence[ToolCall]) -> list[ToolResult]:
    results = []
    for call in calls:
        reply = await client.call_tool(call.name, call.arguments)
        text = " ".join(getattr(block, "text", "") for block in reply.content).strip()
        value: Any = reply.structured_content
        if isinstance(value, dict) and set(value) == {"result"}:
            value = value["result"]  # a plain return value, wrapped by the server
        results.append(ToolResult(call.name, not reply.is_error, value, text))
    return results


async def _list_all(client: Client) -> list[dict[str, str]]:
    listed = await client.list_tools()
    return [{"name": tool.name, "description": tool.description or ""} for tool in listed.tools]


class AsFoundMCPClient:
    """As found: a new session per request on a new loop, all kept, none closed."""

    def __init__(self, target: str | StdioServerParameters) -> None:
        self._target = target
        # "The session", kept for reuse; in practice one per request, forever.
        self.sessions: list[tuple[asyncio.AbstractEventLoop, Client]] = []

    def _open(self) -> tuple[asyncio.AbstractEventLoop, Client]:
        loop = asyncio.new_event_loop()
        client = _new_client(self._target)
        self.sessions.append((loop, client))
        # Entered by hand and never exited: the transport's task group, its
        # connections (or server process) and the loop stay as they are.
        loop.run_until_complete(client.__aenter__())
        _opened(self._target)  # and never closed
        return loop, client

    def call_tools(self, calls: Sequence[ToolCall]) -> list[ToolResult]:
        loop, client = self._open()
        return loop.run_until_complete(_call_all(client, calls))

    def list_tools(self) -> list[dict[str, str]]:
        loop, client = self._open()
        return loop.run_until_complete(_list_all(client))


@contextlib.asynccontextmanager
async def _session(target: str | StdioServerParameters,
                   timeout: float = _READ_TIMEOUT_S) -> AsyncIterator[Client]:
    async with _new_client(target, timeout) as client:
        handle = _opened(target)
        try:
            yield client
        finally:
            resource_monitor.closed(handle)


class ScopedMCPClient:
    """The fix: one session per call, closed on every path, on a loop that is closed."""

    def __init__(self, target: str | StdioServerParameters) -> None:
        self._target = target

    async def _call(self, calls: Sequence[ToolCall]) -> list[ToolResult]:
        async with _session(self._target) as client:
            return await _call_all(client, calls)

    async def _list(self) -> list[dict[str, str]]:
        async with _session(self._target) as client:
            return await _list_all(client)

    def call_tools(self, calls: Sequence[ToolCall]) -> list[ToolResult]:
        return asyncio.run(self._call(calls))

    def list_tools(self) -> list[dict[str, str]]:
        return asyncio.run(self._list())


class HeldMCPClient:
    """Hardened: one session per worker, owned by memwarden's worker loop."""

    def __init__(self, target: str | StdioServerParameters, timeout: float) -> None:
        self._target = target
        self._timeout = timeout
        self._held: worker_loop.Held[Client] | None = None
        self._failures = 0
        self._retry_at = 0.0
        # A sync worker serves one request at a time; this keeps a threaded
        # worker from opening two sessions at once.
        self._lock = threading.Lock()

    @property
    def label(self) -> str:
        target = self._target
        return target if isinstance(target, str) else " ".join([target.command, *target.args])

    def _drop(self) -> None:
        held, self._held = self._held, None
        if held is None:
            return
        try:
            held.close(_CLOSE_TIMEOUT_S)
        except Exception as exc:
            # A dead server cannot take the session's DELETE: expected, and harmless.
            _log.info("closing the MCP session failed: %s: %s", type(exc).__name__, exc)

    def _session(self) -> Client:
        held = self._held
        if held is not None and held.is_open:
            return held.value
        self._drop()  # it exited on its own (the connection broke)
        wait = self._retry_at - time.monotonic()
        if wait > 0:
            raise MCPUnavailable(f"MCP server at {self.label} is unavailable; retrying in "
                                 f"{wait:.1f} s", wait)
        try:
            self._held = worker_loop.hold(lambda: _session(self._target, self._timeout),
                                          name="mcp-session", timeout=self._timeout)
        except Exception as exc:
            self._failures += 1
            delay = min(_BACKOFF_MAX_S, _BACKOFF_FIRST_S * 2 ** (self._failures - 1))
            self._retry_at = time.monotonic() + delay
            _log.warning("MCP server at %s unavailable (%s: %s); next try in %.1f s",
                         self.label, type(exc).__name__, exc, delay)
            raise MCPUnavailable(f"MCP server at {self.label} is unavailable "
                                 f"({type(exc).__name__})", delay) from None
        if self._failures:
            _log.info("MCP session to %s reopened after %d failed attempt(s)",
                      self.label, self._failures)
        self._failures = 0
        return self._held.value

    def _use(self, work: Callable[[Client], Coroutine[Any, Any, T]]) -> T:
        with self._lock:
            for attempt in (1, 2):
                client = self._session()
                try:
                    return worker_loop.run(work(client), self._timeout)
                except Exception as exc:
                    # Tool errors come back as results; an exception means the
                    # session or the server is broken: start afresh, once.
                    _log.warning("MCP call failed on the held session (%s: %s); %s",
                                 type(exc).__name__, exc,
                                 "reconnecting" if attempt == 1 else "giving up")
                    self._drop()
                    if attempt == 2:
                        raise MCPUnavailable(f"MCP server at {self.label} did not answer "
                                             f"({type(exc).__name__})",
                                             _BACKOFF_FIRST_S) from None
            raise AssertionError("unreachable")  # pragma: no cover

    def call_tools(self, calls: Sequence[ToolCall]) -> list[ToolResult]:
        return self._use(lambda client: _call_all(client, calls))

    def list_tools(self) -> list[dict[str, str]]:
        return self._use(_list_all)


ToolsClient = AsFoundMCPClient | ScopedMCPClient | HeldMCPClient
_client: ToolsClient | None = None
_client_settings: config.Settings | None = None
_client_lock = threading.Lock()


def get_client() -> ToolsClient:
    """The process's tools client: the as-found singleton, or the scoped fix."""
    global _client, _client_settings
    cfg = config.settings()
    with _client_lock:
        if _client is None or _client_settings is not cfg:
            target = server_target(cfg)
            if cfg.hardened:
                _client = HeldMCPClient(target, cfg.mcp_timeout)
            elif cfg.leak("mcp"):
                _client = AsFoundMCPClient(target)
            else:
                _client = ScopedMCPClient(target)
            _client_settings = cfg
        return _client
